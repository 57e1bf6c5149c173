// The store quota (storeQuotaBytes): the key-value store is held in memory, so once a node's
// keys and values (live and history) reach the quota a write that puts is refused STORE_FULL
// with nothing written, while deletes, compaction and reads go on; once room is made, writes
// are accepted again. Without the quota (0) the same writes all succeed.

import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import { TestNodes, postJson, until } from './nodes.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const QUOTA = 4 * 1024;
const value = 'v'.repeat(1000);

async function start(storeQuotaBytes: number) {
  const nodes = await TestNodes.start({
    nodes: 3,
    config: { storeQuotaBytes, compactionKeepRevisions: 0, compactionKeepBytes: 0 },
  });
  cleanups.push(() => nodes.close());
  return { nodes, url: nodes.url(await nodes.waitForLeader()) };
}

interface Answer {
  header?: { revision: number };
  error?: { code: string; message: string; indefinite: boolean };
}

async function post(url: string, path: string, body: unknown) {
  const r = await postJson(`${url}${path}`, body, { timeoutMs: 10_000 });
  return { status: r.status, json: r.json as unknown as Answer };
}

void test('puts past the quota are refused STORE_FULL; deletes and compaction make room', async () => {
  const { nodes, url } = await start(QUOTA);
  // Each put holds about 1,003 bytes: the fifth reaches the quota, the sixth is refused.
  const accepted: number[] = [];
  let refused: Answer | null = null;
  for (let i = 0; i < 10 && refused === null; i++) {
    const r = await post(url, '/v1/kv/put', { key: `k${i}`, value });
    if (r.status === 200) accepted.push(i);
    else {
      assert.equal(r.status, 507, JSON.stringify(r.json));
      refused = r.json;
    }
  }
  assert.deepEqual(accepted, [0, 1, 2, 3, 4]);
  assert.equal(refused?.error?.code, 'STORE_FULL');
  assert.equal(refused?.error?.indefinite, false);
  assert.match(refused?.error?.message ?? '', /storeQuotaBytes is 4096: nothing was written/);
  const read = await post(url, '/v1/kv/range', { key: 'k5' });
  assert.equal(read.status, 200);
  assert.equal((read.json as { count?: number }).count ?? 0, 0, 'the refused put wrote nothing');
  // A transaction that only deletes goes through; the deleted versions stay as history...
  const del = await post(url, '/v1/kv/delete', { key: 'k0' });
  assert.equal(del.status, 200, JSON.stringify(del.json));
  const stillFull = await post(url, '/v1/kv/put', { key: 'k5', value });
  assert.equal(stillFull.json.error?.code, 'STORE_FULL');
  // ...until a compaction forgets them.
  const rev = del.json.header?.revision ?? 0;
  const compact = await post(url, '/v1/kv/compact', { revision: rev });
  assert.equal(compact.status, 200, JSON.stringify(compact.json));
  const again = await post(url, '/v1/kv/put', { key: 'k5', value });
  assert.equal(again.status, 200, JSON.stringify(again.json));
  const metrics = await (await fetch(`${url}/metrics`)).text();
  const held = /^flotilla_kv_store_bytes(?:\{[^}]*\})? (\d+)$/m.exec(metrics);
  assert.ok(held !== null, 'flotilla_kv_store_bytes is exported');
  assert.equal(Number(held[1]), 5 * (2 + value.length));
  // The followers apply the last put when they hear its commit: with the next append or the
  // leader's next tick (DESIGN.md, "Telling followers the commit index").
  for (const [i, n] of nodes.nodes.entries())
    await until(
      () => `node ${i + 1} holds ${n.kv.bytes()} bytes, not ${5 * (2 + value.length)}`,
      () => n.kv.bytes() === 5 * (2 + value.length),
      5_000,
    );
});

void test('with the quota off the same writes all succeed', async () => {
  const { url } = await start(0);
  for (let i = 0; i < 10; i++) {
    const r = await post(url, '/v1/kv/put', { key: `k${i}`, value });
    assert.equal(r.status, 200, JSON.stringify(r.json));
  }
});
