// The job queue on a real 3-member cluster (WAL, fsync on): what the queue group's leader holds
// per waiting job, and whether a claim, end to end, slows down with the number of jobs waiting.
//
//   node dist/bench/queue/cluster.js [--jobs 100000] [--delayed 0] [--batch 500] [--adders 32] [--claims 300]
//
// 1. `--claims` jobs are added to a small queue and claimed one by one (each claim timed, from
//    request to answer; each job then completed, untimed).
// 2. The leader's heap in use (the least of 5 readings 0.5 s apart, from its /metrics, so that
//    garbage not yet collected counts as little as possible) and its resident set are read.
// 3. `--jobs` jobs with a 64-byte filler are added to another queue by `--adders` concurrent
//    clients, in bulk adds of `--batch` jobs (1: one add each), and `--delayed` more due in a
//    day; heap and resident set are read again: their growth divided by the jobs is the cost
//    of a job on the leader, Raft log entries not yet compacted included.
// 4. `--claims` claims from the full queue, timed as in 1.
// Bounded: one cluster, stopped by PID at the end, data in a temp directory removed after.

import { readFileSync } from 'node:fs';
import { FlotillaClient } from '../../src/client/index.js';
import { sleep } from '../eval/procs.js';
import { benchArgs } from '../args.js';
import { onQueueCluster, pct } from './common.js';

const { values } = benchArgs({
  options: {
    jobs: { type: 'string', default: '100000' },
    delayed: { type: 'string', default: '0' },
    batch: { type: 'string', default: '500' },
    adders: { type: 'string', default: '32' },
    claims: { type: 'string', default: '300' },
  },
});
const jobs = Number(values.jobs);
const delayed = Number(values.delayed);
const batch = Number(values.batch);
const adders = Number(values.adders);
const claims = Number(values.claims);
for (const [k, n] of Object.entries({ jobs, batch, adders, claims }))
  if (!Number.isSafeInteger(n) || n < 1 || n > 2_000_000) throw new Error(`bad --${k} ${n}`);
if (!Number.isSafeInteger(delayed) || delayed < 0 || delayed > 2_000_000)
  throw new Error(`bad --delayed ${delayed}`);
if (batch > 1_000) throw new Error(`--batch ${batch}: a bulk add takes at most 1,000 jobs`);

async function heapUsed(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const m = /^flotilla_nodejs_heap_size_used_bytes(?:\{[^}]*\})? (\S+)$/m.exec(text);
  if (m === null) throw new Error('no heap figure in /metrics');
  return Number(m[1]);
}

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? NaN) * 1024;
}

async function memory(url: string, pid: number): Promise<{ heap: number; rss: number }> {
  let heap = Infinity;
  for (let i = 0; i < 5; i++) {
    heap = Math.min(heap, await heapUsed(url));
    await sleep(500);
  }
  return { heap, rss: rssBytes(pid) };
}

async function timedClaims(client: FlotillaClient, queue: string): Promise<number[]> {
  const q = client.queue(queue);
  const ms: number[] = [];
  for (let i = 0; i < claims; i++) {
    const t0 = performance.now();
    const r = await q.claim({ max: 1 });
    ms.push(performance.now() - t0);
    const c = r.jobs[0];
    if (c === undefined) throw new Error(`claim ${i} from ${queue} found no job`);
    await q.complete(c.job.id, c.token);
  }
  return ms.sort((a, b) => a - b);
}

await onQueueCluster('cluster', async (c, leaderId) => {
  const url = c.clientUrl(leaderId);
  const pid = c.pid(leaderId) as number;
  const client = new FlotillaClient({ endpoints: [url], connections: adders });
  await client.status(); // its answer names the binary port the calls below use
  const pad = 'x'.repeat(64);
  const small = client.queue('small');
  for (let i = 0; i < claims; i++) await small.add('job', { i, pad });
  const few = await timedClaims(client, 'small');
  const before = await memory(url, pid);
  const big = client.queue('big');
  const total = jobs + delayed;
  let next = 0;
  let reported = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: adders }, async () => {
      while (next < total) {
        const from = next;
        // Waiting jobs first, then the delayed ones: a batch is one kind or the other.
        const upto = Math.min(from < jobs ? jobs : total, from + batch);
        next = upto;
        const delayMs = from < jobs ? undefined : 86_400_000;
        const items = Array.from({ length: upto - from }, (_, k) => ({
          name: 'job',
          data: { i: from + k, pad },
          ...(delayMs === undefined ? {} : { delayMs }),
        }));
        if (items.length === 1) await big.add('job', items[0]?.data, delayMs ? { delayMs } : {});
        else await big.addBulk(items);
        if (upto - reported >= 50_000) {
          reported = upto;
          process.stderr.write(
            `added ${upto.toLocaleString('en-US')} of ${total.toLocaleString('en-US')}\n`,
          );
        }
      }
    }),
  );
  const addsPerSec = Math.round(total / ((performance.now() - t0) / 1000));
  const after = await memory(url, pid);
  const many = await timedClaims(client, 'big');
  await client.close();
  const per = (x: number): number => Math.round(x / total);
  process.stdout.write(
    [
      `${jobs.toLocaleString('en-US')} waiting and ${delayed.toLocaleString('en-US')} delayed jobs added at ${addsPerSec} jobs/s (${adders} clients, ${batch} per add)`,
      `leader heap in use: ${(before.heap / 2 ** 20).toFixed(1)} -> ${(after.heap / 2 ** 20).toFixed(1)} MiB, ${per(after.heap - before.heap)} bytes per job`,
      `leader resident set: ${(before.rss / 2 ** 20).toFixed(1)} -> ${(after.rss / 2 ** 20).toFixed(1)} MiB, ${per(after.rss - before.rss)} bytes per job`,
      `claim (request to answer), ${claims} claims, ms: ~${claims} waiting p50 ${pct(few, 50)} p90 ${pct(few, 90)} p99 ${pct(few, 99)}; ` +
        `~${jobs.toLocaleString('en-US')} waiting p50 ${pct(many, 50)} p90 ${pct(many, 90)} p99 ${pct(many, 99)}`,
    ].join('\n') + '\n',
  );
});
