// Real-process clusters for end-to-end tests: each node is a `flotilla start` child process on
// 127.0.0.1 with its own data directory. Ports come from a per-process range so parallel test
// files do not collide. Every process the harness starts is ended by PID in `stop()`.

import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cliEntry, initialClusterSpec, type LocalMember } from '../../src/cli/cluster.js';
import { FlotillaClient } from '../../src/client/index.js';
import type { NodeStatus } from '../../src/api/types.js';

/** Ports the OS reports free right now (bound to port 0, then released). */
export async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<Server>((resolve, reject) => {
          const srv = createServer();
          srv.once('error', reject);
          srv.listen(0, '127.0.0.1', () => resolve(srv));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

/** The most of each node's output kept in memory (logOf, dumpLogs). */
const maxLogChars = 4_000_000;

export interface TestClusterOptions {
  readonly nodes: number;
  readonly storage?: 'wal' | 'sqlite';
  readonly extraArgs?: readonly string[];
  /** Node.js flags for every node process (before the entry point), e.g. `--import` a fixture. */
  readonly nodeArgs?: readonly string[];
  /** Environment variables added to every node process's. */
  readonly env?: Readonly<Record<string, string>>;
}

export class TestCluster {
  readonly members: LocalMember[];
  readonly dir: string;
  private readonly procs = new Map<number, ChildProcess>();
  private readonly logs = new Map<number, string[]>();
  /** Nodes started with --join, with the URLs they join through. */
  private readonly joiners = new Map<number, readonly string[]>();

  private constructor(
    private readonly o: TestClusterOptions,
    ports: readonly number[],
  ) {
    this.dir = mkdtempSync(join(tmpdir(), 'flotilla-e2e-'));
    this.members = Array.from({ length: o.nodes }, (_, i) => ({
      id: i + 1,
      peer: `127.0.0.1:${ports[i] as number}`,
      client: `http://127.0.0.1:${ports[o.nodes + i] as number}`,
      dataDir: join(this.dir, `node${i + 1}`),
    }));
  }

  /** The members the cluster was started with. */
  private get bootstrap(): LocalMember[] {
    return this.members.filter((m) => !this.joiners.has(m.id));
  }

  /**
   * Starts a new node `id` on fresh ports that joins the cluster through `via` (client URLs);
   * returns it. It is a member of this harness from then on (endpoints, status, stop).
   */
  async join(id: number, via: readonly string[]): Promise<LocalMember> {
    const [peer, client] = (await freePorts(2)) as [number, number];
    const m = {
      id,
      peer: `127.0.0.1:${peer}`,
      client: `http://127.0.0.1:${client}`,
      dataDir: join(this.dir, `node${id}`),
    };
    this.members.push(m);
    this.joiners.set(id, via);
    this.startNode(id);
    return m;
  }

  /** Resolves with the exit code once node `id` exited (at once if it is not running). */
  exited(id: number): Promise<number | null> {
    const p = this.procs.get(id);
    if (p === undefined) return Promise.resolve(null);
    return new Promise((r) => p.once('exit', (code) => r(code)));
  }

  /** A cluster on ports the OS says are free. */
  static async create(o: TestClusterOptions): Promise<TestCluster> {
    return new TestCluster(o, await freePorts(o.nodes * 2));
  }

  endpoints(ids?: readonly number[]): string[] {
    return this.members.filter((m) => ids === undefined || ids.includes(m.id)).map((m) => m.client);
  }

  client(ids?: readonly number[]): FlotillaClient {
    return new FlotillaClient({
      endpoints: this.endpoints(ids),
      timeoutMs: 3_000,
      deadlineMs: 20_000,
      maxAttempts: 40,
    });
  }

  member(id: number): LocalMember {
    const m = this.members.find((x) => x.id === id);
    if (m === undefined) throw new Error(`No member ${id}`);
    return m;
  }

  async start(): Promise<void> {
    for (const m of this.members) this.startNode(m.id);
    await this.waitForLeader();
  }

  startNode(id: number): void {
    const m = this.member(id);
    const joining = this.joiners.get(id);
    const args = [
      ...(this.o.nodeArgs ?? []),
      cliEntry(),
      'start',
      '--id',
      String(id),
      '--data-dir',
      m.dataDir,
      '--initial-cluster',
      // A joining node names only itself; it learns the cluster from the one it joins.
      joining === undefined ? initialClusterSpec(this.bootstrap) : initialClusterSpec([m]),
      ...(joining === undefined ? ['--cluster-id', 'e2e'] : ['--join', joining.join(',')]),
      '--storage',
      this.o.storage ?? 'wal',
      '--log-level',
      'warn',
      ...(this.o.extraArgs ?? []),
    ];
    const child = spawn(process.execPath, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...this.o.env },
    });
    const log: string[] = this.logs.get(id) ?? [];
    this.logs.set(id, log);
    // Bounded by characters, not writes: a node at level info writes many small ones, and a
    // test that reads a whole run's elections from the log (rolling-restart) needs them all.
    let chars = log.reduce((n, c) => n + c.length, 0);
    const keep = (b: Buffer): void => {
      const text = b.toString('utf8');
      log.push(text);
      chars += text.length;
      while (chars > maxLogChars && log.length > 1) chars -= (log.shift() as string).length;
      // E2E_LOG_DIR keeps every line of every node (the dump on failure keeps the last few).
      if (process.env['E2E_LOG_DIR'])
        appendFileSync(`${process.env['E2E_LOG_DIR']}/node${id}.log`, b);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    this.procs.set(id, child);
    child.on('exit', () => {
      if (this.procs.get(id) === child) this.procs.delete(id);
    });
  }

  /** kill -9: no chance to flush or hand off. */
  async kill(id: number): Promise<void> {
    const p = this.procs.get(id);
    if (p === undefined) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await exited;
  }

  /** SIGTERM: a clean shutdown (leadership hand-off, flush). */
  async terminate(id: number): Promise<number | null> {
    const p = this.procs.get(id);
    if (p === undefined) return null;
    const exited = new Promise<number | null>((r) => p.once('exit', (code) => r(code)));
    p.kill('SIGTERM');
    return exited;
  }

  /** SIGSTOP: the process freezes, its sockets open and unanswered, until `resume`. */
  pause(id: number): void {
    const p = this.procs.get(id);
    if (p === undefined) throw new Error(`Node ${id} is not running`);
    p.kill('SIGSTOP');
  }

  /** Sends node `id` a signal (a test fixture loaded with `nodeArgs` may handle it). */
  signal(id: number, signal: NodeJS.Signals): void {
    const p = this.procs.get(id);
    if (p === undefined) throw new Error(`Node ${id} is not running`);
    p.kill(signal);
  }

  /** SIGCONT after `pause`. */
  resume(id: number): void {
    this.procs.get(id)?.kill('SIGCONT');
  }

  running(): number[] {
    return [...this.procs.keys()].sort();
  }

  async status(id: number): Promise<NodeStatus | null> {
    try {
      const res = await fetch(`${this.member(id).client}/v1/status`, {
        signal: AbortSignal.timeout(1_000),
      });
      if (!res.ok) return null;
      return (await res.json()) as NodeStatus;
    } catch {
      return null;
    }
  }

  /** Waits until the running nodes agree on one leader among them; returns its id. */
  async waitForLeader(
    timeoutMs = 15_000,
    among: readonly number[] = this.running(),
  ): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const sts = await Promise.all(among.map((id) => this.status(id)));
      const leaders = new Set(sts.map((s) => s?.leader ?? 0));
      const leader = [...leaders][0] ?? 0;
      if (
        leaders.size === 1 &&
        leader !== 0 &&
        among.includes(leader) &&
        sts.every((s) => s !== null)
      ) {
        const ls = sts.find((s) => s?.id === leader);
        if (ls?.role === 'leader') return leader;
      }
      await sleep(100);
    }
    throw new Error(
      `No agreed leader among ${among.join(',')} within ${timeoutMs} ms\n${this.dumpLogs()}`,
    );
  }

  /** The highest commit index any running node reports. */
  async maxCommit(): Promise<number> {
    const sts = await Promise.all(this.running().map((id) => this.status(id)));
    return Math.max(0, ...sts.map((s) => s?.commit ?? 0));
  }

  /** Waits until every running node has applied at least `index`. */
  async waitForApplied(index: number, timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const sts = await Promise.all(this.running().map((id) => this.status(id)));
      if (sts.every((s) => s !== null && s.applied >= index)) return;
      await sleep(100);
    }
    throw new Error(`Nodes did not apply ${index} within ${timeoutMs} ms\n${this.dumpLogs()}`);
  }

  /** Everything node `id` logged so far (dumpLogs keeps only each log's tail). */
  logOf(id: number): string {
    return (this.logs.get(id) ?? []).join('');
  }

  dumpLogs(): string {
    // Repeated handshake refusals (a removed member still knocking) would crowd out the rest.
    const kept = (l: string[]) =>
      l
        .join('')
        .split('\n')
        .filter((line) => !line.includes('peer handshake refused'))
        .join('\n');
    const at = (id: number) => this.members.find((m) => m.id === id)?.client ?? '';
    return [...this.logs]
      .map(([id, l]) => `--- node ${id} ${at(id)}\n${kept(l).slice(-3000)}`)
      .join('\n');
  }

  async stop(): Promise<void> {
    await Promise.all(this.running().map((id) => this.kill(id)));
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
