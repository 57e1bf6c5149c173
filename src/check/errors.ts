// Typed errors for the history checkers. Bad input (a malformed history, an option out of range)
// is reported with a stable code, the offending value and where it was seen; it is never
// silently repaired, because a checker that quietly "fixes" a history can hide the very bug the
// history was recorded to find.

export type CheckErrorCode =
  /** An operation record is malformed: a field is missing, of the wrong type or out of range. */
  | 'INVALID_OPERATION'
  /** Two operations of one client overlap in time: the recorder lost track of a client. */
  | 'CLIENT_OVERLAP'
  /** The history (or one of its parts) is larger than the configured limit. */
  | 'HISTORY_TOO_LARGE'
  /** A checker option is out of range. */
  | 'INVALID_OPTIONS'
  /** A set-workload input is malformed (e.g. one element added twice). */
  | 'INVALID_SET_INPUT'
  /** A line of a JSONL history file is not valid JSON. */
  | 'INVALID_JSON';

export class CheckError extends Error {
  override readonly name = 'CheckError';
  readonly code: CheckErrorCode;

  constructor(code: CheckErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}

/** Renders a value seen in bad input for an error message, bounded so a huge value stays short. */
export function shown(value: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value);
  }
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}
