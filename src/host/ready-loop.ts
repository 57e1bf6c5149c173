// The Ready loop of one Raft group, in the order the core's Ready contract demands: group
// commit, apply, and the answers the loop owes the waiters for proposals and reads as entries
// apply and leaders change. The event loop does not wait on a disk sync (but for a follower's
// small writes, made on its thread while the disk is fast: DESIGN.md): while one persist is in
// flight, new proposals and messages step into the core and gather into the next Ready (group
// commit).
//
// RaftRuntime (runtime.ts) extends it with what callers and the host ask of the group, and is
// the one class built on it. A base class rather than a member the runtime calls through:
// every write passes from a proposal into this loop, and it takes no extra hop on the way.
// Fields the runtime reads are protected for it.

import {
  RaftNode,
  createRng,
  type Entry,
  type HardState,
  type Message,
  type RaftConfig,
  type Ready,
  type SnapshotMeta,
  type Status,
} from '../raft/index.js';
import type { AppliedBatch } from './contracts.js';
import { FlotillaError } from '../base/errors.js';
import type { SnapshotReceiver } from './snapshot-receiver.js';
import { GroupSnapshots } from './group-snapshots.js';
import { commandsOf } from './replay.js';
import { settingsOf, type RuntimeOptions, type RuntimeSettings } from './runtime-options.js';
import { Waiters, type ProposalWaiter } from './waiters.js';

export abstract class ReadyLoop {
  protected readonly node: RaftNode;
  protected readonly opts: RuntimeSettings;
  protected readonly waiters: Waiters;
  protected readonly leaderListeners = new Set<(leader: number) => void>();
  /**
   * ReadIndex request ids start at a random point of a 2^52 range, not at 1: a leader may
   * answer a read the previous run of this process asked, after the restart, and that answer
   * must not be taken for the new run's read with the same id (it would release the read at the
   * old, lower index: a stale read the simulator found).
   */
  protected nextReadId: number;
  protected readonly appliedListeners = new Set<(batch: AppliedBatch) => void>();
  protected running = false;
  private loopActive = false;
  /**
   * The outstanding Ready's write is in flight: once its committed entries are applied (not
   * while `applying`), entries committed meanwhile may be applied at once (kick,
   * RaftNode.takeCommitted).
   */
  protected persisting = false;
  /** Entries are being applied: an apply that starts another (a listener proposing) waits. */
  private applying = false;
  /** Depth of `batch` calls in progress: while above 0, kicks are held. */
  private batchDepth = 0;
  /** A kick arrived while a batch held the loop. */
  private kickHeld = false;
  /** Settles when the Ready loop in progress (if any) has stopped. */
  protected loopDone: Promise<void> = Promise.resolve();
  protected fatal: Error | null = null;
  private leader = 0;
  protected role: Status['role'] = 'follower';
  /**
   * What `leading()` returns may have changed since the host last asked (takeLeadingChange):
   * the core's leader moved, a new role or term, a membership change, a stop. The host asks
   * only then, not every tick for every group.
   */
  protected leadingChanged = false;
  /** What `onLeads` was last told (noteLeadingChange): whether this runtime leads. */
  private leadsTold = false;
  /** The core's leader when the runtime last looked (noteLeader). */
  private leaderSeen = 0;
  /** Whether the core was quiesced when the runtime last looked (noteLeader). */
  protected quiescedSeen = false;
  /** Real time up to which the core's lease clock has been moved on (syncClock). */
  protected clockAtMs: number;
  protected applied: number;
  /** A snapshot from the leader is replacing the state machine's state (captureApplied waits). */
  protected installing = false;
  /** Taking, saving, offering, sending and receiving snapshots (group-snapshots.ts). */
  protected readonly snapshots: GroupSnapshots;
  /** The hard state last made durable (term and vote changes must sync). */
  protected syncedHard: HardState | null = null;
  /** The hard state of the latest Ready that had one, written or not. */
  protected latestHard: HardState | null = null;
  /**
   * Proposed membership changes applied in the Ready being handled: they take effect in the
   * core when the Ready is advanced, and their proposers are answered then, with the
   * configuration in force.
   */
  private appliedConfChanges: ProposalWaiter[] = [];

  protected constructor(
    protected readonly o: RuntimeOptions,
    initialSnapshot: { meta: SnapshotMeta; totalBytes: number } | null,
    receiver: SnapshotReceiver,
  ) {
    this.opts = settingsOf(o);
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
   * Whether the core's leader moved, or it quiesced or woke, since the last look (it reads the
   * core: cheap). Either changes what the liveness lane is told (leading()).
   */
  protected noteLeader(): void {
    const leader = this.node.leaderNow();
    const quiesced = this.node.quiesced();
    if (leader === this.leaderSeen && quiesced === this.quiescedSeen) return;
    this.leaderSeen = leader;
    this.quiescedSeen = quiesced;
    this.noteLeadingChange();
  }

  protected noteLeadingChange(): void {
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
  protected clockTicksDue(nowMs = this.o.clock.nowMs()): number {
    const due = Math.floor((nowMs - this.clockAtMs) / this.opts.tickMs);
    if (due <= 0) return 0;
    this.clockAtMs += due * this.opts.tickMs;
    return due;
  }

  /**
   * Brings the lease clock up to now before anything that may decide by the lease: a read, or
   * a follower's read index, since after a stall those can come before the next tick.
   */
  protected syncClock(): void {
    this.node.advanceClock(this.clockTicksDue());
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

  /** Whether this node leads the group now (a stopped runtime leads nothing). */
  isLeader(): boolean {
    return this.running && this.role === 'leader';
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

  /** Runs the Ready loop until the core has nothing more to do. One loop at a time. */
  protected kick(): void {
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
  protected hardStateUnsynced(): boolean {
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
        this.waiters.releaseLeaders(leader);
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

  private answerConfChanges(): void {
    if (this.appliedConfChanges.length === 0) return;
    const conf = this.node.confState();
    for (const w of this.appliedConfChanges) {
      this.waiters.settle(w);
      w.resolve(conf);
    }
    this.appliedConfChanges = [];
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
