// A cluster of real `flotilla start` processes whose links the fault injector controls. Each
// node listens on its own real peer and client ports, and is known to every node, itself
// included, only by the addresses of its two fronts: proxies owned by this harness, one per
// member and port kind (proxy.ts):
//
//   any node --(peer front of j)--> node j's peer port      Raft messages to j
//   any node --(client front of j)--> node j's client port  writes forwarded to j, member lists
//
// Bootstrap nodes are all given the same --initial-cluster, naming every member at its fronts,
// and listen on their real ports (--listen-peer, --listen-client). A member added during the run
// advertises its fronts the same way, and joins through the other members' client fronts; the
// replicated member directory then hands every node the fronts of every member, bootstrap or
// joined, for the whole run. A front tells senders apart by what they say first (the peer
// handshake's HELLO names the sender; every request between members carries
// `x-flotilla-member`), so cutting the link i -> j is telling j's fronts to black-hole what i
// sends: exact for any two members, whenever they joined.
//
// Test clients talk to the real client ports directly: they play the part of clients outside
// the cluster's network.
//
// Every process is started here and ended here by PID.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NodeStatus } from '../../src/api/types.js';
import { cliEntry } from '../../src/cli/cluster.js';
import { createRng } from '../../src/raft/index.js';
import { pidAlive } from '../../src/storage/index.js';
import { sleep } from '../e2e/harness.js';
import { FrontProxy } from './proxy.js';
import { sniffMemberHeader, sniffPeerHello } from './sniff.js';

/**
 * Node ports come from below Linux's default ephemeral range (32768-60999). Proxies listen on
 * ephemeral ports and every outgoing connection takes one as its source port; if a node's
 * port were in that range, a connection could take it while the node is down after a kill,
 * and the restart would fail with EADDRINUSE.
 */
const NODE_PORT_RANGE: readonly [number, number] = [20_000, 32_000];

/**
 * Ports this process claimed for its nodes, held until it exits. Several test files run
 * clusters at once, each drawing ports from NODE_PORT_RANGE: a port free when one drew it may be
 * a port another process's node holds but has not bound yet (a member added later) or left for a
 * moment (killed, restarting). Both then fail: one node's start with EADDRINUSE, the other's
 * clients reach a stranger (CI once saw an added member exit so, and its run end without an
 * agreed leader). A claim is a file naming the claiming process; a file whose process is gone
 * is taken over.
 */
const claimed = new Set<number>();
// Files straight in the temporary directory, removed at exit: a run leaves nothing behind.
const claimFile = (port: number): string => join(tmpdir(), `flotilla-test-port-${port}`);
process.once('exit', () => {
  for (const port of claimed) rmSync(claimFile(port), { force: true });
});

/** Claims `port` for this process's nodes; false when another live process holds it. */
function claimPort(port: number): boolean {
  const file = claimFile(port);
  try {
    writeFileSync(file, String(process.pid), { flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    const owner = Number(readFileSync(file, 'utf8'));
    if (owner === process.pid || (Number.isInteger(owner) && owner > 0 && pidAlive(owner)))
      return false;
    writeFileSync(file, String(process.pid));
    // Two processes taking over the same stale claim: the last write wins, the other backs off.
    if (Number(readFileSync(file, 'utf8')) !== process.pid) return false;
  }
  claimed.add(port);
  return true;
}

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
    if (!out.includes(port) && !claimed.has(port) && (await portIsFree(port)) && claimPort(port))
      out.push(port);
  }
  if (out.length < n) throw new Error(`No ${n} free ports in ${lo}-${hi}`);
  return out;
}

/** The URL every node uses for member `m`'s client port. */
function frontUrl(m: Member): string {
  return `http://127.0.0.1:${m.front.client.port}`;
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
  /** The nodes' `placementEveryMs`; absent: their default. */
  readonly placementEveryMs?: number;
  /** Start every node with `quiesce: on` (DESIGN.md, "Quiescing idle groups"). */
  readonly quiesce?: boolean;
  /**
   * Start the nodes in a process group of their own, so a terminal's Ctrl-C reaches the
   * harness alone. Only for a harness that handles SIGINT/SIGTERM and ends the nodes itself
   * (cli.ts): otherwise the signal kills the harness without its exit hook, and the nodes,
   * no longer in its group, outlive it.
   */
  readonly ownProcessGroup?: boolean;
}

interface Member {
  readonly id: number;
  /** The ports the node listens on; only its fronts and test clients use them. */
  readonly peerPort: number;
  readonly clientPort: number;
  /** The addresses every node knows this member by. */
  readonly front: { readonly peer: FrontProxy; readonly client: FrontProxy };
  readonly dataDir: string;
  /** Client URLs a member added during the run joins through; null for the bootstrap ones. */
  readonly joinVia: readonly string[] | null;
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
  private readonly members: Member[] = [];
  /** Directed links cut, as `${from}>${to}`. */
  private readonly cuts = new Set<string>();
  private readonly procs = new Map<number, ChildProcess>();
  private readonly states = new Map<number, NodeState>();
  private readonly logs = new Map<number, string[]>();
  /** Members being removed: their process may stop by itself at any moment. */
  private readonly leaving = new Set<number>();
  /** Members removed for good: never started again, not in `ids` or `endpoints()`. */
  private readonly removed = new Set<number>();
  /** Exits nobody asked for (a crash is a finding, not a fault we injected). */
  readonly unexpectedExits: string[] = [];
  /** Set by stop(): nothing is started after it (a heal racing a Ctrl-C must not respawn). */
  private stopped = false;

  private constructor(private readonly o: ChaosClusterOptions) {
    this.dir = mkdtempSync(join(tmpdir(), 'flotilla-chaos-'));
  }

  static async create(o: ChaosClusterOptions): Promise<ChaosCluster> {
    const c = new ChaosCluster(o);
    ChaosCluster.live.add(c);
    const ports = await nodePorts(o.nodes * 2);
    for (let i = 0; i < o.nodes; i++)
      await c.addMemberRecord(i + 1, [ports[2 * i] as number, ports[2 * i + 1] as number], null);
    return c;
  }

  /** Records member `id` on `ports` (peer, client), with its two fronts listening. */
  private async addMemberRecord(
    id: number,
    [peerPort, clientPort]: readonly [number, number],
    joinVia: readonly string[] | null,
  ): Promise<Member> {
    const target = (port: number) => ({ host: '127.0.0.1', port });
    const peer = new FrontProxy(target(peerPort), `peer front of ${id}`, sniffPeerHello);
    const client = new FrontProxy(target(clientPort), `client front of ${id}`, sniffMemberHeader);
    try {
      await peer.listen();
      await client.listen();
    } catch (err) {
      await Promise.all([peer.close(), client.close()]);
      throw err;
    }
    // Recorded only once both fronts listen: a heal that starts every member that is down
    // must not start this one with a front that has no port yet.
    const m: Member = {
      id,
      peerPort,
      clientPort,
      front: { peer, client },
      dataDir: join(this.dir, `node${id}`),
      joinVia,
    };
    this.members.push(m);
    return m;
  }

  /** The members not removed, bootstrap and added. */
  get ids(): number[] {
    return this.members.filter((m) => !this.removed.has(m.id)).map((m) => m.id);
  }

  /** The bootstrap members not removed. */
  get bootstrapIds(): number[] {
    return this.members
      .filter((m) => m.joinVia === null && !this.removed.has(m.id))
      .map((m) => m.id);
  }

  /** The URLs test clients use: real client ports, no proxy; removed members left out. */
  endpoints(): string[] {
    return this.ids.map((id) => this.endpoint(id));
  }

  /**
   * Starts a new member on fresh ports, with an empty data directory, that joins through the
   * client fronts of the members not removed; returns its id, one above any id this cluster
   * has used.
   */
  async addMember(): Promise<number> {
    const id = Math.max(...this.members.map((m) => m.id)) + 1;
    const via = this.ids.map((x) => frontUrl(this.member(x)));
    await this.addMemberRecord(id, (await nodePorts(2)) as [number, number], via);
    this.startNode(id);
    return id;
  }

  /** Member `id` is about to be removed: its exit from now on is expected. */
  markLeaving(id: number): void {
    this.leaving.add(id);
  }

  /** The removal of `id` was refused: an exit is again a finding. */
  unmarkLeaving(id: number): void {
    this.leaving.delete(id);
  }

  /**
   * Member `id` was removed: it is never started again. Waits up to `timeoutMs` for its process
   * to stop by itself, then ends it; says whether it stopped by itself (or was already down).
   */
  async markRemoved(id: number, timeoutMs: number): Promise<boolean> {
    this.leaving.add(id);
    this.removed.add(id);
    const p = this.procs.get(id);
    if (p === undefined) return true;
    let timer: NodeJS.Timeout | undefined;
    const byItself = await Promise.race([
      new Promise<boolean>((r) => p.once('exit', () => r(true))),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(false), timeoutMs))),
    ]);
    clearTimeout(timer);
    if (!byItself) {
      if (this.state(id) === 'paused') this.resume(id);
      await this.kill(id);
    }
    return byItself;
  }

  endpoint(id: number): string {
    return `http://127.0.0.1:${this.member(id).clientPort}`;
  }

  private member(id: number): Member {
    const m = this.members.find((x) => x.id === id);
    if (m === undefined) throw new Error(`No member ${id}`);
    return m;
  }

  /**
   * The members node `id` is started with, each at its fronts: every bootstrap member for a
   * bootstrap node (the same list for all of them), itself alone for a member added during the
   * run, which learns the rest from the cluster.
   */
  private initialClusterFor(id: number): string {
    const self = this.member(id);
    const named = self.joinVia !== null ? [self] : this.members.filter((m) => m.joinVia === null);
    return named.map((m) => `${m.id}=127.0.0.1:${m.front.peer.port}@${frontUrl(m)}`).join(',');
  }

  async start(): Promise<void> {
    for (const m of this.members) this.startNode(m.id);
    await this.waitForLeader(30_000);
  }

  startNode(id: number): void {
    if (this.stopped || this.removed.has(id)) return;
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
      '--listen-peer',
      `127.0.0.1:${m.peerPort}`,
      '--listen-client',
      `127.0.0.1:${m.clientPort}`,
      ...(m.joinVia === null ? ['--cluster-id', 'chaos'] : ['--join', m.joinVia.join(',')]),
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
    if (this.o.placementEveryMs !== undefined)
      env['FLOTILLA_PLACEMENT_EVERY_MS'] = String(this.o.placementEveryMs);
    if (this.o.quiesce === true) env['FLOTILLA_QUIESCE'] = 'on';
    const child = spawn(process.execPath, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env,
      detached: this.o.ownProcessGroup === true,
    });
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
      if (this.states.get(id) !== 'down' && !this.leaving.has(id)) {
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

  /**
   * Cuts the directed link from -> to: what `from` sends to `to`, Raft traffic and requests
   * alike, is dropped at `to`'s fronts, and `from`'s connections there are torn down.
   */
  cut(from: number, to: number): void {
    if (from === to) throw new Error(`Cannot cut node ${from} from itself`);
    const { peer, client } = this.member(to).front;
    peer.cutFrom(from);
    client.cutFrom(from);
    this.cuts.add(`${from}>${to}`);
  }

  healLinks(): void {
    for (const m of this.members) {
      m.front.peer.healAll();
      m.front.client.healAll();
    }
    this.cuts.clear();
  }

  /** Every directed link currently cut, as "from->to". */
  cutLinks(): string[] {
    return [...this.cuts].map((k) => k.replace('>', '->'));
  }

  /**
   * Connections a front took as from no member, each front with its count and first reasons;
   * empty when every connection between members was told apart (so every cut was exact).
   */
  unattributed(): string[] {
    return this.members.flatMap((m) =>
      [m.front.peer, m.front.client]
        .filter((f) => f.stats().unknown > 0)
        .map((f) => `${f.label}: ${f.stats().unknown} (${f.unknownReasons().join('; ')})`),
    );
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
    // Removed members too: one may still be running (cut off, it never learned).
    const all = this.members.map((m) => m.id);
    for (const id of all) this.resume(id);
    await Promise.all(all.map((id) => this.kill(id)));
    await Promise.all(this.members.flatMap((m) => [m.front.peer.close(), m.front.client.close()]));
    if (!this.o.keepData) rmSync(this.dir, { recursive: true, force: true });
  }
}
