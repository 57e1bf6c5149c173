// Range 0 runs on every member and follows the membership (API.md, "Ranges"): the range map
// answered by `GET /v1/ranges` (and `flotilla ranges`, and the dashboard) must name its
// replicas as they are now, not as they were when the map was bootstrapped or range 0 last
// split. Before, a member removed (or added) left range 0's replicas as the map first recorded
// them: `flotilla ranges` showed a removed node holding range 0, and a joined one not.

import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { TestNodes, postJson, until } from './nodes.js';

let nodes: TestNodes | undefined;
after(async () => {
  await nodes?.close();
});

interface RangeJson {
  readonly id: number;
  readonly replicas: readonly number[];
}

async function rangeZeroReplicas(url: string): Promise<readonly number[] | null> {
  const res = await fetch(`${url}/v1/ranges`, { signal: AbortSignal.timeout(5_000) });
  if (res.status !== 200) return null;
  const map = (await res.json()) as { ranges: RangeJson[] };
  return map.ranges.find((r) => r.id === 0)?.replicas ?? null;
}

void test('the range map names range 0 on the members it runs on after a member is removed', async () => {
  const c = await TestNodes.start({ nodes: 3 });
  nodes = c;
  const leader = await c.waitForLeader();
  const [kept, gone] = [1, 2, 3].filter((id) => id !== leader) as [number, number];
  const before = await until('the map served', () => rangeZeroReplicas(c.url(kept)));
  assert.deepEqual(before, [1, 2, 3]);

  const removed = await postJson(
    `${c.url(kept)}/v1/cluster/members/remove`,
    { id: gone },
    { timeoutMs: 15_000 },
  );
  assert.equal(removed.status, 200, JSON.stringify(removed.json));
  const left = [leader, kept].sort((a, b) => a - b);
  let seen: readonly number[] | null = null;
  await until(
    `range 0 on ${left.join(', ')} in the map node ${kept} answers`,
    async () => {
      seen = await rangeZeroReplicas(c.url(kept));
      return seen !== null && seen.join() === left.join() ? true : null;
    },
    10_000,
  ).catch((err: unknown) => {
    throw new Error(`${String(err)}; range 0's replicas seen last: ${JSON.stringify(seen)}`);
  });
  assert.deepEqual(await rangeZeroReplicas(c.url(leader)), left);
});
