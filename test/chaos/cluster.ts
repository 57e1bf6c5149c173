// A cluster of real `flotilla start` processes whose links the fault injector controls. Each
// node listens on its own peer and client ports; every other node reaches it only through a
// proxy owned by this harness, one per directed pair and per port kind:
//
//   node i --(peer proxy i->j)--> node j's peer port      Raft messages from i to j
//   node i --(client proxy i->j)--> node j's client port  writes i forwards to leader j
//
// Each node is given its own --initial-cluster, listing itself at its real addresses and every
// peer at the proxies it must use. Test clients talk to the real client ports directly: they
// play the part of clients outside the cluster's network.
//
// Every process is started here and ended here by PID.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NodeStatus } from '../../src/api/types.js';
import { cliEntry } from '../../src/cli/cluster.js';
import { createRng } from '../../src/raft/index.js';
import { sleep } from '../e2e/harness.js';
import { LinkProxy } from './proxy.js';

/**
 * Node ports come from below Linux's default ephemeral range (32768-60999). Proxies listen on
 * ephemeral ports and every outgoing connection takes one as its source port; if a node's
 * port were in that range, a connection could take it while the node is down after a kill,
 * and the restart would fail with EADDRINUSE.
 */
const NODE_PORT_RANGE: readonly [number, number] = [20_000, 32_000];

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/** `n` ports in NODE_PORT_RANGE that are free now, tried in an order drawn from the clock. */
async function nodePorts(n: number): Promise<number[]> {
  const rng = createRng(Math.floor(performance.timeOrigin + performance.now()) ^ process.pid);
  const [lo, hi] = NODE_PORT_RANGE;
  const out: number[] = [];
  for (let tries = 0; out.length < n && tries < 10_000; tries++) {
    const port = lo + rng.int(hi - lo);
    if (!out.includes(port) && (await portIsFree(port))) out.push(port);
  }
  if (out.length < n) throw new Error(`No ${n} free ports in ${lo}-${hi}`);
  return out;
}

/** Every node process any cluster started, so an exiting harness can end them all. */
const allProcesses = new Set<ChildProcess>();
process.once('exit', () => {
  // Synchronous last resort (Ctrl-C, an uncaught exception): wake paused nodes, then kill.
  for (const p of allProcesses) {
    p.kill('SIGCONT');
    p.kill('SIGKILL');
  }
});

export type UnsafeMode = 'none' | 'local-reads' | 'early-ack' | 'stale-tokens';

export interface ChaosClusterOptions {
  readonly nodes: number;
  readonly unsafeMode: UnsafeMode;
  /** Applied entries between state-machine snapshots; low so that snapshots happen in a run. */
  readonly snapshotEveryEntries: number;
  readonly storage: 'wal' | 'sqlite';
  /** Keep data directories after stop (for post-mortems). */
  readonly keepData: boolean;
}

interface Member {
  readonly id: number;
  readonly peerPort: number;
  readonly clientPort: number;
  readonly dataDir: string;
}

type NodeState = 'running' | 'paused' | 'down';

export class ChaosCluster {
  /** Clusters not yet stopped, so an interrupted run can end its processes (stopAll). */
  private static readonly live = new Set<ChaosCluster>();

  /** Ends every cluster still running: for SIGINT/SIGTERM handlers. */
  static async stopAll(): Promise<void> {
    await Promise.all([...ChaosCluster.live].map((c) => c.stop()));
  }

  readonly dir: string;
  private readonly members: Member[];
  /** Proxies by `${from}>${to}`: [peer, client]. */
  private readonly links = new Map<string, readonly [LinkProxy, LinkProxy]>();
  private readonly procs = new Map<number, ChildProcess>();
  private readonly states = new Map<number, NodeState>();
  private readonly logs = new Map<number, string[]>();
  /** Exits nobody asked for (a crash is a finding, not a fault we injected). */
  readonly unexpectedExits: string[] = [];
  /** Set by stop(): nothing is started after it (a heal racing a Ctrl-C must not respawn). */
  private stopped = false;

  private constructor(
    private readonly o: ChaosClusterOptions,
    ports: readonly number[],
  ) {
    this.dir = mkdtempSync(join(tmpdir(), 'flotilla-chaos-'));
    this.members = Array.from({ length: o.nodes }, (_, i) => ({
      id: i + 1,
      peerPort: ports[2 * i] as number,
      clientPort: ports[2 * i + 1] as number,
      dataDir: join(this.dir, `node${i + 1}`),
    }));
  }

  static async create(o: ChaosClusterOptions): Promise<ChaosCluster> {
    const c = new ChaosCluster(o, await nodePorts(o.nodes * 2));
    ChaosCluster.live.add(c);
    await c.openLinks();
    return c;
  }

  get ids(): number[] {
    return this.members.map((m) => m.id);
  }

  /** The URLs test clients use: real client ports, no proxy. */
  endpoints(): string[] {
    return this.members.map((m) => `http://127.0.0.1:${m.clientPort}`);
  }

  endpoint(id: number): string {
    return `http://127.0.0.1:${this.member(id).clientPort}`;
  }

  private member(id: number): Member {
    const m = this.members.find((x) => x.id === id);
    if (m === undefined) throw new Error(`No member ${id}`);
    return m;
  }

  private async openLinks(): Promise<void> {
    for (const from of this.members) {
      for (const to of this.members) {
        if (from.id === to.id) continue;
        const peer = new LinkProxy(
          { host: '127.0.0.1', port: to.peerPort },
          `peer ${from.id}->${to.id}`,
        );
        const client = new LinkProxy(
          { host: '127.0.0.1', port: to.clientPort },
          `client ${from.id}->${to.id}`,
        );
        await peer.listen();
        await client.listen();
        this.links.set(`${from.id}>${to.id}`, [peer, client]);
      }
    }
  }

  private link(from: number, to: number): readonly [LinkProxy, LinkProxy] {
    const l = this.links.get(`${from}>${to}`);
    if (l === undefined) throw new Error(`No link ${from}->${to}`);
    return l;
  }

  /** Node `id`'s view of the cluster: itself at its real ports, peers through its proxies. */
  private initialClusterFor(id: number): string {
    return this.members
      .map((m) => {
        if (m.id === id) return `${m.id}=127.0.0.1:${m.peerPort}@http://127.0.0.1:${m.clientPort}`;
        const [peer, client] = this.link(id, m.id);
        return `${m.id}=127.0.0.1:${peer.port}@http://127.0.0.1:${client.port}`;
      })
      .join(',');
  }

  async start(): Promise<void> {
    for (const m of this.members) this.startNode(m.id);
    await this.waitForLeader(30_000);
  }

  startNode(id: number): void {
    if (this.stopped) return;
    const m = this.member(id);
    const args = [
      cliEntry(),
      'start',
      '--id',
      String(id),
      '--data-dir',
      m.dataDir,
      '--initial-cluster',
      this.initialClusterFor(id),
      '--cluster-id',
      'chaos',
      '--storage',
      this.o.storage,
      '--snapshot-every-entries',
      String(this.o.snapshotEveryEntries),
      '--log-level',
      'warn',
    ];
    // Only this harness configures the nodes: a FLOTILLA_* variable in the caller's shell or CI
    // would otherwise change their settings unseen.
    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('FLOTILLA_')) env[k] = v;
    env['FLOTILLA_UNSAFE_TEST_MODE'] = this.o.unsafeMode;
    // The watch and lock checks replay the whole history from revision 1: keep all of it.
    env['FLOTILLA_COMPACTION_KEEP_REVISIONS'] = '0';
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
    allProcesses.add(child);
    child.on('error', (err) => {
      // No 'exit' follows a failed spawn: forget the process so nothing waits for it.
      allProcesses.delete(child);
      if (this.procs.get(id) === child) this.procs.delete(id);
      this.states.set(id, 'down');
      this.unexpectedExits.push(`node ${id} failed to spawn: ${err.message}`);
    });
    const log = this.logs.get(id) ?? [];
    this.logs.set(id, log);
    const keep = (b: Buffer): void => {
      log.push(b.toString('utf8'));
      if (log.length > 300) log.shift();
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    this.procs.set(id, child);
    this.states.set(id, 'running');
    child.on('exit', (code, signal) => {
      allProcesses.delete(child);
      if (this.procs.get(id) !== child) return;
      this.procs.delete(id);
      if (this.states.get(id) !== 'down') {
        this.unexpectedExits.push(`node ${id} exited on its own (code ${code}, signal ${signal})`);
      }
      this.states.set(id, 'down');
    });
  }

  state(id: number): NodeState {
    return this.states.get(id) ?? 'down';
  }

  /** kill -9: whatever was not yet synced is lost. */
  async kill(id: number): Promise<void> {
    const p = this.procs.get(id);
    if (p === undefined) return;
    this.states.set(id, 'down');
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await exited;
  }

  /** The node's data directory is lost (the node must be down): it restarts with nothing. */
  wipe(id: number): void {
    if (this.state(id) !== 'down') throw new Error(`node ${id} must be down to wipe its data`);
    rmSync(this.member(id).dataDir, { recursive: true, force: true });
  }

  /** SIGSTOP: the process freezes mid-flight, its sockets stay open. */
  pause(id: number): void {
    const p = this.procs.get(id);
    if (p === undefined || this.state(id) !== 'running') return;
    p.kill('SIGSTOP');
    this.states.set(id, 'paused');
  }

  resume(id: number): void {
    const p = this.procs.get(id);
    if (p === undefined || this.state(id) !== 'paused') return;
    p.kill('SIGCONT');
    this.states.set(id, 'running');
  }

  /** Cuts the directed link from -> to (Raft traffic and forwarded client requests). */
  cut(from: number, to: number): void {
    for (const p of this.link(from, to)) p.cutLink();
  }

  healLinks(): void {
    for (const pair of this.links.values()) for (const p of pair) p.heal();
  }

  /** Every directed link currently cut, as "from->to". */
  cutLinks(): string[] {
    return [...this.links].filter(([, [peer]]) => peer.isCut).map(([k]) => k.replace('>', '->'));
  }

  async status(id: number, timeoutMs = 1_000): Promise<NodeStatus | null> {
    if (this.state(id) !== 'running') return null;
    try {
      const res = await fetch(`${this.endpoint(id)}/v1/status`, {
        signal: AbortSignal.timeout(timeoutMs),
      });
      if (!res.ok) return null;
      return (await res.json()) as NodeStatus;
    } catch {
      return null;
    }
  }

  /** The id of a node that believes it leads (the one with the highest term), or 0. */
  async leader(): Promise<number> {
    const sts = await Promise.all(this.ids.map((id) => this.status(id, 500)));
    let best: NodeStatus | null = null;
    for (const s of sts)
      if (s?.role === 'leader' && (best === null || s.term > best.term)) best = s;
    return best?.id ?? 0;
  }

  /** Waits until every node is up and they agree on one leader. */
  async waitForLeader(timeoutMs: number): Promise<number> {
    const deadline = performance.now() + timeoutMs;
    while (performance.now() < deadline) {
      const sts = await Promise.all(this.ids.map((id) => this.status(id)));
      const leaders = new Set(sts.map((s) => s?.leader ?? 0));
      const leader = [...leaders][0] ?? 0;
      if (leaders.size === 1 && leader !== 0 && sts.every((s) => s !== null)) {
        if (sts.find((s) => s?.id === leader)?.role === 'leader') return leader;
      }
      await sleep(100);
    }
    throw new Error(`No agreed leader within ${timeoutMs} ms\n${this.dumpLogs()}`);
  }

  /** Waits until every node has applied everything the leader has committed. */
  async waitForConvergence(timeoutMs: number): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (performance.now() < deadline) {
      const sts = await Promise.all(this.ids.map((id) => this.status(id)));
      const commit = Math.max(0, ...sts.map((s) => s?.commit ?? 0));
      if (sts.every((s) => s !== null && s.applied >= commit && s.leader !== 0)) return;
      await sleep(100);
    }
    throw new Error(`Nodes did not converge within ${timeoutMs} ms\n${this.dumpLogs()}`);
  }

  dumpLogs(): string {
    return [...this.logs].map(([id, l]) => `--- node ${id}\n${l.join('').slice(-3000)}`).join('\n');
  }

  /** Ends every process and proxy; removes the data unless asked to keep it. */
  async stop(): Promise<void> {
    this.stopped = true;
    ChaosCluster.live.delete(this);
    for (const id of this.ids) this.resume(id);
    await Promise.all(this.ids.map((id) => this.kill(id)));
    await Promise.all([...this.links.values()].flat().map((p) => p.close()));
    if (!this.o.keepData) rmSync(this.dir, { recursive: true, force: true });
  }
}
