// A claim's answer is bounded in bytes as well as in jobs: 256 jobs of 256 KiB made a 64 MiB
// answer that stalled every member for seconds and cost elections (a queue user's find). The
// node that proposes a claim bounds it to the queue's maxAnswerBytes (4 MiB) once every member
// runs a release that knows the bound (feature level 9); before, only `max` bounds it.

import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import { features } from '../../src/base/features.js';
import { defaultQueueLimits } from '../../src/base/limits.js';
import { TestNodes, postJson } from './nodes.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Twenty jobs of nearly 256 KiB each on queue `q`, then one claim of up to 256: its job count. */
async function claimedOfTwenty(nodes: TestNodes): Promise<number> {
  const leader = await nodes.waitForQueueLeader();
  const url = (path: string): string => `${nodes.url(leader)}/v1/queue/${path}`;
  const data = 'x'.repeat(defaultQueueLimits.maxPayloadBytes - 100);
  for (let i = 0; i < 20; i++) {
    const r = await postJson(url('add'), { queue: 'q', name: 'big', data }, { timeoutMs: 15_000 });
    assert.equal(r.status, 200, JSON.stringify(r.json));
  }
  const r = await postJson(url('claim'), { queue: 'q', max: 256 }, { timeoutMs: 30_000 });
  assert.equal(r.status, 200, JSON.stringify(r.json).slice(0, 300));
  return (r.json['jobs'] as unknown[]).length;
}

void test('a claim takes jobs up to maxAnswerBytes of their data, the rest left waiting', async () => {
  const nodes = await TestNodes.start({ nodes: 3 });
  cleanups.push(() => nodes.close());
  const each = defaultQueueLimits.maxPayloadBytes - 100 + 2; // the JSON string's quotes
  assert.equal(await claimedOfTwenty(nodes), Math.floor(defaultQueueLimits.maxAnswerBytes / each));
});

void test('with a member of a release before the bound, a claim takes up to its max, as before', async () => {
  const nodes = await TestNodes.start({
    nodes: 3,
    featureLevelOf: (id) => (id === 3 ? features.queueClaimBytes.level - 1 : undefined),
  });
  cleanups.push(() => nodes.close());
  assert.equal(await claimedOfTwenty(nodes), 20);
});
