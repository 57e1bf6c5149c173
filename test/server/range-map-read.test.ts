// GET /v1/ranges reads the range map linearizably unless the caller asks otherwise
// (docs/API.md, "Ranges"): a split acknowledged shows on every node at once, a member that
// follows the meta group included; a member cut off from the meta group's quorum refuses the
// read rather than answer a map that may be old, and answers its own copy when asked for
// `?consistency=serializable`.

import assert from 'node:assert/strict';
import test from 'node:test';
import { TestNodes, postJson, until } from './nodes.js';

async function getRanges(
  url: string,
  query = '',
): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${url}/v1/ranges${query}`, { signal: AbortSignal.timeout(10_000) });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

function error(json: Record<string, unknown>): { code?: string; message?: string } {
  return (json['error'] as { code?: string; message?: string } | undefined) ?? {};
}

function starts(json: Record<string, unknown>): string[] {
  return (json['ranges'] as { start: string }[]).map((r) => r.start);
}

void test('the range map is read linearizably unless the caller asks otherwise', async () => {
  const c = await TestNodes.start({ nodes: 3, requestTimeoutMs: 1_500 });
  try {
    await c.waitForLeader();
    await until('the range map bootstrapped', async () =>
      (await getRanges(c.url(1))).status === 200 ? true : null,
    );

    // Each split, once acknowledged, is in the map every node answers: read once, no wait.
    const want = [''];
    for (const key of ['g', 'p']) {
      const s = await postJson(`${c.url(1)}/v1/ranges/split`, { key }, { timeoutMs: 15_000 });
      assert.equal(s.status, 200, JSON.stringify(s.json));
      want.push(key);
      for (const id of [1, 2, 3]) {
        const r = await getRanges(c.url(id));
        assert.equal(r.status, 200, JSON.stringify(r.json));
        assert.deepEqual(starts(r.json), want, `node ${id}'s answer after the split at ${key}`);
      }
    }
    for (const level of ['linearizable', 'lease', 'serializable']) {
      const r = await getRanges(c.url(2), `?consistency=${level}`);
      assert.equal(r.status, 200, `${level}: ${JSON.stringify(r.json)}`);
      assert.deepEqual(starts(r.json), want, level);
    }
    const bad = await getRanges(c.url(2), '?consistency=eventual');
    assert.equal(bad.status, 400);
    assert.equal(error(bad.json).code, 'BAD_REQUEST');
    assert.match(String(error(bad.json).message), /"eventual"/);

    // Node 1 alone: no quorum of the meta group confirms a read, so the default refuses (with
    // an error a client may retry) where the serializable read answers node 1's copy.
    await Promise.all([c.node(2).close(), c.node(3).close()]);
    const refused = await getRanges(c.url(1));
    assert.ok(refused.status >= 500, JSON.stringify(refused));
    assert.ok(
      ['NO_LEADER', 'READ_FAILED', 'TIMEOUT'].includes(String(error(refused.json).code)),
      JSON.stringify(refused.json),
    );
    const local = await getRanges(c.url(1), '?consistency=serializable');
    assert.equal(local.status, 200, JSON.stringify(local.json));
    assert.deepEqual(starts(local.json), want);
  } finally {
    await c.close();
  }
});
