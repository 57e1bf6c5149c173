// What the leader sends to keep followers' logs in step with its own (paper §5.3): appends
// paced by each follower's Progress (probe, replicate, snapshot), snapshots for followers
// behind the compacted prefix (§7), heartbeats that also number ReadIndex rounds, and the
// TimeoutNow of a leadership transfer (thesis §3.10).

import type { Progress } from './progress.js';
import type { Raft } from './raft.js';
import { assert } from './errors.js';
import type { AppendRequest, Entry, Heartbeat, NodeId, SnapshotRequest } from './types.js';

export function broadcastAppend(r: Raft, sendIfEmpty: boolean): void {
  for (const id of r.trk.memberIds()) {
    if (id === r.id) continue;
    // The first message may be empty (to carry the commit index); the rest fill the window.
    sendAppends(r, id, sendIfEmpty && (r.trk.get(id)?.sentCommit ?? 0) < r.log.committed);
  }
}

/** Sends `to` what its window takes; the first append goes even empty with `sendIfEmpty`. */
export function sendAppends(r: Raft, to: NodeId, sendIfEmpty: boolean): void {
  let first = sendIfEmpty;
  while (sendAppend(r, to, first)) first = false;
}

/**
 * Sends the next batch of entries to `to`, or a snapshot if they were compacted. Returns
 * whether something was sent (callers loop to fill the inflight window).
 */
export function sendAppend(r: Raft, to: NodeId, sendIfEmpty: boolean): boolean {
  const pr = r.trk.get(to);
  if (pr === undefined || pr.isPaused()) return false;
  const prevIndex = pr.next - 1;
  const prevTerm = r.log.term(prevIndex);
  if (prevTerm === undefined) return sendSnapshot(r, to, pr);
  const entries = r.log.slice(pr.next, Infinity, r.cfg.maxEntriesPerMsg, r.cfg.maxBytesPerMsg);
  if (entries.length === 0 && !sendIfEmpty) return false;
  const msg: AppendRequest = {
    type: 'append',
    from: r.id,
    to,
    term: r.term,
    prevIndex,
    prevTerm,
    entries,
    commit: r.log.committed,
  };
  r.send(msg);
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

function sendSnapshot(r: Raft, to: NodeId, pr: Progress): boolean {
  // A follower we have not heard from lately is probably down: do not ship it a snapshot.
  if (!pr.recentActive) return false;
  // The caller offers the snapshot it holds whole (its own or one installed from a leader); the
  // log was compacted behind it, so it covers what the follower is missing.
  const offer = r.snapshotOffer;
  if (offer === null || offer.meta.index < r.log.snapshotIndex) return false;
  pr.becomeSnapshot(offer);
  sendSnapshotChunk(r, to, pr);
  return false;
}

/**
 * Sends the chunk of the snapshot in flight to `to` that starts where the follower said it
 * holds up to. One chunk is in flight at a time: each acknowledgement sends the next, and a
 * lost one is sent again after a quiet heartbeat round (resendSnapshotChunks).
 */
export function sendSnapshotChunk(r: Raft, to: NodeId, pr: Progress): void {
  const s = pr.snapshot;
  assert(pr.state === 'snapshot' && s !== null, `No snapshot in flight to ${to}`);
  const offset = pr.snapshotAcked;
  const length = Math.min(r.cfg.snapshotChunkBytes, s.totalBytes - offset);
  const msg: SnapshotRequest = {
    type: 'snapshot',
    from: r.id,
    to,
    term: r.term,
    snapshot: s.meta,
    id: s.id,
    offset,
    length,
    totalBytes: s.totalBytes,
  };
  r.send(msg);
  pr.snapshotIdleRounds = 0;
}

/** Sends a heartbeat to every member, or to the members in `only`. */
export function broadcastHeartbeat(
  r: Raft,
  quiesce = false,
  only: readonly NodeId[] | null = null,
): void {
  for (const id of only ?? r.trk.memberIds()) {
    if (id === r.id) continue;
    const pr = r.trk.get(id) as Progress;
    const hb: Heartbeat = {
      type: 'heartbeat',
      from: r.id,
      to: id,
      term: r.term,
      commit: Math.min(pr.match, r.log.committed),
      seq: r.readOnly.seq,
      ...(quiesce ? { quiesce: true as const } : {}),
    };
    r.send(hb);
    if (hb.commit > pr.sentCommit) pr.sentCommit = hb.commit;
  }
}

export function sendTimeoutNow(r: Raft, to: NodeId): void {
  r.send({ type: 'timeout-now', from: r.id, to, term: r.term });
}

function bytesOf(entries: readonly Entry[]): number {
  let n = 0;
  for (const e of entries) n += e.data.length;
  return n;
}
