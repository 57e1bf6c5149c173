// End to end, with real processes: a 3-node cluster splits its key space while clients with
// exactly-once sessions write on both sides of the split key; the right-hand range's leader is
// killed with -9 and restarted; every acknowledged write is then on every node, the map shows
// two contiguous ranges, a transaction across them is refused, a split at a range's start is
// answered the split that made it, and the CLI's `ranges` and `range split` run against the cluster.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, test } from 'node:test';
import { cliEntry } from '../../src/cli/cluster.js';
import { FlotillaError, type FlotillaClient } from '../../src/client/index.js';
import { TestCluster } from './harness.js';
import { until } from './range-writers.js';

const clusters: TestCluster[] = [];
after(async () => {
  for (const c of clusters) await c.stop();
});

/** Writes `prefix/i` until `stop` is set; records what was acknowledged. */
async function writer(
  c: FlotillaClient,
  prefix: string,
  acked: Map<string, string>,
  stop: { done: boolean },
): Promise<number> {
  let failed = 0;
  for (let i = 0; !stop.done; i++) {
    const key = `${prefix}/${String(i).padStart(5, '0')}`;
    const value = `v${i}`;
    try {
      await c.put(key, value);
      acked.set(key, value);
    } catch {
      // Not acknowledged: it may or may not have applied; only acknowledged writes are checked.
      failed++;
    }
  }
  return failed;
}

function cli(
  cluster: TestCluster,
  args: readonly string[],
): { status: number | null; out: string } {
  const r = spawnSync(
    process.execPath,
    [cliEntry(), ...args, '--endpoints', cluster.endpoints().join(',')],
    { encoding: 'utf8', timeout: 30_000 },
  );
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

void test(
  '3 nodes: split while writing on both sides, kill -9 the right range leader, nothing acknowledged is lost',
  { timeout: 180_000 },
  async () => {
    const cluster = await TestCluster.create({ nodes: 3 });
    clusters.push(cluster);
    await cluster.start();
    const client = cluster.client();
    const writers = [cluster.client(), cluster.client()];
    try {
      await cluster.waitForLeader();
      await until('the range map bootstrapped', async () => {
        const r = await client.ranges();
        return r.ranges.length === 1 ? r : null;
      });
      const acked = new Map<string, string>();
      const stop = { done: false };
      // Writes acknowledged on the right side of the split key.
      const rightAcked = () => [...acked.keys()].filter((k) => k.startsWith('z/')).length;
      const running = [
        writer(writers[0] as FlotillaClient, 'a', acked, stop),
        writer(writers[1] as FlotillaClient, 'z', acked, stop),
      ];
      await until('writes on both sides', () => (acked.size >= 40 ? true : null));

      const split = await client.splitRange('m');
      assert.deepEqual([split.left.id, split.left.end, split.right.start], [0, 'm', 'm']);
      const rightId = split.right.id;

      // The right range's leader, as the map's answering node knows it.
      const rightLeader = await until('a leader of the right-hand range', async () => {
        const r = await client.ranges();
        const l = r.ranges.find((x) => x.id === rightId)?.leader ?? 0;
        return l > 0 ? l : null;
      });
      const beforeKill = acked.size;
      await until('writes after the split', () => (acked.size >= beforeKill + 40 ? true : null));
      await cluster.kill(rightLeader);
      const afterKill = rightAcked();
      await until(
        'writes go on without it',
        () => (rightAcked() >= afterKill + 40 ? true : null),
        60_000,
      );
      cluster.startNode(rightLeader);
      const afterRestart = rightAcked();
      await until(
        'writes after the restart',
        () => (rightAcked() >= afterRestart + 40 ? true : null),
        60_000,
      );
      stop.done = true;
      await Promise.all(running);
      assert.ok(
        [...acked.keys()].some((k) => k.startsWith('z/')),
        'writes were acknowledged on the right side',
      );

      // Every acknowledged write on every node (local reads, once each has caught up).
      for (const id of [1, 2, 3]) {
        const c = cluster.client([id]);
        try {
          for (const prefix of ['a', 'z']) {
            await until(
              `node ${id} holds every acknowledged write under ${prefix}/`,
              async () => {
                const r = await c.range(`${prefix}/`, { prefix: true, serializable: true });
                const found = new Map(r.kvs.map((kv) => [kv.key, kv.value]));
                const missing = [...acked].filter(
                  ([k, v]) => k.startsWith(`${prefix}/`) && found.get(k) !== v,
                );
                return missing.length === 0 ? true : null;
              },
              60_000,
            );
          }
        } finally {
          await c.close();
        }
      }

      // Two contiguous ranges in the map.
      const map = await client.ranges();
      assert.deepEqual(
        map.ranges.map((r) => [r.id, r.start, r.end]),
        [
          [0, '', 'm'],
          [rightId, 'm', null],
        ],
      );

      // A transaction across the ranges is refused; a split at a range's start (a retry) is
      // answered the split that made it.
      await assert.rejects(
        client.txn(
          [{ key: 'a/00000', target: 'version', op: '>', value: 0 }],
          [{ put: { key: 'z/00000', value: 'x' } }],
        ),
        (err: unknown) => err instanceof FlotillaError && err.code === 'CROSS_RANGE',
      );
      const again = await client.splitRange('m');
      assert.deepEqual([again.left.id, again.right.id, again.right.start], [0, rightId, 'm']);

      // The CLI: a split, then the table with three ranges.
      const s = cli(cluster, ['range', 'split', 't']);
      assert.equal(s.status, 0, s.out);
      assert.match(s.out, /"t"/);
      const t = cli(cluster, ['ranges']);
      assert.equal(t.status, 0, t.out);
      assert.match(t.out, /^RANGE\s+START\s+END/m);
      assert.equal(t.out.trim().split('\n').length, 5, t.out);
      const j = cli(cluster, ['ranges', '--json']);
      assert.equal(j.status, 0, j.out);
      assert.equal((JSON.parse(j.out) as { ranges: unknown[] }).ranges.length, 3);
    } finally {
      await client.close();
      for (const w of writers) await w.close();
    }
  },
);
