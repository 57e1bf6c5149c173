// `flotilla status` and members removed from the cluster: they were left out of the table
// without a word (the address book drops a removed member), so a removed member that still
// ran could not be seen. Now one that answers is listed, at its last known address, and said
// removed; one that stopped (or whose address is no longer known) is no row, since every
// member ever removed would otherwise stay in the table; neither makes the status fail, nor
// counts as the cluster's.

import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, test } from 'node:test';
import type { ClusterStatus, NodeStatus } from '../../src/api/types.js';
import { TestCluster } from '../e2e/harness.js';
import { until } from '../support/until.js';
import { runCli } from './run.js';

const clusters: TestCluster[] = [];
after(async () => {
  for (const c of clusters) await c.stop();
});

/** The table's row for member `id`, its columns split. */
function row(stdout: string, id: number): string[] | undefined {
  return stdout
    .split('\n')
    .map((l) => l.trim().split(/\s{2,}/))
    .find((cols) => cols[0] === String(id));
}

void test('status leaves out a removed member that stopped, and does not fail for it', async () => {
  const cluster = await TestCluster.create({ nodes: 3 });
  clusters.push(cluster);
  await cluster.start();
  await cluster.kill(3);
  const url = cluster.member(1).client;
  await until('member 3 removed', async () => {
    const res = await fetch(`${url}/v1/cluster/members/remove`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ id: 3, force: true }),
    });
    return res.status === 200;
  });
  const r = await runCli(['status', '--endpoints', url], 30_000);
  assert.equal(row(r.stdout, 3), undefined, r.stdout);
  assert.deepEqual(row(r.stdout, 2)?.[2], cluster.member(2).client, r.stdout);
  // The server still reports it, removed and silent, at the address it knew.
  const s = (await (await fetch(`${url}/v1/cluster/status`)).json()) as ClusterStatus;
  const three = s.nodes.find((n) => n.id === 3);
  assert.equal(three?.removed, true, JSON.stringify(s));
  assert.equal(three?.client, cluster.member(3).client, JSON.stringify(s));
  assert.ok(three !== undefined && !('status' in three), JSON.stringify(s));
  // A member removed is not one that did not answer.
  assert.equal(r.code, 0, r.stdout + r.stderr);
});

void test('status shows a removed member still running, and not one whose address is unknown', async () => {
  const st = (id: number): NodeStatus =>
    ({
      id,
      pid: 100 + id,
      role: 'follower',
      term: 2,
      leader: 1,
      commit: 5,
      applied: 5,
    }) as NodeStatus;
  let self = '';
  const body: () => ClusterStatus = () => ({
    leader: 1,
    nodes: [
      { id: 1, client: self, status: { ...st(1), role: 'leader' } },
      { id: 4, client: 'http://127.0.0.1:9', status: st(4), removed: true },
      { id: 5, client: '', removed: true, error: 'its address is no longer known' },
    ],
  });
  const server: Server = createServer((_req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(body()));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    self = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const r = await runCli(['status', '--endpoints', self], 15_000);
    assert.deepEqual(
      row(r.stdout, 4)?.slice(1, 4),
      ['104', 'http://127.0.0.1:9', 'removed, still running (it stops once it learns)'],
      r.stdout,
    );
    assert.equal(row(r.stdout, 5), undefined, r.stdout);
    assert.equal(r.code, 0, r.stdout + r.stderr);
  } finally {
    await new Promise((r) => server.close(r));
  }
});
