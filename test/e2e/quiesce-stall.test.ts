// End to end, with real processes and `quiesce: on`: a node whose main thread stalls 900 ms
// (three times the longest election timeout, within the liveness lane's 1 s grace) while it
// leads quiesced groups stays heard, because the liveness lane sends its node heartbeat too
// (DESIGN.md, "Quiescing idle groups"). No peer wakes a group by its silence and the key-value
// group keeps its term. Without the lane's node heartbeat the peers woke the key-value group
// (flotilla_quiesce_woken_by_silence rose on both): the stalled node must lead no awake group,
// or that group's lane heartbeats would count as hearing from it and hide the difference, so
// the test moves the key-value group's leadership off the queue group's leader first.

import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { TestCluster } from './harness.js';
import { until } from './range-writers.js';

const fixture = pathToFileURL(join(dirname(fileURLToPath(import.meta.url)), 'stall-fixture.js'));

const clusters: TestCluster[] = [];
after(async () => {
  for (const c of clusters) await c.stop();
});

interface Scrape {
  readonly quiesced: number;
  readonly awake: number;
  readonly woken: number;
}

async function scrape(cluster: TestCluster, id: number): Promise<Scrape> {
  const text = await (await fetch(`${cluster.member(id).client}/metrics`)).text();
  const read = (re: RegExp, what: string): number => {
    const m = re.exec(text);
    assert.ok(m !== null, `node ${id} reports no ${what}`);
    return Number(m[1]);
  };
  return {
    quiesced: read(/^flotilla_raft_groups\{[^}]*state="quiesced"[^}]*\} (\d+)/m, 'quiesced'),
    awake: read(/^flotilla_raft_groups\{[^}]*state="awake"[^}]*\} (\d+)/m, 'awake'),
    woken: read(/^flotilla_quiesce_woken_by_silence(?:\{[^}]*\})? (\d+)/m, 'woken_by_silence'),
  };
}

/** Every running node has all its groups but the queue's quiesced (it ticks every second). */
async function idle(cluster: TestCluster): Promise<Scrape[]> {
  return until(
    'every node idle and quiesced',
    async () => {
      const s = await Promise.all(cluster.running().map((id) => scrape(cluster, id)));
      return s.every((x) => x.quiesced >= 2 && x.awake <= 1) ? s : null;
    },
    20_000,
  );
}

void test(
  'a quiesced leader whose main thread stalls 900 ms wakes no group on its peers',
  { timeout: 120_000 },
  async () => {
    const cluster = await TestCluster.create({
      nodes: 3,
      nodeArgs: ['--import', fixture.href],
      env: { FLOTILLA_QUIESCE: 'on', FLOTILLA_LIVENESS_GRACE_MS: '1000' },
    });
    clusters.push(cluster);
    await cluster.start();
    const client = cluster.client();
    try {
      await client.put('k', 'before');
      let leader = await cluster.waitForLeader();
      const queueLeader = (await cluster.status(leader))?.queueGroup?.leader;
      assert.ok(queueLeader !== undefined, 'the status names no queue group leader');
      if (leader === queueLeader) {
        const to = cluster.running().find((id) => id !== queueLeader) as number;
        const res = await fetch(`${cluster.member(leader).client}/v1/cluster/transfer-leadership`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ to }),
        });
        assert.equal(res.status, 200, `transfer to ${to}: ${await res.text()}`);
        leader = await until(
          `node ${to} to lead`,
          async () => ((await cluster.status(to))?.role === 'leader' ? to : null),
          10_000,
        );
        await client.put('k', 'moved');
      }
      await idle(cluster);
      const peers = cluster.running().filter((id) => id !== leader);
      const before = await Promise.all(peers.map((id) => scrape(cluster, id)));
      const term = (await cluster.status(leader))?.term;
      cluster.signal(leader, 'SIGUSR2');
      await until(
        'the stall to end',
        () => (cluster.logOf(leader).includes('(stall 1)') ? true : null),
        10_000,
      );
      // Not a wait for a condition but the window the test watches: a peer that stopped
      // hearing the stalled node during the stall wakes its groups within one tick of the
      // silence bound, and an election they start ends within two election timeouts.
      await new Promise((r) => setTimeout(r, 700));
      const afterStall = await Promise.all(peers.map((id) => scrape(cluster, id)));
      const woken = peers.map((id, i) => ({
        id,
        woken: (afterStall[i]?.woken ?? 0) - (before[i]?.woken ?? 0),
      }));
      assert.deepEqual(
        woken.filter((w) => w.woken !== 0),
        [],
        `peers woke groups of stalled node ${leader} by its silence: ${JSON.stringify(woken)}`,
      );
      const st = await cluster.status(leader);
      assert.deepEqual(
        { role: st?.role, term: st?.term },
        { role: 'leader', term },
        `the stall cost an election of the key-value group`,
      );
      await client.put('k', 'after');
      assert.equal((await client.get('k'))?.value, 'after');
    } finally {
      await client.close();
    }
  },
);
