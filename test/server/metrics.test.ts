// The leader's per-follower gauges: match index, next index, progress state and lag. A wiped
// follower that never catches up shows as a lag that only grows.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { FlotillaClient } from '../../src/client/index.js';
import { resolveNodeConfig } from '../../src/server/config.js';
import { NodeMetrics, type StatusView } from '../../src/server/metrics.js';
import { FlotillaNode } from '../../src/server/node.js';
import { packageVersion } from '../../src/server/version.js';
import { freePorts } from '../e2e/harness.js';

/** The sample lines of one metric family, without the node label, sorted. */
async function samples(metrics: NodeMetrics, name: string): Promise<string[]> {
  const text = await metrics.registry.metrics();
  return text
    .split('\n')
    .filter((l) => l.startsWith(name + '{'))
    .map((l) => l.replace(/,?node="\d+"/, '').replace('{,', '{'))
    .sort();
}

void test("the leader exports each follower's match, next, state and lag; others export none", async () => {
  let view: StatusView = {
    id: 1,
    role: 'leader',
    term: 3,
    leader: 1,
    commit: 9,
    applied: 9,
    lastIndex: 10,
    progress: {
      1: { match: 10, next: 11, state: 'replicate' },
      2: { match: 8, next: 11, state: 'replicate' },
      3: { match: 0, next: 1, state: 'probe' },
    },
  };
  const m = new NodeMetrics(1, false);
  m.bindStatus(() => view);
  assert.deepEqual(await samples(m, 'flotilla_follower_match_index'), [
    'flotilla_follower_match_index{peer="2"} 8',
    'flotilla_follower_match_index{peer="3"} 0',
  ]);
  assert.deepEqual(await samples(m, 'flotilla_follower_next_index'), [
    'flotilla_follower_next_index{peer="2"} 11',
    'flotilla_follower_next_index{peer="3"} 1',
  ]);
  assert.deepEqual(await samples(m, 'flotilla_follower_lag_entries'), [
    'flotilla_follower_lag_entries{peer="2"} 2',
    'flotilla_follower_lag_entries{peer="3"} 10',
  ]);
  assert.deepEqual(await samples(m, 'flotilla_follower_progress_state'), [
    'flotilla_follower_progress_state{peer="2",state="probe"} 0',
    'flotilla_follower_progress_state{peer="2",state="replicate"} 1',
    'flotilla_follower_progress_state{peer="2",state="snapshot"} 0',
    'flotilla_follower_progress_state{peer="3",state="probe"} 1',
    'flotilla_follower_progress_state{peer="3",state="replicate"} 0',
    'flotilla_follower_progress_state{peer="3",state="snapshot"} 0',
  ]);
  assert.deepEqual(await samples(m, 'flotilla_has_leader'), ['flotilla_has_leader{} 1']);
  view = { ...view, role: 'follower', progress: {} };
  assert.deepEqual(await samples(m, 'flotilla_follower_lag_entries'), [], 'no longer leads');
  view = { ...view, leader: 0 };
  assert.deepEqual(
    await samples(m, 'flotilla_has_leader'),
    ['flotilla_has_leader{} 0'],
    'knows none',
  );
});

void test('a leader of three nodes reports both followers caught up after a write', async () => {
  const ports = await freePorts(6);
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-metrics-'));
  const spec = [1, 2, 3]
    .map((id) => `${id}=127.0.0.1:${ports[id - 1]}@http://127.0.0.1:${ports[id + 2]}`)
    .join(',');
  const nodes: FlotillaNode[] = [];
  const client = new FlotillaClient({
    endpoints: [3, 4, 5].map((i) => `http://127.0.0.1:${ports[i]}`),
  });
  try {
    // Together, as a new cluster starts: an empty node waits to hear from its peers.
    const started = await Promise.allSettled(
      [1, 2, 3].map((id) =>
        FlotillaNode.start(
          resolveNodeConfig({
            id,
            dataDir: join(dir, `node${id}`),
            initialCluster: spec,
            logLevel: 'silent',
          }),
        ),
      ),
    );
    for (const r of started) if (r.status === 'fulfilled') nodes.push(r.value);
    for (const r of started) if (r.status === 'rejected') throw r.reason;
    await client.put('k', 'v'); // retries until a leader is elected
    const deadline = Date.now() + 10_000;
    let seen: string[] = [];
    while (Date.now() < deadline) {
      const leader = nodes.find((n) => n.runtime.isLeader());
      seen =
        leader === undefined ? [] : await samples(leader.metrics, 'flotilla_follower_lag_entries');
      if (seen.length === 2 && seen.every((l) => l.endsWith(' 0'))) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(seen.length, 2, `the leader's lag gauges: ${seen.join('; ')}`);
    assert.match(packageVersion(), /^\d+\.\d+\.\d+/);
    assert.deepEqual(await samples((nodes[0] as FlotillaNode).metrics, 'flotilla_build_info'), [
      `flotilla_build_info{version="${packageVersion()}",nodejs="${process.versions.node}"} 1`,
    ]);
    assert.ok(
      seen.every((l) => l.endsWith(' 0')),
      `followers caught up: ${seen.join('; ')}`,
    );
  } finally {
    await client.close();
    await Promise.all(nodes.map((n) => n.close()));
    rmSync(dir, { recursive: true, force: true });
  }
});

void test('snapshot transfers in progress are exported by direction and peer, with the counters', async () => {
  let transfers = [
    {
      group: 0,
      direction: 'send',
      peer: 3,
      totalBytes: 10_000,
      bytesDone: 4_096,
      bytesMoved: 5_120,
      chunks: 5,
      bytesPerSec: 2_048,
    },
  ];
  const m = new NodeMetrics(1, false);
  m.bindSnapshotTransfers(() => ({
    transfers,
    counters: [{ group: 0, corruptChunks: 1, refusedSnapshots: 0, bytesSent: 5_120 }],
  }));
  assert.deepEqual(await samples(m, 'flotilla_snapshot_transfer_bytes'), [
    'flotilla_snapshot_transfer_bytes{group="0",direction="send",peer="3",kind="done"} 4096',
    'flotilla_snapshot_transfer_bytes{group="0",direction="send",peer="3",kind="moved"} 5120',
    'flotilla_snapshot_transfer_bytes{group="0",direction="send",peer="3",kind="total"} 10000',
  ]);
  assert.deepEqual(await samples(m, 'flotilla_snapshot_transfer_chunks'), [
    'flotilla_snapshot_transfer_chunks{group="0",direction="send",peer="3"} 5',
  ]);
  assert.deepEqual(await samples(m, 'flotilla_snapshot_transfer_rate_bytes_per_second'), [
    'flotilla_snapshot_transfer_rate_bytes_per_second{group="0",direction="send",peer="3"} 2048',
  ]);
  assert.deepEqual(await samples(m, 'flotilla_snapshot_events'), [
    'flotilla_snapshot_events{group="0",kind="bytes_sent"} 5120',
    'flotilla_snapshot_events{group="0",kind="chunks_refused"} 1',
    'flotilla_snapshot_events{group="0",kind="snapshots_refused"} 0',
  ]);
  transfers = [];
  assert.deepEqual(await samples(m, 'flotilla_snapshot_transfer_bytes'), [], 'transfer finished');
});

void test('the process and Node.js metrics carry the flotilla_ prefix once', async () => {
  // They were named flotilla_process_process_cpu_seconds_total, flotilla_process_nodejs_...
  const m = new NodeMetrics(1);
  const names = (await m.registry.metrics())
    .split('\n')
    .filter((l) => l.startsWith('# TYPE '))
    .map((l) => l.split(' ')[2] as string);
  assert.ok(names.includes('flotilla_process_cpu_seconds_total'), names.join(' '));
  assert.ok(names.includes('flotilla_nodejs_heap_size_used_bytes'), names.join(' '));
  assert.deepEqual(
    names.filter((n) => n.startsWith('flotilla_process_process_') || !n.startsWith('flotilla_')),
    [],
  );
  m.registry.clear();
});
