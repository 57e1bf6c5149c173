// Typed errors of the simulator. A SimError is a problem with the simulator's input or with
// the harness itself (never a Raft safety violation: those are reported as Violations).

export type SimErrorCode =
  /** A command-line or programmatic option is out of range. */
  | 'INVALID_OPTION'
  /** The harness was asked to do something its model forbids (a bug in the simulator). */
  | 'HARNESS';

export class SimError extends Error {
  override readonly name = 'SimError';
  readonly code: SimErrorCode;

  constructor(code: SimErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}
