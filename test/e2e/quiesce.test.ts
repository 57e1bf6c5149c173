// End to end, with real processes and `quiesce: on` (DESIGN.md, "Quiescing idle groups"): an
// idle cluster's key-value groups quiesce (the metrics say so), writes and reads wake them, and
// after kill -9 of the leader while idle a new leader serves, nothing acknowledged is lost.

import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { TestCluster } from './harness.js';
import { until } from './range-writers.js';

const clusters: TestCluster[] = [];
after(async () => {
  for (const c of clusters) await c.stop();
});

/** The node's `flotilla_raft_groups{state="quiesced"}` and `...{state="awake"}`. */
async function groupStates(
  cluster: TestCluster,
  id: number,
): Promise<{ quiesced: number; awake: number }> {
  const text = await (await fetch(`${cluster.member(id).client}/metrics`)).text();
  const read = (state: string): number => {
    const m = new RegExp(`^flotilla_raft_groups\\{[^}]*state="${state}"[^}]*\\} (\\d+)`, 'm').exec(
      text,
    );
    assert.ok(m !== null, `node ${id} reports no flotilla_raft_groups{state="${state}"}`);
    return Number(m[1]);
  };
  return { quiesced: read('quiesced'), awake: read('awake') };
}

void test(
  '3 nodes with quiesce on: idle groups quiesce; kill -9 the idle leader, a new one serves',
  { timeout: 120_000 },
  async () => {
    const cluster = await TestCluster.create({ nodes: 3, env: { FLOTILLA_QUIESCE: 'on' } });
    clusters.push(cluster);
    await cluster.start();
    const client = cluster.client();
    try {
      const acked = new Map<string, string>();
      for (let i = 0; i < 20; i++) {
        await client.put(`k/${i}`, `v${i}`);
        acked.set(`k/${i}`, `v${i}`);
      }
      // Once idle, every node's groups are quiesced but the queue's, which wakes for its tick
      // every second: the key-value group and the meta group.
      const seen = await until(
        'quiesced groups on every node',
        async () => {
          const s = await Promise.all(cluster.running().map((id) => groupStates(cluster, id)));
          return s.every((x) => x.quiesced >= 2 && x.awake <= 1) ? s : null;
        },
        20_000,
      );
      assert.ok(
        seen.every((x) => x.quiesced + x.awake >= 3),
        JSON.stringify(seen),
      );
      // A linearizable read of an idle group wakes it and is answered.
      assert.equal((await client.get('k/3'))?.value, 'v3');
      const oldLeader = await cluster.waitForLeader();
      await until(
        'the idle groups to quiesce again',
        async () => {
          const s = await groupStates(cluster, oldLeader);
          return s.quiesced >= 2 && s.awake <= 1 ? s : null;
        },
        20_000,
      );
      await cluster.kill(oldLeader);
      const newLeader = await cluster.waitForLeader(20_000, cluster.running());
      assert.notEqual(newLeader, oldLeader);
      await client.put('after', 'kill');
      for (const [k, v] of acked)
        assert.equal((await client.get(k))?.value, v, `lost ${k} after failover`);
      assert.equal((await client.get('after'))?.value, 'kill');
    } finally {
      await client.close();
    }
  },
);
