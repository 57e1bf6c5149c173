// `flotilla status` tells a member that does not answer in time (frozen, or busy under load)
// from one that cannot be reached at all: the first is "slow", the second "unreachable". Both
// were "unreachable", so a member slow under load read as a member down.

import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { TestCluster } from '../e2e/harness.js';
import { runCli } from './run.js';
import { until } from '../support/until.js';

const clusters: TestCluster[] = [];
after(async () => {
  for (const c of clusters) {
    for (const id of c.running()) c.resume(id);
    await c.stop();
  }
});

void test('status calls a frozen member slow and a stopped one unreachable', async () => {
  const cluster = await TestCluster.create({ nodes: 3 });
  clusters.push(cluster);
  await cluster.start();
  await cluster.waitForLeader();
  // Healthy: every member answers, and one of them leads the queue's group (its own election).
  let seen = '';
  const healthy = await until(
    () => `a queue leader in the status table (last seen:\n${seen})`,
    async () => {
      const h = await runCli(['status', '--endpoints', cluster.member(1).client], 30_000);
      seen = h.stdout + h.stderr;
      const queueRoles = h.stdout
        .split('\n')
        .slice(1)
        .filter((l) => /^\d/.test(l))
        .map((l) => l.split(/\s{2,}/)[4]);
      return h.code === 0 && queueRoles.filter((q) => q === 'leader').length === 1 && h;
    },
    30_000,
  );
  assert.match(healthy.stdout, /^ID\s+PID\s+CLIENT\s+ROLE\s+QUEUE\s+TERM/);
  cluster.pause(3); // its sockets open, nothing answered
  await cluster.kill(2); // connections refused
  const endpoint = cluster.member(1).client;
  const r = await runCli(['status', '--endpoints', endpoint], 30_000);
  cluster.resume(3);
  // The table is printed whole, and the exit status says members did not answer.
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /members 2, 3 did not answer \(exit status 1\)/);
  const row = (id: number): string =>
    r.stdout.split('\n').find((l) => l.startsWith(`${id} `)) ?? `(no row for ${id})`;
  assert.match(row(3), /slow: no answer within 3000 ms/, r.stdout);
  assert.match(row(2), /unreachable: /, r.stdout);
  assert.doesNotMatch(row(1), /slow|unreachable/, r.stdout);
});
