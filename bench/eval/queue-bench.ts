// The queue scenario: jobs per second through add → claim → complete, and each job's latency
// from the start of its add to the acknowledgement of its completion, for Flotilla's queue on a
// 3-member cluster (fsync on) and for BullMQ on one redis-server with `appendfsync always` and
// with redis's defaults. The same layout for every system: one producer thread and one
// consumer thread in this process (queue-load.ts), the same payload, the same window of jobs
// in flight, a handler that does nothing.
//
// After the measured window the producer stops; the workers finish what was added (bounded),
// and the tally checks that every acknowledged add was completed exactly once.

import { loadavg } from 'node:os';
import { Worker } from 'node:worker_threads';
import { cpuSeconds, threadSwitches } from './cpu.js';
import { EvalError } from './errors.js';
import { sleep } from './procs.js';
import {
  ADDED,
  COMPLETED,
  nowUs,
  tallyJobs,
  type ConsumerResult,
  type LoadConfig,
  type ProducerResult,
  type QueueSystem,
  type Tally,
} from './queue-load.js';
import type { Progress, Timing } from './scenarios.js';

/** Where a point's load goes, and which server processes to charge CPU time to. */
export interface QueueTarget {
  readonly system: QueueSystem;
  readonly endpoints: readonly string[];
  readonly redisPort: number;
  readonly serverPids: readonly number[];
  /**
   * Flotilla: the queue group leader's writes so far (its node's `flotilla_group_persists_total`,
   * which the idle key-value and meta groups barely move during a queue point); null if unread.
   */
  readonly leaderWrites?: () => Promise<number | null>;
}

export interface QueuePoint {
  readonly system: QueueSystem;
  /** Worker concurrency: jobs being run (claimed, not yet reported) at once at most. */
  readonly workers: number;
  readonly adders: number;
  readonly window: number;
  readonly payloadBytes: number;
  readonly durationMs: number;
  readonly jobsPerSec: number;
  readonly completedInWindow: number;
  /** Add start → completion acknowledged. */
  readonly endToEndMs: ConsumerResult['endToEndMs'];
  /** Add start → add acknowledged. */
  readonly addMs: ProducerResult['addLatencyMs'];
  readonly addErrors: number;
  readonly firstAddError: string | null;
  readonly tally: Tally;
  /** Busy fraction of the producer's and the consumer's event loops while measured. */
  readonly loadGenerator: { readonly producer: number; readonly consumer: number };
  /** CPU the server processes used while measured, in cores (1 = one core all the time). */
  readonly serverCores: number;
  /**
   * Flotilla: the queue leader's writes (group commit rounds) a second while measured, and jobs
   * completed per write; each write is one round of appends, syncs and acknowledgements on every
   * member. Absent for Redis and from result files made before 2026-12-05.
   */
  readonly rounds?: { readonly leaderWritesPerSec: number; readonly jobsPerWrite: number };
  /**
   * Context switches a second of the server processes' threads while measured (from /proc; in
   * docs/bench/queue-run10.json, the main threads' only).
   */
  readonly serverContextSwitchesPerSec?: number;
  readonly loadAverage: readonly number[];
}

/** Jobs one point can track (one byte each): far above what a point adds in 60 s. */
const maxJobs = 8_000_000;
/** Time for the threads to start (and import their client) before the warm-up counts. */
const startSlackMs = 1_500;
const drainMs = 15_000;

function totalCpu(pids: readonly number[]): number {
  return pids.reduce((s, p) => s + (cpuSeconds(p) ?? 0), 0);
}

/** Context switches of every thread of `pids` so far; null when none could be read. */
function totalSwitches(pids: readonly number[]): number | null {
  const each = pids.map(threadSwitches).filter((n) => n !== null);
  return each.length === 0 ? null : each.reduce((a, b) => a + b, 0);
}

/** The server's counters at one moment (`atMs` on the monotonic clock). */
export interface ServerCounters {
  readonly atMs: number;
  /** CPU seconds of the server processes. */
  readonly cpu: number;
  readonly switches: number | null;
  /** The queue leader's writes (Flotilla); null when unknown. */
  readonly writes: number | null;
}

/** Reads the counters now; the leader's writes come from its metrics (never rejects). */
async function readServer(target: QueueTarget): Promise<ServerCounters> {
  const atMs = performance.now();
  const cpu = totalCpu(target.serverPids);
  const switches = totalSwitches(target.serverPids);
  let writes: number | null = null;
  try {
    writes = (await target.leaderWrites?.()) ?? null;
  } catch {
    // Unread: no rounds for this point.
  }
  return { atMs, cpu, switches, writes };
}

/**
 * The server's figures over the measured window, from the readings at its start and end (each
 * rate over the time between them, which the end of a point can stretch past the window); with
 * no reading at the start, no figure but a serverCores of 0. A counter that went backwards (a
 * thread or process gone) or could not be read gives no figure.
 */
export function serverFigures(
  from: ServerCounters | undefined,
  to: ServerCounters,
  completedInWindow: number,
): Pick<QueuePoint, 'serverCores' | 'rounds' | 'serverContextSwitchesPerSec'> {
  const seconds = from === undefined ? 0 : (to.atMs - from.atMs) / 1000;
  if (from === undefined || seconds <= 0) return { serverCores: 0 };
  const writes = from.writes === null || to.writes === null ? null : to.writes - from.writes;
  const switches =
    from.switches === null || to.switches === null ? null : to.switches - from.switches;
  return {
    serverCores: Math.round(((to.cpu - from.cpu) / seconds) * 100) / 100,
    ...(writes === null || writes <= 0
      ? {}
      : {
          rounds: {
            leaderWritesPerSec: Math.round(writes / seconds),
            jobsPerWrite: Math.round((completedInWindow / writes) * 10) / 10,
          },
        }),
    ...(switches === null || switches < 0
      ? {}
      : { serverContextSwitchesPerSec: Math.round(switches / seconds) }),
  };
}

interface Thread<T> {
  readonly worker: Worker;
  readonly ready: Promise<void>;
  readonly result: Promise<T>;
}

function startThread<T>(role: 'produce' | 'consume', config: LoadConfig): Thread<T> {
  const worker = new Worker(new URL('./queue-thread.js', import.meta.url), {
    workerData: { role, config },
  });
  let ready: () => void = () => undefined;
  let result: (r: T) => void = () => undefined;
  const failed = new Promise<never>((_, reject) => {
    worker.once('error', reject);
    worker.once('exit', (code) =>
      reject(new EvalError('EVAL_SCENARIO', `queue ${role} thread exited (${code}) early`)),
    );
  });
  failed.catch(() => undefined);
  worker.on('message', (m: { ready?: boolean; result?: T }) => {
    if (m.ready === true) ready();
    if (m.result !== undefined) result(m.result);
  });
  const t: Thread<T> = {
    worker,
    ready: Promise.race([new Promise<void>((r) => (ready = r)), failed]),
    result: Promise.race([new Promise<T>((r) => (result = r)), failed]),
  };
  // Whoever awaits them sees the failure; one nobody awaits must not end the process.
  t.ready.catch(() => undefined);
  t.result.catch(() => undefined);
  return t;
}

export async function queuePoint(
  target: QueueTarget,
  workers: number,
  windowPerWorker: number,
  payloadBytes: number,
  t: Timing,
  p: Progress,
  label: string,
): Promise<QueuePoint> {
  const ctl = new SharedArrayBuffer(8);
  const marks = new SharedArrayBuffer(maxJobs);
  const measureFromUs = nowUs() + (startSlackMs + t.warmupMs) * 1000;
  // A window of a few jobs per worker: a slot that frees finds a job waiting while
  // replacements are being added, and the queue stays short, so latency is not a backlog's.
  // It must cover the jobs a worker holds while reporting (Flotilla's Worker claims its next
  // job while the last one's report is on its way: two per slot for a moment) plus one waiting
  // per slot, or it, not the system, sets the pace: 2 per worker did for Flotilla at 32.
  const config: LoadConfig = {
    system: target.system,
    endpoints: target.endpoints,
    redisPort: target.redisPort,
    queue: `bench-${workers}-${Date.now().toString(36)}`,
    workers,
    adders: workers,
    window: windowPerWorker * workers,
    payloadBytes,
    measureFromUs,
    endUs: measureFromUs + t.durationMs * 1000,
    ctl,
    marks,
  };
  const counts = new Int32Array(ctl);
  const consumer = startThread<ConsumerResult>('consume', config);
  const threads: Worker[] = [consumer.worker];
  const totalMs = startSlackMs + t.warmupMs + t.durationMs;
  const started = Date.now();
  const ticker = setInterval(
    () => p.tick(label, Date.now() - started, totalMs, Atomics.load(counts, COMPLETED)),
    500,
  );
  let from: Promise<ServerCounters> | undefined;
  let to: Promise<ServerCounters> | undefined;
  const cpuA = setTimeout(() => {
    from = readServer(target);
  }, startSlackMs + t.warmupMs);
  const cpuB = setTimeout(() => {
    to = readServer(target);
  }, totalMs);
  try {
    await consumer.ready;
    const producer = startThread<ProducerResult>('produce', config);
    threads.push(producer.worker);
    const produced = await producer.result;
    // Drain: every acknowledged add should complete; wait (bounded) for the last of them.
    const drainBy = Date.now() + drainMs;
    let tally = tallyJobs(new Uint8Array(marks), Atomics.load(counts, ADDED));
    while (tally.missing > 0 && Date.now() < drainBy) {
      await sleep(50);
      tally = tallyJobs(new Uint8Array(marks), Atomics.load(counts, ADDED));
    }
    consumer.worker.postMessage({ stop: true });
    const consumed = await consumer.result;
    tally = tallyJobs(new Uint8Array(marks), Atomics.load(counts, ADDED));
    const server = serverFigures(
      await from,
      await (to ?? readServer(target)),
      consumed.completedInWindow,
    );
    const point: QueuePoint = {
      system: target.system,
      workers,
      adders: config.adders,
      window: config.window,
      payloadBytes,
      durationMs: t.durationMs,
      jobsPerSec: Math.round((consumed.completedInWindow / t.durationMs) * 1000),
      completedInWindow: consumed.completedInWindow,
      endToEndMs: consumed.endToEndMs,
      addMs: produced.addLatencyMs,
      addErrors: produced.addErrors,
      firstAddError: produced.firstAddError,
      tally,
      loadGenerator: {
        producer: produced.eventLoopUtilization,
        consumer: consumed.eventLoopUtilization,
      },
      ...server,
      loadAverage: loadavg().map((x) => Math.round(x * 100) / 100),
    };
    p.done(label, queueSummary(point));
    return point;
  } finally {
    clearInterval(ticker);
    clearTimeout(cpuA);
    clearTimeout(cpuB);
    await Promise.all(threads.map((w) => w.terminate()));
  }
}

export function queueSummary(q: QueuePoint): string {
  const bad =
    q.tally.missing + q.tally.duplicates + q.addErrors > 0
      ? `, ${q.addErrors} add errors, ${q.tally.missing} missing, ${q.tally.duplicates} run twice`
      : '';
  return (
    `${q.jobsPerSec.toLocaleString('en-US')} jobs/s, end-to-end p50 ${q.endToEndMs.p50} ms, ` +
    `p99 ${q.endToEndMs.p99} ms; server ${q.serverCores} cores, load generator ` +
    `${q.loadGenerator.producer}/${q.loadGenerator.consumer} busy` +
    (q.rounds === undefined
      ? ''
      : `; leader ${q.rounds.leaderWritesPerSec} writes/s, ${q.rounds.jobsPerWrite} jobs each`) +
    bad
  );
}
