// The queue Worker against real nodes: forty jobs over four slots, each completed once; a job
// whose handler keeps failing goes dead after its attempts; a worker whose renewals do not
// arrive loses the job to another, and its late report is refused, while one whose heartbeatMs
// is past the job's lease renews it in time anyway; and, against a scripted
// transport, a job's report travels with the slot's next claim.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterEach, test } from 'node:test';
import { FlotillaError } from '../../src/base/errors.js';
import { features } from '../../src/base/features.js';
import { FlotillaClient, QueueClient, Worker } from '../../src/client/index.js';
import type { QueueTransport } from '../../src/client/queue.js';
import { TestNodes, postJson } from '../server/nodes.js';

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
  // A worker frozen mid-job, as far as the queue can tell: its renewals never arrive (they are
  // dropped on their way, never answered), while its claim and its late report go through.
  let dropped = 0;
  const frozen = Object.assign(Object.create(q) as QueueClient, {
    heartbeat: () => {
      dropped++;
      return new Promise<never>(() => undefined);
    },
  });
  const lost: [string, string][] = [];
  const slow = new Worker(
    frozen,
    async () => {
      await stuck;
      return 'late';
    },
    {
      waitMs: 500,
      onLost: (job, reason) => lost.push([job.id, (reason as FlotillaError).code]),
    },
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
  assert.deepEqual(lost, [[id, 'STALE_TOKEN']], 'onLost is told of the refused report');
  assert.ok(dropped > 0, 'the worker did try to renew');
});

void test("a heartbeatMs at or above the job's lease still renews it in time", async () => {
  // The worker renewed every heartbeatMs whatever the job's lease (known only from the claim):
  // with 60 s against a 500 ms lease the job expired between renewals and ran again elsewhere.
  const client = await cluster();
  const q = client.queue('long-beat');
  const { id } = await q.add('x', null, { leaseMs: 500 });
  const errors: unknown[] = [];
  const w = new Worker(
    q,
    async (job, ctx) => {
      // Runs until the queue's clock has passed the claim's lease end with the job still this
      // run's: only a renewal made after the first lease would have ended moves the end that far.
      const claimed = (await q.get(job.id)).job.leaseExpiresMs;
      await until('renewed past its first lease', async () => {
        const now = (await q.get(job.id)).job;
        if (now.state !== 'active' || now.token !== ctx.token)
          throw new Error(`the job was lost: ${now.state}, token ${now.token}`);
        return now.leaseExpiresMs >= claimed + 500;
      });
      return 'kept';
    },
    { heartbeatMs: 60_000, waitMs: 500, onError: (err) => errors.push(err) },
  );
  cleanups.push(() => w.close({ graceMs: 0 }));
  await until('the worker reported', () =>
    Promise.resolve(w.counts.completed + w.counts.lost + w.counts.failed > 0),
  );
  const job = (await q.get(id)).job;
  assert.deepEqual(
    [w.counts, job.state, job.attempts, job.result],
    [{ completed: 1, failed: 0, lost: 0, released: 0 }, 'completed', 1, 'kept'],
    `error: ${job.error}`,
  );
  assert.deepEqual(errors, []);
});

void test("a worker's own leaseMs, shorter than the job's, is renewed in time", async () => {
  const client = await cluster();
  const q = client.queue('short-lease');
  // The job's own lease is the default 30 s; the worker claims it for 600 ms. The handler runs
  // past several of those leases (and the ticks that expire them): only renewals at the
  // worker's lease keep it.
  const { id } = await q.add('x', null);
  let runs = 0;
  const w = new Worker(
    q,
    async () => {
      runs++;
      await new Promise((r) => setTimeout(r, 3_000));
      return 'done';
    },
    { leaseMs: 600, waitMs: 500, onError: () => undefined },
  );
  cleanups.push(() => w.close({ graceMs: 0 }));
  await until('the worker reported', () =>
    Promise.resolve(w.counts.completed + w.counts.lost + w.counts.failed > 0),
  );
  const job = (await q.get(id)).job;
  assert.deepEqual(
    [w.counts, runs, job.state, job.attempts],
    [{ completed: 1, failed: 0, lost: 0, released: 0 }, 1, 'completed', 1],
    `error: ${job.error}`,
  );
});

void test('a job deleted while it runs aborts its handler, as a lost lease does', async () => {
  const nodes = await TestNodes.start({ nodes: 1 });
  cleanups.push(() => nodes.close());
  await nodes.waitForLeader();
  const client = new FlotillaClient({ endpoints: nodes.urls });
  cleanups.push(() => client.close());
  const q = client.queue('deleted');
  const { id } = await q.add('x', null, { leaseMs: 600 });
  let running = false;
  let abortedBy: unknown = null;
  const errors: unknown[] = [];
  const w = new Worker(
    q,
    (_job, ctx) => {
      running = true;
      // Runs until its signal aborts, bounded so a missed abort fails the test, not hangs it.
      return new Promise<string>((resolve) => {
        const t = setTimeout(() => resolve('not aborted'), 15_000);
        ctx.signal.addEventListener('abort', () => {
          clearTimeout(t);
          abortedBy = ctx.signal.reason;
          resolve('aborted');
        });
      });
    },
    { waitMs: 500, onError: (err) => errors.push(err) },
  );
  cleanups.push(() => w.close({ graceMs: 0 }));
  await until('the handler runs', () => Promise.resolve(running));
  const del = await postJson(
    `${nodes.urls[0]}/v1/queue/delete`,
    { queue: 'deleted', id },
    { timeoutMs: 10_000 },
  );
  assert.equal(del.status, 200, JSON.stringify(del.json));
  await until('the handler was aborted', () => Promise.resolve(abortedBy !== null), 10_000);
  await until('the job counted lost', () => Promise.resolve(w.counts.lost === 1), 10_000);
  assert.match(String(abortedBy), /job .* (lost|deleted)/);
  assert.deepEqual(w.counts, { completed: 0, failed: 0, lost: 1, released: 0 });
  assert.deepEqual(errors, [], 'a deleted job is not an error of the worker');
});

void test('options no claim could carry are refused when the worker is made', () => {
  // No cluster: a worker that would start its slots must not get this far.
  const transport: QueueTransport = {
    write: () => Promise.reject(new Error('no claim may be sent')),
    read: () => Promise.reject(new Error('no read may be sent')),
  };
  const q = new QueueClient('q', transport);
  for (const o of [
    { waitMs: 30_001 },
    { waitMs: -1 },
    { leaseMs: 0 },
    { leaseMs: 1.5 },
    // One millisecond past the queue's longest duration: the constructor took it, and every
    // claim was then refused (a user's find).
    { leaseMs: 366 * 24 * 3_600_000 + 1 },
    { heartbeatMs: 0 },
    { concurrency: 0 },
    // The API's limit on a claim's worker name: before, the worker was made and every claim
    // it sent was refused, said only to onError.
    { name: 'w'.repeat(1_025) },
    // A name the cluster refuses as saying nothing.
    { name: '' },
    { name: ' \t' },
    // A misspelt option was the default without a word.
    { concurrencyy: 3 },
    // A heartbeat no sooner than the lease's end: every job was lost (a user's find).
    { heartbeatMs: 5_000, leaseMs: 1_000 },
  ] as Record<string, unknown>[]) {
    let refused: unknown = null;
    try {
      // Made despite the option: closed at once, so its slots do not outlive the test.
      void new Worker(q, () => Promise.resolve(null), { ...o, onError: () => undefined }).close({
        graceMs: 0,
      });
    } catch (err) {
      refused = err;
    }
    const e = refused as (Error & { code?: string }) | null;
    assert.equal(e?.code, 'BAD_REQUEST', `${JSON.stringify(o)}: ${String(refused)}`);
    assert.ok(e.message.includes(Object.keys(o)[0] as string), e.message);
  }
  // A handler that is not a function ended the process at the first job's run.
  assert.throws(
    () => new Worker(q, 'not a function' as unknown as () => Promise<null>),
    (e: unknown) =>
      e instanceof FlotillaError && e.code === 'BAD_REQUEST' && /handler/.test(e.message),
  );
  // At the limit it is made (and closed at once).
  const longest = new Worker(q, () => Promise.resolve(null), {
    name: 'w'.repeat(1_024),
    onError: () => undefined,
  });
  void longest.close({ graceMs: 0 });
});

void test('a handler error longer than a failure may record is cut to fit, not lost', async () => {
  const client = await cluster();
  const q = client.queue('long-error');
  const { id } = await q.add('x', null, { maxAttempts: 1 });
  const errors: unknown[] = [];
  const w = new Worker(q, () => Promise.reject(new Error(`boom: ${'x'.repeat(5_000)}`)), {
    waitMs: 500,
    onError: (err) => errors.push(err),
  });
  cleanups.push(() => w.close({ graceMs: 0 }));
  await until(
    'the failure was recorded',
    async () => (await q.get(id)).job.state === 'dead',
    10_000,
  );
  const job = (await q.get(id)).job;
  assert.ok(job.error?.startsWith('boom: xxx'), job.error ?? 'no error');
  assert.ok((job.error?.length ?? 0) <= 1_024, `${job.error?.length} characters`);
  assert.match(job.error ?? '', /\(5006 characters\)$/);
  assert.deepEqual([w.counts.failed, errors], [1, []]);
});

void test('a handler that throws before returning a promise, or returns a value, is a run like any other', async () => {
  // Both ended the worker's process with a rejection nobody handled, every job it held left
  // active until its lease expired (a user's find).
  const client = await cluster();
  const q = client.queue('sync-handler');
  const thrown = await q.add('throws', null, { maxAttempts: 1 });
  const plain = await q.add('plain', null, { maxAttempts: 1 });
  const w = new Worker(
    q,
    ((job: { name: string }) => {
      if (job.name === 'throws') throw new Error('sync throw');
      return 42;
    }) as unknown as () => Promise<number>,
    { waitMs: 500 },
  );
  cleanups.push(() => w.close({ graceMs: 0 }));
  await until(
    'both jobs ended',
    async () =>
      (await q.get(thrown.id)).job.state === 'dead' &&
      (await q.get(plain.id)).job.state === 'completed',
    10_000,
  );
  assert.equal((await q.get(thrown.id)).job.error, 'sync throw');
  assert.equal((await q.get(plain.id)).job.result, 42);
});

void test('a handler that throws something other than an Error has it recorded as JSON', async () => {
  // It was recorded as "[object Object]".
  const client = await cluster();
  const q = client.queue('thrown');
  const { id } = await q.add('x', null, { maxAttempts: 1 });
  // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- what this test is about
  const w = new Worker(q, () => Promise.reject({ code: 42, why: 'no' }), { waitMs: 500 });
  cleanups.push(() => w.close({ graceMs: 0 }));
  await until(
    'the failure was recorded',
    async () => (await q.get(id)).job.state === 'dead',
    10_000,
  );
  assert.equal((await q.get(id)).job.error, 'thrown: {"code":42,"why":"no"}');
});

void test('a handler error with no message is recorded as saying so, not refused', async () => {
  // The cluster refuses a failure whose message is empty: the worker's fail was refused, and
  // the job stayed active until its lease ran out, recorded as "lease expired".
  const client = await cluster();
  const q = client.queue('silent');
  const errors: unknown[] = [];
  const thrown: unknown[] = [new Error(), new TypeError('  '), ''];
  const ids: string[] = [];
  for (const [i] of thrown.entries()) ids.push((await q.add('x', i, { maxAttempts: 1 })).id);
  const w = new Worker<number>(
    q,
    // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- a thrown ''
    (job) => Promise.reject(thrown[job.data]),
    { waitMs: 500, onError: (err) => errors.push(err) },
  );
  cleanups.push(() => w.close({ graceMs: 0 }));
  await until(
    'every failure was recorded',
    async () =>
      (await Promise.all(ids.map((id) => q.get(id)))).every((r) => r.job.state === 'dead'),
    10_000,
  );
  const recorded = await Promise.all(ids.map(async (id) => (await q.get(id)).job.error));
  assert.deepEqual(recorded, [
    'Error (no message)',
    'TypeError (no message)',
    'thrown: an empty string',
  ]);
  assert.deepEqual(errors, []);
});

void test('a handler error cut inside an emoji, or holding half of one, is still recorded', async () => {
  // Cut at a UTF-16 index, the first error would end in half a surrogate pair, and the second
  // holds one as `flotilla queue work` can make it (the last 1,000 characters of a command's
  // standard error): the cluster refuses such text (INVALID_UTF8), so the failure was not
  // recorded and the job sat active until its lease ran out.
  const client = await cluster();
  const q = client.queue('emoji-error');
  const messages = [`boom: ${'x'.repeat(995)}${'\u{1F600}'.repeat(200)}`, 'exit 1: \udc00 tail'];
  const ids: string[] = [];
  for (let i = 0; i < messages.length; i++) ids.push((await q.add('x', i, { maxAttempts: 1 })).id);
  const errors: unknown[] = [];
  const w = new Worker<number>(q, (job) => Promise.reject(new Error(messages[job.data])), {
    waitMs: 500,
    leaseMs: 60_000,
    onError: (err) => errors.push(err),
  });
  cleanups.push(() => w.close({ graceMs: 0 }));
  await until(
    'both failures were recorded',
    async () =>
      (await Promise.all(ids.map((id) => q.get(id)))).every((r) => r.job.state === 'dead'),
    10_000,
  );
  const [cut, half] = await Promise.all(ids.map(async (id) => (await q.get(id)).job.error ?? ''));
  assert.ok((cut?.length ?? 0) <= 1_024, `${cut?.length} characters`);
  assert.match(cut ?? '', /^boom: x+(\u{1F600})*\uFFFD? \.\.\. \(1401 characters\)$/u);
  assert.equal(half, 'exit 1: \uFFFD tail');
  assert.deepEqual([w.counts.failed, errors], [2, []]);
});

void test('a result too large to store fails the run with the reason', async () => {
  const client = await cluster();
  const q = client.queue('big-result');
  // Too large, and (a BigInt) no JSON value at all: neither can be stored, so both runs fail
  // with the reason rather than stay active until their lease expires.
  const ids = [
    (await q.add('x', 'big', { maxAttempts: 1 })).id,
    (await q.add('x', 'bigint', { maxAttempts: 1 })).id,
  ];
  const completed: unknown[] = [];
  const w = new Worker<string, unknown>(
    q,
    (job) => Promise.resolve(job.data === 'big' ? 'x'.repeat(300_000) : 10n),
    {
      waitMs: 500,
      onError: () => undefined,
      onCompleted: (job) => completed.push(job.id),
    },
  );
  cleanups.push(() => w.close({ graceMs: 0 }));
  const jobs = async () => Promise.all(ids.map(async (id) => (await q.get(id)).job));
  await until('the runs were recorded', async () =>
    (await jobs()).every((j) => j.state === 'dead'),
  );
  const [big, bigint] = await jobs();
  assert.match(big?.error ?? '', /^the result was not stored: .*limit is 262144/);
  assert.match(bigint?.error ?? '', /^the result was not stored: "result" is not a JSON value/);
  assert.deepEqual([w.counts, completed], [{ completed: 0, failed: 2, lost: 0, released: 0 }, []]);
});

/** Closes, past its grace, a Worker whose handler never ends, and answers its job as left. */
async function releaseAtClose(client: FlotillaClient, queue: string) {
  const q = client.queue(queue);
  const { id } = await q.add('x', null, {
    maxAttempts: 1,
    backoff: { kind: 'fixed', delayMs: 60_000 },
  });
  await releaseOnce(q);
  return (await q.get(id)).job;
}

/**
 * Runs a worker whose handler never ends on `q` until it claimed a job, then closes it; the
 * worker must count the release as `counted` says (default: released).
 */
async function releaseOnce(
  q: QueueClient,
  counted = { completed: 0, failed: 0, lost: 0, released: 1 },
): Promise<void> {
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
  assert.deepEqual(w.counts, counted);
}

void test('a job released at close waits again at once, its attempt not counted', async () => {
  // Released jobs were failed: a job on its last attempt went dead at every deploy that
  // outran the grace period, and the others waited out their backoff (a queue user's find).
  const client = await cluster();
  const job = await releaseAtClose(client, 'released');
  assert.deepEqual(
    [job.state, job.attempts, job.releases, job.error],
    ['waiting', 0, 1, 'released: the worker closed'],
  );
  // Over HTTP: `release` is true or absent, and never with `final`.
  const url = (client as unknown as { endpoints: string[] }).endpoints[0] as string;
  for (const body of [{ release: false }, { release: 'yes' }, { release: true, final: true }]) {
    const r = await postJson(
      `${url}/v1/queue/fail`,
      { queue: 'released', id: job.id, token: job.token, error: 'x', ...body },
      { timeoutMs: 10_000 },
    );
    assert.equal(r.status, 400, JSON.stringify(r.json));
  }
});

void test("a job released more often than its queue's maxReleases is failed: dead on its last attempt", async () => {
  // A job whose handler never ended within any worker's grace went back to waiting at every
  // close, for ever: it was never dead, and no count said it kept coming back.
  const client = await cluster();
  const q = client.queue('released-often');
  await q.configure({ maxReleases: 1 });
  assert.equal((await q.stats()).stats?.maxReleases, 1);
  const first = await releaseAtClose(client, 'released-often');
  assert.deepEqual([first.state, first.attempts, first.releases], ['waiting', 0, 1]);
  // The same job again (the only one waiting): its second release is past the cap, and the
  // worker counts it as the failed attempt it was, not as a release.
  await releaseOnce(q, { completed: 0, failed: 1, lost: 0, released: 0 });
  const second = (await q.get(first.id)).job;
  assert.deepEqual([second.state, second.attempts, second.releases], ['dead', 1, 2]);
  assert.match(
    second.error ?? '',
    /past the queue's maxReleases of 1: counted as a failed attempt/,
  );
  assert.equal((await q.stats()).stats?.totals.dead, 1);
});

void test('a release answers whether it gave the job back, over HTTP and the binary protocol', async () => {
  const nodes = await TestNodes.start({ nodes: 1, clientProtocol: true });
  cleanups.push(() => nodes.close());
  await nodes.waitForLeader();
  const url = nodes.urls[0] as string;
  for (const protocol of ['http', 'auto'] as const) {
    const client = new FlotillaClient({ endpoints: [url], protocol });
    cleanups.push(() => client.close());
    const q = client.queue(`release-answer-${protocol}`);
    await q.configure({ maxReleases: 1 });
    const { id } = await q.add('x', null, { maxAttempts: 1 });
    const release = async () => {
      const [c] = (await q.claim({ waitMs: 1_000 })).jobs;
      assert.equal(c?.job.id, id);
      return q.release(id, c.token, 'stopping');
    };
    const given = await release();
    assert.deepEqual([given.state, given.released], ['waiting', true]);
    const failed = await release();
    assert.deepEqual([failed.state, failed.released], ['dead', false], protocol);
    assert.equal(client.usesBinary(url), protocol === 'auto', 'the protocol the answers came by');
  }
});

void test('with a member of a release before counted releases, a release is neither counted nor capped', async () => {
  const nodes = await TestNodes.start({
    nodes: 3,
    featureLevelOf: (id) => (id === 3 ? features.queueReleaseCap.level - 1 : undefined),
  });
  cleanups.push(() => nodes.close());
  await nodes.waitForLeader();
  const client = new FlotillaClient({ endpoints: nodes.urls });
  cleanups.push(() => client.close());
  const refused = await client
    .queue('released-mixed')
    .configure({ maxReleases: 0 })
    .then(
      () => null,
      (err: FlotillaError) => err.code,
    );
  assert.equal(refused, 'FEATURE_NOT_ENABLED');
  const job = await releaseAtClose(client, 'released-mixed');
  assert.deepEqual([job.state, job.attempts, job.releases], ['waiting', 0, 0]);
  await releaseOnce(client.queue('released-mixed'));
  const again = (await client.queue('released-mixed').get(job.id)).job;
  assert.deepEqual([again.state, again.attempts, again.releases], ['waiting', 0, 0]);
});

void test('with a member of a release before it, a release is a fail, as before', async () => {
  const nodes = await TestNodes.start({
    nodes: 3,
    featureLevelOf: (id) => (id === 3 ? features.queueRelease.level - 1 : undefined),
  });
  cleanups.push(() => nodes.close());
  await nodes.waitForLeader();
  const client = new FlotillaClient({ endpoints: nodes.urls });
  cleanups.push(() => client.close());
  const job = await releaseAtClose(client, 'released-old');
  assert.deepEqual([job.state, job.error], ['dead', 'released: the worker closed']);
});

void test('closing releases a job whose handler does not finish in the grace period', async () => {
  // The handler runs and never ends; releaseAtClose checks the worker counted the release.
  const job = await releaseAtClose(await cluster(), 'release');
  assert.notEqual(job.state, 'active', `released, not left running: ${job.state}`);
  assert.equal(job.error, 'released: the worker closed');
});

void test("a job's report claims the slot's next job in the same request", async () => {
  // A transport that hands out one job per claim and, to a report asking for `next`, the next
  // job with its answer while it has one: the worker must run j1 and j2 from the reports,
  // with no claim between, and go back to a long-poll claim only when a report brought none.
  const log: string[] = [];
  const job = (i: number) => ({
    job: { id: `j${i}`, queue: 'q', data: i, leaseMs: 30_000 },
    token: i + 1,
    leaseExpiresMs: Date.now() + 30_000,
  });
  let given = 0;
  const transport: QueueTransport = {
    write<T>(path: string, body: Record<string, unknown>, signal: AbortSignal | undefined) {
      if (path === '/v1/queue/claim') {
        log.push('claim');
        if (given === 0) return Promise.resolve({ jobs: [job(given++)] } as T);
        return new Promise<T>((_, reject) =>
          signal?.addEventListener('abort', () => reject(new Error('closed')), { once: true }),
        );
      }
      if (path === '/v1/queue/complete') {
        const next = body['next'] as { max?: number; worker?: string } | undefined;
        log.push(`complete ${String(body['id'])} next=${JSON.stringify(next ?? null)}`);
        const jobs = next !== undefined && given < 3 ? [job(given++)] : [];
        return Promise.resolve({
          state: 'completed',
          next: jobs.length > 0 ? { jobs } : { jobs, reason: 'empty' },
        } as T);
      }
      return Promise.resolve({} as T);
    },
    read: <T>() => Promise.resolve({} as T),
  };
  const done: string[] = [];
  const worker = new Worker(
    new QueueClient('q', transport),
    (j) => {
      log.push(`run ${j.id}`);
      return Promise.resolve('ok');
    },
    {
      name: 'w',
      onCompleted: (j) => done.push(j.id),
      onError: (e) => log.push(`error ${String(e)}`),
    },
  );
  await until(
    'three jobs completed and a claim waiting',
    () => Promise.resolve(done.length === 3 && log.at(-1) === 'claim'),
    10_000,
  );
  await worker.close();
  assert.deepEqual(done, ['j0', 'j1', 'j2']);
  assert.deepEqual(log, [
    'claim',
    'run j0',
    'complete j0 next={"max":1,"worker":"w"}',
    'run j1',
    'complete j1 next={"max":1,"worker":"w"}',
    'run j2',
    'complete j2 next={"max":1,"worker":"w"}',
    'claim',
  ]);
});

void test('a handler that looks at its signal only after the lease was lost finds it aborted, with the reason', async () => {
  // A transport whose renewal is refused (another worker owns the job): the worker abandons the
  // run at once, and the handler, which had not asked for its signal, finds it aborted when it
  // does.
  let claims = 0;
  const transport: QueueTransport = {
    write<T>(path: string, _body: Record<string, unknown>, signal: AbortSignal | undefined) {
      if (path === '/v1/queue/claim') {
        if (claims++ === 0)
          return Promise.resolve({
            jobs: [{ job: { id: 'j0', queue: 'q', data: null, leaseMs: 30_000 }, token: 1 }],
          } as T);
        return new Promise<T>((_, reject) =>
          signal?.addEventListener('abort', () => reject(new Error('closed')), { once: true }),
        );
      }
      if (path === '/v1/queue/heartbeat')
        return Promise.reject(new FlotillaError('STALE_TOKEN', 'the job is leased to another'));
      return Promise.resolve({} as T);
    },
    read: <T>() => Promise.resolve({} as T),
  };
  let look: () => void = () => undefined;
  const looked = new Promise<void>((r) => (look = r));
  const seen: { aborted: boolean; reason: unknown }[] = [];
  const lost: string[] = [];
  const errors: unknown[] = [];
  const w = new Worker(
    new QueueClient('q', transport),
    async (_job, ctx) => {
      await looked;
      seen.push({ aborted: ctx.signal.aborted, reason: ctx.signal.reason });
      return 'late';
    },
    {
      heartbeatMs: 10,
      onLost: (job, reason) => {
        lost.push(`${job.id}: ${(reason as FlotillaError).code}: ${reason.message}`);
        // A callback that throws is told to onError; the worker goes on.
        throw new Error('callback broke');
      },
      onError: (err) => errors.push(err),
    },
  );
  await until('the run was abandoned', () => Promise.resolve(w.counts.lost === 1), 10_000);
  look();
  await until('the handler looked', () => Promise.resolve(seen.length === 1), 10_000);
  await w.close();
  assert.equal(seen[0]?.aborted, true);
  assert.match(String(seen[0]?.reason), /lease on job j0 lost/);
  assert.deepEqual(w.counts, { completed: 0, failed: 0, lost: 1, released: 0 });
  assert.deepEqual(lost, ['j0: STALE_TOKEN: lease on job j0 lost: the job is leased to another']);
  assert.deepEqual(
    errors.map((e) => (e as Error).message),
    ['callback broke'],
  );
});

void test('a program that closed its idle worker exits without waiting out the grace period', async () => {
  // In a process of its own: a timer left behind by close() keeps the process alive for the
  // grace period (here ten minutes), and the bound below fails the test long before that.
  const client = new URL('../../src/client/index.js', import.meta.url).href;
  const program = `
    import { QueueClient, Worker } from ${JSON.stringify(client)};
    const transport = {
      write: (_path, _body, signal) => new Promise((_, reject) =>
        signal?.addEventListener('abort', () => reject(new Error('closed')), { once: true })),
      read: () => Promise.resolve({}),
    };
    const w = new Worker(new QueueClient('q', transport), async () => null, { concurrency: 4 });
    await new Promise((r) => setImmediate(r));
    await w.close({ graceMs: 600000 });
    console.log('closed', JSON.stringify(w.counts));
  `;
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--input-type=module', '-e', program],
    { timeout: 30_000 },
  );
  assert.equal(stdout.trim(), 'closed {"completed":0,"failed":0,"lost":0,"released":0}');
});

void test('a job a report brought while the worker closes is run, not dropped', async () => {
  let given = 0;
  // Set once the worker exists; the transport below reaches it through this.
  const held: { worker?: Worker<unknown, string> } = {};
  const done: string[] = [];
  const transport: QueueTransport = {
    write<T>(path: string, body: Record<string, unknown>, signal: AbortSignal | undefined) {
      const job = (i: number) => ({
        job: { id: `j${i}`, queue: 'q', data: i, leaseMs: 30_000 },
        token: i + 1,
        leaseExpiresMs: Date.now() + 30_000,
      });
      if (path === '/v1/queue/claim') {
        if (given === 0) return Promise.resolve({ jobs: [job(given++)] } as T);
        return new Promise<T>((_, reject) =>
          signal?.addEventListener('abort', () => reject(new Error('closed')), { once: true }),
        );
      }
      if (path === '/v1/queue/complete') {
        // The worker starts closing while this report (which asked for the next job) is out.
        void held.worker?.close();
        const jobs = body['next'] !== undefined ? [job(given++)] : [];
        return Promise.resolve({ state: 'completed', next: { jobs } } as T);
      }
      return Promise.resolve({} as T);
    },
    read: <T>() => Promise.resolve({} as T),
  };
  const worker = new Worker(new QueueClient('q', transport), () => Promise.resolve('ok'), {
    onCompleted: (j) => done.push(j.id),
  });
  held.worker = worker;
  await until('both jobs completed', () => Promise.resolve(done.length === 2), 10_000);
  await worker.close();
  assert.deepEqual(done, ['j0', 'j1']);
});

void test("a handler's progress that is no percentage throws in the handler; a fraction is rounded", async () => {
  // BullMQ takes an object as progress; here it was dropped without a word (a queue user's
  // find). Thrown, not rejected: a handler that does not await it must fail its run, not end
  // the process with an unhandled rejection.
  let given = 0;
  const sent: unknown[] = [];
  const transport: QueueTransport = {
    write<T>(path: string, body: Record<string, unknown>, signal: AbortSignal | undefined) {
      if (path === '/v1/queue/claim' && given === 0) {
        given++;
        return Promise.resolve({
          jobs: [
            {
              job: { id: 'j', queue: 'q', data: null, leaseMs: 30_000 },
              token: 1,
              leaseExpiresMs: Date.now() + 30_000,
            },
          ],
        } as T);
      }
      if (path === '/v1/queue/claim')
        return new Promise<T>((_, reject) =>
          signal?.addEventListener('abort', () => reject(new Error('closed')), { once: true }),
        );
      if (path === '/v1/queue/progress') sent.push(body['progress']);
      return Promise.resolve({ state: 'completed' } as T);
    },
    read: <T>() => Promise.resolve({} as T),
  };
  const refused: string[] = [];
  const worker = new Worker(
    new QueueClient('q', transport),
    async (_job, ctx) => {
      for (const bad of [-1, 101, NaN, { step: 1 }, '50'])
        try {
          void ctx.progress(bad as number);
          refused.push(`accepted ${JSON.stringify(bad)}`);
        } catch (err) {
          refused.push(err instanceof FlotillaError ? err.code : `threw ${String(err)}`);
        }
      await ctx.progress(50.4);
      void ctx.progress(100 / 3);
      // Not awaited and not caught: the run fails, as any throw in a handler does.
      void ctx.progress({ step: 2 } as unknown as number);
      return 'not reached';
    },
    { concurrency: 1 },
  );
  try {
    await until('the job ran', () => Promise.resolve(refused.length === 5 && sent.length === 2));
    assert.deepEqual(refused, Array(5).fill('BAD_REQUEST'));
    assert.deepEqual(sent, [50, 33]);
    await until('the run failed', () => Promise.resolve(worker.counts.failed === 1), 10_000);
  } finally {
    await worker.close();
  }
});

void test('with a concurrency limit, the jobs go round the waiting workers', async () => {
  // A report's next claim took the room its job freed: one worker of ten ran all forty jobs,
  // the others waited throughout (a queue user's find).
  const client = await cluster();
  const q = client.queue('limited');
  await q.configure({ concurrency: 3 });
  await q.addBulk(Array.from({ length: 40 }, (_, n) => ({ name: 'n', data: { n } })));
  const byWorker = new Map<number, number>();
  const workers = Array.from(
    { length: 10 },
    (_, w) =>
      new Worker(q, () => new Promise((r) => setImmediate(() => r(null))), {
        concurrency: 4,
        waitMs: 2_000,
        onCompleted: () => byWorker.set(w, (byWorker.get(w) ?? 0) + 1),
      }),
  );
  try {
    const total = (): number => [...byWorker.values()].reduce((a, b) => a + b, 0);
    await until('forty jobs completed', () => Promise.resolve(total() === 40), 30_000);
    assert.ok(
      byWorker.size >= 3,
      `jobs completed by worker: ${JSON.stringify([...byWorker.entries()])}`,
    );
  } finally {
    await Promise.all(workers.map((w) => w.close()));
  }
});
