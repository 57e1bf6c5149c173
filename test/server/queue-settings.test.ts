// A queue's settings and its repeatable jobs over HTTP on real nodes: configure through a
// follower, read the settings back in stats, see each limit act on claims, and create, replace,
// list (in pages) and remove repeatable jobs, whose jobs the leader's tick adds.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { FlotillaClient, type FlotillaError } from '../../src/client/index.js';
import { TestNodes, postJson } from './nodes.js';

type Json = Record<string, unknown>;

let nodes: TestNodes;

before(async () => {
  nodes = await TestNodes.start({ nodes: 3 });
});

after(async () => {
  await nodes.close();
});

/** A member that does not lead the queue group, once every member agrees on its leader. */
async function follower(timeoutMs = 10_000): Promise<number> {
  const l = await nodes.waitForQueueLeader(timeoutMs);
  return l === 1 ? 2 : 1;
}

async function post(id: number, path: string, body: Json): Promise<{ status: number; json: Json }> {
  const r = await postJson(`${nodes.url(id)}/v1/queue/${path}`, body, { timeoutMs: 15_000 });
  return { status: r.status, json: r.json };
}

async function ok(id: number, path: string, body: Json): Promise<Json> {
  const r = await post(id, path, body);
  assert.equal(r.status, 200, `${path} ${JSON.stringify(body)}: ${JSON.stringify(r.json)}`);
  return r.json;
}

async function refused(id: number, path: string, body: Json): Promise<[number, unknown]> {
  const r = await post(id, path, body);
  return [r.status, (r.json['error'] as Json | undefined)?.['code']];
}

async function stats(id: number, queue: string): Promise<Json> {
  return (await ok(id, 'stats', { queue }))['stats'] as Json;
}

void test('configure sets the limits, stats reads them back, and claims obey them', async () => {
  const f = await follower();
  for (let i = 0; i < 3; i++) await ok(f, 'add', { queue: 'limited', name: `j${i}` });
  await ok(f, 'configure', { queue: 'limited', concurrency: 1 });
  const s = await stats(f, 'limited');
  assert.equal(s['concurrency'], 1);
  assert.equal(s['rateLimit'], null);
  const first = await ok(f, 'claim', { queue: 'limited', max: 3 });
  assert.equal((first['jobs'] as unknown[]).length, 1, 'one active at once');
  const second = await ok(f, 'claim', { queue: 'limited' });
  assert.equal(second['reason'], 'concurrency', JSON.stringify(second));
  // Lifting the concurrency limit and setting a rate of one claim an hour: one more, then no.
  await ok(f, 'configure', {
    queue: 'limited',
    concurrency: null,
    rateLimit: { max: 1, intervalMs: 3_600_000 },
  });
  assert.deepEqual((await stats(f, 'limited'))['rateLimit'], { max: 1, intervalMs: 3_600_000 });
  assert.equal((await stats(f, 'limited'))['concurrency'], null);
  const third = await ok(f, 'claim', { queue: 'limited', max: 2 });
  assert.equal((third['jobs'] as unknown[]).length, 1, JSON.stringify(third));
  const fourth = await ok(f, 'claim', { queue: 'limited' });
  assert.equal(fourth['reason'], 'rate-limited', JSON.stringify(fourth));
  assert.ok((fourth['retryAtMs'] as number) > 0);
  await ok(f, 'configure', { queue: 'limited', rateLimit: null });
  assert.equal(((await ok(f, 'claim', { queue: 'limited' }))['jobs'] as unknown[]).length, 1);
});

void test('a claim on a paused queue says paused with no time to retry at; a waiting claim gets the job once resumed', async () => {
  const f = await follower();
  await ok(f, 'add', { queue: 'held', name: 'j' });
  await ok(f, 'pause', { queue: 'held' });
  // Before, the answer carried retryAtMs: 0, which reads as "retry now": a worker that took
  // it at its word claimed again at once, in a loop, for as long as the pause lasted.
  const paused = await ok(f, 'claim', { queue: 'held' });
  delete paused['header'];
  assert.deepEqual(paused, { jobs: [], reason: 'paused' });
  // What the answer tells a worker to do: wait with waitMs, which returns once resumed.
  const waiting = post(f, 'claim', { queue: 'held', waitMs: 10_000 });
  await ok(f, 'resume', { queue: 'held' });
  const got = await waiting;
  assert.equal(got.status, 200, JSON.stringify(got.json));
  assert.equal((got.json['jobs'] as unknown[]).length, 1, JSON.stringify(got.json));
});

void test('retention set by configure removes finished jobs past the count', async () => {
  const f = await follower();
  await ok(f, 'configure', {
    queue: 'kept',
    keepCompleted: { count: 1 },
    keepDead: { count: 5, ageMs: 60_000 },
  });
  const s = await stats(f, 'kept');
  assert.deepEqual(s['keepCompleted'], { count: 1, ageMs: 0 });
  assert.deepEqual(s['keepDead'], { count: 5, ageMs: 60_000 });
  const ids: string[] = [];
  for (let i = 0; i < 2; i++) {
    const { id } = (await ok(f, 'add', { queue: 'kept', name: 'n' })) as { id: string };
    const c = (await ok(f, 'claim', { queue: 'kept' }))['jobs'] as { token: number }[];
    await ok(f, 'complete', { queue: 'kept', id, token: c[0]?.token ?? 0 });
    ids.push(id);
  }
  assert.deepEqual(await refused(f, 'get', { queue: 'kept', id: ids[0] }), [404, 'JOB_NOT_FOUND']);
  assert.equal(((await stats(f, 'kept'))['counts'] as Json)['completed'], 1);
});

void test('settings and repeatable requests are validated before anything is proposed', async () => {
  const f = await follower();
  const cases: [string, Json, number, string][] = [
    ['configure', { queue: 'bad', colour: 'red' }, 400, 'UNKNOWN_FIELD'],
    ['configure', { queue: 'bad' }, 400, 'BAD_REQUEST'],
    ['configure', { queue: 'bad', concurrency: 0 }, 400, 'BAD_REQUEST'],
    ['configure', { queue: 'bad', rateLimit: { max: 1 } }, 400, 'BAD_REQUEST'],
    [
      'configure',
      { queue: 'bad', rateLimit: { max: 1, intervalMs: 1, x: 1 } },
      400,
      'UNKNOWN_FIELD',
    ],
    ['configure', { queue: 'bad', keepDead: { count: -1 } }, 400, 'BAD_REQUEST'],
    ['repeat/upsert', { queue: 'bad', repeatId: 'r', name: 'n' }, 400, 'BAD_REQUEST'],
    [
      'repeat/upsert',
      { queue: 'bad', repeatId: 'r', name: 'n', everyMs: 10, cron: '* * * * *' },
      400,
      'BAD_REQUEST',
    ],
    [
      'repeat/upsert',
      { queue: 'bad', repeatId: 'r', name: 'n', cron: '61 * * * *' },
      400,
      'BAD_REQUEST',
    ],
    [
      'repeat/upsert',
      { queue: 'bad', repeatId: 'has space', name: 'n', everyMs: 10 },
      400,
      'BAD_REQUEST',
    ],
    ['repeat/upsert', { queue: 'bad', repeatId: 'r', name: 'n', everyMs: 0 }, 400, 'BAD_REQUEST'],
    ['repeat/remove', { queue: 'bad', repeatId: 'r', extra: 1 }, 400, 'UNKNOWN_FIELD'],
    ['repeat/list', { queue: 'bad', limit: 0 }, 400, 'BAD_REQUEST'],
  ];
  for (const [path, body, status, code] of cases)
    assert.deepEqual(
      await refused(f, path, body),
      [status, code],
      `${path} ${JSON.stringify(body)}`,
    );
  assert.equal(await stats(f, 'bad'), null, 'no refused request created the queue');
  // Refusals of the machine itself, with their own codes.
  assert.deepEqual(
    await refused(f, 'repeat/upsert', {
      queue: 'bad',
      repeatId: 'r',
      name: 'n',
      cron: '0 0 31 2 *',
    }),
    [400, 'CRON_NEVER_FIRES'],
  );
  assert.deepEqual(await refused(f, 'repeat/remove', { queue: 'bad', repeatId: 'none' }), [
    404,
    'REPEATABLE_NOT_FOUND',
  ]);
});

void test('a repeatable job adds jobs on its schedule; upsert replaces it, remove stops it', async () => {
  const f = await follower();
  const up = await ok(f, 'repeat/upsert', {
    queue: 'cronq',
    repeatId: 'beat',
    everyMs: 500,
    name: 'beat',
    data: { n: 1 },
    priority: 2,
    maxAttempts: 4,
  });
  assert.ok((up['nextRunMs'] as number) > 0, JSON.stringify(up));
  const listed = (await ok(f, 'repeat/list', { queue: 'cronq' }))['repeatables'] as Json[];
  assert.equal(listed.length, 1);
  assert.deepEqual(
    [listed[0]?.['repeatId'], listed[0]?.['everyMs'], listed[0]?.['cron'], listed[0]?.['data']],
    ['beat', 500, null, { n: 1 }],
  );
  assert.equal(listed[0]?.['priority'], 2);
  assert.equal(listed[0]?.['maxAttempts'], 4);
  // The leader ticks every second: jobs appear without anyone adding them.
  const deadline = Date.now() + 10_000;
  let jobs: Json[] = [];
  while (jobs.length === 0 && Date.now() < deadline) {
    jobs = (await ok(f, 'list', { queue: 'cronq', state: 'waiting' }))['jobs'] as Json[];
    if (jobs.length === 0) await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(jobs.length > 0, 'the repeatable job added a job within 10 s');
  assert.equal(jobs[0]?.['repeatId'], 'beat');
  assert.deepEqual(jobs[0]?.['data'], { n: 1 });
  assert.match(jobs[0]?.['id'] as string, /^beat@\d+$/);
  // Same id, a cron schedule now: replaced, not added.
  await ok(f, 'repeat/upsert', { queue: 'cronq', repeatId: 'beat', cron: '0 3 * * *', name: 'b2' });
  const replaced = (await ok(f, 'repeat/list', { queue: 'cronq' }))['repeatables'] as Json[];
  assert.deepEqual(
    replaced.map((r) => [r['repeatId'], r['cron'], r['everyMs'], r['name']]),
    [['beat', '0 3 * * *', null, 'b2']],
  );
  await ok(f, 'repeat/remove', { queue: 'cronq', repeatId: 'beat' });
  assert.deepEqual((await ok(f, 'repeat/list', { queue: 'cronq' }))['repeatables'], []);
});

void test('repeatable jobs list in pages by id', async () => {
  const f = await follower();
  for (const id of ['c', 'a', 'b'])
    await ok(f, 'repeat/upsert', { queue: 'paged', repeatId: id, name: 'n', cron: '0 0 1 1 *' });
  const p1 = await ok(f, 'repeat/list', { queue: 'paged', limit: 2 });
  assert.deepEqual(
    (p1['repeatables'] as Json[]).map((r) => r['repeatId']),
    ['a', 'b'],
  );
  assert.equal(p1['next'], 'b');
  const p2 = await ok(f, 'repeat/list', { queue: 'paged', limit: 2, after: 'b' });
  assert.deepEqual(
    (p2['repeatables'] as Json[]).map((r) => r['repeatId']),
    ['c'],
  );
  assert.equal(p2['next'], null);
});

void test('the client: configure, repeat, repeatables and unrepeat', async () => {
  const f = await follower();
  const client = new FlotillaClient({ endpoints: [nodes.url(f)] });
  try {
    const q = client.queue('client-settings');
    await q.configure({ concurrency: 3, keepCompleted: { count: 10, ageMs: 1_000 } });
    const s = (await q.stats()).stats;
    assert.equal(s?.concurrency, 3);
    assert.deepEqual(s?.keepCompleted, { count: 10, ageMs: 1_000 });
    const r = await q.repeat('nightly', { report: true }, { cron: '30 2 * * *', name: 'report' });
    assert.equal(new Date(r.nextRunMs).getUTCHours(), 2);
    assert.equal(new Date(r.nextRunMs).getUTCMinutes(), 30);
    const page = await q.repeatables<{ report: boolean }>();
    assert.deepEqual(
      page.repeatables.map((x) => [x.repeatId, x.name, x.data, x.nextRunMs]),
      [['nightly', 'report', { report: true }, r.nextRunMs]],
    );
    await q.unrepeat('nightly');
    await assert.rejects(q.unrepeat('nightly'), (e: FlotillaError) => {
      assert.equal(e.code, 'REPEATABLE_NOT_FOUND');
      return true;
    });
  } finally {
    await client.close();
  }
});

void test('a refused field is named in full, and priority has the one range the queue keeps', async () => {
  const f = await follower();
  const cases: [string, Json, RegExp][] = [
    [
      'add',
      { queue: 'named', name: 'n', priority: -5 },
      /"priority" must be an integer in \[0, 1000000\]/,
    ],
    [
      'add',
      { queue: 'named', name: 'n', priority: '1' },
      /"priority" must be an integer in \[0, 1000000\]/,
    ],
    [
      'repeat/upsert',
      { queue: 'named', repeatId: 'r', name: 'n', everyMs: 10, priority: 1_000_001 },
      /"priority" must be an integer in \[0, 1000000\]/,
    ],
    ['add', { queue: 'named', name: 'n', backoff: { delayMs: 5 } }, /"backoff\.kind"/],
    [
      'add',
      { queue: 'named', name: 'n', backoff: { kind: 'fixed', delayMs: -1 } },
      /"backoff\.delayMs"/,
    ],
    [
      'add',
      { queue: 'named', name: 'n', backoff: { kind: 'fixed', delayMs: 1, maxDelayMs: -1 } },
      /"backoff\.maxDelayMs"/,
    ],
    ['configure', { queue: 'named', rateLimit: { max: 0, intervalMs: 1 } }, /"rateLimit\.max"/],
    [
      'configure',
      { queue: 'named', rateLimit: { max: 1, intervalMs: 0 } },
      /"rateLimit\.intervalMs"/,
    ],
    ['configure', { queue: 'named', keepDead: { count: -1 } }, /"keepDead\.count"/],
    [
      'configure',
      { queue: 'named', keepCompleted: { count: 1, ageMs: -1 } },
      /"keepCompleted\.ageMs"/,
    ],
    ['complete', { queue: 'named', id: 'x', token: 1, next: { max: 0 } }, /"next\.max"/],
    ['events', { queue: 'named', after: { index: -1, seq: 0 } }, /"after\.index"/],
  ];
  for (const [path, body, message] of cases) {
    const r = await post(f, path, body);
    const error = r.json['error'] as Json | undefined;
    assert.equal(r.status, 400, `${path} ${JSON.stringify(body)}: ${JSON.stringify(r.json)}`);
    assert.equal(error?.['code'], 'BAD_REQUEST');
    assert.match(String(error?.['message']), message, `${path} ${JSON.stringify(body)}`);
  }
  // The ends of the range are taken.
  await ok(f, 'add', { queue: 'named', name: 'n', priority: 0 });
  await ok(f, 'add', { queue: 'named', name: 'n', priority: 1_000_000 });
});

void test('a read of a queue name no queue can have is refused, not answered empty', async () => {
  const f = await follower();
  const reads: [string, Json][] = [
    ['stats', { queue: 'no such' }],
    ['list', { queue: 'no such', state: 'waiting' }],
    ['get', { queue: 'no such', id: 'j' }],
    ['events', { queue: 'no such' }],
    ['repeat/list', { queue: '' }],
    ['stats', { queue: 'q'.repeat(129) }],
  ];
  for (const [path, body] of reads) {
    const r = await post(f, path, body);
    const error = r.json['error'] as Json | undefined;
    assert.deepEqual(
      [r.status, error?.['code']],
      [400, 'BAD_REQUEST'],
      `${path} ${JSON.stringify(body)}: ${JSON.stringify(r.json)}`,
    );
    assert.match(String(error?.['message']), /"queue" must be 1 to 128 letters/);
  }
  // A well-formed name of no queue is still an unknown queue, and the queue's own job ids read.
  assert.equal(await stats(f, 'never-made'), null);
  const { id } = (await ok(f, 'add', { queue: 'readable', name: 'n' })) as { id: string };
  assert.match(id, /^#/);
  assert.equal(((await ok(f, 'get', { queue: 'readable', id }))['job'] as Json)['id'], id);
});

void test('a waiting claim proposes nothing while the concurrency or rate limit leaves no room', async () => {
  // With a session (as the client's claims carry) a claim proposed under a full limit came
  // back empty at once, and the worker claimed again: about 550 queue entries a second for a
  // worker held back by its limit (found by a user). Now it waits, as on an empty queue, and
  // is proposed once at its deadline, or when room is made.
  const l = await nodes.waitForQueueLeader();
  const svc = nodes.node(l).queueService;
  const write = svc.write.bind(svc);
  let proposed = 0;
  svc.write = (cmd, session, w) => {
    if (cmd.op === 'claim' && cmd.queue.startsWith('held-')) proposed++;
    return write(cmd, session, w);
  };
  try {
    const firsts = new Map<string, Json>();
    for (const [queue, setting] of [
      ['held-conc', { concurrency: 1 }],
      ['held-rate', { rateLimit: { max: 1, intervalMs: 3_600_000 } }],
    ] as const) {
      for (let i = 0; i < 2; i++) await ok(l, 'add', { queue, name: `j${i}` });
      await ok(l, 'configure', { queue, ...setting });
      const first = await ok(l, 'claim', { queue, clientId: `${queue}-w`, seq: 1 });
      assert.equal((first['jobs'] as unknown[]).length, 1, JSON.stringify(first));
      firsts.set(queue, (first['jobs'] as Json[])[0] as Json);
      proposed = 0;
      const held = await ok(l, 'claim', { queue, waitMs: 1_500, clientId: `${queue}-w`, seq: 2 });
      assert.equal(
        held['reason'],
        queue === 'held-conc' ? 'concurrency' : 'rate-limited',
        JSON.stringify(held),
      );
      assert.equal(proposed, 1, `${proposed} claims went through the log while held back`);
    }
    // Room made (the active job completes): the waiting claim is proposed and takes the job.
    const claimed = firsts.get('held-conc') as Json;
    const waiting = post(l, 'claim', {
      queue: 'held-conc',
      waitMs: 10_000,
      clientId: 'held-conc-w2',
      seq: 1,
    });
    await ok(l, 'complete', {
      queue: 'held-conc',
      id: (claimed['job'] as Json)['id'],
      token: claimed['token'],
    });
    const got = await waiting;
    assert.equal((got.json['jobs'] as unknown[]).length, 1, JSON.stringify(got.json));
  } finally {
    svc.write = write;
  }
});
