// The job-queue workload of a chaos run (the others are in workload.ts and workload-watch.ts).
//
//   producers  each adds jobs to its own queue with ids it chooses, so an add retried after a
//              failure or an unknown outcome deduplicates; odd-numbered producers add them
//              three at a time in one bulk add; each stops below its queue's retention count,
//              so no finished job is trimmed before the final read;
//   workers    claim (long poll, round robin over the queues), run the job (most at once, some
//              for longer than their lease, heartbeating), and complete it; a job's data says
//              how many of its first runs fail on purpose, so backoff, retries and dead
//              letters (a job failing more often than its attempts allow) are exercised;
//              even-numbered workers claim their next job with each report (`next`), recorded
//              as a claim with the report's outcome, and run it before claiming again;
//   staller    a worker that now and then adds a job to its own queue, claims it with a short
//              lease and then stalls on purpose, without heartbeats, until its lease ends and
//              a second worker of its own (the successor) has claimed the job; a linearizable
//              read then shows the job active under the successor's token, and the staller
//              tries to complete it with its old token: the answer must be STALE_TOKEN. A
//              paused node is not this: the staller's process and connections are fine, only
//              its claim is stale. The other workers serve that queue only in the drain, so
//              the successor is the one that takes the job over.
//
// Every operation is recorded with its outcome for src/check/queue.ts. After the faults heal
// and the cluster settles, the workers drain the queues (bounded), and every job of every
// queue is read back, state by state, for the checker.

import {
  checkQueue,
  type QueueCheckReport,
  type QueueFinalJob,
  type QueueFinalState,
  type QueueOp,
  type QueueOpStatus,
} from '../../src/check/index.js';
import { FlotillaClient, FlotillaError } from '../../src/client/index.js';
import type { ClaimedJob, JobState, QueueClient } from '../../src/client/index.js';
import type { Rng } from '../../src/raft/index.js';
import type { Deadline } from './deadline.js';

export interface QueueWorkloadOptions {
  readonly producers: number;
  readonly workers: number;
  /** Adds (ids) per producer's queue at most: below the queue's keep counts (1,000). */
  readonly maxJobsPerQueue: number;
  /** Each job's lease: short, so a pause or partition outlasts it. */
  readonly leaseMs: number;
}

export const defaultQueueWorkload: QueueWorkloadOptions = {
  producers: 3,
  workers: 4,
  maxJobsPerQueue: 900,
  leaseMs: 1_500,
};

/** A job's data: runs that fail on purpose, and how long a run takes. */
interface JobData {
  readonly fails: number;
  readonly workMs: number;
}

const MAX_ATTEMPTS = 4;
const BACKOFF = { kind: 'exponential', delayMs: 100, maxDelayMs: 400 } as const;
/** The staller's claim lease: shorter than the others', so it is overtaken quickly. */
const STALL_LEASE_MS = 800;
const STALL_QUEUE = 'chaos-stall';
/** The leader ticks the queue's clock every second; leases may end that late, and later if a commit is slow. */
export const LEASE_SLACK_MS = 3_000;

function status(err: unknown): QueueOpStatus {
  return err instanceof FlotillaError && !err.indefinite ? 'fail' : 'unknown';
}

function codeOf(err: unknown): { code?: string } {
  return err instanceof FlotillaError ? { code: err.code } : {};
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class QueueWorkload {
  readonly ops: QueueOp[] = [];
  private request = 0;
  private readonly clients: FlotillaClient[] = [];

  constructor(
    private readonly endpoints: readonly string[],
    private readonly rng: Rng,
    private readonly o: QueueWorkloadOptions,
    private readonly now: () => number,
  ) {}

  /** The producers' queues, then the staller's. */
  get queues(): string[] {
    return [...Array.from({ length: this.o.producers }, (_, k) => `chaos-q${k}`), STALL_QUEUE];
  }

  /**
   * Producers, workers and the staller until `until` passes (it may move earlier while they
   * run); each finishes what it has started.
   */
  async runUntil(until: Deadline): Promise<void> {
    const going = (): boolean => !until.passed();
    const produced = this.queues.slice(0, this.o.producers);
    await Promise.all([
      ...produced.map((q, k) => this.producer(q, k, until)),
      ...Array.from({ length: this.o.workers }, (_, k) => this.worker(k, going, produced)),
      this.staller(until),
    ]);
  }

  /**
   * After the faults healed: the workers alone until nothing is waiting, delayed, failed or
   * active in any queue, or `forMs` passed. Returns what is still pending then.
   */
  async drain(endpoint: string, forMs: number): Promise<number> {
    const until = this.now() + forMs;
    let pending = Infinity;
    const going = (): boolean => pending > 0 && this.now() < until;
    const watcher = async (): Promise<void> => {
      const c = this.client([endpoint], 1);
      try {
        while (going()) {
          let n = 0;
          for (const q of this.queues) {
            const s = (
              await c
                .queue(q)
                .stats()
                .catch(() => null)
            )?.stats;
            if (s === undefined) n = Infinity;
            else if (s !== null)
              n += s.counts.waiting + s.counts.delayed + s.counts.failed + s.counts.active;
          }
          pending = n;
          if (going()) await sleep(250);
        }
      } finally {
        await c.close();
      }
    };
    await Promise.all([
      watcher(),
      ...Array.from({ length: this.o.workers }, (_, k) => this.worker(k, going, this.queues)),
    ]);
    return pending;
  }

  /**
   * Every job of every queue, state by state, read through one node. Exact once the drain
   * left nothing pending (finished jobs do not move: no retention age is set). If it did
   * not, the run has failed already, and a job moving between states while the states are
   * read one after the other may be missed or listed twice.
   */
  async finalState(endpoint: string): Promise<QueueFinalState> {
    const c = this.client([endpoint], 3);
    const readAtMs = Date.now();
    const jobs: QueueFinalJob[] = [];
    const states: readonly JobState[] = [
      'waiting',
      'delayed',
      'active',
      'completed',
      'failed',
      'dead',
      'cancelled',
    ];
    try {
      for (const name of this.queues) {
        for (const state of states) {
          let after: number | undefined;
          for (let page = 0; ; page++) {
            if (page > 1_000) throw new Error(`listing ${name} ${state} did not end`);
            const r = await c
              .queue(name)
              .list(state, { limit: 1_000, ...(after === undefined ? {} : { after }) });
            for (const j of r.jobs)
              jobs.push({
                queue: j.queue,
                id: j.id,
                state: j.state,
                token: j.token,
                attempts: j.attempts,
                leaseExpiresMs: j.leaseExpiresMs,
              });
            if (r.next === undefined || r.next === null) break;
            after = r.next;
          }
        }
      }
      return { readAtMs, jobs };
    } finally {
      await c.close();
    }
  }

  judge(final: QueueFinalState): QueueCheckReport {
    return checkQueue(this.ops, final, { leaseSlackMs: LEASE_SLACK_MS });
  }

  /** Client `k`'s connection, starting on node k mod n; closed by the caller. */
  private client(endpoints: readonly string[], k: number, maxAttempts = 10): FlotillaClient {
    const n = endpoints.length;
    const c = new FlotillaClient({
      endpoints: endpoints.map((_e, i) => endpoints[(i + k) % n] as string),
      timeoutMs: 1_000,
      deadlineMs: 3_000,
      maxAttempts,
    });
    this.clients.push(c);
    return c;
  }

  private async producer(name: string, k: number, until: Deadline): Promise<void> {
    const c = this.client(this.endpoints, k);
    const q = c.queue(name);
    try {
      // Odd-numbered producers add three jobs at a time, in one bulk add.
      const per = k % 2 === 1 ? 3 : 1;
      for (let n = 0; n + per <= this.o.maxJobsPerQueue && !until.passed(); n += per) {
        const jobs = Array.from({ length: per }, (_, i) => {
          const roll = this.rng.float();
          const data: JobData = {
            fails: roll < 0.75 ? 0 : roll < 0.9 ? 1 : roll < 0.97 ? 2 : MAX_ATTEMPTS + 1,
            workMs: this.rng.float() < 0.03 ? this.o.leaseMs + 500 : this.rng.int(30),
          };
          const options = { maxAttempts: MAX_ATTEMPTS, backoff: BACKOFF, leaseMs: this.o.leaseMs };
          return { name: 'chaos', data, id: `p${k}-${n + i}`, ...options };
        });
        // Up to three tries of the same ids: a retry after an unknown outcome must not add twice.
        for (let attempt = 0; attempt < 3; attempt++) {
          let st: QueueOpStatus = 'ok';
          try {
            if (per === 1) {
              const { name: jobName, data, ...options } = jobs[0] as (typeof jobs)[number];
              await q.add(jobName, data, options);
            } else await q.addBulk(jobs);
          } catch (err) {
            st = status(err);
          }
          for (const j of jobs) this.ops.push({ kind: 'add', queue: name, id: j.id, status: st });
          if (st === 'ok' || until.passed()) break;
          await until.sleep(100);
        }
        await until.sleep(50 + this.rng.int(100));
      }
    } finally {
      await c.close();
    }
  }

  private async worker(k: number, going: () => boolean, queues: readonly string[]): Promise<void> {
    const c = this.client(this.endpoints, k);
    const worker = `worker-${k}`;
    try {
      for (let turn = k; going(); turn++) {
        const name = queues[turn % queues.length] as string;
        const q = c.queue(name);
        let claimed = await this.claim(q, worker, {});
        if (claimed === null) await sleep(100);
        // With `next`, a report brings the next job of the same queue: run it, and so on.
        while (claimed !== null && claimed.length > 0 && going()) {
          const brought: ClaimedJob<JobData>[] = [];
          for (const job of claimed) brought.push(...(await this.run(q, worker, job, k % 2 === 0)));
          claimed = brought;
        }
      }
    } finally {
      await c.close();
    }
  }

  /** One recorded claim of at most one job; null when it failed. */
  private async claim(
    q: QueueClient,
    worker: string,
    o: { leaseMs?: number },
  ): Promise<readonly ClaimedJob<JobData>[] | null> {
    const request = ++this.request;
    try {
      const r = await q.claim<JobData>({ max: 1, worker, waitMs: 300, ...o });
      this.ops.push({
        kind: 'claim',
        request,
        worker,
        queue: q.name,
        status: 'ok',
        jobs: r.jobs.map((j) => ({ id: j.job.id, token: j.token })),
      });
      return r.jobs;
    } catch (err) {
      this.ops.push({
        kind: 'claim',
        request,
        worker,
        queue: q.name,
        status: status(err),
        jobs: [],
      });
      return null;
    }
  }

  /**
   * Runs one claimed job: fails on purpose, or works (heartbeating) and completes. With
   * `askNext` the report also claims the next job, recorded as a claim with the report's
   * outcome (a report that failed claimed nothing; one whose outcome is unknown may have);
   * resolves with the jobs it brought.
   */
  private async run(
    q: QueueClient,
    worker: string,
    claimed: ClaimedJob<JobData>,
    askNext = false,
  ): Promise<readonly ClaimedJob<JobData>[]> {
    const { id } = claimed.job;
    const token = claimed.token;
    let brought: readonly ClaimedJob<JobData>[] = [];
    const report = async (
      kind: 'complete' | 'fail' | 'heartbeat',
      send: () => Promise<{ next?: { jobs: readonly ClaimedJob[] } }>,
    ): Promise<QueueOpStatus> => {
      let st: QueueOpStatus = 'ok';
      let code: { code?: string } = {};
      const request = ++this.request;
      try {
        brought = ((await send()).next?.jobs ?? []) as readonly ClaimedJob<JobData>[];
      } catch (err) {
        st = status(err);
        code = codeOf(err);
      }
      this.ops.push({ kind, worker, queue: q.name, id, token, status: st, ...code });
      if (askNext && kind !== 'heartbeat')
        this.ops.push({
          kind: 'claim',
          request,
          worker,
          queue: q.name,
          status: st,
          jobs: brought.map((j) => ({ id: j.job.id, token: j.token })),
        });
      return st;
    };
    const next = askNext ? { next: { max: 1, worker } } : {};
    const data = claimed.job.data;
    if (claimed.job.attempts <= data.fails) {
      await report('fail', () =>
        q.fail<JobData>(id, token, `planned failure ${claimed.job.attempts}`, next),
      );
      return brought;
    }
    // Work, renewing the lease every third of it; a renewal refused means the job is lost.
    let left = data.workMs;
    while (left > 0) {
      const step = Math.min(left, Math.floor(this.o.leaseMs / 3));
      await sleep(step);
      left -= step;
      if (left > 0 && (await report('heartbeat', () => q.heartbeat(id, token))) === 'fail')
        return [];
    }
    await report('complete', () => q.complete<JobData>(id, token, { by: worker }, next));
    return brought;
  }

  /** Now and then: a job claimed, stalled on past its lease, taken over, reported on stale. */
  private async staller(until: Deadline): Promise<void> {
    const c = this.client(this.endpoints, this.o.workers);
    const successor = this.client(this.endpoints, this.o.workers + 1);
    const q = c.queue(STALL_QUEUE);
    const next = successor.queue(STALL_QUEUE);
    try {
      for (let n = 0; n < this.o.maxJobsPerQueue && !until.passed(); n++) {
        await until.sleep(500 + this.rng.int(1_500));
        if (until.passed()) break;
        const id = `stall-${n}`;
        const data: JobData = { fails: 0, workMs: 0 };
        let st: QueueOpStatus = 'ok';
        try {
          await q.add('chaos', data, { id, maxAttempts: MAX_ATTEMPTS, leaseMs: this.o.leaseMs });
        } catch (err) {
          st = status(err);
        }
        this.ops.push({ kind: 'add', queue: q.name, id, status: st });
        const claimed = await this.claim(q, 'staller', { leaseMs: STALL_LEASE_MS });
        for (const job of claimed ?? []) await this.stall(q, next, job, until);
      }
    } finally {
      await c.close();
      await successor.close();
    }
  }

  /**
   * The staller holds `stale` and does nothing until the successor has claimed the job (or,
   * bounded, until a read shows it released), then reports with the stale token; the
   * successor then runs the job to its end.
   */
  private async stall(
    q: QueueClient,
    next: QueueClient,
    stale: ClaimedJob<JobData>,
    until: Deadline,
  ): Promise<void> {
    const { id } = stale.job;
    // Read each time: an interrupted run moves `until` earlier while the staller waits.
    const boundMs = this.now() + 10_000;
    const deadline = (): number => Math.min(boundMs, until.atMs() + 5_000);
    let takenOver: ClaimedJob<JobData> | null = null;
    while (takenOver === null && this.now() < deadline()) {
      const jobs = (await this.claim(next, 'successor', {})) ?? [];
      takenOver = jobs.find((j) => j.job.id === id) ?? null;
      // Another stall job left over from an earlier round: finish it too.
      for (const j of jobs) if (j !== takenOver) await this.run(next, 'successor', j);
      if (jobs.length === 0) await sleep(100);
    }
    // What the cluster says now: anything but active under the stale token means that token
    // can never be live again (a claim's token is its log index; a later claim's is higher).
    const now = await q.get(id).then(
      (r) => r.job,
      () => null,
    );
    const movedOn =
      now !== null && (now.state !== 'active' || now.token !== stale.token)
        ? { movedOn: { state: now.state, token: now.token } }
        : {};
    let st: QueueOpStatus = 'ok';
    let code: { code?: string } = {};
    try {
      await q.complete(id, stale.token, { by: 'staller' });
    } catch (err) {
      st = status(err);
      code = codeOf(err);
    }
    this.ops.push({
      kind: 'complete',
      worker: 'staller',
      queue: q.name,
      id,
      token: stale.token,
      status: st,
      ...code,
      ...movedOn,
    });
    if (takenOver !== null) await this.run(next, 'successor', takenOver);
  }

  /** Closes every client still open (a run that ended on an error). */
  async close(): Promise<void> {
    await Promise.all(this.clients.map((c) => c.close().catch(() => undefined)));
  }
}
