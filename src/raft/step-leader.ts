// The leader: its step function and tick, proposals, leadership transfer, commitment, and the
// leader's side of ReadIndex. Sending appends, snapshots and heartbeats is in replicate.ts.
// Every count of voters goes through the tracker (tracker.ts).

import {
  decodeConfChange,
  describeConf,
  encodeConfChange,
  type ConfChange,
  type ConfState,
} from './confchange.js';
import { fail, ok, type Result } from './errors.js';
import { ownedData } from './owned.js';
import type { Progress } from './progress.js';
import type { Raft } from './raft.js';
import {
  broadcastAppend,
  broadcastHeartbeat,
  sendAppend,
  sendAppends,
  sendSnapshotChunk,
  sendTimeoutNow,
} from './replicate.js';
import {
  NONE,
  type AppendResponse,
  type EntryType,
  type HeartbeatResponse,
  type Index,
  type Message,
  type NodeId,
  type SnapshotResponse,
  type Term,
} from './types.js';

export function stepLeader(r: Raft, m: Message): void {
  switch (m.type) {
    case 'append-resp':
      handleAppendResponse(r, m);
      return;
    case 'heartbeat-resp':
      handleHeartbeatResponse(r, m);
      return;
    case 'snapshot-resp':
      handleSnapshotResponse(r, m);
      return;
    case 'read-index':
      leaderReadIndex(r, m.requestId, m.from, m.lease);
      return;
    default:
      return;
  }
}

export function tickHeartbeat(r: Raft): void {
  r.heartbeatElapsed++;
  r.electionElapsed++;
  for (const [id, pr] of r.trk.progress) if (id !== r.id) pr.silentTicks++;
  if (r.electionElapsed >= r.cfg.electionTicks) {
    r.electionElapsed = 0;
    // Check-quorum (thesis §6.2): a leader cut off from a majority steps down, so clients
    // stop waiting on it and a partitioned minority cannot keep a stale leader.
    // A leader handing off after its removal waits for its successor instead: stepping down
    // without one could leave the voters never told that the change committed. Cut off from
    // every voter, its heartbeats tell no one anything, and it would answer every proposal
    // "transfer in progress" for ever: it steps down then, but only once every voter holds its
    // whole log. While one does not, its longer log would refuse that voter's campaign, and a
    // configuration still in force there may need its vote (four voters, one down, the leader
    // removed and cut off: the other two need it or the fourth); leading on, it replicates the
    // rest once it is heard again.
    if (r.cfg.checkQuorum && !r.handingOff && !r.trk.quorumActive()) {
      r.becomeFollower(r.term, NONE, 'check-quorum: no contact with a majority');
      return;
    }
    if (
      r.cfg.checkQuorum &&
      r.handingOff &&
      !r.trk.anyVoterActive(r.id) &&
      r.trk.votersHold(r.id, r.log.lastIndex())
    ) {
      r.becomeFollower(r.term, NONE, 'removed, and heard from no voter in an election timeout');
      return;
    }
    for (const [id, pr] of r.trk.progress) {
      if (id !== r.id) pr.recentActive = false;
      // A snapshot transfer that moved on in a whole election timeout goes on (a large one
      // lasts many); one that did not is retried from a probe. Retrying costs at most a chunk:
      // the follower answers the first one with how much of the snapshot it holds.
      if (pr.state === 'snapshot') {
        if (!pr.snapshotProgressed) pr.becomeProbe();
        else pr.snapshotProgressed = false;
      }
    }
    if (r.leadTransferee !== NONE) r.abortTransfer('timed out');
    if (r.handingOff) handOff(r);
  }
  if (r.heartbeatElapsed >= r.cfg.heartbeatTicks) {
    r.heartbeatElapsed = 0;
    // With lease reads on, every heartbeat is a numbered round, so the lease is renewed as
    // long as a quorum answers, reads or not. Rounds sent over an election timeout ago can
    // no longer give a lease: their send ticks are forgotten.
    if (r.cfg.leaseDriftTicks !== null) {
      r.readOnly.startRound(r.ticks);
      r.readOnly.forgetBefore(r.ticks - r.cfg.electionTicks);
    }
    const quiesce = mayQuiesce(r);
    broadcastHeartbeat(r, quiesce);
    r.readOnly.widenLastRound();
    resendSnapshotChunks(r);
    if (quiesce) {
      r.quiesced = true;
      r.emit('quiesced', NONE, `idle at index ${r.log.lastIndex()}`);
    }
  }
  if (r.cfg.commitOnTick) tellCommit(r);
  // A round sent to some followers only that went unanswered for a tick: every member is sent
  // its number, so the reads waiting for it do not wait for the next heartbeat.
  if (
    r.cfg.readRoundsToQuorum &&
    r.readOnly.partialRoundUnconfirmed((seq) => roundConfirmed(r, seq), r.ticks)
  ) {
    r.readOnly.widenLastRound();
    broadcastHeartbeat(r);
  }
}

/** Sends the commit index to every follower not yet sent it (RaftConfig.commitOnTick). */
export function tellCommit(r: Raft): void {
  for (const [id, pr] of r.trk.progress) {
    if (id !== r.id && pr.sentCommit < r.log.committed) sendAppends(r, id, true);
  }
}

/**
 * Whether the group is idle enough to quiesce (DESIGN.md, "Quiescing idle groups"): every
 * member (voters and learners) acknowledged the whole log and answered within this election
 * timeout, the log is durable, committed and applied here, and nothing waits: no proposal,
 * read, transfer, hand-off, membership change or joint configuration, no snapshot transfer,
 * no member recovering lost data. Anything unclear keeps the group awake. (A partial snapshot
 * this node kept from when it followed is no transfer: it waits for a later leader's resume.)
 */
export function mayQuiesce(r: Raft): boolean {
  if (!r.cfg.quiesce || r.quiesced) return false;
  const log = r.log;
  const last = log.lastIndex();
  if (log.committed !== last || log.applied !== last || log.persisted !== last) return false;
  if (r.leadTransferee !== NONE || r.handingOff || r.recoveryState !== 'none') return false;
  if (r.pendingConfIndex > log.applied || r.conf().outgoing.length > 0) return false;
  if (r.uncommittedBytes > 0 || r.needsBroadcast || r.commitBroadcast) return false;
  if (r.readOnly.busy()) return false;
  // A member probed after a lost answer may stay in probe state while idle: its match, an
  // acknowledgement, is what counts. One being sent a snapshot is not idle.
  for (const [id, pr] of r.trk.progress) {
    if (id === r.id) continue;
    if (pr.match !== last || pr.state === 'snapshot' || pr.catchingUp || !pr.recentActive)
      return false;
  }
  return true;
}

/**
 * A quiesced leader woke (Raft.wake). Its tick count stood still while it slept, and the
 * answers it holds may be old: check-quorum counts only contact from now, the lease only
 * rounds sent from now (so a lease read confirms leadership first), and a heartbeat round
 * goes out at once to wake the followers.
 */
export function wakeLeader(r: Raft): void {
  for (const [id, pr] of r.trk.progress) if (id !== r.id) pr.recentActive = false;
  r.readOnly.forgetLease();
  r.heartbeatElapsed = 0;
  if (r.cfg.leaseDriftTicks !== null) r.readOnly.startRound(r.ticks);
  broadcastHeartbeat(r);
}

/**
 * A chunk unacknowledged for two heartbeat rounds (one may have started just after it was
 * sent) was probably lost: send it again. A duplicate costs one chunk; the follower answers it
 * with what it holds, which the leader already knows and ignores. Each resend of the same
 * chunk doubles the wait (up to 32 rounds), so a follower that is merely slow (a long disk
 * sync, a busy machine) is not sent the same chunk every two rounds.
 */
function resendSnapshotChunks(r: Raft): void {
  for (const [id, pr] of r.trk.progress) {
    if (id === r.id || pr.state !== 'snapshot' || pr.snapshot === null) continue;
    if (pr.snapshotAcked >= pr.snapshot.totalBytes) continue; // complete: being installed
    pr.snapshotIdleRounds++;
    if (pr.snapshotIdleRounds >= 2 << Math.min(pr.snapshotResends, 4)) {
      pr.snapshotResends++;
      sendSnapshotChunk(r, id, pr);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Inputs

/** Appends several commands at once; all or none are accepted. The caller checked the role. */
export function propose(
  r: Raft,
  datas: readonly Uint8Array[],
  type: EntryType = 'normal',
): Result<{ firstIndex: Index; term: Term }> {
  if (r.leadTransferee !== NONE) {
    return fail(
      'TRANSFER_IN_PROGRESS',
      `Leadership is being transferred to node ${r.leadTransferee}`,
      r.leader,
    );
  }
  let bytes = 0;
  for (const d of datas) {
    if (d.length > r.cfg.maxProposalBytes) {
      return fail(
        'PROPOSAL_TOO_LARGE',
        `Proposal of ${d.length} bytes exceeds the limit of ${r.cfg.maxProposalBytes}`,
      );
    }
    bytes += d.length;
  }
  // Flow control (etcd's MaxUncommittedEntriesSize): refuse rather than queue forever. An
  // empty pipeline always accepts, so one large batch cannot wedge the leader.
  if (r.uncommittedBytes > 0 && r.uncommittedBytes + bytes > r.cfg.maxUncommittedBytes) {
    return fail(
      'UNCOMMITTED_LIMIT',
      `Leader holds ${r.uncommittedBytes} uncommitted bytes; ${bytes} more would exceed ${r.cfg.maxUncommittedBytes}`,
      r.leader,
    );
  }
  const firstIndex = r.log.lastIndex() + 1;
  const own = ownedData(datas);
  for (let i = 0; i < own.length; i++) {
    r.log.append({
      term: r.term,
      index: firstIndex + i,
      type,
      data: own[i] as Uint8Array,
    });
  }
  r.uncommittedBytes += bytes;
  r.needsBroadcast = true;
  return ok({ firstIndex, term: r.term });
}

/**
 * Proposes a membership change (thesis §4.3) after checking it against the configuration in
 * force: one change in flight at a time (pending until applied here, on the leader), and
 * nothing but the leave while a joint configuration is unresolved (changeConf). A refused
 * change appends nothing. The caller checked the role.
 */
export function proposeConfChange(r: Raft, cc: ConfChange): Result<{ index: Index; term: Term }> {
  // Checked against the configuration in force first, so that a change that could never be
  // made says why rather than asking to be retried.
  const next = r.hooks.nextConf(r.conf(), cc);
  if (!next.ok) return { ok: false, error: next.error };
  if (r.log.applied < r.pendingConfIndex) {
    return fail(
      'MEMBERSHIP_CHANGE_PENDING',
      `A membership change is in flight: entry ${r.pendingConfIndex} is not applied yet (applied ${r.log.applied})`,
      r.leader,
    );
  }
  const appended = propose(r, [encodeConfChange(cc)], 'conf-change');
  if (!appended.ok) return appended;
  r.pendingConfIndex = appended.value.firstIndex;
  return ok({ index: appended.value.firstIndex, term: appended.value.term });
}

/**
 * A configuration took effect on the leader. Removed (or demoted) from the voters, it no
 * longer leads the group: until now it replicated and counted itself, so the change committed
 * (thesis §4.2.2), and it proposes nothing more. It hands leadership to the most caught-up
 * voter (handOff) and becomes a follower when that voter's campaign reaches it. Stepping down
 * at once, as the thesis has it, left the simulator's groups without a leader: the voters may
 * not have heard that the change committed, and while they have not applied it, a joint
 * configuration still needs the removed leader's vote, which its longer log refuses them.
 * Otherwise it probes the members it did not know and counts again, since the majorities
 * changed.
 */
export function leaderConfApplied(r: Raft, added: readonly NodeId[]): void {
  if (!r.trk.isVoter(r.id)) {
    r.handingOff = true;
    handOff(r);
    return;
  }
  if (r.leadTransferee !== NONE && !r.trk.isVoter(r.leadTransferee))
    r.abortTransfer(`node ${r.leadTransferee} is no longer a voter`);
  // The lease was won from a quorum of the configuration before: a round acknowledged by a
  // quorum of this one starts the next.
  r.readOnly.leaseEnd = 0;
  r.trk.get(r.id)?.maybeUpdate(r.log.persisted);
  for (const id of added) if (id !== r.id) sendAppend(r, id, true);
  if (maybeCommit(r)) r.commitBroadcast = true;
}

/** Whether `a` comes before `b`, comparing element by element (an empty `b` comes last). */
function ranksAbove(a: readonly number[], b: readonly number[]): boolean {
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as number;
    const y = b[i];
    if (y === undefined || x > y) return true;
    if (x < y) return false;
  }
  return false;
}

/**
 * A leader no longer a voter starts (or, after an election timeout without a successor,
 * restarts) a transfer to a voter it heard from lately, the one that holds the most of its log
 * (thesis §3.10): TimeoutNow
 * once it is caught up. Meanwhile it replicates, and its heartbeats tell the voters the commit
 * index, so they apply the change that removed it.
 */
function handOff(r: Raft): void {
  // A voter heard from within an election timeout first: one that crashed, or that this node
  // cannot reach, never campaigns, while this node's heartbeats keep the others from electing
  // anyone (they are in its lease). Then the most caught up; then, on a tie, the next id after
  // the voter tried last, round the voters, so that each is asked in turn.
  let best: NodeId = NONE;
  let bestRank: readonly number[] = [];
  for (const id of r.trk.voterIds()) {
    const pr = r.trk.get(id);
    if (id === r.id || pr === undefined) continue;
    const rank = [
      pr.silentTicks <= r.cfg.electionTicks ? 1 : 0,
      pr.match,
      // Smaller is later in turn: the id just after the last one asked comes first.
      -(id > r.lastHandOff ? id - r.lastHandOff : id - r.lastHandOff + Number.MAX_SAFE_INTEGER),
    ];
    if (ranksAbove(rank, bestRank)) {
      best = id;
      bestRank = rank;
    }
  }
  if (best === NONE) {
    r.becomeFollower(r.term, NONE, `removed from the voters: ${describeConf(r.conf())}`);
    return;
  }
  r.leadTransferee = best;
  r.lastHandOff = best;
  r.leaseRevoked = true;
  r.electionElapsed = 0;
  r.emit('transfer-started', best, `removed from the voters: ${describeConf(r.conf())}`);
  const pr = r.trk.get(best) as Progress;
  if (pr.caughtUp(r.log.lastIndex())) sendTimeoutNow(r, best);
  else sendAppend(r, best, true);
}

/**
 * Leaves a joint configuration that asked for it (autoLeave) once the entry that entered it
 * is applied: the leave is an empty change. Called after every apply on the leader.
 */
export function maybeAutoLeave(r: Raft): void {
  const c = r.conf();
  if (!c.autoLeave || r.log.applied < r.pendingConfIndex || r.leadTransferee !== NONE) return;
  const left = proposeConfChange(r, { changes: [] });
  if (left.ok) {
    r.emit('conf-leave-proposed', NONE, `leaving ${describeConf(c)} at ${left.value.index}`);
  }
}

/**
 * The configuration once the membership changes this leader proposed (or inherited) and has
 * not applied yet are: the one in force when none is in flight.
 */
function confAfterPending(r: Raft): ConfState {
  let c = r.conf();
  for (let i = r.log.applied + 1; i <= r.pendingConfIndex; i++) {
    const e = r.log.entryAt(i);
    if (e?.type !== 'conf-change') continue;
    const change = decodeConfChange(e.data);
    if (typeof change === 'string') continue;
    const next = r.hooks.nextConf(c, change);
    if (next.ok) c = next.value;
  }
  return c;
}

/** Hands leadership to `to` once it is caught up (thesis §3.10). The caller checked the role. */
export function transferLeadership(r: Raft, to: NodeId): Result<void> {
  if (to === r.id) return fail('INVALID_REQUEST', `Node ${to} already leads`);
  if (r.trk.isLearner(to))
    return fail(
      'INVALID_REQUEST',
      `Node ${to} is a learner, not a voter: only a voter can lead; promote it first`,
    );
  if (!r.trk.isVoter(to)) return fail('UNKNOWN_NODE', `Node ${to} is not a voter`);
  // A voter on its way out (a removal or demotion in flight, or the outgoing half of a joint
  // configuration it does not stay in) would win, learn it is out, and hand leadership on: two
  // elections for none. Its TimeoutNow could not be recalled once the change applies.
  const after = confAfterPending(r);
  if (!after.voters.includes(to))
    return fail(
      'INVALID_REQUEST',
      `Node ${to} is leaving the voters (${describeConf(after)} once the membership change in flight is applied): choose another`,
    );
  if (r.leadTransferee === to) return ok(undefined);
  const pr = r.trk.get(to) as Progress;
  // A target that has not answered within an election timeout is probably down: it would
  // never take over, and proposals would be refused until the transfer timed out.
  if (pr.silentTicks > r.cfg.electionTicks) {
    const silence = Number.isFinite(pr.silentTicks)
      ? `for ${pr.silentTicks} ticks`
      : `since node ${r.id} became leader`;
    return fail(
      'PEER_INACTIVE',
      `Node ${to} has not answered the leader ${silence} (election timeout ${r.cfg.electionTicks} ticks)`,
      r.leader,
    );
  }
  r.leadTransferee = to;
  r.leaseRevoked = true;
  // The transfer must finish within one election timeout or it is aborted (tickHeartbeat).
  r.electionElapsed = 0;
  r.emit('transfer-started', to, 'requested');
  if (pr.caughtUp(r.log.lastIndex())) sendTimeoutNow(r, to);
  else sendAppend(r, to, true);
  return ok(undefined);
}

/**
 * The sends a Ready batches (DESIGN.md, "Batching inside the core"): one append per follower
 * carrying every new entry and the latest commit index, and one heartbeat round for every
 * ReadIndex request that arrived since the last.
 */
export function flushBatched(r: Raft): void {
  const carry = r.commitBroadcast && (!r.cfg.commitOnTick || r.commitUrgent);
  if (r.needsBroadcast) broadcastAppend(r, carry);
  else if (carry) broadcastAppend(r, true);
  if (readRoundDue(r)) {
    const only = readRoundTargets(r);
    r.readOnly.startRound(r.ticks, only !== null);
    broadcastHeartbeat(r, false, only);
  }
}

/**
 * The followers a ReadIndex round goes to (DESIGN.md, "ReadIndex rounds"): with
 * `readRoundsToQuorum`, only as many voters as make a quorum with the leader, those that
 * echoed the latest rounds first; null (every member) otherwise, in a joint configuration,
 * when too few voters were heard from lately, or when the last such round went unconfirmed
 * for a tick.
 */
function readRoundTargets(r: Raft): NodeId[] | null {
  if (!r.cfg.readRoundsToQuorum) return null;
  const voters = r.trk.simpleVoters();
  if (voters === null || !voters.includes(r.id)) return null;
  const need = Math.floor(voters.length / 2);
  if (need >= voters.length - 1) return null;
  if (r.readOnly.partialRoundUnconfirmed((seq) => roundConfirmed(r, seq))) return null;
  const ready = voters.filter((id) => {
    if (id === r.id) return false;
    const pr = r.trk.get(id);
    return pr !== undefined && pr.recentActive && r.trk.countsInQuorum(id);
  });
  if (ready.length < need) return null;
  ready.sort((a, b) => r.readOnly.lastAck(b) - r.readOnly.lastAck(a) || a - b);
  return ready.slice(0, need);
}

/** A heartbeat round for waiting ReadIndex requests may go out now (ReadOnly.roundDue). */
export function readRoundDue(r: Raft): boolean {
  // hasReady asks on every turn: no closures unless a read waits.
  if (!r.readOnly.roundPending) return false;
  return r.readOnly.roundDue(r.ticks, (seq) => roundConfirmed(r, seq));
}

/** Whether a quorum (the leader included) acknowledged read round `seq`. */
function roundConfirmed(r: Raft, seq: number): boolean {
  return r.trk.confirmedBy((id) => r.readOnly.acked(id, seq));
}

/** The leader's own write reached `persisted`: only now does it count itself (§10.2.1). */
export function selfPersisted(r: Raft): void {
  // A leader handing off after its removal has no progress of its own: it counts no more.
  r.trk.get(r.id)?.maybeUpdate(r.log.persisted);
  if (maybeCommit(r)) r.commitBroadcast = true;
}

// ---------------------------------------------------------------------------------------------
// Replication answers

function handleAppendResponse(r: Raft, m: AppendResponse): void {
  const pr = r.trk.get(m.from);
  if (pr === undefined) return;
  pr.markActive();
  pr.catchingUp = m.catchingUp;
  if (!m.success) {
    // Translate the follower's hint into our log: the largest index <= hintIndex whose
    // term is <= hintTerm, where our logs may agree (fast backtracking).
    const probeFrom =
      m.hintTerm > 0 ? r.log.findConflictByTerm(m.hintIndex, m.hintTerm).index : m.hintIndex;
    if (m.hintIndex < pr.match) {
      maybeFollowerLostLog(r, m, pr, probeFrom);
      return;
    }
    if (pr.maybeDecrTo(m.index, probeFrom)) {
      if (pr.state === 'replicate') pr.becomeProbe();
      sendAppend(r, m.from, true);
    }
    return;
  }
  const wasPaused = pr.isPaused();
  if (!pr.maybeUpdate(m.index)) {
    if (wasPaused && !pr.isPaused()) sendAppend(r, m.from, false);
    return;
  }
  if (pr.state === 'probe') pr.becomeReplicate();
  else if (pr.state === 'snapshot' && pr.match >= pr.pendingSnapshot) {
    pr.becomeProbe();
    pr.becomeReplicate();
  } else if (pr.state === 'replicate') pr.inflights.freeLE(m.index);

  // A follower that was paused when the commit index last moved has not heard it but in
  // heartbeats, which carry less (min(commit, match)); a follower recovering lost data waits
  // for the whole of it. One append goes out even with no entries to carry it (with
  // commitOnTick, at the next tick: tellCommit).
  let sendIfEmpty = false;
  if (pr.catchingUp) maybeCommitForRecovery(r, pr);
  if (maybeCommit(r)) r.commitBroadcast = true;
  else if (!r.commitBroadcast && !r.cfg.commitOnTick) sendIfEmpty = pr.sentCommit < r.log.committed;
  while (sendAppend(r, m.from, sendIfEmpty)) sendIfEmpty = false;
  if (m.from === r.leadTransferee && pr.caughtUp(r.log.lastIndex())) sendTimeoutNow(r, m.from);
}

/**
 * A rejection hinting at a log shorter than what the follower acknowledged. Within one
 * leader's term a follower never drops entries it acknowledged, so either it lost its data
 * or the answer is older than the acknowledgement (a network that reorders). Only an answer
 * to a heartbeat (`lost`) decides, since it cannot be older; an append rejection falls back
 * to one probe (replicate state) or is ignored (probe state, where resending at once would
 * spin: the follower rejects every probe above its log until the heartbeat says why).
 */
function maybeFollowerLostLog(r: Raft, m: AppendResponse, pr: Progress, probeFrom: Index): void {
  if (r.hooks.followerLostLog(m, pr.match)) {
    r.emit(
      'follower-lost-log',
      m.from,
      `follower ${m.from} acknowledged index ${pr.match} but its log now ends at ${m.hintIndex}`,
    );
    pr.resetAfterLoss(probeFrom);
    sendAppend(r, m.from, true);
    return;
  }
  if (pr.state === 'replicate') {
    pr.becomeProbe();
    sendAppend(r, m.from, true);
  }
}

/**
 * A follower recovering lost data waits for us to commit something after it started
 * (maybeFinishRecovery). In an idle cluster nothing would come, so once it holds our whole
 * log we append a no-op, as at the start of a term. One at a time: not while our log holds
 * anything uncommitted.
 */
function maybeCommitForRecovery(r: Raft, pr: Progress): void {
  const last = r.log.lastIndex();
  if (pr.match < last || r.log.committed < last || r.leadTransferee !== NONE) return;
  r.log.append({ term: r.term, index: last + 1, type: 'noop', data: new Uint8Array(0) });
  r.needsBroadcast = true;
}

/** Advances the commit index to what a quorum holds, if that entry is of our term. */
function maybeCommit(r: Raft): boolean {
  const c = r.trk.config();
  const index = r.trk.committed(r.hooks.commitVoters(c.voters, c.learners));
  if (index <= r.log.committed || !r.hooks.mayCommitAt(index)) return false;
  const before = r.log.committed;
  r.log.commitTo(index);
  if (r.pendingConfIndex > before && r.pendingConfIndex <= index) r.commitUrgent = true;
  r.uncommittedBytes = Math.max(0, r.uncommittedBytes - r.log.bytesBetween(before, index));
  if (r.readOnly.hasEarly() && r.log.term(index) === r.term) {
    for (const read of r.readOnly.takeEarly())
      leaderReadIndex(r, read.requestId, read.from, read.lease);
  }
  return true;
}

/**
 * The follower holds the first `received` bytes of the snapshot in flight: send on from there.
 * Less than it said before means it lost some (a restart) or refused the whole snapshot (a
 * checksum that did not match, received 0); the same amount again is a duplicate or an
 * answer to a chunk it could not take, and a quiet heartbeat round resends instead.
 */
function handleSnapshotResponse(r: Raft, m: SnapshotResponse): void {
  const pr = r.trk.get(m.from);
  if (pr === undefined) return;
  pr.markActive();
  const s = pr.snapshot;
  if (pr.state !== 'snapshot' || s === null || s.id !== m.id) return; // another transfer's
  if (m.received > s.totalBytes || m.received === pr.snapshotAcked) return;
  pr.snapshotAcked = m.received;
  pr.snapshotProgressed = true;
  pr.snapshotResends = 0;
  // Once complete, the follower checks and installs it and acknowledges its index with an
  // append answer, which ends the snapshot state (handleAppendResponse).
  if (m.received < s.totalBytes) sendSnapshotChunk(r, m.from, pr);
  else pr.snapshotIdleRounds = 0;
}

function handleHeartbeatResponse(r: Raft, m: HeartbeatResponse): void {
  const pr = r.trk.get(m.from);
  if (pr === undefined) return;
  pr.markActive();
  pr.catchingUp = m.catchingUp;
  pr.probeSent = false;
  if (pr.catchingUp) maybeCommitForRecovery(r, pr);
  // A lagging follower that answers heartbeats may have lost appends (§5.3: the leader retries
  // until every follower stores every entry). Free one inflight slot so a full window of lost
  // messages cannot wedge replication, and send an append even if it carries nothing new: a
  // follower missing its prevIndex rejects it, which moves it back to probing.
  if (pr.state === 'replicate' && pr.isPaused()) pr.inflights.freeFirstOne();
  if (pr.match < r.log.lastIndex()) sendAppend(r, m.from, true);
  if (r.trk.countsInQuorum(m.from) && r.readOnly.recvAck(m.from, m.seq)) {
    releaseConfirmedReads(r);
    maybeExtendLease(r);
  }
}

// ---------------------------------------------------------------------------------------------
// ReadIndex (thesis §6.4; the queue is read-only.ts)

export function leaderReadIndex(r: Raft, requestId: number, from: NodeId, lease: boolean): void {
  // Until an entry of this term commits, our commit index may lag what earlier leaders
  // committed; answering now could return a stale read (the RedisRaft bug in REFERENCES.md).
  // A lease does not change that: it says no one else leads, not that we know all committed.
  if (r.log.term(r.log.committed) !== r.term) {
    r.readOnly.addEarly(requestId, from, lease);
    return;
  }
  const index = r.log.committed;
  // While the lease holds no other leader can exist, so the commit index is the read point
  // now, without a round. A lapsed lease costs a round, never a refusal.
  if (r.trk.isSingleton(r.id) || (lease && leaseHolds(r))) {
    r.answerRead({ requestId, from, index, seq: 0 }, true);
    return;
  }
  r.readOnly.add(requestId, from, index);
}

/**
 * Whether the leader's lease holds now (DESIGN.md, "Lease reads"): lease reads are on, a
 * round it sent less than an election timeout (less the drift bound) ago was acknowledged by
 * a quorum, no transfer was started in this term, and the group is not quiesced (its tick
 * count stands still while it is).
 */
export function leaseHolds(r: Raft): boolean {
  return (
    r.cfg.leaseDriftTicks !== null &&
    !r.leaseRevoked &&
    !r.quiesced &&
    r.ticks < r.readOnly.leaseEnd
  );
}

/**
 * A heartbeat answer arrived: the newest round a quorum has acknowledged (the leader
 * acknowledges its own) moves the lease's end to that round's send tick plus the lease.
 * Answers to older rounds never shorten it.
 */
function maybeExtendLease(r: Raft): void {
  if (r.cfg.leaseDriftTicks === null) return;
  let best = 0;
  for (const seq of r.readOnly.ackedRounds()) {
    if (seq > best && roundConfirmed(r, seq)) best = seq;
  }
  if (best === 0) return;
  const sent = r.readOnly.sentTick(best);
  if (sent === null) return;
  const end = r.hooks.leaseEnd(sent, r.ticks);
  if (end > r.readOnly.leaseEnd) r.readOnly.leaseEnd = end;
}

function releaseConfirmedReads(r: Raft): void {
  const confirmed = r.readOnly.takeConfirmed((seq) => roundConfirmed(r, seq));
  for (const read of confirmed) r.answerRead(read, true);
}
