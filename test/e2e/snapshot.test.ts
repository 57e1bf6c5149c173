// Snapshots end to end: with a small snapshot interval the leader compacts its log, so a node
// that was down catches up through InstallSnapshot; then every node restarts from its
// snapshot plus WAL and still holds every acknowledged write. Also: SIGTERM on the leader
// hands leadership over before exiting.

import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { TestCluster } from './harness.js';

const clusters: TestCluster[] = [];
after(async () => {
  for (const c of clusters) await c.stop();
});

void test(
  'a node behind the compacted log catches up from a snapshot; restarts recover',
  { timeout: 120_000 },
  async () => {
    const cluster = await TestCluster.create({
      nodes: 3,
      // A first start with a member missing: a majority of empty members starts the cluster.
      extraArgs: ['--snapshot-every-entries', '100', '--initial-cluster-state', 'new'],
    });
    clusters.push(cluster);
    // Node 3 stays down from the start, so the leader never streams appends to it (appends to
    // a replicating peer that dies are queued by the transport and would catch it up alone).
    const lagger = 3;
    cluster.startNode(1);
    cluster.startNode(2);
    const leader = await cluster.waitForLeader(15_000, [1, 2]);
    const client = cluster.client(cluster.running());
    const acked = new Map<string, string>();
    try {
      for (let batch = 0; batch < 10; batch++) {
        await Promise.all(
          Array.from({ length: 40 }, async (_, i) => {
            const key = `k${batch}-${i}`;
            await client.put(key, `v${batch}-${i}`);
            acked.set(key, `v${batch}-${i}`);
          }),
        );
      }
      const st = await cluster.status(leader);
      assert.ok(
        (st?.firstIndex ?? 0) > 2,
        `the leader compacted its log (first index ${st?.firstIndex})`,
      );
      cluster.startNode(lagger);
      await cluster.waitForApplied(await cluster.maxCommit(), 30_000);
      const lagClient = cluster.client([lagger]);
      try {
        for (const [k, v] of acked)
          assert.equal(
            (await lagClient.get(k, { serializable: true }))?.value,
            v,
            `lagger missing ${k}`,
          );
      } finally {
        await lagClient.close();
      }
      const metrics = await (await fetch(`${cluster.member(lagger).client}/metrics`)).text();
      assert.match(
        metrics,
        /flotilla_snapshots_total\{[^}]*kind="restored"[^}]*\} [1-9]/,
        'the lagger installed a snapshot',
      );
      // Full restart: every node recovers from its own snapshot and WAL.
      for (const id of cluster.running()) await cluster.kill(id);
      for (const m of cluster.members) cluster.startNode(m.id);
      await cluster.waitForLeader(20_000);
      for (const [k, v] of acked)
        assert.equal((await client.get(k))?.value, v, `lost ${k} across a full restart`);
    } finally {
      await client.close();
    }
  },
);

void test(
  'SIGTERM on the leader hands leadership over and exits cleanly',
  { timeout: 60_000 },
  async () => {
    const cluster = await TestCluster.create({ nodes: 3 });
    clusters.push(cluster);
    await cluster.start();
    const leader = await cluster.waitForLeader();
    const client = cluster.client();
    try {
      await client.put('before', 'x');
      const code = await cluster.terminate(leader);
      assert.equal(code, 0, 'clean exit');
      const next = await cluster.waitForLeader(5_000, cluster.running());
      assert.notEqual(next, leader);
      await client.put('after', 'y');
      assert.equal((await client.get('before'))?.value, 'x');
    } finally {
      await client.close();
    }
  },
);
