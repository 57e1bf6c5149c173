// The runtime of one Raft group, as its callers and its host see it: starting and stopping it,
// proposals, membership changes, reads and leadership transfer, and the ticks and messages the
// host hands it. Its Ready loop, group commit and apply are ready-loop.ts's (the class it
// extends), its options and events runtime-options.ts's, its snapshots group-snapshots.ts's.
// It owns no I/O: the host (host.ts) ticks it, hands it its messages, and owns the transport
// and storage it uses.

import {
  successors,
  type ConfChange,
  type ConfState,
  type Message,
  type SnapshotMeta,
  type Status,
} from '../raft/index.js';
import type { AppliedBatch, GroupId, GroupStorage, StateMachine } from './contracts.js';
import { FlotillaError, type ErrorCode } from '../base/errors.js';
import { snapshotChunks, unframeSnapshot } from './snapshot-stream.js';
import { SnapshotReceiver } from './snapshot-receiver.js';
import {
  MemoryPartialSnapshots,
  idOf,
  snapshotHash,
  type SnapshotTransfer,
} from './snapshot-transfer.js';
import { ReadyLoop } from './ready-loop.js';
import type { RuntimeOptions } from './runtime-options.js';
import type { TraceHook } from './trace.js';
import type { LeaderWaiter, ProposalWaiter, ReadWaiter, WaitOptions } from './waiters.js';

export type { WaitOptions } from './waiters.js';

export class RaftRuntime extends ReadyLoop {
  private closed = false;
  /**
   * Where close() is (null: not asked to close): said when a shutdown outlasts its grace, so
   * that a stop that never ends names what it waits for.
   */
  closeStage: string | null = null;

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
