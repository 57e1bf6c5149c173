// `flotilla range move` to a member stopped with SIGSTOP, on a cluster of real processes. The
// range's leader gives up on preparing the new replica after a request timeout (5 s); it
// answered UNAVAILABLE, which the client retries, so the operator waited about 42 s (eight
// attempts) for an error that did not say which node was at fault. The move must fail once,
// with NODE_NOT_RESPONDING naming the frozen node, and say that nothing changed.

import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { TestCluster } from '../e2e/harness.js';
import { until } from '../support/until.js';
import { runCli, stopAll } from './run.js';

let cluster: TestCluster | undefined;
after(async () => {
  await stopAll();
  cluster?.resume(4);
  await cluster?.stop();
});

void test('a range move to a frozen node fails promptly NODE_NOT_RESPONDING, naming it', async () => {
  const c = await TestCluster.create({ nodes: 4, env: { FLOTILLA_PLACEMENT: 'off' } });
  cluster = c;
  await c.start();
  const endpoints = c.endpoints([1, 2, 3]).join(',');
  const admin = c.client([1, 2, 3]);
  try {
    await until('the range map bootstrapped', async () => {
      const r = await admin.ranges();
      return r.ranges.length === 1 ? r : null;
    });
    const split = await admin.splitRange('m', { replicas: [1, 2, 3] });
    const range = split.right.id;
    c.pause(4);
    // Node 4 may have led a group: the move needs range 0's members to have a leader they
    // reach. The range itself never ran on node 4.
    await c.waitForLeader(20_000, [1, 2, 3]);

    const started = Date.now();
    const r = await runCli(
      ['range', 'move', String(range), '--from', '3', '--to', '4', '--endpoints', endpoints],
      30_000,
    );
    const tookMs = Date.now() - started;
    assert.equal(r.code, 1, `exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
    assert.match(
      r.stderr,
      new RegExp(
        `^flotilla: NODE_NOT_RESPONDING: Node 4 did not answer the request to prepare it as a new replica of range ${range} within 5000 ms`,
      ),
    );
    assert.doesNotMatch(r.stderr, /may have taken effect|gave up after retries/);
    // One request timeout on the leader, and a process's start: not eight of them.
    assert.ok(tookMs < 15_000, `the move took ${tookMs} ms to fail`);
    const map = await admin.ranges();
    assert.deepEqual(
      map.ranges.find((x) => x.id === range)?.replicas,
      [1, 2, 3],
      'the range keeps its replicas',
    );
  } finally {
    await admin.close();
  }
});
