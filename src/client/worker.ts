// A queue worker (BullMQ's Worker, on Raft): `concurrency` slots, each claiming one job at a
// time with a long poll, renewing its lease while the handler runs, and reporting the outcome
// with the claim's fencing token. A lease lost meanwhile (the worker was paused, partitioned)
// aborts the handler's signal and its report is refused by the cluster (STALE_TOKEN): another
// worker owns the job by then. Leader changes are the client's business (it retries and
// redirects). `close()` stops claiming and lets the running handlers finish within a grace
// period; past it their jobs are released (back to waiting for another worker, the attempt not
// counted; failed, as before, on a cluster with a member of an older release).

import { setMaxListeners } from 'node:events';
import { FlotillaError } from '../base/errors.js';
import { defaultQueueLimits } from '../base/limits.js';
import type { ClaimedJob, Job, QueueClient } from './queue.js';
import { sleep } from './util.js';

export interface WorkerContext {
  /** Aborted when the lease was lost or the worker is closing past its grace period. */
  readonly signal: AbortSignal;
  /**
   * Reports progress, a percentage from 0 to 100 (a fraction is rounded); best effort: a
   * failure to record it does not fail the run. Anything else throws BAD_REQUEST at once.
   */
  progress(percent: number): Promise<void>;
  /** The claim's fencing token: pass it to other systems the job writes to. */
  readonly token: number;
}

/** A handler's outcome; null when it was abandoned (lease lost, or closing past the grace). */
type Outcome<R> = { ok: true; result: R } | { ok: false; err: unknown } | null;

export type Handler<D, R> = (job: Job<D>, ctx: WorkerContext) => Promise<R>;

export interface WorkerOptions<D = unknown, R = unknown> {
  /** Jobs run at once (default 1). */
  readonly concurrency?: number;
  /** This worker's name in the jobs it claims (default: a random one). */
  readonly name?: string;
  /** Lease asked for each claim; default: the job's own. */
  readonly leaseMs?: number;
  /**
   * How often a running job's lease is renewed at most: a job is renewed every third of its
   * lease (the worker's `leaseMs`, else the job's own from its claim) when that is sooner, so a
   * heartbeatMs at or above a job's lease cannot lose the job. Default: a third of the lease.
   */
  readonly heartbeatMs?: number;
  /** How long a claim waits for a job (default 10 s, at most 30 s). */
  readonly waitMs?: number;
  /** Called with what went wrong outside a handler (a failed claim or report). */
  readonly onError?: (err: unknown) => void;
  /**
   * Called once the cluster has acknowledged a job's completion (BullMQ's `completed` event):
   * the moment the job is done for everyone else too, not merely when its handler returned.
   */
  readonly onCompleted?: (job: Job<D>, result: R) => void;
  /**
   * Called when a job turned out to be no longer this worker's: its lease ran out (another
   * worker may run it now) or it was deleted, found by a renewal (the handler's signal is then
   * aborted with `reason`) or by the report itself being refused (STALE_TOKEN, JOB_NOT_FOUND:
   * the handler's outcome is discarded). Each such job is counted in `counts.lost`.
   */
  readonly onLost?: (job: Job<D>, reason: Error) => void;
}

/** Every option, so that the compiler finds one missing here when WorkerOptions grows. */
const workerOptions: Record<keyof WorkerOptions, true> = {
  concurrency: true,
  name: true,
  leaseMs: true,
  heartbeatMs: true,
  waitMs: true,
  onError: true,
  onCompleted: true,
  onLost: true,
};
const workerOptionNames = new Set(Object.keys(workerOptions));

export class Worker<D = unknown, R = unknown> {
  private readonly stopping = new AbortController();
  private readonly slots: Promise<void>[] = [];
  private readonly running = new Set<Abort>();
  private readonly name: string;
  /**
   * Jobs completed and failed by this worker, reports refused because the lease was lost, and
   * jobs released to other workers because it closed before their handlers finished (a
   * release past the queue's maxReleases, which the queue counted as a failed attempt, is
   * counted failed).
   */
  readonly counts = { completed: 0, failed: 0, lost: 0, released: 0 };

  constructor(
    private readonly queue: QueueClient,
    private readonly handler: Handler<D, R>,
    private readonly o: WorkerOptions<D, R> = {},
  ) {
    // Not a function: every claimed job would end the process at its first run.
    if (typeof handler !== 'function')
      throw new FlotillaError(
        'BAD_REQUEST',
        `A worker's handler is a function (job, ctx) => Promise, got ${typeof handler}`,
      );
    // A misspelt option (`concurrencyy`) would be the default without a word.
    for (const k of Object.keys(o))
      if (!workerOptionNames.has(k))
        throw new FlotillaError(
          'BAD_REQUEST',
          `Unknown worker option "${k}" (known: ${[...workerOptionNames].join(', ')})`,
        );
    // Checked here like the numbers below: a name the cluster refuses fails every claim.
    if (
      o.name !== undefined &&
      (typeof o.name !== 'string' ||
        o.name.trim() === '' ||
        o.name.length > defaultQueueLimits.maxMessageChars)
    )
      throw new FlotillaError(
        'BAD_REQUEST',
        `name must be a string of 1 to ${defaultQueueLimits.maxMessageChars} characters, not ` +
          'only whitespace, got ' +
          (typeof o.name === 'string' ? JSON.stringify(o.name.slice(0, 40)) : typeof o.name),
      );
    this.name = o.name ?? `worker-${Math.random().toString(36).slice(2, 10)}`;
    const concurrency = o.concurrency ?? 1;
    if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 1024)
      throw new FlotillaError('BAD_REQUEST', `concurrency must be 1..1024, got ${concurrency}`);
    // Refused here rather than by every claim: a worker whose claims the cluster refuses would
    // run no job, saying so only to onError, every second.
    checkOption('waitMs', o.waitMs, 0, maxClaimWaitMs);
    checkOption('leaseMs', o.leaseMs, 1, defaultQueueLimits.maxDurationMs);
    checkOption('heartbeatMs', o.heartbeatMs, 1, Number.MAX_SAFE_INTEGER);
    // A heartbeat no sooner than the lease's end renews nothing: every job would be lost.
    if (o.heartbeatMs !== undefined && o.leaseMs !== undefined && o.heartbeatMs >= o.leaseMs)
      throw new FlotillaError(
        'BAD_REQUEST',
        `heartbeatMs (${o.heartbeatMs}) must be below leaseMs (${o.leaseMs}): a third of it is the default`,
      );
    // Every slot's claim listens on the one stopping signal: more than Node's default of ten
    // listeners is expected here, not a leak.
    setMaxListeners(concurrency + 10, this.stopping.signal);
    for (let i = 0; i < concurrency; i++) this.slots.push(this.slot());
  }

  /**
   * Stops claiming; waits up to `graceMs` (default 10 s) for running jobs to finish, then aborts
   * the rest and releases them (back to waiting, their attempts not counted: queue.release).
   */
  async close(o: { graceMs?: number } = {}): Promise<void> {
    this.stopping.abort();
    const all = Promise.all(this.slots);
    // The grace period's timer ends with the slots: left running, it kept a program that had
    // closed its worker alive for the rest of the period.
    const finished = new AbortController();
    const graceful = await Promise.race([
      all.then(() => true),
      sleep(o.graceMs ?? 10_000, finished.signal).then(() => false),
    ]);
    finished.abort();
    if (!graceful) {
      for (const a of this.running) a.abort(new Error('worker closing'));
      await all;
    }
  }

  /**
   * One slot: claim, run, report. A job's report also claims the slot's next job, in the same
   * write (`next`, as BullMQ's worker fetches its next job in its completion call): on a log
   * that syncs every batch a slot then spends one command and one round trip per job, not two.
   * Only when that report brings no job (the queue was empty, or the report failed) does the
   * slot wait for one with a long-poll claim. Jobs a report brought while the worker began
   * closing are run like any other (or released past the grace period), never dropped.
   */
  private async slot(): Promise<void> {
    let failures = 0;
    let next: readonly ClaimedJob<D>[] = [];
    for (;;) {
      let claimed = next;
      next = [];
      if (claimed.length === 0) {
        if (this.stopping.signal.aborted) return;
        try {
          const r = await this.queue.claim<D>({
            ...this.claimSpec(),
            waitMs: this.o.waitMs ?? 10_000,
            signal: this.stopping.signal,
          });
          claimed = r.jobs;
          failures = 0;
        } catch (err) {
          if (this.stopping.signal.aborted) return;
          this.o.onError?.(err);
          await sleep(Math.min(1_000, 50 * 2 ** failures++), this.stopping.signal);
          continue;
        }
      }
      for (const [i, c] of claimed.entries())
        next = [...next, ...(await this.run(c, i === claimed.length - 1))];
    }
  }

  private claimSpec(): { max: number; worker: string; leaseMs?: number } {
    return {
      max: 1,
      worker: this.name,
      ...(this.o.leaseMs === undefined ? {} : { leaseMs: this.o.leaseMs }),
    };
  }

  /**
   * Runs the handler and reports its outcome; with `askNext` (and the worker not closing) the
   * report claims the slot's next job. Resolves with the jobs it claimed.
   */
  private async run(c: ClaimedJob<D>, askNext: boolean): Promise<readonly ClaimedJob<D>[]> {
    const abort = new Abort();
    this.running.add(abort);
    const { id } = c.job;
    // The lease this worker asked for, else the job's own: what the claim granted and what each
    // renewal asks for again. Not the job's lease when the worker asked for a shorter one, nor
    // the time left by the local clock, which need not agree with the queue's.
    const leaseMs = this.o.leaseMs ?? c.job.leaseMs;
    const every = renewalEveryMs(this.o.heartbeatMs, leaseMs);
    const renewal = this.o.leaseMs === undefined ? {} : { leaseMs: this.o.leaseMs };
    // The lease is renewed until the report is in: a report retried past a lost answer must
    // still find the job ours.
    const beat = setInterval(() => {
      this.queue.heartbeat(id, c.token, renewal).catch((err: unknown) => {
        if (isLost(err))
          // The refusal's code kept (STALE_TOKEN, JOB_NOT_FOUND), as a refused report's is.
          abort.abort(
            new FlotillaError(
              err.code,
              err.code === 'JOB_NOT_FOUND'
                ? `job ${id} was deleted`
                : `lease on job ${id} lost: ${err.message}`,
            ),
          );
        else this.o.onError?.(err);
      });
    }, every);
    try {
      // Run inside a promise: a handler that throws before returning, or returns a value
      // rather than a promise, fails or completes its job like any other (it ended the process).
      const handled = new Promise<R>((resolve) =>
        resolve(
          this.handler(c.job, {
            get signal() {
              return abort.signal;
            },
            token: c.token,
            progress: (p) => {
              // A value no job can record is the caller's mistake, thrown at once, in the handler
              // (the run fails, the process does not: a rejection nobody awaited would end it);
              // a fraction is rounded, as 100 * i / n gives; a failure to record is forgiven.
              if (typeof p !== 'number' || !(p >= 0 && p <= 100))
                throw new FlotillaError(
                  'BAD_REQUEST',
                  `progress must be a percentage in [0, 100], got ${JSON.stringify(p) ?? String(p)}`,
                );
              return this.queue.progress(id, c.token, Math.round(p)).then(
                () => undefined,
                () => undefined,
              );
            },
          }),
        ),
      ).then(
        (result) => ({ ok: true as const, result }),
        (err: unknown) => ({ ok: false as const, err }),
      );
      // A handler that ignores its signal is not waited for once it is aborted: the job is
      // released (or already someone else's), whatever the handler does later.
      const outcome: Outcome<R> = await Promise.race([handled, abort.aborted]);
      return await this.settle(c, outcome, askNext && !this.stopping.signal.aborted, abort);
    } finally {
      clearInterval(beat);
      this.running.delete(abort);
    }
  }

  /**
   * Reports a job's outcome: completed, failed, or released when the worker is closing.
   * Resolves with the jobs the report claimed (`askNext`).
   */
  private async settle(
    c: ClaimedJob<D>,
    outcome: Outcome<R>,
    askNext: boolean,
    /** The run's abort: why an abandoned run (a null outcome) was abandoned. */
    abort: Abort,
  ): Promise<readonly ClaimedJob<D>[]> {
    const { id } = c.job;
    const o = askNext ? { next: this.claimSpec() } : {};
    if (outcome === null) {
      if (this.stopping.signal.aborted) {
        const r = await this.report(c.job, () =>
          this.queue.release(id, c.token, 'released: the worker closed'),
        );
        // Past the queue's maxReleases the release failed the attempt: counted as a failure,
        // as the job's totals count it. An answer without the field gave the job back.
        if (r?.released === false) this.counts.failed++;
        else if (r !== null) this.counts.released++;
      } else this.lose(c.job, abort.why());
      return [];
    }
    if (!outcome.ok) {
      const e = outcome.err;
      const r = await this.report(c.job, () =>
        this.queue.fail<D>(id, c.token, errorText(thrownText(e)), o),
      );
      if (r !== null) this.counts.failed++;
      return r?.next?.jobs ?? [];
    }
    const done = await this.report(c.job, async () => {
      try {
        const answer = await this.queue.complete<D>(id, c.token, outcome.result ?? undefined, o);
        return { completed: true, answer };
      } catch (err) {
        // Too large, or no JSON value (a BigInt, a cycle; the client refuses it unsent): the
        // queue cannot store this result, now or on a retry: the run fails with the reason,
        // rather than stay active until its lease expires and read as "lease expired".
        const unstorable =
          err instanceof FlotillaError &&
          (err.code === 'VALUE_TOO_LARGE' ||
            err.code === 'BAD_REQUEST' ||
            err.code === 'INVALID_UTF8');
        if (!unstorable) throw err;
        const why = errorText(`the result was not stored: ${err.message}`);
        return { completed: false, answer: await this.queue.fail<D>(id, c.token, why, o) };
      }
    });
    if (done === null) return [];
    if (done.completed) {
      this.counts.completed++;
      this.tell(() => this.o.onCompleted?.(c.job, outcome.result));
    } else this.counts.failed++;
    return done.answer.next?.jobs ?? [];
  }

  /** Sends a report; null when it failed or the lease had been lost (someone else owns the job). */
  private async report<T>(job: Job<D>, send: () => Promise<T>): Promise<T | null> {
    try {
      return await send();
    } catch (err) {
      if (isLost(err)) {
        this.lose(job, err);
        return null;
      }
      this.o.onError?.(err);
      return null;
    }
  }

  private lose(job: Job<D>, reason: Error): void {
    this.counts.lost++;
    this.tell(() => this.o.onLost?.(job, reason));
  }

  /** Calls a user's callback; one that throws is told to onError, not left to end the slot. */
  private tell(callback: () => void): void {
    try {
      callback();
    } catch (err) {
      this.o.onError?.(err);
    }
  }
}

/**
 * A running job's abort: `aborted` resolves (with null, the abandoned outcome) once `abort` is
 * called, and `signal` is an AbortSignal that is (or becomes) aborted then with the same
 * reason. The AbortController behind the signal is made only when a handler asks for it: most
 * never do, and making one per job was a tenth of a busy worker's CPU
 * (docs/BENCHMARKS.md, "The Worker's own cost per job").
 */
class Abort {
  readonly aborted: Promise<null>;
  private settle!: (v: null) => void;
  private controller: AbortController | undefined;
  private reason: unknown;
  private done = false;

  constructor() {
    this.aborted = new Promise<null>((resolve) => (this.settle = resolve));
  }

  get signal(): AbortSignal {
    if (this.controller === undefined) {
      this.controller = new AbortController();
      if (this.done) this.controller.abort(this.reason);
    }
    return this.controller.signal;
  }

  /** Why it was aborted, as an Error (a lost lease's reason is one). */
  why(): Error {
    return this.reason instanceof Error ? this.reason : new Error(String(this.reason));
  }

  abort(reason: unknown): void {
    if (this.done) return;
    this.done = true;
    this.reason = reason;
    this.controller?.abort(reason);
    this.settle(null);
  }
}

/** The longest error a failure may record (API.md, Job queue); a longer one is cut to it. */
const maxErrorChars = 1_024;

/**
 * What a handler threw, as text: an Error's message; anything else as JSON where it has one
 * (a thrown `{code: 42}` was recorded as "[object Object]"), else as a string.
 */
function thrownText(e: unknown): string {
  // The cluster refuses a failure whose message is empty or only whitespace (BAD_REQUEST): a
  // `throw new Error()` would otherwise leave its job active until the lease ran out.
  if (e instanceof Error)
    return e.message.trim() === '' ? `${e.name === '' ? 'Error' : e.name} (no message)` : e.message;
  if (typeof e === 'string') return e.trim() === '' ? 'thrown: an empty string' : e;
  try {
    const json = JSON.stringify(e);
    if (typeof json === 'string') return `thrown: ${json.slice(0, maxErrorChars)}`;
  } catch {
    // A cycle or a BigInt: said as a string below.
  }
  try {
    return `thrown: ${String(e)}`;
  } catch {
    // An object with no prototype has no toString.
    return `thrown: a value of type ${typeof e}`;
  }
}

/**
 * A handler's error as a failure records it: cut to fit, or the failure itself is refused. The
 * limit counts UTF-16 code units (an emoji is two), and the cluster refuses text holding half
 * of a surrogate pair (INVALID_UTF8): the cut never splits a pair, and a half the message
 * already held (the tail of a command's standard error, say) becomes U+FFFD.
 */
function errorText(message: string): string {
  const whole = wellFormed(message);
  if (whole.length <= maxErrorChars) return whole;
  const more = ` ... (${whole.length} characters)`;
  let end = maxErrorChars - more.length;
  if (isHighSurrogate(whole.charCodeAt(end - 1))) end--;
  return whole.slice(0, end) + more;
}

const loneSurrogate = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

function wellFormed(s: string): string {
  return s.replace(loneSurrogate, '\uFFFD');
}

function isHighSurrogate(unit: number): boolean {
  return unit >= 0xd800 && unit <= 0xdbff;
}

/**
 * How often a job whose lease is `leaseMs` is renewed: every third of the lease (at least every
 * 10 ms), or every `heartbeatMs` when that is sooner. Never the option alone: a job's lease is
 * known only from its claim, and one at or below heartbeatMs expired between two renewals, so
 * the job was run again elsewhere while this worker still ran it.
 */
export function renewalEveryMs(heartbeatMs: number | undefined, leaseMs: number): number {
  const third = Math.max(10, Math.floor(leaseMs / 3));
  return heartbeatMs === undefined ? third : Math.min(heartbeatMs, third);
}

/** The longest a claim may wait for a job: the cluster's limit (API.md, Job queue). */
const maxClaimWaitMs = 30_000;

function checkOption(name: string, v: number | undefined, min: number, max: number): void {
  if (v !== undefined && (!Number.isSafeInteger(v) || v < min || v > max))
    throw new FlotillaError(
      'BAD_REQUEST',
      `${name} must be an integer in [${min}, ${max}], got ${v}`,
    );
}

/**
 * The job is no longer this worker's: its lease was lost (STALE_TOKEN), or it was deleted while
 * it ran (JOB_NOT_FOUND; a job is only reported on after it was claimed, so it existed).
 */
function isLost(err: unknown): err is FlotillaError {
  return (
    err instanceof FlotillaError && (err.code === 'STALE_TOKEN' || err.code === 'JOB_NOT_FOUND')
  );
}
