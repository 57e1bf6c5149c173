// Members configured with different size limits apply the same log alike. Each node's limits
// bound what its API admits; committed commands are decoded under the largest limits any
// configuration may set (APPLY_LIMITS). Before, a follower decoded under its own: a value
// over its maxValueBytes, put through a leader with a larger one, was acknowledged, applied
// on the leader and refused on the follower, whose store then drifted (revisions apart), and
// the write was gone once that leader died (an operator's find).

import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { FlotillaClient } from '../../src/client/index.js';
import { until } from '../support/until.js';
import { TestNodes } from './nodes.js';

let nodes: TestNodes | null = null;
after(async () => {
  await nodes?.close();
});

void test('a value over a follower’s own limit, put through a leader with a larger one, is applied on every member', async () => {
  // Node 1 takes values of 2 MiB; nodes 2 and 3 the default 1 MiB, and keys of 1 KiB.
  nodes = await TestNodes.start({
    nodes: 3,
    configOf: (id) =>
      id === 1
        ? { maxValueBytes: 2 * 1024 * 1024, maxKeyBytes: 2048, maxBodyBytes: 4_300_000 }
        : {},
  });
  const n = nodes;
  await n.waitForLeader();
  const one = new FlotillaClient({ endpoints: [n.url(1)], protocol: 'http', deadlineMs: 20_000 });
  const all = [1, 2, 3].map(
    (id) => new FlotillaClient({ endpoints: [n.url(id)], protocol: 'http', deadlineMs: 20_000 }),
  );
  try {
    await one.transferLeadership({ to: 1 });
    await until(
      () => `node 1 leads: ${[1, 2, 3].map((id) => n.node(id).runtime.leaderId()).join(',')}`,
      () => [1, 2, 3].every((id) => n.node(id).runtime.leaderId() === 1),
      10_000,
    );
    const big = 'x'.repeat(1_500_000);
    const longKey = 'k'.repeat(1_500);
    const put = await one.put('big', big);
    await one.put(longKey, 'v');
    const after = await one.put('after', 'a');
    // Every member applies them, and stands at the same revision: a member that refused the
    // long key (which its own API would not take, even to read) would stand one behind.
    for (const [i, c] of all.entries()) {
      await until(
        () => `node ${i + 1} applied revision ${after.header.revision}`,
        async () =>
          (await c.get('after', { consistency: 'serializable' }))?.modRevision ===
          after.header.revision,
        10_000,
      );
      const got = await c.get('big', { consistency: 'serializable' });
      assert.equal(got?.value.length, big.length, `node ${i + 1} holds the large value`);
      assert.equal(got?.modRevision, put.header.revision, `node ${i + 1}`);
    }
    // A member's own limits still bound what it admits.
    await assert.rejects(all[1]!.put('big2', big), /VALUE_TOO_LARGE|limit/);
  } finally {
    await one.close();
    for (const c of all) await c.close();
  }
});
