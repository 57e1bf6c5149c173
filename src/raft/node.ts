// The public face of the Raft core (etcd-io/raft's RawNode): the inputs callers feed one node
// (ticks, messages, proposals, reads), and the Ready / advance cycle through which it hands
// back what to persist, send and apply. It does no I/O; see the Ready doc comment in types.ts
// for the caller's obligations and their order. The algorithm itself is Raft (raft.ts).

import { resolveConfig, type RaftConfig } from './config.js';
import { checkMessage, checkSnapshotMeta } from './check-message.js';
import { applyConfEntry, unappliedConfChange } from './conf-history.js';
import {
  changeConf,
  confOfSnapshot,
  sameConf,
  snapshotMetaOf,
  type ConfChange,
  type ConfState,
} from './confchange.js';
import type { JointConfig } from './quorum.js';
import { assert, fail, ok, type Result } from './errors.js';
import type { ProgressState } from './progress.js';
import { Raft } from './raft.js';
import { hup } from './step-candidate.js';
import { incomingChecked } from './step-follower.js';
import {
  flushBatched,
  readRoundDue,
  leaderReadIndex,
  leaseHolds,
  maybeAutoLeave,
  propose,
  proposeConfChange,
  selfPersisted,
  transferLeadership,
} from './step-leader.js';
import {
  NONE,
  type AppendResponse,
  type Entry,
  type HardState,
  type IncomingSnapshot,
  type Index,
  type Message,
  type NodeId,
  type Ready,
  type Recovery,
  type Role,
  type SnapshotDescriptor,
  type SnapshotMeta,
  type SoftState,
  type Term,
  type VoteRequest,
} from './types.js';

export interface Status {
  readonly id: NodeId;
  readonly role: Role;
  readonly term: Term;
  readonly vote: NodeId;
  readonly leader: NodeId;
  readonly commit: Index;
  readonly applied: Index;
  readonly firstIndex: Index;
  readonly lastIndex: Index;
  readonly persistedIndex: Index;
  readonly transferee: NodeId;
  readonly recovery: Recovery;
  /** The group is quiesced here (RaftConfig.quiesce): this node's timers stand still. */
  readonly quiesced: boolean;
  /** Every voter of the configuration in force, of either half while it is joint. */
  readonly voters: readonly NodeId[];
  /** The learners of the configuration in force (replicated to, counted in no decision). */
  readonly learners: readonly NodeId[];
  /** The outgoing voters while the configuration is joint; empty otherwise. */
  readonly outgoingVoters: readonly NodeId[];
  /** The whole configuration in force (what a snapshot taken now records). */
  readonly conf: ConfState;
  /** Per member replication state (voters and learners); empty unless this node leads. */
  readonly progress: Readonly<Record<number, ProgressStatus>>;
  /** A snapshot this node is receiving from a leader, and how much of it it holds. */
  readonly incomingSnapshot: IncomingSnapshot | null;
}

export interface ProgressStatus {
  readonly match: Index;
  readonly next: Index;
  readonly state: ProgressState;
  readonly learner: boolean;
  /**
   * The follower said it is recovering lost data (Recovery): it counts in no quorum and
   * votes for no one until it caught up.
   */
  readonly catchingUp: boolean;
  /**
   * The follower answered the leader within the last election timeout (its silence is at most
   * `electionTicks`): what else this progress says was heard lately, not remembered from
   * before the follower went quiet. Always true of the leader itself.
   */
  readonly heardRecently: boolean;
  /** In snapshot state: the snapshot being sent and how much of it the follower holds. */
  readonly snapshot?: {
    readonly id: string;
    readonly index: Index;
    readonly totalBytes: number;
    readonly acked: number;
  };
}

/**
 * The voters of the incoming configuration a leader could hand leadership to, best first, from
 * its status `s`: one it heard from within an election timeout and not recovering lost data
 * before any other (a voter that crashed, or that the leader cannot reach, never campaigns),
 * then the one holding the most of its log, then the lower id. A voter the status has no
 * progress for (`s` is not a leader's) ranks as silent and holding nothing.
 */
export function successors(s: Status): NodeId[] {
  const rank = (v: NodeId): [number, number] => {
    const p = s.progress[v];
    return p === undefined ? [0, -1] : [p.heardRecently && !p.catchingUp ? 1 : 0, p.match];
  };
  return s.conf.voters
    .filter((v) => v !== s.id)
    .map((v) => ({ v, r: rank(v) }))
    .sort((a, b) => b.r[0] - a.r[0] || b.r[1] - a.r[1] || a.v - b.v)
    .map(({ v }) => v);
}

export class RaftNode {
  readonly id: NodeId;
  private readonly raft: Raft;

  // What the last Ready reported, to detect changes.
  private lastSoft: SoftState;
  private lastHard: HardState;
  private lastRecovery: Recovery;
  /** The Ready handed out and not yet advanced. Invariant: at most one. */
  private outstanding: Ready | null = null;
  /** takeCommitted() counted the outstanding Ready's committed entries as applied. */
  private outstandingApplied = false;

  constructor(config: RaftConfig) {
    const cfg = resolveConfig(config);
    this.id = cfg.id;
    // The hooks go through `this` so that a subclass's overrides are the ones called.
    this.raft = new Raft(
      cfg,
      {
        logIsUpToDate: (lastIndex, lastTerm) => this.logIsUpToDate(lastIndex, lastTerm),
        mayCommitAt: (index) => this.mayCommitAt(index),
        withholdsVote: (m) => this.withholdsVote(m),
        followerLostLog: (m, match) => this.followerLostLog(m, match),
        mustPersistBeforeSending: (m) => this.mustPersistBeforeSending(m),
        nextConf: (c, cc) => this.nextConf(c, cc),
        commitVoters: (voters, learners) => this.commitVoters(voters, learners),
        leaseEnd: (sentTick, nowTick) => this.leaseEnd(sentTick, nowTick),
        wakes: () => this.wakes(),
      },
      config.initial,
      config.recovery ?? 'none',
    );
    this.lastRecovery = this.raft.recoveryState;
    // A term raised at start to the last entry's (Raft's constructor) is not on disk yet: the
    // first Ready writes it, and no message of it leaves before.
    const stored = config.initial?.hardState;
    this.lastHard =
      stored !== undefined && stored.term !== this.raft.term ? stored : this.raft.hardState();
    this.lastSoft = { leader: NONE, role: 'follower' };
  }

  // -------------------------------------------------------------------------------------------
  // Inputs

  /**
   * One tick of the election and heartbeat timers, and `clockTicks` of the lease clock (the
   * tick count, `ticks`). The timers count ticks as they come: after a stall they resume
   * where they were, so messages that arrived meanwhile are stepped before a timeout fires.
   * The lease clock must not fall behind real time, or a leader resumed after a stall longer
   * than its lease would serve a lease read while another leads (DESIGN.md, "Lease reads"):
   * the host passes how many ticks of real time passed, 0 or more (default 1).
   */
  tick(clockTicks = 1): void {
    this.advanceClock(clockTicks);
    // A quiesced node's timers stand still: it neither campaigns, nor heartbeats, nor checks
    // its quorum until something wakes it (wake).
    if (this.raft.quiesced) return;
    this.raft.tickRole(this.raft);
  }

  /**
   * Whether this node is quiesced (RaftConfig.quiesce): its group is idle and ticks do nothing
   * but move the lease clock, so the caller need not tick it until it wakes. Any input or
   * message wakes it, as does wake().
   */
  quiesced(): boolean {
    return this.raft.quiesced;
  }

  /**
   * Wakes a quiesced node (a no-op otherwise): its caller's failure detection says so, e.g.
   * the leader's node fell silent for an election timeout, or a member's node came back. A
   * woken follower campaigns after a whole election timeout without a leader's word, as if it
   * had just heard from it; a woken leader sends a heartbeat round at once.
   */
  wake(reason: string): void {
    this.raft.wake(reason);
  }

  /** Moves the lease clock on by `ticks` of real time that passed since it last moved. */
  advanceClock(ticks: number): void {
    // A NaN or negative count (a clock read wrong) would stop or turn back the lease clock
    // unseen; the lease's safety rests on it only ever moving forward.
    assert(
      Number.isSafeInteger(ticks) && ticks >= 0,
      `The clock moves on by a whole number of ticks >= 0, got ${JSON.stringify(ticks) ?? String(ticks)}`,
    );
    this.raft.ticks += ticks;
  }

  /** Starts an election now (as if the election timeout elapsed). */
  campaign(): void {
    const r = this.raft;
    r.wake('campaign asked');
    if (r.role === 'leader' || !r.promotable()) return;
    hup(r, false);
  }

  /**
   * Appends one command (the leader only). The core keeps `data` as given when it is its
   * buffer's whole (a view into a larger one is copied: ownedData): do not change its bytes
   * afterwards, or what is persisted, sent and applied changes with them.
   */
  propose(data: Uint8Array): Result<{ index: Index; term: Term }> {
    const r = this.proposeBatch([data]);
    if (!r.ok) return r;
    return ok({ index: r.value.firstIndex, term: r.value.term });
  }

  /**
   * Appends several commands at once; all or none are accepted. Data that is not bytes (a
   * string from a caller in plain JavaScript) is refused BAD_REQUEST: its length is not its
   * size, so the size limits would not hold, and storage and transports expect bytes.
   */
  proposeBatch(datas: readonly Uint8Array[]): Result<{ firstIndex: Index; term: Term }> {
    if (!Array.isArray(datas))
      return fail('BAD_REQUEST', `A batch of proposals must be an array, got ${typeof datas}`);
    // Its answer would name an index no entry of it holds: the next proposal's.
    if (datas.length === 0) return fail('BAD_REQUEST', 'A batch of proposals must not be empty');
    for (const [i, d] of datas.entries()) {
      if (!(d instanceof Uint8Array))
        return fail(
          'BAD_REQUEST',
          `${datas.length === 1 ? 'A proposal' : `Proposal ${i}`} must be a Uint8Array, got ${d === null ? 'null' : typeof d}`,
        );
    }
    const r = this.raft;
    r.wake('proposal');
    if (r.role !== 'leader') {
      return fail(
        'NOT_LEADER',
        `Node ${this.id} is not the leader (leader: ${r.leader || 'unknown'})`,
        r.leader,
      );
    }
    return propose(r, datas);
  }

  /**
   * Asks for a linearizable read point (thesis §6.4). The answer arrives as a ReadState with
   * this requestId in a later Ready; serve the read once the state machine applied its index.
   * With `lease`, a leader whose lease holds answers in that Ready without a heartbeat round
   * (DESIGN.md, "Lease reads"); otherwise the read takes a round as any other. A follower
   * forwards the flag to the leader, which answers it the same way.
   */
  readIndex(requestId: number, o: { readonly lease?: boolean } = {}): Result<void> {
    // Checked here rather than where it would otherwise fail: on the leader, stepping the
    // follower's forwarded request (check-message.ts).
    if (!Number.isSafeInteger(requestId) || requestId < 0)
      return fail(
        'BAD_REQUEST',
        `A read's requestId must be an integer >= 0, got ${typeof requestId === 'number' ? requestId : typeof requestId}`,
      );
    if (
      typeof o !== 'object' ||
      o === null ||
      (o.lease !== undefined && typeof o.lease !== 'boolean')
    )
      return fail(
        'BAD_REQUEST',
        `A read's options are { lease?: boolean }, got ${JSON.stringify(o) ?? typeof o}`,
      );
    const r = this.raft;
    const lease = o.lease ?? false;
    r.wake(lease ? 'lease read' : 'read');
    if (r.role === 'leader') {
      leaderReadIndex(r, requestId, this.id, lease);
      return ok(undefined);
    }
    if (r.leader === NONE) {
      return fail('NOT_LEADER', `Node ${this.id} knows no leader to confirm a read`, NONE);
    }
    r.send({ type: 'read-index', from: this.id, to: r.leader, term: r.term, requestId, lease });
    return ok(undefined);
  }

  /**
   * The leader's lease, for tests and status: the tick count now and the first tick at which
   * the lease no longer holds; `holds` says whether a lease read is answered without a round.
   */
  lease(): { readonly nowTick: number; readonly endTick: number; readonly holds: boolean } {
    const r = this.raft;
    return {
      nowTick: r.ticks,
      endTick: r.role === 'leader' ? r.readOnly.leaseEnd : 0,
      holds: r.role === 'leader' && leaseHolds(r),
    };
  }

  /**
   * Proposes a membership change (thesis §4.3; confchange.ts): the changes are applied
   * together, through a joint configuration when more than one voter changes (the leader
   * leaves it by itself once it is applied). The configuration takes effect on each node when
   * the entry is applied (advance). Refused, with nothing appended, when this node does not
   * lead, another change is in flight, or the change is invalid (MEMBERSHIP_* codes).
   */
  proposeConfChange(cc: ConfChange): Result<{ index: Index; term: Term }> {
    const r = this.raft;
    r.wake('membership change');
    if (r.role !== 'leader') {
      return fail(
        'NOT_LEADER',
        `Node ${this.id} is not the leader (leader: ${r.leader || 'unknown'})`,
        r.leader,
      );
    }
    return proposeConfChange(r, cc);
  }

  /** The configuration in force (the one the last applied change brought). */
  confState(): ConfState {
    return this.raft.conf();
  }

  /**
   * The configuration in force at `index` (from the snapshot's index on): what a snapshot of
   * the state machine at `index` must record.
   */
  confStateAt(index: Index): ConfState {
    return this.raft.confAt(index);
  }

  /** Hands leadership to `to` once it is caught up (thesis §3.10). */
  transferLeadership(to: NodeId): Result<void> {
    // An id decoded as the string "3" is no voter's: say the type, not "not a voter".
    if (typeof to !== 'number' || !Number.isSafeInteger(to) || to <= 0)
      return fail('BAD_REQUEST', `A node id is a positive integer, got ${JSON.stringify(to)}`);
    const r = this.raft;
    r.wake('leadership transfer');
    if (r.role !== 'leader') {
      return fail('NOT_LEADER', `Node ${this.id} is not the leader`, r.leader);
    }
    return transferLeadership(r, to);
  }

  /**
   * The caller snapshotted its state machine at `index` (<= applied): drop entries before it.
   * Returns the metadata of the snapshot the log now starts from, with the configuration in
   * force at its index.
   */
  compact(index: Index): SnapshotMeta {
    const r = this.raft;
    // A string index became "3" + "1" far from here, a fraction a TypeError inside the log.
    assert(
      typeof index === 'number' && Number.isSafeInteger(index) && index >= 0,
      `compact needs an integer log index >= 0, got ${JSON.stringify(index) ?? String(index)}`,
    );
    r.log.compact(index);
    r.confs.compacted(r.log.snapshotIndex);
    return snapshotMetaOf(r.log.snapshotIndex, r.log.snapshotTerm, r.confAt(r.log.snapshotIndex));
  }

  /** Steps a message from a peer; one that is malformed (see check-message.ts) throws. */
  step(m: Message): void {
    checkMessage(m);
    this.raft.step(m);
  }

  /**
   * The caller holds this snapshot whole and durable, and can send any chunk of it: followers
   * behind the compacted log are sent it from now on. Transfers already under way go on with
   * the snapshot they started with, so the caller keeps that one's bytes until they end.
   */
  offerSnapshot(s: SnapshotDescriptor): void {
    const r = this.raft;
    if (typeof s !== 'object' || s === null)
      assert(false, `offerSnapshot takes { meta, id, totalBytes }, got ${String(s)}`);
    checkSnapshotMeta(s.meta, 'The snapshot offered');
    assert(
      Number.isSafeInteger(s.totalBytes) && s.totalBytes >= 1,
      `A snapshot has at least one byte, offered ${s.totalBytes}`,
    );
    assert(
      typeof s.id === 'string' && s.id.length > 0,
      `A snapshot offered needs an id (what its chunks are asked by), got ${JSON.stringify(s.id)}`,
    );
    const { index, term } = s.meta;
    // Followers install what is offered as the state through its index: one past the commit,
    // or of another term than the log's entry there, would put a state no quorum holds
    // on them, and a later offer below it is never taken.
    assert(
      Number.isSafeInteger(index) && index >= 1 && index <= r.log.committed,
      `A snapshot offered must be at a committed index (1 to ${r.log.committed}), got ${index}`,
    );
    const held = r.log.term(index);
    assert(
      held === undefined || held === term,
      `The snapshot offered at index ${index} says term ${term}, but the log's entry there is of term ${held}`,
    );
    // Followers install its configuration with it: another than the one in force at its index
    // would make them a group of other members. The core knows that configuration from its own
    // snapshot's index (an older offer, saved while a newer snapshot was installed, is not
    // judged) up to what it applied.
    if (index >= r.log.snapshotIndex && index <= r.log.applied) {
      const want = confOfSnapshot(snapshotMetaOf(index, term, r.confAt(index)));
      const said = confOfSnapshot(s.meta);
      assert(
        sameConf(said, want),
        `The snapshot offered at index ${index} says voters ${String(said.voters)}, learners ${String(said.learners)}, but the configuration in force there is voters ${String(want.voters)}, learners ${String(want.learners)} (compact's answer is the metadata to offer)`,
      );
    }
    if (r.snapshotOffer !== null && r.snapshotOffer.meta.index > s.meta.index) return;
    r.snapshotOffer = s;
  }

  /**
   * The caller wrote the last chunk of incoming snapshot `id` (Ready.snapshotChunks) and
   * checked the whole against the id: `good` installs it (a later Ready carries it), otherwise
   * it is discarded and the leader asked for it again from byte 0.
   */
  incomingSnapshotChecked(id: string, good: boolean): void {
    incomingChecked(this.raft, id, good);
  }

  /** Whether this node may be missing state it promised to keep (see Recovery). */
  recovery(): Recovery {
    return this.raft.recoveryState;
  }

  // -------------------------------------------------------------------------------------------
  // Ready / advance

  /**
   * Whether `ready()` has something to hand out. False while a Ready is outstanding (taken and
   * not yet advanced), whatever was fed in since: that waits for the next Ready (or for
   * `takeMessages` and `takeCommitted`, which serve a slow write).
   */
  hasReady(): boolean {
    if (this.outstanding !== null) return false;
    const r = this.raft;
    const log = r.log;
    const snapshot = log.unstableSnapshot();
    return (
      r.msgs.length > 0 ||
      r.msgsAfterPersist.length > 0 ||
      r.readStates.length > 0 ||
      snapshot !== null ||
      r.snapshotChunks.length > 0 ||
      log.hasUnstable() ||
      (snapshot === null && log.hasNextCommitted()) ||
      (r.role === 'leader' && (r.needsBroadcast || r.commitBroadcast || readRoundDue(r))) ||
      !sameHard(r.hardState(), this.lastHard) ||
      r.recoveryState !== this.lastRecovery ||
      !sameSoft(r.softState(), this.lastSoft)
    );
  }

  /**
   * Hands out what to do now, in the order the Ready's fields document: send, persist, send
   * what promised durability, apply, serve reads; then `advance(ready)`. One at a time: a second
   * call before that advance throws.
   */
  ready(): Ready {
    assert(this.outstanding === null, 'ready() called before the previous Ready was advanced');
    const r = this.raft;
    const log = r.log;
    if (r.role === 'leader') flushBatched(r);
    r.needsBroadcast = false;
    r.commitBroadcast = false;
    r.commitUrgent = false;
    const soft = r.softState();
    const hard = r.hardState();
    const snapshot = log.unstableSnapshot();
    const rd: Ready = {
      softState: sameSoft(soft, this.lastSoft) ? null : soft,
      hardState: sameHard(hard, this.lastHard) ? null : hard,
      snapshot,
      snapshotId: snapshot === null ? null : r.installingId,
      snapshotChunks: r.snapshotChunks,
      entries: log.unstableEntries(),
      messages: r.msgs,
      messagesAfterPersist: r.msgsAfterPersist,
      committedEntries: snapshot === null ? log.nextCommitted(r.cfg.maxCommittedPerReady) : [],
      readStates: r.readStates,
      recovery: r.recoveryState === this.lastRecovery ? null : r.recoveryState,
    };
    log.acceptInProgress();
    this.lastSoft = soft;
    this.lastRecovery = r.recoveryState;
    r.msgs = [];
    r.msgsAfterPersist = [];
    r.readStates = [];
    r.snapshotChunks = [];
    this.outstanding = rd;
    return rd;
  }

  /** The Ready `rd` was handled: its writes are durable and its committed entries applied. */
  advance(rd: Ready): void {
    assert(
      this.outstanding === rd,
      'advance() called with a Ready that is not the outstanding one',
    );
    this.outstanding = null;
    const counted = this.outstandingApplied;
    this.outstandingApplied = false;
    const r = this.raft;
    const log = r.log;
    if (rd.hardState !== null) this.lastHard = rd.hardState;
    if (rd.snapshot !== null) log.snapshotStored(rd.snapshot);
    const n = rd.entries.length;
    if (n > 0) log.stableTo((rd.entries[n - 1] as Entry).index);
    const c = rd.committedEntries.length;
    // Counted already by takeCommitted, which leaves a Ready with a configuration change alone.
    if (c > 0 && !counted) {
      const last = (rd.committedEntries[c - 1] as Entry).index;
      assert(
        last === log.applied + c,
        `Applied entries out of order: ${last} after ${log.applied}`,
      );
      log.applied = last;
      // A configuration takes effect once its entry is applied, in log order.
      for (const e of rd.committedEntries) if (e.type === 'conf-change') applyConfEntry(r, e);
    }
    if (r.role === 'leader') selfPersisted(r);
    if (r.role === 'leader') maybeAutoLeave(r);
    if (r.campaignAfterApply && r.role !== 'leader' && unappliedConfChange(r) === 0) {
      r.campaignAfterApply = false;
      if (r.promotable()) hup(r, true);
    }
    if (r.recoveryState === 'recovering') r.maybeFinishRecovery();
  }

  /**
   * Takes the messages that may be sent at once (a Ready's `messages`: none promises anything
   * durable) while a Ready is outstanding, so that they need not wait for its write. Without
   * this, every message stepped or ticked into being during a slow fsync waited for it: a
   * follower's heartbeat answers, the leader's heartbeats. On a shared disk a 250-500 ms sync
   * then cost the leader its quorum (check-quorum saw no answer for an election timeout) or
   * its followers' patience. Votes and append acknowledgements stay for `messagesAfterPersist`.
   * Returns an empty list when no Ready is outstanding: the next Ready carries them.
   */
  takeMessages(): Message[] {
    const r = this.raft;
    if (this.outstanding === null || r.msgs.length === 0) return [];
    const out = r.msgs;
    r.msgs = [];
    return out;
  }

  /**
   * Takes the entries committed since the outstanding Ready was taken that are durable here
   * already (at or below the persisted index, so not among the entries that Ready is writing),
   * to apply now rather than after its write. Without this, an acknowledgement that commits an
   * entry during the leader's next write held the entry's apply, and its client's answer, until
   * that unrelated write ended: under steady load, about one more write on every commit.
   * Call only once the outstanding Ready's own `committedEntries` are applied: from here they
   * count as applied. Returns nothing when no Ready is outstanding (the next Ready carries
   * them), while a snapshot is pending, or when the outstanding Ready commits a configuration
   * change; stops before a configuration change (it takes effect in `advance`, in log order).
   */
  takeCommitted(): Entry[] {
    const rd = this.outstanding;
    const log = this.raft.log;
    if (rd === null || rd.snapshot !== null || log.unstableSnapshot() !== null) return [];
    if (!this.outstandingApplied) {
      const c = rd.committedEntries.length;
      if (c > 0) {
        if (rd.committedEntries.some((e) => e.type === 'conf-change')) return [];
        const last = (rd.committedEntries[c - 1] as Entry).index;
        assert(
          last === log.applied + c,
          `Applied entries out of order: ${last} after ${log.applied}`,
        );
        log.applied = last;
      }
      this.outstandingApplied = true;
    }
    const next = log.nextCommitted(this.raft.cfg.maxCommittedPerReady);
    const conf = next.findIndex((e) => e.type === 'conf-change');
    const out = conf === -1 ? next : next.slice(0, conf);
    const n = out.length;
    if (n > 0) log.applied = (out[n - 1] as Entry).index;
    return out;
  }

  /**
   * The leader this node knows now: its own id when it leads, 0 when it knows none. It may be
   * ahead of the soft state of the last Ready; it is for routing a request, not for the Ready's
   * bookkeeping.
   */
  leaderNow(): NodeId {
    return this.raft.leader;
  }

  /** The current term: what `status().term` says, without building the status. */
  term(): number {
    return this.raft.term;
  }

  /**
   * While this node leads: its term and the members it replicates to. Cheap enough to ask
   * every tick (the host's liveness lane does), unlike status().
   */
  leading(): { readonly term: Term; readonly followers: readonly NodeId[] } | null {
    const r = this.raft;
    if (r.role !== 'leader') return null;
    const followers: NodeId[] = [];
    for (const id of r.trk.progress.keys()) if (id !== r.id) followers.push(id);
    return { term: r.term, followers };
  }

  status(): Status {
    const r = this.raft;
    const progress: Record<number, ProgressStatus> = {};
    if (r.role === 'leader') {
      for (const [id, pr] of r.trk.progress) {
        const p: ProgressStatus = {
          match: pr.match,
          next: pr.next,
          state: pr.state,
          learner: !r.trk.isVoter(id),
          catchingUp: pr.catchingUp,
          heardRecently: id === r.id || pr.silentTicks <= r.cfg.electionTicks,
        };
        const s = pr.snapshot;
        progress[id] =
          pr.state === 'snapshot' && s !== null
            ? {
                ...p,
                snapshot: {
                  id: s.id,
                  index: s.meta.index,
                  totalBytes: s.totalBytes,
                  acked: pr.snapshotAcked,
                },
              }
            : p;
      }
    }
    const conf = r.conf();
    return {
      id: this.id,
      role: r.role,
      term: r.term,
      vote: r.vote,
      leader: r.leader,
      commit: r.log.committed,
      applied: r.log.applied,
      firstIndex: r.log.firstIndex(),
      lastIndex: r.log.lastIndex(),
      persistedIndex: r.log.persisted,
      transferee: r.leadTransferee,
      recovery: r.recoveryState,
      quiesced: r.quiesced,
      voters: r.trk.voterIds(),
      learners: conf.learners,
      outgoingVoters: conf.outgoing,
      conf,
      progress,
      incomingSnapshot: r.incoming,
    };
  }

  /** The term of the entry at `index` (the snapshot's at its index); undefined if compacted or past the end. */
  termAt(index: Index): Term | undefined {
    return this.raft.log.term(index);
  }

  /** The entry at `index` if it is in the in-memory log (tests and simulators). */
  entry(index: Index): Entry | undefined {
    return this.raft.log.entryAt(index);
  }

  // -------------------------------------------------------------------------------------------
  // Hooks a test may override to plant a bug (see test/sim/planted-bugs.test.ts). Raft calls
  // them through RaftHooks (raft.ts), which documents each rule.

  /** Paper §5.4.1: grant a vote only to a candidate whose log is at least as up to date. */
  protected logIsUpToDate(lastIndex: Index, lastTerm: Term): boolean {
    return this.raft.log.isUpToDate(lastIndex, lastTerm);
  }

  /** Paper §5.4.2: only entries of the leader's current term are committed by counting replicas. */
  protected mayCommitAt(index: Index): boolean {
    return this.raft.log.term(index) === this.raft.term;
  }

  /** A node that lost its data votes for nobody until it has caught up. */
  protected withholdsVote(_m: VoteRequest): boolean {
    return this.raft.recoveryState === 'recovering';
  }

  /** The follower says it lost entries it acknowledged (AppendResponse.lost). */
  protected followerLostLog(m: AppendResponse, match: Index): boolean {
    return m.lost && m.hintIndex < match;
  }

  /**
   * Thesis §4.3: the configuration a change leads to, through a joint one when more than one
   * voter changes. Called while the node is being built: it must not read the node.
   */
  protected nextConf(c: ConfState, cc: ConfChange): Result<ConfState> {
    return changeConf(c, cc);
  }

  /** Learners count toward no commit: the majorities that commit are the voters'. */
  protected commitVoters(voters: JointConfig, _learners: readonly NodeId[]): JointConfig {
    return voters;
  }

  /**
   * Lease reads: a lease counts from when its round was SENT, not when the quorum's answers
   * arrived (a follower's timer restarted no earlier than the send), and lasts the minimum
   * election timeout (no follower votes sooner) less the drift bound.
   */
  protected leaseEnd(sentTick: number, _nowTick: number): number {
    const drift = this.raft.cfg.leaseDriftTicks ?? this.raft.cfg.electionTicks;
    return sentTick + this.raft.cfg.electionTicks - drift;
  }

  /** Votes and append acknowledgements promise durable state: they wait for the write. */
  protected wakes(): boolean {
    return true;
  }

  protected mustPersistBeforeSending(m: Message): boolean {
    // A snapshot chunk's answer says its bytes are written, so a leader that resumes from it
    // after a restart of this node resumes where the partial file ends.
    if (
      m.type === 'vote' ||
      m.type === 'vote-resp' ||
      m.type === 'append-resp' ||
      m.type === 'snapshot-resp'
    )
      return true;
    // Nothing speaks for a term that is not on disk yet (the pre-vote rehearsal moves no term).
    // A lone voter leads the moment it campaigns, before its new term is written: had its
    // appends left then, a crash would bring it back at the old term, to lead the new one
    // again and write other entries at the indexes a learner already holds in that term.
    return m.term > this.lastHard.term && m.type !== 'pre-vote' && m.type !== 'pre-vote-resp';
  }
}

function sameHard(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}

function sameSoft(a: SoftState, b: SoftState): boolean {
  return a.leader === b.leader && a.role === b.role;
}
