// In-memory storage. NOT FOR PRODUCTION: nothing survives the process, so a node using it can
// vote twice or lose acknowledged writes after a restart. It exists for unit tests and the
// simulator, which pass a MemoryDisk to a new instance to model a restart.

import type { Entry, HardState, InitialState, SnapshotMeta } from '../raft/index.js';
import { StorageError, closedError } from './errors.js';
import { checkBatch, checkSnapshotSize, resolveLimits } from './limits.js';
import type { ResolvedLimits } from './limits.js';
import { LogIndex, checkHardState, checkSnapshotMeta } from './log-index.js';
import type {
  LogStore,
  RaftStorage,
  SnapshotStore,
  StableStore,
  StorageLimits,
  StoredSnapshot,
} from './types.js';

/** What a memory store "persisted": survives a store being closed and another opened on it. */
export interface MemoryDisk {
  hardState: HardState;
  snapshot: StoredSnapshot | null;
  base: { index: number; term: number };
  entries: Entry[];
  open: boolean;
}

export function createMemoryDisk(): MemoryDisk {
  return {
    hardState: { term: 0, vote: 0, commit: 0 },
    snapshot: null,
    base: { index: 0, term: 0 },
    entries: [],
    open: false,
  };
}

let warned = false;

export interface MemoryOptions extends StorageLimits {
  readonly disk?: MemoryDisk;
  /** Suppress the one-time process warning (tests and the simulator). */
  readonly quiet?: boolean;
}

class MemoryStorage implements RaftStorage {
  private readonly index: LogIndex;
  private hardState: HardState;
  private closed = false;
  readonly log: LogStore;
  readonly stable: StableStore;
  readonly snapshots: SnapshotStore;

  constructor(
    private readonly disk: MemoryDisk,
    private readonly limits: ResolvedLimits,
  ) {
    this.index = new LogIndex(disk.base, disk.entries.slice());
    this.hardState = disk.hardState;
    this.log = {
      firstIndex: () => this.index.firstIndex(),
      lastIndex: () => this.index.lastIndex(),
      term: (i) => this.index.term(i),
      entries: (lo, hi) => this.index.entries(lo, hi),
      append: (entries) => this.persist(entries, null),
      compact: (through) => this.compact(through),
      close: () => this.close(),
    };
    this.stable = { load: () => this.hardState, save: (hs) => this.persist([], hs) };
    this.snapshots = { save: (m, d) => this.saveSnapshot(m, d), latest: () => this.loadSnapshot() };
  }

  initialState(): InitialState {
    const snap = this.disk.snapshot?.meta ?? null;
    return {
      hardState: this.hardState,
      snapshot: snap,
      entries: this.index.all().slice(),
      applied: snap?.index ?? 0,
    };
  }

  private sync(): void {
    this.disk.hardState = this.hardState;
    this.disk.base = this.index.base();
    this.disk.entries = this.index.all().slice();
  }

  private checkOpen(): void {
    if (this.closed) throw closedError('the memory store');
  }

  async persist(entries: readonly Entry[], hardState: HardState | null): Promise<void> {
    this.checkOpen();
    checkBatch(entries, this.limits);
    this.index.checkAppend(entries);
    if (hardState !== null) checkHardState(hardState, this.hardState);
    this.index.append(entries);
    if (hardState !== null) this.hardState = hardState;
    this.sync();
    await Promise.resolve();
  }

  async compact(through: number): Promise<void> {
    this.checkOpen();
    this.index.compact(through);
    this.sync();
    await Promise.resolve();
  }

  async saveSnapshot(meta: SnapshotMeta, data: Uint8Array): Promise<void> {
    this.checkOpen();
    checkSnapshotMeta(meta);
    checkSnapshotSize(data.length, this.limits);
    await Promise.resolve();
    if (meta.index <= (this.disk.snapshot?.meta.index ?? 0)) return;
    this.disk.snapshot = { meta, data: data.slice() };
    this.index.applySnapshot(meta);
    this.sync();
  }

  async loadSnapshot(): Promise<StoredSnapshot | null> {
    this.checkOpen();
    await Promise.resolve();
    return this.disk.snapshot;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.disk.open = false;
    await Promise.resolve();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** In-memory storage: NOT FOR PRODUCTION (see the file comment). */
export function createMemoryStorage(opts: MemoryOptions = {}): RaftStorage {
  if (!warned && opts.quiet !== true) {
    warned = true;
    process.emitWarning('createMemoryStorage keeps Raft state in memory only: not for production', {
      code: 'FLOTILLA_MEMORY_STORAGE',
    });
  }
  const disk = opts.disk ?? createMemoryDisk();
  if (disk.open)
    throw new StorageError('STORAGE_LOCKED', 'This MemoryDisk is already open in another store');
  disk.open = true;
  return new MemoryStorage(disk, resolveLimits(opts));
}
