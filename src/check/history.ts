// The history format shared by the chaos harness (which records it) and the checkers (which
// judge it). A history is a list of operations on a key-value register, each with the moment a
// client invoked it and the moment the client learnt its outcome, on one monotonic clock (for
// example performance.now() in the process that drives every client).
//
// Status says what the client knows about the operation's effect:
//   - 'ok':      it took effect exactly once, at some instant between invokeMs and completeMs,
//                and `output` is what the server answered;
//   - 'fail':    it definitely did not take effect (e.g. refused with NOT_LEADER before being
//                proposed). The checker drops it;
//   - 'unknown': it may or may not have taken effect, at any instant after invokeMs — even after
//                completeMs, which only records when the client gave up (timeout, connection
//                reset after sending, an indefinite error). The checker treats its completion as
//                +infinity and its output as unconstrained (Jepsen's "info" operations).
//
// Values are strings, or null for "key absent". A write of null is a delete.
//
// A client runs one operation at a time: its 'ok' and 'fail' operations must not overlap. An
// 'unknown' operation is exempt, because a client that gave up may move on while the old request
// is still in flight somewhere.

import { CheckError, shown } from './errors.js';

export type Value = string | null;
export type OpStatus = 'ok' | 'fail' | 'unknown';

interface OperationBase {
  /** The client (logical process) that issued the operation: a non-negative integer. */
  readonly client: number;
  readonly key: string;
  /** When the client sent the request, on the history's monotonic clock. */
  readonly invokeMs: number;
  /** When the client learnt the outcome; null allowed only for status 'unknown'. */
  readonly completeMs: number | null;
  readonly status: OpStatus;
}

export interface ReadOperation extends OperationBase {
  readonly kind: 'read';
  /** The value read; required when status is 'ok', ignored otherwise. */
  readonly output?: Value;
}

export interface WriteOperation extends OperationBase {
  readonly kind: 'write';
  readonly input: Value;
}

export interface CasInput {
  readonly expected: Value;
  readonly new: Value;
}

export interface CasOperation extends OperationBase {
  readonly kind: 'cas';
  readonly input: CasInput;
  /** Whether the swap happened; required when status is 'ok', ignored otherwise. */
  readonly output?: boolean;
}

export type Operation = ReadOperation | WriteOperation | CasOperation;
export type History = readonly Operation[];

/** Bounds on a history, checked before any work is done. */
export interface HistoryLimits {
  readonly maxOps: number;
  readonly maxKeyBytes: number;
  readonly maxValueBytes: number;
}

export const defaultHistoryLimits: HistoryLimits = {
  maxOps: 5_000_000,
  maxKeyBytes: 4096,
  maxValueBytes: 1 << 20,
};

function bad(index: number, what: string, value: unknown): CheckError {
  return new CheckError('INVALID_OPERATION', `Operation #${index}: ${what}, saw ${shown(value)}`);
}

function checkValue(index: number, field: string, value: unknown, maxBytes: number): void {
  if (value === null) return;
  if (typeof value !== 'string') throw bad(index, `${field} must be a string or null`, value);
  // String length counts UTF-16 units, at most 3 UTF-8 bytes each: a cheap conservative bound.
  if (value.length > maxBytes) {
    throw bad(index, `${field} is longer than ${maxBytes} characters`, value.length);
  }
}

function checkTimes(index: number, op: Operation): void {
  if (typeof op.invokeMs !== 'number' || !Number.isFinite(op.invokeMs)) {
    throw bad(index, 'invokeMs must be a finite number', op.invokeMs);
  }
  if (op.completeMs === null) {
    if (op.status !== 'unknown')
      throw bad(index, `completeMs is null but status is ${op.status}`, null);
    return;
  }
  if (typeof op.completeMs !== 'number' || !Number.isFinite(op.completeMs)) {
    throw bad(index, 'completeMs must be a finite number or null', op.completeMs);
  }
  if (op.completeMs < op.invokeMs) {
    throw bad(index, `completeMs precedes invokeMs ${op.invokeMs}`, op.completeMs);
  }
}

function checkKindFields(index: number, op: Operation, limits: HistoryLimits): void {
  const known = op.status === 'ok';
  switch (op.kind) {
    case 'read':
      if (known) {
        if (op.output === undefined) throw bad(index, 'an ok read needs an output', undefined);
        checkValue(index, 'output', op.output, limits.maxValueBytes);
      }
      return;
    case 'write':
      checkValue(index, 'input', op.input, limits.maxValueBytes);
      return;
    case 'cas':
      if (typeof op.input !== 'object' || op.input === null) {
        throw bad(index, 'cas input must be {expected, new}', op.input);
      }
      checkValue(index, 'input.expected', op.input.expected, limits.maxValueBytes);
      checkValue(index, 'input.new', op.input.new, limits.maxValueBytes);
      if (known && typeof op.output !== 'boolean') {
        throw bad(index, 'an ok cas needs a boolean output', op.output);
      }
      return;
    default:
      throw bad(index, "kind must be 'read', 'write' or 'cas'", (op as { kind: unknown }).kind);
  }
}

function checkOperation(index: number, op: Operation, limits: HistoryLimits): void {
  if (typeof op !== 'object' || op === null) throw bad(index, 'not an object', op);
  if (!Number.isSafeInteger(op.client) || op.client < 0) {
    throw bad(index, 'client must be a non-negative integer', op.client);
  }
  if (typeof op.key !== 'string' || op.key.length > limits.maxKeyBytes) {
    throw bad(index, `key must be a string of at most ${limits.maxKeyBytes} characters`, op.key);
  }
  if (op.status !== 'ok' && op.status !== 'fail' && op.status !== 'unknown') {
    throw bad(index, "status must be 'ok', 'fail' or 'unknown'", op.status);
  }
  checkTimes(index, op);
  checkKindFields(index, op, limits);
}

/** A client's definite operations must follow one another: overlap means a recording bug. */
function checkClientsSequential(history: History): void {
  const byClient = new Map<number, number[]>();
  history.forEach((op, i) => {
    if (op.status === 'unknown') return;
    const list = byClient.get(op.client) ?? [];
    list.push(i);
    byClient.set(op.client, list);
  });
  for (const [client, indexes] of byClient) {
    indexes.sort((a, b) => history[a]!.invokeMs - history[b]!.invokeMs || a - b);
    for (let j = 1; j < indexes.length; j++) {
      const prev = history[indexes[j - 1]!]!;
      const cur = history[indexes[j]!]!;
      if (cur.invokeMs < (prev.completeMs ?? Infinity)) {
        throw new CheckError(
          'CLIENT_OVERLAP',
          `Client ${client}: operation #${indexes[j]} invoked at ${cur.invokeMs} before ` +
            `operation #${indexes[j - 1]} completed at ${shown(prev.completeMs)}`,
        );
      }
    }
  }
}

/** Throws a CheckError naming the first malformed operation; returns normally otherwise. */
export function validateHistory(
  history: History,
  limits: HistoryLimits = defaultHistoryLimits,
): void {
  const asUnknown: unknown = history;
  if (!Array.isArray(asUnknown)) {
    throw new CheckError('INVALID_OPERATION', `A history must be an array, saw ${shown(history)}`);
  }
  if (history.length > limits.maxOps) {
    throw new CheckError(
      'HISTORY_TOO_LARGE',
      `A history may hold at most ${limits.maxOps} operations, saw ${history.length}`,
    );
  }
  history.forEach((op, i) => checkOperation(i, op, limits));
  checkClientsSequential(history);
}
