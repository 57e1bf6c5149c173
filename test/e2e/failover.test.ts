// End to end, with real processes: writes survive kill -9 of the leader (3 nodes) and of two
// nodes (5 nodes); the killed nodes restart, catch up, and every node converges.

import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { TestCluster } from './harness.js';

const clusters: TestCluster[] = [];
after(async () => {
  for (const c of clusters) await c.stop();
});

async function writeMany(
  c: ReturnType<TestCluster['client']>,
  prefix: string,
  n: number,
): Promise<Map<string, string>> {
  const acked = new Map<string, string>();
  await Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const key = `${prefix}/${i}`;
      const value = `v${i}-${Math.random().toString(36).slice(2)}`;
      await c.put(key, value);
      acked.set(key, value);
    }),
  );
  return acked;
}

async function checkAll(
  cluster: TestCluster,
  acked: Map<string, string>,
  ids: readonly number[],
): Promise<void> {
  for (const id of ids) {
    const c = cluster.client([id]);
    try {
      for (const [k, v] of acked) {
        const kv = await c.get(k, { serializable: true });
        assert.equal(kv?.value, v, `node ${id} lost acknowledged write ${k}`);
      }
    } finally {
      await c.close();
    }
  }
}

void test(
  '3 nodes: kill -9 the leader, a new leader serves, nothing acknowledged is lost',
  { timeout: 90_000 },
  async () => {
    const cluster = await TestCluster.create({ nodes: 3 });
    clusters.push(cluster);
    await cluster.start();
    const client = cluster.client();
    try {
      const before = await writeMany(client, 'a', 50);
      const oldLeader = await cluster.waitForLeader();
      await cluster.kill(oldLeader);
      const survivors = cluster.running();
      const newLeader = await cluster.waitForLeader(15_000, survivors);
      assert.notEqual(newLeader, oldLeader);
      const afterKill = await writeMany(client, 'b', 50);
      for (const [k, v] of before)
        assert.equal((await client.get(k))?.value, v, `lost ${k} after failover`);

      cluster.startNode(oldLeader);
      await cluster.waitForApplied(await cluster.maxCommit(), 20_000);
      const all = new Map([...before, ...afterKill]);
      await checkAll(cluster, all, cluster.running());
      const revisions = await Promise.all(cluster.running().map((id) => cluster.status(id)));
      assert.equal(
        new Set(revisions.map((s) => s?.revision)).size,
        1,
        'nodes converged to different revisions',
      );
    } finally {
      await client.close();
    }
  },
);

void test(
  '5 nodes: kill -9 two nodes (the leader among them), the majority serves; they rejoin',
  { timeout: 120_000 },
  async () => {
    const cluster = await TestCluster.create({ nodes: 5 });
    clusters.push(cluster);
    await cluster.start();
    const client = cluster.client();
    try {
      const before = await writeMany(client, 'a', 30);
      const leader = await cluster.waitForLeader();
      const other = cluster.running().find((id) => id !== leader) as number;
      await Promise.all([cluster.kill(leader), cluster.kill(other)]);
      await cluster.waitForLeader(20_000, cluster.running());
      const afterKill = await writeMany(client, 'b', 30);
      cluster.startNode(leader);
      cluster.startNode(other);
      // waitForApplied waits for every running node to answer, restarted ones included.
      await cluster.waitForApplied(await cluster.maxCommit(), 30_000);
      await checkAll(cluster, new Map([...before, ...afterKill]), cluster.running());
    } finally {
      await client.close();
    }
  },
);

void test(
  'a retried write with the same session and sequence applies once',
  { timeout: 60_000 },
  async () => {
    const cluster = await TestCluster.create({ nodes: 3 });
    clusters.push(cluster);
    await cluster.start();
    const url = cluster.endpoints()[0] as string;
    const body = JSON.stringify({ key: 'once', value: 'x', clientId: 'client-a', seq: 1 });
    const post = async (): Promise<{ header: { revision: number } }> => {
      const r = await fetch(`${url}/v1/kv/put`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
      });
      assert.equal(r.status, 200);
      return (await r.json()) as { header: { revision: number } };
    };
    const first = await post();
    const second = await post();
    assert.equal(
      second.header.revision,
      first.header.revision,
      'the retry raised the revision: it applied twice',
    );
    const st = await fetch(`${url}/v1/kv/range`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ key: 'once' }),
    });
    const r = (await st.json()) as { kvs: { version: number }[]; header: { revision: number } };
    assert.equal(r.kvs[0]?.version, 1);
    assert.equal(r.header.revision, first.header.revision);
  },
);
