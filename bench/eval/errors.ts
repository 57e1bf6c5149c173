// Typed errors of the evaluation harness: each has a stable `code` so a caller (or a person
// reading a failed run) can tell a bad option from a cluster that would not start.

export type EvalErrorCode =
  | 'EVAL_BAD_OPTION'
  | 'EVAL_CLUSTER_START'
  | 'EVAL_NO_LEADER'
  | 'EVAL_PROCESS'
  | 'EVAL_FAILOVER'
  | 'EVAL_PROFILE'
  | 'EVAL_SCENARIO';

export class EvalError extends Error {
  override readonly name = 'EvalError';
  constructor(
    readonly code: EvalErrorCode,
    message: string,
  ) {
    super(message);
  }
}
