// Lease reads on real in-process nodes: `"consistency": "lease"` is served over HTTP and over
// the binary protocol, on the leader and on a follower (which asks the leader for a lease read
// index), and counted under its own level. With the lease off (leaseDriftTicks 0) a lease read
// still succeeds: it takes a ReadIndex round instead. That a read held by the lease skips the
// round is the core's to show (test/raft/testdata/lease-read.txt).

import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import { FlotillaClient } from '../../src/client/index.js';
import { TestNodes, postJson as post } from './nodes.js';

const postJson = (url: string, body: unknown): ReturnType<typeof post> =>
  post(url, body, { timeoutMs: 10_000 });

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface RangeJson {
  kvs?: { key: string; value: string }[];
  error?: { code: string };
}

async function start(config: Record<string, unknown> = {}): Promise<{
  nodes: TestNodes;
  leader: number;
  follower: number;
}> {
  const nodes = await TestNodes.start({ nodes: 3, clientProtocol: true, config });
  cleanups.push(() => nodes.close());
  const leader = await nodes.waitForLeader();
  const follower = [1, 2, 3].find((id) => id !== leader) as number;
  return { nodes, leader, follower };
}

async function leaseReads(nodes: TestNodes, id: number): Promise<number> {
  const text = await nodes.node(id).metrics.registry.metrics();
  const line = text
    .split('\n')
    .find(
      (l) =>
        l.startsWith('flotilla_reads_total{') &&
        l.includes('level="lease"') &&
        l.includes('outcome="ok"'),
    );
  return line === undefined ? 0 : Number(line.split(' ').pop());
}

void test('a lease read over HTTP on the leader and on a follower sees the last write', async () => {
  const { nodes, leader, follower } = await start();
  const put = await postJson(`${nodes.url(leader)}/v1/kv/put`, { key: 'k', value: 'v1' });
  assert.equal(put.status, 200, JSON.stringify(put.json));
  for (const id of [leader, follower]) {
    const before = await leaseReads(nodes, id);
    const r = await postJson(`${nodes.url(id)}/v1/kv/range`, { key: 'k', consistency: 'lease' });
    const json = r.json as RangeJson;
    assert.equal(r.status, 200, JSON.stringify(json));
    assert.equal(json.kvs?.[0]?.value, 'v1', `node ${id}: ${JSON.stringify(json)}`);
    assert.equal(await leaseReads(nodes, id), before + 1, `node ${id} counts a lease read`);
  }
});

void test('a lease read over the binary protocol, and a contradiction refused there too', async () => {
  const { nodes, leader } = await start();
  const client = new FlotillaClient({ endpoints: [nodes.url(leader)] });
  cleanups.push(async () => client.close());
  await client.put('w', 'x');
  const kv = await client.get('w', { consistency: 'lease' });
  assert.ok(client.usesBinary(nodes.url(leader)), 'the read went over the binary protocol');
  assert.equal(kv?.value, 'x');
  await assert.rejects(
    client.get('w', { consistency: 'lease', serializable: true }),
    (e: unknown) => (e as { code?: string }).code === 'CONFLICTING_FIELDS',
  );
});

void test('with the lease off, a lease read takes a ReadIndex round and still succeeds', async () => {
  const { nodes, leader, follower } = await start({ leaseDriftTicks: 0 });
  await postJson(`${nodes.url(leader)}/v1/kv/put`, { key: 'k', value: 'v2' });
  const r = await postJson(`${nodes.url(follower)}/v1/kv/range`, {
    key: 'k',
    consistency: 'lease',
  });
  assert.equal((r.json as RangeJson).kvs?.[0]?.value, 'v2', JSON.stringify(r.json));
});
