// End to end, with real processes (issue 18): a 5-node cluster whose key space is split into
// 64 ranges (E2E_RANGES=N for another count), each on 3 of the nodes, with a writer on
// every range. While they all write: node 5 is killed with -9 and started again, four ranges
// are split once more, a sixth node joins, and node 4 is drained until it holds no range split
// off range 0. Then every acknowledged write reads back (linearizable reads, through the new
// node and through the restarted one), and the map covers the key space once. The checks are
// shown to catch a planted lost write and a planted gap and overlap.

import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import type { RangesResponse } from '../../src/api/types.js';
import { FlotillaClient } from '../../src/client/index.js';
import { TestCluster } from './harness.js';
import { PrefixWriter, lostWrites, mapFaults, until } from './range-writers.js';

const RANGES = Number(process.env['E2E_RANGES'] ?? 64);
/** Ranges split again while the writers write. */
const LATE_SPLITS = 4;
const NODES = 5;

const clusters: TestCluster[] = [];
after(async () => {
  for (const c of clusters) await c.stop();
});

/** Writer `j`'s prefix; prefixes sort as their numbers do. */
const prefixOf = (j: number): string => `k${String(j).padStart(3, '0')}`;

/**
 * Writers whose prefix starts no range at first: each shares the range of the writer before
 * it until a late split at its prefix gives it its own. Spread over the key space.
 */
function lateSplitWriters(writers: number): number[] {
  return Array.from({ length: LATE_SPLITS }, (_, k) =>
    Math.floor((writers * (k + 1)) / (LATE_SPLITS + 1)),
  );
}

/** Every writer made `n` more acknowledged writes than in `before`. */
async function everyWriterProgresses(
  what: string,
  writers: readonly PrefixWriter[],
  n: number,
  timeoutMs: number,
  cluster: TestCluster,
): Promise<void> {
  const before = writers.map((w) => w.acked.size);
  try {
    await until(
      what,
      () => (writers.every((w, i) => w.acked.size >= (before[i] as number) + n) ? true : null),
      timeoutMs,
    );
  } catch (err) {
    const stuck = writers
      .filter((w, i) => w.acked.size < (before[i] as number) + n)
      .map((w) => `${w.prefix} (${w.acked.size} acked, failed ${JSON.stringify([...w.failed])})`);
    throw new Error(`${(err as Error).message}; stuck: ${stuck.join(', ')}\n${cluster.dumpLogs()}`);
  }
}

/** Ranges split off range 0 whose replicas include `node`. */
const holding = (map: RangesResponse, node: number): number[] =>
  map.ranges.filter((r) => r.id >= 3 && r.replicas.includes(node)).map((r) => r.id);

void test(
  `${NODES} nodes, ${RANGES} ranges, a writer on each: kill -9, splits, a join and a drain while writing lose nothing acknowledged`,
  { timeout: 900_000 },
  async () => {
    const t0 = Date.now();
    const mark = (what: string): void =>
      console.log(`# ${what} at ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    const cluster = await TestCluster.create({
      nodes: NODES,
      // The placement loop looks again every second rather than every five when idle.
      env: { FLOTILLA_PLACEMENT_EVERY_MS: '1000' },
    });
    clusters.push(cluster);
    await cluster.start();
    const admin = cluster.client([1, 2, 3]);
    const ends = cluster.endpoints();
    // Four clients, each starting on another node, share the writers.
    const clients = [0, 1, 2, 3].map(
      (k) =>
        new FlotillaClient({
          endpoints: [...ends.slice(k), ...ends.slice(0, k)],
          timeoutMs: 3_000,
          deadlineMs: 20_000,
          maxAttempts: 40,
        }),
    );
    const writers: PrefixWriter[] = [];
    try {
      await until('the range map bootstrapped', async () => {
        const r = await admin.ranges();
        return r.ranges.length === 1 ? r : null;
      });

      // Split range 0 at the writers' prefixes, last first, so that each split cuts range 0
      // (which runs on every node) and names the new range's 3 replicas, in turn over nodes.
      const total = RANGES + LATE_SPLITS;
      const late = lateSplitWriters(total);
      let n = 0;
      for (let j = total - 1; j >= 1; j--) {
        if (late.includes(j)) continue;
        const replicas = [0, 1, 2].map((d) => ((n + d) % NODES) + 1).sort((a, b) => a - b);
        n++;
        await admin.splitRange(prefixOf(j), { replicas });
      }
      // Read once: the map is read linearizably (API.md, "GET /v1/ranges"), so every split
      // acknowledged shows, even on a member that follows the meta group and has not yet
      // heard the commit of the last (it hears it at the leader's next tick).
      let map = await admin.ranges();
      assert.equal(map.ranges.length, RANGES, `${RANGES} ranges after the splits`);
      mark(`${RANGES} ranges`);

      for (let j = 0; j < total; j++)
        writers.push(new PrefixWriter(clients[j % clients.length] as FlotillaClient, prefixOf(j)));
      await everyWriterProgresses('every range takes writes', writers, 3, 120_000, cluster);
      mark('every writer wrote');

      // kill -9 a node; every range keeps a majority of its three replicas.
      await cluster.kill(5);
      await everyWriterProgresses('writes go on without node 5', writers, 3, 90_000, cluster);
      cluster.startNode(5);
      await everyWriterProgresses('writes after node 5 restarted', writers, 3, 90_000, cluster);
      mark('node 5 killed and restarted');

      // Split four ranges again, each between the two writers it holds.
      for (const j of late) {
        const s = await admin.splitRange(prefixOf(j));
        assert.equal(s.right.start, prefixOf(j));
      }
      await everyWriterProgresses('writes after the late splits', writers, 3, 90_000, cluster);
      mark('late splits');

      // A sixth node joins; node 4 is drained: its replicas move, mostly to the new node.
      await cluster.join(6, cluster.endpoints([1, 2, 3]));
      await until(
        'node 6 votes in range 0',
        async () => {
          const m = await admin.members();
          return m.groups.find((g) => g.group === 0)?.voters.includes(6) === true ? true : null;
        },
        60_000,
      );
      mark('node 6 joined');
      await admin.drainNode(4);
      map = await until(
        'node 4 drained, node 6 holding ranges',
        async () => {
          const r = await admin.ranges();
          return holding(r, 4).length === 0 && holding(r, 6).length > 0 ? r : null;
        },
        600_000,
      ).catch(async (err: unknown) => {
        const p = await admin.placement().catch((e: unknown) => String(e));
        throw new Error(`${(err as Error).message}; placement: ${JSON.stringify(p)}`);
      });
      mark(`node 4 drained (node 6 holds ${holding(map, 6).length} ranges)`);
      await until(
        'node 4 gave up its replicas',
        async () => ((await cluster.status(4))?.ranges === 1 ? true : null),
        60_000,
      );
      await everyWriterProgresses('writes after the drain', writers, 3, 90_000, cluster);
      await Promise.all(writers.map((w) => w.stop()));
      mark('writers stopped');

      // The map: no gap, no overlap, every range on three replicas, none on node 4.
      map = await admin.ranges();
      assert.deepEqual(mapFaults(map), [], JSON.stringify(map.ranges));
      assert.equal(map.ranges.length, RANGES + LATE_SPLITS);
      for (const r of map.ranges.filter((x) => x.id >= 3))
        assert.equal(r.replicas.length, 3, `range ${r.id}: ${JSON.stringify(r.replicas)}`);

      // Every acknowledged write, read linearizably through the new node and the restarted one.
      const acked = writers.reduce((s, w) => s + w.acked.size, 0);
      for (const via of [6, 5]) {
        const reader = cluster.client([via]);
        try {
          const lost = await lostWrites(reader, writers);
          assert.deepEqual(lost.slice(0, 10), [], `${lost.length} of ${acked} lost (via ${via})`);
        } finally {
          await reader.close();
        }
      }
      const failed = new Map<string, number>();
      for (const w of writers)
        for (const [code, k] of w.failed) failed.set(code, (failed.get(code) ?? 0) + k);
      mark(`${acked} acknowledged writes read back; failed: ${JSON.stringify([...failed])}`);

      // The checks catch what they look for: a lost write (one acknowledged key deleted behind
      // the writers' back), a gap and an overlap in the map.
      const victim = writers[Math.floor(writers.length / 2)] as PrefixWriter;
      const [key, value] = [...victim.acked][0] as [string, string];
      await admin.delete(key);
      assert.deepEqual(await lostWrites(admin, [victim]), [{ key, acked: value, read: null }]);
      const rs = map.ranges;
      const gap = { ranges: [...rs.slice(0, 5), ...rs.slice(6)] };
      assert.match(mapFaults(gap).join('; '), /a gap between ranges/);
      const overlap = { ranges: [...rs.slice(0, 6), ...rs.slice(5)] };
      assert.match(mapFaults(overlap).join('; '), /appears twice/);
      assert.match(mapFaults(overlap).join('; '), /overlap/);
    } finally {
      await Promise.all(writers.map((w) => w.stop()));
      await admin.close();
      for (const c of clients) await c.close();
    }
  },
);
