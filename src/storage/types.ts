// The contracts between the Raft runtime and durable storage (hashicorp/raft names the same
// roles: LogStore, StableStore, SnapshotStore). Every backend (WAL, SQLite, memory) implements
// RaftStorage and passes the same contract test suite (test/storage/contract.ts).

import type { Entry, HardState, InitialState, SnapshotMeta } from '../raft/index.js';
import type { StorageFs } from './fs.js';
import type { SyncHook } from './fsutil.js';
import type { NodeJournal } from './journal.js';
import type { InlineWrites } from './inline-writes.js';

/**
 * The log entries after the latest snapshot.
 *
 * Reads are answered from an in-memory copy of the log (every backend keeps one; the disk is
 * written, and read only at recovery). Reads see an append as soon as `append` was called,
 * before it is durable: durability is what the returned promise reports.
 */
export interface LogStore {
  /** Index of the first stored entry; lastIndex() + 1 when the log is empty. */
  firstIndex(): number;
  /** Index of the last stored entry; the snapshot index (or 0) when the log is empty. */
  lastIndex(): number;
  /** Term of the entry at `index`; the snapshot's term at the snapshot index; else undefined. */
  term(index: number): number | undefined;
  /** Entries with lo <= index < hiExclusive. Throws STORAGE_INVALID_ARGUMENT outside the log. */
  entries(lo: number, hiExclusive: number): Entry[];
  /**
   * Appends contiguous entries. If entries[0].index <= lastIndex() the stored suffix from there
   * is replaced (a follower overwriting a conflicting, uncommitted tail, paper §5.3). Resolves
   * only once durable; concurrent calls share one sync (group commit).
   */
  append(entries: readonly Entry[]): Promise<void>;
  /** Drops entries <= throughIndex; backends may keep more (whole WAL segments only). */
  compact(throughIndex: number): Promise<void>;
  close(): Promise<void>;
}

/** How a persist may be carried out; the promise means the same either way. */
export interface PersistOptions {
  /**
   * The caller has nothing else to do until this write is durable (a Raft follower whose node
   * leads no group with work outstanding: its acknowledgement waits for it). Storage may make the
   * write on the calling thread, blocking it for as long as the disk takes, rather than hand it
   * to a thread and wait to be woken: on a machine whose cores are busy, those two hand-offs
   * cost more than a small write (docs/BENCHMARKS.md, "A follower writes on its own thread").
   * Only a hint: storage that cannot, or a write too large, goes the ordinary way.
   */
  readonly inline?: boolean;
}

/** Term, vote and commit (paper Figure 2, "persistent state on all servers"). */
export interface StableStore {
  /** The latest hard state handed to save(), durable or not; zeros on a fresh store. */
  load(): HardState;
  /** Resolves once durable. */
  save(hs: HardState): Promise<void>;
}

export interface StoredSnapshot {
  readonly meta: SnapshotMeta;
  readonly data: Uint8Array;
}

export interface SnapshotStore {
  /** Durable once resolved; older snapshots are removed only after this one is durable. */
  save(meta: SnapshotMeta, data: Uint8Array): Promise<void>;
  latest(): Promise<StoredSnapshot | null>;
}

/** One node's data directory as the runtime uses it. */
export interface RaftStorage extends AsyncDisposable {
  /** What was recovered at open, updated by every later call (so a reopen is not needed). */
  initialState(): InitialState;
  /**
   * One durable write for a Ready: entries (replacing a conflicting suffix, as LogStore.append)
   * and hard state together. Calls made while a sync is in flight gather into the next sync.
   */
  persist(
    entries: readonly Entry[],
    hardState: HardState | null,
    opts?: PersistOptions,
  ): Promise<void>;
  /**
   * Stores the snapshot durably, then compacts the log through meta.index. If the log does not
   * hold meta.index with meta.term (a follower installing a leader's snapshot, paper §7), the
   * whole log is discarded and the next append must be meta.index + 1. A snapshot older than
   * the stored one is ignored.
   */
  saveSnapshot(meta: SnapshotMeta, data: Uint8Array): Promise<void>;
  loadSnapshot(): Promise<StoredSnapshot | null>;
  close(): Promise<void>;
  readonly log: LogStore;
  readonly stable: StableStore;
  readonly snapshots: SnapshotStore;
}

/** Limits on every input (defaults in limits.ts). */
export interface StorageLimits {
  /** Largest entry payload accepted. */
  readonly maxEntryBytes?: number;
  /** Largest number of entries in one append/persist call. */
  readonly maxBatchEntries?: number;
  /** Largest snapshot accepted. */
  readonly maxSnapshotBytes?: number;
}

export interface WalOptions extends StorageLimits {
  /**
   * The file system to use; default the real one (node:fs/promises). The simulator passes a
   * simulated disk (src/sim/sim-fs.ts) to crash the real WAL from a seed.
   */
  readonly fs?: StorageFs;
  /** A new segment is started once the active one reaches this size. Default 64 MiB. */
  readonly segmentBytes?: number;
  readonly syncHook?: SyncHook;
  /**
   * 'dsync' (default): segments are opened with O_DSYNC, each write is durable when it returns.
   * 'fdatasync': write, then fdatasync (the default when a syncHook is given, so it sees syncs).
   */
  readonly syncMode?: 'dsync' | 'fdatasync';
  /**
   * The caller compacts only behind a durable snapshot (a Raft runtime does): a log compacted
   * past the newest snapshot file means that file was lost, and opening refuses with
   * STORAGE_CORRUPT naming it. Off for plain log stores, which may compact on their own.
   */
  readonly snapshotsCoverCompaction?: boolean;
  /**
   * Largest write made on the calling thread when a persist asks for it (PersistOptions.inline),
   * in O_DSYNC mode, on a file system that can (StorageFs.writevNow); larger writes, and every
   * write in 'fdatasync' or journaled mode, go through the thread pool, and so does every write
   * for a second after one that took over 10 ms (inline-writes.ts, InlineWrites). Default 64 KiB;
   * 0 never.
   */
  readonly inlineWriteMaxBytes?: number;
  /** The clock (ms) timing writes for that pause; default performance.now. Tests set it. */
  readonly nowMs?: () => number;
  /**
   * The inline writes' policy to share with the other stores on the same disk, so that a slow
   * write to any of them pauses the inline writes of all (a node passes one to each group's
   * WAL); `inlineWriteMaxBytes` and `nowMs` are then ignored. Default: one of this store's own.
   */
  readonly inlineWrites?: InlineWrites;
  /**
   * The node journal (journal.ts) every group of the node writes through: appends of all
   * groups gathered during one sync share one journal write and sync, and the segments are
   * synced at the journal's checkpoints. The directory must lie under the journal's, and the
   * journal must have been opened (its redo done) before. `syncMode` is then ignored.
   */
  readonly journal?: NodeJournal;
}

export interface SqliteOptions extends StorageLimits {
  /** File name inside the directory, when a directory is given. Default raft.sqlite. */
  readonly fileName?: string;
}
