// A client connection, HTTP or binary, has one abort, fired when it closes, that every wait of
// its requests listens to (http.ts, wire-server.ts). On a connection that lives for millions of
// requests, a wait that ends without removing its listener would pile them up: each request
// kind, on the leader and through a follower that forwards it, must leave none behind. And a
// client that leaves must still stop what its request waits on.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Client } from 'undici';
import { FlotillaClient } from '../../src/client/index.js';
import { until } from '../support/until.js';
import { TestNodes } from './nodes.js';

const GAUGE = 'flotilla_client_abort_listeners';

let nodes: TestNodes;
let kvLeader: number;
let queueLeader: number;

before(async () => {
  nodes = await TestNodes.start({ nodes: 3, clientProtocol: true });
  kvLeader = await nodes.waitForLeader();
  queueLeader = await nodes.waitForQueueLeader();
});

after(async () => {
  await nodes.close();
});

interface Answer {
  readonly status: number;
  readonly json: Record<string, unknown>;
}

async function post(c: Client, path: string, body: unknown): Promise<Answer> {
  const r = await c.request({
    method: 'POST',
    path,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await r.body.text();
  return { status: r.statusCode, json: JSON.parse(text) as Record<string, unknown> };
}

async function get(c: Client, path: string): Promise<number> {
  const r = await c.request({ method: 'GET', path });
  await r.body.text();
  return r.statusCode;
}

/** Node `id`'s gauge, read over a connection of its own (the one under test stays open). */
async function listeners(id: number, protocol: 'http' | 'binary' = 'http'): Promise<number> {
  const res = await fetch(`${nodes.url(id)}/metrics`);
  const line = (await res.text())
    .split('\n')
    .find((l) => l.startsWith(`${GAUGE}{`) && l.includes(`protocol="${protocol}"`));
  if (line === undefined) throw new Error(`node ${id}'s /metrics has no ${GAUGE}`);
  return Number(line.slice(line.lastIndexOf(' ') + 1));
}

function ok(a: Answer, what: string): Record<string, unknown> {
  assert.equal(a.status, 200, `${what}: ${a.status} ${JSON.stringify(a.json)}`);
  return a.json;
}

/** Every kind of request a client sends, one after another on the connection `c`. */
async function everyKind(c: Client, tag: string): Promise<void> {
  const key = `abort-${tag}`;
  ok(await post(c, '/v1/kv/put', { key, value: 'v1' }), 'put');
  ok(await post(c, '/v1/kv/range', { key }), 'linearizable range');
  ok(await post(c, '/v1/kv/range', { key, consistency: 'serializable' }), 'serializable range');
  ok(await post(c, '/v1/kv/range', { key, consistency: 'lease' }), 'lease range');
  ok(
    await post(c, '/v1/kv/txn', {
      compare: [{ key, target: 'value', op: '=', value: 'v1' }],
      success: [{ put: { key, value: 'v2' } }],
    }),
    'txn',
  );
  const lease = ok(await post(c, '/v1/lease/grant', { ttl: 30 }), 'lease grant');
  ok(await post(c, '/v1/lease/revoke', { id: lease['id'] }), 'lease revoke');
  ok(await post(c, '/v1/kv/delete', { key }), 'delete');
  // A refusal: the wait it never started leaves nothing either.
  assert.equal((await post(c, '/v1/kv/put', { key: '' })).status, 400);
  const queue = `q-${tag}`;
  ok(await post(c, '/v1/queue/add', { queue, name: 'job', data: { n: 1 } }), 'queue add');
  const claimed = ok(await post(c, '/v1/queue/claim', { queue, waitMs: 1_000 }), 'claim');
  const taken = (claimed['jobs'] as { job: { id: string }; token: number }[])[0];
  assert.ok(taken !== undefined, `the claim took the job: ${JSON.stringify(claimed)}`);
  ok(
    await post(c, '/v1/queue/complete', { queue, id: taken.job.id, token: taken.token }),
    'queue complete',
  );
  // A long-poll claim that finds nothing and gives up at its deadline.
  const empty = ok(await post(c, '/v1/queue/claim', { queue, waitMs: 150 }), 'empty claim');
  assert.deepEqual(empty['jobs'], []);
  ok(await post(c, '/v1/queue/stats', { queue }), 'queue stats');
  assert.equal(await get(c, '/v1/cluster/status'), 200);
  assert.equal(await get(c, '/v1/status'), 200);
}

void test('requests that end leave no listener on their keep-alive connection, at a leader or through a follower', async () => {
  const follower = [1, 2, 3].find((id) => id !== kvLeader && id !== queueLeader) ?? 0;
  assert.ok(follower !== 0, 'a member leads neither group');
  const targets = [...new Set([kvLeader, queueLeader, follower])];
  const clients = targets.map((id) => new Client(nodes.url(id), { pipelining: 1 }));
  try {
    for (let round = 0; round < 3; round++)
      await Promise.all(clients.map((c, i) => everyKind(c, `${targets[i]}-${round}`)));
    // The connections are still open: each has its abort, with nothing left listening.
    for (const id of [1, 2, 3]) assert.equal(await listeners(id), 0, `node ${id}'s ${GAUGE}`);
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
});

void test('a waiting claim listens while it waits, and a client that leaves stops it: an add then stays waiting', async () => {
  const queue = 'left';
  const c = new Client(nodes.url(queueLeader), { pipelining: 1 });
  const pending = post(c, '/v1/queue/claim', { queue, waitMs: 20_000 }).catch(
    (err: unknown) => err,
  );
  // The gauge shows the wait (so the test above could see one left behind).
  await until(
    `node ${queueLeader}'s ${GAUGE} to show the waiting claim`,
    async () => (await listeners(queueLeader)) >= 1,
    5_000,
  );
  await c.destroy();
  assert.ok((await pending) instanceof Error, 'the claim ended with the connection');
  await until(
    `node ${queueLeader}'s ${GAUGE} to fall back to 0`,
    async () => (await listeners(queueLeader)) === 0,
    5_000,
  );
  const other = new Client(nodes.url(queueLeader), { pipelining: 1 });
  try {
    ok(await post(other, '/v1/queue/add', { queue, name: 'job', data: {} }), 'add');
    // Had the departed claim still waited, the add would have handed it the job (active).
    const stats = ok(await post(other, '/v1/queue/stats', { queue }), 'stats')['stats'] as {
      counts: Record<string, number>;
    };
    assert.deepEqual(
      {
        waiting: stats.counts['waiting'],
        active: stats.counts['active'],
      },
      { waiting: 1, active: 0 },
      JSON.stringify(stats),
    );
  } finally {
    await other.close();
  }
});

/** The same over the binary protocol, with the project's client. */
async function everyKindBinary(c: FlotillaClient, tag: string): Promise<void> {
  const key = `abort-bin-${tag}`;
  await c.put(key, 'v1');
  await c.get(key);
  await c.get(key, { consistency: 'serializable' });
  await c.get(key, { consistency: 'lease' });
  await c.txn([{ key, target: 'value', op: '=', value: 'v1' }], [{ put: { key, value: 'v2' } }]);
  const lease = await c.leaseGrant(30);
  await c.leaseRevoke(lease.id);
  await c.delete(key);
  await assert.rejects(c.put('', 'x'), { code: 'KEY_EMPTY' });
  const q = c.queue(`qb-${tag}`);
  await q.add('job', { n: 1 });
  const claimed = await q.claim({ waitMs: 1_000 });
  const taken = claimed.jobs[0];
  assert.ok(taken !== undefined, `the claim took the job: ${JSON.stringify(claimed)}`);
  await q.complete(taken.job.id, taken.token);
  assert.deepEqual((await q.claim({ waitMs: 150 })).jobs, []);
  await q.stats();
}

void test('requests over the binary protocol leave no listener on their connection either', async () => {
  const follower = [1, 2, 3].find((id) => id !== kvLeader && id !== queueLeader) ?? 0;
  const targets = [...new Set([kvLeader, queueLeader, follower])];
  const clients = targets.map(
    (id) => new FlotillaClient({ endpoints: [nodes.url(id)], rangeRouting: false }),
  );
  try {
    // The first call learns the binary port over HTTP; the rest go over the binary protocol.
    await Promise.all(clients.map((c) => c.status()));
    for (let round = 0; round < 3; round++)
      await Promise.all(clients.map((c, i) => everyKindBinary(c, `${targets[i]}-${round}`)));
    targets.forEach((id, i) =>
      assert.ok((clients[i] as FlotillaClient).usesBinary(nodes.url(id)), `binary to node ${id}`),
    );
    for (const id of [1, 2, 3])
      assert.equal(await listeners(id, 'binary'), 0, `node ${id}'s binary ${GAUGE}`);
    // Many requests in flight on one connection listen at once: no leak, and no warning of one
    // (Node warns past 10 listeners on one signal unless told otherwise).
    const warnings: string[] = [];
    const onWarning = (w: Error): void => void warnings.push(`${w.name}: ${w.message}`);
    process.on('warning', onWarning);
    const one = new FlotillaClient({
      endpoints: [nodes.url(kvLeader)],
      rangeRouting: false,
      binaryConnections: 1,
    });
    try {
      await one.status();
      await Promise.all(Array.from({ length: 40 }, (_, i) => one.put(`many-${i}`, 'v')));
      await Promise.all(Array.from({ length: 40 }, (_, i) => one.get(`many-${i}`)));
      assert.ok(one.usesBinary(nodes.url(kvLeader)));
    } finally {
      await one.close();
      process.off('warning', onWarning);
    }
    assert.deepEqual(warnings, []);
    // The gauge counts: a claim waiting on the queue's leader shows.
    const q = (clients[targets.indexOf(queueLeader)] as FlotillaClient).queue('bin-wait');
    const ac = new AbortController();
    const waiting = q.claim({ waitMs: 20_000, signal: ac.signal }).catch((err: unknown) => err);
    await until(
      `node ${queueLeader}'s binary ${GAUGE} to show the waiting claim`,
      async () => (await listeners(queueLeader, 'binary')) >= 1,
      5_000,
    );
    ac.abort();
    await waiting;
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
});
