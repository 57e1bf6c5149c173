// The liveness lane end to end: a leader whose main thread stops for 900 ms (three times the
// longest election timeout; its other threads go on, as under a starving scheduler or a long
// garbage collection) keeps its leadership, and with the lane off (livenessGraceMs 0) the same
// stall costs an election: the control that shows the test can fail.

import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { TestCluster } from './harness.js';
import { describeElection, judgeElections, parseNodeLog } from './elections.js';

const fixture = pathToFileURL(join(dirname(fileURLToPath(import.meta.url)), 'stall-fixture.js'));

const clusters: TestCluster[] = [];
after(async () => {
  for (const c of clusters) await c.stop();
});

/** Stalls the leader's main thread `times` times; returns the terms seen before and after. */
async function stallLeader(
  graceMs: number,
  times: number,
): Promise<{
  leader: number;
  before: number;
  after: number;
  leaders: number[];
  elections: string[];
}> {
  const cluster = await TestCluster.create({
    nodes: 3,
    nodeArgs: ['--import', fixture.href],
    env: { FLOTILLA_LIVENESS_GRACE_MS: String(graceMs) },
    // At info the logs say who campaigned and why, and each event-loop stall of each member.
    extraArgs: ['--log-level', 'info'],
  });
  clusters.push(cluster);
  await cluster.start();
  const leader = await cluster.waitForLeader();
  const before = (await cluster.status(leader))?.term ?? -1;
  await cluster.client().put('k', 'before');
  for (let i = 1; i <= times; i++) {
    cluster.signal(leader, 'SIGUSR2');
    const deadline = Date.now() + 10_000;
    while (!cluster.logOf(leader).includes(`(stall ${i})`)) {
      if (Date.now() > deadline) throw new Error(`stall ${i} never ended:\n${cluster.dumpLogs()}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  // Whatever the stalls started settles: the cluster agrees on a leader and serves a write.
  await cluster.client().put('k', 'after');
  const now = await cluster.waitForLeader();
  const sts = await Promise.all(cluster.running().map((id) => cluster.status(id)));
  const after = Math.max(...sts.map((s) => s?.term ?? -1));
  const lines = cluster.members.flatMap((m) => parseNodeLog(m.id, cluster.logOf(m.id)));
  const v = judgeElections(lines, {
    group: 0,
    fromTerm: before,
    toTerm: after,
    restarts: [],
    evidenceMs: 5_000,
  });
  const elections = [
    ...v.stalled.map(({ election, stalls }) => describeElection(election, lines, stalls, 5_000)),
    ...v.unexplained.map((e) => describeElection(e, lines, [], 5_000)),
  ];
  return { leader, before, after, leaders: [now], elections };
}

void test(
  'a leader whose main thread stalls 900 ms keeps leading through the liveness lane',
  { timeout: 120_000 },
  async () => {
    const r = await stallLeader(1_000, 3);
    assert.deepEqual(
      { term: r.after, leader: r.leaders[0] },
      { term: r.before, leader: r.leader },
      `the stalls cost an election: ${JSON.stringify(r)}`,
    );
  },
);

void test(
  'without the lane the same stall costs an election (the control)',
  { timeout: 120_000 },
  async (t) => {
    const r = await stallLeader(0, 1);
    assert.ok(r.after > r.before, `no election without the lane: ${JSON.stringify(r)}`);
    for (const e of r.elections) t.diagnostic(e);
  },
);
