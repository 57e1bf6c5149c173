// The two halves of the queue scenario's load, each run in its own worker thread
// (queue-thread.ts) so that neither the producer's adds nor the workers' claims and reports
// wait behind the other's JSON or socket work on one event loop:
//
//   producer: `adders` concurrent add loops. It keeps at most `window` jobs added but not yet
//             completed, so the queue stays short and the latency measured is the system's,
//             not a backlog's. Each job's data is {t, n, pad}: t the add's start (µs on the
//             machine's monotonic clock, the same in every thread), n its sequence number and
//             pad a fixed filler so both systems carry the same payload.
//   consumer: one worker with `concurrency` slots and a handler that returns at once; each
//             completion the system acknowledged marks job n, counts, and records t → now.
//
// Both threads share two arrays: `ctl` (jobs added, jobs completed) and `marks` (one byte per
// job: completions, plus a bit for an add that failed), from which tallyJobs tells a job lost
// or completed twice.

import * as hdr from 'hdr-histogram-js';
import { performance } from 'node:perf_hooks';

export type QueueSystem = 'flotilla' | 'bullmq-always' | 'bullmq-default';
export const queueSystems: readonly QueueSystem[] = ['flotilla', 'bullmq-always', 'bullmq-default'];

export interface JobData {
  readonly t: number;
  readonly n: number;
  readonly pad: string;
}

/** What one system offers the load: add a job; run workers that report each completion. */
export interface QueueDriver {
  add(data: JobData): Promise<void>;
  startWorkers(concurrency: number, completed: (data: JobData) => void): void;
  close(): Promise<void>;
}

export interface LoadConfig {
  readonly system: QueueSystem;
  /** Flotilla: member URLs, the queue group's leader first. */
  readonly endpoints: readonly string[];
  /** BullMQ: the redis-server's port. */
  readonly redisPort: number;
  readonly queue: string;
  readonly workers: number;
  readonly adders: number;
  readonly window: number;
  readonly payloadBytes: number;
  /** Measured window on the monotonic clock, µs; adds stop at `endUs`. */
  readonly measureFromUs: number;
  readonly endUs: number;
  readonly ctl: SharedArrayBuffer;
  readonly marks: SharedArrayBuffer;
}

/** Indexes into `ctl` (an Int32Array). */
export const ADDED = 0;
export const COMPLETED = 1;
/** Marks byte: an add that failed (the job may or may not exist). */
export const ADD_FAILED = 0x80;

/** Atomics.waitAsync (Node.js 16+; in TypeScript's ES2024 lib, past the ES2023 one we build with). */
interface WaitAsync {
  waitAsync(a: Int32Array, i: number, v: number, timeoutMs: number): { value: unknown };
}

function waitAsync(a: Int32Array, i: number, v: number, timeoutMs: number): { value: unknown } {
  return (Atomics as unknown as WaitAsync).waitAsync(a, i, v, timeoutMs);
}

export function nowUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

export interface Latency {
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
  readonly mean: number;
}

function latencyOf(h: hdr.Histogram): Latency {
  const ms = (us: number): number => Math.round(us) / 1000;
  return {
    p50: ms(h.getValueAtPercentile(50)),
    p90: ms(h.getValueAtPercentile(90)),
    p99: ms(h.getValueAtPercentile(99)),
    max: ms(h.maxValue),
    mean: ms(h.mean),
  };
}

function histogram(): hdr.Histogram {
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000 });
}

/** Event-loop utilisation of this thread over the measured window (1: never idle). */
function eluMeter(c: LoadConfig): () => number {
  let from: ReturnType<typeof performance.eventLoopUtilization> | undefined;
  let to: ReturnType<typeof performance.eventLoopUtilization> | undefined;
  const wait = (atUs: number, f: () => void): NodeJS.Timeout =>
    setTimeout(f, Math.max(0, (atUs - nowUs()) / 1000));
  const a = wait(c.measureFromUs, () => (from = performance.eventLoopUtilization()));
  const b = wait(c.endUs, () => (to = performance.eventLoopUtilization()));
  return () => {
    clearTimeout(a);
    clearTimeout(b);
    if (from === undefined) return 0;
    const end = to ?? performance.eventLoopUtilization();
    return Math.round(performance.eventLoopUtilization(end, from).utilization * 1000) / 1000;
  };
}

export interface ProducerResult {
  readonly addErrors: number;
  readonly firstAddError: string | null;
  readonly addLatencyMs: Latency;
  readonly eventLoopUtilization: number;
}

export async function produce(c: LoadConfig, d: QueueDriver): Promise<ProducerResult> {
  const ctl = new Int32Array(c.ctl);
  const marks = new Uint8Array(c.marks);
  const pad = 'x'.repeat(c.payloadBytes);
  const hist = histogram();
  const elu = eluMeter(c);
  let addErrors = 0;
  let firstAddError: string | null = null;
  const loop = async (): Promise<void> => {
    for (;;) {
      // Wait for room in the window: a completion wakes us (Atomics.notify in the consumer).
      for (;;) {
        const done = Atomics.load(ctl, COMPLETED);
        if (Atomics.load(ctl, ADDED) - done < c.window) break;
        const left = (c.endUs - nowUs()) / 1000;
        if (left <= 0) return;
        await waitAsync(ctl, COMPLETED, done, Math.min(left, 100)).value;
      }
      const start = nowUs();
      if (start >= c.endUs) return;
      const n = Atomics.add(ctl, ADDED, 1);
      if (n >= marks.length) return;
      try {
        await d.add({ t: start, n, pad });
        const end = nowUs();
        if (start >= c.measureFromUs && end <= c.endUs) hist.recordValue(Math.max(1, end - start));
      } catch (err) {
        Atomics.or(marks, n, ADD_FAILED);
        if (addErrors++ === 0) firstAddError = String(err);
      }
    }
  };
  // Atomics.waitAsync holds no handle: without one, a loop waiting for room would end the thread.
  const alive = setInterval(() => undefined, 1_000);
  await Promise.all(Array.from({ length: c.adders }, loop));
  clearInterval(alive);
  const r = {
    addErrors,
    firstAddError,
    addLatencyMs: latencyOf(hist),
    eventLoopUtilization: elu(),
  };
  hist.destroy();
  return r;
}

export interface ConsumerResult {
  /** Completions acknowledged within the measured window. */
  readonly completedInWindow: number;
  /** Add start → completion acknowledged, for the jobs completed within the window. */
  readonly endToEndMs: Latency;
  readonly eventLoopUtilization: number;
}

/** Starts the workers; the returned stop() closes them and gives the figures. */
export function consume(c: LoadConfig, d: QueueDriver): () => Promise<ConsumerResult> {
  const ctl = new Int32Array(c.ctl);
  const marks = new Uint8Array(c.marks);
  const hist = histogram();
  const elu = eluMeter(c);
  let inWindow = 0;
  d.startWorkers(c.workers, (data) => {
    const at = nowUs();
    Atomics.add(marks, data.n, 1);
    Atomics.add(ctl, COMPLETED, 1);
    Atomics.notify(ctl, COMPLETED);
    if (at >= c.measureFromUs && at <= c.endUs) {
      inWindow++;
      hist.recordValue(Math.max(1, at - data.t));
    }
  });
  return async () => {
    const e = elu();
    await d.close();
    const r = {
      completedInWindow: inWindow,
      endToEndMs: latencyOf(hist),
      eventLoopUtilization: e,
    };
    hist.destroy();
    return r;
  };
}

export interface Tally {
  readonly added: number;
  readonly addFailed: number;
  readonly completed: number;
  /** Jobs added (acknowledged) that were never completed. */
  readonly missing: number;
  /** Jobs completed more than once (each counted once). */
  readonly duplicates: number;
}

/** Reads the marks of jobs 0..added-1: how many completed, went missing, or ran twice. */
export function tallyJobs(marks: Uint8Array, added: number): Tally {
  let addFailed = 0;
  let completed = 0;
  let missing = 0;
  let duplicates = 0;
  for (let n = 0; n < Math.min(added, marks.length); n++) {
    const m = marks[n] as number;
    const times = m & ~ADD_FAILED;
    if ((m & ADD_FAILED) !== 0) addFailed++;
    else if (times === 0) missing++;
    if (times > 0) completed++;
    if (times > 1) duplicates++;
  }
  return { added, addFailed, completed, missing, duplicates };
}
