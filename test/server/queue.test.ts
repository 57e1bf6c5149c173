// The job queue as the second Raft group of real nodes (storage, TCP between peers, HTTP on
// 127.0.0.1): writes through a follower reach the queue group's leader, fencing tokens are
// checked, the leader's tick expires an abandoned lease, and the queue group serves while the
// key-value group is busy. Jobs surviving a restart of every node, with either storage kind, is
// queue-restart.test.ts.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { QUEUE_GROUP, KV_GROUP } from '../../src/server/node.js';
import { FlotillaClient, type FlotillaError } from '../../src/client/index.js';
import { TestNodes, postJson } from './nodes.js';
import { until } from '../support/until.js';

type Json = Record<string, unknown>;

let nodes: TestNodes;

before(async () => {
  nodes = await TestNodes.start({ nodes: 3 });
});

after(async () => {
  await nodes.close();
});

function queueLeader(timeoutMs = 10_000): Promise<number> {
  return nodes.waitForQueueLeader(timeoutMs);
}

async function follower(): Promise<number> {
  const leader = await queueLeader();
  return leader === 1 ? 2 : 1;
}

async function post(id: number, path: string, body: Json): Promise<{ status: number; json: Json }> {
  const r = await postJson(`${nodes.url(id)}/v1/queue/${path}`, body, { timeoutMs: 15_000 });
  return { status: r.status, json: r.json };
}

/** A call that must succeed: its answer, or a failure naming what came back. */
async function ok(id: number, path: string, body: Json): Promise<Json> {
  const r = await post(id, path, body);
  assert.equal(r.status, 200, `${path} ${JSON.stringify(body)}: ${JSON.stringify(r.json)}`);
  return r.json;
}

function errorCode(r: { json: Json }): unknown {
  return (r.json['error'] as Json | undefined)?.['code'];
}

interface ClaimedJson {
  job: Json;
  token: number;
  leaseExpiresMs: number;
}

async function claimOne(id: number, body: Json): Promise<ClaimedJson> {
  const r = await ok(id, 'claim', body);
  const jobs = r['jobs'] as ClaimedJson[];
  assert.equal(jobs.length, 1, `one job claimed: ${JSON.stringify(r)}`);
  return jobs[0] as ClaimedJson;
}

/** Polls a job until `pred` holds, for at most `timeoutMs`; fails with the last state seen. */
async function waitForJob(
  id: number,
  queue: string,
  job: string,
  pred: (j: Json) => boolean,
  timeoutMs: number,
): Promise<Json> {
  const deadline = Date.now() + timeoutMs;
  let last: Json = {};
  while (Date.now() < deadline) {
    last = (await ok(id, 'get', { queue, id: job }))['job'] as Json;
    if (pred(last)) return last;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(
    `Job ${job} never matched within ${timeoutMs} ms; last seen ${JSON.stringify(last)}`,
  );
}

void test('the queue runs as its own group on every node, shown in status', async () => {
  await queueLeader();
  for (const n of nodes.nodes) {
    assert.ok(n.host.group(KV_GROUP) !== undefined && n.host.group(QUEUE_GROUP) !== undefined);
    // The key-value group, the queue group and the meta group (the range map).
    assert.equal(n.host.stats().groups, 3);
  }
  // A follower learns the commit of the leader's first entry with its next append: poll.
  let q: Json = {};
  const deadline = Date.now() + 10_000;
  do {
    const res = await fetch(`${nodes.url(1)}/v1/status`);
    q = ((await res.json()) as Json)['queueGroup'] as Json;
    if ((q['commit'] as number) > 0) break;
    await new Promise((r) => setTimeout(r, 20));
  } while (Date.now() < deadline);
  assert.ok(['leader', 'follower'].includes(q['role'] as string), JSON.stringify(q));
  assert.ok(
    (q['commit'] as number) > 0,
    `the queue group committed its first entry: ${JSON.stringify(q)}`,
  );
});

void test('add, claim and complete through a follower reach the queue leader', async () => {
  const f = await follower();
  const added = await ok(f, 'add', { queue: 'mail', name: 'send', data: { to: 'a@b.c' } });
  assert.equal(added['duplicate'], false);
  assert.equal(added['state'], 'waiting');
  const id = added['id'] as string;
  const c = await claimOne(f, { queue: 'mail', worker: 'w1' });
  assert.equal(c.job['id'], id);
  assert.deepEqual(c.job['data'], { to: 'a@b.c' });
  assert.equal(c.job['attempts'], 1);
  const done = await ok(f, 'complete', { queue: 'mail', id, token: c.token, result: [1, 2] });
  assert.equal(done['state'], 'completed');
  // Read on another follower's replica: a linearizable read sees the completion.
  for (const n of nodes.nodes) {
    const job = (await ok(n.config.id, 'get', { queue: 'mail', id }))['job'] as Json;
    assert.equal(job['state'], 'completed', `node ${n.config.id}`);
    assert.deepEqual(job['result'], [1, 2]);
  }
  const stats = (await ok(f, 'stats', { queue: 'mail' }))['stats'] as Json;
  assert.equal((stats['counts'] as Json)['completed'], 1);
  const events = await ok(f, 'events', { queue: 'mail' });
  const types = (events['events'] as Json[]).map((e) => e['type']);
  assert.deepEqual(types, ['added', 'active', 'completed']);
});

void test('a completion claims the next job in the same request and entry (next)', async () => {
  const f = await follower();
  const leader = await queueLeader();
  const first = (await ok(f, 'add', { queue: 'nx', name: 'a', data: 1 }))['id'] as string;
  const second = (await ok(f, 'add', { queue: 'nx', name: 'b', data: { n: 2 } }))['id'] as string;
  const c = await claimOne(f, { queue: 'nx', worker: 'w1' });
  assert.equal(c.job['id'], first);
  const appliedBefore = nodes.node(leader).queueService.runtime.appliedIndex();
  const done = await ok(f, 'complete', {
    queue: 'nx',
    id: first,
    token: c.token,
    next: { worker: 'w2', leaseMs: 60_000 },
  });
  assert.equal(done['state'], 'completed');
  const next = done['next'] as { jobs: ClaimedJson[] };
  assert.equal(next.jobs.length, 1, JSON.stringify(done));
  const n = next.jobs[0] as ClaimedJson;
  assert.equal(n.job['id'], second);
  assert.deepEqual(n.job['data'], { n: 2 });
  assert.equal(n.job['worker'], 'w2');
  assert.equal(n.job['state'], 'active');
  // One entry carried both: the token of the job claimed is the completion's own index.
  assert.ok(n.token > appliedBefore, `token ${n.token} after ${appliedBefore}`);
  const failed = await ok(f, 'fail', {
    queue: 'nx',
    id: second,
    token: n.token,
    error: 'no',
    final: true,
    next: {},
  });
  assert.equal(failed['state'], 'dead');
  assert.deepEqual(failed['next'], { jobs: [], reason: 'empty' });
  const bad = await post(f, 'complete', { queue: 'nx', id: first, token: 1, next: { wait: 1 } });
  assert.equal(errorCode(bad), 'UNKNOWN_FIELD');
  const badMax = await post(f, 'complete', { queue: 'nx', id: first, token: 1, next: { max: 0 } });
  assert.equal(errorCode(badMax), 'BAD_REQUEST');
});

void test('a bulk add through a follower adds its jobs in one write, or refuses them all', async () => {
  const f = await follower();
  const r = await ok(f, 'add-bulk', {
    queue: 'bulk',
    jobs: [
      { name: 'a', data: { n: 1 } },
      { name: 'b', data: [2], id: 'b-1', priority: 1 },
      { name: 'c', delayMs: 60_000 },
    ],
  });
  const jobs = r['jobs'] as Json[];
  assert.deepEqual(
    jobs.map((j) => [j['duplicate'], j['state']]),
    [
      [false, 'waiting'],
      [false, 'waiting'],
      [false, 'delayed'],
    ],
  );
  assert.equal(jobs[1]?.['id'], 'b-1');
  const got = (await ok(f, 'get', { queue: 'bulk', id: 'b-1' }))['job'] as Json;
  assert.deepEqual(got['data'], [2]);
  // One bad job refuses the batch before anything is proposed, naming it.
  const bad = await post(f, 'add-bulk', {
    queue: 'bulk',
    jobs: [{ name: 'ok' }, { name: 'x', maxAttempts: 0 }],
  });
  assert.equal(errorCode(bad), 'BAD_REQUEST');
  assert.match(String((bad.json['error'] as Json)['message']), /jobs\[1\]/);
  const unknown = await post(f, 'add-bulk', { queue: 'bulk', jobs: [{ name: 'x', colour: 1 }] });
  assert.equal(errorCode(unknown), 'UNKNOWN_FIELD');
  const empty = await post(f, 'add-bulk', { queue: 'bulk', jobs: [] });
  assert.equal(errorCode(empty), 'BAD_REQUEST');
  const tooMany = await post(f, 'add-bulk', {
    queue: 'bulk',
    jobs: Array.from({ length: 1_001 }, () => ({ name: 'n' })),
  });
  assert.equal(errorCode(tooMany), 'BAD_REQUEST');
  const stats = (await ok(f, 'stats', { queue: 'bulk' }))['stats'] as Json;
  assert.equal((stats['totals'] as Json)['added'], 3, 'no refused batch added anything');
});

void test('a stale fencing token is refused with STALE_TOKEN, and the job is untouched', async () => {
  const f = await follower();
  const { id } = (await ok(f, 'add', { queue: 'fence', name: 'x' })) as { id: string };
  const c = await claimOne(f, { queue: 'fence' });
  const wrong = await post(f, 'complete', { queue: 'fence', id, token: c.token + 1 });
  assert.equal(wrong.status, 409, JSON.stringify(wrong.json));
  assert.equal(errorCode(wrong), 'STALE_TOKEN');
  assert.equal((wrong.json['error'] as Json)['indefinite'], false);
  const job = (await ok(f, 'get', { queue: 'fence', id }))['job'] as Json;
  assert.equal(job['state'], 'active', 'a refused report changed nothing');
  await ok(f, 'complete', { queue: 'fence', id, token: c.token });
  const again = await post(f, 'fail', { queue: 'fence', id, token: c.token, error: 'late' });
  assert.equal(errorCode(again), 'STALE_TOKEN', 'a finished job takes no more reports');
  const missing = await post(f, 'get', { queue: 'fence', id: 'nope' });
  assert.equal(missing.status, 404);
  assert.equal(errorCode(missing), 'JOB_NOT_FOUND');
});

void test('an abandoned lease expires on the leader tick: the job is claimable again', async () => {
  const f = await follower();
  const { id } = (await ok(f, 'add', {
    queue: 'lease',
    name: 'slow',
    leaseMs: 300,
    backoff: { kind: 'fixed', delayMs: 0 },
  })) as { id: string };
  const first = await claimOne(f, { queue: 'lease', worker: 'gone' });
  assert.equal(first.job['attempts'], 1);
  // No heartbeat, no other command: only the leader's tick moves the queue's clock on.
  const back = await waitForJob(f, 'lease', id, (j) => j['state'] === 'waiting', 5_000);
  assert.equal(back['attempts'], 1, 'the stalled run counts as an attempt');
  const second = await claimOne(f, { queue: 'lease', worker: 'w2' });
  assert.equal(second.job['attempts'], 2);
  assert.ok(second.token > first.token, 'a new claim, a new token');
  const stale = await post(f, 'heartbeat', { queue: 'lease', id, token: first.token });
  assert.equal(errorCode(stale), 'STALE_TOKEN', 'the first worker lost its claim');
  await ok(f, 'heartbeat', { queue: 'lease', id, token: second.token, leaseMs: 10_000 });
  const ev = await ok(f, 'events', { queue: 'lease' });
  assert.ok(
    (ev['events'] as Json[]).some((e) => e['type'] === 'stalled' && e['job'] === id),
    'the expiry is recorded as stalled',
  );
});

void test('a delayed job is made due by a tick at its time, not at the next whole second', async () => {
  const l = await queueLeader();
  const ticker = nodes.node(l).queueTicker;
  const before = ticker.dueTicks;
  const { id } = (await ok(await follower(), 'add', {
    queue: 'due',
    name: 'soon',
    delayMs: 300,
  })) as { id: string };
  await waitForJob(l, 'due', id, (j) => j['state'] === 'waiting', 5_000);
  // The machine's next due time armed the leader's ticker (nextDueMs, onApplied).
  await until(
    () => `no tick was proposed for the due time: ${ticker.dueTicks} (before ${before})`,
    () => ticker.dueTicks > before,
    5_000,
  );
});

void test('a claim waits for a job (waitMs) and takes one added while it waits', async () => {
  const f = await follower();
  // Longer than a key-value write's forwarding deadline (request timeout + 1 s): the queue's
  // forwarder must wait out the leader's long poll rather than fail it as FORWARD_FAILED.
  const empty = await postJson(
    `${nodes.url(f)}/v1/queue/claim`,
    { queue: 'poll', waitMs: 6_500 },
    { timeoutMs: 15_000 },
  );
  assert.equal(empty.status, 200, JSON.stringify(empty.json));
  assert.deepEqual(empty.json['jobs'], []);
  assert.equal(empty.json['reason'], 'empty');
  assert.ok(empty.ms >= 6_400, `an empty queue answered after ${empty.ms} ms, before waitMs`);
  const waiting = post(f, 'claim', { queue: 'poll', waitMs: 10_000 });
  // The claim is (very likely) already waiting; either order must give it the job.
  const { id } = (await ok(f, 'add', { queue: 'poll', name: 'p', data: 'x' })) as { id: string };
  const r = await waiting;
  assert.equal(r.status, 200, JSON.stringify(r.json));
  const jobs = r.json['jobs'] as ClaimedJson[];
  assert.equal(jobs.length, 1, JSON.stringify(r.json));
  assert.equal(jobs[0]?.job['id'], id);
});

void test('waiting claims wake for one job and only one of them goes through the log', async () => {
  const l = await queueLeader();
  const svc = nodes.node(l).queueService;
  const write = svc.write.bind(svc);
  let proposed = 0;
  svc.write = (cmd, session, w) => {
    if (cmd.op === 'claim' && cmd.queue === 'herd') proposed++;
    return write(cmd, session, w);
  };
  try {
    // Twelve claims with sessions (as the client sends them): one that proposed and lost would
    // answer empty at once, so without the gate every waiting claim would go through the log.
    const claims = Array.from({ length: 12 }, (_, i) =>
      post(l, 'claim', { queue: 'herd', waitMs: 1_500, clientId: `herd-${i}`, seq: 1 }),
    );
    await ok(l, 'add', { queue: 'herd', name: 'h', data: 1 });
    const first = await Promise.race(
      claims.map((c) =>
        c.then((r) => {
          if ((r.json['jobs'] as unknown[]).length === 0) return new Promise<never>(() => {});
          return r;
        }),
      ),
    );
    const atFirst = proposed;
    assert.equal((first.json['jobs'] as unknown[]).length, 1);
    assert.equal(atFirst, 1, `${atFirst} claims went through the log for one job`);
    const all = await Promise.all(claims);
    const got = all.filter((r) => (r.json['jobs'] as unknown[]).length > 0);
    assert.equal(got.length, 1, JSON.stringify(all.map((r) => r.json)));
    for (const r of all) assert.equal(r.status, 200, JSON.stringify(r.json));
  } finally {
    svc.write = write;
  }
});

void test('an add hands its job to a waiting claim: the claim is proposed behind it, before it applies', async () => {
  const l = await queueLeader();
  const svc = nodes.node(l).queueService;
  const write = svc.write.bind(svc);
  // For each claim proposed on the queue: whether the add it waits for had been applied then.
  const addAppliedAtClaim: boolean[] = [];
  svc.write = (cmd, session, w) => {
    if (cmd.op === 'claim' && cmd.queue === 'handed')
      addAppliedAtClaim.push((svc.queue.stats('handed')?.totals.added ?? 0) > 0);
    return write(cmd, session, w);
  };
  try {
    const waiting = post(l, 'claim', { queue: 'handed', waitMs: 10_000 });
    await until(
      'the claim waiting on the leader',
      async () => {
        const res = await fetch(`${nodes.url(l)}/metrics`, { signal: AbortSignal.timeout(5_000) });
        return /^flotilla_queue_claim_waiters(\{[^}]*\})? 1$/m.test(await res.text());
      },
      10_000,
    );
    const { id } = (await ok(l, 'add', { queue: 'handed', name: 'h', data: 1 })) as { id: string };
    const r = await waiting;
    const jobs = r.json['jobs'] as ClaimedJson[];
    assert.equal(jobs.length, 1, JSON.stringify(r.json));
    assert.equal(jobs[0]?.job['id'], id);
    // Without the hand-over the claim proposes only once the add has applied and woken it.
    assert.deepEqual(addAppliedAtClaim, [false], 'the claim went behind the add, not after it');
  } finally {
    svc.write = write;
  }
});

void test('requests are validated strictly before anything is proposed', async () => {
  const f = await follower();
  const unknown = await post(f, 'add', { queue: 'v', name: 'n', colour: 'red' });
  assert.equal(unknown.status, 400);
  assert.equal(errorCode(unknown), 'UNKNOWN_FIELD');
  const badName = await post(f, 'add', { queue: 'has space', name: 'n' });
  assert.equal(errorCode(badName), 'BAD_REQUEST');
  const longWait = await post(f, 'claim', { queue: 'v', waitMs: 30_001 });
  assert.equal(errorCode(longWait), 'BAD_REQUEST');
  const badBackoff = await post(f, 'add', {
    queue: 'v',
    name: 'n',
    backoff: { kind: 'linear', delayMs: 1 },
  });
  assert.equal(errorCode(badBackoff), 'BAD_REQUEST');
  const big = await post(f, 'add', { queue: 'v', name: 'n', data: 'x'.repeat(300 * 1024) });
  assert.equal(big.status, 413);
  assert.equal(errorCode(big), 'VALUE_TOO_LARGE');
  const badState = await post(f, 'list', { queue: 'v', state: 'sleeping' });
  assert.equal(errorCode(badState), 'BAD_REQUEST');
  const stats = (await ok(f, 'stats', { queue: 'v' }))['stats'];
  assert.equal(stats, null, 'no refused add created the queue');
});

void test('an add with a session applies once, however often it is retried', async () => {
  const f = await follower();
  const body = { queue: 'once', name: 'n', clientId: 'client-a', seq: 1 };
  const a = await ok(f, 'add', body);
  const b = await ok((await queueLeader()) === 3 ? 1 : 3, 'add', body);
  assert.equal(a['id'], b['id'], 'the retry got the first answer');
  const stats = (await ok(f, 'stats', { queue: 'once' }))['stats'] as Json;
  assert.equal((stats['counts'] as Json)['waiting'], 1, 'one job, not two');
});

void test('the queue group keeps working while the key-value group is busy', async () => {
  const f = await follower();
  let stop = false;
  let puts = 0;
  // Sixteen writers keep the key-value group's log busy until the queue work is done.
  const writers = Array.from({ length: 16 }, async (_, w) => {
    for (let i = 0; !stop; i++) {
      const r = await postJson(
        `${nodes.url((w % 3) + 1)}/v1/kv/put`,
        { key: `busy/${w}/${i % 50}`, value: 'v'.repeat(512) },
        { timeoutMs: 15_000 },
      );
      if (r.status === 200) puts++;
    }
  });
  try {
    for (let i = 0; i < 20; i++) {
      const { id } = (await ok(f, 'add', { queue: 'busy', name: `j${i}` })) as { id: string };
      const c = await claimOne(f, { queue: 'busy' });
      assert.equal(c.job['id'], id);
      await ok(f, 'complete', { queue: 'busy', id, token: c.token });
    }
  } finally {
    stop = true;
    await Promise.all(writers);
  }
  assert.ok(puts > 0, 'the key-value group was written to meanwhile');
  const stats = (await ok(f, 'stats', { queue: 'busy' }))['stats'] as Json;
  assert.equal((stats['counts'] as Json)['completed'], 20);
});

void test('the client gathers the adds of one turn into one entry, unless told not to', async () => {
  const leader = await queueLeader();
  const applied = (): number => nodes.node(leader).queueService.runtime.appliedIndex();
  for (const gather of [true, false]) {
    const client = new FlotillaClient({ endpoints: [nodes.url(leader)], gather });
    try {
      const q = client.queue(`gather-${String(gather)}`);
      await q.add('warm-up'); // the session's first write, on its own
      const before = applied();
      const answers = await Promise.all(
        Array.from({ length: 20 }, (_, i) => q.add('job', { i }, i === 7 ? { id: 'seven' } : {})),
      );
      const entries = applied() - before;
      assert.equal(new Set(answers.map((a) => a.id)).size, 20, 'twenty jobs, each its own');
      assert.equal(answers[7]?.id, 'seven');
      assert.equal((await q.stats()).stats?.counts.waiting, 21);
      // The leader's own entries (its ticks) may come between: a bound, not an exact count.
      if (gather) assert.ok(entries <= 4, `gathered: ${entries} entries for 20 adds`);
      else assert.ok(entries >= 20, `not gathered: ${entries} entries for 20 adds`);
    } finally {
      await client.close();
    }
  }
});

void test('the client gathers the reports of one turn into one entry, each answered alone', async () => {
  const leader = await queueLeader();
  const applied = (): number => nodes.node(leader).queueService.runtime.appliedIndex();
  for (const gather of [true, false]) {
    const client = new FlotillaClient({ endpoints: [nodes.url(leader)], gather });
    try {
      const q = client.queue(`reports-${String(gather)}`);
      await q.addBulk(Array.from({ length: 12 }, (_, i) => ({ name: 'job', data: i })));
      const { jobs } = await q.claim({ max: 10 });
      assert.equal(jobs.length, 10);
      const before = applied();
      const results = await Promise.allSettled(
        jobs.map((c, i) =>
          i === 3
            ? q.complete(c.job.id, c.token + 1) // not the live claim's token
            : i === 5
              ? q.fail(c.job.id, c.token, 'boom', { final: true })
              : q.complete(c.job.id, c.token, { i }, i === 0 ? { next: { max: 2 } } : {}),
        ),
      );
      const entries = applied() - before;
      const outcome = results.map((r) =>
        r.status === 'fulfilled' ? r.value.state : (r.reason as FlotillaError).code,
      );
      assert.deepEqual(outcome, [
        ...Array<string>(3).fill('completed'),
        'STALE_TOKEN',
        'completed',
        'dead',
        ...Array<string>(4).fill('completed'),
      ]);
      const first = results[0] as PromiseFulfilledResult<{ next?: { jobs: readonly unknown[] } }>;
      assert.equal(first.value.next?.jobs.length, 2, 'the next claim of a gathered complete');
      const stats = (await q.stats()).stats;
      assert.deepEqual(
        [stats?.counts.completed, stats?.counts.dead, stats?.counts.active],
        [8, 1, 3],
      );
      if (gather) assert.ok(entries <= 3, `gathered: ${entries} entries for 10 reports`);
      else assert.ok(entries >= 10, `not gathered: ${entries} entries for 10 reports`);
    } finally {
      await client.close();
    }
  }
});

void test('a bulk report with a bad item is refused whole before anything is proposed', async () => {
  const leader = await queueLeader();
  const before = nodes.node(leader).queueService.runtime.appliedIndex();
  for (const [reports, code, message] of [
    [[], 'BAD_REQUEST', /"reports" must be a non-empty array/],
    [
      [{ op: 'claim', id: 'a', token: 1 }],
      'BAD_REQUEST',
      /reports\[0\]: "op" must be "complete" or "fail"/,
    ],
    [
      [
        { op: 'complete', id: 'a', token: 1 },
        { op: 'fail', id: 'b', token: 1 },
      ],
      'BAD_REQUEST',
      /reports\[1\]: "error"/,
    ],
    [[{ op: 'complete', id: 'a', token: 0 }], 'BAD_REQUEST', /reports\[0\]: "token"/],
    [[{ op: 'complete', id: 'a', token: 1, extra: true }], 'UNKNOWN_FIELD', /"extra"/],
  ] as const) {
    const r = await post(leader, 'report-bulk', { queue: 'rq', reports });
    assert.equal(r.status, 400, JSON.stringify(r.json));
    assert.equal(errorCode(r), code, JSON.stringify(r.json));
    assert.match(String((r.json['error'] as Json)['message']), message);
  }
  assert.equal(nodes.node(leader).queueService.runtime.appliedIndex() - before <= 1, true);
});

void test('the client: add, claim, heartbeat, complete, fail, stats and get', async () => {
  const f = await follower();
  const client = new FlotillaClient({ endpoints: [nodes.url(f)] });
  try {
    const q = client.queue('client-q');
    const a = await q.add('resize', { w: 100 }, { id: 'img-1', priority: 1 });
    assert.equal(a.id, 'img-1');
    assert.equal((await q.add('resize', { w: 100 }, { id: 'img-1' })).duplicate, true);
    await q.add('resize', { w: 200 }, { id: 'img-2', maxAttempts: 1 });
    const first = await q.claim<{ w: number }>({ worker: 'c1' });
    assert.equal(first.jobs[0]?.job.id, 'img-2', 'priority 0 before priority 1');
    assert.deepEqual(first.jobs[0]?.job.data, { w: 200 });
    const failed = await q.fail('img-2', first.jobs[0]?.token ?? 0, 'boom');
    assert.equal(failed.state, 'dead', 'its one attempt is used up');
    const second = await q.claim({ waitMs: 1_000 });
    const token = second.jobs[0]?.token ?? 0;
    assert.ok((await q.heartbeat('img-1', token, { leaseMs: 60_000 })).leaseExpiresMs);
    await q.complete('img-1', token, 'done');
    const job = await q.get('img-1');
    assert.equal(job.job.state, 'completed');
    assert.equal(job.job.result, 'done');
    const stats = await q.stats();
    assert.equal(stats.stats?.counts.completed, 1);
    assert.equal(stats.stats?.counts.dead, 1);
    await assert.rejects(q.complete('img-1', token), (e: FlotillaError) => {
      assert.equal(e.code, 'STALE_TOKEN');
      assert.equal(e.indefinite, false);
      return true;
    });
    await assert.rejects(q.get('img-9'), (e: FlotillaError) => e.code === 'JOB_NOT_FOUND');
  } finally {
    await client.close();
  }
});

void test('events from a position past the log are refused, from the last one handed out answered', async () => {
  // A position no answer gave (a typo, another cluster's) was answered empty with itself as
  // `next`: the reader then skipped every event until the log reached it, told nothing.
  const f = await follower();
  await ok(f, 'add', { queue: 'ev-future', name: 'a' });
  const page = await ok(f, 'events', { queue: 'ev-future' });
  const next = page['next'] as Json;
  const again = await ok(f, 'events', { queue: 'ev-future', after: next });
  assert.deepEqual(again['events'], []);
  const r = await post(f, 'events', { queue: 'ev-future', after: { index: 99_999_999, seq: 0 } });
  assert.equal(r.status, 400, JSON.stringify(r.json));
  const e = r.json['error'] as Json;
  assert.equal(e['code'], 'FUTURE_REVISION');
  assert.match(String(e['message']), /Event position 99999999 is past the queue group's log/);
});
