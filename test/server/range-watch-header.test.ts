// A watch of keys outside range 0 speaks its own range's revisions: its `created` and
// `progress` lines carry the revision of the range the keys lie in. A progress line says every
// change up to its revision was sent, and the client resumes after it when it reconnects; with
// range 0's revision there (ahead of the watched range's), a reconnecting watch skipped the
// watched range's changes in between, and one behind it never said the watch had caught up
// (the chaos suite's watch workload over many ranges found both).

import assert from 'node:assert/strict';
import test from 'node:test';
import { FlotillaClient } from '../../src/client/index.js';
import { TestNodes, postJson, until } from './nodes.js';

void test("a watch of a split-off range's keys reports that range's revision in its progress lines", async () => {
  const c = await TestNodes.start({ nodes: 3 });
  const client = new FlotillaClient({ endpoints: [1, 2, 3].map((id) => c.url(id)) });
  try {
    const leader = await c.waitForLeader();
    await until('the range map bootstrapped', async () => {
      const res = await fetch(`${c.url(leader)}/v1/ranges`, { signal: AbortSignal.timeout(5_000) });
      return res.status === 200 ? true : null;
    });
    const split = await postJson(
      `${c.url(leader)}/v1/ranges/split`,
      { key: 'm' },
      { timeoutMs: 15_000 },
    );
    assert.equal(split.status, 200, JSON.stringify(split.json));
    // Range 0 ("a") runs well ahead of the new range ("w"), so the two revisions differ.
    for (let i = 0; i < 20; i++) await client.put('a', `a${i}`);
    for (let i = 0; i < 3; i++) await client.put('w', `w${i}`);
    const zero = (await client.range('a')).header.revision;
    const right = (await client.range('w')).header.revision;
    assert.ok(zero > right + 10, `range 0 at ${zero}, the right range at ${right}`);

    for (const id of [1, 2, 3]) {
      // Through each node on its own: every one must speak the watched range's revision.
      const one = new FlotillaClient({ endpoints: [c.url(id)] });
      const stop = new AbortController();
      const progress: number[] = [];
      try {
        for await (const batch of one.watch('w', {
          progressNotifyMs: 100,
          signal: AbortSignal.any([stop.signal, AbortSignal.timeout(10_000)]),
        })) {
          if (batch.progress === true) progress.push(batch.revision);
          if (progress.length >= 2) break;
        }
      } finally {
        stop.abort();
        await one.close();
      }
      assert.deepEqual(progress, [right, right], `node ${id}: range 0 is at ${zero}`);
    }
  } finally {
    await client.close();
    await c.close();
  }
});
