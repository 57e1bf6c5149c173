// Default limits and their validation. A limit on every input (STYLE.md): an entry larger than
// a segment, or a batch larger than memory, is refused with a typed error, never half-written.

import { defaultLimits } from '../base/limits.js';
import type { Entry } from '../raft/index.js';
import { StorageError } from './errors.js';
import type { StorageLimits } from './types.js';

export interface ResolvedLimits {
  readonly maxEntryBytes: number;
  readonly maxBatchEntries: number;
  readonly maxSnapshotBytes: number;
}

export const DEFAULT_LIMITS: ResolvedLimits = {
  maxEntryBytes: defaultLimits.maxEntryBytes,
  maxBatchEntries: 65_536,
  maxSnapshotBytes: defaultLimits.maxSnapshotBytes,
};

/** Hard ceiling: Node buffers and our u32 record length field cannot go beyond this. */
const ABSOLUTE_MAX_BYTES = 2 ** 31 - 1;

export function resolveLimits(o: StorageLimits = {}): ResolvedLimits {
  const r: ResolvedLimits = {
    maxEntryBytes: o.maxEntryBytes ?? DEFAULT_LIMITS.maxEntryBytes,
    maxBatchEntries: o.maxBatchEntries ?? DEFAULT_LIMITS.maxBatchEntries,
    maxSnapshotBytes: o.maxSnapshotBytes ?? DEFAULT_LIMITS.maxSnapshotBytes,
  };
  for (const [name, v] of Object.entries(r) as [string, number][]) {
    if (!Number.isInteger(v) || v < 1 || v > ABSOLUTE_MAX_BYTES)
      throw new StorageError(
        'STORAGE_INVALID_ARGUMENT',
        `Limit ${name} must be an integer in 1..${ABSOLUTE_MAX_BYTES}, got ${v}`,
      );
  }
  return r;
}

export function checkBatch(entries: readonly Entry[], limits: ResolvedLimits): void {
  if (entries.length > limits.maxBatchEntries)
    throw new StorageError(
      'STORAGE_LIMIT',
      `Cannot append ${entries.length} entries in one call: the limit is ${limits.maxBatchEntries}`,
    );
  for (const e of entries) {
    if (e.data.length > limits.maxEntryBytes)
      throw new StorageError(
        'STORAGE_LIMIT',
        `Entry ${e.index} has ${e.data.length} bytes of data: the limit is ${limits.maxEntryBytes}`,
      );
  }
}

export function checkSnapshotSize(sizeBytes: number, limits: ResolvedLimits): void {
  if (sizeBytes > limits.maxSnapshotBytes)
    throw new StorageError(
      'STORAGE_LIMIT',
      `Snapshot of ${sizeBytes} bytes exceeds the limit of ${limits.maxSnapshotBytes}`,
    );
}
