// `flotilla start` processes on the hosts of a NetnsHosts, one per host: node `i` runs in host
// `i`'s namespace unless it was placed elsewhere (a replacement takes the host of the member it
// replaces) (`ip netns exec`, which execs, so the child's PID is the node's), listens on
// its host's address (peer port 7001, client port 8001, the same on every host as on separate
// machines) and keeps its data directory under one temporary directory. Every line a node
// logs goes to `node<i>.log` there. Every process is started here and ended here by PID.

import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdtempSync, rmSync, type WriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MembersResponse, NodeStatus } from '../../src/api/types.js';
import { cliEntry } from '../../src/cli/cluster.js';
import type { NetnsHosts } from './hosts.js';

export const PEER_PORT = 7001;
export const CLIENT_PORT = 8001;

/** Every node process any cluster here started, so an exiting process can end them all. */
const allProcesses = new Set<ChildProcess>();
process.once('exit', () => {
  for (const p of allProcesses) p.kill('SIGKILL');
});

export interface StartOptions {
  /** The host to run on (default: the one the node ran on before, or host `id`). */
  readonly host?: number;
  /** Client URLs to join through (`--join`); absent: a bootstrap member. */
  readonly join?: readonly string[];
  /** The bootstrap members (`--initial-cluster`); default: this node alone. */
  readonly initial?: readonly number[];
}

export class NetnsNodes {
  readonly dir: string;
  private readonly procs = new Map<number, ChildProcess>();
  private readonly logs = new Map<number, WriteStream>();
  /** The last lines each node wrote, for failure messages. */
  private readonly tails = new Map<number, string[]>();
  /** Everything each node logged since it was last started, to search for a line. */
  private readonly sinceStart = new Map<number, string>();
  /** The host each node runs on, when not its own number. */
  private readonly placed = new Map<number, number>();

  constructor(
    private readonly hosts: NetnsHosts,
    private readonly args: readonly string[],
  ) {
    this.dir = mkdtempSync(join(tmpdir(), 'flotilla-netns-'));
  }

  hostOf(i: number): number {
    return this.placed.get(i) ?? i;
  }

  member(i: number): string {
    return `${i}=${this.hosts.address(this.hostOf(i))}:${PEER_PORT}@${this.url(i)}`;
  }

  url(i: number): string {
    return `http://${this.hosts.address(this.hostOf(i))}:${CLIENT_PORT}`;
  }

  dataDir(i: number): string {
    return join(this.dir, `node${i}`);
  }

  running(): number[] {
    return [...this.procs.keys()].sort((a, b) => a - b);
  }

  pid(i: number): number | undefined {
    return this.procs.get(i)?.pid;
  }

  /** Starts node `i` in its host's namespace. */
  start(i: number, o: StartOptions = {}): void {
    if (this.procs.has(i)) throw new Error(`Node ${i} is already running`);
    if (o.host !== undefined) this.placed.set(i, o.host);
    const initial = o.join === undefined ? (o.initial ?? [i]) : [i];
    const args = [
      cliEntry(),
      'start',
      '--id',
      String(i),
      '--data-dir',
      this.dataDir(i),
      '--initial-cluster',
      initial.map((m) => this.member(m)).join(','),
      ...(o.join === undefined ? ['--cluster-id', 'netns'] : ['--join', o.join.join(',')]),
      '--log-format',
      'json',
      ...this.args,
    ];
    // The node's configuration comes from its flags alone, not from FLOTILLA_* variables the
    // test process happens to have.
    const env = Object.fromEntries(
      Object.entries(process.env).filter(([k]) => !k.startsWith('FLOTILLA_')),
    );
    const child = spawn('ip', this.hosts.execArgs(this.hostOf(i), process.execPath, args), {
      stdio: ['ignore', 'pipe', 'pipe'],
      env,
    });
    allProcesses.add(child);
    const log =
      this.logs.get(i) ?? createWriteStream(join(this.dir, `node${i}.log`), { flags: 'a' });
    this.logs.set(i, log);
    this.sinceStart.set(i, '');
    const keep = (b: Buffer): void => {
      log.write(b);
      const text = b.toString('utf8');
      this.sinceStart.set(i, (this.sinceStart.get(i) ?? '') + text);
      const tail = this.tails.get(i) ?? [];
      tail.push(text);
      if (tail.length > 50) tail.shift();
      this.tails.set(i, tail);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    this.procs.set(i, child);
    child.once('exit', (code, signal) => {
      allProcesses.delete(child);
      if (this.procs.get(i) === child) this.procs.delete(i);
      keep(Buffer.from(`[node ${i} exited: code ${code}, signal ${signal}]\n`));
    });
  }

  /** Sends `signal` to node `i` by PID and waits (bounded) until it exited. */
  async stop(i: number, signal: NodeJS.Signals = 'SIGKILL', timeoutMs = 10_000): Promise<void> {
    const p = this.procs.get(i);
    if (p === undefined) return;
    const exited = new Promise<void>((r) => p.once('exit', () => r()));
    p.kill(signal);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((r) => {
      timer = setTimeout(() => r('late'), timeoutMs);
    });
    const outcome = await Promise.race([exited.then(() => 'exited' as const), late]);
    clearTimeout(timer);
    if (outcome === 'late') {
      p.kill('SIGKILL');
      await exited;
      throw new Error(`Node ${i} did not exit within ${timeoutMs} ms of ${signal}; killed`);
    }
  }

  /** Whether node `i` logged a line containing `text` since it was last started. */
  logged(i: number, text: string): boolean {
    return this.logSinceStart(i).includes(text);
  }

  /** Everything node `i` logged since it was last started. */
  logSinceStart(i: number): string {
    return this.sinceStart.get(i) ?? '';
  }

  /** The last lines of every node's log, for a failure message. */
  tailsText(): string {
    return [...this.tails]
      .map(([i, t]) => `--- node ${i} (${this.url(i)})\n${t.join('').slice(-2500)}`)
      .join('\n');
  }

  async status(i: number): Promise<NodeStatus | null> {
    try {
      const res = await fetch(`${this.url(i)}/v1/status`, { signal: AbortSignal.timeout(1_000) });
      return res.ok ? ((await res.json()) as NodeStatus) : null;
    } catch {
      return null;
    }
  }

  async members(i: number): Promise<MembersResponse | null> {
    try {
      const res = await fetch(`${this.url(i)}/v1/cluster/members/list`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{}',
        signal: AbortSignal.timeout(3_000),
      });
      return res.ok ? ((await res.json()) as MembersResponse) : null;
    } catch {
      return null;
    }
  }

  /** Ends every node (SIGKILL, by PID), closes the logs; removes the data unless `keep`. */
  async close(o: { keep: boolean }): Promise<void> {
    await Promise.all(this.running().map((i) => this.stop(i, 'SIGKILL')));
    await Promise.all(
      [...this.logs.values()].map((l) => new Promise<void>((r) => l.end(() => r()))),
    );
    if (!o.keep) rmSync(this.dir, { recursive: true, force: true });
  }
}
