// Public entry point of the storage layer: the contracts and the three backends.

export type {
  LogStore,
  StableStore,
  SnapshotStore,
  StoredSnapshot,
  RaftStorage,
  StorageLimits,
  WalOptions,
  PersistOptions,
  SqliteOptions,
} from './types.js';
export type { SyncHook } from './fsutil.js';
export { StorageError, type StorageErrorCode } from './errors.js';
export { nodeFs, type StorageFs, type StorageFile, type OpenOptions, type DirLock } from './fs.js';
export { InlineWrites } from './inline-writes.js';
export { openWalStorage, WalStorage, type WalRecoveryReport, type WalRepair } from './wal.js';
export { openSqliteStorage, sqliteHoldsData } from './sqlite.js';
export {
  createMemoryStorage,
  createMemoryDisk,
  type MemoryDisk,
  type MemoryOptions,
} from './memory.js';
export { DEFAULT_LIMITS } from './limits.js';
export { FilePartialSnapshots } from './partial-snapshot.js';
export {
  openNodeJournal,
  replayJournal,
  NodeJournal,
  type JournalOptions,
  type JournalRecoveryReport,
} from './journal.js';
export { LOCK_FILE, pidAlive } from './lock.js';
