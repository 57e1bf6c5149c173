// The log's tail on its way to disk (etcd-io/raft's log_unstable.go). The entries themselves
// stay in RaftLog's one array, since the whole log after the snapshot is kept in memory; this
// tracks how far they, and a snapshot received from the leader, have gone through the Ready
// cycle:
//
//   (.. persisted]            durable on this node
//   (persisted .. from)       handed out in a Ready, being written
//   [from .. lastIndex]       not handed out yet
//
// An entry handed out and then replaced before the caller reported the write (a new leader
// truncated it) is not durable in its new form: the write covered the old one. So is every
// entry handed out before a snapshot replaced the whole log.

import { assert } from './errors.js';
import type { Index, SnapshotMeta } from './types.js';

export class UnstableTail {
  /** Entries up to here are durable on this node. Invariant: persisted < from. */
  persisted: Index = 0;
  /** The first index not yet handed to the caller in a Ready to persist. */
  from: Index = 1;
  /** The lowest index truncated or replaced since the last hand-out; Infinity if none. */
  private replacedFrom: Index = Infinity;
  /** A snapshot from the leader that replaced the log, until the caller reports it stored. */
  snapshot: SnapshotMeta | null = null;
  /** The snapshot went out in the outstanding Ready: it cannot be swapped mid-write. */
  snapshotInProgress = false;

  /** The log was recovered from disk up to `lastIndex`: all of it is durable. */
  restore(lastIndex: Index): void {
    this.persisted = lastIndex;
    this.from = lastIndex + 1;
  }

  /** Entries from `index` on were dropped to make room for the leader's. */
  truncated(index: Index): void {
    this.persisted = Math.min(this.persisted, index - 1);
    this.from = Math.min(this.from, index);
    this.replacedFrom = Math.min(this.replacedFrom, index);
  }

  /** Everything up to `lastIndex`, and the snapshot if any, went out in a Ready. */
  acceptInProgress(lastIndex: Index): void {
    this.from = lastIndex + 1;
    this.replacedFrom = Infinity;
    this.snapshotInProgress = this.snapshot !== null;
  }

  /** The caller wrote the entries it was handed up to `index`; the log now ends at `lastIndex`. */
  stableTo(index: Index, lastIndex: Index): void {
    const durable = Math.min(index, this.replacedFrom - 1, lastIndex);
    if (durable > this.persisted) this.persisted = durable;
    assert(
      this.persisted < this.from,
      `Persisted index ${this.persisted} reaches entries not handed out (from ${this.from})`,
    );
  }

  /** The leader's snapshot replaced the whole log. */
  resetToSnapshot(meta: SnapshotMeta): void {
    this.from = meta.index + 1;
    this.persisted = Math.min(this.persisted, meta.index);
    // Entries handed out before the reset must not count as durable log any more.
    this.replacedFrom = 0;
    this.snapshot = meta;
  }

  /** The caller stored the snapshot it was handed. */
  snapshotStored(meta: SnapshotMeta): void {
    assert(this.snapshot === meta, 'Snapshot in Ready was replaced before advance');
    this.snapshot = null;
    this.snapshotInProgress = false;
    this.persisted = Math.max(this.persisted, meta.index);
  }
}
