// Every transition of the job queue machine, one story each, with the invariants checked after
// every command (Harness.run). Times are the leader's stamps the commands carry.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Harness, bytes } from './harness.js';
import { backoffMs } from '../../src/queue/jobs.js';
import {
  QueueStateMachine,
  type AddBulkResult,
  type BulkReport,
  type ClaimResult,
  type ReportBulkResult,
  type ReportResult,
} from '../../src/queue/index.js';

void test('add makes a waiting job with a generated id; stats count it', () => {
  const h = new Harness();
  const a = h.add('q', { priority: 2 });
  assert.deepEqual(a, { ok: true, id: '#1', duplicate: false, state: 'waiting' });
  const job = h.m.getJob('q', '#1');
  assert.equal(job?.priority, 2);
  assert.equal(job?.attempts, 0);
  assert.deepEqual(job?.payload, bytes('p'));
  assert.equal(h.m.stats('q')?.counts.waiting, 1);
  assert.equal(h.m.stats('nope'), null);
});

void test('a caller id deduplicates within the window, then is refused while the job exists', () => {
  const h = new Harness({ dedupWindowMs: 1_000 });
  h.add('q', { id: 'order-7' });
  const again = h.add('q', { id: 'order-7', name: 'other' });
  assert.deepEqual(again, { ok: true, id: 'order-7', duplicate: true, state: 'waiting' });
  assert.equal(h.m.stats('q')?.counts.waiting, 1, 'the duplicate added nothing');
  h.timeMs = 999;
  assert.equal(h.add('q', { id: 'order-7' }).duplicate, true, 'still inside the window');
  h.timeMs = 1_000;
  h.refused(
    { op: 'add', queue: 'q', name: 'job', payload: bytes(''), id: 'order-7' },
    'JOB_EXISTS',
  );
  // Past the window and deleted, the id makes a new job, and a new window starts with it.
  h.ok({ op: 'delete', queue: 'q', id: 'order-7' });
  assert.deepEqual(h.add('q', { id: 'order-7' }), {
    ok: true,
    id: 'order-7',
    duplicate: false,
    state: 'waiting',
  });
  h.ok({ op: 'delete', queue: 'q', id: 'order-7' });
  assert.deepEqual(
    h.add('q', { id: 'order-7' }),
    { ok: true, id: 'order-7', duplicate: true, state: null },
    'removed, but inside its window',
  );
});

void test('a bulk add adds its jobs in order, all or none', () => {
  const h = new Harness({ dedupWindowMs: 1_000, maxJobs: 6 });
  h.add('q', { id: 'held' });
  h.tick(2_000); // past held's dedup window: adding it again is refused
  const before = JSON.stringify(h.m.dump());
  const refused = h.refused(
    {
      op: 'addBulk',
      queue: 'q',
      jobs: [
        { name: 'a', payload: bytes('1') },
        { name: 'b', payload: bytes('2'), id: 'held' },
      ],
    },
    'JOB_EXISTS',
  );
  assert.match(refused, /jobs\[1\]/);
  assert.equal(JSON.stringify(h.m.dump()), before, 'nothing of the refused batch was added');
  const r = h.ok({
    op: 'addBulk',
    queue: 'q',
    jobs: [
      { name: 'a', payload: bytes('1'), priority: 5 },
      { name: 'b', payload: bytes('2'), id: 'x' },
      { name: 'c', payload: bytes('3'), id: 'x' },
      { name: 'd', payload: bytes('4'), delayMs: 10 },
    ],
  }) as AddBulkResult;
  assert.deepEqual(r.jobs, [
    { id: '#2', duplicate: false, state: 'waiting' },
    { id: 'x', duplicate: false, state: 'waiting' },
    { id: 'x', duplicate: true, state: 'waiting' },
    { id: '#4', duplicate: false, state: 'delayed' },
  ]);
  assert.equal(h.m.getJob('q', '#2')?.priority, 5);
  assert.equal(h.m.stats('q')?.counts.waiting, 3);
  assert.equal(h.m.stats('q')?.totals.added, 4);
  // Three more would make seven jobs, past the limit of six: none is added.
  const full = h.refused(
    {
      op: 'addBulk',
      queue: 'q',
      jobs: ['e', 'f', 'g'].map((name) => ({ name, payload: bytes('') })),
    },
    'QUEUE_FULL',
  );
  assert.match(full, /nothing of the batch/);
  assert.equal(h.m.stats('q')?.totals.added, 4);
  h.ok({ op: 'addBulk', queue: 'q', jobs: [{ name: 'e', payload: bytes('') }] });
  assert.equal(h.m.stats('q')?.totals.added, 5);
});

void test('a delayed job becomes waiting when command time reaches it', () => {
  const h = new Harness();
  h.timeMs = 10_000;
  h.add('q', { id: 'later', delayMs: 500 });
  assert.equal(h.state('q', 'later'), 'delayed');
  assert.equal(h.m.getJob('q', 'later')?.runAtMs, 10_500);
  assert.equal(h.claim('q').jobs.length, 0);
  h.tick(10_499);
  assert.equal(h.state('q', 'later'), 'delayed');
  h.tick(10_500);
  assert.equal(h.state('q', 'later'), 'waiting');
  assert.equal(h.claimOne('q').job.id, 'later');
});

void test('claim takes the lowest priority number first, FIFO among equals, in batches', () => {
  const h = new Harness();
  for (const [id, priority] of [
    ['a', 5],
    ['b', 1],
    ['c', 5],
    ['d', 1],
    ['e', 0],
  ] as const)
    h.add('q', { id, priority });
  const r = h.claim('q', { max: 4 });
  assert.deepEqual(
    r.jobs.map((c) => c.job.id),
    ['e', 'b', 'd', 'a'],
  );
  assert.ok(
    r.jobs.every((c) => c.token === h.index),
    'the token is the claim command index',
  );
  assert.equal(h.claimOne('q').job.id, 'c');
  assert.deepEqual(h.claim('q'), { ok: true, jobs: [], reason: 'empty' });
  assert.deepEqual(h.claim('unknown'), { ok: true, jobs: [], reason: 'empty' });
});

void test('a heartbeat prolongs the lease; without one the lease expires', () => {
  const h = new Harness();
  h.add('q', { id: 'j', leaseMs: 1_000 });
  const c = h.claimOne('q', { worker: 'w1' });
  assert.equal(c.leaseExpiresMs, 1_000);
  assert.deepEqual(h.ok({ op: 'heartbeat', queue: 'q', id: 'j', token: c.token }, 900), {
    ok: true,
    leaseExpiresMs: 1_900,
  });
  h.tick(1_500);
  assert.equal(h.state('q', 'j'), 'active', 'the heartbeat kept it');
  h.ok({ op: 'heartbeat', queue: 'q', id: 'j', token: c.token, leaseMs: 5_000 }, 1_600);
  h.tick(6_599);
  assert.equal(h.state('q', 'j'), 'active');
  h.tick(6_600);
  assert.notEqual(h.state('q', 'j'), 'active', 'expired at exactly its end');
});

void test('complete, fail, heartbeat and progress with a stale token are refused', () => {
  const h = new Harness();
  h.add('q', { id: 'j', leaseMs: 100, backoff: { kind: 'fixed', delayMs: 0, maxDelayMs: 0 } });
  const first = h.claimOne('q');
  h.tick(100); // the lease expires; the job is waiting again
  const second = h.claimOne('q');
  assert.notEqual(first.token, second.token);
  for (const c of [
    { op: 'complete', queue: 'q', id: 'j', token: first.token },
    { op: 'fail', queue: 'q', id: 'j', token: first.token, error: 'x' },
    { op: 'heartbeat', queue: 'q', id: 'j', token: first.token },
    { op: 'progress', queue: 'q', id: 'j', token: first.token, progress: 50 },
  ] as const)
    assert.match(h.refused(c, 'STALE_TOKEN'), /under token/);
  h.ok({ op: 'progress', queue: 'q', id: 'j', token: second.token, progress: 40 });
  assert.equal(h.m.getJob('q', 'j')?.progress, 40);
  h.ok({ op: 'complete', queue: 'q', id: 'j', token: second.token, result: bytes('done') });
  assert.deepEqual(h.m.getJob('q', 'j')?.result, bytes('done'));
  h.refused({ op: 'complete', queue: 'q', id: 'j', token: second.token }, 'STALE_TOKEN');
  h.refused({ op: 'complete', queue: 'q', id: 'zz', token: second.token }, 'JOB_NOT_FOUND');
});

void test('a report with next claims the next jobs in the same entry, under its index', () => {
  const h = new Harness();
  h.add('q', { id: 'a' });
  h.add('q', { id: 'b', priority: 1 });
  h.add('q', { id: 'c', priority: 1 });
  const a = h.claimOne('q', { worker: 'w' });
  assert.equal(a.job.id, 'a');
  const done = h.ok({
    op: 'complete',
    queue: 'q',
    id: 'a',
    token: a.token,
    next: { max: 2, worker: 'w2', leaseMs: 700 },
  }) as ReportResult;
  assert.equal(done.state, 'completed');
  const claimed = done.next?.jobs ?? [];
  assert.deepEqual(
    claimed.map((c) => c.job.id),
    ['b', 'c'],
  );
  // The fencing token of a job claimed with a report is that entry's index, as for a claim.
  const index = h.index;
  for (const c of claimed) {
    assert.equal(c.token, index);
    assert.equal(h.m.getJob('q', c.job.id)?.worker, 'w2');
    assert.equal(c.leaseExpiresMs, h.timeMs + 700);
  }
  assert.equal(h.m.stats('q')?.totals.claimed, 3);
  // A failure's next claim; the queue is empty now, and the answer says so.
  const failed = h.ok({
    op: 'fail',
    queue: 'q',
    id: 'b',
    token: index,
    error: 'x',
    final: true,
    next: {},
  }) as ReportResult;
  assert.equal(failed.state, 'dead');
  assert.deepEqual(failed.next, { jobs: [], reason: 'empty' });
  // A refused report claims nothing: the job stays waiting for someone else.
  h.add('q', { id: 'd' });
  h.refused({ op: 'complete', queue: 'q', id: 'b', token: index, next: {} }, 'STALE_TOKEN');
  assert.equal(h.state('q', 'd'), 'waiting');
  // Without next the answer has none.
  assert.equal('next' in h.ok({ op: 'complete', queue: 'q', id: 'c', token: index }), false);
});

void test('a bulk report applies each report as its own entry would, in order', () => {
  // Two machines given the same jobs and claims: one reports in one reportBulk, the other in
  // as many single reports. Their answers and their states must agree, refusals included.
  const setup = (): { h: Harness; tokens: number[] } => {
    const h = new Harness();
    for (const id of ['a', 'b', 'c', 'd', 'e']) h.add('q', { id });
    const tokens = [h.claimOne('q', { worker: 'w' }).token];
    tokens.push(h.claimOne('q', { worker: 'w' }).token, h.claimOne('q', { worker: 'w' }).token);
    return { h, tokens };
  };
  const reportsOf = (tokens: number[]): BulkReport[] => [
    { op: 'complete', id: 'a', token: tokens[0] as number, result: bytes('1'), next: { max: 1 } },
    // A stale token: refused in its place, the others unaffected.
    { op: 'complete', id: 'b', token: 999 },
    { op: 'fail', id: 'c', token: tokens[2] as number, error: 'boom', next: { max: 2 } },
    // The same job again: it is no longer active, so STALE_TOKEN, as a second entry would be.
    { op: 'complete', id: 'a', token: tokens[0] as number },
  ];
  const one = setup();
  const bulk = one.h.ok({
    op: 'reportBulk',
    queue: 'q',
    reports: reportsOf(one.tokens),
  }) as ReportBulkResult;
  const two = setup();
  const singles = reportsOf(two.tokens).map((r) => {
    const [result] = two.h.m.apply([two.h.command({ ...r, queue: 'q' })]);
    return result;
  });
  // Tokens of jobs claimed by a report are its entry's index: one entry against four.
  const withoutTokens = (x: unknown): unknown =>
    JSON.parse(
      JSON.stringify(x, (k, v: unknown) => (k === 'token' || k === 'leaseExpiresMs' ? 0 : v)),
    );
  assert.deepEqual(withoutTokens(bulk.results), withoutTokens(singles));
  assert.deepEqual(
    bulk.results.map((r) => (r.ok ? r.state : r.code)),
    ['completed', 'STALE_TOKEN', 'failed', 'STALE_TOKEN'],
  );
  for (const id of ['a', 'b', 'c', 'd', 'e'])
    assert.equal(one.h.state('q', id), two.h.state('q', id), `job ${id}`);
  assert.deepEqual(one.h.m.stats('q')?.totals, two.h.m.stats('q')?.totals);
  // The claims a report carries take jobs under the bulk entry's index, as a single one does.
  const claimed = bulk.results.flatMap((r) => (r.ok ? (r.next?.jobs ?? []) : []));
  assert.deepEqual(
    claimed.map((c) => [c.job.id, c.token]),
    [
      ['d', one.h.index],
      ['e', one.h.index],
    ],
  );
});

void test('a bulk report that is malformed is refused whole, naming the report', () => {
  const h = new Harness();
  const refusal = (reports: unknown): string => {
    const [r] = h.m.apply([h.command({ op: 'reportBulk', queue: 'q', reports } as never)]);
    assert.ok(r !== undefined && 'refused' in r, `refused: ${JSON.stringify(r)}`);
    assert.equal(r.refused, 'BAD_COMMAND');
    return r.message;
  };
  assert.match(refusal([]), /"reports" must be an array of 1 to/);
  assert.match(
    refusal([{ op: 'claim', id: 'a', token: 1 }]),
    /reports\[0\]\.op" must be complete or fail/,
  );
  assert.match(
    refusal([
      { op: 'complete', id: 'a', token: 1 },
      { op: 'fail', id: 'b', token: 1 },
    ]),
    /reports\[1\]: "error" must be a string/,
  );
  assert.match(
    refusal([{ op: 'complete', id: 'a', token: 1, extra: 1 }]),
    /reports\[0\] has an unknown field "extra"/,
  );
});

void test('an expired lease counts an attempt; past max attempts the job is dead', () => {
  const h = new Harness();
  const none = { kind: 'fixed', delayMs: 0, maxDelayMs: 0 } as const;
  h.add('q', { id: 'j', leaseMs: 10, maxAttempts: 2, backoff: none });
  h.claimOne('q');
  h.tick(10);
  assert.deepEqual([h.state('q', 'j'), h.m.getJob('q', 'j')?.attempts], ['waiting', 1]);
  assert.equal(h.m.getJob('q', 'j')?.error, 'lease expired');
  h.claimOne('q');
  h.tick(20);
  assert.deepEqual([h.state('q', 'j'), h.m.getJob('q', 'j')?.attempts], ['dead', 2]);
  const types = h.m.eventsAfter({ index: 0, seq: 0 }, { limit: 100 }).events.map((e) => e.type);
  assert.deepEqual(types, [
    'added',
    'active',
    'stalled',
    'failed',
    'waiting',
    'active',
    'stalled',
    'failed',
    'dead',
  ]);
});

void test('backoff: fixed, and exponential doubling up to its cap', () => {
  assert.equal(backoffMs({ kind: 'fixed', delayMs: 70, maxDelayMs: 70 }, 9), 70);
  const exp = { kind: 'exponential', delayMs: 100, maxDelayMs: 250 } as const;
  assert.deepEqual(
    [1, 2, 3, 4, 60].map((a) => backoffMs(exp, a)),
    [100, 200, 250, 250, 250],
  );
  const h = new Harness();
  h.add('q', { id: 'j', maxAttempts: 4, backoff: exp });
  const waits: number[] = [];
  for (let i = 0; i < 3; i++) {
    const c = h.claimOne('q');
    h.ok({ op: 'fail', queue: 'q', id: 'j', token: c.token, error: `boom ${i}` });
    const job = h.m.getJob('q', 'j');
    assert.equal(job?.state, 'failed');
    waits.push((job?.runAtMs ?? 0) - h.timeMs);
    h.tick(job?.runAtMs ?? 0);
    assert.equal(h.state('q', 'j'), 'waiting');
  }
  assert.deepEqual(waits, [100, 200, 250]);
  const last = h.claimOne('q');
  assert.deepEqual(h.ok({ op: 'fail', queue: 'q', id: 'j', token: last.token, error: 'boom' }), {
    ok: true,
    state: 'dead',
  });
});

void test('a release gives the job back unrun: waiting at once, the attempt not counted', () => {
  // A worker that stopped past its grace failed its jobs, which counted an attempt and waited
  // out the backoff: a job on its last attempt went dead at every deploy (a queue user's find).
  const h = new Harness();
  h.add('q', {
    id: 'j',
    maxAttempts: 1,
    backoff: { kind: 'fixed', delayMs: 1_000, maxDelayMs: 1_000 },
  });
  for (let i = 0; i < 3; i++) {
    const c = h.claimOne('q');
    assert.equal(h.m.getJob('q', 'j')?.attempts, 1);
    assert.deepEqual(
      h.ok({ op: 'fail', queue: 'q', id: 'j', token: c.token, error: 'released', release: true }),
      { ok: true, state: 'waiting' },
    );
    assert.deepEqual(
      [h.m.getJob('q', 'j')?.attempts, h.m.getJob('q', 'j')?.error],
      [0, 'released'],
    );
    // Its token is spent, as after any report.
    h.refused({ op: 'complete', queue: 'q', id: 'j', token: c.token }, 'STALE_TOKEN');
  }
  // Claimable again at once (no backoff), and its one attempt still there to fail.
  const c = h.claimOne('q');
  h.ok({ op: 'fail', queue: 'q', id: 'j', token: c.token, error: 'boom' });
  assert.equal(h.state('q', 'j'), 'dead');
});

void test('counted releases past the queue maxReleases are failed attempts: backoff, then dead', () => {
  // A job whose every worker gave it back (a handler that never ends within a shutdown's grace)
  // waited again at every release and was never dead.
  const h = new Harness();
  h.add('q', {
    id: 'j',
    maxAttempts: 2,
    backoff: { kind: 'fixed', delayMs: 1_000, maxDelayMs: 1_000 },
  });
  assert.equal(h.m.stats('q')?.maxReleases, 3, 'the default');
  const release = (token: number) =>
    h.ok({
      op: 'fail',
      queue: 'q',
      id: 'j',
      token,
      error: 'released',
      release: true,
      counted: true,
    }) as ReportResult;
  const job = () => h.m.getJob('q', 'j');
  for (let i = 1; i <= 3; i++) {
    const r = release(h.claimOne('q').token);
    assert.deepEqual([r.state, r.released], ['waiting', true]);
    assert.deepEqual([job()?.releases, job()?.attempts, job()?.error], [i, 0, 'released']);
  }
  // The fourth: a failed attempt, with its backoff and a reason that says why; the answer
  // says it was no release, so that a worker counts it as the failure it is.
  const failedAt = h.timeMs;
  const fourth = release(h.claimOne('q').token);
  assert.deepEqual([fourth.state, fourth.released], ['failed', false]);
  assert.deepEqual([job()?.releases, job()?.attempts, job()?.runAtMs], [4, 1, failedAt + 1_000]);
  assert.match(
    job()?.error ?? '',
    /^released \(release 4, past the queue's maxReleases of 3: counted as a failed attempt\)$/,
  );
  assert.deepEqual(
    [h.m.stats('q')?.totals.failed, h.m.eventsAfter({ index: 0, seq: 0 }).events.at(-1)?.type],
    [1, 'failed'],
  );
  // Due after its backoff; the fifth release uses its last attempt: dead.
  h.tick(failedAt + 1_000);
  const fifth = release(h.claimOne('q').token);
  assert.deepEqual([fifth.state, fifth.released], ['dead', false]);
  assert.deepEqual([job()?.releases, job()?.attempts], [5, 2]);
  // A retry starts the count again, as it does the attempts.
  h.ok({ op: 'retry', queue: 'q', id: 'j' });
  assert.deepEqual([job()?.releases, job()?.attempts], [0, 0]);
  assert.equal(release(h.claimOne('q').token).state, 'waiting');
  assert.equal(job()?.releases, 1);
});

void test('a release past maxReleases with no backoff to wait out answers waiting, and released false', () => {
  // The state after such a failure is waiting, as after a release: only `released` tells
  // them apart (a Worker counted it released).
  const h = new Harness();
  h.ok({ op: 'configure', queue: 'q', maxReleases: 0 });
  h.add('q', { id: 'j', maxAttempts: 2, backoff: { kind: 'fixed', delayMs: 0, maxDelayMs: 0 } });
  const c = h.claimOne('q');
  const r = h.ok({
    op: 'fail',
    queue: 'q',
    id: 'j',
    token: c.token,
    error: 'stopping',
    release: true,
    counted: true,
    next: { max: 1 },
  }) as ReportResult;
  assert.deepEqual([r.state, r.released], ['waiting', false]);
  // With the claim it carried: the job itself, due again at once, its first attempt counted
  // by the failure and its second by this claim (a release would have left it at 1).
  assert.deepEqual(
    r.next?.jobs.map((j) => [j.job.id, j.job.attempts]),
    [['j', 2]],
  );
});

void test("the queue's maxReleases is a setting: 0 makes every counted release a failed attempt", () => {
  const h = new Harness();
  h.ok({ op: 'configure', queue: 'q', maxReleases: 0 });
  assert.equal(h.m.stats('q')?.maxReleases, 0);
  h.add('q', { id: 'j', maxAttempts: 1 });
  const c = h.claimOne('q');
  const r = h.ok({
    op: 'fail',
    queue: 'q',
    id: 'j',
    token: c.token,
    error: 'stopping',
    release: true,
    counted: true,
  });
  assert.deepEqual(r, { ok: true, state: 'dead', released: false });
  // Settings left out keep it; a value past the limit is refused like any other.
  h.ok({ op: 'configure', queue: 'q', concurrency: 2 });
  assert.equal(h.m.stats('q')?.maxReleases, 0);
  const [bad] = h.m.apply([h.command({ op: 'configure', queue: 'q', maxReleases: -1 })]);
  assert.match(
    (bad as { message: string }).message,
    /"maxReleases" must be an integer from 0 to 1000/,
  );
});

void test('a release not marked counted (proposed below the feature level) is neither counted nor capped', () => {
  // Until every member counts releases the proposer leaves the mark out, so a member of an
  // older release and this one apply the entry alike.
  const h = new Harness();
  h.ok({ op: 'configure', queue: 'q', maxReleases: 0 });
  h.add('q', { id: 'j', maxAttempts: 1 });
  for (let i = 0; i < 3; i++) {
    const c = h.claimOne('q');
    assert.deepEqual(
      h.ok({ op: 'fail', queue: 'q', id: 'j', token: c.token, error: 'r', release: true }),
      { ok: true, state: 'waiting' },
    );
  }
  assert.deepEqual([h.m.getJob('q', 'j')?.releases, h.m.getJob('q', 'j')?.attempts], [0, 0]);
  // "counted" without "release" means nothing, and is refused.
  const [bad] = h.m.apply([
    h.command({ op: 'fail', queue: 'q', id: 'j', token: 1, error: 'x', counted: true }),
  ]);
  assert.match(
    (bad as { message: string }).message,
    /"counted" must be true, and only with "release"/,
  );
});

void test('a final failure is dead at once; retry brings a dead job back with fresh attempts', () => {
  const h = new Harness();
  h.add('q', { id: 'j', maxAttempts: 5 });
  const c = h.claimOne('q');
  h.ok({ op: 'fail', queue: 'q', id: 'j', token: c.token, error: 'bad input', final: true });
  assert.equal(h.state('q', 'j'), 'dead');
  assert.equal(h.m.getJob('q', 'j')?.error, 'bad input');
  h.ok({ op: 'retry', queue: 'q', id: 'j' });
  assert.deepEqual(
    [h.state('q', 'j'), h.m.getJob('q', 'j')?.attempts, h.m.getJob('q', 'j')?.error],
    ['waiting', 0, null],
  );
  h.refused({ op: 'retry', queue: 'q', id: 'j' }, 'INVALID_STATE');
  h.refused({ op: 'retry', queue: 'q', id: 'nope' }, 'JOB_NOT_FOUND');
});

void test('cancel stops an unfinished job, fences its worker; delete removes any job', () => {
  const h = new Harness();
  h.add('q', { id: 'w' });
  h.add('q', { id: 'a' });
  h.add('q', { id: 'd', delayMs: 1_000 });
  h.ok({ op: 'cancel', queue: 'q', id: 'w' });
  const c = h.claimOne('q');
  assert.equal(c.job.id, 'a');
  h.ok({ op: 'cancel', queue: 'q', id: 'a' });
  h.refused({ op: 'complete', queue: 'q', id: 'a', token: c.token }, 'STALE_TOKEN');
  h.ok({ op: 'cancel', queue: 'q', id: 'd' });
  h.tick(5_000);
  assert.deepEqual(
    ['w', 'a', 'd'].map((id) => h.state('q', id)),
    ['cancelled', 'cancelled', 'cancelled'],
  );
  h.refused({ op: 'cancel', queue: 'q', id: 'w' }, 'INVALID_STATE');
  h.ok({ op: 'retry', queue: 'q', id: 'w' });
  h.ok({ op: 'delete', queue: 'q', id: 'w' });
  assert.equal(h.m.getJob('q', 'w'), null);
  assert.equal(h.m.jobs(), 2);
  h.refused({ op: 'delete', queue: 'q', id: 'w' }, 'JOB_NOT_FOUND');
});

void test('a paused queue hands out nothing until resumed', () => {
  const h = new Harness();
  h.add('q');
  h.ok({ op: 'pause', queue: 'q' });
  // No time to retry at: a pause lasts until someone resumes (before, it said retryAtMs: 0,
  // "now", and a worker that took it at its word claimed again at once, in a loop).
  assert.deepEqual(h.claim('q'), { ok: true, jobs: [], reason: 'paused' });
  assert.equal(h.m.stats('q')?.paused, true);
  h.ok({ op: 'resume', queue: 'q' });
  assert.equal(h.claim('q').jobs.length, 1);
});

void test('a rate limit caps claims per window; the next window opens at its boundary', () => {
  const h = new Harness();
  h.ok({ op: 'configure', queue: 'q', rateLimit: { max: 2, intervalMs: 1_000 } });
  for (let i = 0; i < 5; i++) h.add('q');
  h.timeMs = 300;
  assert.equal(h.m.claimableNow('q', 300), 2);
  assert.equal(h.claim('q', { max: 5 }).jobs.length, 2);
  assert.deepEqual(h.claim('q'), { ok: true, jobs: [], reason: 'rate-limited', retryAtMs: 1_000 });
  // The hint a node reads before proposing a claim: none left in this window, whole in the next.
  assert.equal(h.m.claimableNow('q', 999), 0);
  assert.equal(h.m.claimableNow('q', 1_000), 2);
  h.timeMs = 1_000;
  assert.equal(h.claim('q', { max: 1 }).jobs.length, 1);
  // A clock behind the machine's (a new leader's): judged at the machine's time, one is left.
  assert.equal(h.m.claimableNow('q', 0), 1);
  assert.equal(h.claim('q', { max: 5 }).jobs.length, 1);
  assert.equal((h.claim('q') as ClaimResult & { reason: string }).reason, 'rate-limited');
  h.ok({ op: 'configure', queue: 'q', rateLimit: null });
  assert.equal(h.claim('q').jobs.length, 1);
});

void test('a concurrency limit caps active jobs of the queue', () => {
  const h = new Harness();
  h.ok({ op: 'configure', queue: 'q', concurrency: 2 });
  for (let i = 0; i < 4; i++) h.add('q');
  assert.equal(h.m.claimableNow('q', 0), 2);
  const got = h.claim('q', { max: 3 }).jobs;
  assert.equal(got.length, 2);
  assert.equal(h.m.claimableNow('q', 0), 0);
  assert.deepEqual(h.claim('q'), { ok: true, jobs: [], reason: 'concurrency' });
  const first = got[0];
  assert.ok(first !== undefined);
  h.ok({ op: 'complete', queue: 'q', id: first.job.id, token: first.token });
  assert.equal(h.claim('q', { max: 3 }).jobs.length, 1);
});

void test('retention keeps finished jobs by count and by age', () => {
  const h = new Harness();
  h.ok({
    op: 'configure',
    queue: 'q',
    keepCompleted: { count: 2, ageMs: 0 },
    keepDead: { count: 10, ageMs: 1_000 },
  });
  for (const id of ['a', 'b', 'c']) {
    h.add('q', { id });
    const c = h.claimOne('q');
    h.ok({ op: 'complete', queue: 'q', id, token: c.token });
  }
  assert.deepEqual(
    ['a', 'b', 'c'].map((id) => h.state('q', id)),
    [null, 'completed', 'completed'],
  );
  h.add('q', { id: 'd', maxAttempts: 1 });
  const d = h.claimOne('q');
  h.ok({ op: 'fail', queue: 'q', id: 'd', token: d.token, error: 'x' }, 5_000);
  h.tick(5_999);
  assert.equal(h.state('q', 'd'), 'dead');
  h.tick(6_000);
  assert.equal(h.state('q', 'd'), null, 'aged out');
  // Tightening the count trims at once; an age set later applies to jobs already finished.
  h.ok({ op: 'configure', queue: 'q', keepCompleted: { count: 1, ageMs: 10_000 } });
  assert.deepEqual([h.state('q', 'b'), h.state('q', 'c')], [null, 'completed']);
  h.tick(9_999);
  assert.equal(h.state('q', 'c'), 'completed');
  h.tick(10_000);
  assert.equal(h.state('q', 'c'), null, 'c finished at 0 and is 10 s old');
  assert.deepEqual(h.m.stats('q')?.counts, {
    waiting: 0,
    delayed: 0,
    active: 0,
    completed: 0,
    failed: 0,
    dead: 0,
    cancelled: 0,
  });
});

void test('an interval repeatable fires on its grid; a gap fires at most one missed run', () => {
  const h = new Harness();
  h.timeMs = 500;
  assert.deepEqual(
    h.ok({
      op: 'repeat',
      queue: 'q',
      repeatId: 'r',
      everyMs: 1_000,
      name: 'beat',
      payload: bytes('x'),
    }),
    { ok: true, nextRunMs: 1_500 },
  );
  h.tick(1_499);
  assert.equal(h.m.stats('q')?.counts.waiting, 0);
  h.tick(1_500);
  assert.equal(h.state('q', 'r@1500'), 'waiting');
  // No command between 1.5 s and 9.7 s: one job for the first missed run, then the grid on.
  h.tick(9_700);
  assert.equal(h.m.stats('q')?.counts.waiting, 2);
  assert.equal(h.state('q', 'r@2500'), 'waiting');
  assert.equal(h.m.repeatablesOf('q')[0]?.nextMs, 10_500);
  // Upserting the same schedule keeps the next run; a new schedule restarts from now.
  h.ok({
    op: 'repeat',
    queue: 'q',
    repeatId: 'r',
    everyMs: 1_000,
    name: 'beat2',
    payload: bytes('y'),
  });
  assert.equal(h.m.repeatablesOf('q')[0]?.nextMs, 10_500);
  h.ok({
    op: 'repeat',
    queue: 'q',
    repeatId: 'r',
    everyMs: 300,
    name: 'beat2',
    payload: bytes('y'),
  });
  assert.equal(h.m.repeatablesOf('q')[0]?.nextMs, 10_000);
  h.ok({ op: 'unrepeat', queue: 'q', repeatId: 'r' });
  h.tick(20_000);
  assert.equal(h.m.stats('q')?.counts.waiting, 2, 'removed: fires no more');
  h.refused({ op: 'unrepeat', queue: 'q', repeatId: 'r' }, 'REPEATABLE_NOT_FOUND');
});

void test('a cron repeatable fires at its minutes, once after a gap, never twice for one time', () => {
  const h = new Harness();
  const t0 = Date.UTC(2026, 0, 1, 10, 7);
  h.timeMs = t0;
  const r = h.ok({
    op: 'repeat',
    queue: 'q',
    repeatId: 'c',
    cron: '*/15 * * * *',
    name: 'cron',
    payload: bytes(''),
  });
  assert.deepEqual(r, { ok: true, nextRunMs: Date.UTC(2026, 0, 1, 10, 15) });
  h.tick(Date.UTC(2026, 0, 1, 10, 15, 30));
  assert.equal(h.state('q', `c@${Date.UTC(2026, 0, 1, 10, 15)}`), 'waiting');
  h.tick(Date.UTC(2026, 0, 1, 10, 16)); // nothing new in the same quarter
  assert.equal(h.m.stats('q')?.counts.waiting, 1);
  h.tick(Date.UTC(2026, 0, 1, 13, 1)); // three hours without commands
  assert.equal(h.m.stats('q')?.counts.waiting, 2);
  assert.equal(h.state('q', `c@${Date.UTC(2026, 0, 1, 10, 30)}`), 'waiting');
  assert.equal(h.m.repeatablesOf('q')[0]?.nextMs, Date.UTC(2026, 0, 1, 13, 15));
  h.refused(
    {
      op: 'repeat',
      queue: 'q',
      repeatId: 'never',
      cron: '0 0 30 2 *',
      name: 'n',
      payload: bytes(''),
    },
    'CRON_NEVER_FIRES',
  );
});

void test('events carry positions, filter by queue, and tell a reader that fell behind', () => {
  const h = new Harness({ maxEvents: 4, maxPageSize: 4 });
  h.add('a');
  h.add('b');
  const all = h.m.eventsAfter({ index: 0, seq: 0 });
  assert.deepEqual(
    all.events.map((e) => [e.index, e.seq, e.type, e.queue]),
    [
      [1, 1, 'added', 'a'],
      [2, 1, 'added', 'b'],
    ],
  );
  assert.equal(all.behind, false);
  const c = h.claim('a').jobs[0];
  assert.ok(c !== undefined);
  h.ok({ op: 'progress', queue: 'a', id: c.job.id, token: c.token, progress: 10 });
  h.ok({ op: 'complete', queue: 'a', id: c.job.id, token: c.token });
  const late = h.m.eventsAfter({ index: 0, seq: 0 });
  assert.equal(late.behind, true, 'the first event was trimmed');
  assert.deepEqual(
    late.events.map((e) => e.type),
    ['added', 'active', 'progress', 'completed'],
  );
  const fromB = h.m.eventsAfter({ index: 2, seq: 1 }, { queue: 'a' });
  assert.equal(fromB.behind, false, 'nothing after index 2 was trimmed');
  assert.deepEqual(
    fromB.events.map((e) => e.detail),
    [null, 10, null],
  );
  const page = h.m.eventsAfter({ index: 2, seq: 1 }, { limit: 1 });
  assert.equal(page.events.length, 1);
  assert.deepEqual(h.m.eventsAfter(page.next).events[0]?.type, 'progress');
});

void test('list pages through one state in the order jobs were added', () => {
  const h = new Harness({ maxListScan: 3, maxPageSize: 3 });
  for (let i = 0; i < 7; i++) h.add('q', { id: `j${i}`, delayMs: i % 2 === 0 ? 0 : 50 });
  const listAll = (state: 'waiting' | 'delayed', limit: number) => {
    const seen: string[] = [];
    let after = 0;
    for (let round = 0; round < 10; round++) {
      const page = h.m.list('q', state, { after, limit });
      assert.ok(page.jobs.length <= limit);
      seen.push(...page.jobs.map((j) => j.id));
      if (page.next === null) return seen;
      after = page.next;
    }
    assert.fail(`no end after 10 pages: ${seen.join()}`);
  };
  assert.deepEqual(listAll('waiting', 2), ['j0', 'j2', 'j4', 'j6']);
  // At most 3 jobs looked at per page: the first page of delayed stops at j2 with a cursor.
  const first = h.m.list('q', 'delayed', { limit: 10 });
  assert.deepEqual([first.jobs.map((j) => j.id), first.next], [['j1'], 3]);
  assert.deepEqual(listAll('delayed', 10), ['j1', 'j3', 'j5']);
});

void test('time comes from commands and never goes back', () => {
  const h = new Harness();
  h.add('q', { id: 'j', delayMs: 100 });
  h.tick(1_000);
  h.add('q', { id: 'k', delayMs: 100 });
  h.ok({ op: 'tick' }, 0); // a command without a time, or an older leader's clock
  assert.equal(h.m.timeMs(), 1_000);
  assert.equal(h.m.getJob('q', 'k')?.runAtMs, 1_100);
});

void test('undecodable or invalid commands are refused as BAD_COMMAND and change nothing', () => {
  const m = new QueueStateMachine({ maxPayloadBytes: 4 });
  const before = JSON.stringify(m.dump());
  const payloads = [
    new Uint8Array([0xc1]),
    QueueStateMachine.encode({ op: 'add', queue: 'q', name: 'n', payload: bytes('12345') }),
    QueueStateMachine.encode({ op: 'add', queue: 'bad name', name: 'n', payload: bytes('') }),
    QueueStateMachine.encode({ op: 'add', queue: 'q', name: 'n', payload: bytes(''), id: '#5' }),
    QueueStateMachine.encode({ op: 'claim', queue: 'q', max: 0 }),
    QueueStateMachine.encode({
      op: 'repeat',
      queue: 'q',
      repeatId: 'r',
      name: 'n',
      payload: bytes(''),
    }),
    QueueStateMachine.encode({
      op: 'repeat',
      queue: 'q',
      repeatId: 'r',
      name: 'n',
      payload: bytes(''),
      cron: '61 * * * *',
    }),
    QueueStateMachine.encode({ op: 'tick', extra: 1 } as never),
    QueueStateMachine.encode({ op: 'launch' } as never),
    QueueStateMachine.encode({
      op: 'complete',
      queue: 'q',
      id: 'j',
      token: 1,
      next: { max: 0 },
    }),
    QueueStateMachine.encode({ op: 'addBulk', queue: 'q', jobs: [] }),
    QueueStateMachine.encode({
      op: 'addBulk',
      queue: 'q',
      jobs: [
        { name: 'n', payload: bytes('') },
        { name: 'n', payload: bytes('12345') },
      ],
    }),
    QueueStateMachine.encode({
      op: 'fail',
      queue: 'q',
      id: 'j',
      token: 1,
      error: 'e',
      next: { colour: 'red' },
    } as never),
  ];
  const results = m.apply(
    payloads.map((payload, i) => ({ index: i + 1, term: 1, timeMs: 5, payload })),
  );
  for (const r of results)
    assert.ok(r !== undefined && 'refused' in r && r.refused === 'BAD_COMMAND', JSON.stringify(r));
  assert.match(JSON.stringify(results[1]), /payload.*5 bytes; the limit is 4/);
  assert.match(JSON.stringify(results[6]), /minute field/);
  assert.equal(JSON.stringify(m.dump()), before);
});

void test('limits: jobs, queues and repeatables are refused past their maximum', () => {
  const h = new Harness({ maxJobs: 2, maxQueues: 2, maxRepeatables: 1 });
  h.add('a');
  h.add('b');
  h.refused({ op: 'add', queue: 'a', name: 'n', payload: bytes('') }, 'QUEUE_FULL');
  h.refused({ op: 'pause', queue: 'c' }, 'TOO_MANY_QUEUES');
  h.ok({ op: 'repeat', queue: 'a', repeatId: 'r', everyMs: 10, name: 'n', payload: bytes('') });
  h.refused(
    { op: 'repeat', queue: 'a', repeatId: 's', everyMs: 10, name: 'n', payload: bytes('') },
    'TOO_MANY_REPEATABLES',
  );
});

void test('a queue stays, and counts against maxQueues, once its every job is gone', () => {
  // No command removes a queue (API.md, "Job queue"): the names a cluster ever used hold
  // maxQueues places for good, empty or not.
  const h = new Harness({ maxQueues: 2 });
  const { id } = h.add('a');
  h.ok({ op: 'delete', queue: 'a', id });
  h.ok({ op: 'pause', queue: 'b' });
  h.ok({ op: 'resume', queue: 'b' });
  assert.deepEqual(h.m.stats('a')?.counts.waiting, 0);
  h.refused({ op: 'add', queue: 'c', name: 'n', payload: bytes('') }, 'TOO_MANY_QUEUES');
});

void test('limits that contradict each other are refused at construction, naming both', () => {
  assert.doesNotThrow(() => new QueueStateMachine());
  assert.throws(() => new QueueStateMachine({ maxListScan: 10 }), {
    code: 'CONFIG_INVALID',
    conflict: ['maxPageSize', 'maxListScan'],
  });
  assert.throws(
    () => new QueueStateMachine({ maxEvents: 5 }),
    /maxEvents \(5\) is below maxPageSize/,
  );
  assert.throws(() => new QueueStateMachine({ maxJobs: 0 }), /maxJobs must be a positive integer/);
  assert.throws(() => new QueueStateMachine({ maxQueues: 1.5 }), /maxQueues/);
});

void test('the invariant check catches a job filed in the wrong index (planted)', () => {
  const h = new Harness();
  h.add('q', { id: 'j' });
  h.add('q', { id: 'k', delayMs: 10 });
  assert.deepEqual(h.m.checkInvariants(), []);
  // Reach into the machine as a bug would: flip a waiting job's state without moving it.
  const internals = h.m as unknown as {
    s: { queues: Map<string, { jobs: Map<string, { state: string }> }> };
  };
  const job = internals.s.queues.get('q')?.jobs.get('j');
  assert.ok(job !== undefined);
  job.state = 'active';
  const problems = h.m.checkInvariants();
  assert.ok(
    problems.some((p) => p.includes('not in the lease heap')),
    problems.join('; '),
  );
  assert.ok(
    problems.some((p) => p.includes('counts')),
    problems.join('; '),
  );
});

void test('a claim bounded in bytes stops before the job that would pass the bound; the first is always taken', () => {
  // 256 jobs of 256 KiB in one claim made a 64 MiB answer that stalled every member.
  const h = new Harness();
  for (const [id, size] of [
    ['a', 100],
    ['b', 100],
    ['c', 500],
    ['d', 10],
  ] as const)
    h.add('q', { id, payload: new Uint8Array(size) });
  const ids = (r: ClaimResult): string[] => r.jobs.map((c) => c.job.id);
  assert.deepEqual(ids(h.claim('q', { max: 10, maxBytes: 250 })), ['a', 'b']);
  // Larger than the bound alone, but first: taken, and nothing after it.
  assert.deepEqual(ids(h.claim('q', { max: 10, maxBytes: 50 })), ['c']);
  assert.deepEqual(ids(h.claim('q', { max: 10 })), ['d']);
});

void test('a rate window counts the jobs a bounded claim took, not the ones it asked for', () => {
  const h = new Harness();
  h.ok({ op: 'configure', queue: 'q', rateLimit: { max: 3, intervalMs: 1_000 } });
  for (const id of ['a', 'b', 'c', 'd']) h.add('q', { id, payload: new Uint8Array(100) });
  const ids = (r: ClaimResult): string[] => r.jobs.map((c) => c.job.id);
  assert.deepEqual(ids(h.claim('q', { max: 10, maxBytes: 250 })), ['a', 'b']);
  assert.deepEqual(ids(h.claim('q', { max: 10 })), ['c']);
  const none = h.claim('q', { max: 10 });
  assert.deepEqual([none.jobs.length, 'reason' in none && none.reason], [0, 'rate-limited']);
});

void test('a page of a list ends at maxAnswerBytes of data and results, with a cursor to go on', () => {
  const h = new Harness({ maxAnswerBytes: 250 });
  for (const id of ['a', 'b', 'c', 'd']) h.add('q', { id, payload: new Uint8Array(100) });
  h.add('q', { id: 'big', payload: new Uint8Array(1_000) });
  const seen: string[][] = [];
  let after = 0;
  for (let i = 0; i < 10; i++) {
    const page = h.m.list('q', 'waiting', { after, limit: 100 });
    seen.push(page.jobs.map((j) => j.id));
    if (page.next === null) break;
    after = page.next;
  }
  assert.deepEqual(seen, [['a', 'b'], ['c', 'd'], ['big']]);
});
