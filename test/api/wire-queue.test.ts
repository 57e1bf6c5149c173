// The job queue over the binary client protocol, on real clusters in this process: every
// queue request type is served as `queue.<name>` with the HTTP route's checks and answers; a
// write sent to a member that does not lead the queue group is forwarded to the one that does;
// a retried add with its session adds one job; refusals answer the request alone or close the
// connection the way docs/CLIENT-PROTOCOL.md says; a claim waiting for a job does not take an
// admission slot; and the client's queue calls and Worker go over the protocol.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { queuePaths, type QueueOpName } from '../../src/api/queue-paths.js';
import { encodeFrame } from '../../src/api/wire-codec.js';
import { FlotillaClient, Worker } from '../../src/client/index.js';
import { WireConnection } from '../../src/client/wire.js';
import type { FlotillaError } from '../../src/base/errors.js';
import { defaultQueueLimits } from '../../src/base/limits.js';
import { TestNodes, postJson } from '../server/nodes.js';
import { until } from '../support/until.js';
import { RawConnection } from './raw-wire.js';

let cluster: TestNodes;
let queueLeader: number;

before(async () => {
  cluster = await TestNodes.start({ nodes: 3, clientProtocol: true });
  queueLeader = await cluster.waitForQueueLeader();
});

after(async () => {
  await cluster.close();
});

function connect(id: number, clientId?: string): Promise<WireConnection> {
  return WireConnection.connect({
    host: '127.0.0.1',
    port: cluster.binaryPort(id),
    timeoutMs: 5_000,
    ...(clientId === undefined ? {} : { clientId }),
  });
}

async function binaryCount(id: number, op: string): Promise<number> {
  const counted = (await cluster.node(id).metrics.httpRequests.get()).values;
  return counted
    .filter((v) => v.labels['route'] === `binary:${op}` && v.labels['status'] === '200')
    .reduce((n, v) => n + v.value, 0);
}

interface Claimed {
  jobs: { job: { id: string; data: unknown; state: string }; token: number }[];
}

void describe('the job queue over the binary protocol', () => {
  void it('adds on a follower of the queue group, claims, completes and reads back', async () => {
    const follower = [1, 2, 3].find((id) => id !== queueLeader) as number;
    const f = await connect(follower);
    const l = await connect(queueLeader);
    try {
      const added = (await f.request(
        'queue.add',
        { queue: 'wq', name: 'resize', data: { size: 64, tags: ['a', 'b'] }, priority: 3 },
        { read: false },
      )) as { id: string; duplicate: boolean; header: { memberId: number } };
      assert.equal(added.duplicate, false);
      // Forwarded: the queue group's leader answered it.
      assert.equal(added.header.memberId, queueLeader);
      const claimed = (await l.request(
        'queue.claim',
        { queue: 'wq', worker: 'w1', waitMs: 1_000 },
        { read: false },
      )) as Claimed;
      assert.equal(claimed.jobs.length, 1, JSON.stringify(claimed));
      const [c] = claimed.jobs;
      assert.deepEqual(c?.job.data, { size: 64, tags: ['a', 'b'] });
      assert.equal(c?.job.id, added.id);
      const done = (await f.request(
        'queue.complete',
        { queue: 'wq', id: added.id, token: c?.token, result: 'ok' },
        { read: false },
      )) as { state: string };
      assert.equal(done.state, 'completed');
      const got = (await f.request('queue.get', { queue: 'wq', id: added.id }, { read: true })) as {
        job: { state: string; result: unknown };
      };
      assert.deepEqual([got.job.state, got.job.result], ['completed', 'ok']);
      const stats = (await f.request('queue.stats', { queue: 'wq' }, { read: true })) as {
        stats: { counts: { completed: number } };
      };
      assert.equal(stats.stats.counts.completed, 1);
      assert.ok((await binaryCount(queueLeader, 'queue.claim')) >= 1);
      assert.ok((await binaryCount(follower, 'queue.add')) >= 1);
    } finally {
      f.close();
      l.close();
    }
  });

  void it("answers a retried add with its session's first answer: one job", async () => {
    const c = await connect(queueLeader, 'wire-queue-session');
    try {
      const body = { queue: 'wq-once', name: 'n', data: 1, seq: 1 };
      const first = (await c.request('queue.add', body, { read: false })) as { id: string };
      const again = (await c.request('queue.add', body, { read: false })) as { id: string };
      assert.equal(again.id, first.id);
      const stats = (await c.request('queue.stats', { queue: 'wq-once' }, { read: true })) as {
        stats: { counts: { waiting: number } };
      };
      assert.equal(stats.stats.counts.waiting, 1);
    } finally {
      c.close();
    }
  });

  void it('refuses a job too large alone, and an unknown field alone', async () => {
    const c = await RawConnection.open(cluster.binaryPort(queueLeader));
    try {
      const limit = defaultQueueLimits.maxPayloadBytes;
      c.socket.write(
        encodeFrame([1, 'queue.add', { queue: 'wq-bad', name: 'n', data: 'x'.repeat(limit + 10) }]),
      );
      c.socket.write(encodeFrame([2, 'queue.get', { queue: 'wq-bad', id: 'nope' }]));
      await c.until('both answers', () => c.answers().length >= 2);
      const byId = new Map(c.answers().map((f) => [f[0], f]));
      assert.equal(byId.get(1)?.[1], 1, JSON.stringify(byId.get(1)));
      assert.equal(byId.get(1)?.[2]['code'], 'VALUE_TOO_LARGE');
      assert.equal(byId.get(2)?.[2]['code'], 'JOB_NOT_FOUND');
      assert.equal(c.closed, false);
      c.socket.write(encodeFrame([3, 'queue.add', { queue: 'wq-bad', name: 'n', colour: 'red' }]));
      await c.until('its refusal', () => c.answers().length >= 3);
      const last = c.answers().at(-1);
      assert.deepEqual(last?.slice(0, 2), [3, 1], JSON.stringify(last));
      assert.equal(last?.[2]['code'], 'UNKNOWN_FIELD');
      assert.equal(c.closed, false, 'a refused body leaves the connection open');
      // Nothing of the refused requests reached the queue.
      const s = await connect(queueLeader);
      try {
        const stats = (await s.request('queue.stats', { queue: 'wq-bad' }, { read: true })) as {
          stats: unknown;
        };
        assert.equal(stats.stats, null);
      } finally {
        s.close();
      }
    } finally {
      c.socket.destroy();
    }
  });

  void it('refuses empty, blank and overlong text alike over HTTP and the protocol', async () => {
    // A fail with an empty message was recorded, and a dead job then read error: "".
    const max = defaultQueueLimits.maxMessageChars;
    const j = { queue: 'wq-text', id: 'j', token: 1 };
    const cases: [QueueOpName, Record<string, unknown>, RegExp][] = [
      ['fail', { ...j, error: '' }, /^"error" is empty/],
      ['fail', { ...j, error: ' \t\n' }, /^"error" is only whitespace/],
      ['fail', { ...j, error: 'x'.repeat(max + 1) }, /"error" must be a string of at most 1024/],
      ['fail', { ...j, error: '', release: true }, /^"error" is empty/],
      ['claim', { queue: 'wq-text', worker: '' }, /^"worker" is empty/],
      ['claim', { queue: 'wq-text', worker: '   ' }, /^"worker" is only whitespace/],
      ['complete', { ...j, next: { worker: ' ' } }, /^"next.worker" is only whitespace/],
      [
        'reportBulk',
        { queue: 'wq-text', reports: [{ op: 'fail', id: 'j', token: 1, error: '' }] },
        /^reports\[0\]: "error" is empty/,
      ],
      ['get', { queue: 'wq-text', id: '' }, /^"id" must be a job id/],
      ['heartbeat', { ...j, id: ' ' }, /^"id" must be a job id/],
      ['add', { queue: 'wq-text', name: ' ' }, /^"name" must be 1 to 128/],
      ['add', { queue: '', name: 'n' }, /^"queue" must be 1 to 128/],
      ['repeatList', { queue: 'wq-text', after: '' }, /^"after" must be 1 to 128/],
    ];
    const c = await connect(queueLeader);
    try {
      for (const [op, body, message] of cases) {
        const what = `${op} ${JSON.stringify(body).slice(0, 80)}`;
        const http = await postJson(`${cluster.url(queueLeader)}${queuePaths[op]}`, body, {
          timeoutMs: 5_000,
        });
        const e = http.json['error'] as { code: string; message: string } | undefined;
        assert.equal(http.status, 400, `${what}: ${JSON.stringify(http.json)}`);
        assert.equal(e?.code, 'BAD_REQUEST', what);
        assert.match(e.message, message, what);
        const read = op === 'get' || op === 'repeatList';
        const wire = await c.request(`queue.${op}`, body, { read }).then(
          () => null,
          (err: FlotillaError) => err,
        );
        assert.deepEqual([wire?.code, wire?.message], [e.code, e.message], what);
      }
      // Nothing of it reached the queue.
      const stats = (await c.request('queue.stats', { queue: 'wq-text' }, { read: true })) as {
        stats: unknown;
      };
      assert.equal(stats.stats, null);
    } finally {
      c.close();
    }
  });

  void it("the client's queue calls and Worker go over the protocol", async () => {
    const client = new FlotillaClient({ endpoints: [cluster.url(queueLeader)] });
    // The first answer over HTTP names the node's binary port; the calls after it use it.
    await client.status();
    const before =
      (await binaryCount(queueLeader, 'queue.complete')) +
      (await binaryCount(queueLeader, 'queue.reportBulk'));
    const q = client.queue('wq-client');
    const seen: number[] = [];
    let resolveAll: () => void = () => undefined;
    const all = new Promise<void>((resolve) => (resolveAll = resolve));
    const w = new Worker<{ n: number }, number>(q, (job) => Promise.resolve(job.data.n * 2), {
      concurrency: 4,
      waitMs: 1_000,
      onCompleted: (_job, result) => {
        seen.push(result);
        if (seen.length === 20) resolveAll();
      },
    });
    try {
      for (let n = 0; n < 10; n++) await q.add('double', { n });
      const bulk = await q.addBulk(
        Array.from({ length: 10 }, (_, i) => ({ name: 'double', data: { n: 10 + i } })),
      );
      assert.equal(bulk.jobs.length, 10);
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        all,
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`completed ${seen.length} of 20`)), 20_000);
        }),
      ]).finally(() => clearTimeout(timer));
      assert.deepEqual(
        [...seen].sort((a, b) => a - b),
        Array.from({ length: 20 }, (_, n) => n * 2),
      );
      assert.ok((await binaryCount(queueLeader, 'queue.add')) >= 10);
      assert.ok((await binaryCount(queueLeader, 'queue.addBulk')) >= 1);
      // Reports of slots that finished in one turn travel as one queue.reportBulk.
      const reports =
        (await binaryCount(queueLeader, 'queue.complete')) +
        (await binaryCount(queueLeader, 'queue.reportBulk')) -
        before;
      assert.ok(reports >= 1 && reports <= 20, `${reports} report requests for 20 jobs`);
    } finally {
      await w.close({ graceMs: 2_000 });
      await client.close();
    }
  });
  void it("stores a job's data as JSON.stringify makes it over either protocol", async () => {
    // The binary protocol's msgpack carries bytes and dates, which the node refuses by closing
    // the connection: a Uint8Array or a Date as data failed as CONNECTION (indefinite, after
    // retries) and took the connection's other requests with it, while over HTTP the same call
    // stored what JSON.stringify made of it; a BigInt went the other way round.
    const stored: Record<string, unknown[]> = {};
    for (const protocol of ['auto', 'http'] as const) {
      const client = new FlotillaClient({ endpoints: [cluster.url(queueLeader)], protocol });
      try {
        await client.status();
        assert.equal(client.usesBinary(cluster.url(queueLeader)), protocol === 'auto');
        const q = client.queue(`wq-json-${protocol}`);
        const waiting = q.claim({ waitMs: 2_000 });
        const values = [new Uint8Array([1, 2]), new Date(0), { at: new Date(0), f: () => 1 }];
        const ids: string[] = [];
        for (const v of values) ids.push((await q.add('j', v)).id);
        const bulk = await q.addBulk([{ name: 'j', data: new Uint8Array([3]) }]);
        ids.push(...bulk.jobs.map((j) => j.id));
        stored[protocol] = await Promise.all(ids.map(async (id) => (await q.get(id)).job.data));
        const started = Date.now();
        const refused = await q.add('j', 10n).then(
          () => null,
          (err: FlotillaError) => err,
        );
        assert.deepEqual([refused?.code, refused?.indefinite], ['BAD_REQUEST', false]);
        assert.ok(Date.now() - started < 1_000, 'refused before anything is sent, not retried');
        // The claim that waited on the same connection got a job rather than a dropped connection.
        assert.equal((await waiting).jobs.length, 1);
      } finally {
        await client.close();
      }
    }
    const expected = [
      { 0: 1, 1: 2 },
      '1970-01-01T00:00:00.000Z',
      { at: '1970-01-01T00:00:00.000Z' },
    ];
    assert.deepEqual(stored, { auto: [...expected, { 0: 3 }], http: [...expected, { 0: 3 }] });
  });

  void it('a follower relays more waiting claims than it has queue connections, and its adds', async () => {
    // A follower forwards the queue's writes on 128 connections to the queue leader. Waiting
    // claims took them all, so while 140 workers long-polled through it every add and report
    // sent to it was refused OVERLOADED; claims now go on connections of their own.
    const follower = [1, 2, 3].find((id) => id !== queueLeader) as number;
    const c = await connect(follower);
    const waiters = async (): Promise<number> => {
      const text = await (await fetch(`${cluster.url(queueLeader)}/metrics`)).text();
      const line = text.split('\n').find((l) => l.startsWith('flotilla_queue_claim_waiters'));
      return Number(line?.slice(line.lastIndexOf(' ') + 1));
    };
    const crowd = 140;
    try {
      const claims = Array.from(
        { length: crowd },
        (_, i) =>
          c.request(
            'queue.claim',
            { queue: 'wq-crowd', worker: `w${i}`, waitMs: 6_000 },
            {
              read: false,
            },
          ) as Promise<Claimed>,
      );
      const refusals: unknown[] = [];
      for (const p of claims) p.catch((err: unknown) => refusals.push(err));
      let seen = 0;
      await until(
        () => `${crowd} claims waiting on the queue leader (${seen} were)`,
        async () => (seen = await waiters()) >= crowd || refusals.length > 0,
        5_000,
      );
      assert.deepEqual([seen, refusals], [crowd, []], 'every claim waits on the queue leader');
      const added = (await c.request(
        'queue.add',
        { queue: 'wq-crowd', name: 'n', data: null },
        { read: false },
      )) as { id: string };
      const answers = await Promise.all(claims);
      const got = answers.flatMap((a) => a.jobs.map((j) => j.job.id));
      assert.deepEqual(got, [added.id], 'exactly one claim took the job');
    } finally {
      c.close();
    }
  });

  /** Claims the queue leader holds open waiting for a job (its metrics). */
  async function leaderWaiters(): Promise<number> {
    const text = await (await fetch(`${cluster.url(queueLeader)}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith('flotilla_queue_claim_waiters'));
    return Number(line?.slice(line.lastIndexOf(' ') + 1));
  }

  /** Waits until the queue leader holds `n` waiting claims, failing with what it held. */
  async function waitersBecome(n: number, why: string): Promise<void> {
    let seen = -1;
    await until(
      () => `${why}: ${n} claims waiting on the queue leader (${seen} were)`,
      async () => (seen = await leaderWaiters()) === n,
      5_000,
    );
  }

  for (const at of ['leader', 'follower'] as const)
    void it(`a waiting claim whose caller gives up is cancelled on the node (sent to the ${at})`, async () => {
      // Before, the node went on holding it for its waitMs, and a job added meanwhile was
      // claimed for no one: it ran no handler and lost an attempt when its lease ran out.
      const id =
        at === 'leader' ? queueLeader : ([1, 2, 3].find((n) => n !== queueLeader) as number);
      const queue = `wq-cancel-${at}`;
      const c = await connect(id);
      try {
        const base = await leaderWaiters();
        const ac = new AbortController();
        const claim = c.request(
          'queue.claim',
          { queue, worker: 'gone', waitMs: 20_000 },
          { read: false, signal: ac.signal, longPoll: true },
        );
        // Its refusal is expected from the start, and checked once the claim is aborted.
        const refused = assert.rejects(claim, (err: FlotillaError) => err.code === 'ABORTED');
        await waitersBecome(base + 1, 'the claim waits');
        ac.abort();
        await refused;
        await waitersBecome(base, 'the claim was cancelled');
        const added = (await c.request(
          'queue.add',
          { queue, name: 'n', data: null },
          { read: false },
        )) as { id: string };
        const got = (await c.request('queue.get', { queue, id: added.id }, { read: true })) as {
          job: { state: string };
        };
        assert.equal(got.job.state, 'waiting');
      } finally {
        c.close();
      }
    });

  void it('a Worker closed while its claims wait leaves no claim behind on the node', async () => {
    const client = new FlotillaClient({ endpoints: [cluster.url(queueLeader)] });
    try {
      await client.status();
      assert.ok(client.usesBinary(cluster.url(queueLeader)), 'the client learned the binary port');
      const base = await leaderWaiters();
      const w = new Worker(client.queue('wq-cancel-worker'), () => Promise.resolve(null), {
        concurrency: 2,
        waitMs: 20_000,
      });
      await waitersBecome(base + 2, 'both slots wait');
      await w.close({ graceMs: 100 });
      await waitersBecome(base, 'the closed worker left no claim');
    } finally {
      await client.close();
    }
  });
});

void describe('a claim waiting for a job over the binary protocol', () => {
  let single: TestNodes;
  before(async () => {
    single = await TestNodes.start({
      nodes: 1,
      clientProtocol: true,
      config: { maxInflightRequests: 1 },
    });
    await single.waitForQueueLeader();
  });
  after(async () => {
    await single.close();
  });

  void it('takes no admission slot, so other requests are still admitted', async () => {
    const c = await WireConnection.connect({
      host: '127.0.0.1',
      port: single.binaryPort(1),
      timeoutMs: 5_000,
    });
    try {
      // Three claims wait for a job on a node that admits one request at a time.
      const claims = [1, 2, 3].map(
        (i) =>
          c.request(
            'queue.claim',
            { queue: 'wq-idle', worker: `w${i}`, waitMs: 1_500 },
            {
              read: false,
            },
          ) as Promise<Claimed>,
      );
      const added = (await c.request(
        'queue.add',
        { queue: 'wq-idle', name: 'n', data: null },
        { read: false },
      )) as { id: string };
      const first = await Promise.race(claims);
      assert.equal(first.jobs[0]?.job.id, added.id);
      // The others end at their deadline with nothing; a refusal would have come at once.
      const rest = await Promise.allSettled(claims);
      for (const r of rest)
        if (r.status === 'rejected')
          assert.fail(`a claim was refused: ${(r.reason as FlotillaError).code}`);
    } finally {
      c.close();
    }
  });
});
