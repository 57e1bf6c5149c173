// The leader's view of one follower's log (paper Figure 2, nextIndex/matchIndex), with the
// replication states of etcd-io/raft's tracker:
//   probe:     we do not know where the follower's log agrees with ours; send one append at a
//              time and wait for the answer before sending the next.
//   replicate: the follower is caught up to `match`; stream appends optimistically, bounded by
//              the inflight window.
//   snapshot:  the entries the follower needs were compacted; a snapshot is on its way.

import { Inflights } from './inflights.js';
import type { Index, SnapshotDescriptor } from './types.js';

export type ProgressState = 'probe' | 'replicate' | 'snapshot';

export class Progress {
  /** Invariant: match < next. The highest index known to be replicated on the follower. */
  match: Index = 0;
  /** The next index to send. */
  next: Index;
  state: ProgressState = 'probe';
  /** In probe state: an append was sent and not yet answered. */
  probeSent = false;
  /** In snapshot state: the index of the snapshot being sent. */
  pendingSnapshot: Index = 0;
  /** In snapshot state: the snapshot being sent, in chunks. */
  snapshot: SnapshotDescriptor | null = null;
  /**
   * In snapshot state: the bytes of `snapshot` the follower said it holds; the chunk in flight
   * starts here. Invariant: 0 <= snapshotAcked <= snapshot.totalBytes.
   */
  snapshotAcked = 0;
  /** In snapshot state: heartbeat rounds since the chunk in flight was (re)sent. */
  snapshotIdleRounds = 0;
  /** In snapshot state: times the chunk in flight was resent; each doubles the next wait. */
  snapshotResends = 0;
  /** In snapshot state: an acknowledgement arrived since the last check-quorum round. */
  snapshotProgressed = false;
  /** Heard from since the last check-quorum round. */
  recentActive = false;
  /** The follower's last answer said it is recovering lost data (HeartbeatResponse). */
  catchingUp = false;
  /** The commit index carried by the last append sent to this follower. */
  sentCommit: Index = 0;
  /**
   * Leader ticks since the follower last answered. Unlike `recentActive`, which check-quorum
   * clears every election timeout, this says how long the silence has lasted at any moment.
   * Starts at Infinity: not heard from yet in this term.
   */
  silentTicks = Number.POSITIVE_INFINITY;
  readonly inflights: Inflights;
  /**
   * In replicate state: the appends that may be in flight, at most the inflight window's
   * capacity. A rejection in replicate state sets it to 1 and each acknowledgement that moves
   * `match` adds one (a slow start, as TCP's after a loss). Over a network that reorders, a
   * full window of appends sent after every rejection made a follower catching up reject
   * most of them, and each stale acknowledgement started another full window: hundreds of
   * messages per entry. In order (the TCP transport) a rejection is rare and the window is
   * whole again within a few round trips.
   */
  window: number;

  constructor(
    next: Index,
    private readonly maxInflightMsgs: number,
    maxInflightBytes: number,
  ) {
    this.next = next;
    this.window = maxInflightMsgs;
    this.inflights = new Inflights(maxInflightMsgs, maxInflightBytes);
  }

  /** The follower answered: it is alive and reachable now. */
  markActive(): void {
    this.recentActive = true;
    this.silentTicks = 0;
  }

  becomeProbe(): void {
    // After a snapshot, resume from the snapshot index if it is past what we know matched.
    if (this.state === 'snapshot') {
      this.next = Math.max(this.match + 1, this.pendingSnapshot + 1);
    } else {
      this.next = this.match + 1;
    }
    this.state = 'probe';
    this.probeSent = false;
    this.pendingSnapshot = 0;
    this.snapshot = null;
    this.inflights.reset();
  }

  becomeReplicate(): void {
    this.state = 'replicate';
    this.next = this.match + 1;
    this.probeSent = false;
    this.pendingSnapshot = 0;
    this.snapshot = null;
    this.inflights.reset();
  }

  /**
   * Starts sending `snapshot` from byte 0. A follower holding a part of the same snapshot
   * answers the first chunk with how much it has, and the transfer goes on from there.
   */
  becomeSnapshot(snapshot: SnapshotDescriptor): void {
    this.state = 'snapshot';
    this.pendingSnapshot = snapshot.meta.index;
    this.snapshot = snapshot;
    this.snapshotAcked = 0;
    this.snapshotIdleRounds = 0;
    this.snapshotResends = 0;
    this.snapshotProgressed = false;
    this.probeSent = false;
    this.inflights.reset();
  }

  /** Whether the leader must hold back further appends to this follower. */
  isPaused(): boolean {
    switch (this.state) {
      case 'probe':
        return this.probeSent;
      case 'replicate':
        return this.inflights.full() || this.inflights.size() >= this.window;
      case 'snapshot':
        return true;
    }
  }

  /** A successful append answer up to `index`; returns whether it told us anything new. */
  maybeUpdate(index: Index): boolean {
    let updated = false;
    if (this.match < index) {
      this.match = index;
      updated = true;
      this.probeSent = false;
      if (this.window < this.maxInflightMsgs) this.window++;
    }
    this.next = Math.max(this.next, index + 1);
    return updated;
  }

  /**
   * A rejected append for `rejected` (its prevIndex), with the follower's hint translated to
   * `probeFrom` (the highest index where the logs may agree). Returns false for stale answers.
   */
  maybeDecrTo(rejected: Index, probeFrom: Index): boolean {
    if (this.state === 'replicate') {
      // Stale: we already know the follower matches past this point.
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      this.window = 1;
      return true;
    }
    // In probe state only the answer to the one outstanding probe counts.
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, probeFrom + 1), this.match + 1);
    this.probeSent = false;
    return true;
  }

  /**
   * The follower answered with a log that ends below `match`: it lost entries it had
   * acknowledged (its data directory was wiped). Forget what we knew and probe from its hint.
   */
  resetAfterLoss(probeFrom: Index): void {
    // Catching up from nothing: start slow, as after any rejection.
    this.window = 1;
    this.match = 0;
    this.state = 'probe';
    this.next = probeFrom + 1;
    this.probeSent = false;
    this.pendingSnapshot = 0;
    this.snapshot = null;
    this.inflights.reset();
  }

  /** The follower is known to have everything up to `lastIndex`. */
  caughtUp(lastIndex: Index): boolean {
    return this.match === lastIndex;
  }
}
