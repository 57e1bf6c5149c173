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
  ReadChecker,
  entryKey,
  type DiskView,
  type LogView,
  type ReadRecord,
  type Violation,
  type ViolationKind,
} from './checker.js';
export { SimError, type SimErrorCode } from './errors.js';
export type { NodeFactory } from './sim-node.js';
