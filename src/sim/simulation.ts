// The deterministic cluster simulator (in the manner of FoundationDB's simulation and
// TigerBeetle's VOPR): each node is the production RaftRuntime with the production key-value
// state machine and sessions, on a virtual clock, network and disk, all driven from one seed.
// A run has a phase with the seed's faults, then a fault-free liveness phase; the checkers run
// after every event and a failure names the command that replays it.
//
// The runtime is asynchronous, and the simulator keeps it deterministic by owning every source
// of completion: timers, disk writes and deliveries are events in its queue, and after each
// event the run loop lets every promise continuation settle (microtasks only; nothing on the
// simulated path touches a real timer, clock, I/O or Math.random) before taking the next one.

import {
  createRng,
  type Entry,
  type Message,
  type RaftNode,
  type Ready,
  type Rng,
} from '../raft/index.js';
import type { RuntimeEvent } from '../host/runtime-options.js';
import { ClientChecker, SafetyChecker } from './checker.js';
import { SimError } from './errors.js';
import { EventQueue } from './event-queue.js';
import { Faults } from './faults.js';
import { ClientHistory } from './history.js';
import { captureImages, Invariants } from './invariants.js';
import { converged, Liveness } from './liveness.js';
import { Workload, type Counted, type WorkloadHost } from './workload.js';
import { LinkTable, SimNetwork } from './network.js';
import { runtimeOptions } from './node-config.js';
import { clientSession } from './ops.js';
import {
  drawMoveProfile,
  drawProfile,
  drawRangeProfile,
  electionTimeoutMs,
  type Profile,
} from './profile.js';
import { replayCommand } from './replay.js';
import { Mover } from './mover.js';
import { defaultNodeFactory, defaultRuntimeFactory, SimNode, type NodeHost } from './sim-node.js';
import { walDisks } from './wal-disk.js';
import type { RangeHost } from './workload.js';
import { FIRST_ALLOCATED_RANGE } from '../ranges/types.js';
import type { RangeMap } from '../ranges/range-map.js';
import type { MetaService } from '../server/meta-service.js';
import { Trace } from './trace.js';
import type { SimEvent, SimOptions, SimResult, SimStats } from './types.js';

export type { SimEvent, SimOptions, SimResult, SimStats } from './types.js';
export { replayCommand, type ReplayOptions } from './replay.js';

const DEFAULT_MAX_EVENTS = 400_000;
/** Election timeouts a finished run goes on for, at most, for its replicas to apply alike. */
const CONVERGE_TIMEOUTS = 20;

/** The bound on one move step's request, and on a whole move (the product's: ten of them). */
const MOVE_REQUEST_TIMEOUT_MS = 1_000;
/** A learner is promoted once this close to the leader's log (learnerPromoteLagEntries). */
const MOVE_LAG_ENTRIES = 8;

export function runSeed(options: SimOptions): Promise<SimResult> {
  return new Simulation(options).run();
}

/** Lets every promise continuation queued so far, and those they queue, run. */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

export class Simulation implements NodeHost, WorkloadHost {
  readonly profile: Profile;
  readonly nodes: SimNode[] = [];
  readonly checker = new SafetyChecker();
  readonly clients = new ClientChecker(this.checker);
  readonly history = new ClientHistory();
  nowMs = 0;
  /** The liveness phase has begun: the faults healed and no new one starts. */
  inLiveness = false;
  private readonly queue = new EventQueue<SimEvent>();
  private readonly links: LinkTable;
  private readonly network: SimNetwork;
  private readonly faults: Faults;
  private readonly invariants: Invariants;
  private readonly liveness: Liveness;
  private readonly workload: Workload;
  private readonly trace: Trace;
  /** With ranges: the clients' view of the meta group (new ids), and the cluster's voters. */
  readonly ranges: RangeHost | null;
  private nextRange = FIRST_ALLOCATED_RANGE;
  /** With meta: whether the nodes run the meta group. */
  private readonly meta: boolean;
  private readonly stats: SimStats = {
    events: 0,
    virtualMs: 0,
    messages: 0,
    dropped: 0,
    elections: 0,
    crashes: 0,
    wipes: 0,
    partitions: 0,
    snapshots: 0,
    committed: 0,
    writesDone: 0,
    retries: 0,
    deduped: 0,
    readsOk: 0,
    readsFailed: 0,
    confChanges: 0,
    snapshotChunks: 0,
    snapshotInstalls: 0,
    snapshotResumes: 0,
    splits: 0,
    splitsRefused: 0,
    wrongRange: 0,
    moves: 0,
    moveSteps: 0,
    movesAbandoned: 0,
    movesBeside: 0,
    splitsRecorded: 0,
    straysRemoved: 0,
    votersRecorded: 0,
    marksRecorded: 0,
    quiesces: 0,
    wakes: 0,
    silenceWakes: 0,
    comebackWakes: 0,
    imagesCompared: 0,
  };

  constructor(private readonly options: SimOptions) {
    if (!Number.isSafeInteger(options.seed) || options.seed < 0 || options.seed > 0xffffffff) {
      throw new SimError(
        'INVALID_OPTION',
        `seed must be an integer in [0, 2^32), got ${options.seed}`,
      );
    }
    const root = createRng(options.seed);
    const child = (): Rng => createRng(root.int(0x100000000));
    // Range seeds draw their range fields from a source of their own: the rest of the profile
    // is the seed's as it is without ranges.
    const rangeDraws =
      options.ranges === true ? drawRangeProfile(createRng(options.seed ^ 0x52414e47)) : {};
    if (options.moves === true && options.ranges !== true)
      throw new SimError('INVALID_OPTION', 'moves need ranges (--ranges --moves)');
    if (options.meta === true && options.ranges !== true)
      throw new SimError('INVALID_OPTION', 'the meta group needs ranges (--ranges --meta)');
    this.meta = options.meta === true;
    // Moves draw theirs from another source again: a seed with ranges alone is unchanged.
    const moveRng = createRng(options.seed ^ 0x4d4f5645);
    const moveDraws = options.moves === true ? drawMoveProfile(moveRng) : {};
    const overrides = {
      ...rangeDraws,
      ...moveDraws,
      ...options.profile,
      ...(options.nodes ? { nodes: options.nodes } : {}),
    };
    this.profile = drawProfile(child(), overrides);
    // The product always runs the meta group: a wiped node learns from its map the ranges a
    // move gave it, which nothing in its own logs names (node-recovery.ts).
    if (this.profile.moveEveryMs > 0 && this.profile.wipeEveryMs > 0 && !this.meta)
      throw new SimError(
        'INVALID_OPTION',
        'moves with disk wipes need the meta group (--ranges --moves --meta): a wiped node learns the ranges moved to it from its map',
      );
    const netRng = child();
    const faultRng = child();
    const workloadRng = child();
    const p = this.profile;
    this.links = new LinkTable(p.nodes);
    this.trace = new Trace(options.keepTrace === true, options.log ?? null);
    const voters = Array.from({ length: p.nodes }, (_, i) => i + 1);
    // The product's WAL over a simulated file system, unless a test asks for another disk.
    const createDisk = options.createDisk ?? walDisks(options.seed);
    for (const id of voters) {
      // Clock drift: each node's clock runs up to tickSkew faster or slower than virtual time.
      const clockScale = 1 + (faultRng.float() * 2 - 1) * p.tickSkew;
      this.nodes.push(
        new SimNode({
          id,
          voters,
          runtime: runtimeOptions(p),
          createNode: options.createNode ?? defaultNodeFactory,
          startRuntime: options.startRuntime ?? defaultRuntimeFactory,
          disk: createDisk(id),
          seed: root.int(0x100000000),
          clockScale,
          host: this,
          ranges: p.ranges > 0,
          ...(options.plantRange === undefined ? {} : { plantRange: options.plantRange }),
          ...(options.plantKv === undefined ? {} : { plantKv: options.plantKv }),
          moves: p.moveEveryMs > 0,
          ...(options.plantRetire === undefined ? {} : { plantRetire: options.plantRetire }),
          plantTakeUpRecovering: options.plantTakeUpRecovering === true,
          plantWipedRangesVote: options.plantWipedRangesVote === true,
          meta: this.meta,
          ...(options.plantMeta === undefined ? {} : { plantMeta: options.plantMeta }),
        }),
      );
    }
    this.ranges =
      p.ranges > 0
        ? {
            voters,
            meta: this.meta,
            allocate: () =>
              this.nextRange - FIRST_ALLOCATED_RANGE + 1 < p.ranges ? this.nextRange++ : null,
            maxCommittedOf: (group) => this.invariants.checkerOf(group).maxCommitted,
            splitReplicas: (d, applied) => {
              if (p.moveEveryMs === 0) return voters;
              if (d.id !== 0) return applied;
              // Three of range 0's voters, so a move has somewhere to go.
              const left = [...voters];
              const chosen: number[] = [];
              while (chosen.length < 3)
                chosen.push(left.splice(moveRng.int(left.length), 1)[0] as number);
              return chosen.sort((a, b) => a - b);
            },
          }
        : null;
    const concurrentMoves = options.concurrentMoves ?? 1;
    if (!Number.isSafeInteger(concurrentMoves) || concurrentMoves < 1 || concurrentMoves > 8)
      throw new SimError(
        'INVALID_OPTION',
        `concurrent moves must be an integer from 1 to 8, got ${concurrentMoves}`,
      );
    // The first mover draws from moveRng, as a single one always did; the others from their own.
    const movers: Mover[] = [];
    if (p.moveEveryMs > 0)
      for (let k = 0; k < concurrentMoves; k++)
        movers.push(
          new Mover(
            k === 0 ? moveRng : createRng((options.seed ^ 0x4d4f5645) + k * 0x9e3779b1),
            this.moverHost(movers),
            {
              ...(options.replicaStep === undefined ? {} : { step: options.replicaStep }),
              lagEntries: MOVE_LAG_ENTRIES,
              moveTimeoutMs: 10 * MOVE_REQUEST_TIMEOUT_MS,
              requestTimeoutMs: MOVE_REQUEST_TIMEOUT_MS,
            },
          ),
        );
    this.workload = new Workload(p, workloadRng, this, options.writeSession ?? clientSession);
    this.network = new SimNetwork(this, {
      profile: p,
      links: this.links,
      rng: netRng,
      stats: this.stats,
    });
    const ranges = p.ranges > 0;
    // Membership churn's source is drawn from the fault stream here, its last draw at setup.
    this.faults = new Faults(this, {
      profile: p,
      nodes: this.nodes,
      rng: faultRng,
      links: this.links,
      workload: this.workload,
      trace: this.trace,
      stats: this.stats,
      movers,
      ranges,
      meta: this.meta,
      plantWipedRangesVote: options.plantWipedRangesVote === true,
    });
    this.invariants = new Invariants(this, {
      nodes: this.nodes,
      checker: this.checker,
      clients: this.clients,
      stats: this.stats,
      faults: this.faults,
      voters,
      ranges,
      meta: this.meta,
      moves: movers.length > 0,
      leaseReads: p.checkQuorum && p.leaseReadRatio > 0,
    });
    this.liveness = new Liveness(this, {
      profile: p,
      nodes: this.nodes,
      checker: this.checker,
      workload: this.workload,
      faults: this.faults,
      voters,
      ranges,
      meta: this.meta,
    });
  }

  node(id: number): SimNode {
    const n = this.nodes[id - 1];
    if (n === undefined) throw new SimError('HARNESS', `no node ${id}`);
    return n;
  }

  schedule(delayMs: number, event: SimEvent): void {
    this.queue.push(this.nowMs + Math.max(0, Math.round(delayMs)), event);
  }

  async run(): Promise<SimResult> {
    await this.boot();
    while (!this.liveness.finished && this.checker.violations.length === 0) {
      if (!(await this.step())) break;
    }
    if (this.liveness.finished && this.checker.violations.length === 0) {
      await this.converge();
      if (this.checker.violations.length === 0) await this.compareImages();
    }
    return this.result();
  }

  /**
   * Runs the next event and the checks after it; false when there is none or the budget ran
   * out. The phases after the run (converge, compareImages) are bounded in virtual time and
   * not `budgeted`: a seed that finished near the budget must not fail for being compared.
   */
  private async step(budgeted = true): Promise<boolean> {
    const item = this.queue.pop();
    if (item === undefined) return false;
    const ev = item.event;
    // A cancelled timer or a dead incarnation's completion is not an event.
    if ((ev.kind === 'timer' || ev.kind === 'disk') && !this.node(ev.node).pending(ev.gen, ev.id))
      return true;
    this.nowMs = item.timeMs;
    this.invariants.setNow(item.timeMs);
    const maxEvents = this.options.maxEvents ?? DEFAULT_MAX_EVENTS;
    if (++this.stats.events > maxEvents && budgeted) {
      this.checker.report('liveness', `event budget of ${maxEvents} exhausted`);
      return false;
    }
    this.trace.record(item.timeMs, ev);
    this.guard('event', () => this.handle(ev));
    await settle();
    this.guard('check', () => this.invariants.afterEvent());
    return true;
  }

  /**
   * Once the run is done: runs on, faults healed and no client writing, until in every group
   * each member the leader replicates to has applied as far as the leader committed, for at
   * most CONVERGE_TIMEOUTS election timeouts (what has not converged by then is compared
   * where it stands: replicas at the same index still must agree).
   */
  private async converge(): Promise<void> {
    const untilMs = this.nowMs + CONVERGE_TIMEOUTS * electionTimeoutMs(this.profile);
    while (this.checker.violations.length === 0 && !converged(this.upNodes())) {
      if (this.queue.peekTimeMs() > untilMs || !(await this.step(false))) return;
    }
  }

  /**
   * State machine safety on the replicas themselves: in every group, two members that applied
   * through the same index hold the same state (the whole machine, sessions included), read
   * as a backup reads it. The checks during the run look at what the core hands out and at
   * snapshot images; a replica that applied a command wrongly is seen only here.
   */
  private async compareImages(): Promise<void> {
    const { images, reads } = captureImages(this.upNodes());
    let read = false;
    const all = Promise.all(reads).then(() => {
      read = true;
    });
    all.catch((err: unknown) => this.fail('state capture', err));
    const untilMs = this.nowMs + CONVERGE_TIMEOUTS * electionTimeoutMs(this.profile);
    await settle();
    while (!read && this.checker.violations.length === 0) {
      if (this.queue.peekTimeMs() > untilMs || !(await this.step(false))) break;
    }
    if (this.checker.violations.length > 0) return;
    if (!read) {
      this.checker.report(
        'liveness',
        "the replicas' states, captured at the end, were not read out",
      );
      return;
    }
    this.invariants.compareImages(images);
  }

  /** Runs `fn`, reporting what it throws as a failure of the code under test or the harness. */
  private guard(what: string, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.fail(what, err);
    }
  }

  fail(what: string, err: unknown): void {
    const e = err instanceof Error ? err : new Error(String(err));
    const where = e instanceof SimError ? `simulator ${e.code}` : `${what}: ${e.name}`;
    this.checker.report('core-failure', `${where}: ${e.message}`);
  }

  private async boot(): Promise<void> {
    for (const n of this.nodes) this.startNode(n);
    this.faults.start();
    this.workload.start();
    this.queue.push(this.profile.faultPhaseMs, { kind: 'liveness' });
    await settle();
  }

  startNode(n: SimNode): void {
    n.start().catch((err: unknown) => this.fail(`start of node ${n.id}`, err));
  }

  private moverHost(movers: readonly Mover[]): ConstructorParameters<typeof Mover>[1] {
    return {
      nodes: this.nodes,
      movedElsewhere: (self) => movers.flatMap((m) => (m === self ? [] : (m.moving() ?? []))),
      now: () => this.nowMs,
      fail: (what, err) => this.fail(what, err),
      note: (line) => this.trace.note(this.nowMs, line),
      count: (what) => this.stats[what]++,
    };
  }

  private handle(ev: SimEvent): void {
    switch (ev.kind) {
      case 'timer':
      case 'disk':
        this.node(ev.node).fire(ev.gen, ev.id);
        return;
      case 'deliver':
        return this.network.deliver(ev.msg, ev.attachment, ev.toGen, ev.group ?? 0);
      case 'crash':
        return this.faults.onCrash();
      case 'wipe':
        return this.faults.onWipe();
      case 'restart':
        return this.faults.onRestart(ev.node);
      case 'partition':
        return this.faults.onPartition();
      case 'heal':
        this.links.healAll();
        return;
      case 'transfer':
        return this.faults.onTransfer();
      case 'membership':
        return this.faults.onMembership();
      case 'move':
        return this.faults.onMove();
      case 'move-step':
        return this.faults.onMoveStep();
      case 'client':
        return this.workload.onClientEvent(ev.client, ev.token);
      case 'liveness':
        return this.onLivenessStart();
      case 'probe':
        return this.liveness.probe();
    }
  }

  /** Every committed entry of every group is durable on a majority. */
  checkAllDurable(): void {
    this.invariants.checkAllDurable();
  }

  // -------------------------------------------------------------------------------------------
  // Liveness phase: faults heal; a leader and every retried proposal must follow in bounded time.

  private onLivenessStart(): void {
    this.inLiveness = true;
    this.liveness.begin();
    this.links.healAll();
    for (const n of this.nodes) if (!n.up) this.faults.onRestart(n.id);
    this.workload.stopIssuing();
    this.trace.note(this.nowMs, 'liveness phase: faults healed');
    this.schedule(this.profile.tickMs, { kind: 'probe' });
  }

  // -------------------------------------------------------------------------------------------
  // NodeHost: what the nodes report

  scheduleCallback(node: SimNode, kind: 'timer' | 'disk', delayMs: number, id: number): void {
    this.schedule(delayMs, { kind, node: node.id, gen: node.gen, id });
  }

  send(from: number, m: Message, attachment: Uint8Array | null, group = 0): void {
    this.network.send(from, m, attachment, group);
  }

  diskLatencyMs(): number {
    return this.faults.diskLatencyMs();
  }

  onRuntimeEvent(node: SimNode, ev: RuntimeEvent, group = 0): void {
    if (ev.kind === 'fatal') {
      this.fail(`runtime of node ${node.id}`, ev.error);
      return;
    }
    if (ev.kind === 'snapshot-saved') this.stats.snapshots++;
    if (ev.kind === 'snapshot-restored') this.stats.snapshotInstalls++;
    if (ev.kind !== 'raft') return;
    const e = ev.event;
    if (e.kind === 'become-leader') {
      this.stats.elections++;
      this.invariants.onLeader(e.node, e.term, group);
    }
    if (e.kind === 'quiesced') this.stats.quiesces++;
    if (e.kind === 'woke') this.stats.wakes++;
    if (e.kind === 'woke' && / silent for \d+ ticks$/.test(e.reason)) this.stats.silenceWakes++;
    if (e.kind === 'woke' && e.reason.endsWith(' is heard again')) this.stats.comebackWakes++;
    if (this.trace.verbose)
      this.trace.note(
        this.nowMs,
        `node ${e.node}${group === 0 ? '' : ` range ${group}`} ${e.kind} term=${e.term} ${e.reason}`,
      );
  }

  onReady(node: SimNode, raft: RaftNode, rd: Ready, group = 0): void {
    this.invariants.onReady(node, raft, rd, group);
  }

  onTaken(node: SimNode, entries: readonly Entry[], group = 0): void {
    this.invariants.onApplyEntries(node, entries, group);
  }

  onPersist(_node: SimNode, entry: Entry, group = 0): void {
    this.invariants.onPersist(entry, group);
  }

  afterPersist(_node: SimNode, group = 0): void {
    this.invariants.afterPersist(group);
  }

  onApply(...args: Parameters<NodeHost['onApply']>): void {
    this.invariants.onApply(...args);
  }

  metaOf(from: number, to: number): MetaService | null {
    const n = this.nodes[to - 1];
    if (n === undefined || this.links.blocked(from, to) || this.links.blocked(to, from))
      return null;
    return n.meta?.service ?? null;
  }

  onMetaApplied(node: SimNode, map: RangeMap | null): void {
    this.invariants.onMetaApplied(node, map);
  }

  onSnapshot(node: SimNode, index: number, image: Uint8Array, group = 0): void {
    this.invariants.onSnapshot(node, index, image, group);
  }

  // WorkloadHost
  upNodes(): SimNode[] {
    return this.nodes.filter((n) => n.up);
  }

  count(what: Counted): void {
    this.stats[what]++;
  }

  private result(): SimResult {
    if (this.checker.violations.length === 0) {
      this.invariants.checkAllLogs();
      this.invariants.checkAllDurable();
      this.clients.finish();
    }
    if (this.checker.violations.length === 0) {
      this.guard('history', () => {
        const problem = this.history.check();
        if (problem !== null) this.checker.report('linearizability', problem);
      });
    }
    this.stats.virtualMs = this.nowMs;
    for (const n of this.nodes) {
      const c = n.repairCounts();
      this.stats.straysRemoved += c.straysRemoved;
      this.stats.votersRecorded += c.votersRecorded;
      this.stats.marksRecorded += c.marksRecorded;
    }
    const violations = this.checker.violations;
    return {
      seed: this.options.seed,
      ok: violations.length === 0,
      profile: this.profile,
      violations,
      stats: { ...this.stats },
      traceHash: this.trace.hash,
      trace: this.trace.lines,
      replay: replayCommand(this.options.seed, {
        nodes: this.options.nodes,
        ranges: this.options.ranges === true,
        moves: this.options.moves === true,
        concurrentMoves: this.options.concurrentMoves,
        meta: this.meta,
        quiesce: this.profile.quiesce,
        impatient: this.profile.attemptTimeoutElections === 1,
        wipeEveryMs: this.options.profile?.wipeEveryMs,
        membershipEveryMs: this.options.profile?.membershipEveryMs,
      }),
    };
  }
}
