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
export type { NodeFactory, RuntimeFactory } from './sim-node.js';
export {
  VirtualDiskStore,
  virtualDisks,
  type DiskFactory,
  type DiskIo,
  type SimDisk,
} from './sim-storage.js';
