// The meta map repairs itself, and a split and a change of replicas of one range exclude each
// other (docs/DESIGN.md, "Ranges in a node"), on three in-process nodes with planted faults
// (NodeTestHooks): a split whose request gives up after the split applied, before the map
// records it; a change of replicas whose leader stops after the range recorded its new
// replicas, before the map does (a leader killed between the two records). Each time the map
// must come to hold what the range says within a bound, by the range's leader's repair alone.
// A stale record sent afterwards changes nothing; the split retried is answered the split that
// applied. While a move holds its range, a split of it
// is refused RANGE_CHANGE_IN_PROGRESS, and the other way round; every replica the map names
// runs its range at the end.
//
// Run with FLOTILLA_MAP_REPAIR=off to start the nodes without the repair: the test then fails
// at the first planted fault (the map stays behind).

import assert from 'node:assert/strict';
import test from 'node:test';
import type { FlotillaNode } from '../../src/server/node.js';
import type { RangeDescriptor } from '../../src/ranges/types.js';
import { TestNodes, postJson, until } from './nodes.js';

const dec = new TextDecoder();

/** The faults the test plants, read by every node's hooks. */
const plant = {
  failSplitRecord: false,
  failReplicasRecord: false,
  holdSplit: null as Promise<void> | null,
  holdMove: null as Promise<void> | null,
  /** Set when a hook is reached while holding. */
  held: false,
};

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve = (): void => undefined;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

function show(d: RangeDescriptor | undefined): string {
  if (d === undefined) return 'none';
  const end = d.end === null ? '+inf' : dec.decode(d.end);
  return `range ${d.id} [${dec.decode(d.start)}, ${end}) gen ${d.generation} [${d.replicas.join(',')}]`;
}

/** The leader of range `id` every replica agrees on: its id and node. */
async function leaderOf(c: TestNodes, id: number): Promise<{ id: number; node: FlotillaNode }> {
  return until(`an agreed leader of range ${id}`, () => {
    const leaders = c.nodes
      .map((n) => n.ranges.group(id)?.runtime.leaderId())
      .filter((l): l is number => l !== undefined && l !== 0);
    const l = leaders[0];
    return l !== undefined && leaders.every((x) => x === l) ? { id: l, node: c.node(l) } : null;
  });
}

/** Waits until every node's map holds range `id` as its leader's log says; answers it. */
async function mapCatchesUp(c: TestNodes, id: number, what: string): Promise<RangeDescriptor> {
  let seen = '';
  try {
    return await until(
      what,
      async () => {
        const own = (await leaderOf(c, id)).node.ranges.group(id)?.range.descriptor();
        const maps = c.nodes.map((n) => n.meta.machine.map()?.get(id));
        seen = `range says ${show(own)}; maps hold ${maps.map(show).join(' | ')}`;
        const same = (d: RangeDescriptor | undefined) =>
          d !== undefined && own !== undefined && show(d) === show(own);
        return own !== undefined && maps.every(same) ? own : null;
      },
      15_000,
    );
  } catch (err) {
    throw new Error(`${(err as Error).message}: ${seen}`);
  }
}

void test('the meta map repairs itself after lost records; splits and moves exclude each other', async () => {
  const repair = process.env['FLOTILLA_MAP_REPAIR'] !== 'off';
  const c = await TestNodes.start({
    nodes: 3,
    hooksOf: () => ({
      mapRepair: repair,
      beforeSplitMapRecord: async () => {
        if (plant.failSplitRecord) throw new Error('planted: the split request gave up');
        if (plant.holdSplit !== null) {
          plant.held = true;
          await plant.holdSplit;
        }
      },
      beforeReplicasMapRecord: async () => {
        if (plant.failReplicasRecord) throw new Error('planted: the leader stopped');
        if (plant.holdMove !== null) {
          plant.held = true;
          await plant.holdMove;
        }
      },
    }),
  });
  try {
    await c.waitForLeader();
    await until('the range map bootstrapped', () => c.node(1).meta.machine.map() !== null);
    const split = (key: string) =>
      postJson(`${c.url(1)}/v1/ranges/split`, { key }, { timeoutMs: 30_000 });
    // To the range's leader: a node holding no replica answers NOT_LEADER naming one.
    const move = async (range: number, from: number, to: number) =>
      postJson(
        `${c.url((await leaderOf(c, range)).id)}/v1/ranges/move`,
        { range, from, to },
        { timeoutMs: 90_000 },
      );
    const first = await split('m');
    assert.equal(first.status, 200, JSON.stringify(first.json));
    const r = (first.json['right'] as { id: number }).id;
    await mapCatchesUp(c, r, 'the first split recorded');

    // A split that applied in range r but whose record never reached the map.
    plant.failSplitRecord = true;
    const lost = await split('t');
    plant.failSplitRecord = false;
    assert.notEqual(lost.status, 200, 'the planted fault did not stop the split request');
    const rd = await leaderOf(c, r);
    const child = rd.node.ranges.group(r)?.range.children().at(-1);
    assert.ok(child !== undefined, 'range r split off nothing: the split did not apply');
    assert.equal(c.node(1).meta.machine.map()?.get(child.id), undefined);
    await mapCatchesUp(c, r, 'the unrecorded split repaired in the map (range r)');
    await mapCatchesUp(c, child.id, 'the unrecorded split repaired in the map (its child)');

    // The caller retries the split whose answer it never had: it is answered the split that
    // applied, and nothing more is split. The same key with other replicas is refused.
    const version = c.node(1).meta.machine.map()?.version;
    const again = await split('t');
    assert.equal(again.status, 200, JSON.stringify(again.json));
    const answered = again.json as { left: { id: number; end: string }; right: { id: number } };
    assert.equal(answered.right.id, child.id, JSON.stringify(again.json));
    assert.equal(answered.left.id, r, JSON.stringify(again.json));
    assert.equal(answered.left.end, 't', JSON.stringify(again.json));
    const other = await postJson(
      `${c.url(1)}/v1/ranges/split`,
      { key: 't', replicas: [(await leaderOf(c, r)).id] },
      { timeoutMs: 30_000 },
    );
    assert.equal(other.status, 400, JSON.stringify(other.json));
    assert.match(JSON.stringify(other.json), /split there already/);
    assert.equal(c.node(1).meta.machine.map()?.version, version, 'a retried split changed the map');

    // A change of replicas whose leader stopped between the range's record and the map's.
    const leader = await leaderOf(c, r);
    const before = c.node(1).meta.machine.map()?.get(r) as RangeDescriptor;
    const removed = before.replicas.find((n) => n !== leader.id) as number;
    plant.failReplicasRecord = true;
    const down = await c
      .node(1)
      .changeReplicas(r, { remove: removed }, AbortSignal.timeout(60_000))
      .then(
        () => null,
        (err: unknown) => err,
      );
    plant.failReplicasRecord = false;
    assert.ok(down !== null, 'the planted fault did not stop the change');
    const after = await mapCatchesUp(
      c,
      r,
      'the replicas recorded by the range repaired in the map',
    );
    assert.equal(after.generation, before.generation + 1);
    assert.ok(!after.replicas.includes(removed), show(after));

    // A stale record arriving late (the older descriptor) changes nothing.
    const metaLeader = await until(
      'a meta leader',
      () => c.nodes.find((n) => n.meta.runtime.isLeader()) ?? null,
    );
    const stale = await metaLeader.meta.recordReplicas(before);
    assert.equal(stale.outcome, 'known');
    assert.equal(show(c.node(1).meta.machine.map()?.get(r)), show(after));

    // While a move of r holds its range, a split of r is refused; then the other way round.
    const from = after.replicas.find((n) => n !== leader.id);
    assert.ok(from !== undefined, `range r has no replica besides its leader: ${show(after)}`);
    const hold = deferred();
    plant.held = false;
    plant.holdMove = hold.promise;
    let moveAnswer: unknown = null;
    const moving = move(r, from, removed).then((a) => (moveAnswer = a));
    await until(
      'the move reached its map record',
      () => {
        if (moveAnswer !== null) throw new Error(`the move ended: ${JSON.stringify(moveAnswer)}`);
        return plant.held;
      },
      60_000,
    );
    const refused = await split('p');
    assert.equal(refused.status, 409, JSON.stringify(refused.json));
    assert.equal((refused.json['error'] as { code: string }).code, 'RANGE_CHANGE_IN_PROGRESS');
    plant.holdMove = null;
    hold.resolve();
    const moved = await moving;
    assert.equal(moved.status, 200, JSON.stringify(moved.json));

    const hold2 = deferred();
    plant.held = false;
    plant.holdSplit = hold2.promise;
    let splitAnswer: unknown = null;
    const splitting = split('p').then((a) => (splitAnswer = a));
    await until(
      'the split reached its map record',
      () => {
        if (splitAnswer !== null)
          throw new Error(`the split ended: ${JSON.stringify(splitAnswer)}`);
        return plant.held;
      },
      30_000,
    );
    const refusedMove = await move(r, removed, from);
    assert.equal(refusedMove.status, 409, JSON.stringify(refusedMove.json));
    assert.equal((refusedMove.json['error'] as { code: string }).code, 'RANGE_CHANGE_IN_PROGRESS');
    plant.holdSplit = null;
    hold2.resolve();
    const third = await splitting;
    assert.equal(third.status, 200, JSON.stringify(third.json));
    // Node 1 may follow in the meta group: its map shows the split once it applied the record.
    await mapCatchesUp(
      c,
      (third.json['right'] as { id: number }).id,
      'the third split recorded in every map',
    );

    // Every replica the map names runs its range.
    const map = c.node(1).meta.machine.map();
    assert.ok(map !== null);
    for (const d of map.ranges())
      for (const n of d.replicas)
        await until(`node ${n} runs ${show(d)}`, () => c.node(n).ranges.group(d.id) !== undefined);
  } finally {
    await c.close();
  }
});
