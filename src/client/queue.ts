// One job queue seen from the client: plain calls on the queue endpoints (docs/API.md, "Job
// queue"). Every write goes through the client's retry loop with its exactly-once session, so
// an add retried after a lost answer adds one job, and a claim retried takes the jobs of the
// first attempt. The worker loop (claim, heartbeat while running, complete or fail) is
// worker.ts.

import { FlotillaError, type ErrorCode } from '../base/errors.js';

/** How the queue reaches the cluster: the FlotillaClient's retrying calls. */
export interface QueueTransport {
  write<T>(
    path: string,
    body: Record<string, unknown>,
    signal: AbortSignal | undefined,
    extraMs: number,
  ): Promise<T>;
  read<T>(path: string, body: Record<string, unknown>, signal: AbortSignal | undefined): Promise<T>;
}

export type JobState =
  'waiting' | 'delayed' | 'active' | 'completed' | 'failed' | 'dead' | 'cancelled';

export interface QueueHeader {
  readonly memberId: number;
  readonly raftTerm: number;
}

export interface Job<D = unknown, R = unknown> {
  readonly queue: string;
  readonly id: string;
  readonly name: string;
  readonly data: D;
  readonly state: JobState;
  readonly priority: number;
  readonly attempts: number;
  readonly maxAttempts: number;
  /** Times a worker gave the job back unrun (since it was added or last retried). */
  readonly releases: number;
  readonly backoff: { kind: 'fixed' | 'exponential'; delayMs: number; maxDelayMs: number };
  readonly leaseMs: number;
  readonly addedAtMs: number;
  readonly runAtMs: number;
  readonly token: number;
  readonly leaseExpiresMs: number;
  readonly worker: string | null;
  readonly progress: number;
  readonly finishedAtMs: number;
  readonly result: R | null;
  readonly error: string | null;
  readonly repeatId: string | null;
}

export interface AddOptions {
  /** Deduplicates: an add with an id seen within the dedup window returns the first job. */
  readonly id?: string;
  readonly delayMs?: number;
  readonly priority?: number;
  readonly maxAttempts?: number;
  readonly backoff?: { kind: 'fixed' | 'exponential'; delayMs: number; maxDelayMs?: number };
  readonly leaseMs?: number;
  readonly signal?: AbortSignal;
}

export interface AddResponse {
  readonly header: QueueHeader;
  readonly id: string;
  readonly duplicate: boolean;
  readonly state: JobState | null;
}

export interface AddBulkResponse {
  readonly header: QueueHeader;
  readonly jobs: readonly Omit<AddResponse, 'header'>[];
}

export interface ClaimOptions {
  /** Up to this many jobs (default 1). */
  readonly max?: number;
  readonly worker?: string;
  readonly leaseMs?: number;
  /** Wait up to this long (at most 30 s) for a job when none is due. */
  readonly waitMs?: number;
  readonly signal?: AbortSignal;
}

export interface ClaimedJob<D = unknown> {
  readonly job: Job<D>;
  /** The fencing token: pass it with every report about the job. */
  readonly token: number;
  readonly leaseExpiresMs: number;
}

export interface ClaimResponse<D = unknown> {
  readonly header: QueueHeader;
  readonly jobs: readonly ClaimedJob<D>[];
  /**
   * When nothing was claimed: why. `paused` (until the queue is resumed), `concurrency` (until
   * an active job ends) and `empty` have no time to retry at: claim again with `waitMs`, which
   * returns as soon as a job can be claimed.
   */
  readonly reason?: 'empty' | 'paused' | 'rate-limited' | 'concurrency';
  /** With `rate-limited` only: when the next rate window opens (ms since the epoch). */
  readonly retryAtMs?: number;
}

export interface ReportResponse<D = unknown> {
  readonly header: QueueHeader;
  readonly state?: JobState;
  /**
   * A release's answer (`release`): true when the job was given back, false when it was past
   * its queue's `maxReleases` and failed instead. Absent from a node of a release before the
   * field, and from the fail sent in a release's stead to a cluster that does not know
   * releases: read as given back.
   */
  readonly released?: boolean;
  readonly leaseExpiresMs?: number;
  /** For a complete or fail that asked for `next`: the jobs claimed with it. */
  readonly next?: Omit<ClaimResponse<D>, 'header'>;
}

export interface ReportOptions {
  /** Claims the queue's next jobs in the same write as the report (no wait). */
  readonly next?: { readonly max?: number; readonly worker?: string; readonly leaseMs?: number };
  readonly signal?: AbortSignal;
}

/** A page of the cluster's queues, in name order (FlotillaClient.queues). */
export interface QueuesResponse {
  readonly header: QueueHeader;
  readonly queues: readonly {
    readonly queue: string;
    readonly paused: boolean;
    readonly counts: Readonly<Record<JobState, number>>;
  }[];
  /** The name to pass as `after` for the next page; null when this page is the last. */
  readonly next: string | null;
}

export interface QueueStatsResponse {
  readonly header: QueueHeader;
  /** Null when the queue does not exist (nothing was ever added to it, paused or configured). */
  readonly stats: {
    readonly queue: string;
    readonly paused: boolean;
    readonly counts: Readonly<Record<JobState, number>>;
    /** Claims per window, or null for no limit. */
    readonly rateLimit: { readonly max: number; readonly intervalMs: number } | null;
    /** Jobs active at once, or null for no limit. */
    readonly concurrency: number | null;
    readonly keepCompleted: Retention;
    readonly keepDead: Retention;
    /** Releases of a job that count no attempt; past them a release is a failed attempt. */
    readonly maxReleases: number;
    /** What has happened to the queue's jobs since it was created. */
    readonly totals: {
      readonly added: number;
      readonly claimed: number;
      readonly completed: number;
      /** Failed runs, reported or by an expired lease. */
      readonly failed: number;
      readonly dead: number;
      readonly leaseExpired: number;
    };
  } | null;
}

/** How many finished jobs a queue keeps, and for how long (ageMs 0: no age limit). */
export interface Retention {
  readonly count: number;
  readonly ageMs: number;
}

/** A queue's settings to change: a field left out keeps its value, null lifts a limit. */
export interface QueueSettings {
  readonly rateLimit?: { readonly max: number; readonly intervalMs: number } | null;
  readonly concurrency?: number | null;
  /** Completed jobs kept (the oldest go first); ageMs defaults to 0, no age limit. */
  readonly keepCompleted?: { readonly count: number; readonly ageMs?: number };
  /** Dead and cancelled jobs kept. */
  readonly keepDead?: { readonly count: number; readonly ageMs?: number };
  /**
   * Releases of one job (a worker giving it back unrun) that count no attempt, default 3; past
   * them a release is a failed attempt (backoff, or dead when none is left). 0: every one is.
   */
  readonly maxReleases?: number;
}

/** A repeatable job's schedule (exactly one of everyMs and cron) and the job it adds. */
export interface RepeatOptions {
  /** Every this many milliseconds. */
  readonly everyMs?: number;
  /** A 5-field cron pattern, in UTC. */
  readonly cron?: string;
  /** The name of each job it adds (default "job"). */
  readonly name?: string;
  readonly priority?: number;
  readonly maxAttempts?: number;
  readonly backoff?: { kind: 'fixed' | 'exponential'; delayMs: number; maxDelayMs?: number };
  readonly leaseMs?: number;
  readonly signal?: AbortSignal;
}

export interface Repeatable<D = unknown> {
  readonly queue: string;
  readonly repeatId: string;
  readonly everyMs: number | null;
  readonly cron: string | null;
  readonly name: string;
  readonly data: D;
  readonly priority: number;
  readonly maxAttempts: number;
  readonly backoff: { kind: 'fixed' | 'exponential'; delayMs: number; maxDelayMs: number };
  readonly leaseMs: number;
  /** When it adds its next job; the job's id is `${repeatId}@${nextRunMs}`. */
  readonly nextRunMs: number;
}

type Signal = { readonly signal?: AbortSignal };

export class QueueClient {
  constructor(
    readonly name: string,
    private readonly t: QueueTransport,
    /** Gathers this queue's adds and reports of one turn into one write each; null: never. */
    private readonly gather: QueueGatherers | null = null,
  ) {}

  /**
   * Adds a job named `jobName` with `data` (any JSON value). Adds to one queue made in the same
   * turn of the event loop without a `signal` travel together as one add-bulk write, each still
   * answered as its own (AddGatherer); the client option `gather: false` sends each alone.
   */
  async add(jobName: string, data: unknown = null, o: AddOptions = {}): Promise<AddResponse> {
    const { signal, ...opts } = o;
    // Refused here, as the node would: gathered, it threw a TypeError measuring the name.
    if (typeof jobName !== 'string')
      throw new FlotillaError(
        'BAD_REQUEST',
        `"name" must be a string, got ${jobName === undefined ? 'nothing' : typeof jobName}`,
      );
    const json = jsonOf(data, 'data');
    const job = { name: jobName, data: json.value, ...opts };
    // A JSON character is at most 3 bytes of UTF-8 (an escaped one is 6 characters).
    if (this.gather !== null && signal === undefined)
      return this.gather.adds.submit(job, 3 * (json.chars + jobName.length) + 64);
    return this.t.write('/v1/queue/add', { queue: this.name, ...job }, signal, 0);
  }

  /**
   * Adds up to 1,000 jobs in one write, all or none: a job that would be refused (an id still
   * held past its dedup window, the queue group full) refuses the batch and adds nothing. The
   * answer's `jobs` are the jobs' add answers in the same order.
   */
  async addBulk(
    jobs: readonly ({ name: string; data?: unknown } & Omit<AddOptions, 'signal'>)[],
    o: Signal = {},
  ): Promise<AddBulkResponse> {
    // Not an array: sent as it is, for the node to refuse as it refuses any malformed batch.
    const list: unknown = jobs;
    const sent = Array.isArray(list) ? list.map((j: unknown, i) => withJsonData(j, i)) : list;
    return this.t.write('/v1/queue/add-bulk', { queue: this.name, jobs: sent }, o.signal, 0);
  }

  /** Claims up to `o.max` due jobs, waiting up to `o.waitMs` for one. */
  claim<D = unknown>(o: ClaimOptions = {}): Promise<ClaimResponse<D>> {
    const { signal, ...opts } = o;
    return this.t.write('/v1/queue/claim', { queue: this.name, ...opts }, signal, opts.waitMs ?? 0);
  }

  /** Extends the lease of a job this worker holds (`STALE_TOKEN` once it lost it). */
  heartbeat(
    id: string,
    token: number,
    o: { leaseMs?: number } & Signal = {},
  ): Promise<ReportResponse> {
    const { signal, ...opts } = o;
    return this.t.write('/v1/queue/heartbeat', { queue: this.name, id, token, ...opts }, signal, 0);
  }

  /**
   * Records a job's success, with an optional `result` (any JSON value). With `next`, claims
   * the queue's next jobs in the same write (no wait): the answer's `next` holds them.
   */
  async complete<D = unknown>(
    id: string,
    token: number,
    result?: unknown,
    o: ReportOptions = {},
  ): Promise<ReportResponse<D>> {
    const { signal, ...opts } = o;
    const json = result === undefined ? null : jsonOf(result, 'result');
    const stored = json === null ? {} : { result: json.value };
    if (this.gather !== null && signal === undefined)
      return this.gather.reports.submit(
        { op: 'complete', id, token, ...stored, ...opts },
        3 * (id.length + (json?.chars ?? 0)) + 96,
      ) as Promise<ReportResponse<D>>;
    return this.t.write(
      '/v1/queue/complete',
      { queue: this.name, id, token, ...stored, ...opts },
      signal,
      0,
    );
  }

  /** Records a failed run: retried after its backoff, or dead when `final` or out of attempts. */
  fail<D = unknown>(
    id: string,
    token: number,
    error: string,
    o: { final?: boolean } & ReportOptions = {},
  ): Promise<ReportResponse<D>> {
    const { signal, ...opts } = o;
    if (this.gather !== null && signal === undefined)
      return this.gather.reports.submit(
        { op: 'fail', id, token, error, ...opts },
        3 * (id.length + error.length) + 96,
      ) as Promise<ReportResponse<D>>;
    return this.t.write(
      '/v1/queue/fail',
      { queue: this.name, id, token, error, ...opts },
      signal,
      0,
    );
  }

  /**
   * Gives a claimed job back (a worker that is stopping): it waits again at once, and the
   * attempt its claim counted is not counted, nor is a backoff waited out; the release is
   * counted on the job, and one past its queue's `maxReleases` is a failed attempt instead
   * (the answer's `released` says which: false for a failed attempt). A cluster that does
   * not know releases yet (a member of an older release, during an upgrade) gets a fail with
   * the same reason instead, which counts the attempt as before.
   */
  async release<D = unknown>(
    id: string,
    token: number,
    reason: string,
    o: Signal = {},
  ): Promise<ReportResponse<D>> {
    try {
      return await this.t.write(
        '/v1/queue/fail',
        { queue: this.name, id, token, error: reason, release: true },
        o.signal,
        0,
      );
    } catch (err) {
      // Only a definite refusal: a release that may have applied (an attempt lost on its way)
      // is not followed by a fail, which would then be refused STALE_TOKEN.
      const code = err instanceof FlotillaError && !err.indefinite ? err.code : null;
      if (code !== 'FEATURE_NOT_ENABLED' && code !== 'UNKNOWN_FIELD') throw err;
      return this.fail<D>(id, token, reason, o.signal === undefined ? {} : { signal: o.signal });
    }
  }

  /** Reports a running job's progress, 0-100. */
  progress(id: string, token: number, progress: number, o: Signal = {}): Promise<ReportResponse> {
    return this.t.write(
      '/v1/queue/progress',
      { queue: this.name, id, token, progress },
      o.signal,
      0,
    );
  }

  /** Puts a dead or cancelled job back to waiting. */
  retry(id: string, o: Signal = {}): Promise<ReportResponse> {
    return this.t.write('/v1/queue/retry', { queue: this.name, id }, o.signal, 0);
  }

  /** Cancels a waiting, delayed or failed job. */
  cancel(id: string, o: Signal = {}): Promise<ReportResponse> {
    return this.t.write('/v1/queue/cancel', { queue: this.name, id }, o.signal, 0);
  }

  /** Stops claims from this queue until `resume` (jobs keep being added). */
  pause(o: Signal = {}): Promise<ReportResponse> {
    return this.t.write('/v1/queue/pause', { queue: this.name }, o.signal, 0);
  }

  resume(o: Signal = {}): Promise<ReportResponse> {
    return this.t.write('/v1/queue/resume', { queue: this.name }, o.signal, 0);
  }

  /** One page of the jobs in `state`, after the cursor `after` (from the previous page). */
  list<D = unknown>(
    state: JobState,
    o: { after?: number; limit?: number } & Signal = {},
  ): Promise<{ header: QueueHeader; jobs: readonly Job<D>[]; next?: number }> {
    const { signal, ...opts } = o;
    return this.t.read('/v1/queue/list', { queue: this.name, state, ...opts }, signal);
  }

  /** Changes the queue's settings (rate limit, concurrency limit, retention of finished jobs). */
  configure(settings: QueueSettings, o: Signal = {}): Promise<{ header: QueueHeader }> {
    return this.t.write('/v1/queue/configure', { queue: this.name, ...settings }, o.signal, 0);
  }

  /** Creates the repeatable job `repeatId`, or replaces the one with that id. */
  async repeat(
    repeatId: string,
    data: unknown,
    o: RepeatOptions,
  ): Promise<{ header: QueueHeader; nextRunMs: number }> {
    const { signal, name, ...opts } = o;
    return this.t.write(
      '/v1/queue/repeat/upsert',
      { queue: this.name, repeatId, name: name ?? 'job', data: asJson(data, 'data'), ...opts },
      signal,
      0,
    );
  }

  /** Removes a repeatable job (`REPEATABLE_NOT_FOUND` when there is none); its jobs stay. */
  unrepeat(repeatId: string, o: Signal = {}): Promise<{ header: QueueHeader }> {
    return this.t.write('/v1/queue/repeat/remove', { queue: this.name, repeatId }, o.signal, 0);
  }

  /** One page of the queue's repeatable jobs by id, after the id `after`. */
  repeatables<D = unknown>(
    o: { after?: string; limit?: number } & Signal = {},
  ): Promise<{ header: QueueHeader; repeatables: readonly Repeatable<D>[]; next: string | null }> {
    const { signal, ...opts } = o;
    return this.t.read('/v1/queue/repeat/list', { queue: this.name, ...opts }, signal);
  }

  /** Counts per state, whether the queue is paused, and its settings (linearizable). */
  stats(o: Signal = {}): Promise<QueueStatsResponse> {
    return this.t.read('/v1/queue/stats', { queue: this.name }, o.signal);
  }

  /** One job by id (linearizable); `JOB_NOT_FOUND` when there is none. */
  get<D = unknown, R = unknown>(
    id: string,
    o: Signal = {},
  ): Promise<{ header: QueueHeader; job: Job<D, R> }> {
    return this.t.read('/v1/queue/get', { queue: this.name, id }, o.signal);
  }
}

/**
 * A job's data or result as the queue stores it: what JSON.stringify makes of it (a Date its
 * ISO text, a Uint8Array an object of its bytes, a function or undefined null), whichever
 * protocol carries it. The binary protocol's msgpack has bytes, dates and big integers that JSON
 * lacks: the node refused those by closing the connection, failing every request on it, while
 * over HTTP the same value was stored as JSON.stringify made it. A value JSON.stringify cannot
 * make (a BigInt, a cycle) is refused here, BAD_REQUEST, before anything is sent.
 */
function asJson(v: unknown, field: string): unknown {
  return jsonOf(v, field).value;
}

/** asJson's value, and the length of its JSON text (a string's own length: a bound, not exact). */
function jsonOf(v: unknown, field: string): { value: unknown; chars: number } {
  if (v === null || typeof v === 'boolean') return { value: v, chars: 5 };
  if (typeof v === 'string') return { value: v, chars: v.length + 2 };
  if (typeof v === 'number') return { value: Number.isFinite(v) ? v : null, chars: 24 };
  let text: string | undefined;
  try {
    text = JSON.stringify(v);
  } catch (err) {
    throw new FlotillaError(
      'BAD_REQUEST',
      `"${field}" is not a JSON value: ${(err as Error).message}; nothing was sent`,
      false,
    );
  }
  return text === undefined
    ? { value: null, chars: 4 }
    : { value: JSON.parse(text) as unknown, chars: text.length };
}

/** A bulk add's job `i` with its data as asJson makes it (anything else the node checks). */
function withJsonData(j: unknown, i: number): unknown {
  if (j === null || typeof j !== 'object') return j;
  const data = (j as { data?: unknown }).data;
  return data === undefined ? j : { ...j, data: asJson(data, `jobs[${i}].data`) };
}

/** At most this many adds or reports travel in one gathered write (a node takes up to 1,000). */
export const maxGathered = 100;
/** A gathered write is closed once its items reach about this many bytes (maxBodyBytes: 2 MiB). */
export const maxGatheredBytes = 256 * 1024;
/**
 * After a node refused a gathered write as a request it does not know (a release before it, or
 * a cluster not yet upgraded to it), this many batches go one by one before the next try.
 */
export const gatherRetryBatches = 1_000;

interface Pending<I, A> {
  readonly item: I;
  readonly bytes: number;
  readonly resolve: (r: A) => void;
  readonly reject: (err: unknown) => void;
}

/**
 * Calls of one kind on one queue made in the same turn of the event loop, sent as one bulk
 * write: one request and one log entry for all of them rather than one each, which is most of
 * what such a call costs the cluster when many callers make them at once (docs/BENCHMARKS.md,
 * "Adds and reports gathered"). A lone call goes as it would have, one turn later. Each caller
 * still gets its own answer, or its own refusal. When the node refuses the bulk write as a
 * whole (definitely: nothing of it was applied), each call is sent again alone, to be answered
 * as it would have been. An error that leaves the write's fate unknown (indefinite: the
 * connection lost, the deadline passed) is every one of its calls' error, as it would have been
 * each call's: the write carried one session sequence number, so a retry by the client applied
 * it at most once, and sending its calls again could apply them twice.
 */
abstract class Gatherer<I, A> {
  private pending: Pending<I, A>[] = [];
  private skipBulk = 0;

  /** One call, sent alone. */
  protected abstract single(item: I): Promise<A>;
  /** Calls sent as one write: each one's answer or refusal, in order. */
  protected abstract bulk(items: readonly I[]): Promise<readonly (A | FlotillaError)[]>;

  /** `bytes`: about what the item takes in the request, to bound a batch's size. */
  submit(item: I, bytes: number): Promise<A> {
    return new Promise<A>((resolve, reject) => {
      this.pending.push({ item, bytes, resolve, reject });
      if (this.pending.length === 1) setImmediate(() => this.flush());
    });
  }

  private flush(): void {
    const all = this.pending;
    this.pending = [];
    let from = 0;
    let bytes = 0;
    for (let i = 0; i < all.length; i++) {
      const p = all[i] as Pending<I, A>;
      if (i > from && (i - from === maxGathered || bytes + p.bytes > maxGatheredBytes)) {
        this.send(all.slice(from, i));
        from = i;
        bytes = 0;
      }
      bytes += p.bytes;
    }
    this.send(all.slice(from));
  }

  private send(batch: readonly Pending<I, A>[]): void {
    if (this.skipBulk > 0) this.skipBulk--;
    if (batch.length === 1 || this.skipBulk > 0) {
      for (const p of batch) this.alone(p);
      return;
    }
    this.bulk(batch.map((p) => p.item)).then(
      (answers) => {
        if (answers.length !== batch.length) {
          const err = new FlotillaError(
            'INTERNAL',
            `A bulk write of ${batch.length} was answered for ${answers.length}`,
            true,
          );
          for (const p of batch) p.reject(err);
          return;
        }
        batch.forEach((p, i) => {
          const a = answers[i] as A | FlotillaError;
          if (a instanceof FlotillaError) p.reject(a);
          else p.resolve(a);
        });
      },
      (err: unknown) => {
        if (!(err instanceof FlotillaError) || err.indefinite) {
          for (const p of batch) p.reject(err);
          return;
        }
        if (err.code === 'FEATURE_NOT_ENABLED' || err.code === 'NOT_FOUND')
          this.skipBulk = gatherRetryBatches;
        this.aloneInOrder(batch);
      },
    );
  }

  private alone(p: Pending<I, A>): void {
    this.single(p.item).then(p.resolve, p.reject);
  }

  /**
   * A refused batch's calls, each alone: at once, but a call whose `orderKey` an earlier one
   * in the batch shares waits for that one's answer, so the node sees them in the callers'
   * order (sent together, the second of two adds naming one id could reach the leader first,
   * and the deduplication then kept the second job, not the first).
   */
  private aloneInOrder(batch: readonly Pending<I, A>[]): void {
    const last = new Map<string, Promise<void>>();
    for (const p of batch) {
      const key = this.orderKey(p.item);
      if (key === null) {
        this.alone(p);
        continue;
      }
      const before = last.get(key) ?? Promise.resolve();
      last.set(
        key,
        before.then(() => this.single(p.item).then(p.resolve, p.reject)),
      );
    }
  }

  /** Calls of a batch with the same key are sent alone in order (null: no order needed). */
  protected orderKey(_item: I): string | null {
    return null;
  }
}

type AddItem = { readonly name: string; readonly data: unknown } & Record<string, unknown>;

/** A queue's adds of one turn as one add-bulk write (the node takes it whole or not at all). */
export class AddGatherer extends Gatherer<AddItem, AddResponse> {
  constructor(
    private readonly queue: string,
    private readonly t: QueueTransport,
  ) {
    super();
  }

  protected single(item: AddItem): Promise<AddResponse> {
    return this.t.write('/v1/queue/add', { queue: this.queue, ...item }, undefined, 0);
  }

  /** Adds naming one job id: the first made keeps it. */
  protected override orderKey(item: AddItem): string | null {
    return typeof item['id'] === 'string' ? item['id'] : null;
  }

  protected async bulk(items: readonly AddItem[]): Promise<readonly AddResponse[]> {
    const body = { queue: this.queue, jobs: items };
    const r = await this.t.write<AddBulkResponse>('/v1/queue/add-bulk', body, undefined, 0);
    return r.jobs.map((j) => ({ header: r.header, ...j }));
  }
}

/** A complete or a fail as a bulk report carries it. */
export type ReportItem = { readonly op: 'complete' | 'fail'; readonly id: string } & Record<
  string,
  unknown
>;

interface ReportBulkResponse {
  readonly header: QueueHeader;
  readonly results: readonly (
    | Omit<ReportResponse, 'header'>
    | { readonly error: { readonly code: ErrorCode; readonly message: string } }
  )[];
}

/**
 * A queue's completes and fails of one turn (a worker's slots that finished together) as one
 * report-bulk write: each applied as its own, with its own token check and its own `next`.
 */
export class ReportGatherer extends Gatherer<ReportItem, ReportResponse> {
  constructor(
    private readonly queue: string,
    private readonly t: QueueTransport,
  ) {
    super();
  }

  protected single({ op, ...fields }: ReportItem): Promise<ReportResponse> {
    return this.t.write(`/v1/queue/${op}`, { queue: this.queue, ...fields }, undefined, 0);
  }

  protected async bulk(
    items: readonly ReportItem[],
  ): Promise<readonly (ReportResponse | FlotillaError)[]> {
    const body = { queue: this.queue, reports: items };
    const r = await this.t.write<ReportBulkResponse>('/v1/queue/report-bulk', body, undefined, 0);
    return r.results.map((x) =>
      'error' in x
        ? new FlotillaError(x.error.code, x.error.message, false)
        : { header: r.header, ...x },
    );
  }
}

/** The gatherers of one queue's calls (ClientOptions.gatherAdds). */
export interface QueueGatherers {
  readonly adds: AddGatherer;
  readonly reports: ReportGatherer;
}
