// A virtual disk: only what a node finished persisting survives a crash. A write (one
// GroupStorage.persist: entries and hard state) is atomic, as a WAL record batch guarded by
// a checksum would be: either all of it is durable or none of it is.

import type { Entry, HardState, InitialState, Recovery, SnapshotMeta } from '../raft/index.js';
import { SimError } from './errors.js';

export interface StoredSnapshot {
  readonly meta: SnapshotMeta;
  readonly bytes: Uint8Array;
}

/** Called for every entry a write puts at an index, before it lands (for the checker). */
export type OverwriteHook = (entry: Entry) => void;

export class VirtualDisk {
  private hardState: HardState = { term: 0, vote: 0, commit: 0 };
  private snap: StoredSnapshot | null = null;
  /** Invariant: entries[i].index === snapshotIndex() + 1 + i. */
  private entries: Entry[] = [];
  /**
   * The runtime's durable recovery state (RaftConfig.recovery), written with each Ready before
   * its entries, as the product writes it to the data directory's identity file first. Null
   * until first written: the core then derives it from what else is stored.
   */
  recovery: Recovery | null = null;

  /** The whole data directory is lost: the node restarts with nothing, flag included. */
  wipe(): void {
    this.hardState = { term: 0, vote: 0, commit: 0 };
    this.snap = null;
    this.entries = [];
    this.recovery = null;
  }

  /** Whether nothing at all is stored: no term, no entry, no snapshot (a new or wiped disk). */
  isBlank(): boolean {
    return this.hardState.term === 0 && !this.hasLog();
  }

  /** Whether some log is stored (an entry or a snapshot). */
  hasLog(): boolean {
    return this.snap !== null || this.entries.length > 0;
  }

  snapshot(): StoredSnapshot | null {
    return this.snap;
  }

  snapshotIndex(): number {
    return this.snap?.meta.index ?? 0;
  }

  lastIndex(): number {
    return this.snapshotIndex() + this.entries.length;
  }

  /** The stored term at `index`, or undefined when it is not stored (or compacted). */
  termAt(index: number): number | undefined {
    if (index === this.snapshotIndex()) return this.snap?.meta.term;
    return this.entries[index - this.snapshotIndex() - 1]?.term;
  }

  /** Whether the disk durably covers `index` with `term`, as an entry or inside the snapshot. */
  holds(index: number, term: number): boolean {
    if (index <= this.snapshotIndex()) return true;
    return this.termAt(index) === term;
  }

  /** Makes one write durable: entries (replacing a stored suffix) and the hard state. */
  persist(entries: readonly Entry[], hardState: HardState | null, onEntry: OverwriteHook): void {
    if (entries.length > 0) this.appendEntries(entries, onEntry);
    if (hardState !== null) this.hardState = hardState;
  }

  private appendEntries(entries: readonly Entry[], onEntry: OverwriteHook): void {
    const first = (entries[0] as Entry).index;
    const base = this.snapshotIndex();
    if (first > this.lastIndex() + 1) {
      throw new SimError(
        'HARNESS',
        `Cannot persist entries from ${first}: the disk ends at ${this.lastIndex()}`,
      );
    }
    // Entries at or below the last stored one replace the stored suffix (Ready doc comment).
    const keep = Math.max(0, first - base - 1);
    if (keep < this.entries.length) this.entries.length = keep;
    for (const e of entries) {
      if (e.index <= base) continue;
      onEntry(e);
      this.entries.push(e);
    }
  }

  /**
   * Stores a snapshot, taken here or received from a leader. If the log holds the snapshot's
   * last entry the entries it covers are dropped and the rest kept; otherwise the snapshot
   * replaces the whole log (paper §7). One older than the stored one is ignored.
   */
  saveSnapshot(snapshot: StoredSnapshot): void {
    const index = snapshot.meta.index;
    if (index <= this.snapshotIndex()) return;
    if (this.termAt(index) === snapshot.meta.term) {
      this.entries = this.entries.slice(index - this.snapshotIndex());
    } else {
      this.entries = [];
    }
    this.snap = snapshot;
  }

  /** What a restarting node recovers (the `initial` of its new RaftNode). */
  initialState(): InitialState {
    const snapshotIndex = this.snapshotIndex();
    return {
      hardState: this.hardState,
      snapshot: this.snap?.meta ?? null,
      entries: [...this.entries],
      applied: snapshotIndex,
    };
  }
}
