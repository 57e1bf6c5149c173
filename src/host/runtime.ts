// The runtime of one Raft group: the Ready loop in the order the core's Ready contract
// demands, group commit, apply, and waiters for proposals and reads; its snapshots are
// group-snapshots.ts's. It owns no
// I/O: the host (host.ts) ticks it, hands it its messages, and owns the transport and storage
// it uses. The event loop does not wait on a disk sync (but for a follower's small writes, made
// on its thread while the disk is fast: DESIGN.md): while one persist is in flight, new
// proposals and messages step into the core and gather into the next Ready (group commit).

import {
  RaftNode,
  createRng,
  successors,
  type ConfChange,
  type ConfState,
  type Entry,
  type HardState,
  type Message,
  type RaftConfig,
  type RaftEvent,
  type Ready,
  type Recovery,
  type Rng,
  type SnapshotMeta,
  type Status,
} from '../raft/index.js';
import type {
  AppliedBatch,
  Clock,
  GroupId,
  GroupStorage,
  PartialSnapshotStore,
  StateMachine,
} from './contracts.js';
import { FlotillaError, type ErrorCode } from '../base/errors.js';
import { snapshotChunks, unframeSnapshot } from './snapshot-stream.js';
import { SnapshotReceiver } from './snapshot-receiver.js';
import {
  MemoryPartialSnapshots,
  idOf,
  snapshotHash,
  type SnapshotTransfer,
} from './snapshot-transfer.js';
import { GroupSnapshots, type SnapshotEvent } from './group-snapshots.js';
import { commandsOf } from './replay.js';
import type { TraceHook } from './trace.js';

export interface RuntimeOptions {
  readonly id: number;
  /** The group this runtime drives (0 when a host runs one). */
  readonly group?: GroupId;
  /**
   * The group's initial voters, used only when the storage holds no snapshot: the
   * configuration is the snapshot's (or this list) followed by the log's membership changes.
   * A node joining a running group passes the group's initial list, in which it is no voter.
   */
  readonly voters: readonly number[];
  /** The group's storage; the host opened it and closes it. */
  readonly storage: GroupStorage;
  /**
   * Where a snapshot being received is kept, so that a transfer resumes after a restart.
   * Default: in memory (a restart of the process loses it, and the transfer starts over).
   */
  readonly partialSnapshots?: PartialSnapshotStore;
  /** Hands a message to the host's transport, tagged with this group. Never blocks. */
  readonly send: (msg: Message, attachment?: Uint8Array) => void;
  /** Writes what `send` was handed so far now, rather than at the end of this loop run. */
  readonly flush?: () => void;
  readonly stateMachine: StateMachine;
  readonly clock: Clock;
  readonly rng?: Rng;
  /** Milliseconds per Raft tick (the host's ticker). Default 10. */
  readonly tickMs?: number;
  /** Election timeout in ticks (randomised in [e, 2e)). Default 15: 150-300 ms at 10 ms ticks. */
  readonly electionTicks?: number;
  /** Heartbeat interval in ticks. Default 5. */
  readonly heartbeatTicks?: number;
  /**
   * Snapshots are taken at multiples of this many applied entries (the same indexes on every
   * member). Default 10,000.
   */
  readonly snapshotEveryEntries?: number;
  /**
   * At such a multiple, a snapshot is taken only once the entries applied since the last one
   * hold at least this fraction of its bytes (Raft thesis §5.1: snapshot when the log has grown
   * past a share of the state's size), so a large state is not copied in full every
   * snapshotEveryEntries: the copying costs at most 1/ratio bytes per byte of log, and the log
   * kept between snapshots about ratio times the state's size. 0: at every multiple. Default 0.5.
   */
  readonly snapshotLogRatio?: number;
  /** Entries kept behind a snapshot for slow followers to catch up from the log. Default 1,000. */
  readonly snapshotCatchupEntries?: number;
  /**
   * The largest share, in (0, 1], of the time since a snapshot began that encoding it may take:
   * it pauses between chunks to stay under it, so the requests served meanwhile keep the rest
   * of the event loop (pacedChunks). 1: as fast as the loop allows. Default 0.25.
   */
  readonly snapshotEncodeShare?: number;
  /** Default wait for a proposal or read. Default 5,000 ms. */
  readonly requestTimeoutMs?: number;
  /** Max proposals and reads waiting at once; more are refused. Default 65,536. */
  readonly maxPendingRequests?: number;
  /**
   * How long a request that finds no leader waits for one to be elected before it is refused
   * with NO_LEADER. Default: two of the longest election timeouts (4 × electionTicks × tickMs,
   * 600 ms at the defaults), enough for one split vote.
   */
  readonly leaderWaitMs?: number;
  readonly raft?: Partial<Omit<RaftConfig, 'id' | 'voters' | 'rng' | 'initial' | 'onEvent'>>;
  readonly onEvent?: (event: RuntimeEvent) => void;
  /**
   * Called when what `leading()` returns may have changed, once until `takeLeadingChange` is
   * called: the host's liveness lane then asks this group again, and no other.
   */
  readonly onLeadingChange?: () => void;
  /**
   * Whether this group's follower writes may block the thread (storage's inline writes): the
   * host says no while it leads another group with work outstanding. Default: they may.
   */
  readonly mayBlock?: () => boolean;
  /** Told when this runtime starts or stops leading its group (a stop ends leading). */
  readonly onLeads?: (leads: boolean) => void;
  /**
   * Stores the core's recovery state durably (Ready.recovery) before the Ready's entries are
   * written; its value is `raft.recovery` at the next start. Synchronous: it changes at most
   * twice in a node's life.
   */
  readonly storeRecovery?: (recovery: Recovery) => void;
  /**
   * Builds the core from its configuration. Default `new RaftNode(config)`; the simulator
   * passes one that keeps a reference for its checkers (and, in tests, a core with a planted
   * bug).
   */
  readonly createNode?: (config: RaftConfig) => RaftNode;
  /** Called at each step of a write's path through this runtime (trace.ts); absent: none. */
  readonly trace?: TraceHook;
}

export type RuntimeEvent =
  | { readonly kind: 'raft'; readonly event: RaftEvent }
  | { readonly kind: 'leader-changed'; readonly leader: number; readonly term: number }
  | SnapshotEvent
  | { readonly kind: 'snapshot-restored'; readonly index: number; readonly bytes: number }
  | { readonly kind: 'persisted'; readonly entries: number; readonly durationMs: number }
  | {
      readonly kind: 'applied';
      readonly entries: number;
      /**
       * Applied while this node's own write was in flight: an acknowledgement committed them
       * (DESIGN.md, "Applying during a write"); otherwise from a Ready.
       */
      readonly duringWrite: boolean;
    }
  | { readonly kind: 'fatal'; readonly error: Error };

import {
  Waiters,
  type LeaderWaiter,
  type ProposalWaiter,
  type ReadWaiter,
  type WaitOptions,
} from './waiters.js';

export type { WaitOptions } from './waiters.js';

export class RaftRuntime {
  private readonly node: RaftNode;
  private readonly opts: Required<
    Pick<
      RuntimeOptions,
      | 'tickMs'
      | 'snapshotEveryEntries'
      | 'snapshotLogRatio'
      | 'snapshotCatchupEntries'
      | 'snapshotEncodeShare'
      | 'requestTimeoutMs'
      | 'maxPendingRequests'
      | 'leaderWaitMs'
    >
  >;
  private readonly waiters: Waiters;
  private readonly leaderListeners = new Set<(leader: number) => void>();
  /**
   * ReadIndex request ids start at a random point of a 2^52 range, not at 1: a leader may
   * answer a read the previous run of this process asked, after the restart, and that answer
   * must not be taken for the new run's read with the same id (it would release the read at the
   * old, lower index: a stale read the simulator found).
   */
  private nextReadId: number;
  private readonly appliedListeners = new Set<(batch: AppliedBatch) => void>();
  private running = false;
  private loopActive = false;
  /**
   * The outstanding Ready's write is in flight: once its committed entries are applied (not
   * while `applying`), entries committed meanwhile may be applied at once (kick,
   * RaftNode.takeCommitted).
   */
  private persisting = false;
  /** Entries are being applied: an apply that starts another (a listener proposing) waits. */
  private applying = false;
  /** Depth of `batch` calls in progress: while above 0, kicks are held. */
  private batchDepth = 0;
  /** A kick arrived while a batch held the loop. */
  private kickHeld = false;
  /** Settles when the Ready loop in progress (if any) has stopped. */
  private loopDone: Promise<void> = Promise.resolve();
  private closed = false;
  /**
   * Where close() is (null: not asked to close): said when a shutdown outlasts its grace, so
   * that a stop that never ends names what it waits for.
   */
  closeStage: string | null = null;
  private fatal: Error | null = null;
  private leader = 0;
  private role: Status['role'] = 'follower';
  /**
   * What `leading()` returns may have changed since the host last asked (takeLeadingChange):
   * the core's leader moved, a new role or term, a membership change, a stop. The host asks
   * only then, not every tick for every group.
   */
  private leadingChanged = false;
  /** What `onLeads` was last told (noteLeadingChange): whether this runtime leads. */
  private leadsTold = false;
  /** The core's leader when the runtime last looked (noteLeader). */
  private leaderSeen = 0;
  /** Whether the core was quiesced when the runtime last looked (noteLeader). */
  private quiescedSeen = false;
  /** Real time up to which the core's lease clock has been moved on (syncClock). */
  private clockAtMs: number;
  private applied: number;
  /** A snapshot from the leader is replacing the state machine's state (captureApplied waits). */
  private installing = false;
  /** Taking, saving, offering, sending and receiving snapshots (group-snapshots.ts). */
  private readonly snapshots: GroupSnapshots;
  /** The hard state last made durable (term and vote changes must sync). */
  private syncedHard: HardState | null = null;
  /** The hard state of the latest Ready that had one, written or not. */
  private latestHard: HardState | null = null;
  /**
   * Proposed membership changes applied in the Ready being handled: they take effect in the
   * core when the Ready is advanced, and their proposers are answered then, with the
   * configuration in force.
   */
  private appliedConfChanges: ProposalWaiter[] = [];

  protected constructor(
    private readonly o: RuntimeOptions,
    initialSnapshot: { meta: SnapshotMeta; totalBytes: number } | null,
    receiver: SnapshotReceiver,
  ) {
    this.opts = {
      tickMs: o.tickMs ?? 10,
      snapshotEveryEntries: o.snapshotEveryEntries ?? 10_000,
      snapshotLogRatio: o.snapshotLogRatio ?? 0.5,
      // Keep at most half a snapshot interval behind, so compaction always makes progress.
      snapshotCatchupEntries:
        o.snapshotCatchupEntries ??
        Math.min(1_000, Math.floor((o.snapshotEveryEntries ?? 10_000) / 2)),
      snapshotEncodeShare: o.snapshotEncodeShare ?? 0.25,
      requestTimeoutMs: o.requestTimeoutMs ?? 5_000,
      maxPendingRequests: o.maxPendingRequests ?? 65_536,
      leaderWaitMs: o.leaderWaitMs ?? 4 * (o.electionTicks ?? 15) * (o.tickMs ?? 10),
    };
    const share = this.opts.snapshotEncodeShare;
    if (!(share > 0 && share <= 1))
      throw new RangeError(`snapshotEncodeShare must be in (0, 1], got ${share}`);
    this.waiters = new Waiters(o.clock, this.opts.requestTimeoutMs);
    const initial = o.storage.initialState();
    const incoming = receiver.incoming();
    const rng = o.rng ?? createRng(o.id);
    this.nextReadId = 1 + rng.int(2 ** 32) * 2 ** 20;
    this.syncedHard = initial.hardState;
    // The state machine is rebuilt by replaying the log from the snapshot: applied starts there.
    this.applied = initial.snapshot?.index ?? 0;
    this.clockAtMs = o.clock.nowMs();
    this.node = (o.createNode ?? ((c: RaftConfig) => new RaftNode(c)))({
      ...o.raft,
      id: o.id,
      voters: o.voters,
      rng,
      electionTicks: o.electionTicks ?? 15,
      heartbeatTicks: o.heartbeatTicks ?? 5,
      initial: {
        ...initial,
        applied: this.applied,
        ...(incoming === null ? {} : { incoming }),
      },
      onEvent: (event) => this.o.onEvent?.({ kind: 'raft', event }),
    });
    this.snapshots = new GroupSnapshots(
      {
        node: this.node,
        storage: o.storage,
        stateMachine: o.stateMachine,
        receiver,
        policy: {
          everyEntries: this.opts.snapshotEveryEntries,
          logRatio: this.opts.snapshotLogRatio,
          catchupEntries: this.opts.snapshotCatchupEntries,
          encodeShare: this.opts.snapshotEncodeShare,
        },
        nowMs: () => o.clock.nowMs(),
        send: (m, attachment) => o.send(m, attachment),
        onEvent: (e) => o.onEvent?.(e),
        nextTurn: () => this.nextTurn(),
        sleep: (ms) => new Promise((resolve) => o.clock.setTimeout(resolve, ms)),
        die: (err) => this.die(err),
      },
      // The state machine was restored from it by start().
      initialSnapshot,
    );
  }

  /**
   * Opens the runtime on recovered storage: restores the state machine from the latest
   * snapshot (the log replays from there). The host then ticks it and routes its messages.
   */
  static async start(o: RuntimeOptions): Promise<RaftRuntime> {
    const snapshot = await restoreHeld(o);
    const receiver = await SnapshotReceiver.open(
      o.partialSnapshots ?? new MemoryPartialSnapshots(),
    );
    // `this`, so that a subclass (the simulator's planted bugs) starts as itself.
    const rt = new this(o, snapshot, receiver);
    // Its bytes stay in storage until a follower needs them.
    if (snapshot !== null)
      rt.snapshots.offer(snapshot.meta, snapshot.id, snapshot.totalBytes, null);
    rt.running = true;
    // A single-voter cluster elects itself at once rather than after a timeout. The voters
    // are the core's (from the snapshot and the log), not the ones this node started with.
    const conf = rt.node.confState();
    if (conf.outgoing.length === 0 && conf.voters.length === 1 && conf.voters[0] === o.id)
      rt.node.campaign();
    rt.kick();
    return rt;
  }

  get id(): number {
    return this.o.id;
  }

  get group(): GroupId {
    return this.o.group ?? 0;
  }

  /**
   * The storage failure that stopped this group, or null while it runs. A stopped group never
   * runs again in this process: the disk's state is unknown after a failed write or sync.
   */
  failure(): Error | null {
    return this.fatal;
  }

  /** The group's storage (the host closes it). */
  get storage(): GroupStorage {
    return this.o.storage;
  }

  /** The state machine this runtime applies to. */
  get stateMachine(): StateMachine {
    return this.o.stateMachine;
  }

  /**
   * One Raft tick (the host's ticker calls it every tickMs). `nowMs` is the clock's time now:
   * the host reads it once for all its groups.
   */
  tick(nowMs = this.o.clock.nowMs()): void {
    if (!this.running) return;
    this.node.tick(this.clockTicksDue(nowMs));
    this.noteLeader();
    this.kick();
  }

  /**
   * Whether the group is quiesced here (RaftConfig.quiesce): ticks would do nothing but move
   * the lease clock, so the host does not tick it until an input, a message or wake() wakes it.
   */
  quiesced(): boolean {
    return this.running && this.node.quiesced();
  }

  /**
   * Wakes the group if it is quiesced here: the host's node-level failure detection says the
   * node it follows fell silent, or a member's node came back (Host, "Quiescing").
   */
  wake(reason: string): void {
    if (!this.running || !this.node.quiesced()) return;
    this.node.wake(reason);
    this.noteLeader();
    this.kick();
  }

  /**
   * Whether the core's leader moved, or it quiesced or woke, since the last look (it reads the
   * core: cheap). Either changes what the liveness lane is told (leading()).
   */
  private noteLeader(): void {
    const leader = this.node.leaderNow();
    const quiesced = this.node.quiesced();
    if (leader === this.leaderSeen && quiesced === this.quiescedSeen) return;
    this.leaderSeen = leader;
    this.quiescedSeen = quiesced;
    this.noteLeadingChange();
  }

  private noteLeadingChange(): void {
    const leads = this.isLeader();
    if (leads !== this.leadsTold) {
      this.leadsTold = leads;
      this.o.onLeads?.(leads);
    }
    if (this.leadingChanged) return;
    this.leadingChanged = true;
    this.o.onLeadingChange?.();
  }

  /**
   * Whole ticks of real time since the core's lease clock last moved (RaftNode.tick): the
   * host's ticker does not replay ticks a stall made it miss, but a lease must still end on
   * time.
   */
  private clockTicksDue(nowMs = this.o.clock.nowMs()): number {
    const due = Math.floor((nowMs - this.clockAtMs) / this.opts.tickMs);
    if (due <= 0) return 0;
    this.clockAtMs += due * this.opts.tickMs;
    return due;
  }

  /**
   * Brings the lease clock up to now before anything that may decide by the lease: a read, or
   * a follower's read index, since after a stall those can come before the next tick.
   */
  private syncClock(): void {
    this.node.advanceClock(this.clockTicksDue());
  }

  /** The leader's lease now (RaftNode.lease), with the clock brought up to now first. */
  lease(): { readonly nowTick: number; readonly endTick: number; readonly holds: boolean } {
    this.syncClock();
    return this.node.lease();
  }

  /**
   * Whether this node's lease holds at this instant, by its own clock, without moving the
   * core's clock (lease() does): for observers that must not disturb the node, such as the
   * simulator's lease check.
   */
  leaseHoldsNow(): boolean {
    const l = this.node.lease();
    const due = Math.floor((this.o.clock.nowMs() - this.clockAtMs) / this.opts.tickMs);
    return l.holds && l.nowTick + Math.max(0, due) < l.endTick;
  }

  /**
   * Calls `listener` with every batch of commands applied from now on, in order, with their
   * results: the stream of applied changes (a watch is built on it). Returns its remover.
   */
  onApplied(listener: (batch: AppliedBatch) => void): () => void {
    this.appliedListeners.add(listener);
    return () => this.appliedListeners.delete(listener);
  }

  status(): Status {
    return this.node.status();
  }

  /** The current term, cheaply (every answer's header carries it). */
  term(): number {
    return this.node.term();
  }

  /**
   * The leader this node knows now (its own id when it leads, 0: none). It reads the core, so
   * it may be ahead of `isLeader()` and of the leader-changed events, which follow the Ready
   * loop; under load a Ready can wait for a disk write, and a request routed by the older view
   * would be refused.
   */
  leaderId(): number {
    return this.node.leaderNow();
  }

  /**
   * While this node leads the group and it is awake: its term and followers (the host's
   * liveness lane, which has nothing to say for a quiesced group: its followers wait for no
   * heartbeat).
   */
  leading(): { readonly term: number; readonly followers: readonly number[] } | null {
    return this.running && !this.quiescedSeen ? this.node.leading() : null;
  }

  /** The election and heartbeat timeouts, in ticks (the host's node-level failure detection). */
  timing(): { readonly electionTicks: number; readonly heartbeatTicks: number } {
    return {
      electionTicks: this.o.electionTicks ?? 15,
      heartbeatTicks: this.o.heartbeatTicks ?? 5,
    };
  }

  /** Whether `leading()` may have changed since the last call (which clears it). */
  takeLeadingChange(): boolean {
    const changed = this.leadingChanged;
    this.leadingChanged = false;
    return changed;
  }

  /** Whether this node leads the group now (a stopped runtime leads nothing). */
  isLeader(): boolean {
    return this.running && this.role === 'leader';
  }

  /**
   * Whether this node leads the group and has work outstanding in it: a write in flight, or
   * proposals or reads waiting. A follower write of another group on this node then goes
   * through the thread pool, not on the thread this work needs (the host's `mayBlock`).
   */
  leadsBusy(): boolean {
    return (
      this.isLeader() &&
      (this.persisting || this.waiters.proposals.size > 0 || this.waiters.reads.size > 0)
    );
  }

  appliedIndex(): number {
    return this.applied;
  }

  /**
   * The state machine's state as of now, with the index and term it was applied through and
   * the voters then: a backup (server/backup.ts) reads the chunks later, as a snapshot's are
   * (the capture is copy-on-write). Refused while a snapshot from the leader is being
   * installed, when the state machine is half replaced.
   */
  captureApplied(): {
    index: number;
    term: number;
    voters: readonly number[];
    chunks: AsyncIterable<Uint8Array>;
  } {
    const refused = this.refuseNew();
    if (refused !== null) throw refused;
    if (this.installing)
      throw new FlotillaError(
        'SNAPSHOT_BUSY',
        'This node is installing a snapshot from the leader; retry once it finished, or ask another member',
      );
    const index = this.applied;
    const term = this.node.termAt(index);
    // Applied entries stay in the log until a snapshot covers them, and the snapshot keeps its
    // own index's term: the term is always known.
    if (term === undefined) throw new Error(`No term known for applied index ${index}`);
    return {
      index,
      term,
      voters: this.node.confStateAt(index).voters,
      chunks: this.o.stateMachine.snapshot(),
    };
  }

  /**
   * Replicates `data` and resolves with the state machine's result once applied here.
   * Refusals from the core are definite; a timeout or a leadership change is indefinite.
   */
  propose(data: Uint8Array, w: WaitOptions = {}): Promise<unknown> {
    const refused = this.refuseNew();
    if (refused !== null) return Promise.reject(refused);
    const r = this.node.propose(data);
    if (!r.ok) {
      // The API's own refusals come first; what the core says of a target reads the same.
      const { code } = r.error;
      return Promise.reject(
        this.coreRefusal(
          r.error,
          code === 'UNKNOWN_NODE' || code === 'INVALID_REQUEST' ? 'INVALID_REQUEST' : code,
        ),
      );
    }
    this.o.trace?.('proposed', r.value.index, 0);
    return this.awaitApplied(r.value.index, r.value.term, w, `Proposal at index ${r.value.index}`);
  }

  /** A proposal the core refused, as a definite error; NO_LEADER when no leader is known. */
  private coreRefusal(
    e: { readonly code: ErrorCode; readonly message: string; readonly leader: number },
    code: ErrorCode = e.code,
  ): FlotillaError {
    if (e.code === 'NOT_LEADER' && e.leader === 0)
      return new FlotillaError(
        'NO_LEADER',
        `Node ${this.o.id} knows no leader yet (an election may be under way); retry`,
        false,
      );
    return new FlotillaError(code, e.message, false, e.leader);
  }

  /** Resolves with the result of the entry at `index` of `term` once applied here. */
  private awaitApplied(
    index: number,
    term: number,
    w: WaitOptions,
    what: string,
  ): Promise<unknown> {
    // Register the waiter before kicking: the loop may run to the apply synchronously.
    const p = new Promise<unknown>((resolve, reject) => {
      const waiter: ProposalWaiter = { resolve, reject, term, timer: null };
      this.waiters.proposals.set(index, waiter);
      this.waiters.arm(waiter, w, () => this.waiters.proposals.delete(index), true, what);
    });
    this.kick();
    return p;
  }

  /**
   * Runs `fn` with the Ready loop held, then runs it once: the proposals and ReadIndex requests
   * `fn` starts reach the core before it hands out a Ready, so a batch of writes leaves as one
   * append per follower (and one disk write) and a batch of reads shares one heartbeat round,
   * rather than the first of each going alone and the rest gathering behind it.
   */
  batch<T>(fn: () => T): T {
    this.batchDepth += 1;
    try {
      return fn();
    } finally {
      this.batchDepth -= 1;
      if (this.batchDepth === 0 && this.kickHeld) {
        this.kickHeld = false;
        this.kick();
      }
    }
  }

  /**
   * Proposes a membership change (ConfChange: voters and learners added, nodes removed, all
   * together; the core goes through a joint configuration when more than one voter changes
   * and leaves it by itself) and resolves with the configuration in force once this node
   * applied it. Refused definitely, before anything is proposed, when this node does not lead,
   * another change is in flight, or the change is invalid (MEMBERSHIP_* codes); a timeout or
   * a leadership change after the proposal is indefinite, as for any proposal.
   */
  proposeConfChange(cc: ConfChange, w: WaitOptions = {}): Promise<ConfState> {
    const refused = this.refuseNew();
    if (refused !== null) return Promise.reject(refused);
    const r = this.node.proposeConfChange(cc);
    if (!r.ok) return Promise.reject(this.coreRefusal(r.error));
    const { index, term } = r.value;
    return this.awaitApplied(
      index,
      term,
      w,
      `Membership change at index ${index}`,
    ) as Promise<ConfState>;
  }

  /**
   * Waits until a linearizable read may be served from the local state machine (ReadIndex,
   * thesis §6.4): the leader confirmed its leadership after the read arrived, and this node has
   * applied everything committed before that. With `lease`, a leader whose lease holds
   * confirms it without a heartbeat round (DESIGN.md, "Lease reads").
   */
  async linearizableRead(w: WaitOptions & { readonly lease?: boolean } = {}): Promise<void> {
    const refused = this.refuseNew();
    if (refused !== null) throw refused;
    const timeoutMs = w.timeoutMs ?? this.opts.requestTimeoutMs;
    const started = this.o.clock.nowMs();
    // With no leader known (an election is under way), wait for one rather than refuse: the
    // caller would only retry, and likely on a node that knows no more than this one.
    if (this.leaderId() === 0) {
      const waitMs = Math.min(this.opts.leaderWaitMs, timeoutMs);
      await this.waitForLeader({ ...w, timeoutMs: waitMs });
    }
    const requestId = this.nextReadId++;
    const lease = w.lease ?? false;
    if (lease) this.syncClock();
    const r = this.node.readIndex(requestId, { lease });
    if (!r.ok) throw new FlotillaError('NO_LEADER', r.error.message, false, r.error.leader);
    const remainingMs = Math.max(0, timeoutMs - (this.o.clock.nowMs() - started));
    const p = new Promise<void>((resolve, reject) => {
      const waiter: ReadWaiter = {
        resolve,
        reject,
        timer: null,
        requestId,
        askedOf: this.leaderId(),
        index: -1,
        lease,
      };
      this.waiters.reads.set(requestId, waiter);
      const remove = (): boolean => this.waiters.reads.delete(waiter.requestId);
      this.waiters.arm(waiter, { ...w, timeoutMs: remainingMs }, remove, false, 'Read');
    });
    this.kick();
    return p;
  }

  /**
   * Resolves with the leader's id once this node knows one (at once if it does), or one other
   * than `other` when given; refuses with NO_LEADER (definite) after `timeoutMs`, by default
   * `leaderWaitMs`.
   */
  waitForLeader(w: WaitOptions & { readonly other?: number } = {}): Promise<number> {
    const other = w.other ?? 0;
    const now = this.leaderId();
    if (now !== 0 && now !== other) return Promise.resolve(now);
    const refused = this.refuseNew();
    if (refused !== null) return Promise.reject(refused);
    const timeoutMs = w.timeoutMs ?? this.opts.leaderWaitMs;
    return new Promise<number>((resolve, reject) => {
      const waiter: LeaderWaiter = { resolve, reject, timer: null, other };
      this.waiters.leaders.add(waiter);
      const remove = (): boolean => this.waiters.leaders.delete(waiter);
      const what =
        other === 0
          ? `Node ${this.o.id} waited for a leader to be elected`
          : `Node ${this.o.id} waited for a leader other than ${other} to be elected`;
      this.waiters.arm(waiter, { ...w, timeoutMs }, remove, false, what, 'NO_LEADER');
    });
  }

  /** Calls `listener` with the new leader (0: none known) whenever it changes. */
  onLeaderChange(listener: (leader: number) => void): () => void {
    this.leaderListeners.add(listener);
    return () => this.leaderListeners.delete(listener);
  }

  /**
   * Starts handing leadership to `to` (thesis §3.10). A no-op when `to` is this node and it
   * leads. Refused (definite) when this node does not lead, `to` is not a voter, or the leader
   * has not heard from `to` within an election timeout (it is probably down).
   */
  transferLeadership(to: number): void {
    if (to === this.o.id && this.leaderId() === this.o.id) return;
    const r = this.node.transferLeadership(to);
    if (!r.ok) {
      const e = r.error;
      if (e.code === 'NOT_LEADER' && e.leader === 0)
        throw new FlotillaError('NO_LEADER', `${e.message}, and knows no leader`, false);
      throw new FlotillaError(
        e.code === 'NOT_LEADER' || e.code === 'UNKNOWN_NODE' || e.code === 'PEER_INACTIVE'
          ? e.code
          : 'INVALID_REQUEST',
        e.message,
        false,
        e.leader,
      );
    }
    this.kick();
  }

  /**
   * Stops the group. A leader first hands leadership to a voter it heard from lately (successors) and waits
   * (bounded) for it to take over, so clients see a quick re-election instead of a timeout.
   * The storage and transport are the host's: it closes them after every group stopped.
   */
  async close(handoffTimeoutMs = 2_000): Promise<void> {
    if (this.closed) return;
    if (this.role === 'leader' && this.node.status().voters.length > 1 && this.fatal === null) {
      this.closeStage = 'handing leadership over';
      await this.handOff(handoffTimeoutMs);
    }
    this.closed = true;
    this.running = false;
    this.noteLeadingChange();
    // running is false, so no new loop starts: wait for the one in progress, if any, then for
    // a snapshot being saved in the background (the caller closes the storage next).
    this.closeStage = 'finishing the Ready in progress';
    await this.loopDone;
    // The commit index rides along with the next write (hardStateUnsynced): a quiet follower
    // may have learned commits it never wrote. Written now, a stopped node's storage says what
    // it knew committed, which is what a look at it, or a backup made from it, goes by.
    const latest = this.latestHard;
    if (latest !== null && this.fatal === null && this.hardStateUnsynced()) {
      this.closeStage = 'writing the hard state';
      try {
        await this.o.storage.persist([], latest, { inline: false });
        this.syncedHard = latest;
      } catch {
        // A restart hint only: a storage that fails now is reported by whoever closes it.
      }
    }
    this.closeStage = 'finishing a snapshot';
    this.snapshots.hurry();
    await this.snapshots.idle();
    this.closeStage = 'closed';
    this.waiters.failAll(
      new FlotillaError('SHUTTING_DOWN', `Node ${this.o.id} is shutting down`, true),
    );
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // -------------------------------------------------------------------------------------------

  private async handOff(timeoutMs: number): Promise<void> {
    // The best the core takes: it refuses one it has not heard from lately, and one a
    // membership change in flight takes out of the voters.
    let started = false;
    for (const to of successors(this.node.status())) {
      try {
        this.transferLeadership(to);
        started = true;
        break;
      } catch {
        continue;
      }
    }
    if (!started) return;
    // Until another node leads (or none is known), or the hand-off times out, on our clock.
    await new Promise<void>((resolve) => {
      const finish = (): void => {
        this.o.clock.clearTimeout(timer);
        off();
        resolve();
      };
      const timer = this.o.clock.setTimeout(finish, timeoutMs);
      const off = this.onLeaderChange((leader) => {
        if (leader !== this.o.id) finish();
      });
      if (this.role !== 'leader') finish();
    });
  }

  /** What this group answers every request once a storage failure stopped it; null while it runs. */
  stoppedError(): FlotillaError | null {
    return this.fatal === null
      ? null
      : new FlotillaError('STORAGE_FAILED', `Node stopped: ${this.fatal.message}`, false);
  }

  private refuseNew(): FlotillaError | null {
    const stopped = this.stoppedError();
    if (stopped !== null) return stopped;
    if (this.closed || !this.running)
      return new FlotillaError('SHUTTING_DOWN', 'Node is shutting down', false);
    if (this.waiters.size() >= this.opts.maxPendingRequests) {
      return new FlotillaError(
        'UNCOMMITTED_LIMIT',
        `Too many requests in flight (${this.opts.maxPendingRequests})`,
        false,
      );
    }
    return null;
  }

  /** A message for this group from the host's router. */
  receive(msg: Message, attachment: Uint8Array | null): void {
    if (!this.running || msg.to !== this.o.id) return;
    if (msg.type === 'snapshot' && !this.snapshots.receiveChunk(msg, attachment)) return;
    if (this.o.trace !== undefined) this.traceReceived(this.o.trace, msg);
    // Of the messages, only a follower's read index may be answered from the lease.
    if (msg.type === 'read-index') this.syncClock();
    this.node.step(msg);
    this.noteLeader();
    this.kick();
  }

  private traceReceived(trace: TraceHook, msg: Message): void {
    if (msg.type === 'append' && msg.entries.length > 0)
      trace('append-received', msg.prevIndex + msg.entries.length, msg.from);
    else if (msg.type === 'append-resp' && msg.success) trace('ack-received', msg.index, msg.from);
  }

  /** Runs the Ready loop until the core has nothing more to do. One loop at a time. */
  private kick(): void {
    if (!this.running) return;
    // Every input may have woken a quiesced core (a proposal, a read, a message).
    this.noteLeader();
    if (this.batchDepth > 0) {
      this.kickHeld = true;
      return;
    }
    if (this.loopActive) {
      // A Ready is being persisted: send what need not wait for it (heartbeats and their
      // answers above all), or a slow disk silences this node for as long as its sync takes.
      for (const m of this.node.takeMessages()) this.sendMessage(m);
      if (this.persisting && !this.applying) this.applyEarly();
      return;
    }
    // Most ticks of an idle group change nothing: starting the loop would cost two promises
    // per group per tick for nothing (docs/BENCHMARKS.md, "Idle groups").
    if (!this.node.hasReady()) return;
    this.loopActive = true;
    this.loopDone = this.loop().then(
      () => {
        this.loopActive = false;
      },
      (err: unknown) => {
        this.loopActive = false;
        this.die(err instanceof Error ? err : new Error(String(err)));
      },
    );
  }

  /**
   * Applies, while this node's write is in flight, what committed meanwhile and is durable
   * here: the acknowledgement that commits a proposal answers it now rather than after that
   * write (docs/DESIGN.md, "Applying during a write"). Snapshots it captures are saved by the
   * loop after the write, as for any Ready.
   */
  private applyEarly(): void {
    try {
      const entries = this.node.takeCommitted();
      if (entries.length > 0) this.applyCommitted(entries, true);
    } catch (err) {
      this.die(err instanceof Error ? err : new Error(String(err)));
    }
  }

  private async loop(): Promise<void> {
    while (this.running && this.node.hasReady()) {
      const rd = this.node.ready();
      await this.handleReady(rd);
      this.node.advance(rd);
      // A membership change takes effect in the core with the Ready that applied it.
      if (rd.committedEntries.some((e) => e.type === 'conf-change')) this.noteLeadingChange();
      const check = this.snapshots.pendingCheck;
      if (check !== null) await this.snapshots.checkIncoming(check);
      this.answerConfChanges();
      this.snapshots.saveCaptured();
    }
  }

  /** The order is the core's contract (types.ts, Ready): send, persist, send, apply. */
  private async handleReady(rd: Ready): Promise<void> {
    if (rd.softState !== null) this.onSoftState(rd.softState.leader, rd.softState.role);
    if (
      rd.softState !== null ||
      (rd.hardState !== null && rd.hardState.term !== this.latestHard?.term)
    )
      this.noteLeadingChange();
    for (const m of rd.messages) this.sendMessage(m);
    // The appends leave before this node applies or encodes and submits its own write, all
    // synchronous work: the followers' writes, on the commit's critical path, start at once.
    if (rd.messages.length > 0) this.o.flush?.();
    if (rd.snapshot !== null) await this.persistSnapshot(rd.snapshot, rd.snapshotId);
    // Before the answers that say how much of the snapshot is held (messagesAfterPersist).
    for (const c of rd.snapshotChunks) await this.snapshots.writeChunk(c);
    if (rd.recovery !== null) this.o.storeRecovery?.(rd.recovery);
    for (const m of rd.messagesAfterPersist)
      if (!this.mustPersistBeforeSending(m)) this.sendMessage(m);
    if (rd.hardState !== null) this.latestHard = rd.hardState;
    let write: { done: Promise<void>; started: number; hs: HardState | null } | null = null;
    if (rd.entries.length > 0 || this.hardStateNeedsSync(rd.hardState)) {
      const started = this.o.clock.nowMs();
      this.persisting = rd.snapshot === null;
      // A commit index that was not written on its own rides along with these entries. A
      // membership change relies on it: a node that appends one knows the change before it
      // committed, and must still know it after a restart (it puts the committed changes in
      // force at start, and campaigns only once every committed change is applied).
      const hs = rd.hardState ?? (this.hardStateUnsynced() ? this.latestHard : null);
      this.o.trace?.('persist-start', rd.entries[rd.entries.length - 1]?.index ?? 0, 0);
      // Submitted now, awaited below: the disk works while the committed entries are applied.
      // A follower has nothing to do before its write is durable (its acknowledgement waits
      // for it), so it lets storage write on this thread: that costs less here than the thread
      // pool's two hand-offs. A leader's would hold up the requests and acknowledgements it
      // serves meanwhile (docs/BENCHMARKS.md, "A follower writes on its own thread"), and so
      // would a follower's while this node leads another group with work outstanding.
      const inline = this.role !== 'leader' && (this.o.mayBlock?.() ?? true);
      const done = this.o.storage.persist(rd.entries, hs, { inline });
      // Awaited below once the apply is over; if the apply throws, the group dies of that.
      done.catch(() => undefined);
      write = { done, started, hs };
    }
    // Committed entries are already durable here (the core hands out only entries at or below
    // its persisted index), so they are applied while this Ready's write is in flight, not
    // after it: a client's answer never waits for an fsync that only records the new commit
    // index, and the write, submitted first, does not wait for the apply. Both happen in one
    // run of the event loop, so no other input sees the write submitted and these entries not
    // yet applied ("Applying during a write" relies on it).
    if (rd.committedEntries.length > 0) this.applyCommitted(rd.committedEntries, false);
    for (const rs of rd.readStates) this.onReadState(rs.requestId, rs.index, rs.ok);
    if (write !== null) {
      try {
        await write.done;
      } finally {
        this.persisting = false;
      }
      const lastIndex = rd.entries[rd.entries.length - 1]?.index ?? 0;
      this.o.trace?.('persist-end', lastIndex, 0);
      if (write.hs !== null) this.syncedHard = write.hs;
      this.o.onEvent?.({
        kind: 'persisted',
        entries: rd.entries.length,
        durationMs: this.o.clock.nowMs() - write.started,
      });
      for (const e of rd.entries) this.maybeAnswerEarly(e);
    }
    for (const m of rd.messagesAfterPersist)
      if (this.mustPersistBeforeSending(m)) this.sendMessage(m);
  }

  /**
   * Votes and append acknowledgements promise that what they acknowledge is durable (Figure
   * 2): always true. A hook so the simulator's tests can plant a runtime that answers first.
   */
  protected mustPersistBeforeSending(_m: Message): boolean {
    return true;
  }

  /**
   * A result to answer `entry`'s proposer with once this node's own write of it is durable,
   * before it commits: always null, since durable here is not committed (§5.3: the leader
   * answers once the entry is committed and applied). A hook so the simulator's tests can
   * plant a runtime that acknowledges early.
   */
  protected earlyAnswer(_entry: Entry): { readonly result: unknown } | null {
    return null;
  }

  private maybeAnswerEarly(e: Entry): void {
    const w = this.waiters.proposals.get(e.index);
    if (w === undefined || w.term !== e.term) return;
    const early = this.earlyAnswer(e);
    if (early === null) return;
    this.waiters.proposals.delete(e.index);
    this.waiters.settle(w);
    w.resolve(early.result);
  }

  /**
   * Term and vote must be durable before anything that depends on them is sent (Figure 2).
   * The commit index need not be: it is a restart hint, re-learned from the leader. A Ready
   * whose only change is the commit index is therefore not synced on its own; the new value
   * rides along with the next write.
   */
  private hardStateUnsynced(): boolean {
    const l = this.latestHard;
    const s = this.syncedHard;
    return (
      l !== null && (s === null || l.term !== s.term || l.vote !== s.vote || l.commit !== s.commit)
    );
  }

  private hardStateNeedsSync(hs: HardState | null): boolean {
    if (hs === null) return false;
    const last = this.syncedHard;
    return last === null || hs.term !== last.term || hs.vote !== last.vote;
  }

  private sendMessage(m: Message): void {
    if (m.type === 'snapshot') return this.snapshots.sendChunk(m);
    if (this.o.trace !== undefined) {
      if (m.type === 'append' && m.entries.length > 0)
        this.o.trace('append-sent', m.prevIndex + m.entries.length, m.to);
      else if (m.type === 'append-resp' && m.success) this.o.trace('ack-sent', m.index, m.to);
    }
    this.o.send(m);
  }

  /** Installs the snapshot the core took from the leader (GroupSnapshots.install). */
  private async persistSnapshot(meta: SnapshotMeta, id: string | null): Promise<void> {
    this.installing = true;
    let bytes: number;
    try {
      bytes = await this.snapshots.install(meta, id);
    } finally {
      this.installing = false;
    }
    this.applied = meta.index;
    this.o.onEvent?.({ kind: 'snapshot-restored', index: meta.index, bytes });
    this.waiters.releaseReads(this.applied);
  }

  /**
   * Applies `entries`, snapshotting the state machine at each multiple of snapshotEveryEntries
   * on the way. Every node snapshots at the same indexes, however the log was cut into Readies,
   * so a new leader usually holds the very snapshot (same bytes, same id) its predecessor was
   * sending, and a follower's transfer resumes rather than starts over.
   */
  private applyCommitted(entries: readonly Entry[], duringWrite: boolean): void {
    this.applying = true;
    try {
      this.applyInOrder(entries, duringWrite);
    } finally {
      this.applying = false;
    }
  }

  private applyInOrder(entries: readonly Entry[], duringWrite: boolean): void {
    const every = this.opts.snapshotEveryEntries;
    let from = 0;
    while (from < entries.length) {
      const first = (entries[from] as Entry).index;
      const boundary = Math.ceil(first / every) * every;
      const to = Math.min(entries.length, from + (boundary - first) + 1);
      this.applyEntries(entries.slice(from, to), duringWrite);
      from = to;
      if (this.applied === boundary)
        this.snapshots.maybeTake(this.applied, this.node.entry(this.applied)?.term);
    }
  }

  private applyEntries(entries: readonly Entry[], duringWrite: boolean): void {
    const lastIndex = entries[entries.length - 1]?.index ?? 0;
    for (const e of entries) this.snapshots.applied(e.data.length);
    this.o.trace?.('committed', lastIndex, 0);
    const commands = commandsOf(entries);
    const results = commands.length > 0 ? this.o.stateMachine.apply(commands) : [];
    if (results.length !== commands.length)
      throw new Error(
        `The state machine returned ${results.length} results for ${commands.length} commands`,
      );
    // Commands are the entries' non-empty normal ones, in order: walk both together.
    let next = 0;
    for (const e of entries) {
      const result = commands[next]?.index === e.index ? results[next++] : undefined;
      this.applied = e.index;
      const w = this.waiters.proposals.get(e.index);
      if (w === undefined) continue;
      this.waiters.proposals.delete(e.index);
      // A membership change is answered once it took effect (answerConfChanges).
      if (w.term === e.term && e.type === 'conf-change') {
        this.appliedConfChanges.push(w);
        continue;
      }
      this.waiters.settle(w);
      if (w.term === e.term) w.resolve(result);
      // Another leader's entry took this index: ours was never committed, and never will be.
      else
        w.reject(
          new FlotillaError(
            'PROPOSAL_DROPPED',
            `Entry ${e.index} was replaced by a newer leader's entry`,
            false,
            this.leaderId(),
          ),
        );
    }
    this.o.trace?.('applied', lastIndex, 0);
    this.o.onEvent?.({ kind: 'applied', entries: entries.length, duringWrite });
    if (this.appliedListeners.size > 0) {
      const batch: AppliedBatch = { commands, results, appliedIndex: this.applied };
      for (const listener of this.appliedListeners) listener(batch);
    }
    this.waiters.releaseReads(this.applied);
  }

  private onReadState(id: number, index: number, ok: boolean): void {
    const w = this.waiters.reads.get(id);
    if (w === undefined) return;
    if (!ok) {
      this.waiters.reads.delete(id);
      this.waiters.settle(w);
      w.reject(
        new FlotillaError(
          'READ_FAILED',
          'The leader could not confirm the read (leadership changed); retry',
          false,
          this.leaderId(),
        ),
      );
      return;
    }
    this.waiters.confirmRead(id, index, this.applied);
  }

  private onSoftState(leader: number, role: Status['role']): void {
    const wasLeader = this.role === 'leader';
    this.role = role;
    if (leader !== this.leader) {
      this.leader = leader;
      const term = this.node.term();
      this.o.onEvent?.({ kind: 'leader-changed', leader, term });
      this.o.stateMachine.onLeaderChange?.(leader, term);
      if (leader !== 0) {
        this.reaskReads();
        this.releaseLeaderWaiters(leader);
      }
      for (const listener of this.leaderListeners) listener(leader);
    }
    if (wasLeader && role !== 'leader') {
      // Our entries may still commit under the next leader, or be overwritten: we cannot tell.
      for (const [index, w] of this.waiters.proposals) {
        this.waiters.proposals.delete(index);
        this.waiters.settle(w);
        w.reject(
          new FlotillaError(
            'LEADERSHIP_LOST',
            `Leadership lost before entry ${index} was applied; it may still commit`,
            true,
            leader,
          ),
        );
      }
    }
  }

  /**
   * Reads still waiting for a read index from a leader that is no longer the one this node
   * knows are asked again of the new one, under new request ids: the old leader may be paused
   * or partitioned and never answer, and a read index confirmed by any leader after the read
   * arrived is safe (thesis §6.4). A late answer to an old id is ignored.
   */
  private reaskReads(): void {
    const leader = this.leaderId(); // where the core sends a read index now
    if (leader === 0) return;
    this.syncClock();
    for (const [requestId, w] of [...this.waiters.reads]) {
      if (w.index !== -1 || w.askedOf === leader) continue;
      const next = this.nextReadId++;
      if (!this.node.readIndex(next, { lease: w.lease }).ok) return;
      this.waiters.reads.delete(requestId);
      w.requestId = next;
      w.askedOf = leader;
      this.waiters.reads.set(next, w);
    }
  }

  private releaseLeaderWaiters(leader: number): void {
    for (const w of this.waiters.leaders) {
      if (w.other === leader) continue;
      this.waiters.leaders.delete(w);
      this.waiters.settle(w);
      w.resolve(leader);
    }
  }

  private answerConfChanges(): void {
    if (this.appliedConfChanges.length === 0) return;
    const conf = this.node.confState();
    for (const w of this.appliedConfChanges) {
      this.waiters.settle(w);
      w.resolve(conf);
    }
    this.appliedConfChanges = [];
  }

  /**
   * Snapshot transfers in progress: to each follower this leader sends one to, and from the
   * leader this node receives one from; with bytes held, bytes moved, chunks and rate.
   */
  snapshotTransfers(): SnapshotTransfer[] {
    return this.snapshots.transfers();
  }

  /** Counters of refused chunks and snapshots and of snapshot bytes sent, since start. */
  snapshotCounters(): { corruptChunks: number; refusedSnapshots: number; bytesSent: number } {
    return this.snapshots.totals();
  }

  /** Lets timers and I/O run (on the injected clock, so the simulator controls it too). */
  private nextTurn(): Promise<void> {
    return new Promise((resolve) => this.o.clock.setTimeout(resolve, 0));
  }

  private die(err: Error): void {
    // A failed fsync leaves the disk's state unknown: stop rather than pretend (fsyncgate).
    if (this.fatal !== null) return;
    this.fatal = err;
    this.running = false;
    this.noteLeadingChange();
    this.o.onEvent?.({ kind: 'fatal', error: err });
    for (const w of this.appliedConfChanges) this.waiters.settle(w);
    const applied = this.appliedConfChanges;
    this.appliedConfChanges = [];
    this.waiters.failAll(
      new FlotillaError(
        'STORAGE_FAILED',
        `Node stopped after a storage failure: ${err.message}`,
        true,
      ),
    );
    // Applied, but the change took effect in a core that stopped before it was advanced.
    for (const w of applied)
      w.reject(
        new FlotillaError(
          'STORAGE_FAILED',
          `Node stopped after a storage failure: ${err.message}`,
          true,
        ),
      );
  }
}

/**
 * Restores the state machine from the snapshot storage holds, if any: read a few MB at a time
 * where storage can (the WAL), else whole. Answers the snapshot's metadata, size and id.
 */
async function restoreHeld(
  o: RuntimeOptions,
): Promise<{ meta: SnapshotMeta; totalBytes: number; id: string } | null> {
  const { storage, stateMachine } = o;
  if (storage.openSnapshot !== undefined) {
    const held = await storage.openSnapshot();
    if (held === null) return null;
    const hash = snapshotHash(held.meta);
    const { pieces } = held;
    async function* hashed(): AsyncGenerator<Uint8Array, void, undefined> {
      for await (const piece of pieces()) {
        hash.update(piece);
        yield piece;
      }
    }
    await stateMachine.restore(unframeSnapshot(hashed()));
    return { meta: held.meta, totalBytes: held.totalBytes, id: idOf(hash) };
  }
  const snapshot = await storage.loadSnapshot();
  if (snapshot === null) return null;
  await stateMachine.restore(snapshotChunks(snapshot.data));
  const id = idOf(snapshotHash(snapshot.meta).update(snapshot.data));
  return { meta: snapshot.meta, totalBytes: snapshot.data.length, id };
}
