// How soon an idle worker gets a job: on a real 3-member cluster (WAL, fsync on), one worker
// waits for work with a long-poll claim on the queue group's leader; once the leader shows the
// claim waiting, one job is added. Timed: the add (request to answer) and the pickup (the
// add's request to the claim's answer with the job). The job is then completed, untimed, and
// the next round begins. Prints p50/p90/p99 of both.
//
//   node dist/bench/queue/pickup.js [--jobs 300]
//
// Bounded: one cluster, stopped by PID at the end, data in a temp directory removed after.

import { FlotillaClient } from '../../src/client/index.js';
import { sleep } from '../eval/procs.js';
import { benchArgs } from '../args.js';
import { onQueueCluster, pct } from './common.js';

const { values } = benchArgs({ options: { jobs: { type: 'string', default: '300' } } });
const jobs = Number(values.jobs);
if (!Number.isSafeInteger(jobs) || jobs < 1 || jobs > 100_000) {
  process.stderr.write(`--jobs must be an integer 1..100000, got ${values.jobs}\n`);
  process.exit(2);
}

/** A member's count of claims it holds waiting for a job, from its /metrics. */
async function claimWaiters(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const m = /^flotilla_queue_claim_waiters(?:\{[^}]*\})? (\S+)$/m.exec(text);
  if (m === null) throw new Error('no flotilla_queue_claim_waiters in /metrics');
  return Number(m[1]);
}

/**
 * Waits, bounded, until the members together hold `n` waiting claims (on the queue group's
 * leader, which may have changed since the cluster started: a claim sent to a follower is
 * forwarded and waits there).
 */
async function waitForWaiters(urls: readonly string[], n: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    let seen = 0;
    for (const url of urls) seen += await claimWaiters(url);
    if (seen === n) return;
    if (Date.now() > deadline) throw new Error(`the members hold ${seen} claim waiters, not ${n}`);
    await sleep(1);
  }
}

await onQueueCluster('pickup', async (c, leaderId) => {
  const url = c.clientUrl(leaderId);
  const producer = new FlotillaClient({ endpoints: [url] });
  const worker = new FlotillaClient({ endpoints: [url] });
  await producer.status();
  await worker.status();
  const pq = producer.queue('pickup');
  const wq = worker.queue('pickup');
  const adds: number[] = [];
  const pickups: number[] = [];
  const urls = c.running().map((id) => c.clientUrl(id));
  for (let i = 0; i < jobs + 20; i++) {
    const claimed = wq.claim({ max: 1, waitMs: 10_000 });
    // A claim that comes back before it waits (an error, say) ends the run with what it said.
    const answered = claimed.then(
      (r) => ({ answer: JSON.stringify(r) }),
      (err: unknown) => ({ answer: String(err) }),
    );
    const early = await Promise.race([waitForWaiters(urls, 1).then(() => null), answered]);
    if (early !== null)
      throw new Error(`round ${i}: the claim answered before a job was added: ${early.answer}`);
    const t0 = performance.now();
    const add = pq.add('job', { i }).then(() => performance.now() - t0);
    const r = await claimed;
    const pickup = performance.now() - t0;
    const addMs = await add;
    const got = r.jobs[0];
    if (got === undefined) throw new Error(`round ${i}: the waiting claim got no job`);
    // The first 20 rounds warm the processes up; they are not counted.
    if (i >= 20) {
      adds.push(addMs);
      pickups.push(pickup);
    }
    await wq.complete(got.job.id, got.token);
  }
  await producer.close();
  await worker.close();
  adds.sort((a, b) => a - b);
  pickups.sort((a, b) => a - b);
  process.stdout.write(
    `${jobs} jobs, one at a time to one idle worker, ms: ` +
      `add p50 ${pct(adds, 50)} p90 ${pct(adds, 90)} p99 ${pct(adds, 99)}; ` +
      `pickup p50 ${pct(pickups, 50)} p90 ${pct(pickups, 90)} p99 ${pct(pickups, 99)}\n`,
  );
});
