// /readyz looks at every group a member serves, not the key-value group alone: a member the
// queue group holds as a learner while the key-value group holds it as a voter (as for a few
// checks after a join, when losing a neighbour would cost the queue group its quorum) is not
// ready, and is again once the queue group made it a voter.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TestNodes } from './nodes.js';
import { until } from '../support/until.js';

async function readyz(url: string): Promise<{ status: number; reason: string }> {
  const r = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(2_000) });
  const body = (await r.json()) as { reason: string };
  return { status: r.status, reason: body.reason };
}

void test('a member the queue group has not made a voter is not ready', async () => {
  const nodes = await TestNodes.start({ nodes: 3 });
  try {
    const leader = await nodes.waitForQueueLeader();
    const other = leader === 3 ? 2 : 3;
    await until(
      `member ${other} ready`,
      async () => (await readyz(nodes.url(other))).status === 200,
    );
    // No member repairs the queue group's configuration meanwhile.
    for (const id of [1, 2, 3]) nodes.node(id).members.membership.stop();
    await nodes
      .node(leader)
      .queueService.runtime.proposeConfChange({ changes: [{ kind: 'add-learner', node: other }] });
    let seen = { status: 0, reason: '' };
    await until(
      () =>
        `member ${other} not ready while a learner of the queue group (last: ${JSON.stringify(seen)})`,
      async () => {
        seen = await readyz(nodes.url(other));
        return seen.status === 503;
      },
    );
    assert.match(
      seen.reason,
      /the queue group has this member as a learner, the key-value group as a voter/,
    );
    // The queue leader's check (stopped for good above, so run by hand) promotes it again,
    // and it is ready.
    await until(
      () => `member ${other} ready again (last: ${JSON.stringify(seen)})`,
      async () => {
        for (const id of [1, 2, 3]) await nodes.node(id).members.membership.check();
        seen = await readyz(nodes.url(other));
        return seen.status === 200;
      },
    );
  } finally {
    await nodes.close();
  }
});
