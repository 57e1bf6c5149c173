// The Raft consensus state machine of one node (Ongaro & Ousterhout, "In Search of an
// Understandable Consensus Algorithm", 2014; Ongaro's thesis, 2014), as etcd-io/raft's raft.go
// lays it out: the state of one node, the rules every role shares (terms, votes, role
// transitions), and the role step functions installed by each become*, which live in
// step-follower.ts, step-candidate.ts and step-leader.ts (with replicate.ts). RaftNode
// (node.ts) wraps it with the public API and the Ready bookkeeping.
//
// Role changes swap behaviour rather than set flags: each become* installs the role's step and
// tick functions, so `step` has no ladder over roles.
//
// Fields are public to the core's own modules; the class is not exported from the package.

import type { RaftEvent, ResolvedConfig } from './config.js';
import { ConfHistory, recordConf } from './conf-history.js';
import { confOfSnapshot, simpleConf, type ConfChange, type ConfState } from './confchange.js';
import { assert, type Result } from './errors.js';
import { RaftLog } from './log.js';
import { simpleConfig, type JointConfig } from './quorum.js';
import { ReadOnly, type PendingRead } from './read-only.js';
import { hup, stepCandidate } from './step-candidate.js';
import { stepFollower } from './step-follower.js';
import { broadcastAppend, sendAppends } from './replicate.js';
import { stepLeader, tickHeartbeat, wakeLeader } from './step-leader.js';
import { ProgressTracker } from './tracker.js';
import {
  NONE,
  type AppendResponse,
  type HardState,
  type Index,
  type IncomingSnapshot,
  type InitialState,
  type Message,
  type NodeId,
  type Recovery,
  type ReadState,
  type Role,
  type SnapshotChunk,
  type SnapshotDescriptor,
  type SoftState,
  type Term,
  type VoteRequest,
} from './types.js';

/**
 * The rules a test may break on purpose (RaftNode's protected hooks, see
 * test/sim/planted-bugs.test.ts). Each names the rule it stands for.
 */
export interface RaftHooks {
  /** Paper §5.4.1: grant a vote only to a candidate whose log is at least as up to date. */
  logIsUpToDate(lastIndex: Index, lastTerm: Term): boolean;
  /** Paper §5.4.2: only entries of the leader's current term are committed by counting. */
  mayCommitAt(index: Index): boolean;
  /** A node that lost its data votes for nobody until it has caught up. */
  withholdsVote(m: VoteRequest): boolean;
  /** The follower says it lost entries it acknowledged (AppendResponse.lost). */
  followerLostLog(m: AppendResponse, match: Index): boolean;
  /** Votes and append acknowledgements promise durable state: they wait for the write. */
  mustPersistBeforeSending(m: Message): boolean;
  /**
   * Thesis §4.3: the configuration a change leads to, through a joint one when more than one
   * voter changes (changeConf). Called while the Raft is being built: it must not read it.
   */
  nextConf(c: ConfState, cc: ConfChange): Result<ConfState>;
  /** Learners count toward no commit: the majorities that commit are the voters'. */
  commitVoters(voters: JointConfig, learners: readonly NodeId[]): JointConfig;
  /**
   * Lease reads: the first tick past a lease won by a heartbeat round sent at `sentTick` and
   * confirmed by a quorum at `nowTick`. It counts from the send, less the drift bound.
   */
  leaseEnd(sentTick: number, nowTick: number): number;
  /**
   * A quiesced node wakes (restarts its timers) on any input or message but its quiescing
   * round's own, and when its caller says so: one that did not would never campaign once its
   * leader is gone (DESIGN.md, "Quiescing idle groups").
   */
  wakes(): boolean;
}

export type StepFn = (r: Raft, m: Message) => void;
export type TickFn = (r: Raft) => void;

export class Raft {
  readonly id: NodeId;
  readonly cfg: ResolvedConfig;
  readonly hooks: RaftHooks;
  readonly log = new RaftLog();
  /** The configuration and, while leading, each member's progress; every quorum decision. */
  readonly trk: ProgressTracker;
  readonly readOnly: ReadOnly;

  // Persistent state (paper Figure 2); reported in Ready.hardState when it changes.
  term: Term = 0;
  vote: NodeId = NONE;

  role: Role = 'follower';
  leader: NodeId = NONE;
  recoveryState: Recovery;
  /**
   * While recovering: the commit index in the first append from this term's leader (-1 before
   * it), and the highest one announced since that is above it (0 before one is). Recovery
   * ends once our commit reaches the target (maybeFinishRecovery).
   */
  recoveryBaseline: Index = -1;
  recoveryTarget: Index = 0;
  /**
   * The last index of our log known to agree with this term's leader's: through the last
   * append from it we accepted (0 at each new term; a snapshot from it moves our commit index,
   * which counts as well). A node recovering lost data takes a heartbeat's commit index no
   * further than this or its own commit
   * (handleHeartbeat): its log may hold another term's leader's entries, and the leader's
   * record of what it acknowledged may be from before it lost them.
   */
  leaderMatched: Index = 0;
  stepRole: StepFn = stepFollower;
  tickRole: TickFn = tickElection;

  /** Ticks since the last election timeout reset (followers: since hearing from a leader). */
  electionElapsed = 0;
  heartbeatElapsed = 0;
  /** Invariant: electionTicks <= randomizedElectionTimeout < 2 * electionTicks (paper §5.2). */
  randomizedElectionTimeout = 0;

  /** The configurations in force since the snapshot; the last is the one in force now. */
  readonly confs: ConfHistory;
  /**
   * While leading: no membership change may be proposed until the entry at this index is
   * applied (one change in flight at a time). A new leader sets it to its no-op, which follows
   * any change an earlier leader left in the log.
   */
  pendingConfIndex: Index = 0;

  leadTransferee: NodeId = NONE;
  /**
   * Ticks since this node started, whatever its role: the clock of the lease (DESIGN.md, "Lease
   * reads"). Only differences between two readings on this node mean anything.
   */
  ticks = 0;
  /**
   * A transfer was started in this term: the target campaigns without waiting for the
   * followers' election timeouts (TimeoutNow, thesis §3.10), so no lease holds until the next
   * term, even after the transfer is aborted (a TimeoutNow may still be on its way).
   * Invariant: false unless leading.
   */
  leaseRevoked = false;
  /**
   * With lease reads on, a node that restarts with a term may have acknowledged a leader just
   * before it stopped, and that leader may be counting on it: for its first election timeout
   * it refuses votes as if it heard from a leader. A brand-new node promised no one.
   */
  private readonly restartedInLease: boolean;
  /**
   * A leader that applied a configuration in which it is no voter hands leadership to a voter
   * of it rather than stepping down at once (see leaderConfApplied): set until it is a
   * follower again. Invariant: only while leading.
   */
  handingOff = false;
  /** The voter a removed leader last asked to take over (handOff): asked again only if best. */
  lastHandOff: NodeId = NONE;
  /**
   * A TimeoutNow arrived while a committed membership change was not applied yet: campaign
   * (as the transfer asked) once it is (RaftNode.advance). Cleared by a new term.
   */
  campaignAfterApply = false;
  /**
   * The group is idle and this node's timers are stopped (DESIGN.md, "Quiescing idle
   * groups"): a leader sent a quiescing heartbeat (maybeQuiesce), a follower heard one. Ticks
   * move only the lease clock; any input or message but the quiescing round's own traffic
   * wakes it (wake). While set, a leader's lease counts as expired and it does not check its
   * quorum; a follower does not campaign. Invariant: false unless cfg.quiesce and the role is
   * leader or follower.
   */
  quiesced = false;
  /**
   * The quiescing heartbeat this follower last quiesced on: its term, leader and commit index
   * (tickElection quiesces a learner again on it). Null before any.
   */
  quiescedOn: { readonly term: Term; readonly leader: NodeId; readonly commit: Index } | null =
    null;
  /** Bytes of proposals appended by this leader and not yet committed. */
  uncommittedBytes = 0;
  /** Proposals arrived since the last Ready: appends go out in one batch per Ready. */
  needsBroadcast = false;
  /** The commit index advanced: followers learn it from the next Ready's appends. */
  commitBroadcast = false;
  /**
   * The commit index passed a membership change: followers are told at once even with
   * commitOnTick, since a member the change removes is told nothing once the leader applied
   * it, and must learn it committed to give up its copy.
   */
  commitUrgent = false;

  /**
   * The newest snapshot the caller can send (RaftNode.offerSnapshot); a follower behind the
   * compacted log is sent this one. Invariant: null or meta.index >= log.snapshotIndex when
   * a transfer starts (sendSnapshot checks).
   */
  snapshotOffer: SnapshotDescriptor | null = null;
  /** A snapshot this node is receiving from a leader, and how much of it it holds. */
  incoming: IncomingSnapshot | null = null;
  /**
   * The incoming snapshot is complete: its checksum is being checked by the caller
   * (RaftNode.incomingSnapshotChecked). Chunks of it are not accepted meanwhile.
   */
  incomingChecking = false;

  // Output queues, drained by the next Ready.
  msgs: Message[] = [];
  /** Chunks of the incoming snapshot to write (Ready.snapshotChunks). */
  snapshotChunks: SnapshotChunk[] = [];
  /** The id of the incoming snapshot the log was reset to, until a Ready hands it out. */
  installingId: string | null = null;
  msgsAfterPersist: Message[] = [];
  readStates: ReadState[] = [];

  /**
   * `hooks` may not be called before the constructor returns: RaftNode's hooks read the Raft
   * they are given to, which does not exist until then. Starting as a follower sends nothing.
   */
  constructor(
    cfg: ResolvedConfig,
    hooks: RaftHooks,
    initial: InitialState | undefined,
    recovery: Recovery,
  ) {
    this.cfg = cfg;
    this.id = cfg.id;
    this.hooks = hooks;
    this.trk = new ProgressTracker(
      simpleConfig(cfg.voters),
      cfg.maxInflightMsgs,
      cfg.maxInflightBytes,
    );
    this.readOnly = new ReadOnly(cfg.id);
    const snapshot = initial?.snapshot ?? null;
    this.confs = new ConfHistory(
      snapshot?.index ?? 0,
      snapshot === null ? simpleConf(cfg.voters) : confOfSnapshot(snapshot),
    );
    if (initial !== undefined) {
      this.term = initial.hardState.term;
      this.vote = initial.hardState.vote;
      this.log.restore(
        initial.snapshot,
        initial.entries,
        initial.hardState.commit,
        initial.applied,
      );
      // The entries of one Ready and its hard state are two records: a write cut short can
      // keep the entries and lose the hard state, and the stored term is then below the last
      // entry's. The node had reached that term but cast no vote in it (a vote leaves only once
      // its hard state is durable): it starts there with no vote, never leads a lower term
      // over entries of a higher one.
      if (this.log.lastTerm() > this.term) {
        this.term = this.log.lastTerm();
        this.vote = NONE;
      }
      this.incoming = initial.incoming ?? null;
      // The configuration is the snapshot's and then every change committed after it: a
      // restart never falls back to the member list the node was first started with, nor
      // waits for its first Ready to apply what is known committed (a caller that replays the
      // log from the snapshot applies them again; applyConfEntry skips them then).
      for (const e of initial.entries) {
        if (
          e.type === 'conf-change' &&
          e.index > this.log.snapshotIndex &&
          e.index <= this.log.committed
        )
          recordConf(this, e);
      }
    }
    this.trk.switchToConf(this.conf(), this.log.lastIndex() + 1);
    this.restartedInLease = cfg.leaseDriftTicks !== null && this.term > 0;
    this.recoveryState = recovery;
    if (recovery === 'recovering') {
      this.emit('recovery-started', NONE, 'data lost: no votes and no campaign until caught up');
    }
    this.becomeFollower(this.term, NONE, 'start');
  }

  // -------------------------------------------------------------------------------------------
  // Step: the rules every role shares (paper §5.1, thesis §9.6 and §6.2)

  step(m: Message): void {
    assert(m.to === this.id, `Message for node ${m.to} stepped into node ${this.id}`);
    if (this.quiesced && !this.keepsQuiet(m))
      this.wake(`${m.type} from ${m.from} in term ${m.term}`);
    this.stepMessage(m);
    if (this.recoveryState === 'recovering') this.maybeFinishRecovery();
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
    this.stepRole(this, m);
  }

  /**
   * Whether a quiesced node stays quiesced on `m`: the followers' answers to the leader's
   * quiescing heartbeat, and that heartbeat again (a duplicate, or a leader that quiesced
   * twice). Anything else, of any term, wakes it first: when in doubt, stay awake.
   */
  private keepsQuiet(m: Message): boolean {
    if (m.term !== this.term) return false;
    if (this.role === 'leader') return m.type === 'heartbeat-resp' && !m.catchingUp;
    return m.type === 'heartbeat' && m.quiesce === true && m.from === this.leader;
  }

  /**
   * Restarts a quiesced node's timers, as if it had just heard from its group: a follower
   * waits a whole election timeout (it keeps the promise a lease relies on), a leader counts
   * for check-quorum and its lease only answers to rounds sent from now (wakeLeader).
   */
  wake(reason: string): void {
    if (!this.quiesced || !this.hooks.wakes()) return;
    this.quiesced = false;
    this.electionElapsed = 0;
    this.emit('woke', NONE, reason);
    if (this.role === 'leader') wakeLeader(this);
  }

  /** A message from a higher term. Returns whether to go on processing it. */
  private stepHigherTerm(m: Message): boolean {
    if (m.type === 'vote' || m.type === 'pre-vote') {
      // Leader lease (thesis §6.2 with check-quorum): while we hear from a live leader, a
      // disruptive server cannot depose it. A transfer explicitly asked for the election.
      const justRestarted = this.restartedInLease && this.ticks < this.cfg.electionTicks;
      const inLease =
        this.cfg.checkQuorum &&
        (this.leader !== NONE || justRestarted) &&
        this.electionElapsed < this.cfg.electionTicks;
      if (inLease && !m.transfer) {
        this.emit(
          m.type === 'vote' ? 'vote-refused' : 'pre-vote-refused',
          m.from,
          this.leader !== NONE
            ? `${m.type} in term ${m.term}: leader ${this.leader} is alive`
            : `${m.type} in term ${m.term}: restarted ${this.ticks} ticks ago, a leader may hold a lease`,
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
    } else if (m.type === 'pre-vote' || m.type === 'vote') {
      // Refused in our term (paper §5.1: the answer carries it, for the candidate to update
      // itself). A candidate that never hears our term otherwise (we lag in a configuration
      // that lacks it, so our own campaigns never reach it) kept campaigning below us, and we
      // were the vote it needed while a third voter recovered: the group never elected
      // (simulator seed 259 of --ranges --moves --meta --wipe-every 1000).
      this.send({
        type: m.type === 'vote' ? 'vote-resp' : 'pre-vote-resp',
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
    const respType = m.type === 'vote' ? 'vote-resp' : 'pre-vote-resp';
    if (this.hooks.withholdsVote(m)) {
      this.send({ type: respType, from: this.id, to: m.from, term: this.term, granted: false });
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
    const upToDate = this.hooks.logIsUpToDate(m.lastLogIndex, m.lastLogTerm);
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
  // Role transitions

  becomeFollower(term: Term, leader: NodeId, reason: string): void {
    const wasLeader = this.role === 'leader';
    this.reset(term);
    this.role = 'follower';
    this.leader = leader;
    this.stepRole = stepFollower;
    this.tickRole = tickElection;
    if (wasLeader) this.emit('step-down', leader, reason);
    this.emit('become-follower', leader, reason);
  }

  becomePreCandidate(): void {
    assert(this.role !== 'leader', 'A leader cannot become a pre-candidate');
    // Pre-vote (thesis §9.6) changes neither term nor vote: a partitioned node that keeps
    // failing pre-votes never disrupts the cluster with a higher term when it rejoins.
    this.trk.resetVotes();
    this.role = 'pre-candidate';
    this.leader = NONE;
    this.stepRole = stepCandidate;
    this.tickRole = tickElection;
    this.emit('become-pre-candidate', NONE, 'election timeout');
  }

  becomeCandidate(reason: string): void {
    assert(this.role !== 'leader', 'A leader cannot become a candidate');
    this.reset(this.term + 1);
    this.vote = this.id;
    this.role = 'candidate';
    this.stepRole = stepCandidate;
    this.tickRole = tickElection;
    this.emit('become-candidate', NONE, reason);
  }

  becomeLeader(): void {
    assert(this.role === 'candidate', `Only a candidate can become leader, not a ${this.role}`);
    this.reset(this.term);
    this.role = 'leader';
    this.leader = this.id;
    this.stepRole = stepLeader;
    this.tickRole = tickHeartbeat;
    const self = this.trk.get(this.id);
    assert(self !== undefined, `Leader ${this.id} is not a voter`);
    self.becomeReplicate();
    self.maybeUpdate(this.log.persisted);
    // The leader is in contact with itself: check-quorum counts it (and never clears it).
    self.recentActive = true;
    // A no-op entry of the new term lets earlier-term entries commit (§5.4.2) and marks the
    // point after which ReadIndex is safe (§6.4).
    this.log.append({
      term: this.term,
      index: this.log.lastIndex() + 1,
      type: 'noop',
      data: new Uint8Array(0),
    });
    // Any change an earlier leader left in our log is before the no-op: no new change until
    // it is applied, and until this term committed an entry (the single-server change bug
    // Ongaro described in 2015 needs a leader to change the configuration before that).
    this.pendingConfIndex = this.log.lastIndex();
    this.emit('become-leader', NONE, 'won election');
    broadcastAppend(this, true);
  }

  /** Resets the per-term volatile state. Moving to a new term clears the vote. */
  private reset(term: Term): void {
    if (this.term !== term) {
      this.term = term;
      this.vote = NONE;
      this.recoveryBaseline = -1;
      this.recoveryTarget = 0;
      this.leaderMatched = 0;
      this.campaignAfterApply = false;
    }
    this.leader = NONE;
    this.quiesced = false;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.resetRandomizedElectionTimeout();
    this.trk.resetVotes();
    this.abortTransfer('term or role changed');
    this.leaseRevoked = false;
    this.handingOff = false;
    this.uncommittedBytes = 0;
    this.needsBroadcast = false;
    this.commitBroadcast = false;
    this.commitUrgent = false;
    this.failPendingReads();
    this.trk.resetProgress(this.log.lastIndex() + 1);
  }

  private resetRandomizedElectionTimeout(): void {
    const e = this.cfg.electionTicks;
    this.randomizedElectionTimeout = e + this.cfg.rng.int(e);
  }

  // -------------------------------------------------------------------------------------------
  // Configurations (conf-history.ts)

  /** The configuration in force: the one the last applied change (or the snapshot) brought. */
  conf(): ConfState {
    return this.confs.current();
  }

  /** The configuration in force at `index`, which is at or after the snapshot's index. */
  confAt(index: Index): ConfState {
    return this.confs.at(index);
  }

  promotable(): boolean {
    return (
      this.trk.isVoter(this.id) &&
      this.recoveryState !== 'recovering' &&
      // Holding nothing of a group that began with state (RaftConfig.waitsForState).
      !(this.cfg.waitsForState && this.log.lastIndex() === 0)
    );
  }

  abortTransfer(reason: string): void {
    if (this.leadTransferee === NONE) return;
    this.emit('transfer-aborted', this.leadTransferee, reason);
    this.leadTransferee = NONE;
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
  maybeFinishRecovery(): void {
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

  // -------------------------------------------------------------------------------------------
  // ReadIndex answers (the leader's side is in step-leader.ts)

  /** Tells a node that forwarded a read that this node cannot serve it (not the leader). */
  refuseRead(to: NodeId, requestId: number): void {
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

  answerRead(r: PendingRead, okay: boolean): void {
    if (r.from === this.id) {
      this.readStates.push({ requestId: r.requestId, index: r.index, ok: okay });
    } else {
      // A follower serves the read once it applied `index`: tell it the commit index now
      // rather than at the next tick (ResolvedConfig.commitOnTick).
      const pr = this.trk.get(r.from);
      if (okay && this.role === 'leader' && pr !== undefined && pr.sentCommit < r.index)
        sendAppends(this, r.from, true);
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
    const { pending, early } = this.readOnly.reset();
    for (const r of pending) this.answerRead(r, false);
    for (const r of early)
      this.answerRead({ requestId: r.requestId, from: r.from, index: 0, seq: 0 }, false);
  }

  // -------------------------------------------------------------------------------------------
  // Plumbing

  send(m: Message): void {
    if (this.hooks.mustPersistBeforeSending(m)) this.msgsAfterPersist.push(m);
    else this.msgs.push(m);
  }

  hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed };
  }

  softState(): SoftState {
    return { leader: this.leader, role: this.role };
  }

  emit(kind: RaftEvent['kind'], peer: NodeId, reason: string): void {
    this.cfg.onEvent?.({ kind, node: this.id, term: this.term, peer, reason });
  }
}

/**
 * A follower's or candidate's tick: campaign once the randomized election timeout passes. A
 * follower recovering lost data may not campaign; with quiescing on it says it is recovering
 * instead (announceRecovering).
 */
export function tickElection(r: Raft): void {
  r.electionElapsed++;
  if (r.electionElapsed < r.randomizedElectionTimeout) return;
  if (r.promotable()) {
    r.electionElapsed = 0;
    hup(r, false);
  } else if (r.cfg.quiesce && r.recoveryState === 'recovering' && r.role === 'follower') {
    r.electionElapsed = 0;
    announceRecovering(r);
  } else if (mayQuiesceAgain(r)) {
    r.electionElapsed = 0;
    r.quiesced = true;
    r.emit(
      'quiesced',
      r.leader,
      `no word from leader ${r.leader} for an election timeout since it quiesced the group at commit ${r.quiescedOn?.commit ?? 0}: a learner quiesces again`,
    );
  }
}

/**
 * Whether a learner woken in a quiesced group quiesces again, having heard nothing for an
 * election timeout: its leader of this term quiesced it before, it holds that round's commit
 * index, and it checks no snapshot. A heartbeat of an earlier round, overtaken by the
 * quiescing one, wakes it (anything but the quiescing round's traffic does); a voter then
 * campaigns and the group quiesces anew, but a learner never campaigns, so it stayed awake
 * for ever, ticked for nothing (simulator seed 37137 of --quiesce --membership-every 300).
 * Nothing a learner does depends on its timer, so sleeping again costs nothing: any message
 * wakes it, as before. Voters are left to campaign, since their silent leader may be gone.
 */
function mayQuiesceAgain(r: Raft): boolean {
  const q = r.quiescedOn;
  return (
    r.cfg.quiesce &&
    r.role === 'follower' &&
    r.recoveryState === 'none' &&
    !r.trk.isVoter(r.id) &&
    q !== null &&
    q.term === r.term &&
    q.leader === r.leader &&
    r.log.committed >= q.commit &&
    !r.incomingChecking
  );
}

/**
 * A follower recovering lost data that heard no leader for an election timeout tells every
 * other member it is recovering (a heartbeat answer marked catchingUp, which wakes a quiesced
 * node; DESIGN.md, "Quiescing idle groups"). Its leader may have quiesced the group on
 * answers this node gave before it lost its data, believing it caught up: that leader would
 * never send to it again, and a recovering node does not campaign, so without this the group
 * stays asleep and the node never recovers. Awake, the leader heartbeats it, finds its log
 * lost, and replicates to it; the marked answer counts toward no quorum (seq 0 acknowledges
 * no read round).
 */
function announceRecovering(r: Raft): void {
  const c = r.conf();
  const members = new Set([...c.voters, ...c.outgoing, ...c.learners, ...c.learnersNext]);
  for (const to of members) {
    if (to === r.id) continue;
    r.send({ type: 'heartbeat-resp', from: r.id, to, term: r.term, seq: 0, catchingUp: true });
  }
}
