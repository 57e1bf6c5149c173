// The queue Worker against real nodes: forty jobs over four slots, each completed once; a job
// whose handler keeps failing goes dead after its attempts; a worker that stops renewing its
// lease loses the job to another, and its late report is refused; and, against a scripted
// transport, a job's report travels with the slot's next claim.

import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import { FlotillaClient, QueueClient, Worker } from '../../src/client/index.js';
import type { QueueTransport } from '../../src/client/queue.js';
import { TestNodes } from '../server/nodes.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function cluster(): Promise<FlotillaClient> {
  const nodes = await TestNodes.start({ nodes: 3 });
  cleanups.push(() => nodes.close());
  await nodes.waitForLeader();
  const client = new FlotillaClient({ endpoints: nodes.urls });
  cleanups.push(() => client.close());
  return client;
}

async function until(
  what: string,
  cond: () => Promise<boolean>,
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

void test('forty jobs over four slots: each handled and completed once', async () => {
  const client = await cluster();
  const q = client.queue('emails');
  for (let i = 0; i < 40; i++) await q.add('send', { n: i });
  const seen: number[] = [];
  // onCompleted fires after the cluster acknowledged the completion: the job reads as
  // completed from then on, with the handler's result.
  const acknowledged: Promise<[number, string, unknown]>[] = [];
  const worker = new Worker<{ n: number }, number>(
    q,
    (job) => {
      seen.push(job.data.n);
      return Promise.resolve(job.data.n * 2);
    },
    {
      concurrency: 4,
      waitMs: 500,
      onCompleted: (job, result) => {
        assert.equal(result, job.data.n * 2);
        acknowledged.push(
          q
            .get(job.id)
            .then((r): [number, string, unknown] => [job.data.n, r.job.state, r.job.result]),
        );
      },
    },
  );
  cleanups.push(() => worker.close());
  await until('every job completed', async () => (await q.stats()).stats?.counts.completed === 40);
  await worker.close();
  assert.deepEqual(
    [...seen].sort((a, b) => a - b),
    Array.from({ length: 40 }, (_, i) => i),
  );
  assert.equal(worker.counts.completed, 40);
  const acks = (await Promise.all(acknowledged)).sort((a, b) => a[0] - b[0]);
  assert.deepEqual(
    acks,
    Array.from({ length: 40 }, (_, i) => [i, 'completed', i * 2]),
  );
});

void test('a handler that keeps failing: retried, then dead', async () => {
  const client = await cluster();
  const q = client.queue('flaky');
  const { id } = await q.add('x', null, {
    maxAttempts: 2,
    backoff: { kind: 'fixed', delayMs: 10 },
  });
  let runs = 0;
  const worker = new Worker(
    q,
    () => {
      runs++;
      return Promise.reject(new Error('boom'));
    },
    { waitMs: 500 },
  );
  cleanups.push(() => worker.close());
  await until('the job is dead', async () => (await q.get(id)).job.state === 'dead');
  await worker.close();
  assert.equal(runs, 2);
  assert.equal((await q.get(id)).job.error, 'boom');
});

void test('a worker that stops renewing loses the job; its late report is refused', async () => {
  const client = await cluster();
  const q = client.queue('slow');
  const { id } = await q.add('x', null, { leaseMs: 500 });
  let release: () => void = () => undefined;
  const stuck = new Promise<void>((r) => (release = r));
  // Renews every 60 s: as good as not at all with a 500 ms lease (a worker frozen mid-job).
  const slow = new Worker(
    q,
    async () => {
      await stuck;
      return 'late';
    },
    { heartbeatMs: 60_000, waitMs: 500 },
  );
  cleanups.push(() => slow.close({ graceMs: 0 }));
  await until('the slow worker holds it', async () => (await q.get(id)).job.state === 'active');
  const fast = new Worker(q, () => Promise.resolve('on time'), { waitMs: 500 });
  cleanups.push(() => fast.close());
  await until(
    'another worker completed it',
    async () => (await q.get(id)).job.state === 'completed',
  );
  release();
  await until('the slow worker’s report was refused', () =>
    Promise.resolve(slow.counts.lost === 1),
  );
  const job = (await q.get(id)).job;
  assert.equal(job.result, 'on time');
  assert.equal(job.attempts, 2, 'the expired lease counted an attempt');
  assert.deepEqual([fast.counts.completed, slow.counts.completed], [1, 0]);
});

void test('closing releases a job whose handler does not finish in the grace period', async () => {
  const client = await cluster();
  const q = client.queue('release');
  const { id } = await q.add('x', null, { backoff: { kind: 'fixed', delayMs: 10 } });
  let running = false;
  const w = new Worker(
    q,
    () => {
      running = true;
      return new Promise<never>(() => undefined);
    },
    { waitMs: 500 },
  );
  // The handler runs, not just the claim applied: a claim whose answer close() cuts off is
  // left to its lease, not released (CLIENT.md, Worker).
  await until('the handler runs', () => Promise.resolve(running));
  await w.close({ graceMs: 50 });
  const job = (await q.get(id)).job;
  assert.notEqual(job.state, 'active', `released, not left running: ${job.state}`);
  assert.equal(job.error, 'released: the worker closed');
});

void test("a job's report goes out with the slot's next claim, not before it", async () => {
  // A transport that answers a completion only once the slot has sent its next claim: a worker
  // that waited for each report before claiming again would never finish the three jobs.
  const log: string[] = [];
  let claims = 0;
  const claimed: (() => void)[] = [];
  const job = (i: number) => ({
    job: { id: `j${i}`, queue: 'q', data: i, leaseMs: 30_000 },
    token: i + 1,
    leaseExpiresMs: Date.now() + 30_000,
  });
  const transport: QueueTransport = {
    write<T>(path: string, body: Record<string, unknown>, signal: AbortSignal | undefined) {
      if (path === '/v1/queue/claim') {
        const n = claims++;
        log.push(`claim ${n}`);
        for (const wake of claimed.splice(0)) wake();
        if (n < 3) return Promise.resolve({ jobs: [job(n)] } as T);
        return new Promise<T>((_, reject) =>
          signal?.addEventListener('abort', () => reject(new Error('closed')), { once: true }),
        );
      }
      if (path === '/v1/queue/complete') {
        log.push(`complete ${String(body['id'])} sent`);
        const before = claims;
        return new Promise<T>((resolve, reject) => {
          const t = setTimeout(() => reject(new Error('no claim came with the report')), 5_000);
          const answer = (): void => {
            clearTimeout(t);
            log.push(`complete ${String(body['id'])} answered`);
            resolve({} as T);
          };
          if (claims > before) answer();
          else claimed.push(answer);
        });
      }
      return Promise.resolve({} as T);
    },
    read: <T>() => Promise.resolve({} as T),
  };
  const done: string[] = [];
  const worker = new Worker(new QueueClient('q', transport), () => Promise.resolve('ok'), {
    onCompleted: (j) => done.push(j.id),
    onError: (e) => log.push(`error ${String(e)}`),
  });
  await until('three jobs completed', () => Promise.resolve(done.length === 3), 10_000);
  await worker.close();
  assert.deepEqual(done, ['j0', 'j1', 'j2']);
  assert.equal(worker.counts.completed, 3);
  const at = (s: string): number => log.indexOf(s);
  assert.ok(at('claim 1') < at('complete j0 answered'), log.join('\n'));
  assert.ok(
    at('complete j0 answered') < at('claim 2'),
    `ran j1 before j0's report: ${log.join(', ')}`,
  );
});
