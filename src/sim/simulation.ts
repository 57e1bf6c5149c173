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
import { FlotillaError } from '../base/errors.js';
import type { RaftRuntime } from '../host/runtime.js';
import type { RuntimeEvent } from '../host/runtime-options.js';
import { ClientChecker, SafetyChecker, type DiskView } from './checker.js';
import { SimError } from './errors.js';
import { EventQueue } from './event-queue.js';
import { ClientHistory } from './history.js';
import { Workload, type Counted, type WorkloadHost } from './workload.js';
import { ConfChecker, proposeRandomChange } from './membership.js';
import { LinkTable } from './network.js';
import { clientSession, type ClientWrite } from './ops.js';
import {
  drawMoveProfile,
  drawProfile,
  drawRangeProfile,
  leaseDriftTicks,
  type ClusterSize,
  type Profile,
} from './profile.js';
import {
  latestDescriptors,
  rangeMapProblem,
  replicasProblem,
  retiredServingProblem,
} from './range-checks.js';
import { Mover } from './mover.js';
import { defaultNodeFactory, defaultRuntimeFactory, SimNode, type NodeHost } from './sim-node.js';
import { walDisks, WalNodeDisk } from './wal-disk.js';
import type { RangeHost } from './workload.js';
import { FIRST_ALLOCATED_RANGE, META_GROUP, type RangeDescriptor } from '../ranges/types.js';
import type { RangeMap } from '../ranges/range-map.js';
import type { MetaService } from '../server/meta-service.js';
import { metaAgreementProblem, metaMapProblem } from './sim-meta.js';
import { Trace } from './trace.js';
import type { SimEvent, SimOptions, SimResult, SimStats } from './types.js';

/** Bytes of one snapshot chunk in the simulator (the product's default is 1 MiB). */
const SIM_SNAPSHOT_CHUNK_BYTES = 256;

export type { SimEvent, SimOptions, SimResult, SimStats } from './types.js';

const DEFAULT_MAX_EVENTS = 400_000;
/** Events between full pairwise log comparisons (the incremental checks run every event). */
const FULL_CHECK_EVERY = 512;
/** Election timeouts a finished run goes on for, at most, for its replicas to apply alike. */
const CONVERGE_TIMEOUTS = 20;

/** What the command line can set, and so what a replay command must repeat. */
export interface ReplayOptions {
  readonly nodes?: ClusterSize | undefined;
  readonly ranges?: boolean;
  readonly moves?: boolean;
  readonly meta?: boolean;
  readonly quiesce?: boolean;
  /** Clients that give up an attempt after one election timeout (`--impatient`). */
  readonly impatient?: boolean;
  /** Only when asked for (`--wipe-every`): a drawn wipe rate is the seed's own. */
  readonly wipeEveryMs?: number | undefined;
  /** Membership churn (`--membership-every`, which turns wipes off); never drawn. */
  readonly membershipEveryMs?: number | undefined;
}

export function replayCommand(seed: number, o: ReplayOptions = {}): string {
  const flags = [
    `--seed ${seed}`,
    ...(o.nodes === undefined ? [] : [`--nodes ${o.nodes}`]),
    ...(o.membershipEveryMs !== undefined && o.membershipEveryMs > 0
      ? [`--membership-every ${o.membershipEveryMs}`]
      : o.wipeEveryMs === undefined || o.wipeEveryMs === 0
        ? []
        : [`--wipe-every ${o.wipeEveryMs}`]),
    ...(o.ranges === true ? ['--ranges'] : []),
    ...(o.moves === true ? ['--moves'] : []),
    ...(o.meta === true ? ['--meta'] : []),
    ...(o.quiesce === true ? ['--quiesce'] : []),
    ...(o.impatient === true ? ['--impatient'] : []),
    '--verbose',
  ];
  return `npm run sim -- ${flags.join(' ')}`;
}

/** A move's steps are looked at this often (the product's leader: every 50 ms). */
const MOVE_STEP_MS = 50;
/** The bound on one move step's request, and on a whole move (the product's: ten of them). */
const MOVE_REQUEST_TIMEOUT_MS = 1_000;
/** A learner is promoted once this close to the leader's log (learnerPromoteLagEntries). */
const MOVE_LAG_ENTRIES = 8;
/** How long the map may take past the other liveness bounds to agree with the ranges. */
const META_SETTLE_MS = 10_000;

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
  private readonly queue = new EventQueue<SimEvent>();
  private readonly links: LinkTable;
  /** The first chunk (offset 0) of a transfer each leader>follower pair sent last (stats). */
  private readonly firstChunks = new Map<string, { id: string; length: number }>();
  private readonly netRng: Rng;
  private readonly faultRng: Rng;
  /** Membership churn draws from its own source, made only when churn is on. */
  private readonly churnRng: Rng | null;
  private readonly confs: ConfChecker;
  private readonly workload: Workload;
  private readonly trace: Trace;
  private readonly newLeaders: { node: number; term: number; group: number }[] = [];
  /** The nodes hold leases (lease reads with check-quorum): their overlap is checked. */
  private readonly leaseReads: boolean;
  /** Nodes whose data directory was wiped and that have not caught up since. */
  private readonly wiped = new Set<number>();
  /** Committed indexes a write in progress replaces, by group: rechecked once it lands. */
  private readonly overwritten = new Map<number, number[]>();
  /** Each Raft group's safety checker (group 0's is `checker`), all reporting into one list. */
  private readonly groupCheckers = new Map<number, SafetyChecker>([[0, this.checker]]);
  /** With ranges: the clients' view of the meta group (new ids), and the cluster's voters. */
  readonly ranges: RangeHost | null;
  private nextRange = FIRST_ALLOCATED_RANGE;
  /** With moves: the mover, and each range's configurations (for durability), by group. */
  private readonly mover: Mover | null;
  private readonly rangeConfs = new Map<number, ConfChecker>();
  /** Each range's newest descriptor any node applied so far in the run (the range-map check). */
  private readonly newestRanges = new Map<number, RangeDescriptor>();
  /** With meta: the map each node's meta machine applied last, and in which incarnation. */
  private readonly lastMaps = new Map<number, { gen: number; map: RangeMap | null }>();
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
    splitsRecorded: 0,
    quiesces: 0,
    wakes: 0,
    silenceWakes: 0,
    comebackWakes: 0,
    imagesCompared: 0,
  };
  private inLiveness = false;
  private livenessStartMs = 0;
  private leaderSeenMs = -1;
  private finished = false;

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
    this.netRng = child();
    this.faultRng = child();
    const workloadRng = child();
    const p = this.profile;
    this.links = new LinkTable(p.nodes);
    this.trace = new Trace(options.keepTrace === true, options.log ?? null);
    const voters = Array.from({ length: p.nodes }, (_, i) => i + 1);
    // The product's WAL over a simulated file system, unless a test asks for another disk.
    const createDisk = options.createDisk ?? walDisks(options.seed);
    for (const id of voters) {
      // Clock drift: each node's clock runs up to tickSkew faster or slower than virtual time.
      const clockScale = 1 + (this.faultRng.float() * 2 - 1) * p.tickSkew;
      this.nodes.push(
        new SimNode({
          id,
          voters,
          runtime: {
            tickMs: p.tickMs,
            electionTicks: p.electionTicks,
            heartbeatTicks: p.heartbeatTicks,
            snapshotEveryEntries: p.snapshotEvery === 0 ? Number.MAX_SAFE_INTEGER : p.snapshotEvery,
            // Half the profiles snapshot at every multiple, half by the product's size rule:
            // derived from the interval, so no seed's other draws move.
            snapshotLogRatio: p.snapshotEvery % 2 === 0 ? 0 : 0.5,
            raft: {
              preVote: p.preVote,
              checkQuorum: p.checkQuorum,
              ...(p.checkQuorum && p.leaseReadRatio > 0
                ? { leaseDriftTicks: leaseDriftTicks(p) }
                : {}),
              maxEntriesPerMsg: p.maxEntriesPerMsg,
              maxInflightMsgs: p.maxInflightMsgs,
              ...(p.quiesce ? { quiesce: true } : {}),
              commitOnTick: p.commitOnTick,
              readRoundsToQuorum: p.readRoundsToQuorum,
              // Small, so that every snapshot sent travels in many chunks and transfers are
              // cut by crashes, partitions and leader changes: resuming is exercised in every
              // seed that sends one.
              snapshotChunkBytes: SIM_SNAPSHOT_CHUNK_BYTES,
            },
          },
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
            maxCommittedOf: (group) => this.checkerOf(group).maxCommitted,
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
    this.mover =
      p.moveEveryMs > 0
        ? new Mover(moveRng, this.moverHost(), {
            ...(options.replicaStep === undefined ? {} : { step: options.replicaStep }),
            lagEntries: MOVE_LAG_ENTRIES,
            moveTimeoutMs: 10 * MOVE_REQUEST_TIMEOUT_MS,
            requestTimeoutMs: MOVE_REQUEST_TIMEOUT_MS,
          })
        : null;
    this.workload = new Workload(p, workloadRng, this, options.writeSession ?? clientSession);
    this.confs = new ConfChecker(voters);
    this.leaseReads = p.checkQuorum && p.leaseReadRatio > 0;
    this.churnRng = p.membershipEveryMs > 0 ? createRng(this.faultRng.int(0x100000000)) : null;
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
    while (!this.finished && this.checker.violations.length === 0) {
      if (!(await this.step())) break;
    }
    if (this.finished && this.checker.violations.length === 0) {
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
    for (const c of this.groupCheckers.values()) c.nowMs = item.timeMs;
    const maxEvents = this.options.maxEvents ?? DEFAULT_MAX_EVENTS;
    if (++this.stats.events > maxEvents && budgeted) {
      this.checker.report('liveness', `event budget of ${maxEvents} exhausted`);
      return false;
    }
    this.trace.record(item.timeMs, ev);
    this.guard('event', () => this.handle(ev));
    await settle();
    this.guard('check', () => this.afterEvent());
    return true;
  }

  /**
   * Once the run is done: runs on, faults healed and no client writing, until in every group
   * each member the leader replicates to has applied as far as the leader committed, for at
   * most CONVERGE_TIMEOUTS election timeouts (what has not converged by then is compared
   * where it stands: replicas at the same index still must agree).
   */
  private async converge(): Promise<void> {
    const untilMs = this.nowMs + CONVERGE_TIMEOUTS * this.electionTimeoutMs();
    while (this.checker.violations.length === 0 && !this.converged()) {
      if (this.queue.peekTimeMs() > untilMs || !(await this.step(false))) return;
    }
  }

  private converged(): boolean {
    const byGroup = new Map<number, RaftRuntime[]>();
    for (const n of this.upNodes())
      for (const [g, rt] of n.runtimes()) byGroup.set(g, [...(byGroup.get(g) ?? []), rt]);
    for (const rts of byGroup.values()) {
      // The leader of the newest term: an old one cut off may not have stepped down yet.
      const leader = rts
        .filter((rt) => rt.isLeader())
        .reduce<RaftRuntime | undefined>(
          (a, b) => (a === undefined || b.term() > a.term() ? b : a),
          undefined,
        );
      if (leader === undefined) return false;
      const st = leader.status();
      if (leader.appliedIndex() < st.commit) return false;
      for (const rt of rts) {
        if (st.progress[rt.id] !== undefined && rt.appliedIndex() !== leader.appliedIndex())
          return false;
      }
    }
    return true;
  }

  /**
   * State machine safety on the replicas themselves: in every group, two members that applied
   * through the same index hold the same state (the whole machine, sessions included), read
   * as a backup reads it. The checks during the run look at what the core hands out and at
   * snapshot images; a replica that applied a command wrongly is seen only here.
   */
  private async compareImages(): Promise<void> {
    // Every state is captured now, at one instant; the chunks are made later, paced by the
    // nodes' clocks, so the simulation runs on while they are read.
    const images: { node: number; group: number; index: number; image: string | null }[] = [];
    const reads: Promise<void>[] = [];
    for (const n of this.upNodes()) {
      for (const [group, rt] of n.runtimes()) {
        let captured: ReturnType<RaftRuntime['captureApplied']>;
        try {
          captured = rt.captureApplied();
        } catch {
          continue; // installing a snapshot, or stopped: not at an index
        }
        const one = { node: n.id, group, index: captured.index, image: null as string | null };
        images.push(one);
        reads.push(
          (async () => {
            const parts: Buffer[] = [];
            for await (const c of captured.chunks) parts.push(Buffer.from(c));
            one.image = Buffer.concat(parts).toString('base64');
          })(),
        );
      }
    }
    let read = false;
    const all = Promise.all(reads).then(() => {
      read = true;
    });
    all.catch((err: unknown) => this.fail('state capture', err));
    const untilMs = this.nowMs + CONVERGE_TIMEOUTS * this.electionTimeoutMs();
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
    const seen = new Map<string, { node: number; image: string }>();
    for (const { node, group, index, image } of images) {
      const key = `${group}/${index}`;
      const first = seen.get(key);
      if (first === undefined) {
        seen.set(key, { node, image: image ?? '' });
        continue;
      }
      this.stats.imagesCompared++;
      if (first.image !== image) {
        this.checkerOf(group).report(
          'state-machine-safety',
          `at the end of the run, node ${node}'s state in group ${group} at index ${index} differs from node ${first.node}'s`,
        );
        return;
      }
    }
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
    const p = this.profile;
    for (const n of this.nodes) this.startNode(n);
    const jitter = (ms: number): number => ms * (0.5 + this.faultRng.float());
    if (p.partitionEveryMs > 0) this.schedule(jitter(p.partitionEveryMs), { kind: 'partition' });
    if (p.crashEveryMs > 0) this.schedule(jitter(p.crashEveryMs), { kind: 'crash' });
    if (p.wipeEveryMs > 0) this.schedule(jitter(p.wipeEveryMs), { kind: 'wipe' });
    if (p.transferEveryMs > 0) this.schedule(jitter(p.transferEveryMs), { kind: 'transfer' });
    if (p.membershipEveryMs > 0) {
      this.schedule(jitter(p.membershipEveryMs), { kind: 'membership' });
    }
    if (p.moveEveryMs > 0) {
      this.schedule(jitter(p.moveEveryMs), { kind: 'move' });
      this.schedule(MOVE_STEP_MS, { kind: 'move-step' });
    }
    this.workload.start();
    this.queue.push(p.faultPhaseMs, { kind: 'liveness' });
    await settle();
  }

  private startNode(n: SimNode): void {
    n.start().catch((err: unknown) => this.fail(`start of node ${n.id}`, err));
  }

  private handle(ev: SimEvent): void {
    switch (ev.kind) {
      case 'timer':
      case 'disk':
        this.node(ev.node).fire(ev.gen, ev.id);
        return;
      case 'deliver':
        return this.onDeliver(ev.msg, ev.attachment, ev.toGen, ev.group ?? 0);
      case 'crash':
        return this.onCrash();
      case 'wipe':
        return this.onWipe();
      case 'restart':
        return this.onRestart(ev.node);
      case 'partition':
        return this.onPartition();
      case 'heal':
        this.links.healAll();
        return;
      case 'transfer':
        return this.onTransfer();
      case 'membership':
        return this.onMembership();
      case 'move':
        return this.onMove();
      case 'move-step':
        return this.onMoveStep();
      case 'client':
        return this.workload.onClientEvent(ev.client, ev.token);
      case 'liveness':
        return this.onLivenessStart();
      case 'probe':
        return this.onProbe();
    }
  }

  private afterEvent(): void {
    while (this.newLeaders.length > 0) {
      const { node, term, group } = this.newLeaders.shift() as (typeof this.newLeaders)[0];
      const checker = this.checkerOf(group);
      checker.onLeader(node, term);
      const n = this.node(node);
      const log = group === 0 ? n : n.logOf(group);
      if (n.up && log !== null) checker.checkLeaderCompleteness(log, term);
    }
    if (this.leaseReads) this.checkLeases();
    if (this.confs.active()) this.checkConfigurations();
    if (this.mover !== null) {
      // After every event: a descriptor a node applied is seen even if every node holding it
      // is down at the next full check (a move leaves a stale removed replica running).
      latestDescriptors(this.nodes, this.newestRanges);
      this.checkMoves();
    }
    if (this.stats.events % FULL_CHECK_EVERY === 0) this.checkAllLogs();
  }

  /** After every event: no leader's lease holds past another node's election (lease reads). */
  private checkLeases(): void {
    for (const n of this.nodes) {
      if (!n.up) continue;
      this.checker.checkLease(n.id, n.raft.term(), n.runtime.leaseHoldsNow());
    }
  }

  /** Full log matching in every group, and (with ranges) the range map. */
  private checkAllLogs(): void {
    this.checker.checkLogsPairwise(this.nodes.filter((n) => n.up));
    if (this.ranges === null) return;
    for (const [group, checker] of this.groupCheckers) {
      if (group === 0) continue;
      checker.checkLogsPairwise(this.nodes.map((n) => n.logOf(group)).filter((l) => l !== null));
    }
    const problem = rangeMapProblem(this.nodes, this.ranges.voters, this.newestRanges);
    if (problem !== null) this.checker.report('range-map', problem);
  }

  /** Group `group`'s checker, made on first use. */
  checkerOf(group: number): SafetyChecker {
    let c = this.groupCheckers.get(group);
    if (c === undefined) {
      const name = this.meta && group === META_GROUP ? 'meta group' : `range ${group}`;
      c = new SafetyChecker(this.checker.violations, `${name}: `);
      c.nowMs = this.nowMs;
      this.groupCheckers.set(group, c);
    }
    return c;
  }

  // -------------------------------------------------------------------------------------------
  // Nodes, network and faults

  scheduleCallback(node: SimNode, kind: 'timer' | 'disk', delayMs: number, id: number): void {
    this.schedule(delayMs, { kind, node: node.id, gen: node.gen, id });
  }

  send(from: number, m: Message, attachment: Uint8Array | null, group = 0): void {
    this.stats.messages++;
    if (m.type === 'snapshot') this.stats.snapshotChunks++;
    // A follower's answer to a leader's first chunk (offset 0) that says it holds more: the
    // transfer resumes past byte 0 (after a restart, a leader change or a retry).
    if (m.type === 'snapshot-resp') {
      const first = this.firstChunks.get(`${m.to}>${from}`);
      if (first !== undefined && first.id === m.id && m.received > first.length)
        this.stats.snapshotResumes++;
      this.firstChunks.delete(`${m.to}>${from}`);
    }
    if (m.type === 'snapshot' && m.offset === 0)
      this.firstChunks.set(`${from}>${m.to}`, { id: m.id, length: m.length });
    const p = this.profile;
    const faulty = !this.inLiveness;
    if (this.links.blocked(from, m.to) || (faulty && this.netRng.float() < p.dropRate)) {
      this.stats.dropped++;
      return;
    }
    // A slow network is a fault too: once healed, a round trip fits well inside an election
    // timeout, as Raft's timing requirement asks (paper §5.6, broadcastTime << electionTimeout).
    const maxMs = faulty
      ? p.delayMaxMs
      : Math.min(p.delayMaxMs, Math.max(p.delayMinMs, this.healedDelayMaxMs()));
    const span = maxMs - p.delayMinMs + 1;
    const toGen = this.node(m.to).gen;
    const deliver: SimEvent = {
      kind: 'deliver',
      msg: m,
      attachment,
      toGen,
      ...(group === 0 ? {} : { group }),
    };
    this.schedule(p.delayMinMs + this.netRng.int(span), deliver);
    if (faulty && this.netRng.float() < p.dupRate) {
      this.schedule(p.delayMinMs + this.netRng.int(span), deliver);
    }
  }

  private onDeliver(m: Message, attachment: Uint8Array | null, toGen: number, group: number): void {
    const n = this.node(m.to);
    // A partition that began while the message was in flight also stops it, and so does a
    // crash of the receiver (its connections die with it; the transport drops what it had
    // queued for the dead process).
    if (!n.up || n.gen !== toGen || this.links.blocked(m.from, m.to)) {
      this.stats.dropped++;
      return;
    }
    n.deliver(m, attachment, group);
  }

  diskLatencyMs(): number {
    const p = this.profile;
    const maxMs = this.inLiveness
      ? Math.min(p.persistMaxMs, this.healedDelayMaxMs())
      : p.persistMaxMs;
    return maxMs === 0 ? 0 : this.faultRng.int(maxMs + 1);
  }

  /** Power loss on `n`: its runtime is abandoned and its clients see their requests fail. */
  private powerOff(n: SimNode): void {
    n.crash();
    this.workload.onNodeCrash(n.id);
  }

  private onCrash(): void {
    if (this.inLiveness) return;
    const p = this.profile;
    // Running or still starting: a crash during the WAL's recovery is a crash too.
    const up = this.nodes.filter((n) => n.up || n.starting);
    if (up.length > 0) {
      const victim = up[this.faultRng.int(up.length)] as SimNode;
      this.stats.crashes++;
      this.powerOff(victim);
      // Whatever was lost, every committed entry must still be durable on a majority.
      this.checkAllDurable();
      this.schedule(p.restartAfterMs * (0.5 + this.faultRng.float()), {
        kind: 'restart',
        node: victim.id,
      });
    }
    this.schedule(p.crashEveryMs * (0.5 + this.faultRng.float()), { kind: 'crash' });
  }

  /**
   * A node loses its whole data directory (DESIGN.md, "A node that lost its data"). Its disk
   * counts as holding everything until it has caught up, since the durability check is about
   * what the cluster can still lose; election safety, leader completeness and the applied
   * values prove the rule. Preconditions, as documented: the rest of the cluster is whole
   * when a disk is lost, that is every other node holds some log (with a majority of empty
   * logs the cluster looks brand new) and none is itself recovering.
   */
  private onWipe(): void {
    if (this.inLiveness) return;
    const p = this.profile;
    this.schedule(p.wipeEveryMs * (0.5 + this.faultRng.float()), { kind: 'wipe' });
    const victim = this.nodes[this.faultRng.int(this.nodes.length)] as SimNode;
    const othersWhole = this.nodes.every(
      (n) =>
        n === victim ||
        (n.disk.hasLog() &&
          n.disk.recovery !== 'recovering' &&
          (!n.up || n.raft.recovery() !== 'recovering') &&
          (this.ranges === null || !this.rangesRecovering(n))),
    );
    if (this.wiped.size > 0 || !othersWhole) return;
    this.stats.wipes++;
    this.wiped.add(victim.id);
    this.trace.note(this.nowMs, `node ${victim.id} data directory wiped`);
    // A node still starting is powered off too: its start reads the disk being wiped.
    if (victim.up || victim.starting) {
      this.powerOff(victim);
      this.schedule(p.restartAfterMs * (0.5 + this.faultRng.float()), {
        kind: 'restart',
        node: victim.id,
      });
    }
    victim.disk.wipe();
    // Every range that exists lost its data here too: each recovers as group 0 does.
    if (this.ranges !== null && victim.disk instanceof WalNodeDisk) {
      victim.disk.lostGroups.clear();
      for (const id of latestDescriptors(this.nodes).keys())
        if (id !== 0) victim.disk.lostGroups.add(id);
      if (this.meta) victim.disk.lostGroups.add(META_GROUP);
    }
  }

  /** Whether any of `n`'s range groups is still recovering a lost disk (on disk or running). */
  private rangesRecovering(n: SimNode): boolean {
    if (n.disk instanceof WalNodeDisk && n.disk.anyRecovering()) return true;
    if (this.meta && n.coreOf(META_GROUP)?.recovery() === 'recovering') return true;
    return n.groupIds().some((g) => n.coreOf(g)?.recovery() === 'recovering');
  }

  private onRestart(id: number): void {
    const n = this.node(id);
    // Running, or still starting (the WAL's recovery takes virtual time): one process at a time.
    if (n.up || n.starting) return;
    // The runtime's start-up rule for an empty data directory (DESIGN.md, "A node that lost
    // its data"): if any peer holds a log, the cluster exists and this node recovers.
    if (n.disk.isBlank() && this.nodes.some((o) => o !== n && o.disk.hasLog())) {
      n.disk.recovery = 'recovering';
    }
    this.startNode(n);
  }

  private onPartition(): void {
    if (this.inLiveness) return;
    const p = this.profile;
    const r = this.faultRng;
    this.links.healAll();
    if (p.oneWay && r.float() < 0.5) {
      // One-way cuts: a node may hear a leader it cannot answer (or the reverse).
      const cuts = 1 + r.int(p.nodes);
      for (let i = 0; i < cuts; i++) this.links.cutOneWay(1 + r.int(p.nodes), 1 + r.int(p.nodes));
    } else {
      const side = new Set<number>();
      const size = 1 + r.int(Math.floor(p.nodes / 2));
      while (side.size < size) side.add(1 + r.int(p.nodes));
      this.links.split(side);
    }
    this.stats.partitions++;
    this.trace.note(this.nowMs, `partition ${this.links.describe()}`);
    this.schedule(p.partitionForMs * (0.5 + r.float()), { kind: 'heal' });
    this.schedule(p.partitionEveryMs * (0.5 + r.float()), { kind: 'partition' });
  }

  private onTransfer(): void {
    if (this.inLiveness) return;
    const p = this.profile;
    // With ranges, the leadership of a range drawn among those the nodes run.
    const ids = this.groupIdsNow();
    const group = ids[this.ranges === null ? 0 : this.faultRng.int(ids.length)] ?? 0;
    const leaderOf = (n: SimNode): RaftRuntime | undefined => n.runtimeOf(group);
    const leader = this.nodes.find((n) => n.up && leaderOf(n)?.isLeader() === true);
    if (leader !== undefined) {
      let to = 1 + this.faultRng.int(p.nodes);
      if (to === leader.id) to = (to % p.nodes) + 1;
      try {
        leaderOf(leader)?.transferLeadership(to);
      } catch (err) {
        // Refused (the target is silent, or leadership just moved): as an operator would see.
        if (!(err instanceof FlotillaError)) throw err;
      }
    }
    this.schedule(p.transferEveryMs * (0.5 + this.faultRng.float()), { kind: 'transfer' });
  }

  /** Every group the nodes run now: group 0 alone, or every range known (and the meta group). */
  private groupIdsNow(): number[] {
    if (this.ranges === null) return [0];
    const ids = [...latestDescriptors(this.nodes).keys()];
    return this.meta ? [...ids, META_GROUP] : ids;
  }

  /** Asks the leader for a random membership change, as an operator would. */
  private onMembership(): void {
    if (this.inLiveness || this.churnRng === null) return;
    const p = this.profile;
    this.schedule(p.membershipEveryMs * (0.5 + this.churnRng.float()), { kind: 'membership' });
    if (proposeRandomChange(this.churnRng, this.nodes, (what, err) => this.fail(what, err)))
      this.stats.confChanges++;
  }

  /** Starts a move (fault phase only), as an operator or the placement loop would. */
  private onMove(): void {
    if (this.inLiveness || this.mover === null) return;
    this.schedule(this.profile.moveEveryMs * (0.5 + this.faultRng.float()), { kind: 'move' });
    this.mover.begin();
  }

  /** The move under way takes its next step; one finishing in the liveness phase may. */
  private onMoveStep(): void {
    if (this.mover === null) return;
    this.mover.next();
    if (!this.inLiveness || this.mover.active()) this.schedule(MOVE_STEP_MS, { kind: 'move-step' });
  }

  private moverHost(): ConstructorParameters<typeof Mover>[1] {
    return {
      nodes: this.nodes,
      now: () => this.nowMs,
      fail: (what, err) => this.fail(what, err),
      note: (line) => this.trace.note(this.nowMs, line),
      count: (what) => this.stats[what]++,
    };
  }

  /** Every range's voters n, n+1 or n; a range given up serves nowhere. */
  private checkMoves(): void {
    const replicas = replicasProblem(this.nodes);
    if (replicas !== null) this.checker.report('range-replicas', replicas);
    const retired = retiredServingProblem(this.nodes);
    if (retired !== null) this.checker.report('retired-serving', retired);
  }

  private checkConfigurations(): void {
    const problem = this.confs.checkNodes(this.nodes);
    if (problem !== null) this.checker.report('configuration', problem);
  }

  // -------------------------------------------------------------------------------------------
  // Liveness phase: faults heal; a leader and every retried proposal must follow in bounded time.

  private healedDelayMaxMs(): number {
    return Math.floor((this.profile.tickMs * this.profile.electionTicks) / 8);
  }

  private electionTimeoutMs(): number {
    return this.profile.tickMs * this.profile.electionTicks * (1 + this.profile.tickSkew);
  }

  private onLivenessStart(): void {
    this.inLiveness = true;
    this.livenessStartMs = this.nowMs;
    this.links.healAll();
    for (const n of this.nodes) if (!n.up) this.onRestart(n.id);
    this.workload.stopIssuing();
    this.trace.note(this.nowMs, 'liveness phase: faults healed');
    this.schedule(this.profile.tickMs, { kind: 'probe' });
  }

  private onProbe(): void {
    const elapsed = this.nowMs - this.livenessStartMs;
    // Bounds: randomized timeouts make a split vote repeat with probability < 1/2 per round
    // (paper §5.2), so 30 election timeouts bound a leader's arrival very loosely.
    const leaderBoundMs = 30 * 2 * this.electionTimeoutMs();
    if (this.leaderSeenMs < 0 && this.everyGroupLeads()) this.leaderSeenMs = this.nowMs;
    if (this.leaderSeenMs < 0 && elapsed > leaderBoundMs) {
      this.checker.report(
        'liveness',
        `no leader ${leaderBoundMs}ms after the faults healed${this.leaderless()}; ${this.describeNodes()}`,
      );
      return;
    }
    this.noteRecoveries();
    let pending =
      this.workload.pendingDescription() +
      (this.wiped.size > 0 ? ` wiped nodes not caught up: ${[...this.wiped].join(',')}` : '');
    if (this.leaderSeenMs >= 0 && pending === '' && this.profile.quiesce)
      pending = this.notQuiesced();
    // The map catches up with the ranges once everything else settled (the map repair).
    const unmapped = pending === '' && this.leaderSeenMs >= 0 ? this.metaDisagreement() : null;
    if (this.leaderSeenMs >= 0 && pending === '' && unmapped === null) {
      this.finished = true;
      return;
    }
    const opsBoundMs = leaderBoundMs + this.workload.retryBoundMs();
    if (unmapped !== null && elapsed > opsBoundMs + META_SETTLE_MS) {
      this.checker.report(
        'meta-agreement',
        `${opsBoundMs + META_SETTLE_MS}ms after the faults healed, ${unmapped}`,
      );
      return;
    }
    if (unmapped === null && elapsed > opsBoundMs) {
      this.checker.report(
        'liveness',
        `${opsBoundMs}ms after the faults healed, still pending: ${pending}; ${this.describeNodes()}`,
      );
      return;
    }
    this.schedule(this.profile.tickMs, { kind: 'probe' });
  }

  /**
   * With meta: null when every node's map agrees with the ranges' own newest descriptors
   * (bounds, generation and replicas; range 0's replicas are the cluster's voters); else the
   * first node whose map does not, and how.
   */
  private metaDisagreement(): string | null {
    if (!this.meta || this.ranges === null) return null;
    const voters = this.ranges.voters;
    const newest = new Map<number, RangeDescriptor>();
    for (const [id, d] of latestDescriptors(this.nodes))
      newest.set(id, d.replicas.length === 0 ? { ...d, replicas: voters } : d);
    for (const n of this.nodes) {
      const m = n.meta;
      if (m === null) return `node ${n.id} runs no meta group`;
      const problem = metaAgreementProblem(m.machine.map(), newest);
      if (problem !== null) return `node ${n.id}'s range map disagrees with the ranges: ${problem}`;
    }
    return null;
  }

  /**
   * With quiescing: per group (with ranges, every range the nodes know of and the meta group),
   * the members not quiesced yet and those quiesced behind the leader's commit index (empty:
   * every idle group went quiet everywhere, caught up). Once the workload is done and the map
   * agrees every group is idle, so each must quiesce within the liveness bound. The members are
   * those in the newest leader's configuration: a replica moved away is not waited for.
   */
  private notQuiesced(): string {
    const out: string[] = [];
    for (const group of this.groupIdsNow()) {
      const name = this.ranges === null ? '' : group === META_GROUP ? 'meta ' : `range ${group} `;
      // The runtime, not the core: a copy given up leaves its last core behind.
      const members = this.nodes.flatMap((n) => {
        const rt = n.runtimeOf(group);
        return rt === undefined ? [] : [{ id: n.id, st: rt.status() }];
      });
      let leader: (typeof members)[number] | undefined;
      for (const m of members)
        if (m.st.role === 'leader' && (leader === undefined || m.st.term > leader.st.term))
          leader = m;
      if (leader === undefined) {
        out.push(`${name}no leader`);
        continue;
      }
      const conf = new Set([...leader.st.voters, ...leader.st.learners]);
      for (const id of conf)
        if (!members.some((m) => m.id === id)) out.push(`${name}n${id} not running it`);
      for (const { id, st } of members) {
        if (!conf.has(id)) continue;
        if (!st.quiesced) out.push(`${name}n${id} awake`);
        else if (st.commit < leader.st.commit)
          out.push(`${name}n${id} quiesced at commit ${st.commit} < ${leader.st.commit}`);
      }
    }
    return out.length === 0 ? '' : ` not quiesced: ${out.join(', ')}`;
  }

  /** Each node's role, term, commit and (for leaders) follower progress, for liveness reports. */
  private describeNodes(): string {
    return this.nodes
      .map((n) => {
        if (!n.up) return `n${n.id} down`;
        const st = n.raft.status();
        const prs = Object.entries(st.progress)
          .map(([id, pr]) => `${id}:${pr.state}/m${pr.match}/n${pr.next}`)
          .join(' ');
        return `n${n.id} ${st.role} t${st.term} commit=${st.commit} last=${st.lastIndex}${prs === '' ? '' : ` [${prs}]`}`;
      })
      .join('; ');
  }

  /** With ranges, which of them have no stable leader, for liveness reports. */
  private leaderless(): string {
    if (this.ranges === null) return '';
    const ids = this.groupIdsNow().filter((id) => !this.hasStableLeader(id));
    return ids.length === 0 ? '' : ` in group${ids.length > 1 ? 's' : ''} ${ids.join(', ')}`;
  }

  /** Group 0 (and with ranges, every range the nodes know of) has a stable leader. */
  private everyGroupLeads(): boolean {
    for (const id of this.groupIdsNow()) if (!this.hasStableLeader(id)) return false;
    return true;
  }

  /** A leader whose term has committed an entry (its no-op), so it can serve. */
  private hasStableLeader(group: number): boolean {
    for (const n of this.nodes) {
      const core = n.coreOf(group);
      if (core === undefined) continue;
      if (n.runtimeOf(group)?.isLeader() !== true) continue;
      const st = core.status();
      const t = core.entry(st.commit)?.term ?? st.term;
      if (st.role === 'leader' && t === st.term) return true;
    }
    return false;
  }

  // -------------------------------------------------------------------------------------------
  // NodeHost: what the nodes report

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
      this.newLeaders.push({ node: e.node, term: e.term, group });
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
    const checker = this.checkerOf(group);
    // With moves, a range's configurations change: its durability counts in them.
    let rangeConf = this.rangeConfs.get(group);
    if (rangeConf === undefined && this.mover !== null && group >= FIRST_ALLOCATED_RANGE) {
      // First seen on a replica the split seeded: its snapshot's voters are the split's.
      rangeConf = new ConfChecker(raft.status().conf.voters);
      this.rangeConfs.set(group, rangeConf);
    }
    if (rd.entries.length > 0) {
      const first = (rd.entries[0] as Entry).index;
      checker.onLogEntries(node.id, rd.entries, raft.entry(first - 1)?.term);
    }
    if (rd.hardState !== null) {
      checker.onCommit(node.id, rd.hardState.commit, (i) => raft.entry(i));
      if (group === 0) {
        this.confs.onCommit(rd.hardState.commit, (i) => raft.entry(i));
        this.stats.committed = this.checker.maxCommitted;
      }
      rangeConf?.onCommit(rd.hardState.commit, (i) => raft.entry(i));
    }
    // The runtime applies exactly these (no-ops included) before it takes the next Ready.
    this.onApplyEntries(node, rd.committedEntries, group);
  }

  onTaken(node: SimNode, entries: readonly Entry[], group = 0): void {
    this.onApplyEntries(node, entries, group);
  }

  private onApplyEntries(node: SimNode, entries: readonly Entry[], group: number): void {
    const checker = this.checkerOf(group);
    const rangeConf = this.rangeConfs.get(group);
    for (const e of entries) {
      checker.onApply(node.id, e);
      if (group === 0) this.confs.onApply(e);
      rangeConf?.onApply(e);
    }
  }

  onPersist(_node: SimNode, entry: Entry, group = 0): void {
    if (!this.checkerOf(group).overwritesCommitted(entry)) return;
    let list = this.overwritten.get(group);
    if (list === undefined) {
      list = [];
      this.overwritten.set(group, list);
    }
    list.push(entry.index);
  }

  afterPersist(_node: SimNode, group = 0): void {
    const list = this.overwritten.get(group);
    if (list === undefined || list.length === 0) return;
    this.checkerOf(group).checkDurable(this.diskViews(group), list, this.durableEnough(group));
    list.length = 0;
  }

  /** Every committed entry of every group is durable on a majority. */
  private checkAllDurable(): void {
    for (const [group, checker] of this.groupCheckers)
      checker.checkDurable(this.diskViews(group), undefined, this.durableEnough(group));
  }

  /**
   * With membership changes, a quorum of the configuration that committed it; with moves, for
   * a range split off range 0, of the range's (its replicas are a few of the nodes); else none.
   */
  private durableEnough(
    group = 0,
  ): ((i: number, holds: (id: number) => boolean) => boolean) | undefined {
    const rangeConf = this.rangeConfs.get(group);
    if (rangeConf !== undefined)
      return (i, holds) => rangeConf.durableOn(i, holds) || rangeConf.durableInLast(holds);
    return this.confs.active() ? (i, holds) => this.confs.durableOn(i, holds) : undefined;
  }

  private diskViews(group = 0): DiskView[] {
    this.noteRecoveries();
    return this.nodes.map((n) => ({
      id: n.id,
      holds: (i, t) =>
        this.wiped.has(n.id) ||
        (group === 0 || !(n.disk instanceof WalNodeDisk)
          ? n.disk.holds(i, t)
          : n.disk.holdsIn(group, i, t)),
    }));
  }

  /** A wiped node is whole again once it has caught up and its disk no longer says recovering. */
  private noteRecoveries(): void {
    for (const id of this.wiped) {
      const n = this.node(id);
      if (
        n.up &&
        n.raft.recovery() === 'none' &&
        n.disk.recovery === 'none' &&
        (this.ranges === null || !this.rangesRecovering(n))
      )
        this.wiped.delete(id);
    }
  }

  onApply(
    node: SimNode,
    entry: Entry,
    op: ClientWrite | null,
    effective: boolean,
    group = 0,
  ): void {
    if (op === null) {
      this.checker.report(
        'core-failure',
        `node ${node.id} applied entry ${entry.index} that holds no client write`,
      );
      return;
    }
    if (effective) this.clients.onWrite(op, entry.index, group);
    else this.stats.deduped++;
  }

  metaOf(from: number, to: number): MetaService | null {
    const n = this.nodes[to - 1];
    if (n === undefined || this.links.blocked(from, to) || this.links.blocked(to, from))
      return null;
    return n.meta?.service ?? null;
  }

  /** Every map a node's meta machine holds tiles the key space; no generation goes back. */
  onMetaApplied(node: SimNode, map: RangeMap | null): void {
    const last = this.lastMaps.get(node.id);
    const before = last !== undefined && last.gen === node.gen ? last.map : null;
    this.lastMaps.set(node.id, { gen: node.gen, map });
    if (map === null) {
      if (before !== null)
        this.checker.report('meta-map', `node ${node.id}'s meta machine lost its range map`);
      return;
    }
    if (map === before) return;
    const problem = metaMapProblem(map, before);
    if (problem !== null) this.checker.report('meta-map', `node ${node.id}: ${problem}`);
  }

  onSnapshot(node: SimNode, index: number, image: Uint8Array, group = 0): void {
    this.checkerOf(group).onSnapshot(node.id, index, Buffer.from(image).toString('base64'));
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
      this.checkAllLogs();
      this.checkAllDurable();
      this.clients.finish();
    }
    if (this.checker.violations.length === 0) {
      this.guard('history', () => {
        const problem = this.history.check();
        if (problem !== null) this.checker.report('linearizability', problem);
      });
    }
    this.stats.virtualMs = this.nowMs;
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
        meta: this.meta,
        quiesce: this.profile.quiesce,
        impatient: this.profile.attemptTimeoutElections === 1,
        wipeEveryMs: this.options.profile?.wipeEveryMs,
        membershipEveryMs: this.options.profile?.membershipEveryMs,
      }),
    };
  }
}
