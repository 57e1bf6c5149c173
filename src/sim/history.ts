// The clients' history, as the linearizability checker (src/check) reads histories from real
// clusters: every operation with its invocation and completion in virtual time. A write is
// invoked at its first attempt and completes when the client is told it succeeded; a write
// still unanswered when the run ends is unknown. A failed read is dropped by the checker.
// At the end of a seed the whole history is checked per key (Wing-Gong search with Lowe's
// memoisation), which also orders writes against each other in real time, beyond what the
// online checks see.

import { checkHistory, formatViolation, type Operation } from '../check/index.js';

/**
 * Search steps allowed per key. A seed's history is small: no seed of 0 to 1759, nor range
 * seed of 0 to 399, ran out (2026-12-06). One that does fails, as unchecked.
 */
const MAX_STEPS_PER_KEY = 2_000_000;

interface Record {
  readonly client: number;
  readonly key: string;
  readonly kind: 'read' | 'write';
  readonly invokeMs: number;
  /** The written value (writes) or the value read (reads, once ok; null when unset). */
  value: string | null;
  completeMs: number | null;
  status: 'ok' | 'fail' | 'unknown';
}

/** A handle on one recorded operation, for its completion. */
export type OpHandle = number;

export class ClientHistory {
  private readonly ops: Record[] = [];

  constructor(private readonly maxStepsPerKey = MAX_STEPS_PER_KEY) {}

  invokeWrite(client: number, key: string, value: string, nowMs: number): OpHandle {
    return this.push({ client, key, kind: 'write', invokeMs: nowMs, value, completeMs: null });
  }

  invokeRead(client: number, key: string, nowMs: number): OpHandle {
    return this.push({ client, key, kind: 'read', invokeMs: nowMs, value: null, completeMs: null });
  }

  /** The operation succeeded; `output` is the value a read returned. */
  ok(h: OpHandle, nowMs: number, output?: string | null): void {
    const op = this.at(h);
    op.status = 'ok';
    op.completeMs = nowMs;
    if (op.kind === 'read') op.value = output ?? null;
  }

  /** The operation surely did not take effect (only reads are ever given up on here). */
  fail(h: OpHandle, nowMs: number): void {
    const op = this.at(h);
    op.status = 'fail';
    op.completeMs = nowMs;
  }

  get size(): number {
    return this.ops.length;
  }

  /**
   * Null when the history is linearizable; otherwise the checker's account of the first key
   * that is not, or of the keys whose search ran out of steps: a history left unchecked fails
   * the seed rather than pass it unseen.
   */
  check(): string | null {
    // The step bound, not a wall-clock budget, limits the search: a seed's verdict must not
    // depend on how loaded the machine is.
    const result = checkHistory(this.operations(), {
      maxStepsPerKey: this.maxStepsPerKey,
      now: () => 0,
    });
    const v = result.violations[0];
    if (v !== undefined) return formatViolation(v);
    const unchecked = result.perKey.filter((k) => k.verdict === 'unknown');
    if (unchecked.length === 0) return null;
    const keys = unchecked
      .map((k) => `"${k.key}" (${k.opCount} operations, ${k.unknownReason ?? 'budget'})`)
      .join(', ');
    return `Unchecked: the search ran out of its ${this.maxStepsPerKey} steps or its memory on key ${keys}`;
  }

  operations(): Operation[] {
    return this.ops.map((r): Operation => {
      const base = {
        client: r.client,
        key: r.key,
        invokeMs: r.invokeMs,
        completeMs: r.completeMs,
        status: r.status,
      };
      return r.kind === 'write'
        ? { ...base, kind: 'write', input: r.value }
        : { ...base, kind: 'read', ...(r.status === 'ok' ? { output: r.value } : {}) };
    });
  }

  private push(r: Omit<Record, 'status'>): OpHandle {
    this.ops.push({ ...r, status: 'unknown' });
    return this.ops.length - 1;
  }

  private at(h: OpHandle): Record {
    const op = this.ops[h];
    if (op === undefined) throw new RangeError(`No recorded operation ${h}`);
    return op;
  }
}
