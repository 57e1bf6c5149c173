// Public entry point of the simulator (used by the CLI and the tests).

export {
  runSeed,
  replayCommand,
  Simulation,
  type SimOptions,
  type SimResult,
  type SimStats,
} from './simulation.js';
export {
  drawProfile,
  describeProfile,
  validateProfile,
  type Profile,
  type ClusterSize,
} from './profile.js';
export {
  SafetyChecker,
  ClientChecker,
  entryKey,
  type DiskView,
  type LogView,
  type ReadRecord,
  type WriteRecord,
  type Violation,
  type ViolationKind,
} from './checker.js';
export { SimError, type SimErrorCode } from './errors.js';
export type {
  KvPlant,
  MetaPlant,
  NodeFactory,
  RangePlant,
  RetirePlant,
  RuntimeFactory,
} from './sim-node.js';
export type { ReplicaStepFn } from './mover.js';
export { WalNodeDisk, walDisks } from './wal-disk.js';
export {
  VirtualDiskStore,
  virtualDisks,
  type DiskFactory,
  type DiskIo,
  type NodeDisk,
} from './sim-storage.js';

/**
 * The simulated disk the real WAL runs on (src/storage/wal.ts through its StorageFs option):
 * one SimDisk per node, one mount per process lifetime. docs/STORAGE.md, "The simulated
 * disk", lists what it models.
 *
 * ```ts
 * const disk = new SimDisk({
 *   rng: createRng(seed),
 *   // Optional: every operation waits for this promise (resolve it from the event queue to
 *   // give syncs virtual time; reject it with simIoError('EIO', io) to fail one).
 *   schedule: (io) => queue.ioDone(io),
 * });
 * let wal = await openWalStorage('/n1', { fs: disk.mount(), snapshotsCoverCompaction: true });
 * await wal.persist(entries, hardState);   // resolved: durable, survives any crash
 * disk.crash();                            // power loss: the old mount's calls never settle
 * wal = await openWalStorage('/n1', { fs: disk.mount(), snapshotsCoverCompaction: true });
 * const recovered = wal.initialState();    // recovery ran on what the crash left
 * ```
 */
export {
  SimDisk,
  SimFs,
  SimFsError,
  simIoError,
  type SimDiskOptions,
  type SimDiskStats,
  type SimFsErrorCode,
  type SimIo,
  type SimIoKind,
} from './sim-fs.js';
