// What the client's Worker and QueueClient cost per job, without a cluster: a Worker with a
// handler that returns at once runs on a QueueClient whose transport answers in-process (one
// job per claim, and each report, gathered as a worker's reports of one turn are, brings the
// slot's next job). The CPU this process spends per job is then the client's own: its
// promises, timers, abort signals and request objects, none of the wire or the members.
//
//   node dist/bench/queue/worker-cost.js [--jobs 200000] [--concurrency 32] [--rounds 3]
//
// Bounded: each round stops after --jobs jobs.

import { QueueClient, type QueueTransport } from '../../src/client/queue.js';
import { AddGatherer, ReportGatherer } from '../../src/client/queue.js';
import { Worker } from '../../src/client/worker.js';
import { benchArgs } from '../args.js';

const { values } = benchArgs({
  options: {
    jobs: { type: 'string', default: '200000' },
    concurrency: { type: 'string', default: '32' },
    rounds: { type: 'string', default: '3' },
  },
});

function int(name: string, v: string, max: number): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1 || n > max) {
    process.stderr.write(`--${name} must be an integer 1..${max}, got ${v}\n`);
    process.exit(2);
  }
  return n;
}

const jobs = int('jobs', values.jobs, 10_000_000);
const concurrency = int('concurrency', values.concurrency, 1_024);
const rounds = int('rounds', values.rounds, 100);

interface Round {
  readonly cpuUsPerJob: number;
  readonly wallUsPerJob: number;
}

async function round(): Promise<Round> {
  let given = 0;
  const claimed = () => {
    given++;
    return { job: { id: `j${given}`, queue: 'q', data: null, leaseMs: 30_000 }, token: given };
  };
  const take = () => (given < jobs ? [claimed()] : []);
  let done = 0;
  let finish: () => void = () => undefined;
  const all = new Promise<void>((r) => (finish = r));
  const transport: QueueTransport = {
    write<T>(path: string, body: Record<string, unknown>, signal: AbortSignal | undefined) {
      if (path === '/v1/queue/claim') {
        const got = take();
        if (got.length > 0) return Promise.resolve({ jobs: got } as T);
        // Nothing left: the claim waits, as a long poll does, until the worker closes.
        return new Promise<T>((_, reject) =>
          signal?.addEventListener('abort', () => reject(new Error('closed')), { once: true }),
        );
      }
      const next = (asked: unknown) => (asked === undefined ? undefined : { jobs: take() });
      if (path === '/v1/queue/report-bulk') {
        const reports = body['reports'] as readonly Record<string, unknown>[];
        const results = reports.map((r) => ({ state: 'completed', next: next(r['next']) }));
        return Promise.resolve({ header: {}, results } as T);
      }
      if (path === '/v1/queue/complete')
        return Promise.resolve({ state: 'completed', next: next(body['next']) } as T);
      return Promise.resolve({} as T);
    },
    read: <T>() => Promise.resolve({} as T),
  };
  const gather = {
    adds: new AddGatherer('q', transport),
    reports: new ReportGatherer('q', transport),
  };
  const q = new QueueClient('q', transport, gather);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const w = new Worker(q, () => Promise.resolve(null), {
    concurrency,
    onCompleted: () => {
      if (++done === jobs) finish();
    },
  });
  await all;
  const cpu = process.cpuUsage(cpu0);
  const wallMs = performance.now() - t0;
  await w.close({ graceMs: 1_000 });
  return {
    cpuUsPerJob: (cpu.user + cpu.system) / jobs,
    wallUsPerJob: (wallMs * 1000) / jobs,
  };
}

console.log(`Worker with ${concurrency} slots, ${jobs} jobs a round, in-process transport`);
for (let i = 1; i <= rounds; i++) {
  const r = await round();
  console.log(
    `round ${i}: ${r.cpuUsPerJob.toFixed(2)} µs of CPU per job, ${r.wallUsPerJob.toFixed(2)} µs of wall time`,
  );
}
