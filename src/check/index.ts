// Public entry point of the history checkers: the linearizability checker for key-value
// registers (and the generic search under it, for other models), the set-workload checker,
// the watch, lock and job-queue checkers, and JSONL history files.

export { CheckError, type CheckErrorCode } from './errors.js';
export {
  defaultHistoryLimits,
  validateHistory,
  type CasInput,
  type CasOperation,
  type History,
  type HistoryLimits,
  type Operation,
  type OpStatus,
  type ReadOperation,
  type Value,
  type WriteOperation,
} from './history.js';
export { registerModel, type Model, type RegisterOp, type StepResult } from './model.js';
export {
  searchLinearization,
  type SearchBudget,
  type SearchOutcome,
  type TimedOp,
  type UnknownReason,
} from './linearizability.js';
export {
  checkHistory,
  type CheckOptions,
  type CheckResult,
  type IndexedOperation,
  type KeyResult,
  type Verdict,
  type Violation,
} from './register.js';
export { formatOperation, formatResult, formatViolation } from './format.js';
export { formatHistory, parseHistory, readHistory, writeHistory } from './io.js';
export {
  checkSet,
  defaultSetLimits,
  type FinalRead,
  type SetAdd,
  type SetHistory,
  type SetLimits,
  type SetReport,
} from './set.js';
export {
  checkQueue,
  type QueueAddOp,
  type QueueCheckOptions,
  type QueueCheckReport,
  type QueueClaimOp,
  type QueueFinalJob,
  type QueueFinalState,
  type QueueJobState,
  type QueueOp,
  type QueueOpStatus,
  type QueueReportOp,
} from './queue.js';
export { syntheticRegisterHistory, type SyntheticOptions } from './synthetic.js';
export {
  checkLockWrites,
  checkWatchers,
  type LockReport,
  type LockWrite,
  type WatchReport,
  type WatchedRevision,
  type WatcherLog,
} from './watch.js';
