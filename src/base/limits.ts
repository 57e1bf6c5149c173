// Every size limit of a node, its default, and the relations between them, in one place
// (TigerBeetle's rule: put a limit on everything, and check at start-up that the limits agree).
// A request passes through several encodings on its way down - JSON (base64 at worst) in the
// HTTP body, the command envelope in msgpack as a log entry, the entry inside an append message
// inside a peer frame - and each layer refuses what exceeds its own limit. If a lower limit
// were smaller than what the one above it admits, a request the API accepted would be refused
// deep down, as an error the client cannot act on. `checkLimits` rules that out at start-up,
// naming the two limits in conflict; the layers' own checks stay, as a second line.
//
// Pure like src/raft: the encodings' sizes are given by the layers that own them
// (`LimitEncodings`), so this module needs no codec.

import { FlotillaError } from './errors.js';

const KiB = 1024;
const MiB = 1024 * KiB;

export interface Limits {
  // What a client may send (the API refuses more, with a 4xx).
  /** Bytes of a key. */
  readonly maxKeyBytes: number;
  /** Bytes of a value. */
  readonly maxValueBytes: number;
  /** Operations in one branch (compare, success, failure) of a transaction. */
  readonly maxTxnOps: number;
  /** UTF-16 code units of a session's client id. */
  readonly maxClientIdChars: number;
  /** The largest `limit` of a range read. */
  readonly maxRangeLimit: number;
  /**
   * Bytes of keys and values one range read answers (all the ranges of a transaction), whatever
   * its `limit`: past them it answers `more`, to be read on from after its last key. Its first
   * key is answered whatever its size.
   */
  readonly maxRangeBytes: number;
  /** Bytes of an HTTP request body. */
  readonly maxBodyBytes: number;
  // The log.
  /** Bytes of one proposal: one log entry's data, a command envelope (the core's limit). */
  readonly maxProposalBytes: number;
  /** Bytes of one entry's data that storage accepts. */
  readonly maxEntryBytes: number;
  /** Bytes of a snapshot that storage accepts. */
  readonly maxSnapshotBytes: number;
  /** Bytes of proposals a leader holds uncommitted before refusing more (flow control). */
  readonly maxUncommittedBytes: number;
  /** Entry bytes in flight to one follower, unacknowledged. */
  readonly maxInflightBytes: number;
  // Peers.
  /** Entry bytes one append message carries (one entry larger than this travels alone). */
  readonly maxBytesPerMsg: number;
  /** Bytes of one peer frame (a message and its envelope). */
  readonly maxFrameBytes: number;
  /** Bytes of a snapshot sent to a peer, in chunks. */
  readonly maxAttachmentBytes: number;
  /** Bytes of one snapshot chunk: the unit a transfer is acknowledged and resumed in. */
  readonly maxSnapshotChunkBytes: number;
  // Sessions (docs/API.md, "Exactly-once writes").
  /** Sequence numbers per client whose results are remembered. */
  readonly sessionWindow: number;
  /** Client sessions remembered. */
  readonly maxSessions: number;
}

/** The largest `maxKeyBytes` and `maxValueBytes` a node's configuration may set. */
export const MAX_CONFIGURED_KEY_BYTES = 64 * KiB;
export const MAX_CONFIGURED_VALUE_BYTES = 64 * MiB;

/**
 * How deep a request body may nest, over HTTP and the binary protocol alike: a transaction is
 * four levels, a job's data or result takes what is left. Deeper bodies are refused
 * BAD_REQUEST (over HTTP a body nested thousands deep overflowed the stack while checked).
 */
export const MAX_BODY_DEPTH = 64;

export const defaultLimits: Limits = {
  maxKeyBytes: KiB,
  maxValueBytes: MiB,
  maxTxnOps: 128,
  maxClientIdChars: 128,
  maxRangeLimit: 100_000,
  // An answer is encoded as one JSON string, which V8 caps at 512 MiB: values with every byte
  // escaped (6 characters each) must stay well under it, and the encoding holds the event loop.
  maxRangeBytes: 16 * MiB,
  // A put of a key and a value at their limits in base64, with room to spare.
  maxBodyBytes: 2 * MiB + 64 * KiB,
  // Derived from the key and value limits by the server (`maxWriteEntryBytes`); this is the
  // core's default for embedders that propose their own commands.
  maxProposalBytes: MiB,
  maxEntryBytes: 16 * MiB,
  maxSnapshotBytes: 1024 * MiB,
  maxUncommittedBytes: 64 * MiB,
  maxInflightBytes: 64 * MiB,
  maxBytesPerMsg: MiB,
  maxFrameBytes: 16 * MiB,
  maxAttachmentBytes: 1024 * MiB,
  maxSnapshotChunkBytes: MiB,
  sessionWindow: 256,
  maxSessions: 10_000,
};

/**
 * The limits a state machine decodes committed commands under, on every node: the largest a
 * configuration may set, not the node's own. A node's configured limits bound what it admits
 * (its API refuses more); what the log committed must be applied alike on every replica, or
 * a member configured with smaller limits than the leader's turned a committed write into a
 * refusal and its copy of the store drifted from the others (an operator's find: a value over
 * a follower's limit, put through a leader with a larger one, was acknowledged and then lost
 * when that leader died).
 */
export const APPLY_LIMITS = {
  maxKeyBytes: MAX_CONFIGURED_KEY_BYTES,
  maxValueBytes: MAX_CONFIGURED_VALUE_BYTES,
  // Not configurable: every node has the default.
  maxTxnOps: defaultLimits.maxTxnOps,
} as const;

/** The sizes of the encodings between the layers, given by the layers that own them. */
export interface LimitEncodings {
  /**
   * The most bytes one put (a key and a value at their limits) or delete takes as a log entry:
   * the command envelope with its other fields (the session's client id...) at their worst.
   */
  writeEntryBytes(
    limits: Pick<Limits, 'maxKeyBytes' | 'maxValueBytes' | 'maxClientIdChars'>,
  ): number;
  /** Bytes a peer frame spends on an append beyond its entries' data: header, fields, entries'. */
  readonly appendOverheadBytes: number;
  /** Bytes of a put's JSON body beyond its key and value (in base64): fields, flags, session. */
  readonly putBodyOverheadBytes: number;
}

/** A start-up refusal: two limits contradict each other. */
export class LimitsError extends Error {
  override readonly name = 'LimitsError';
  readonly code = 'CONFIG_INVALID';
  constructor(
    /** The two limits in conflict, the smaller-than-it-must-be one second. */
    readonly conflict: readonly [keyof Limits, keyof Limits],
    message: string,
  ) {
    super(message);
  }
}

/** Bytes of `n` bytes in base64, as JSON carries binary keys and values. */
export function base64Bytes(n: number): number {
  return 4 * Math.ceil(n / 3);
}

/**
 * Checks that every request the API accepts fits each layer below it; throws a LimitsError
 * naming the first two limits in conflict. The relations, top to bottom:
 *
 *   maxKeyBytes, maxValueBytes  -> a put's body in base64       <= maxBodyBytes
 *   maxKeyBytes, maxValueBytes  -> the command envelope         <= maxProposalBytes
 *   maxProposalBytes                                            <= maxEntryBytes (storage)
 *   maxProposalBytes, maxBytesPerMsg -> an append in a frame    <= maxFrameBytes
 *   maxBytesPerMsg                                              <= maxUncommittedBytes
 *   maxBytesPerMsg                                              <= maxInflightBytes
 *   maxSnapshotBytes                                            <= maxAttachmentBytes
 *   maxSnapshotChunkBytes + its message's fields                <= maxFrameBytes
 */
export function checkLimits(l: Limits, enc: LimitEncodings): void {
  for (const [name, v] of Object.entries(l) as [keyof Limits, number][]) {
    if (!Number.isSafeInteger(v) || v < 1)
      throw new LimitsError([name, name], `${name} must be a positive integer, got ${v}`);
  }
  const bodyBytes =
    base64Bytes(l.maxKeyBytes) + base64Bytes(l.maxValueBytes) + enc.putBodyOverheadBytes;
  if (bodyBytes > l.maxBodyBytes)
    throw new LimitsError(
      ['maxValueBytes', 'maxBodyBytes'],
      `maxBodyBytes (${l.maxBodyBytes}) must hold a put of a key and a value at their limits ` +
        `in base64: ${bodyBytes} bytes for maxKeyBytes ${l.maxKeyBytes} and maxValueBytes ${l.maxValueBytes}`,
    );
  const writeBytes = enc.writeEntryBytes(l);
  if (writeBytes > l.maxProposalBytes)
    throw new LimitsError(
      ['maxValueBytes', 'maxProposalBytes'],
      `maxProposalBytes (${l.maxProposalBytes}) must hold one write of a key and a value at ` +
        `their limits: ${writeBytes} bytes as a log entry for maxKeyBytes ${l.maxKeyBytes} and maxValueBytes ${l.maxValueBytes}`,
    );
  if (l.maxProposalBytes > l.maxEntryBytes)
    throw new LimitsError(
      ['maxProposalBytes', 'maxEntryBytes'],
      `maxEntryBytes (${l.maxEntryBytes}) is below maxProposalBytes (${l.maxProposalBytes}): ` +
        'storage would refuse an entry the core accepted',
    );
  const appendBytes = Math.max(l.maxProposalBytes, l.maxBytesPerMsg) + enc.appendOverheadBytes;
  if (appendBytes > l.maxFrameBytes) {
    const larger = l.maxProposalBytes >= l.maxBytesPerMsg ? 'maxProposalBytes' : 'maxBytesPerMsg';
    throw new LimitsError(
      [larger, 'maxFrameBytes'],
      `maxFrameBytes (${l.maxFrameBytes}) must hold an append of ${larger} (${l[larger]}) ` +
        `and its ${enc.appendOverheadBytes} bytes of message fields: ${appendBytes} bytes`,
    );
  }
  if (l.maxBytesPerMsg > l.maxUncommittedBytes)
    throw new LimitsError(
      ['maxBytesPerMsg', 'maxUncommittedBytes'],
      `maxUncommittedBytes (${l.maxUncommittedBytes}) is below maxBytesPerMsg (${l.maxBytesPerMsg}): ` +
        'a leader could not hold one full append uncommitted',
    );
  if (l.maxBytesPerMsg > l.maxInflightBytes)
    throw new LimitsError(
      ['maxBytesPerMsg', 'maxInflightBytes'],
      `maxInflightBytes (${l.maxInflightBytes}) is below maxBytesPerMsg (${l.maxBytesPerMsg}): ` +
        'a leader could not send one full append to a follower',
    );
  if (l.maxSnapshotBytes > l.maxAttachmentBytes)
    throw new LimitsError(
      ['maxSnapshotBytes', 'maxAttachmentBytes'],
      `maxAttachmentBytes (${l.maxAttachmentBytes}) is below maxSnapshotBytes (${l.maxSnapshotBytes}): ` +
        'a snapshot storage accepts could not be sent to a follower',
    );
  // A chunk is resent whole after a loss: it must fit one frame so that losing one frame
  // never costs more than one chunk.
  if (l.maxSnapshotChunkBytes + enc.appendOverheadBytes > l.maxFrameBytes)
    throw new LimitsError(
      ['maxSnapshotChunkBytes', 'maxFrameBytes'],
      `maxFrameBytes (${l.maxFrameBytes}) must hold a snapshot chunk of maxSnapshotChunkBytes ` +
        `(${l.maxSnapshotChunkBytes}) and its message fields`,
    );
}

// The checks of a client's keys and values, written once: the API refuses a request with them
// under the node's limits (a 4xx with a stable code), and the state machine decodes every
// committed command with them under APPLY_LIMITS.

export function checkKey(
  key: Uint8Array,
  limits: Pick<Limits, 'maxKeyBytes'>,
  field = 'key',
): Uint8Array {
  if (key.length === 0) throw new FlotillaError('KEY_EMPTY', `"${field}" must not be empty`);
  if (key.length > limits.maxKeyBytes)
    throw new FlotillaError(
      'KEY_TOO_LARGE',
      `"${field}" is ${key.length} bytes; the limit is ${limits.maxKeyBytes}`,
    );
  return key;
}

export function checkValue(
  value: Uint8Array,
  limits: Pick<Limits, 'maxValueBytes'>,
  field = 'value',
): Uint8Array {
  if (value.length > limits.maxValueBytes)
    throw new FlotillaError(
      'VALUE_TOO_LARGE',
      `"${field}" is ${value.length} bytes; the limit is ${limits.maxValueBytes}`,
    );
  return value;
}

/** A write's log entry against the proposal limit: only a transaction can exceed it. */
export function checkProposalBytes(bytes: number, limits: Pick<Limits, 'maxProposalBytes'>): void {
  if (bytes > limits.maxProposalBytes)
    throw new FlotillaError(
      'TXN_TOO_LARGE',
      `The transaction takes ${bytes} bytes in the log; one write holds at most ` +
        `${limits.maxProposalBytes} (a key and a value at their limits): split it`,
    );
}

export function checkClientId(clientId: string, limits: Pick<Limits, 'maxClientIdChars'>): string {
  if (clientId.length === 0 || clientId.length > limits.maxClientIdChars)
    throw new FlotillaError(
      'BAD_REQUEST',
      `"clientId" must have 1 to ${limits.maxClientIdChars} characters, got ${clientId.length}`,
    );
  return clientId;
}

// The job queue's limits (src/queue). Apart from `Limits` because no layer below the queue
// depends on them; the API will check the same ones before it proposes, as it does for keys.

/** The most claims a queue's rate limit may allow per interval (`rateLimit.max`). */
export const MAX_RATE_LIMIT_CLAIMS = 1_000_000_000;

export interface QueueLimits {
  /** Characters of a queue name, a caller's job id, a repeatable job's id, a job's name. */
  readonly maxNameChars: number;
  /** Bytes of a job's payload, and of the result a worker records when it completes. */
  readonly maxPayloadBytes: number;
  /** Characters of a failure's message and of a worker's name. */
  readonly maxMessageChars: number;
  /** Queues one machine holds. */
  readonly maxQueues: number;
  /** Jobs one machine holds, in every state: an add past it is refused (`QUEUE_FULL`). */
  readonly maxJobs: number;
  /** Repeatable jobs one machine holds. */
  readonly maxRepeatables: number;
  /** Runs of one job (its max attempts). */
  readonly maxAttempts: number;
  /** Any duration a command names: delay, backoff, lease, interval, retention age. */
  readonly maxDurationMs: number;
  /** Jobs one claim may take. */
  readonly maxClaimBatch: number;
  /**
   * Bytes of payloads (and results) one claim or one page of a list carries: the jobs past it
   * are left for the next claim or page, the first always taken. Without it, 256 jobs of 256
   * KiB made a 64 MiB answer that stalled the members for seconds.
   */
  readonly maxAnswerBytes: number;
  /** Jobs one bulk add may carry. */
  readonly maxAddBatch: number;
  /** Jobs or events one read returns. */
  readonly maxPageSize: number;
  /** Jobs one list read looks at before it returns a cursor to continue from. */
  readonly maxListScan: number;
  /** Events kept; older ones are trimmed and a reader behind them is told so. */
  readonly maxEvents: number;
  /** How long a caller-given job id deduplicates adds. */
  readonly dedupWindowMs: number;
}

export const defaultQueueLimits: QueueLimits = {
  maxNameChars: 128,
  maxPayloadBytes: 256 * KiB,
  maxMessageChars: 1024,
  maxQueues: 1_000,
  maxJobs: 5_000_000,
  maxRepeatables: 10_000,
  maxAttempts: 1_000,
  maxDurationMs: 366 * 24 * 3_600_000,
  maxClaimBatch: 256,
  maxAnswerBytes: 4 * MiB,
  maxAddBatch: 1_000,
  maxPageSize: 1_000,
  maxListScan: 100_000,
  maxEvents: 10_000,
  dedupWindowMs: 3_600_000,
};

/** A start-up refusal: the queue's limits contradict each other or are not positive. */
export class QueueLimitsError extends Error {
  override readonly name = 'QueueLimitsError';
  readonly code = 'CONFIG_INVALID';
  constructor(
    /** The two limits in conflict (the same one twice when it is bad on its own). */
    readonly conflict: readonly [keyof QueueLimits, keyof QueueLimits],
    message: string,
  ) {
    super(message);
  }
}

/**
 * Checks the queue's limits at start-up: each a positive integer, and
 *
 *   maxPageSize   <= maxListScan     a list page can be filled within one scan
 *   maxPageSize   <= maxEvents       a reader can be given a full page of kept events
 *   dedupWindowMs <= maxDurationMs
 */
export function checkQueueLimits(l: QueueLimits): void {
  for (const [name, v] of Object.entries(l) as [keyof QueueLimits, number][]) {
    if (!Number.isSafeInteger(v) || v < 1)
      throw new QueueLimitsError([name, name], `${name} must be a positive integer, got ${v}`);
  }
  const below = (small: keyof QueueLimits, large: keyof QueueLimits, why: string): void => {
    if (l[small] > l[large])
      throw new QueueLimitsError(
        [small, large],
        `${large} (${l[large]}) is below ${small} (${l[small]}): ${why}`,
      );
  };
  below('maxPageSize', 'maxListScan', 'a page of jobs could never be filled');
  below('maxPageSize', 'maxEvents', 'a page of events could never be filled');
  below('dedupWindowMs', 'maxDurationMs', 'the dedup window is a duration like any other');
}

/**
 * Whether `v` is a queue, job or repeatable name a queue can have: 1 to `maxNameChars` of
 * letters, digits and `._:-`, so that none can be mistaken for one the queue makes (`#seq`,
 * `repeatId@timeMs`). The queue machine refuses anything else; the client and the CLI check
 * the same before sending.
 */
export function isQueueName(v: unknown, l: Pick<QueueLimits, 'maxNameChars'>): boolean {
  return typeof v === 'string' && /^[A-Za-z0-9._:-]+$/.test(v) && v.length <= l.maxNameChars;
}
