// Register histories produced by actually running operations one at a time on a set of
// registers, then stretching each operation's instant into an interval that contains it.
// Such a history is linearizable by construction (the execution order is a witness), which
// makes it the ground truth for property tests and the input of the checker benchmark.

import { Xoshiro128 } from '../raft/rng.js';
import { CheckError, shown } from './errors.js';
import type { Operation, OpStatus, Value } from './history.js';

export interface SyntheticOptions {
  readonly seed: number;
  readonly ops: number;
  readonly keys: number;
  readonly clients: number;
  /** How far an interval may stretch either side of its instant; instants are 10 apart. */
  readonly spreadMs?: number;
  /** Fraction of operations the client gives up on ('unknown'); half of them took effect. */
  readonly unknownRate?: number;
  /** Fraction of operations that definitely did not happen ('fail'). */
  readonly failRate?: number;
}

const gapMs = 10;
const maxSyntheticOps = 10_000_000;

interface Draft {
  kind: 'read' | 'write' | 'cas';
  client: number;
  key: string;
  atMs: number;
  invokeMs: number;
  completeMs: number;
  status: OpStatus;
  input: Value;
  expected: Value;
  /** What an 'ok' read returned. */
  readOutput: Value;
  /** Whether an 'ok' cas swapped. */
  swapped: boolean;
}

function fate(rng: Xoshiro128, o: SyntheticOptions): { status: OpStatus; applied: boolean } {
  const r = rng.float();
  const failRate = o.failRate ?? 0;
  if (r < failRate) return { status: 'fail', applied: false };
  if (r < failRate + (o.unknownRate ?? 0)) return { status: 'unknown', applied: rng.int(2) === 0 };
  return { status: 'ok', applied: true };
}

/** Draws one operation at instant j and, if it took effect, applies it to `values`. */
function draft(rng: Xoshiro128, o: SyntheticOptions, j: number, values: Map<string, Value>): Draft {
  const key = `k${rng.int(o.keys)}`;
  const current = values.get(key) ?? null;
  const roll = rng.int(10);
  const kind = roll < 5 ? 'read' : roll < 8 ? 'write' : 'cas';
  const { status, applied } = fate(rng, o);
  // Expected values: usually the current one, else an older one that may or may not match.
  const expected = rng.int(2) === 0 ? current : j > 0 ? `v${rng.int(j)}` : null;
  const spread = o.spreadMs ?? 50;
  const atMs = j * gapMs;
  const d: Draft = {
    kind,
    client: rng.int(o.clients),
    key,
    atMs,
    invokeMs: atMs - rng.int(spread + 1),
    completeMs: atMs + rng.int(spread + 1),
    status,
    input: `v${j}`,
    expected,
    readOutput: current,
    swapped: current === expected,
  };
  if (!applied) return d;
  if (kind === 'write' || (kind === 'cas' && d.swapped)) values.set(key, d.input);
  return d;
}

/** Keeps each client sequential: an operation ends before the client's next one begins. */
function serialiseClients(drafts: Draft[]): void {
  const last = new Map<number, Draft>();
  for (const d of drafts) {
    const prev = last.get(d.client);
    if (prev) {
      prev.completeMs = Math.min(prev.completeMs, d.atMs);
      d.invokeMs = Math.max(d.invokeMs, prev.completeMs);
    }
    last.set(d.client, d);
  }
}

function toOperation(d: Draft): Operation {
  const base = {
    client: d.client,
    key: d.key,
    invokeMs: d.invokeMs,
    completeMs: d.completeMs,
    status: d.status,
  };
  if (d.kind === 'write') return { ...base, kind: 'write', input: d.input };
  if (d.kind === 'read') {
    return d.status === 'ok'
      ? { ...base, kind: 'read', output: d.readOutput }
      : { ...base, kind: 'read' };
  }
  const input = { expected: d.expected, new: d.input };
  return d.status === 'ok'
    ? { ...base, kind: 'cas', input, output: d.swapped }
    : { ...base, kind: 'cas', input };
}

/** A linearizable register history of `ops` operations, reproducible from `seed`. */
export function syntheticRegisterHistory(options: SyntheticOptions): Operation[] {
  const { ops, keys, clients } = options;
  for (const [name, value] of Object.entries({ ops, keys, clients })) {
    const max = name === 'ops' ? maxSyntheticOps : 1_000_000;
    if (!Number.isSafeInteger(value) || value < (name === 'ops' ? 0 : 1) || value > max) {
      throw new CheckError(
        'INVALID_OPTIONS',
        `${name} must be an integer up to ${max}, saw ${shown(value)}`,
      );
    }
  }
  const rng = new Xoshiro128(options.seed);
  const values = new Map<string, Value>();
  const drafts: Draft[] = [];
  for (let j = 0; j < ops; j++) drafts.push(draft(rng, options, j, values));
  serialiseClients(drafts);
  return drafts.map(toOperation);
}
