// The key-value history over HTTP on real in-process nodes: a range at a past revision served
// by a follower, a compaction sent to a follower and forwarded, the refusal of a compacted
// revision naming the oldest one left, and the leader's automatic compaction reaching every
// replica at the same revision.

import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import { TestNodes, postJson } from './nodes.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function start(config: Record<string, unknown>) {
  const nodes = await TestNodes.start({ nodes: 3, config });
  cleanups.push(() => nodes.close());
  const leader = await nodes.waitForLeader();
  return { nodes, leader, followers: [1, 2, 3].filter((id) => id !== leader) };
}

async function until(what: string, cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

interface RangeJson {
  header: { revision: number };
  kvs?: { key: string; value: string; modRevision: number }[];
  error?: { code: string; message: string; indefinite: boolean };
}

void test('a follower reads the past, a forwarded compaction forgets it on every node', async () => {
  const { nodes, followers } = await start({ compactionKeepRevisions: 0 });
  const via = nodes.url(followers[0] as number);
  const revs: number[] = [];
  for (const v of ['one', 'two', 'three']) {
    const r = await postJson(`${via}/v1/kv/put`, { key: 'k', value: v }, { timeoutMs: 10_000 });
    assert.equal(r.status, 200, JSON.stringify(r.json));
    revs.push((r.json as unknown as RangeJson).header.revision);
  }
  const at = async (revision: number) =>
    postJson(`${via}/v1/kv/range`, { key: 'k', revision }, { timeoutMs: 10_000 });
  const first = await at(revs[0] as number);
  assert.equal(first.status, 200, JSON.stringify(first.json));
  assert.deepEqual(
    (first.json as unknown as RangeJson).kvs?.map((kv) => kv.value),
    ['one'],
    'the value at the first write',
  );
  const compact = await postJson(
    `${via}/v1/kv/compact`,
    { revision: revs[1] },
    { timeoutMs: 10_000 },
  );
  assert.equal(compact.status, 200, JSON.stringify(compact.json));
  assert.equal(compact.json['compacted'], revs[1]);
  await until('every node compacted', () => nodes.nodes.every((n) => n.kv.compacted() === revs[1]));
  const gone = await at(revs[0] as number);
  assert.equal(gone.status, 410, JSON.stringify(gone.json));
  const err = (gone.json as unknown as RangeJson).error;
  assert.equal(err?.code, 'COMPACTED');
  assert.equal(err?.indefinite, false);
  assert.match(err?.message ?? '', new RegExp(`oldest revision available is ${revs[1]}`));
  // etcd's compact_revision: where a read may start, as a number rather than in prose.
  assert.equal((err as { compactRevision?: number } | undefined)?.compactRevision, revs[1]);
  const kept = await at(revs[1] as number);
  assert.deepEqual(
    (kept.json as unknown as RangeJson).kvs?.map((kv) => kv.value),
    ['two'],
  );
  const future = await at((revs[2] as number) + 100);
  assert.equal((future.json as unknown as RangeJson).error?.code, 'FUTURE_REVISION');
  const again = await postJson(
    `${via}/v1/kv/compact`,
    { revision: revs[1] },
    { timeoutMs: 10_000 },
  );
  assert.equal(again.status, 410, JSON.stringify(again.json));
  // A compaction that is too late names the oldest revision left, as a read does.
  const againErr = (again.json as unknown as RangeJson).error as { compactRevision?: number };
  assert.equal(againErr.compactRevision, revs[1], JSON.stringify(again.json));
  const bad = await postJson(`${via}/v1/kv/compact`, { revision: 'x' }, { timeoutMs: 10_000 });
  assert.equal(bad.status, 400, JSON.stringify(bad.json));
});

void test('the leader compacts automatically, keeping the configured revisions', async () => {
  const { nodes, leader } = await start({ compactionKeepRevisions: 5 });
  const url = nodes.url(leader);
  let last = 0;
  for (let i = 0; i < 20; i++) {
    const r = await postJson(
      `${url}/v1/kv/put`,
      { key: `k${i % 3}`, value: `${i}` },
      { timeoutMs: 10_000 },
    );
    assert.equal(r.status, 200, JSON.stringify(r.json));
    last = (r.json as unknown as RangeJson).header.revision;
  }
  // The leader looks once a second; its compaction reaches every replica through the log.
  await until(
    `every node compacted to ${last - 5} (saw ${nodes.nodes.map((n) => n.kv.compacted()).join(',')})`,
    () => nodes.nodes.every((n) => n.kv.compacted() === last - 5),
  );
  const kept = await postJson(
    `${url}/v1/kv/range`,
    { key: 'k0', revision: last - 5 },
    { timeoutMs: 10_000 },
  );
  assert.equal(kept.status, 200, JSON.stringify(kept.json));
  const gone = await postJson(
    `${url}/v1/kv/range`,
    { key: 'k0', revision: last - 6 },
    { timeoutMs: 10_000 },
  );
  assert.equal(gone.status, 410, JSON.stringify(gone.json));
});

void test('the leader keeps the history under compactionKeepBytes on every node, whatever the revisions kept', async () => {
  const { nodes, leader } = await start({
    compactionKeepRevisions: 100_000,
    compactionKeepBytes: 8 * 1024,
  });
  const url = nodes.url(leader);
  const value = 'v'.repeat(1024);
  for (let i = 0; i < 40; i++) {
    const r = await postJson(`${url}/v1/kv/put`, { key: 'big', value }, { timeoutMs: 10_000 });
    assert.equal(r.status, 200, JSON.stringify(r.json));
  }
  // 39 replaced versions of 1,027 bytes: about 40 KB held until the leader's next look.
  await until(
    `every node's history within 8 KiB (saw ${nodes.nodes.map((n) => n.kv.historyBytes()).join(',')})`,
    () => nodes.nodes.every((n) => n.kv.historyBytes() <= 8 * 1024 && n.kv.compacted() > 1),
  );
  const compacted = nodes.nodes.map((n) => n.kv.compacted());
  assert.equal(
    new Set(compacted).size,
    1,
    `every replica at the same revision: ${compacted.join(',')}`,
  );
  const metrics = await (await fetch(`${url}/metrics`)).text();
  const held = /^flotilla_kv_history_bytes(?:\{[^}]*\})? (\d+)$/m.exec(metrics);
  assert.ok(held !== null && Number(held[1]) <= 8 * 1024, metrics.slice(0, 200));
});
