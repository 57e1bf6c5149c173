// Placement plans: replicas for a new range, moves that drain nodes and even out the replicas,
// transfers that even out the leaders. Each plan is carried out on a copy of the map's replica
// sets and checked (`checkMoves`): every move takes a replica the range has to a live node
// that lacks it, no range has two replicas on a node, none is left on a drained node, and the
// live nodes' counts end within one. The checker is shown to catch a plan with a bad move and
// one stopped early.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { FlotillaError } from '../../src/base/errors.js';
import {
  chooseReplicas,
  leaderPlan,
  rebalancePlan,
  replicaCounts,
  type LeaderTransfer,
  type ReplicaMove,
} from '../../src/ranges/placement.js';
import { RangeMap } from '../../src/ranges/range-map.js';
import type { RangeDescriptor, RangeId } from '../../src/ranges/types.js';
import { desc } from './harness.js';

/** A map of `n` ranges whose replicas are `placeOf(i)`. */
function mapOf(n: number, placeOf: (i: number) => number[]): RangeMap {
  const list: RangeDescriptor[] = [];
  for (let i = 0; i < n; i++) {
    const start = i === 0 ? '' : `k${String(i).padStart(4, '0')}`;
    const end = i === n - 1 ? null : `k${String(i + 1).padStart(4, '0')}`;
    list.push(desc(i === 0 ? 0 : i + 2, start, end, 1, placeOf(i)));
  }
  return RangeMap.fromDescriptors(1, list);
}

/** Everything wrong with carrying out `moves` on `map`; empty when the plan is sound. */
function checkMoves(
  map: RangeMap,
  nodes: readonly number[],
  moves: readonly ReplicaMove[],
): string[] {
  const problems: string[] = [];
  const sets = new Map(map.ranges().map((d) => [d.id, new Set(d.replicas)]));
  for (const m of moves) {
    const set = sets.get(m.range);
    if (set === undefined) problems.push(`move of unknown range ${m.range}`);
    else if (!set.has(m.from)) problems.push(`range ${m.range} has no replica on ${m.from}`);
    else if (set.has(m.to)) problems.push(`range ${m.range} would have two replicas on ${m.to}`);
    else if (!nodes.includes(m.to)) problems.push(`move of range ${m.range} to ${m.to}, not live`);
    else {
      set.delete(m.from);
      set.add(m.to);
    }
  }
  const counts = new Map(nodes.map((n) => [n, 0]));
  for (const [id, set] of sets) {
    const before = map.get(id)?.replicas.length;
    if (set.size !== before) problems.push(`range ${id} has ${set.size} replicas, not ${before}`);
    for (const r of set) {
      if (!nodes.includes(r)) problems.push(`range ${id} still has a replica on drained node ${r}`);
      else counts.set(r, (counts.get(r) as number) + 1);
    }
  }
  const c = [...counts.values()];
  if (Math.max(...c) - Math.min(...c) > 1)
    problems.push(`replica counts per node stay uneven: ${JSON.stringify([...counts])}`);
  return problems;
}

void test('replicas for a new range go to the nodes holding the fewest, ties by id', () => {
  const counts = new Map([
    [1, 5],
    [2, 1],
    [3, 1],
    [4, 0],
    [5, 9],
  ]);
  assert.deepEqual(chooseReplicas([5, 4, 3, 2, 1], 3, counts), [2, 3, 4]);
  assert.deepEqual(chooseReplicas([5, 4, 3, 2, 1], 1, counts), [4]);
  assert.deepEqual(chooseReplicas([7, 6], 2, new Map()), [6, 7]);
  const refusal = (f: () => unknown, message: RegExp) =>
    assert.throws(
      f,
      (e) => e instanceof FlotillaError && e.code === 'BAD_REQUEST' && message.test(e.message),
    );
  refusal(() => chooseReplicas([1, 2], 3, counts), /Cannot place 3 replicas on 2 nodes/);
  refusal(() => chooseReplicas([1, 1, 2], 1, counts), /Node 1 is named twice/);
  refusal(() => chooseReplicas([0, 1], 1, counts), /positive integer, got 0/);
});

void test('a new node receives its share and a drained node is emptied', () => {
  // 12 ranges on nodes 1-3; node 4 joins, node 3 is drained.
  const map = mapOf(12, () => [1, 2, 3]);
  const nodes = [1, 2, 4, 5];
  const moves = rebalancePlan(map, nodes, 3);
  assert.deepEqual(checkMoves(map, nodes, moves), []);
  const after = countsAfter(map, moves);
  assert.equal(after.get(3) ?? 0, 0);
  assert.deepEqual(
    [1, 2, 4, 5].map((n) => after.get(n)),
    [9, 9, 9, 9],
  );
  // 12 off the drained node, then 3 more from each of 1 and 2.
  assert.equal(moves.length, 18);
  assert.deepEqual(rebalancePlan(map, nodes, 3), moves, 'the same inputs give the same plan');
});

void test('a balanced map needs no move, and bad inputs are refused', () => {
  const map = mapOf(4, (i) => [1, 2, 3, 4].filter((n) => n !== i + 1));
  assert.deepEqual(rebalancePlan(map, [1, 2, 3, 4], 3), []);
  assert.throws(
    () => rebalancePlan(map, [1, 2], 3),
    /Cannot keep 3 replicas of each range on 2 nodes/,
  );
  assert.throws(() => rebalancePlan(map, [1, 2, 3, 4], 2), /Range 0 has 3 replicas, not 2/);
  assert.throws(() => rebalancePlan(map, [1, 2, 2], 3), /named twice/);
});

function countsAfter(map: RangeMap, moves: readonly ReplicaMove[]): Map<number, number> {
  const counts = replicaCounts(map, []);
  for (const m of moves) {
    counts.set(m.from, (counts.get(m.from) as number) - 1);
    counts.set(m.to, (counts.get(m.to) ?? 0) + 1);
  }
  return counts;
}

type PlacementCase = typeof placementCase extends fc.Arbitrary<infer T> ? T : never;

const placementCase = fc.record({
  ranges: fc.integer({ min: 1, max: 60 }),
  before: fc.integer({ min: 3, max: 7 }),
  seedPlaces: fc.array(fc.nat(), { minLength: 60, maxLength: 60 }),
  drained: fc.array(fc.integer({ min: 1, max: 7 }), { maxLength: 3 }),
  added: fc.integer({ min: 0, max: 3 }),
});

/** A map over nodes 1..before placed unevenly, and the live nodes after drains and joins. */
function setUp(c: PlacementCase): { map: RangeMap; nodes: number[] } {
  const all = Array.from({ length: c.before }, (_, i) => i + 1);
  const map = mapOf(c.ranges, (i) => {
    // Three distinct nodes picked by the case's numbers: skewed towards the low ids.
    const s = c.seedPlaces[i] as number;
    const pool = [...all];
    const out: number[] = [];
    for (let k = 0; k < 3; k++)
      out.push(pool.splice((s >> (k * 3)) % Math.min(pool.length, 3), 1)[0] as number);
    return out.sort((a, b) => a - b);
  });
  const nodes = all.filter((n) => !c.drained.includes(n));
  for (let k = 1; k <= c.added; k++) nodes.push(c.before + k);
  return { map, nodes };
}

void test('by property: plans keep counts, never double a replica, drain, and even out', () => {
  fc.assert(
    fc.property(placementCase, (c) => {
      const { map, nodes } = setUp(c);
      fc.pre(nodes.length >= 3);
      const moves = rebalancePlan(map, nodes, 3);
      assert.deepEqual(checkMoves(map, nodes, moves), []);
      // Bounded: no replica moves more than twice over (off a drained node, then to even out).
      assert.ok(moves.length <= 2 * 3 * c.ranges, `${moves.length} moves for ${c.ranges} ranges`);
    }),
    { numRuns: 300, seed: 18 },
  );
});

void test('planted: the plan checker catches a doubled replica and a plan stopped early', () => {
  const map = mapOf(12, () => [1, 2, 3]);
  const nodes = [1, 2, 3, 4];
  const moves = rebalancePlan(map, nodes, 3);
  assert.deepEqual(checkMoves(map, nodes, moves), []);
  const first = moves[0] as ReplicaMove;
  const doubled = [...moves, { range: first.range, from: 1, to: first.to }];
  assert.match(checkMoves(map, nodes, doubled).join(), /two replicas on 4|no replica on 1/);
  const early = moves.slice(0, -2);
  assert.match(checkMoves(map, nodes, early).join(), /uneven/);
  const drainedLeft = rebalancePlan(map, [1, 2, 4], 3).slice(1);
  assert.match(checkMoves(map, [1, 2, 4], drainedLeft).join(), /drained node 3/);
});

/** Leaders per node after `transfers`, checking each one as it goes. */
function leadersAfter(
  map: RangeMap,
  leaders: ReadonlyMap<RangeId, number>,
  transfers: readonly LeaderTransfer[],
): Map<RangeId, number> {
  const led = new Map(leaders);
  for (const t of transfers) {
    assert.equal(led.get(t.range), t.from, `range ${t.range} is not led by ${t.from}`);
    assert.ok(map.get(t.range)?.replicas.includes(t.to), `${t.to} holds no replica of ${t.range}`);
    led.set(t.range, t.to);
  }
  return led;
}

void test('leaders even out over the replicas that can take them', () => {
  const map = mapOf(9, () => [1, 2, 3]);
  const all1 = new Map(map.ranges().map((d) => [d.id, 1]));
  const transfers = leaderPlan(map, all1);
  const led = leadersAfter(map, all1, transfers);
  const per = [1, 2, 3].map((n) => [...led.values()].filter((l) => l === n).length);
  assert.deepEqual(per, [3, 3, 3]);
  assert.equal(transfers.length, 6);
  // A range with no leader known, or a leader that is not its replica, is left alone.
  const partial = new Map<RangeId, number>([
    [0, 1],
    [3, 1],
    [4, 9],
  ]);
  const t = leaderPlan(map, partial);
  assert.deepEqual(
    t.map((x) => x.range),
    [0],
  );
});

void test('by property: leader transfers stay on replicas and end with none left to make', () => {
  fc.assert(
    fc.property(placementCase, fc.array(fc.nat(), { minLength: 60, maxLength: 60 }), (c, picks) => {
      const { map } = setUp(c);
      const leaders = new Map(
        map.ranges().map((d, i) => [d.id, d.replicas[(picks[i] as number) % 3] as number]),
      );
      const led = leadersAfter(map, leaders, leaderPlan(map, leaders));
      const per = replicaCounts(map, []);
      for (const n of per.keys()) per.set(n, 0);
      for (const l of led.values()) per.set(l, (per.get(l) as number) + 1);
      // Done: no range's leader could hand over to a replica leading two fewer.
      for (const d of map.ranges()) {
        const from = led.get(d.id) as number;
        for (const r of d.replicas)
          assert.ok(
            (per.get(r) as number) >= (per.get(from) as number) - 1,
            `range ${d.id}: ${from} → ${r}`,
          );
      }
    }),
    { numRuns: 300, seed: 18 },
  );
});
