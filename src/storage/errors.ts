// Typed storage errors with stable codes. A storage error is never retried silently: after a
// failed write or sync the on-disk state is unknown (the "fsyncgate" lesson: a later fsync may
// report success for pages the kernel already dropped), so the store latches the failure and
// refuses every further write.

export type StorageErrorCode =
  /** A record or file failed its checksum or structure check; `file`, `offset`, `expected` say where. */
  | 'STORAGE_CORRUPT'
  /** Another process (or another open store in this process) holds the data directory. */
  | 'STORAGE_LOCKED'
  /** fdatasync/fsync failed; the store accepts no further writes. */
  | 'STORAGE_FSYNC_FAILED'
  /** A write failed (disk full, I/O error); the store accepts no further writes. */
  | 'STORAGE_WRITE_FAILED'
  /** The store was closed. */
  | 'STORAGE_CLOSED'
  /** A file carries a format version this code does not read. */
  | 'STORAGE_VERSION'
  /** The caller asked for something the log contract forbids (gap, compacted index, ...). */
  | 'STORAGE_INVALID_ARGUMENT'
  /** An input exceeded a configured limit (entry size, batch size). */
  | 'STORAGE_LIMIT';

export interface StorageErrorDetails {
  readonly file?: string;
  readonly offset?: number;
  readonly expected?: string;
  readonly cause?: unknown;
}

export class StorageError extends Error {
  override readonly name = 'StorageError';
  readonly code: StorageErrorCode;
  readonly file: string | undefined;
  readonly offset: number | undefined;
  readonly expected: string | undefined;

  constructor(code: StorageErrorCode, message: string, details: StorageErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.code = code;
    this.file = details.file;
    this.offset = details.offset;
    this.expected = details.expected;
  }
}

export function corrupt(
  file: string,
  offset: number,
  expected: string,
  seen: string,
): StorageError {
  return new StorageError(
    'STORAGE_CORRUPT',
    `Corrupt data in ${file} at offset ${offset}: expected ${expected}, found ${seen}`,
    { file, offset, expected },
  );
}

export function invalid(message: string): StorageError {
  return new StorageError('STORAGE_INVALID_ARGUMENT', message);
}

export function closedError(what: string): StorageError {
  return new StorageError('STORAGE_CLOSED', `Cannot use ${what}: the store is closed`);
}

/** Wraps an unknown failure from fs as a latched write or sync failure. */
export function ioFailure(
  code: 'STORAGE_FSYNC_FAILED' | 'STORAGE_WRITE_FAILED',
  what: string,
  cause: unknown,
): StorageError {
  if (cause instanceof StorageError) return cause;
  const reason = cause instanceof Error ? cause.message : String(cause);
  return new StorageError(code, `${what} failed: ${reason}; the store accepts no further writes`, {
    cause,
  });
}

/** A rejected promise carrying `err` as an Error (validation errors thrown synchronously). */
export function rejected(err: unknown): Promise<never> {
  return Promise.reject(err instanceof Error ? err : new Error(String(err)));
}
