// A split held back while a change of its range's replicas is half-way (docs/DESIGN.md,
// "Ranges in a node"), on three in-process nodes: a range split off range 0 loses a voter
// in its configuration without the range recording it (what a leader killed between the
// remove step and the record step leaves); a split of it is then refused
// RANGE_CHANGE_IN_PROGRESS, naming the voters and the recorded replicas, and allocates no
// range id; once the change is finished through the node's own function the same split is
// accepted and names the range's replicas as they now are.

import assert from 'node:assert/strict';
import test from 'node:test';
import { TestNodes, postJson, until } from './nodes.js';

interface DescriptorJson {
  id: number;
  generation: number;
  replicas: number[];
}

void test('a split is refused while its range dropped a voter it has not recorded, accepted once the change finished', async () => {
  const c = await TestNodes.start({ nodes: 3 });
  try {
    await c.waitForLeader();
    await until('the range map bootstrapped', () => c.node(1).meta.machine.map() !== null);
    const first = await postJson(
      `${c.url(1)}/v1/ranges/split`,
      { key: 'm' },
      { timeoutMs: 20_000 },
    );
    assert.equal(first.status, 200, JSON.stringify(first.json));
    const r = (first.json['right'] as DescriptorJson).id;
    assert.deepEqual((first.json['right'] as DescriptorJson).replicas, [1, 2, 3]);
    await until('every node runs the new range', () =>
      c.nodes.every((n) => n.ranges.group(r) !== undefined),
    );
    const leader = await until(`a leader of range ${r}`, () => {
      const l = c.node(1).ranges.group(r)?.runtime.leaderId() ?? 0;
      return l !== 0 && c.node(l).ranges.group(r)?.runtime.leaderId() === l ? l : null;
    });
    const gone = [1, 2, 3].find((n) => n !== leader) as number;
    const rt = c.node(leader).ranges.group(r)?.runtime;
    assert.ok(rt !== undefined);

    // Half-way: the voter removed from the configuration, the range's record not yet made.
    // A leader that took over just now may still be applying a change of its own: asked again.
    await until('the voter removed from the configuration', () =>
      rt
        .proposeConfChange({ changes: [{ kind: 'remove', node: gone }] }, { timeoutMs: 10_000 })
        .then(
          () => true,
          (err: unknown) => {
            if ((err as { code?: string }).code === 'MEMBERSHIP_CHANGE_PENDING') return null;
            throw err;
          },
        ),
    );
    // The meta group's leader applied any allocation before answering it: the largest is the last.
    const nextId = () => Math.max(...c.nodes.map((n) => n.meta.machine.nextRangeId));
    const idBefore = nextId();
    const refused = await postJson(
      `${c.url(leader)}/v1/ranges/split`,
      { key: 't' },
      { timeoutMs: 20_000 },
    );
    assert.equal(refused.status, 409, JSON.stringify(refused.json));
    const error = refused.json['error'] as { code?: string; message?: string };
    assert.equal(error.code, 'RANGE_CHANGE_IN_PROGRESS');
    const kept = [1, 2, 3].filter((n) => n !== gone);
    assert.match(
      error.message ?? '',
      new RegExp(`voters \\[${kept.join(', ')}\\].*recorded replicas \\[1, 2, 3\\]`),
    );
    assert.equal(nextId(), idBefore, 'no range id was allocated for the refused split');

    // The change finished (the record step alone is left): the split goes through.
    const done = await c
      .node(leader)
      .changeReplicas(r, { remove: gone }, AbortSignal.timeout(60_000));
    assert.deepEqual([done.replicas, done.generation], [kept, 2]);
    const accepted = await postJson(
      `${c.url(leader)}/v1/ranges/split`,
      { key: 't' },
      { timeoutMs: 20_000 },
    );
    assert.equal(accepted.status, 200, JSON.stringify(accepted.json));
    assert.deepEqual((accepted.json['right'] as DescriptorJson).replicas, kept);
  } finally {
    await c.close();
  }
});
