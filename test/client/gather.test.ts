// A queue's adds made in one turn travel as one add-bulk write, and its completes and fails as
// one report-bulk write (AddGatherer, ReportGatherer in src/client/queue.ts), each caller
// answered as its own: checked against a transport that records what is sent and answers as a
// node would, including a node that refuses a batch (then every call goes again alone), one
// that does not know bulk reports, and a write whose fate is unknown (then nothing is resent).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FlotillaError } from '../../src/base/errors.js';
import { FlotillaClient } from '../../src/client/index.js';
import {
  AddGatherer,
  QueueClient,
  ReportGatherer,
  gatherRetryBatches,
  maxGathered,
  type AddResponse,
  type QueueTransport,
} from '../../src/client/queue.js';

interface Sent {
  readonly path: string;
  readonly body: Record<string, unknown>;
}

const header = { memberId: 1, raftTerm: 2 };

/**
 * A node in miniature: a job gets the id its add names or `#n`; `held` ids are refused with
 * JOB_EXISTS (a bulk add holding one is refused whole, as the node does); `fail` overrides the
 * answer to a bulk add.
 */
function fakeNode(o: { held?: readonly string[]; failBulk?: FlotillaError } = {}): {
  transport: QueueTransport;
  sent: Sent[];
} {
  const sent: Sent[] = [];
  let n = 0;
  const answer = (job: Record<string, unknown>): Omit<AddResponse, 'header'> => {
    const id = typeof job['id'] === 'string' ? job['id'] : `#${++n}`;
    return { id, duplicate: false, state: 'waiting' };
  };
  const refuseHeld = (jobs: readonly Record<string, unknown>[]): void => {
    for (const j of jobs)
      if ((o.held ?? []).includes(j['id'] as string))
        throw new FlotillaError('JOB_EXISTS', `Job "${String(j['id'])}" is still held`, false);
  };
  const transport: QueueTransport = {
    write: <T>(path: string, body: Record<string, unknown>): Promise<T> => {
      sent.push({ path, body });
      return Promise.resolve().then(() => {
        if (path === '/v1/queue/add-bulk') {
          if (o.failBulk !== undefined) throw o.failBulk;
          const jobs = body['jobs'] as Record<string, unknown>[];
          refuseHeld(jobs);
          return { header, jobs: jobs.map(answer) } as T;
        }
        assert.equal(path, '/v1/queue/add', `only adds are sent, got ${path}`);
        refuseHeld([body]);
        return { header, ...answer(body) } as T;
      });
    },
    read: () => Promise.reject(new Error('no read is sent')),
  };
  return { transport, sent };
}

function gatheringQueue(t: QueueTransport): QueueClient {
  return new QueueClient('q', t, {
    adds: new AddGatherer('q', t),
    reports: new ReportGatherer('q', t),
  });
}

void test('adds made in one turn go as one add-bulk write, each answered as its own', async () => {
  const { transport, sent } = fakeNode();
  const q = gatheringQueue(transport);
  const answers = await Promise.all([
    q.add('a', { n: 1 }),
    q.add('b', 'text', { id: 'mine', priority: 3 }),
    q.add('c'),
  ]);
  assert.deepEqual(
    sent.map((s) => s.path),
    ['/v1/queue/add-bulk'],
  );
  assert.deepEqual(sent[0]?.body, {
    queue: 'q',
    jobs: [
      { name: 'a', data: { n: 1 } },
      { name: 'b', data: 'text', id: 'mine', priority: 3 },
      { name: 'c', data: null },
    ],
  });
  assert.deepEqual(answers, [
    { header, id: '#1', duplicate: false, state: 'waiting' },
    { header, id: 'mine', duplicate: false, state: 'waiting' },
    { header, id: '#2', duplicate: false, state: 'waiting' },
  ]);
});

void test('a lone add is a plain add, and adds of later turns are writes of their own', async () => {
  const { transport, sent } = fakeNode();
  const q = gatheringQueue(transport);
  const first = await q.add('a', 1);
  await Promise.all([q.add('b', 2), q.add('c', 3)]);
  assert.deepEqual(first, { header, id: '#1', duplicate: false, state: 'waiting' });
  assert.deepEqual(
    sent.map((s) => s.path),
    ['/v1/queue/add', '/v1/queue/add-bulk'],
  );
  assert.deepEqual(sent[0]?.body, { queue: 'q', name: 'a', data: 1 });
});

void test('an add with a signal is sent alone, so aborting it aborts nothing else', async () => {
  const { transport, sent } = fakeNode();
  const q = gatheringQueue(transport);
  await Promise.all([
    q.add('a'),
    q.add('b', null, { signal: new AbortController().signal }),
    q.add('c'),
  ]);
  assert.deepEqual(sent.map((s) => s.path).sort(), ['/v1/queue/add', '/v1/queue/add-bulk']);
  const alone = sent.find((s) => s.path === '/v1/queue/add');
  assert.equal(alone?.body['name'], 'b');
  const bulk = sent.find((s) => s.path === '/v1/queue/add-bulk');
  assert.deepEqual(
    (bulk?.body['jobs'] as { name: string }[]).map((j) => j.name),
    ['a', 'c'],
  );
});

void test('a refused batch is sent again add by add: only the refused add fails', async () => {
  const { transport, sent } = fakeNode({ held: ['taken'] });
  const q = gatheringQueue(transport);
  const results = await Promise.allSettled([
    q.add('a'),
    q.add('b', null, { id: 'taken' }),
    q.add('c'),
  ]);
  assert.deepEqual(
    sent.map((s) => s.path),
    ['/v1/queue/add-bulk', '/v1/queue/add', '/v1/queue/add', '/v1/queue/add'],
  );
  assert.equal(results[0].status, 'fulfilled');
  assert.equal(results[2].status, 'fulfilled');
  assert.equal(results[1].status, 'rejected');
  const refused = results[1];
  assert.ok(refused.status === 'rejected');
  assert.equal((refused.reason as FlotillaError).code, 'JOB_EXISTS');
  const ids = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value.id] : []));
  assert.equal(new Set(ids).size, 2, `two distinct jobs added: ${ids.join(', ')}`);
});

void test('a batch whose fate is unknown fails every add in it and is not resent', async () => {
  const lost = new FlotillaError('CONNECTION', 'connection lost with the write in flight', true);
  const { transport, sent } = fakeNode({ failBulk: lost });
  const q = gatheringQueue(transport);
  const results = await Promise.allSettled([q.add('a'), q.add('b'), q.add('c')]);
  assert.deepEqual(
    sent.map((s) => s.path),
    ['/v1/queue/add-bulk'],
    'an add that may have happened is not sent again outside its session',
  );
  for (const r of results) {
    assert.equal(r.status, 'rejected');
    assert.equal(r.reason, lost);
  }
});

void test('a turn with more adds than a batch holds, or large data, is split', async () => {
  const { transport, sent } = fakeNode();
  const q = gatheringQueue(transport);
  const count = 2 * maxGathered + 5;
  const answers = await Promise.all(Array.from({ length: count }, (_, i) => q.add('j', i)));
  assert.deepEqual(
    sent.map((s) => (s.body['jobs'] as unknown[]).length),
    [maxGathered, maxGathered, 5],
  );
  assert.equal(new Set(answers.map((a) => a.id)).size, count, 'every add its own job');
  assert.deepEqual(
    sent.flatMap((s) => (s.body['jobs'] as { data: number }[]).map((j) => j.data)),
    Array.from({ length: count }, (_, i) => i),
    'in the order they were made',
  );

  sent.length = 0;
  const big = 'x'.repeat(60_000); // 180,000 bytes at most in UTF-8, counted as such
  await Promise.all([q.add('s', 1), q.add('b', big), q.add('b', big), q.add('s', 2)]);
  assert.deepEqual(
    sent.map((s) => (s.path === '/v1/queue/add' ? 1 : (s.body['jobs'] as unknown[]).length)),
    [2, 2],
    'a batch is closed before its data pass maxGatheredBytes',
  );
});

void test('a gather option that is not a boolean is refused', () => {
  assert.throws(
    () =>
      new FlotillaClient({
        endpoints: ['http://127.0.0.1:1'],
        gather: 'yes' as unknown as boolean,
      }),
    (err: FlotillaError) => err.code === 'BAD_REQUEST' && /gather/.test(err.message),
  );
});

/**
 * A node's reports in miniature: job `j<n>` is held under token n; a report with another token
 * is refused STALE_TOKEN in its place in the results; `bulk` overrides the bulk's answer.
 */
function reportNode(o: { bulk?: FlotillaError } = {}): { transport: QueueTransport; sent: Sent[] } {
  const sent: Sent[] = [];
  const one = (r: Record<string, unknown>): Record<string, unknown> => {
    if (`j${String(r['token'])}` !== r['id'])
      return { error: { code: 'STALE_TOKEN', message: `token ${String(r['token'])} is stale` } };
    return {
      state: r['op'] === 'fail' ? 'failed' : 'completed',
      ...(r['next'] === undefined ? {} : { next: { jobs: [] } }),
    };
  };
  const transport: QueueTransport = {
    write: <T>(path: string, body: Record<string, unknown>): Promise<T> => {
      sent.push({ path, body });
      return Promise.resolve().then(() => {
        if (path === '/v1/queue/report-bulk') {
          if (o.bulk !== undefined) throw o.bulk;
          return { header, results: (body['reports'] as Record<string, unknown>[]).map(one) } as T;
        }
        const op = path.slice('/v1/queue/'.length);
        assert.ok(op === 'complete' || op === 'fail', `only reports are sent, got ${path}`);
        const r = one({ ...body, op });
        if ('error' in r) {
          const e = r['error'] as { code: 'STALE_TOKEN'; message: string };
          throw new FlotillaError(e.code, e.message, false);
        }
        return { header, ...r } as T;
      });
    },
    read: () => Promise.reject(new Error('no read is sent')),
  };
  return { transport, sent };
}

void test('reports made in one turn go as one report-bulk write, each answered or refused alone', async () => {
  const { transport, sent } = reportNode();
  const q = gatheringQueue(transport);
  const results = await Promise.allSettled([
    q.complete('j1', 1, { done: true }, { next: { max: 1 } }),
    q.complete('j2', 7),
    q.fail('j3', 3, 'boom', { final: true }),
  ]);
  assert.deepEqual(
    sent.map((s) => s.path),
    ['/v1/queue/report-bulk'],
  );
  assert.deepEqual(sent[0]?.body, {
    queue: 'q',
    reports: [
      { op: 'complete', id: 'j1', token: 1, result: { done: true }, next: { max: 1 } },
      { op: 'complete', id: 'j2', token: 7 },
      { op: 'fail', id: 'j3', token: 3, error: 'boom', final: true },
    ],
  });
  assert.deepEqual(results[0], {
    status: 'fulfilled',
    value: { header, state: 'completed', next: { jobs: [] } },
  });
  assert.equal(results[1].status, 'rejected');
  const stale = results[1].reason as FlotillaError;
  assert.ok(stale instanceof FlotillaError);
  assert.deepEqual([stale.code, stale.indefinite], ['STALE_TOKEN', false]);
  assert.deepEqual(results[2], { status: 'fulfilled', value: { header, state: 'failed' } });
});

void test('a node that does not know bulk reports gets them one by one, and no bulk for a while', async () => {
  const old = new FlotillaError('FEATURE_NOT_ENABLED', 'a member runs an older release', false);
  const { transport, sent } = reportNode({ bulk: old });
  const q = gatheringQueue(transport);
  const first = await Promise.all([q.complete('j1', 1), q.complete('j2', 2)]);
  assert.deepEqual(
    first.map((r) => r.state),
    ['completed', 'completed'],
  );
  assert.deepEqual(
    sent.map((s) => s.path),
    ['/v1/queue/report-bulk', '/v1/queue/complete', '/v1/queue/complete'],
  );
  sent.length = 0;
  await Promise.all([q.complete('j3', 3), q.fail('j4', 4, 'no')]);
  assert.deepEqual(
    sent.map((s) => s.path),
    ['/v1/queue/complete', '/v1/queue/fail'],
    `the next ${gatherRetryBatches} batches go one by one`,
  );
});

void test('adds of a refused batch that name one id are sent again in the callers order', async () => {
  // Sent together, the second of two adds naming one id could reach the leader first over the
  // binary protocol, and the deduplication then kept the second job's data (a user's find).
  const sent: Sent[] = [];
  /** Each single add's answer, given when the test says, by the add's name. */
  const answers = new Map<unknown, () => void>();
  const transport: QueueTransport = {
    write: <T>(path: string, body: Record<string, unknown>): Promise<T> => {
      sent.push({ path, body });
      if (path === '/v1/queue/add-bulk')
        return Promise.reject(new FlotillaError('BAD_REQUEST', 'priority must be >= 0', false));
      if (body['priority'] === -1)
        return Promise.reject(new FlotillaError('BAD_REQUEST', 'priority must be >= 0', false));
      return new Promise<T>((resolve) =>
        answers.set(body['name'], () => {
          resolve({ header, id: body['id'] ?? 'x', duplicate: false, state: 'waiting' } as T);
        }),
      );
    },
    read: () => Promise.reject(new Error('no read is sent')),
  };
  const q = gatheringQueue(transport);
  const bad = q.add('bad', 0, { priority: -1 }).catch((e: unknown) => e);
  const first = q.add('first', 'FIRST', { id: 'same' });
  const second = q.add('second', 'SECOND', { id: 'same' });
  const other = q.add('other', 'OTHER');
  assert.ok((await bad) instanceof FlotillaError);
  const singles = () => sent.filter((s) => s.path === '/v1/queue/add').map((s) => s.body['name']);
  await until(() => singles().length === 3);
  // The add without an id goes at once; the second naming "same" waits for the first's answer.
  assert.deepEqual(singles().sort(), ['bad', 'first', 'other']);
  answers.get('first')?.();
  await first;
  await until(() => singles().length === 4);
  assert.equal(singles()[3], 'second');
  for (const a of answers.values()) a();
  await Promise.all([second, other]);
});

/** Waits for `cond` through a bounded number of turns of the event loop. */
async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 100 && !cond(); i++) await new Promise((r) => setImmediate(r));
  assert.ok(cond(), 'not within 100 turns');
}
