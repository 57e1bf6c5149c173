// The job queue on a real 3-member cluster (WAL, fsync on): what the queue group's leader holds
// per waiting job, and whether a claim, end to end, slows down with the number of jobs waiting.
//
//   node dist/bench/queue/cluster.js [--jobs 100000] [--adders 32] [--claims 300]
//
// 1. `--claims` jobs are added to a small queue and claimed one by one (each claim timed, from
//    request to answer; each job then completed, untimed).
// 2. The leader's heap in use (the least of 5 readings 0.5 s apart, from its /metrics, so that
//    garbage not yet collected counts as little as possible) and its resident set are read.
// 3. `--jobs` jobs with a 64-byte filler are added to another queue by `--adders` concurrent
//    clients; heap and resident set are read again: their growth divided by the jobs is the
//    cost of a waiting job on the leader, Raft log entries not yet compacted included.
// 4. `--claims` claims from the full queue, timed as in 1.
// Bounded: one cluster, stopped by PID at the end, data in a temp directory removed after.

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { FlotillaClient } from '../../src/client/index.js';
import { FlotillaCluster } from '../eval/clusters.js';
import { ProcessGroup, sleep } from '../eval/procs.js';

const { values } = parseArgs({
  options: {
    jobs: { type: 'string', default: '100000' },
    adders: { type: 'string', default: '32' },
    claims: { type: 'string', default: '300' },
  },
});
const jobs = Number(values.jobs);
const adders = Number(values.adders);
const claims = Number(values.claims);
for (const [k, n] of Object.entries({ jobs, adders, claims }))
  if (!Number.isSafeInteger(n) || n < 1 || n > 2_000_000) throw new Error(`bad --${k} ${n}`);

async function heapUsed(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const m = /^flotilla_process_nodejs_heap_size_used_bytes(?:\{[^}]*\})? (\S+)$/m.exec(text);
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

const pct = (xs: number[], p: number): string =>
  (xs[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))] as number).toFixed(2);

const dir = mkdtempSync(join(tmpdir(), 'flotilla-queue-cluster-'));
const procs = new ProcessGroup();
const c = new FlotillaCluster({ size: 3, dir, procs });
try {
  await c.start();
  let leaderId = 0;
  while (leaderId === 0) {
    for (const id of c.running()) {
      const s = (await (await fetch(`${c.clientUrl(id)}/v1/status`)).json()) as {
        queueGroup?: { role: string };
      };
      if (s.queueGroup?.role === 'leader') leaderId = id;
    }
    if (leaderId === 0) await sleep(50);
  }
  const url = c.clientUrl(leaderId);
  const pid = c.pid(leaderId) as number;
  const client = new FlotillaClient({ endpoints: [url], protocol: 'http', connections: adders });
  const pad = 'x'.repeat(64);
  const small = client.queue('small');
  for (let i = 0; i < claims; i++) await small.add('job', { i, pad });
  const few = await timedClaims(client, 'small');
  const before = await memory(url, pid);
  const big = client.queue('big');
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: adders }, async () => {
      while (next < jobs) {
        const i = next++;
        await big.add('job', { i, pad });
        if (i % 10_000 === 0) process.stderr.write(`added ${i.toLocaleString('en-US')}\n`);
      }
    }),
  );
  const addsPerSec = Math.round(jobs / ((performance.now() - t0) / 1000));
  const after = await memory(url, pid);
  const many = await timedClaims(client, 'big');
  await client.close();
  const per = (x: number): number => Math.round(x / jobs);
  process.stdout.write(
    [
      `${jobs.toLocaleString('en-US')} waiting jobs added at ${addsPerSec} jobs/s (${adders} clients)`,
      `leader heap in use: ${(before.heap / 2 ** 20).toFixed(1)} -> ${(after.heap / 2 ** 20).toFixed(1)} MiB, ${per(after.heap - before.heap)} bytes per waiting job`,
      `leader resident set: ${(before.rss / 2 ** 20).toFixed(1)} -> ${(after.rss / 2 ** 20).toFixed(1)} MiB, ${per(after.rss - before.rss)} bytes per waiting job`,
      `claim (request to answer), ${claims} claims, ms: ~${claims} waiting p50 ${pct(few, 50)} p90 ${pct(few, 90)} p99 ${pct(few, 99)}; ` +
        `~${jobs.toLocaleString('en-US')} waiting p50 ${pct(many, 50)} p90 ${pct(many, 90)} p99 ${pct(many, 99)}`,
    ].join('\n') + '\n',
  );
} finally {
  await c.stop();
  await procs.stopAll();
  rmSync(dir, { recursive: true, force: true });
}
