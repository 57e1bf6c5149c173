// The follower's step function and its handlers: AppendEntries (paper §5.3), heartbeats, and
// snapshots from the leader (§7). A follower answers; it never counts anything.

import { switchToSnapshotConf } from './conf-history.js';
import type { Raft } from './raft.js';
import { hup } from './step-candidate.js';
import type {
  AppendRequest,
  AppendResponse,
  Heartbeat,
  HeartbeatResponse,
  Index,
  Message,
  NodeId,
  SnapshotRequest,
  Term,
} from './types.js';

export function stepFollower(r: Raft, m: Message): void {
  switch (m.type) {
    case 'append':
      r.electionElapsed = 0;
      r.leader = m.from;
      handleAppend(r, m);
      return;
    case 'heartbeat':
      r.electionElapsed = 0;
      r.leader = m.from;
      handleHeartbeat(r, m);
      return;
    case 'snapshot':
      r.electionElapsed = 0;
      r.leader = m.from;
      handleSnapshot(r, m);
      return;
    case 'timeout-now':
      // Thesis §3.10: the leader asked us to take over; skip pre-vote and the lease.
      if (r.promotable()) hup(r, true);
      return;
    case 'read-index':
      // Not the leader (any more): the asker retries elsewhere.
      r.refuseRead(m.from, m.requestId);
      return;
    default:
      return; // responses meant for a leader or candidate of this term: stale
  }
}

function handleAppend(r: Raft, m: AppendRequest): void {
  if (r.recoveryState === 'recovering') {
    if (r.recoveryBaseline < 0) r.recoveryBaseline = m.commit;
    else if (m.commit > r.recoveryBaseline) {
      r.recoveryTarget = Math.max(r.recoveryTarget, m.commit);
    }
  }
  if (m.prevIndex < r.log.committed) {
    // Everything up to our commit index is settled; tell the leader where we are.
    sendAppendResponse(r, m.from, true, r.log.committed, 0, 0);
    return;
  }
  const lastNew = r.log.maybeAppend(m.prevIndex, m.prevTerm, m.entries);
  if (lastNew >= 0) {
    r.log.commitTo(Math.min(m.commit, lastNew));
    sendAppendResponse(r, m.from, true, lastNew, 0, 0);
    return;
  }
  // Fast backtracking: point the leader at the last entry that may match its prevTerm.
  const hint = r.log.findConflictByTerm(Math.min(m.prevIndex, r.log.lastIndex()), m.prevTerm);
  sendAppendResponse(r, m.from, false, m.prevIndex, hint.index, hint.term);
}

function handleHeartbeat(r: Raft, m: Heartbeat): void {
  if (m.commit > r.log.lastIndex()) {
    // The leader sends min(commit, our match): it believes we acknowledged entries we do not
    // have, so we lost them. Say where our log ends, as a rejected append does, so the
    // leader stops believing it (an idle leader sends no append that would show it).
    sendAppendResponse(r, m.from, false, m.commit, r.log.lastIndex(), r.log.lastTerm(), true);
  }
  // The leader sends min(commit, our match), so this never commits past our agreement.
  r.log.commitTo(Math.min(m.commit, r.log.lastIndex()));
  const resp: HeartbeatResponse = {
    type: 'heartbeat-resp',
    from: r.id,
    to: m.from,
    term: r.term,
    seq: m.seq,
    catchingUp: r.recoveryState === 'recovering',
  };
  r.send(resp);
}

function handleSnapshot(r: Raft, m: SnapshotRequest): void {
  const s = m.snapshot;
  if (s.index <= r.log.committed) {
    sendAppendResponse(r, m.from, true, r.log.committed, 0, 0);
    return;
  }
  if (r.log.matchTerm(s.index, s.term)) {
    // We already hold the snapshot's last entry: just advance the commit index.
    r.log.commitTo(s.index);
    sendAppendResponse(r, m.from, true, s.index, 0, 0);
    return;
  }
  if (r.log.snapshotInProgress()) {
    // The caller is still installing the previous snapshot; it cannot be swapped mid-write.
    // Drop this one: the leader retries once its progress times out (tickHeartbeat).
    return;
  }
  r.log.resetToSnapshot(s);
  switchToSnapshotConf(r, s);
  sendAppendResponse(r, m.from, true, s.index, 0, 0);
}

function sendAppendResponse(
  r: Raft,
  to: NodeId,
  success: boolean,
  index: Index,
  hintIndex: Index,
  hintTerm: Term,
  lost = false,
): void {
  const resp: AppendResponse = {
    type: 'append-resp',
    from: r.id,
    to,
    term: r.term,
    success,
    index,
    hintIndex,
    hintTerm,
    lost,
    catchingUp: r.recoveryState === 'recovering',
  };
  r.send(resp);
}
