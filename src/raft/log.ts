// The in-memory Raft log of one node: a snapshot boundary followed by contiguous entries, and
// the indexes that move through it:
//
//   snapshotIndex <= applied <= committed,   persisted <= lastIndex
//
// `persisted` is how far the caller has reported the log durable; the tail on its way there,
// and a snapshot received from the leader, are tracked by UnstableTail (log-unstable.ts). The
// whole log after the snapshot stays in memory: the caller compacts it after taking state
// machine snapshots.

import { assert } from './errors.js';
import { UnstableTail } from './log-unstable.js';
import { ownedEntries } from './owned.js';
import type { Entry, Index, SnapshotMeta, Term } from './types.js';

export class RaftLog {
  /** Invariant: entries[i].index === snapshotIndex + 1 + i, terms never decrease. */
  private entries: Entry[] = [];
  snapshotIndex: Index = 0;
  snapshotTerm: Term = 0;
  /** Invariant: snapshotIndex <= committed <= lastIndex() (paper Figure 2 commitIndex). */
  committed: Index = 0;
  /** Entries up to here were handed out for applying (paper Figure 2 lastApplied). */
  applied: Index = 0;
  private readonly unstable = new UnstableTail();

  /** Entries up to here are durable on this node. */
  get persisted(): Index {
    return this.unstable.persisted;
  }

  restore(
    snapshot: SnapshotMeta | null,
    entries: readonly Entry[],
    committed: Index,
    applied: Index,
  ): void {
    this.snapshotIndex = snapshot?.index ?? 0;
    this.snapshotTerm = snapshot?.term ?? 0;
    this.entries = [];
    for (const e of entries) {
      if (e.index <= this.snapshotIndex) continue;
      assert(
        e.index === this.lastIndex() + 1,
        `Cannot restore log: entry index ${e.index} does not follow ${this.lastIndex()}`,
      );
      this.entries.push(e);
    }
    this.unstable.restore(this.lastIndex());
    // Entries are handed out to apply only once committed, and the hard state's commit index
    // is written lazily (it may be behind what the state machine applied before a crash):
    // what was applied was committed. Lowering applied to the stored commit would hand the
    // same entries out again, and a durable state machine would apply them twice.
    assert(
      applied <= this.lastIndex(),
      `Cannot restore log: applied index ${applied} is past the last entry held (${this.lastIndex()}); the state machine applied entries the log does not hold`,
    );
    // A commit index past the log means the log lost entries a quorum acknowledged to this
    // node's commit: nothing to lower it to silently (etcd-io/raft panics the same way).
    assert(
      committed <= this.lastIndex(),
      `Cannot restore log: the hard state's commit index ${committed} is past the last entry held (${this.lastIndex()}); the log lost committed entries`,
    );
    this.committed = Math.max(committed, applied, this.snapshotIndex);
    this.applied = Math.max(applied, this.snapshotIndex);
  }

  firstIndex(): Index {
    return this.snapshotIndex + 1;
  }

  lastIndex(): Index {
    return this.snapshotIndex + this.entries.length;
  }

  lastTerm(): Term {
    const n = this.entries.length;
    return n === 0 ? this.snapshotTerm : (this.entries[n - 1] as Entry).term;
  }

  /** The term of the entry at `index`, or undefined if it is compacted or past the end. */
  term(index: Index): Term | undefined {
    if (index === this.snapshotIndex) return this.snapshotTerm;
    if (index < this.snapshotIndex || index > this.lastIndex()) return undefined;
    return (this.entries[index - this.snapshotIndex - 1] as Entry).term;
  }

  entryAt(index: Index): Entry | undefined {
    if (index <= this.snapshotIndex) return undefined;
    return this.entries[index - this.snapshotIndex - 1];
  }

  matchTerm(index: Index, term: Term): boolean {
    return this.term(index) === term;
  }

  /** Paper §5.4.1: is a log ending at (lastIndex, lastTerm) at least as up to date as ours? */
  isUpToDate(lastIndex: Index, lastTerm: Term): boolean {
    const ourTerm = this.lastTerm();
    return lastTerm > ourTerm || (lastTerm === ourTerm && lastIndex >= this.lastIndex());
  }

  /** Appends entries that directly follow the last index (the leader's own proposals). */
  append(entry: Entry): void {
    assert(
      entry.index === this.lastIndex() + 1,
      `Cannot append entry ${entry.index} after ${this.lastIndex()}`,
    );
    this.entries.push(entry);
  }

  /**
   * The follower side of AppendEntries (paper Figure 2, receiver rules 2-4): if our log has
   * (prevIndex, prevTerm), drop any conflicting suffix and append what is new. Returns the
   * index of the last entry now known to match the leader, or -1 when the consistency check
   * fails. Reports the truncation point to `onTruncate` when a suffix is dropped.
   */
  maybeAppend(
    prevIndex: Index,
    prevTerm: Term,
    entries: readonly Entry[],
    onTruncate?: (from: Index) => void,
  ): Index {
    if (!this.matchTerm(prevIndex, prevTerm)) return -1;
    const lastNew = prevIndex + entries.length;
    let i = 0;
    // Skip entries we already have with the same term (duplicates, reordered retries).
    for (; i < entries.length; i++) {
      const e = entries[i] as Entry;
      assert(e.index === prevIndex + 1 + i, `Append entries not contiguous at ${e.index}`);
      if (e.index <= this.snapshotIndex) continue;
      const ours = this.term(e.index);
      if (ours === undefined) break;
      if (ours !== e.term) {
        // Receiver rule 3: a conflict deletes the existing entry and all that follow it.
        assert(
          e.index > this.committed,
          `Cannot truncate committed entry ${e.index} (committed ${this.committed}, term ${ours} vs ${e.term})`,
        );
        this.truncateFrom(e.index);
        onTruncate?.(e.index);
        break;
      }
    }
    if (i < entries.length) for (const e of ownedEntries(entries.slice(i))) this.append(e);
    return lastNew;
  }

  private truncateFrom(index: Index): void {
    this.entries.length = index - this.snapshotIndex - 1;
    this.unstable.truncated(index);
  }

  /**
   * The follower's hint for fast backtracking: the largest index <= `index` whose term is <=
   * `term`. Also used by the leader to translate a follower's hint into its own log.
   */
  findConflictByTerm(index: Index, term: Term): { index: Index; term: Term } {
    let i = Math.min(index, this.lastIndex());
    for (; i > this.snapshotIndex; i--) {
      const t = this.term(i) as Term;
      if (t <= term) return { index: i, term: t };
    }
    return { index: this.snapshotIndex, term: this.snapshotTerm };
  }

  commitTo(index: Index): boolean {
    if (index <= this.committed) return false;
    assert(index <= this.lastIndex(), `Cannot commit ${index}: last index is ${this.lastIndex()}`);
    this.committed = index;
    return true;
  }

  /** Entries in [lo, hiExclusive) bounded by count and bytes (at least one if any). */
  slice(lo: Index, hiExclusive: Index, maxCount: number, maxBytes: number): Entry[] {
    assert(lo > this.snapshotIndex, `Cannot slice from compacted index ${lo}`);
    const hi = Math.min(hiExclusive, this.lastIndex() + 1, lo + maxCount);
    const base = this.snapshotIndex + 1;
    if (hi <= lo) return [];
    let bytes = 0;
    let end = lo;
    for (; end < hi; end++) {
      bytes += (this.entries[end - base] as Entry).data.length;
      if (bytes > maxBytes && end > lo) break;
    }
    return this.entries.slice(lo - base, end - base);
  }

  /** Sum of data bytes of entries in (from, to]. */
  bytesBetween(from: Index, to: Index): number {
    let bytes = 0;
    const lo = Math.max(from + 1, this.snapshotIndex + 1);
    for (let i = lo; i <= to; i++) bytes += (this.entryAt(i) as Entry).data.length;
    return bytes;
  }

  /** Entries not yet handed out to persist. */
  unstableEntries(): Entry[] {
    const from = Math.max(this.unstable.from, this.snapshotIndex + 1);
    return this.entries.slice(from - this.snapshotIndex - 1);
  }

  hasUnstable(): boolean {
    return this.unstable.from <= this.lastIndex();
  }

  /** A snapshot from the leader that the caller has not reported stored yet. */
  unstableSnapshot(): SnapshotMeta | null {
    return this.unstable.snapshot;
  }

  /** The snapshot went out in the outstanding Ready and is being stored. */
  snapshotInProgress(): boolean {
    return this.unstable.snapshotInProgress;
  }

  /** The unstable entries and snapshot went out in a Ready. */
  acceptInProgress(): void {
    this.unstable.acceptInProgress(this.lastIndex());
  }

  /** The caller wrote the entries it was handed up to `index`. */
  stableTo(index: Index): void {
    this.unstable.stableTo(index, this.lastIndex());
  }

  /** The caller stored and applied the snapshot it was handed. */
  snapshotStored(meta: SnapshotMeta): void {
    this.unstable.snapshotStored(meta);
    this.applied = Math.max(this.applied, meta.index);
  }

  /** Committed, locally durable entries not yet handed out for applying, at most `max`. */
  nextCommitted(max: number): Entry[] {
    const hi = Math.min(this.committed, this.persisted, this.applied + max);
    if (hi <= this.applied || this.applied < this.snapshotIndex) return [];
    return this.entries.slice(this.applied - this.snapshotIndex, hi - this.snapshotIndex);
  }

  hasNextCommitted(): boolean {
    return Math.min(this.committed, this.persisted) > this.applied;
  }

  /** Drops entries up to `index`, which the caller covered with a snapshot. */
  compact(index: Index): void {
    assert(index <= this.applied, `Cannot compact to ${index}: applied is only ${this.applied}`);
    assert(
      index <= this.persisted,
      `Cannot compact to ${index}: persisted is only ${this.persisted}`,
    );
    if (index <= this.snapshotIndex) return;
    const term = this.term(index) as Term;
    this.entries = this.entries.slice(index - this.snapshotIndex);
    this.snapshotIndex = index;
    this.snapshotTerm = term;
  }

  /** Replaces the whole log with a snapshot received from the leader (paper §7). */
  resetToSnapshot(meta: SnapshotMeta): void {
    this.entries = [];
    this.snapshotIndex = meta.index;
    this.snapshotTerm = meta.term;
    this.committed = meta.index;
    // `persisted` and `applied` move to the snapshot once the caller has stored and applied it.
    this.unstable.resetToSnapshot(meta);
    this.applied = Math.min(this.applied, meta.index);
  }
}
