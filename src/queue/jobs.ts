// The machine's records: a job, a queue with its indexes, a repeatable job. Mutable, owned by
// the machine (src/queue/machine.ts); readers get copies (`viewOf`).
//
// Memory per waiting job is what a queue of millions costs, so a job is one flat object of
// fields (its options inlined, not an options object each) with its payload, one entry in its
// queue's id map and order array, and one slot in a heap. bench/queue/machine.ts measures it.

import { latin1Bytes, latin1String } from '../host/latin1.js';
import { IndexedHeap } from './heap.js';
import { nextCronMs, type CronPattern } from './cron.js';
import {
  zeroTotals,
  type Backoff,
  type JobState,
  type JobView,
  type QueueTotals,
  type RateLimit,
  type Retention,
} from './types.js';

export const defaultJobOptions = {
  priority: 0,
  maxAttempts: 3,
  backoff: { kind: 'exponential', delayMs: 1_000, maxDelayMs: 60_000 } as Backoff,
  leaseMs: 30_000,
} as const;

export const defaultRetention: Retention = { count: 1_000, ageMs: 0 };

/**
 * Releases of one job that count no attempt, unless its queue says otherwise: past them a
 * release is a failed attempt, so a job that every worker gives back (a handler that never
 * ends within a shutdown's grace) ends dead rather than circulating for ever. BullMQ's
 * analogue, maxStalledCount, defaults to 1; releases are a worker's orderly shutdown, which a
 * rolling restart repeats, so a few more are allowed.
 */
export const defaultMaxReleases = 3;

/** Finished jobs: what retention removes. */
export type FinishedState = 'completed' | 'dead' | 'cancelled';

export function isFinished(s: JobState): s is FinishedState {
  return s === 'completed' || s === 'dead' || s === 'cancelled';
}

export class Job {
  /** Position in the heap that holds it (waiting, timers or leases), -1 in none. */
  heapPos = -1;
  /** Runs started (claims). */
  attempts = 0;
  /** When a delayed or failed job becomes waiting. */
  runAtMs: number;
  /** What only a job that has run needs: absent (null) for one that never has. */
  private run: JobRun | null = null;
  /** Set when deleted or removed by retention; the record then belongs to no index. */
  removed = false;

  constructor(
    readonly queue: QueueState,
    readonly id: string,
    /** Unique and increasing across the machine: FIFO order and every heap's tie-break. */
    readonly seq: number,
    readonly name: string,
    payload: Uint8Array,
    readonly priority: number,
    readonly maxAttempts: number,
    readonly backoff: Backoff,
    readonly leaseMs: number,
    readonly addedAtMs: number,
    readonly repeatId: string | null,
    public state: JobState,
  ) {
    this.runAtMs = addedAtMs;
    this.packedPayload = latin1String(payload);
  }

  /** The payload, one byte per UTF-16 code unit (src/host/latin1.ts). */
  private readonly packedPayload: string;

  /** A fresh copy of the payload. */
  get payload(): Uint8Array {
    return latin1Bytes(this.packedPayload);
  }

  /** The payload's length in bytes, without a copy. */
  get payloadBytes(): number {
    return this.packedPayload.length;
  }

  /** Sets a run field; a default value on a job that never ran allocates nothing. */
  private setRun<K extends keyof JobRun>(k: K, v: JobRun[K]): void {
    if (this.run === null && v === emptyRun[k]) return;
    (this.run ??= new JobRun())[k] = v;
  }

  /** The live (active) or last claim's command index; the fencing token (0: never claimed). */
  get token(): number {
    return this.run?.token ?? 0;
  }
  set token(v: number) {
    this.setRun('token', v);
  }
  get leaseExpiresMs(): number {
    return this.run?.leaseExpiresMs ?? 0;
  }
  set leaseExpiresMs(v: number) {
    this.setRun('leaseExpiresMs', v);
  }
  get worker(): string | null {
    return this.run?.worker ?? null;
  }
  set worker(v: string | null) {
    this.setRun('worker', v);
  }
  get progress(): number {
    return this.run?.progress ?? 0;
  }
  set progress(v: number) {
    this.setRun('progress', v);
  }
  /** Orders finished jobs for retention: the machine's finish counter when it finished. */
  get finishedStamp(): number {
    return this.run?.finishedStamp ?? 0;
  }
  set finishedStamp(v: number) {
    this.setRun('finishedStamp', v);
  }
  get finishedAtMs(): number {
    return this.run?.finishedAtMs ?? 0;
  }
  set finishedAtMs(v: number) {
    this.setRun('finishedAtMs', v);
  }
  get result(): Uint8Array | null {
    return this.run?.result ?? null;
  }
  set result(v: Uint8Array | null) {
    this.setRun('result', v);
  }
  get error(): string | null {
    return this.run?.error ?? null;
  }
  set error(v: string | null) {
    this.setRun('error', v);
  }
  /** Counted releases since the job was added or last retried. */
  get releases(): number {
    return this.run?.releases ?? 0;
  }
  set releases(v: number) {
    this.setRun('releases', v);
  }
}

/**
 * A job's fields that only matter once it has been claimed or finished, apart so that a
 * waiting job (most of a long queue) does not carry eight empty fields: 64 bytes each.
 */
class JobRun {
  /** The live (active) or last claim's command index; the fencing token. */
  token = 0;
  leaseExpiresMs = 0;
  worker: string | null = null;
  progress = 0;
  finishedStamp = 0;
  finishedAtMs = 0;
  result: Uint8Array | null = null;
  error: string | null = null;
  releases = 0;
}

const emptyRun: Readonly<JobRun> = new JobRun();

/** A new job with its options (defaults filled in by the caller). */
export function newJob(
  q: QueueState,
  id: string,
  seq: number,
  o: {
    readonly name: string;
    readonly payload: Uint8Array;
    readonly priority: number;
    readonly maxAttempts: number;
    readonly backoff: Backoff;
    readonly leaseMs: number;
  },
  addedAtMs: number,
  state: JobState,
  repeatId: string | null,
): Job {
  const { name, payload, priority, maxAttempts, backoff, leaseMs } = o;
  return new Job(
    q,
    id,
    seq,
    name,
    payload,
    priority,
    maxAttempts,
    backoff,
    leaseMs,
    addedAtMs,
    repeatId,
    state,
  );
}

// The heaps' keys, each (primary, seq): seq is unique, so every order is total.

/** Waiting jobs come out by priority, then in the order they were added. */
export const byPriority = (j: Job): number => j.priority;
/** Delayed and failed jobs, by when they are due. */
export const byRunAt = (j: Job): number => j.runAtMs;
/** Active jobs, by when their lease ends. */
export const byLeaseEnd = (j: Job): number => j.leaseExpiresMs;
export const bySeq = (j: { readonly seq: number }): number => j.seq;

/** When a finished job ages out: its queue's ageMs for its kind after it finished. */
export function expiryOf(j: Job): number {
  const r = j.state === 'completed' ? j.queue.keepCompleted : j.queue.keepDead;
  return j.finishedAtMs + r.ageMs;
}

export class QueueState {
  /** Every job of the queue by id. */
  readonly jobs = new Map<string, Job>();
  /**
   * The queue's jobs in the order they were added (by seq), for listing: removed jobs stay
   * until compaction, which runs once they are half of it (amortised O(1) per removal).
   */
  order: Job[] = [];
  removedInOrder = 0;
  readonly waiting = new IndexedHeap<Job>(byPriority, bySeq);
  /** Finished jobs by id in the order they finished: retention by count drops from the front. */
  readonly completed = new Map<string, Job>();
  readonly dead = new Map<string, Job>();
  readonly cancelled = new Map<string, Job>();
  readonly counts: Record<JobState, number> = {
    waiting: 0,
    delayed: 0,
    active: 0,
    completed: 0,
    failed: 0,
    dead: 0,
    cancelled: 0,
  };
  paused = false;
  rateLimit: RateLimit | null = null;
  /** The rate limit's current window (its start divided by intervalMs) and claims in it. */
  rateWindow = 0;
  rateCount = 0;
  concurrency: number | null = null;
  keepCompleted: Retention = defaultRetention;
  keepDead: Retention = defaultRetention;
  maxReleases = defaultMaxReleases;
  totals: { -readonly [K in keyof QueueTotals]: number } = { ...zeroTotals };

  constructor(readonly name: string) {}

  finishedMap(s: FinishedState): Map<string, Job> {
    return s === 'completed' ? this.completed : s === 'dead' ? this.dead : this.cancelled;
  }

  /** Drops removed jobs from `order` once they are half of it. */
  maybeCompact(): void {
    if (this.removedInOrder * 2 < this.order.length || this.removedInOrder < 64) return;
    this.order = this.order.filter((j) => !j.removed);
    this.removedInOrder = 0;
  }
}

export class Repeatable {
  /** Position in the machine's repeatables heap. */
  heapPos = -1;
  constructor(
    readonly queue: string,
    readonly repeatId: string,
    /** Unique across the machine: the heap's tie-break. */
    readonly seq: number,
    readonly everyMs: number | null,
    readonly cron: CronPattern | null,
    readonly name: string,
    readonly payload: Uint8Array,
    readonly priority: number,
    readonly maxAttempts: number,
    readonly backoff: Backoff,
    readonly leaseMs: number,
    /** The next run's time. */
    public nextMs: number,
  ) {}
}

export const byNextRun = (r: Repeatable): number => r.nextMs;

export function viewOf(j: Job): JobView {
  return {
    queue: j.queue.name,
    id: j.id,
    name: j.name,
    payload: j.payload,
    state: j.state,
    priority: j.priority,
    attempts: j.attempts,
    maxAttempts: j.maxAttempts,
    releases: j.releases,
    backoff: j.backoff,
    leaseMs: j.leaseMs,
    addedAtMs: j.addedAtMs,
    runAtMs: j.runAtMs,
    token: j.token,
    leaseExpiresMs: j.leaseExpiresMs,
    worker: j.worker,
    progress: j.progress,
    finishedAtMs: j.finishedAtMs,
    result: j.result === null ? null : j.result.slice(),
    error: j.error,
    repeatId: j.repeatId,
  };
}

/** How long the job waits after its `attempts`-th run failed. */
export function backoffMs(b: Backoff, attempts: number): number {
  if (b.kind === 'fixed') return b.delayMs;
  const exp = Math.min(Math.max(attempts - 1, 0), 52);
  return Math.min(b.maxDelayMs, b.delayMs * 2 ** exp);
}

/**
 * The first run strictly after `nowMs` of a schedule whose last due run was `fromMs`. An
 * interval keeps its grid (fromMs + k * everyMs); a cron pattern its own times. Runs between
 * `fromMs` and now were missed (no command came in between) and are skipped: the caller fired
 * the one at `fromMs`, so a gap fires at most one run, never a burst.
 */
export function nextRunMs(
  r: { readonly everyMs: number | null; readonly cron: CronPattern | null },
  fromMs: number,
  nowMs: number,
): number | null {
  if (r.everyMs !== null)
    return fromMs + r.everyMs * (Math.floor((nowMs - fromMs) / r.everyMs) + 1);
  return nextCronMs(r.cron as CronPattern, nowMs);
}
