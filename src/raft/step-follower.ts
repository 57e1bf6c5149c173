// The follower's step function and its handlers: AppendEntries (paper §5.3), heartbeats, and
// snapshots from the leader (§7). A follower answers; it never counts anything.

import { switchToSnapshotConf } from './conf-history.js';
import type { Raft } from './raft.js';
import { hup } from './step-candidate.js';
import {
  NONE,
  type AppendRequest,
  type AppendResponse,
  type Heartbeat,
  type HeartbeatResponse,
  type IncomingSnapshot,
  type Index,
  type Message,
  type NodeId,
  type SnapshotDescriptor,
  type SnapshotRequest,
  type Term,
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
      if (m.quiesce === true) maybeQuiesceFollower(r, m);
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
    r.leaderMatched = Math.max(r.leaderMatched, lastNew);
    r.log.commitTo(Math.min(m.commit, lastNew));
    sendAppendResponse(r, m.from, true, lastNew, 0, 0);
    return;
  }
  // Fast backtracking: point the leader at the last entry that may match its prevTerm.
  const hint = r.log.findConflictByTerm(Math.min(m.prevIndex, r.log.lastIndex()), m.prevTerm);
  sendAppendResponse(r, m.from, false, m.prevIndex, hint.index, hint.term);
}

function handleHeartbeat(r: Raft, m: Heartbeat): void {
  // The leader sends min(commit, our match), so, our log intact, this never commits past our
  // agreement. A node that lost its data may have acknowledged entries to this leader before,
  // forgotten its term with them, and taken another term's leader's entries at those indexes
  // since (simulator seed 2426 of `--ranges --moves --meta --wipe-every 600`: a wiped node
  // took a deposed leader's entry 7 of term 7, then committed it on the heartbeat of the
  // leader of term 8, whose entry 7 was another). While recovering, only what this leader's
  // appends showed agrees, and what we committed ourselves.
  const agreed =
    r.recoveryState === 'recovering'
      ? Math.min(r.log.lastIndex(), Math.max(r.leaderMatched, r.log.committed))
      : r.log.lastIndex();
  if (m.commit > agreed) {
    // It believes we acknowledged entries we do not have (or cannot show we have): we lost
    // them. Say where our agreement ends, as a rejected append does, so the leader stops
    // believing it (an idle leader sends no append that would show it).
    sendAppendResponse(r, m.from, false, m.commit, agreed, r.log.term(agreed) ?? 0, true);
  }
  r.log.commitTo(Math.min(m.commit, agreed));
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

/**
 * The leader quiesced the group (DESIGN.md, "Quiescing idle groups"): stop the election timer
 * too, unless quiescing is off here, this node is recovering lost data or checking a snapshot
 * it received, or the heartbeat's commit index is past ours (we lack entries it thinks we
 * hold). A follower that stays awake campaigns after its timeout, and that wakes the leader.
 * A partial snapshot kept from an abandoned transfer does not count: the leader quiesces only
 * once we acknowledged its whole log.
 */
function maybeQuiesceFollower(r: Raft, m: Heartbeat): void {
  if (!r.cfg.quiesce || r.quiesced || r.recoveryState !== 'none') return;
  if (r.incomingChecking || r.log.committed < m.commit) return;
  r.quiesced = true;
  r.quiescedOn = { term: r.term, leader: m.from, commit: m.commit };
  r.emit('quiesced', m.from, `leader ${m.from} quiesced the group at commit ${m.commit}`);
}

/**
 * One chunk of a snapshot (paper §7, Figure 13). A chunk that continues the snapshot held in
 * part is accepted: the Ready hands it out to be written, and the answer (after the write)
 * says how much is held. Any other chunk is answered with how much is held, so the leader
 * resumes from there: after a lost chunk, a restart of either side, or a new leader whose
 * snapshot has the same id. A snapshot with another id replaces the partial one, from byte 0.
 */
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
  let inc = r.incoming;
  if (inc === null || inc.id !== m.id) {
    inc = { meta: s, id: m.id, totalBytes: m.totalBytes, received: 0 };
    r.incoming = inc;
    r.incomingChecking = false;
  }
  if (inc.received === inc.totalBytes && !r.incomingChecking) {
    // Complete but not checked (a restart came between the last write and the check, or the
    // log was busy installing another snapshot): check it now.
    r.incomingChecking = true;
    r.snapshotChunks.push({ ...descriptorOf(inc), offset: inc.received, length: 0, last: true });
    return;
  }
  if (r.incomingChecking || m.offset !== inc.received || m.length === 0) {
    sendSnapshotResponse(r, m.from, inc);
    return;
  }
  if (m.totalBytes !== inc.totalBytes || m.offset + m.length > inc.totalBytes) {
    // Not a chunk of the snapshot this id names: the transport's checks should have kept it
    // out. Take nothing from it.
    sendSnapshotResponse(r, m.from, inc);
    return;
  }
  const received = inc.received + m.length;
  const last = received === inc.totalBytes;
  r.snapshotChunks.push({ ...descriptorOf(inc), offset: m.offset, length: m.length, last });
  r.incoming = { ...inc, received };
  r.incomingChecking = last;
  sendSnapshotResponse(r, m.from, r.incoming);
}

function descriptorOf(inc: IncomingSnapshot): SnapshotDescriptor {
  return { meta: inc.meta, id: inc.id, totalBytes: inc.totalBytes };
}

function sendSnapshotResponse(r: Raft, to: NodeId, inc: IncomingSnapshot): void {
  r.send({
    type: 'snapshot-resp',
    from: r.id,
    to,
    term: r.term,
    id: inc.id,
    received: inc.received,
  });
}

/**
 * The caller checked the complete incoming snapshot's bytes against its id. A good one
 * replaces the log (the Ready carries it, to be stored and applied) and is acknowledged by
 * index once stored; a bad one is dropped and the leader told to send it again from byte 0.
 */
export function incomingChecked(r: Raft, id: string, good: boolean): void {
  const inc = r.incoming;
  if (inc === null || inc.id !== id || !r.incomingChecking) return; // replaced meanwhile
  r.incomingChecking = false;
  if (!good) {
    r.incoming = { ...inc, received: 0 };
    if (r.leader !== NONE) sendSnapshotResponse(r, r.leader, r.incoming);
    return;
  }
  const s = inc.meta;
  if (s.index <= r.log.committed || r.log.matchTerm(s.index, s.term)) {
    // The log caught up by other means while the snapshot travelled: nothing to install.
    r.log.commitTo(Math.max(r.log.committed, s.index));
    r.incoming = null;
    if (r.leader !== NONE) sendAppendResponse(r, r.leader, true, r.log.committed, 0, 0);
    return;
  }
  // The caller is still installing a previous snapshot, which cannot be swapped mid-write:
  // this one stays complete and is checked again when the leader next sends a chunk of it.
  if (r.log.snapshotInProgress()) return;
  r.log.resetToSnapshot(s);
  r.installingId = inc.id;
  switchToSnapshotConf(r, s);
  // The transfer is over: the caller installs from the bytes it wrote. A late chunk of this
  // snapshot finds its index committed and is answered with an append acknowledgement.
  r.incoming = null;
  if (r.leader !== NONE) sendAppendResponse(r, r.leader, true, s.index, 0, 0);
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
