// A delete with `prevKv` over a range holding more than `maxRangeBytes` (16 MiB) of keys and
// values is refused `413 PREV_KV_TOO_LARGE` and deletes nothing, through the HTTP API of a real
// node, alone or in a transaction; before, it built and encoded the whole answer on the leader
// and kept it in the session table. A smaller range with `prevKv`, and the large one without
// it, are deleted as before.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { defaultLimits } from '../../src/base/limits.js';
import { TestNodes, postJson } from '../server/nodes.js';

let c: TestNodes;

before(async () => {
  c = await TestNodes.start({ nodes: 1 });
  await c.waitForLeader();
});

after(async () => {
  await c?.close();
});

const post = (path: string, body: unknown) =>
  postJson(`${c.url(1)}${path}`, body, { timeoutMs: 30_000 });

async function count(prefix: string): Promise<number> {
  const r = await post('/v1/kv/range', { key: prefix, prefix: true, countOnly: true });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  return r.json['count'] as number;
}

void test('a delete with prevKv past maxRangeBytes is refused whole; smaller ones and ones without prevKv delete', async () => {
  // Keys of 6 bytes: n - 1 records fit the limit, n do not.
  const value = 'v'.repeat(defaultLimits.maxValueBytes - 64);
  const n = Math.floor(defaultLimits.maxRangeBytes / (value.length + 6)) + 1;
  assert.ok((n - 1) * (value.length + 6) <= defaultLimits.maxRangeBytes);
  for (let i = 0; i < n; i++) {
    const r = await post('/v1/kv/put', { key: `big/${String(i).padStart(2, '0')}`, value });
    assert.equal(r.status, 200, JSON.stringify(r.json));
  }
  await post('/v1/kv/put', { key: 'small/a', value: 'x' });

  const del = await post('/v1/kv/delete', {
    key: 'big/',
    prefix: true,
    prevKv: true,
    clientId: 'c1',
    seq: 1,
  });
  const err = del.json['error'] as { code: string; message: string; indefinite: boolean };
  assert.equal(del.status, 413, JSON.stringify(del.json).slice(0, 500));
  assert.equal(err.code, 'PREV_KV_TOO_LARGE');
  assert.equal(err.indefinite, false);
  assert.match(err.message, /nothing was deleted/);
  assert.equal(await count('big/'), n, 'nothing was deleted');

  const txn = await post('/v1/kv/txn', {
    success: [
      { put: { key: 'small/b', value: 'y' } },
      { delete: { key: 'big/', prefix: true, prevKv: true } },
    ],
  });
  assert.equal(txn.status, 413, JSON.stringify(txn.json).slice(0, 500));
  assert.equal((txn.json['error'] as { code: string }).code, 'PREV_KV_TOO_LARGE');
  assert.equal(await count('small/'), 1, 'the put of the refused transaction did not apply');
  assert.equal(await count('big/'), n);

  // One key fewer fits: the range without its last key is answered whole.
  const part = await post('/v1/kv/delete', {
    key: 'big/',
    rangeEnd: `big/${String(n - 1).padStart(2, '0')}`,
    prevKv: true,
  });
  assert.equal(part.status, 200, JSON.stringify(part.json).slice(0, 500));
  assert.equal(part.json['deleted'], n - 1);
  assert.equal((part.json['prevKvs'] as unknown[]).length, n - 1);

  // Put them back: without prevKv, any range is deleted.
  for (let i = 0; i < n - 1; i++)
    await post('/v1/kv/put', { key: `big/${String(i).padStart(2, '0')}`, value });
  const all = await post('/v1/kv/delete', { key: 'big/', prefix: true });
  assert.equal(all.status, 200, JSON.stringify(all.json));
  assert.equal(all.json['deleted'], n);
  assert.equal(await count('big/'), 0);
});

void test("a transaction's delete answers prevKvs only when it asked for them, as a delete alone does", async () => {
  await post('/v1/kv/put', { key: 'pk/a', value: '1' });
  await post('/v1/kv/put', { key: 'pk/b', value: '2' });
  const r = await post('/v1/kv/txn', {
    success: [
      { delete: { key: 'pk/a' } },
      { delete: { key: 'pk/b', prevKv: true } },
      { delete: { key: 'pk/none', prevKv: true } },
    ],
  });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  const [a, b, none] = r.json['responses'] as {
    delete: { deleted: number; prevKvs?: { value: string }[] };
  }[];
  assert.deepEqual(a?.delete, { deleted: 1 });
  assert.equal(b?.delete.deleted, 1);
  assert.deepEqual(
    b?.delete.prevKvs?.map((kv) => kv.value),
    ['2'],
  );
  assert.deepEqual(none?.delete, { deleted: 0, prevKvs: [] });
});
