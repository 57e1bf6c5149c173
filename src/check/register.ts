// Linearizability of a key-value history: each key is an independent register (a history is
// linearizable iff each object's sub-history is — Herlihy & Wing 1990, §3.3 "locality"), so the
// history is split per key and each key searched alone, which turns one exponential search into
// many small ones.

import { CheckError, shown } from './errors.js';
import {
  defaultHistoryLimits,
  validateHistory,
  type History,
  type HistoryLimits,
  type Operation,
  type Value,
} from './history.js';
import {
  searchLinearization,
  type SearchOutcome,
  type TimedOp,
  type UnknownReason,
} from './linearizability.js';
import { registerModel, type RegisterOp } from './model.js';

export type Verdict = 'ok' | 'violation' | 'unknown';

export interface CheckOptions {
  /** Wall-clock budget for the whole history; keys left when it runs out are 'unknown'. */
  readonly timeBudgetMs?: number;
  /** Search steps allowed per key. */
  readonly maxStepsPerKey?: number;
  /** Memo bytes allowed per key (freed before the next key). */
  readonly maxMemoBytesPerKey?: number;
  /** Values keys hold before the history starts; keys not listed start absent (null). */
  readonly initialValues?: Readonly<Record<string, Value>>;
  readonly limits?: HistoryLimits;
  /** The clock the budget is measured on; performance.now() unless given. */
  readonly now?: () => number;
}

/** An operation of the history together with its position in it. */
export interface IndexedOperation {
  readonly index: number;
  readonly op: Operation;
}

export interface KeyResult {
  readonly key: string;
  readonly verdict: Verdict;
  /** Operations the search considered (definite failures and unknown reads dropped). */
  readonly opCount: number;
  readonly steps: number;
  readonly elapsedMs: number;
  /** Why the verdict is 'unknown'; null otherwise. */
  readonly unknownReason: UnknownReason | null;
}

export interface Violation {
  readonly key: string;
  /** The longest linearizable prefix the search found, in linearization order. */
  readonly prefix: readonly IndexedOperation[];
  /** Operations that could have gone next at the deepest point; none fits. */
  readonly candidates: readonly IndexedOperation[];
  /** The register's value after the prefix, JSON-encoded (null when the key is absent). */
  readonly valueAfterPrefix: string;
}

export interface CheckResult {
  /** 'violation' if any key has one; else 'unknown' if any key ran out of budget; else 'ok'. */
  readonly verdict: Verdict;
  readonly perKey: readonly KeyResult[];
  readonly violations: readonly Violation[];
}

interface ResolvedOptions {
  readonly timeBudgetMs: number;
  readonly maxStepsPerKey: number;
  readonly maxMemoBytesPerKey: number;
  readonly initialValues: Readonly<Record<string, Value>>;
  readonly limits: HistoryLimits;
  readonly now: () => number;
}

function positive(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !(value > 0)) {
    throw new CheckError(
      'INVALID_OPTIONS',
      `${name} must be a positive number, saw ${shown(value)}`,
    );
  }
  return value;
}

function resolve(options: CheckOptions): ResolvedOptions {
  return {
    timeBudgetMs: positive('timeBudgetMs', options.timeBudgetMs, 60_000),
    maxStepsPerKey: positive('maxStepsPerKey', options.maxStepsPerKey, 100_000_000),
    maxMemoBytesPerKey: positive('maxMemoBytesPerKey', options.maxMemoBytesPerKey, 1 << 30),
    initialValues: options.initialValues ?? {},
    limits: options.limits ?? defaultHistoryLimits,
    now: options.now ?? (() => performance.now()),
  };
}

/** Own properties only: a key named "constructor" must not start as Object's constructor. */
function initialValue(values: Readonly<Record<string, Value>>, key: string): Value {
  return Object.hasOwn(values, key) ? (values[key] ?? null) : null;
}

/** The register operation the search sees, or null when the operation constrains nothing. */
function toRegisterOp(op: Operation): RegisterOp | null {
  if (op.status === 'fail') return null;
  const known = op.status === 'ok';
  switch (op.kind) {
    case 'read':
      // An unknown read has no answer to check and no effect: dropping it loses nothing.
      return known ? { kind: 'read', output: op.output ?? null } : null;
    case 'write':
      return { kind: 'write', value: op.input };
    case 'cas':
      return {
        kind: 'cas',
        expected: op.input.expected,
        next: op.input.new,
        swapped: known ? op.output : undefined,
      };
  }
}

interface KeyPart {
  readonly ops: TimedOp<RegisterOp>[];
  /** History index of each op in `ops`. */
  readonly origin: number[];
}

function partition(history: History): Map<string, KeyPart> {
  const parts = new Map<string, KeyPart>();
  history.forEach((op, index) => {
    const registerOp = toRegisterOp(op);
    if (registerOp === null) return;
    let part = parts.get(op.key);
    if (!part) {
      part = { ops: [], origin: [] };
      parts.set(op.key, part);
    }
    const returnMs = op.status === 'unknown' ? Infinity : (op.completeMs ?? Infinity);
    part.ops.push({ op: registerOp, callMs: op.invokeMs, returnMs });
    part.origin.push(index);
  });
  return parts;
}

function toViolation(
  key: string,
  history: History,
  part: KeyPart,
  outcome: Extract<SearchOutcome, { verdict: 'violation' }>,
): Violation {
  const indexed = (i: number): IndexedOperation => {
    const index = part.origin[i]!;
    return { index, op: history[index]! };
  };
  return {
    key,
    prefix: outcome.prefix.map(indexed),
    candidates: outcome.candidates.map(indexed),
    valueAfterPrefix: outcome.stateKey,
  };
}

function overall(perKey: readonly KeyResult[]): Verdict {
  if (perKey.some((k) => k.verdict === 'violation')) return 'violation';
  if (perKey.some((k) => k.verdict === 'unknown')) return 'unknown';
  return 'ok';
}

/**
 * Decides whether a key-value history is linearizable. Throws CheckError on a malformed history
 * or options; otherwise always returns, within about `timeBudgetMs`.
 */
export function checkHistory(history: History, options: CheckOptions = {}): CheckResult {
  const o = resolve(options);
  validateHistory(history, o.limits);
  const deadlineMs = o.now() + o.timeBudgetMs;
  const parts = partition(history);
  const keys = [...parts.keys()].sort();
  const perKey: KeyResult[] = [];
  const violations: Violation[] = [];
  for (const key of keys) {
    const part = parts.get(key)!;
    const startMs = o.now();
    const outcome: SearchOutcome =
      startMs > deadlineMs
        ? { verdict: 'unknown', steps: 0, reason: 'time-budget' }
        : searchLinearization(registerModel(initialValue(o.initialValues, key)), part.ops, {
            deadlineMs,
            maxSteps: o.maxStepsPerKey,
            maxMemoBytes: o.maxMemoBytesPerKey,
            now: o.now,
          });
    perKey.push({
      key,
      verdict: outcome.verdict,
      opCount: part.ops.length,
      steps: outcome.steps,
      elapsedMs: o.now() - startMs,
      unknownReason: outcome.verdict === 'unknown' ? outcome.reason : null,
    });
    if (outcome.verdict === 'violation') violations.push(toViolation(key, history, part, outcome));
  }
  return { verdict: overall(perKey), perKey, violations };
}
