// The job queue state machine in process, without Raft: what a waiting job costs in memory,
// and whether a claim slows down as the queue grows. Commands go through `apply` as the host
// would hand them over (msgpack-encoded, decoded and validated there).
//
//   node --expose-gc dist/bench/queue/machine.js [--sizes 1000,100000,1000000]
//        [--memory-jobs 1000000] [--claims 20000] [--payload-bytes 32]
//
// Memory: heap used (and array-buffer memory, where large payloads live) before and after
// adding `--memory-jobs` waiting jobs, after a full collection when run with --expose-gc.
// Claims: for each size, a machine holding that many waiting jobs and as many delayed ones
// (due in a year, so they sit in the timer heap), then `--claims` claims of one job each,
// each timed alone; an add after each claim (not timed) keeps the queue at its size. Bounded:
// at most about 2 x 1,000,000 jobs per machine, a few seconds per size on a laptop.

import type { Command } from '../../src/host/contracts.js';
import { QueueStateMachine, type QueueCommandAny } from '../../src/queue/index.js';
import { benchArgs } from '../args.js';

const { values } = benchArgs({
  options: {
    sizes: { type: 'string', default: '1000,100000,1000000' },
    'memory-jobs': { type: 'string', default: '1000000' },
    claims: { type: 'string', default: '20000' },
    'payload-bytes': { type: 'string', default: '32' },
  },
});
const sizes = values.sizes.split(',').map(Number);
const memoryJobs = Number(values['memory-jobs']);
const claims = Number(values.claims);
const payloadBytes = Number(values['payload-bytes']);
for (const n of [...sizes, memoryJobs, claims]) {
  if (!Number.isSafeInteger(n) || n < 1 || n > 2_000_000) throw new Error(`bad number ${n}`);
}
if (!Number.isSafeInteger(payloadBytes) || payloadBytes < 0 || payloadBytes > 65_536)
  throw new Error(`bad --payload-bytes ${payloadBytes}`);

const gc = (globalThis as { gc?: () => void }).gc;
const payload = new Uint8Array(payloadBytes).fill(0x61);
const YEAR_MS = 365 * 24 * 3_600_000;
/** Command time: a real date, so times are the doubles they are in production, not small integers. */
const T0_MS = Date.UTC(2026, 10, 30);

class Driver {
  readonly m = new QueueStateMachine({ maxJobs: 5_000_000 });
  private index = 0;

  /** Applies one command and returns its result. */
  one(c: QueueCommandAny): unknown {
    return this.m.apply([this.cmd(c)])[0];
  }

  cmd(c: QueueCommandAny): Command {
    return { index: ++this.index, term: 1, timeMs: T0_MS, payload: QueueStateMachine.encode(c) };
  }

  /** Adds `n` jobs in batches of 1,000 commands, as a busy leader's apply loop would. */
  fill(n: number, delayMs: number): void {
    const add = QueueStateMachine.encode({
      op: 'add',
      queue: 'bench',
      name: 'job',
      payload,
      ...(delayMs > 0 && { delayMs }),
    });
    for (let done = 0; done < n;) {
      const batch: Command[] = [];
      for (; batch.length < 1_000 && done < n; done++)
        batch.push({ index: ++this.index, term: 1, timeMs: T0_MS, payload: add });
      this.m.apply(batch);
    }
  }
}

function memory(): { heap: number; buffers: number } {
  gc?.();
  gc?.();
  const u = process.memoryUsage();
  return { heap: u.heapUsed, buffers: u.arrayBuffers };
}

const started = performance.now();
console.log(
  `Job queue state machine (payload ${payloadBytes} B, node ${process.version}${gc === undefined ? ', no --expose-gc: figures include garbage' : ''})`,
);

{
  const before = memory();
  const d = new Driver();
  d.fill(memoryJobs, 0);
  const after = memory();
  const heap = (after.heap - before.heap) / memoryJobs;
  const buffers = (after.buffers - before.buffers) / memoryJobs;
  console.log(
    `memory: ${memoryJobs.toLocaleString('en')} waiting jobs: ${heap.toFixed(0)} B/job of heap, ` +
      `${buffers.toFixed(0)} B/job of array buffers (heap ${(before.heap / 2 ** 20).toFixed(0)} -> ${(after.heap / 2 ** 20).toFixed(0)} MiB); ` +
      `${d.m.jobs().toLocaleString('en')} jobs held`,
  );
}

console.log('claim latency (one claim per command, each timed alone):');
for (const n of sizes) {
  gc?.();
  const d = new Driver();
  d.fill(n, 0);
  d.fill(n, YEAR_MS);
  const claim = { op: 'claim', queue: 'bench' } as const;
  const add = { op: 'add', queue: 'bench', name: 'job', payload } as const;
  // Warm up the paths before timing them, then collect what filling left behind: without
  // this, marking and sweeping a heap of millions of jobs on the other core ran during the
  // timed claims and tripled them at 1,000,000.
  for (let i = 0; i < 1_000; i++) {
    d.one(claim);
    d.one(add);
  }
  gc?.();
  const timesUs: number[] = [];
  for (let i = 0; i < claims; i++) {
    const c = d.cmd(claim);
    const t0 = process.hrtime.bigint();
    const [r] = d.m.apply([c]);
    timesUs.push(Number(process.hrtime.bigint() - t0) / 1_000);
    if ((r as { jobs?: unknown[] }).jobs?.length !== 1)
      throw new Error(`claim got nothing: ${JSON.stringify(r)}`);
    d.one(add);
  }
  // The mean of all claims, and of the best of five consecutive rounds: on shared cores a
  // round in which the process lost the CPU for a few milliseconds moves the overall mean.
  const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
  const round = Math.ceil(timesUs.length / 5);
  const roundMeans = [0, 1, 2, 3, 4]
    .map((r) => timesUs.slice(r * round, (r + 1) * round))
    .filter((xs) => xs.length > 0)
    .map((xs) => sum(xs) / xs.length);
  const best = Math.min(...roundMeans);
  const mean = sum(timesUs) / timesUs.length;
  timesUs.sort((a, b) => a - b);
  const p50 = timesUs[Math.floor(timesUs.length * 0.5)] ?? 0;
  const p99 = timesUs[Math.floor(timesUs.length * 0.99)] ?? 0;
  const counts = d.m.stats('bench')?.counts;
  console.log(
    `  ${n.toLocaleString('en').padStart(9)} waiting + ${n.toLocaleString('en').padStart(9)} delayed: ` +
      `mean ${mean.toFixed(2)} us (best fifth ${best.toFixed(2)}), p50 ${p50.toFixed(2)} us, p99 ${p99.toFixed(2)} us over ${claims.toLocaleString('en')} claims ` +
      `(then ${counts?.waiting} waiting, ${counts?.delayed} delayed, ${counts?.active} active)`,
  );
}
console.log(`done in ${((performance.now() - started) / 1000).toFixed(1)} s`);
