// A replica moved by hand onto a node being drained (API.md, "Placement"): before, the move
// copied the whole range there and the placement loop then moved it off again. It is refused
// at once, naming the drain, and the range keeps its replicas.

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
  readonly leader: number | null;
}

async function ranges(url: string): Promise<readonly RangeJson[] | null> {
  const res = await fetch(`${url}/v1/ranges`, { signal: AbortSignal.timeout(5_000) });
  if (res.status !== 200) return null;
  return ((await res.json()) as { ranges: RangeJson[] }).ranges;
}

void test('a move onto a node being drained is refused INVALID_REQUEST and changes nothing', async () => {
  const c = await TestNodes.start({ nodes: 4 });
  nodes = c;
  await c.waitForLeader();
  await until('the range map served', () => ranges(c.url(1)));
  const split = await postJson(
    `${c.url(1)}/v1/ranges/split`,
    { key: 'm', replicas: [1, 2, 3] },
    { timeoutMs: 15_000 },
  );
  assert.equal(split.status, 200, JSON.stringify(split.json));
  const id = (split.json['right'] as RangeJson).id;
  await until('the new range led', async () => {
    const r = await postJson(
      `${c.url(1)}/v1/kv/put`,
      { key: 'm1', value: 'v' },
      { timeoutMs: 10_000 },
    );
    return r.status === 200 ? true : null;
  });
  const drained = await postJson(`${c.url(1)}/v1/nodes/drain`, { node: 4 }, { timeoutMs: 10_000 });
  assert.equal(drained.status, 200, JSON.stringify(drained.json));
  await until('every node knows node 4 drains', () =>
    c.nodes.every((n) => n.meta.machine.draining().includes(4)) ? true : null,
  );

  const move = await postJson(
    `${c.url(1)}/v1/ranges/move`,
    { range: id, from: 3, to: 4 },
    { timeoutMs: 30_000 },
  );
  assert.equal(move.status, 400, JSON.stringify(move.json));
  const error = move.json['error'] as { code: string; message: string };
  assert.equal(error.code, 'INVALID_REQUEST');
  assert.match(error.message, /Node 4 is being drained: it takes no new replica of range \d+/);
  const after = await ranges(c.url(1));
  assert.deepEqual(after?.find((r) => r.id === id)?.replicas, [1, 2, 3]);
  assert.equal(c.node(4).lanes.lane(id), undefined, 'node 4 started no copy of the range');
});
