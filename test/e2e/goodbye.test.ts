// A member's clean stop is told to the others (GOODBYE, docs/PROTOCOL.md): they log it at info
// as the peer shutting down, while a member killed outright is still a warning, so an operator
// reading the survivors' logs can tell a planned stop from a failure.

import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { until } from '../support/until.js';
import { TestCluster } from './harness.js';

interface Line {
  readonly level: number;
  readonly msg: string;
}

/** Node `id`'s JSON log lines about peer `peer` leaving. */
function leaving(c: TestCluster, id: number, peer: number): Line[] {
  return c
    .logOf(id)
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Line)
    .filter(
      (l) =>
        l.msg.startsWith(`peer ${peer} disconnected`) ||
        l.msg.startsWith(`peer ${peer} is shutting down`),
    );
}

const INFO = 30;
const WARN = 40;

void describe('a member leaving', () => {
  let c: TestCluster | null = null;
  after(async () => {
    await c?.stop();
  });

  void it('is logged at info when it stopped cleanly, at warn when it was killed', async () => {
    c = await TestCluster.create({ nodes: 3, extraArgs: ['--log-level', 'info'] });
    const cluster = c;
    await cluster.start();
    assert.equal(await cluster.terminate(3), 0, cluster.dumpLogs());
    for (const id of [1, 2]) {
      const lines = await until(
        () => `node ${id} to log node 3 leaving; saw ${JSON.stringify(leaving(cluster, id, 3))}`,
        () => {
          const l = leaving(cluster, id, 3);
          return l.length > 0 && l;
        },
      );
      assert.ok(
        lines.every((l) => l.level === INFO && l.msg.startsWith('peer 3 is shutting down')),
        JSON.stringify(lines),
      );
    }
    await cluster.kill(2);
    const lines = await until(
      () => `node 1 to log node 2 leaving; saw ${JSON.stringify(leaving(cluster, 1, 2))}`,
      () => {
        const l = leaving(cluster, 1, 2);
        return l.length > 0 && l;
      },
    );
    assert.ok(
      lines.every((l) => l.level === WARN && l.msg.startsWith('peer 2 disconnected')),
      JSON.stringify(lines),
    );
  });
});
