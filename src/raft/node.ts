// The Raft consensus state machine of one node (Ongaro & Ousterhout, "In Search of an
// Understandable Consensus Algorithm", 2014; Ongaro's thesis, 2014). It does no I/O: callers
// feed it ticks, messages and proposals, and act on the Ready batches it returns (see the
// Ready doc comment in types.ts for their obligations and order).
//
// Role changes swap behaviour rather than set flags: each become* installs the role's step and
// tick functions.

import { resolveConfig, type RaftConfig, type RaftEvent, type ResolvedConfig } from './config.js';
import { assert, fail, ok, type Result } from './errors.js';
import { RaftLog } from './log.js';
import { Progress, type ProgressState } from './progress.js';
import { committedIndex, hasQuorum, voteResult } from './quorum.js';
import {
  NONE,
  type AppendRequest,
  type AppendResponse,
  type Entry,
  type HardState,
  type Heartbeat,
  type HeartbeatResponse,
  type Index,
  type Message,
  type Recovery,
  type NodeId,
  type ReadIndexRequest,
  type ReadState,
  type Ready,
  type Role,
  type SnapshotMeta,
  type SnapshotRequest,
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
  /** Per follower replication state; empty unless this node leads. */
  readonly progress: Readonly<Record<number, { match: Index; next: Index; state: ProgressState }>>;
}

/** A ReadIndex request waiting at the leader for its heartbeat round to be acknowledged. */
interface PendingRead {
  readonly requestId: number;
  /** The node that asked (this node for local reads). */
  readonly from: NodeId;
  readonly index: Index;
  readonly seq: number;
}

type StepFn = (m: Message) => void;

export class RaftNode {
  readonly id: NodeId;
  private readonly cfg: ResolvedConfig;
  private readonly log = new RaftLog();
  private voters: readonly NodeId[];

  // Persistent state (paper Figure 2); reported in Ready.hardState when it changes.
  private term: Term = 0;
  private vote: NodeId = NONE;

  private role: Role = 'follower';
  private leader: NodeId = NONE;
  private recoveryState: Recovery;
  /**
   * While recovering: the commit index in the first append from this term's leader (-1 before
   * it), and the highest one announced since that is above it (0 before one is). Recovery
   * ends once our commit reaches the target (maybeFinishRecovery).
   */
  private recoveryBaseline: Index = -1;
  private recoveryTarget: Index = 0;
  private stepRole: StepFn;
  private tickRole: () => void;

  /** Ticks since the last election timeout reset (followers: since hearing from a leader). */
  private electionElapsed = 0;
  private heartbeatElapsed = 0;
  /** Invariant: electionTicks <= randomizedElectionTimeout < 2 * electionTicks (paper §5.2). */
  private randomizedElectionTimeout = 0;

  private readonly votes = new Map<NodeId, boolean>();
  private readonly progress = new Map<NodeId, Progress>();
  private leadTransferee: NodeId = NONE;
  /** Bytes of proposals appended by this leader and not yet committed. */
  private uncommittedBytes = 0;
  /** Proposals arrived since the last Ready: appends go out in one batch per Ready. */
  private needsBroadcast = false;
  /** The commit index advanced: followers learn it from the next Ready's appends. */
  private commitBroadcast = false;

  // ReadIndex (thesis §6.4). Requests get the seq of the next heartbeat round; a round is sent
  // at most once per Ready, so a burst of reads costs one round.
  private readSeq = 0;
  private readRoundPending = false;
  private readonly readAcks = new Map<NodeId, number>();
  private pendingReads: PendingRead[] = [];
  /** Reads that arrived before this leader committed an entry of its own term. */
  private readsAwaitingCommit: { requestId: number; from: NodeId }[] = [];

  // Output queues, drained by ready().
  private msgs: Message[] = [];
  private msgsAfterPersist: Message[] = [];
  private readStates: ReadState[] = [];
  private pendingSnapshot: SnapshotMeta | null = null;

  // What the last Ready reported, to detect changes.
  private lastSoft: SoftState;
  private lastHard: HardState;
  private lastRecovery: Recovery;
  /** The Ready handed out and not yet advanced. */
  private outstanding: Ready | null = null;
  /** Lowest index truncated or replaced since the outstanding Ready was handed out. */
  private truncatedSinceReady = Infinity;

  constructor(config: RaftConfig) {
    this.cfg = resolveConfig(config);
    this.id = this.cfg.id;
    this.voters = this.cfg.voters;
    const initial = config.initial;
    if (initial !== undefined) {
      this.term = initial.hardState.term;
      this.vote = initial.hardState.vote;
      this.log.restore(
        initial.snapshot,
        initial.entries,
        initial.hardState.commit,
        initial.applied,
      );
    }
    this.recoveryState = config.recovery ?? 'none';
    if (this.recoveryState === 'recovering') {
      this.emit('recovery-started', NONE, 'data lost: no votes and no campaign until caught up');
    }
    this.lastRecovery = this.recoveryState;
    this.lastHard = this.hardState();
    this.lastSoft = { leader: NONE, role: 'follower' };
    this.stepRole = this.stepFollower.bind(this);
    this.tickRole = this.tickElection.bind(this);
    this.becomeFollower(this.term, NONE, 'start');
  }

  // -------------------------------------------------------------------------------------------
  // Inputs

  tick(): void {
    this.tickRole();
  }

  /** Starts an election now (as if the election timeout elapsed). */
  campaign(): void {
    if (this.role === 'leader' || !this.promotable()) return;
    this.hup(false);
  }

  propose(data: Uint8Array): Result<{ index: Index; term: Term }> {
    const r = this.proposeBatch([data]);
    if (!r.ok) return r;
    return ok({ index: r.value.firstIndex, term: r.value.term });
  }

  /** Appends several commands at once; all or none are accepted. */
  proposeBatch(datas: readonly Uint8Array[]): Result<{ firstIndex: Index; term: Term }> {
    if (this.role !== 'leader') {
      return fail(
        'NOT_LEADER',
        `Node ${this.id} is not the leader (leader: ${this.leader || 'unknown'})`,
        this.leader,
      );
    }
    if (this.leadTransferee !== NONE) {
      return fail(
        'TRANSFER_IN_PROGRESS',
        `Leadership is being transferred to node ${this.leadTransferee}`,
        this.leader,
      );
    }
    let bytes = 0;
    for (const d of datas) {
      if (d.length > this.cfg.maxProposalBytes) {
        return fail(
          'PROPOSAL_TOO_LARGE',
          `Proposal of ${d.length} bytes exceeds the limit of ${this.cfg.maxProposalBytes}`,
        );
      }
      bytes += d.length;
    }
    // Flow control (etcd's MaxUncommittedEntriesSize): refuse rather than queue forever. An
    // empty pipeline always accepts, so one large batch cannot wedge the leader.
    if (this.uncommittedBytes > 0 && this.uncommittedBytes + bytes > this.cfg.maxUncommittedBytes) {
      return fail(
        'UNCOMMITTED_LIMIT',
        `Leader holds ${this.uncommittedBytes} uncommitted bytes; ${bytes} more would exceed ${this.cfg.maxUncommittedBytes}`,
        this.leader,
      );
    }
    const firstIndex = this.log.lastIndex() + 1;
    for (let i = 0; i < datas.length; i++) {
      this.log.append({
        term: this.term,
        index: firstIndex + i,
        type: 'normal',
        data: datas[i] as Uint8Array,
      });
    }
    this.uncommittedBytes += bytes;
    this.needsBroadcast = true;
    return ok({ firstIndex, term: this.term });
  }

  /**
   * Asks for a linearizable read point (thesis §6.4). The answer arrives as a ReadState with
   * this requestId in a later Ready; serve the read once the state machine applied its index.
   */
  readIndex(requestId: number): Result<void> {
    if (this.role === 'leader') {
      this.leaderReadIndex(requestId, this.id);
      return ok(undefined);
    }
    if (this.leader === NONE) {
      return fail('NOT_LEADER', `Node ${this.id} knows no leader to confirm a read`, NONE);
    }
    this.send({ type: 'read-index', from: this.id, to: this.leader, term: this.term, requestId });
    return ok(undefined);
  }

  /** Hands leadership to `to` once it is caught up (thesis §3.10). */
  transferLeadership(to: NodeId): Result<void> {
    if (this.role !== 'leader') {
      return fail('NOT_LEADER', `Node ${this.id} is not the leader`, this.leader);
    }
    if (to === this.id) return fail('INVALID_REQUEST', `Node ${to} already leads`);
    if (!this.voters.includes(to)) return fail('UNKNOWN_NODE', `Node ${to} is not a voter`);
    if (this.leadTransferee === to) return ok(undefined);
    const pr = this.progress.get(to) as Progress;
    // A target that has not answered within an election timeout is probably down: it would
    // never take over, and proposals would be refused until the transfer timed out.
    if (pr.silentTicks > this.cfg.electionTicks) {
      const silence = Number.isFinite(pr.silentTicks)
        ? `for ${pr.silentTicks} ticks`
        : `since node ${this.id} became leader`;
      return fail(
        'PEER_INACTIVE',
        `Node ${to} has not answered the leader ${silence} (election timeout ${this.cfg.electionTicks} ticks)`,
        this.leader,
      );
    }
    this.leadTransferee = to;
    // The transfer must finish within one election timeout or it is aborted (tickHeartbeat).
    this.electionElapsed = 0;
    this.emit('transfer-started', to, 'requested');
    if (pr.caughtUp(this.log.lastIndex())) this.sendTimeoutNow(to);
    else this.sendAppend(to, true);
    return ok(undefined);
  }

  /** The caller snapshotted its state machine at `index` (<= applied): drop entries before it. */
  compact(index: Index): void {
    this.log.compact(index);
  }

  step(m: Message): void {
    assert(m.to === this.id, `Message for node ${m.to} stepped into node ${this.id}`);
    this.stepMessage(m);
    if (this.recoveryState === 'recovering') this.maybeFinishRecovery();
  }

  /** Whether this node may be missing state it promised to keep (see Recovery). */
  recovery(): Recovery {
    return this.recoveryState;
  }

  private stepMessage(m: Message): void {
    if (m.term > this.term) {
      if (!this.stepHigherTerm(m)) return;
    } else if (m.term < this.term) {
      this.stepLowerTerm(m);
      return;
    }
    if (m.type === 'vote' || m.type === 'pre-vote') {
      this.handleVoteRequest(m);
      return;
    }
    if (m.type === 'read-index-resp') {
      // The leader of our term confirmed (or refused) a read we forwarded, whatever our role now.
      this.readStates.push({ requestId: m.requestId, index: m.index, ok: m.ok });
      return;
    }
    this.stepRole(m);
  }

  // -------------------------------------------------------------------------------------------
  // Ready / advance

  hasReady(): boolean {
    if (this.outstanding !== null) return false;
    return (
      this.msgs.length > 0 ||
      this.msgsAfterPersist.length > 0 ||
      this.readStates.length > 0 ||
      this.pendingSnapshot !== null ||
      this.log.hasUnstable() ||
      (this.pendingSnapshot === null && this.log.hasNextCommitted()) ||
      (this.role === 'leader' &&
        (this.needsBroadcast || this.commitBroadcast || this.readRoundPending)) ||
      !sameHard(this.hardState(), this.lastHard) ||
      this.recoveryState !== this.lastRecovery ||
      !sameSoft(this.softState(), this.lastSoft)
    );
  }

  ready(): Ready {
    assert(this.outstanding === null, 'ready() called before the previous Ready was advanced');
    if (this.role === 'leader') {
      // One append per follower per Ready carries both new entries and the new commit index.
      if (this.needsBroadcast || this.commitBroadcast) this.broadcastAppend(this.commitBroadcast);
      if (this.readRoundPending) {
        this.readSeq++;
        this.readRoundPending = false;
        this.broadcastHeartbeat();
      }
    }
    this.needsBroadcast = false;
    this.commitBroadcast = false;
    const soft = this.softState();
    const hard = this.hardState();
    const rd: Ready = {
      softState: sameSoft(soft, this.lastSoft) ? null : soft,
      hardState: sameHard(hard, this.lastHard) ? null : hard,
      snapshot: this.pendingSnapshot,
      entries: this.log.takeUnstable(),
      messages: this.msgs,
      messagesAfterPersist: this.msgsAfterPersist,
      committedEntries:
        this.pendingSnapshot === null ? this.log.nextCommitted(this.cfg.maxCommittedPerReady) : [],
      readStates: this.readStates,
      recovery: this.recoveryState === this.lastRecovery ? null : this.recoveryState,
    };
    this.lastSoft = soft;
    this.lastRecovery = this.recoveryState;
    this.msgs = [];
    this.msgsAfterPersist = [];
    this.readStates = [];
    this.outstanding = rd;
    this.truncatedSinceReady = Infinity;
    return rd;
  }

  advance(rd: Ready): void {
    assert(
      this.outstanding === rd,
      'advance() called with a Ready that is not the outstanding one',
    );
    this.outstanding = null;
    if (rd.hardState !== null) this.lastHard = rd.hardState;
    if (rd.snapshot !== null) {
      assert(this.pendingSnapshot === rd.snapshot, 'Snapshot in Ready was replaced before advance');
      this.pendingSnapshot = null;
      this.log.persisted = Math.max(this.log.persisted, rd.snapshot.index);
      this.log.applied = Math.max(this.log.applied, rd.snapshot.index);
    }
    const n = rd.entries.length;
    if (n > 0) {
      const last = (rd.entries[n - 1] as Entry).index;
      // Entries replaced while this Ready was being persisted are not durable in their new form.
      const durable = Math.min(last, this.truncatedSinceReady - 1, this.log.lastIndex());
      if (durable > this.log.persisted) this.log.persisted = durable;
    }
    const c = rd.committedEntries.length;
    if (c > 0) {
      const last = (rd.committedEntries[c - 1] as Entry).index;
      assert(
        last === this.log.applied + c,
        `Applied entries out of order: ${last} after ${this.log.applied}`,
      );
      this.log.applied = last;
    }
    if (this.role === 'leader') {
      // The leader counts itself in the quorum only for entries it has persisted (§10.2.1).
      const self = this.progress.get(this.id) as Progress;
      self.maybeUpdate(this.log.persisted);
      if (this.maybeCommit()) this.commitBroadcast = true;
    }
    if (this.recoveryState === 'recovering') this.maybeFinishRecovery();
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
    if (this.outstanding === null || this.msgs.length === 0) return [];
    const out = this.msgs;
    this.msgs = [];
    return out;
  }

  /**
   * The leader this node knows now: its own id when it leads, 0 when it knows none. It may be
   * ahead of the soft state of the last Ready; it is for routing a request, not for the Ready's
   * bookkeeping.
   */
  leaderNow(): NodeId {
    return this.leader;
  }

  status(): Status {
    const progress: Record<number, { match: Index; next: Index; state: ProgressState }> = {};
    if (this.role === 'leader') {
      for (const [id, pr] of this.progress)
        progress[id] = { match: pr.match, next: pr.next, state: pr.state };
    }
    return {
      id: this.id,
      role: this.role,
      term: this.term,
      vote: this.vote,
      leader: this.leader,
      commit: this.log.committed,
      applied: this.log.applied,
      firstIndex: this.log.firstIndex(),
      lastIndex: this.log.lastIndex(),
      persistedIndex: this.log.persisted,
      transferee: this.leadTransferee,
      recovery: this.recoveryState,
      progress,
    };
  }

  /** The entry at `index` if it is in the in-memory log (tests and simulators). */
  entry(index: Index): Entry | undefined {
    return this.log.entryAt(index);
  }

  // -------------------------------------------------------------------------------------------
  // Hooks a test may override to plant a bug (see test/sim/planted-bugs.test.ts).

  /** Paper §5.4.1: grant a vote only to a candidate whose log is at least as up to date. */
  protected logIsUpToDate(lastIndex: Index, lastTerm: Term): boolean {
    return this.log.isUpToDate(lastIndex, lastTerm);
  }

  /** Paper §5.4.2: only entries of the leader's current term are committed by counting replicas. */
  protected mayCommitAt(index: Index): boolean {
    return this.log.term(index) === this.term;
  }

  /** A node that lost its data votes for nobody until it has caught up. */
  protected withholdsVote(_m: VoteRequest): boolean {
    return this.recoveryState === 'recovering';
  }

  /** The follower says it lost entries it acknowledged (AppendResponse.lost). */
  protected followerLostLog(m: AppendResponse, match: Index): boolean {
    return m.lost && m.hintIndex < match;
  }

  /** Votes and append acknowledgements promise durable state: they wait for the write. */
  protected mustPersistBeforeSending(m: Message): boolean {
    return m.type === 'vote' || m.type === 'vote-resp' || m.type === 'append-resp';
  }

  // -------------------------------------------------------------------------------------------
  // Role transitions

  private becomeFollower(term: Term, leader: NodeId, reason: string): void {
    const wasLeader = this.role === 'leader';
    this.reset(term);
    this.role = 'follower';
    this.leader = leader;
    this.stepRole = this.stepFollower.bind(this);
    this.tickRole = this.tickElection.bind(this);
    if (wasLeader) this.emit('step-down', leader, reason);
    this.emit('become-follower', leader, reason);
  }

  private becomePreCandidate(): void {
    assert(this.role !== 'leader', 'A leader cannot become a pre-candidate');
    // Pre-vote (thesis §9.6) changes neither term nor vote: a partitioned node that keeps
    // failing pre-votes never disrupts the cluster with a higher term when it rejoins.
    this.votes.clear();
    this.role = 'pre-candidate';
    this.leader = NONE;
    this.stepRole = this.stepCandidate.bind(this);
    this.tickRole = this.tickElection.bind(this);
    this.emit('become-pre-candidate', NONE, 'election timeout');
  }

  private becomeCandidate(reason: string): void {
    assert(this.role !== 'leader', 'A leader cannot become a candidate');
    this.reset(this.term + 1);
    this.vote = this.id;
    this.role = 'candidate';
    this.stepRole = this.stepCandidate.bind(this);
    this.tickRole = this.tickElection.bind(this);
    this.emit('become-candidate', NONE, reason);
  }

  private becomeLeader(): void {
    assert(this.role === 'candidate', `Only a candidate can become leader, not a ${this.role}`);
    this.reset(this.term);
    this.role = 'leader';
    this.leader = this.id;
    this.stepRole = this.stepLeader.bind(this);
    this.tickRole = this.tickHeartbeat.bind(this);
    const self = this.progress.get(this.id) as Progress;
    self.becomeReplicate();
    self.maybeUpdate(this.log.persisted);
    // A no-op entry of the new term lets earlier-term entries commit (§5.4.2) and marks the
    // point after which ReadIndex is safe (§6.4).
    this.log.append({
      term: this.term,
      index: this.log.lastIndex() + 1,
      type: 'noop',
      data: new Uint8Array(0),
    });
    this.emit('become-leader', NONE, 'won election');
    this.broadcastAppend(true);
  }

  /** Resets the per-term volatile state. Moving to a new term clears the vote. */
  private reset(term: Term): void {
    if (this.term !== term) {
      this.term = term;
      this.vote = NONE;
      this.recoveryBaseline = -1;
      this.recoveryTarget = 0;
    }
    this.leader = NONE;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.resetRandomizedElectionTimeout();
    this.votes.clear();
    this.abortTransfer('term or role changed');
    this.uncommittedBytes = 0;
    this.needsBroadcast = false;
    this.commitBroadcast = false;
    this.failPendingReads();
    this.readRoundPending = false;
    this.readAcks.clear();
    this.progress.clear();
    const next = this.log.lastIndex() + 1;
    for (const id of this.voters) {
      this.progress.set(
        id,
        new Progress(next, this.cfg.maxInflightMsgs, this.cfg.maxInflightBytes),
      );
    }
  }

  private resetRandomizedElectionTimeout(): void {
    const e = this.cfg.electionTicks;
    this.randomizedElectionTimeout = e + this.cfg.rng.int(e);
  }

  // -------------------------------------------------------------------------------------------
  // Ticks

  private tickElection(): void {
    this.electionElapsed++;
    if (this.promotable() && this.electionElapsed >= this.randomizedElectionTimeout) {
      this.electionElapsed = 0;
      this.hup(false);
    }
  }

  private tickHeartbeat(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    for (const [id, pr] of this.progress) if (id !== this.id) pr.silentTicks++;
    if (this.electionElapsed >= this.cfg.electionTicks) {
      this.electionElapsed = 0;
      // Check-quorum (thesis §6.2): a leader cut off from a majority steps down, so clients
      // stop waiting on it and a partitioned minority cannot keep a stale leader.
      if (this.cfg.checkQuorum && !hasQuorum(this.voters, (id) => this.isRecentlyActive(id))) {
        this.becomeFollower(this.term, NONE, 'check-quorum: no contact with a majority');
        return;
      }
      for (const [id, pr] of this.progress) {
        if (id !== this.id) pr.recentActive = false;
        // A snapshot that got no answer in a whole election timeout is retried.
        if (pr.state === 'snapshot') pr.becomeProbe();
      }
      if (this.leadTransferee !== NONE) this.abortTransfer('timed out');
    }
    if (this.heartbeatElapsed >= this.cfg.heartbeatTicks) {
      this.heartbeatElapsed = 0;
      this.broadcastHeartbeat();
    }
  }

  private isRecentlyActive(id: NodeId): boolean {
    return (
      id === this.id || ((this.progress.get(id)?.recentActive ?? false) && this.countsInQuorum(id))
    );
  }

  /**
   * A follower that is recovering lost data may have forgotten a term it knew, and could help
   * a stale leader reach a quorum that overlaps the current leader's only in itself. Like a
   * learner, it is replicated to but counts toward no quorum (commit, ReadIndex, check-quorum)
   * until it has caught up.
   */
  private countsInQuorum(id: NodeId): boolean {
    return id === this.id || !(this.progress.get(id)?.catchingUp ?? false);
  }

  private promotable(): boolean {
    return this.voters.includes(this.id) && this.recoveryState !== 'recovering';
  }

  // -------------------------------------------------------------------------------------------
  // A node that lost its data (DESIGN.md, "A node that lost its data")

  /**
   * Recovery ends when this node holds the leader's log up to a commit index the leader
   * reached after we started: one above the commit index of its first append to us. That
   * commit was counted by a majority that excludes us (we count toward no quorum while
   * recovering), after we lost our data. Such a majority shares a node with any majority that
   * committed an entry or elected a leader in a higher term before then, and that node would
   * have refused this leader's term; so no higher term committed anything, and every entry
   * committed before we lost our data is at or below this leader's commit index (earlier
   * terms: below its term's first entry; its own term: its commit only grows). Our vote can
   * then no longer help elect a leader that lacks one. A leader whose commit index has not
   * moved since may be a stale one that never learned of a newer term: we wait for it to
   * commit (it appends a no-op for us, maybeCommitForRecovery).
   */
  private maybeFinishRecovery(): void {
    const c = this.log.committed;
    if (this.leader === NONE || this.recoveryTarget === 0 || c < this.recoveryTarget) return;
    this.recoveryState = 'none';
    // We may have voted in this term before we lost our data: count that vote as the
    // leader's, so this term gets no second vote from us.
    if (this.vote === NONE) this.vote = this.leader;
    this.emit(
      'recovery-finished',
      this.leader,
      `caught up to commit ${c} of leader ${this.leader} in term ${this.term}`,
    );
  }

  /** The election timeout fired, or a transfer asked us to campaign. */
  private hup(transfer: boolean): void {
    if (this.cfg.preVote && !transfer) this.runCampaign('pre-vote', false);
    else this.runCampaign('vote', transfer);
  }

  private runCampaign(kind: 'pre-vote' | 'vote', transfer: boolean): void {
    let term: Term;
    if (kind === 'pre-vote') {
      this.becomePreCandidate();
      term = this.term + 1;
    } else {
      this.becomeCandidate(transfer ? 'leadership transfer' : 'election timeout');
      term = this.term;
    }
    this.votes.set(this.id, true);
    if (this.tallyVotes()) return;
    const lastLogIndex = this.log.lastIndex();
    const lastLogTerm = this.log.lastTerm();
    for (const to of this.voters) {
      if (to === this.id) continue;
      this.send({ type: kind, from: this.id, to, term, lastLogIndex, lastLogTerm, transfer });
    }
  }

  /** Acts on the votes so far; returns whether the election ended. */
  private tallyVotes(): boolean {
    const result = voteResult(this.voters, this.votes);
    if (result === 'pending') return false;
    if (result === 'won') {
      if (this.role === 'pre-candidate') this.runCampaign('vote', false);
      else this.becomeLeader();
    } else {
      this.becomeFollower(
        this.term,
        NONE,
        `lost ${this.role === 'pre-candidate' ? 'pre-vote' : 'election'}`,
      );
    }
    return true;
  }

  // -------------------------------------------------------------------------------------------
  // Term rules (paper §5.1, thesis §9.6 and §6.2)

  /** A message from a higher term. Returns whether to go on processing it. */
  private stepHigherTerm(m: Message): boolean {
    if (m.type === 'vote' || m.type === 'pre-vote') {
      // Leader lease (thesis §6.2 with check-quorum): while we hear from a live leader, a
      // disruptive server cannot depose it. A transfer explicitly asked for the election.
      const inLease =
        this.cfg.checkQuorum &&
        this.leader !== NONE &&
        this.electionElapsed < this.cfg.electionTicks;
      if (inLease && !m.transfer) {
        this.emit(
          m.type === 'vote' ? 'vote-refused' : 'pre-vote-refused',
          m.from,
          `${m.type} in term ${m.term}: leader ${this.leader} is alive`,
        );
        return false;
      }
      // A pre-vote does not move our term: the candidate has not started a real election.
      if (m.type === 'pre-vote') return true;
      if (m.transfer && m.from === this.leadTransferee) {
        // The target got our TimeoutNow and campaigns: the hand-off is done on our side.
        this.emit('transfer-handed-off', m.from, `target campaigns in term ${m.term}`);
        this.leadTransferee = NONE;
      }
      this.becomeFollower(m.term, NONE, `vote request from ${m.from} in term ${m.term}`);
      return true;
    }
    if (m.type === 'pre-vote-resp' && m.granted) {
      // Granted pre-votes carry the term we would campaign in; they do not move our term.
      return true;
    }
    const leader =
      m.type === 'append' || m.type === 'heartbeat' || m.type === 'snapshot' ? m.from : NONE;
    this.becomeFollower(m.term, leader, `${m.type} from ${m.from} in term ${m.term}`);
    return true;
  }

  private stepLowerTerm(m: Message): void {
    if (
      (this.cfg.checkQuorum || this.cfg.preVote) &&
      (m.type === 'append' || m.type === 'heartbeat')
    ) {
      // A deposed leader that cannot hear higher terms (because pre-vote or the lease kept
      // them away) learns of our term from this answer and steps down.
      this.send({
        type: 'append-resp',
        from: this.id,
        to: m.from,
        term: this.term,
        success: false,
        index: 0,
        hintIndex: 0,
        hintTerm: 0,
        lost: false,
        catchingUp: this.recoveryState === 'recovering',
      });
    } else if (m.type === 'pre-vote') {
      this.send({
        type: 'pre-vote-resp',
        from: this.id,
        to: m.from,
        term: this.term,
        granted: false,
      });
    } else if (m.type === 'read-index') {
      this.refuseRead(m.from, m.requestId);
    }
    // Anything else from an old term is stale and ignored.
  }

  private handleVoteRequest(m: VoteRequest): void {
    if (this.withholdsVote(m)) {
      this.send({
        type: m.type === 'vote' ? 'vote-resp' : 'pre-vote-resp',
        from: this.id,
        to: m.from,
        term: this.term,
        granted: false,
      });
      this.emit(
        'vote-refused',
        m.from,
        `${m.type} for term ${m.term}: recovering lost data, not caught up with a leader yet`,
      );
      return;
    }
    // We may vote for the same candidate twice (a retried request), for anyone if we have not
    // voted and know no leader, and pre-vote for any future term.
    const canVote =
      this.vote === m.from ||
      (this.vote === NONE && this.leader === NONE) ||
      (m.type === 'pre-vote' && m.term > this.term);
    const upToDate = this.logIsUpToDate(m.lastLogIndex, m.lastLogTerm);
    const respType = m.type === 'vote' ? 'vote-resp' : 'pre-vote-resp';
    if (canVote && upToDate) {
      // A granted pre-vote answers in the term the candidate will use; a real vote is recorded.
      this.send({ type: respType, from: this.id, to: m.from, term: m.term, granted: true });
      if (m.type === 'vote') {
        this.electionElapsed = 0;
        this.vote = m.from;
      }
      this.emit(
        m.type === 'vote' ? 'vote-granted' : 'pre-vote-granted',
        m.from,
        `${m.type} for term ${m.term}`,
      );
      return;
    }
    this.send({ type: respType, from: this.id, to: m.from, term: this.term, granted: false });
    this.emit(
      m.type === 'vote' ? 'vote-refused' : 'pre-vote-refused',
      m.from,
      `${m.type} for term ${m.term}: ${this.refusalReason(m, canVote)}`,
    );
  }

  /** Why handleVoteRequest refused `m`, in the terms of the rule that refused it. */
  private refusalReason(m: VoteRequest, canVote: boolean): string {
    if (canVote)
      return `candidate log (${m.lastLogTerm}, ${m.lastLogIndex}) is behind ours (${this.log.lastTerm()}, ${this.log.lastIndex()})`;
    if (m.type === 'pre-vote') {
      // A pre-vote asks no vote of ours, only whether we would move past our term.
      const bound = this.vote !== NONE ? `voted for ${this.vote}` : `follow leader ${this.leader}`;
      return `that term is not past ours (${this.term}), in which we ${bound}`;
    }
    return this.vote !== NONE
      ? `already voted for ${this.vote} in term ${this.term}`
      : `following leader ${this.leader}`;
  }

  // -------------------------------------------------------------------------------------------
  // Role step functions

  private stepFollower(m: Message): void {
    switch (m.type) {
      case 'append':
        this.electionElapsed = 0;
        this.leader = m.from;
        this.handleAppend(m);
        return;
      case 'heartbeat':
        this.electionElapsed = 0;
        this.leader = m.from;
        this.handleHeartbeat(m);
        return;
      case 'snapshot':
        this.electionElapsed = 0;
        this.leader = m.from;
        this.handleSnapshot(m);
        return;
      case 'timeout-now':
        // Thesis §3.10: the leader asked us to take over; skip pre-vote and the lease.
        if (this.promotable()) this.hup(true);
        return;
      case 'read-index':
        // Not the leader (any more): the asker retries elsewhere.
        this.refuseRead(m.from, m.requestId);
        return;
      default:
        return; // responses meant for a leader or candidate of this term: stale
    }
  }

  private stepCandidate(m: Message): void {
    switch (m.type) {
      case 'append':
      case 'heartbeat':
      case 'snapshot':
        // Someone won this term (§5.2): follow them.
        this.becomeFollower(this.term, m.from, `leader ${m.from} elected in term ${this.term}`);
        this.stepFollower(m);
        return;
      case 'vote-resp':
      case 'pre-vote-resp': {
        const mine = this.role === 'pre-candidate' ? 'pre-vote-resp' : 'vote-resp';
        if (m.type !== mine) return;
        this.votes.set(m.from, m.granted);
        this.tallyVotes();
        return;
      }
      case 'read-index':
        this.refuseRead(m.from, m.requestId);
        return;
      default:
        return;
    }
  }

  private stepLeader(m: Message): void {
    switch (m.type) {
      case 'append-resp':
        this.handleAppendResponse(m);
        return;
      case 'heartbeat-resp':
        this.handleHeartbeatResponse(m);
        return;
      case 'read-index':
        this.handleForwardedRead(m);
        return;
      default:
        return;
    }
  }

  // -------------------------------------------------------------------------------------------
  // Follower handlers

  private handleAppend(m: AppendRequest): void {
    if (this.recoveryState === 'recovering') {
      if (this.recoveryBaseline < 0) this.recoveryBaseline = m.commit;
      else if (m.commit > this.recoveryBaseline) {
        this.recoveryTarget = Math.max(this.recoveryTarget, m.commit);
      }
    }
    if (m.prevIndex < this.log.committed) {
      // Everything up to our commit index is settled; tell the leader where we are.
      this.sendAppendResponse(m.from, true, this.log.committed, 0, 0);
      return;
    }
    const lastNew = this.log.maybeAppend(m.prevIndex, m.prevTerm, m.entries, (from) => {
      this.truncatedSinceReady = Math.min(this.truncatedSinceReady, from);
    });
    if (lastNew >= 0) {
      this.log.commitTo(Math.min(m.commit, lastNew));
      this.sendAppendResponse(m.from, true, lastNew, 0, 0);
      return;
    }
    // Fast backtracking: point the leader at the last entry that may match its prevTerm.
    const hint = this.log.findConflictByTerm(
      Math.min(m.prevIndex, this.log.lastIndex()),
      m.prevTerm,
    );
    this.sendAppendResponse(m.from, false, m.prevIndex, hint.index, hint.term);
  }

  private handleHeartbeat(m: Heartbeat): void {
    if (m.commit > this.log.lastIndex()) {
      // The leader sends min(commit, our match): it believes we acknowledged entries we do not
      // have, so we lost them. Say where our log ends, as a rejected append does, so the
      // leader stops believing it (an idle leader sends no append that would show it).
      this.sendAppendResponse(
        m.from,
        false,
        m.commit,
        this.log.lastIndex(),
        this.log.lastTerm(),
        true,
      );
    }
    // The leader sends min(commit, our match), so this never commits past our agreement.
    this.log.commitTo(Math.min(m.commit, this.log.lastIndex()));
    const resp: HeartbeatResponse = {
      type: 'heartbeat-resp',
      from: this.id,
      to: m.from,
      term: this.term,
      seq: m.seq,
      catchingUp: this.recoveryState === 'recovering',
    };
    this.send(resp);
  }

  private handleSnapshot(m: SnapshotRequest): void {
    const s = m.snapshot;
    if (s.index <= this.log.committed) {
      this.sendAppendResponse(m.from, true, this.log.committed, 0, 0);
      return;
    }
    if (this.log.matchTerm(s.index, s.term)) {
      // We already hold the snapshot's last entry: just advance the commit index.
      this.log.commitTo(s.index);
      this.sendAppendResponse(m.from, true, s.index, 0, 0);
      return;
    }
    if (this.outstanding !== null && this.outstanding.snapshot !== null) {
      // The caller is still installing the previous snapshot; it cannot be swapped mid-write.
      // Drop this one: the leader retries once its progress times out (tickHeartbeat).
      return;
    }
    this.log.resetToSnapshot(s);
    this.voters = [...s.voters].sort((a, b) => a - b);
    // Entries handed out before the reset must not count as durable log any more.
    this.truncatedSinceReady = 0;
    this.pendingSnapshot = s;
    this.sendAppendResponse(m.from, true, s.index, 0, 0);
  }

  private sendAppendResponse(
    to: NodeId,
    success: boolean,
    index: Index,
    hintIndex: Index,
    hintTerm: Term,
    lost = false,
  ): void {
    const resp: AppendResponse = {
      type: 'append-resp',
      from: this.id,
      to,
      term: this.term,
      success,
      index,
      hintIndex,
      hintTerm,
      lost,
      catchingUp: this.recoveryState === 'recovering',
    };
    this.send(resp);
  }

  // -------------------------------------------------------------------------------------------
  // Leader: replication

  private handleAppendResponse(m: AppendResponse): void {
    const pr = this.progress.get(m.from);
    if (pr === undefined) return;
    pr.markActive();
    pr.catchingUp = m.catchingUp;
    if (!m.success) {
      // Translate the follower's hint into our log: the largest index <= hintIndex whose
      // term is <= hintTerm, where our logs may agree (fast backtracking).
      const probeFrom =
        m.hintTerm > 0 ? this.log.findConflictByTerm(m.hintIndex, m.hintTerm).index : m.hintIndex;
      if (m.hintIndex < pr.match) {
        this.maybeFollowerLostLog(m, pr, probeFrom);
        return;
      }
      if (pr.maybeDecrTo(m.index, probeFrom)) {
        if (pr.state === 'replicate') pr.becomeProbe();
        this.sendAppend(m.from, true);
      }
      return;
    }
    const wasPaused = pr.isPaused();
    if (!pr.maybeUpdate(m.index)) {
      if (wasPaused && !pr.isPaused()) this.sendAppend(m.from, false);
      return;
    }
    if (pr.state === 'probe') pr.becomeReplicate();
    else if (pr.state === 'snapshot' && pr.match >= pr.pendingSnapshot) {
      pr.becomeProbe();
      pr.becomeReplicate();
    } else if (pr.state === 'replicate') pr.inflights.freeLE(m.index);

    // A follower that was paused when the commit index last moved has not heard it but in
    // heartbeats, which carry less (min(commit, match)); a follower recovering lost data waits
    // for the whole of it. One append goes out even with no entries to carry it.
    let sendIfEmpty = false;
    if (pr.catchingUp) this.maybeCommitForRecovery(pr);
    if (this.maybeCommit()) this.commitBroadcast = true;
    else if (!this.commitBroadcast) sendIfEmpty = pr.sentCommit < this.log.committed;
    while (this.sendAppend(m.from, sendIfEmpty)) sendIfEmpty = false;
    if (m.from === this.leadTransferee && pr.caughtUp(this.log.lastIndex()))
      this.sendTimeoutNow(m.from);
  }

  /**
   * A rejection hinting at a log shorter than what the follower acknowledged. Within one
   * leader's term a follower never drops entries it acknowledged, so either it lost its data
   * or the answer is older than the acknowledgement (a network that reorders). Only an answer
   * to a heartbeat (`lost`) decides, since it cannot be older; an append rejection falls back
   * to one probe (replicate state) or is ignored (probe state, where resending at once would
   * spin: the follower rejects every probe above its log until the heartbeat says why).
   */
  private maybeFollowerLostLog(m: AppendResponse, pr: Progress, probeFrom: Index): void {
    if (this.followerLostLog(m, pr.match)) {
      this.emit(
        'follower-lost-log',
        m.from,
        `follower ${m.from} acknowledged index ${pr.match} but its log now ends at ${m.hintIndex}`,
      );
      pr.resetAfterLoss(probeFrom);
      this.sendAppend(m.from, true);
      return;
    }
    if (pr.state === 'replicate') {
      pr.becomeProbe();
      this.sendAppend(m.from, true);
    }
  }

  /**
   * A follower recovering lost data waits for us to commit something after it started
   * (maybeFinishRecovery). In an idle cluster nothing would come, so once it holds our whole
   * log we append a no-op, as at the start of a term. One at a time: not while our log holds
   * anything uncommitted.
   */
  private maybeCommitForRecovery(pr: Progress): void {
    const last = this.log.lastIndex();
    if (pr.match < last || this.log.committed < last || this.leadTransferee !== NONE) return;
    this.log.append({ term: this.term, index: last + 1, type: 'noop', data: new Uint8Array(0) });
    this.needsBroadcast = true;
  }

  /** Advances the commit index to what a majority holds, if that entry is of our term. */
  private maybeCommit(): boolean {
    const index = committedIndex(this.voters, (id) =>
      this.countsInQuorum(id) ? (this.progress.get(id)?.match ?? 0) : 0,
    );
    if (index <= this.log.committed || !this.mayCommitAt(index)) return false;
    const before = this.log.committed;
    this.log.commitTo(index);
    this.uncommittedBytes = Math.max(
      0,
      this.uncommittedBytes - this.log.bytesBetween(before, index),
    );
    if (this.readsAwaitingCommit.length > 0 && this.log.term(index) === this.term) {
      const waiting = this.readsAwaitingCommit;
      this.readsAwaitingCommit = [];
      for (const r of waiting) this.leaderReadIndex(r.requestId, r.from);
    }
    return true;
  }

  private broadcastAppend(sendIfEmpty: boolean): void {
    for (const id of this.voters) {
      if (id === this.id) continue;
      // The first message may be empty (to carry the commit index); the rest fill the window.
      let first = sendIfEmpty && (this.progress.get(id)?.sentCommit ?? 0) < this.log.committed;
      while (this.sendAppend(id, first)) first = false;
    }
  }

  /**
   * Sends the next batch of entries to `to`, or a snapshot if they were compacted. Returns
   * whether something was sent (callers loop to fill the inflight window).
   */
  private sendAppend(to: NodeId, sendIfEmpty: boolean): boolean {
    const pr = this.progress.get(to);
    if (pr === undefined || pr.isPaused()) return false;
    const prevIndex = pr.next - 1;
    const prevTerm = this.log.term(prevIndex);
    if (prevTerm === undefined) return this.sendSnapshot(to, pr);
    const entries = this.log.slice(
      pr.next,
      Infinity,
      this.cfg.maxEntriesPerMsg,
      this.cfg.maxBytesPerMsg,
    );
    if (entries.length === 0 && !sendIfEmpty) return false;
    const msg: AppendRequest = {
      type: 'append',
      from: this.id,
      to,
      term: this.term,
      prevIndex,
      prevTerm,
      entries,
      commit: this.log.committed,
    };
    this.send(msg);
    pr.sentCommit = msg.commit;
    const n = entries.length;
    if (n > 0) {
      const last = (entries[n - 1] as Entry).index;
      if (pr.state === 'replicate') {
        pr.next = last + 1;
        pr.inflights.add(last, bytesOf(entries));
      } else {
        pr.probeSent = true;
      }
    } else if (pr.state === 'probe') {
      pr.probeSent = true;
    }
    return pr.state === 'replicate' && n > 0;
  }

  private sendSnapshot(to: NodeId, pr: Progress): boolean {
    // A follower we have not heard from lately is probably down: do not ship it a snapshot.
    if (!pr.recentActive) return false;
    const snapshot: SnapshotMeta = {
      index: this.log.snapshotIndex,
      term: this.log.snapshotTerm,
      voters: this.voters,
    };
    this.send({ type: 'snapshot', from: this.id, to, term: this.term, snapshot });
    pr.becomeSnapshot(snapshot.index);
    return false;
  }

  private broadcastHeartbeat(): void {
    for (const id of this.voters) {
      if (id === this.id) continue;
      const pr = this.progress.get(id) as Progress;
      const hb: Heartbeat = {
        type: 'heartbeat',
        from: this.id,
        to: id,
        term: this.term,
        commit: Math.min(pr.match, this.log.committed),
        seq: this.readSeq,
      };
      this.send(hb);
    }
  }

  private handleHeartbeatResponse(m: HeartbeatResponse): void {
    const pr = this.progress.get(m.from);
    if (pr === undefined) return;
    pr.markActive();
    pr.catchingUp = m.catchingUp;
    pr.probeSent = false;
    if (pr.catchingUp) this.maybeCommitForRecovery(pr);
    // A lagging follower that answers heartbeats may have lost appends (§5.3: the leader retries
    // until every follower stores every entry). Free one inflight slot so a full window of lost
    // messages cannot wedge replication, and send an append even if it carries nothing new: a
    // follower missing its prevIndex rejects it, which moves it back to probing.
    if (pr.state === 'replicate' && pr.inflights.full()) pr.inflights.freeFirstOne();
    if (pr.match < this.log.lastIndex()) this.sendAppend(m.from, true);
    if (this.countsInQuorum(m.from) && m.seq > (this.readAcks.get(m.from) ?? 0)) {
      this.readAcks.set(m.from, m.seq);
      this.releaseConfirmedReads();
    }
  }

  private sendTimeoutNow(to: NodeId): void {
    this.send({ type: 'timeout-now', from: this.id, to, term: this.term });
  }

  private abortTransfer(reason: string): void {
    if (this.leadTransferee === NONE) return;
    this.emit('transfer-aborted', this.leadTransferee, reason);
    this.leadTransferee = NONE;
  }

  // -------------------------------------------------------------------------------------------
  // Leader: ReadIndex (thesis §6.4)

  private handleForwardedRead(m: ReadIndexRequest): void {
    this.leaderReadIndex(m.requestId, m.from);
  }

  private leaderReadIndex(requestId: number, from: NodeId): void {
    // Until an entry of this term commits, our commit index may lag what earlier leaders
    // committed; answering now could return a stale read (the RedisRaft bug in REFERENCES.md).
    if (this.log.term(this.log.committed) !== this.term) {
      this.readsAwaitingCommit.push({ requestId, from });
      return;
    }
    const index = this.log.committed;
    if (this.voters.length === 1) {
      this.answerRead({ requestId, from, index, seq: 0 }, true);
      return;
    }
    this.pendingReads.push({ requestId, from, index, seq: this.readSeq + 1 });
    this.readRoundPending = true;
  }

  private releaseConfirmedReads(): void {
    let done = 0;
    for (const r of this.pendingReads) {
      const confirmed = hasQuorum(
        this.voters,
        (id) => id === this.id || (this.readAcks.get(id) ?? 0) >= r.seq,
      );
      if (!confirmed) break;
      this.answerRead(r, true);
      done++;
    }
    if (done > 0) this.pendingReads = this.pendingReads.slice(done);
  }

  /** Tells a node that forwarded a read that this node cannot serve it (not the leader). */
  private refuseRead(to: NodeId, requestId: number): void {
    this.send({
      type: 'read-index-resp',
      from: this.id,
      to,
      term: this.term,
      requestId,
      ok: false,
      index: 0,
    });
  }

  private answerRead(r: PendingRead, okay: boolean): void {
    if (r.from === this.id) {
      this.readStates.push({ requestId: r.requestId, index: r.index, ok: okay });
    } else {
      this.send({
        type: 'read-index-resp',
        from: this.id,
        to: r.from,
        term: this.term,
        requestId: r.requestId,
        ok: okay,
        index: r.index,
      });
    }
  }

  private failPendingReads(): void {
    for (const r of this.pendingReads) this.answerRead(r, false);
    for (const r of this.readsAwaitingCommit) this.answerRead({ ...r, index: 0, seq: 0 }, false);
    this.pendingReads = [];
    this.readsAwaitingCommit = [];
  }

  // -------------------------------------------------------------------------------------------
  // Plumbing

  private send(m: Message): void {
    if (this.mustPersistBeforeSending(m)) this.msgsAfterPersist.push(m);
    else this.msgs.push(m);
  }

  private hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed };
  }

  private softState(): SoftState {
    return { leader: this.leader, role: this.role };
  }

  private emit(kind: RaftEvent['kind'], peer: NodeId, reason: string): void {
    this.cfg.onEvent?.({ kind, node: this.id, term: this.term, peer, reason });
  }
}

function bytesOf(entries: readonly Entry[]): number {
  let n = 0;
  for (const e of entries) n += e.data.length;
  return n;
}

function sameHard(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}

function sameSoft(a: SoftState, b: SoftState): boolean {
  return a.leader === b.leader && a.role === b.role;
}
