// Where replicas and leaders should be: pure functions over the range map, deterministic (the
// same inputs give the same plan on every node, so whichever node runs the placement loop
// proposes the same moves). They only plan: the placement loop (src/server/placement-loop.ts)
// carries the steps out, one at a time, over the ranges it may move (not 0, 1 and 2, and not a
// range whose change is under way), so a plan takes any list of descriptors, not only a map.
//
// A plan is bounded: a drain moves each replica on a drained node once; every other step
// strictly lowers the sum of squared counts per node, so it ends, and the plan stops as soon as
// no node holds two more than another (replicas), or no transfer can lower the spread (leaders,
// which can only go to a node holding a replica of the range).

import { strict as assert } from 'node:assert';
import { FlotillaError } from '../base/errors.js';
import type { RangeDescriptor, RangeId } from './types.js';

/** The ranges a plan is made over: a RangeMap, or some of its descriptors (ids unique). */
export interface RangeList {
  ranges(): readonly RangeDescriptor[];
}

/** Replace the replica of `range` on node `from` by one on node `to`. */
export interface ReplicaMove {
  readonly range: RangeId;
  readonly from: number;
  readonly to: number;
}

/** Hand the leadership of `range` from node `from` to node `to`, a replica of it. */
export interface LeaderTransfer {
  readonly range: RangeId;
  readonly from: number;
  readonly to: number;
}

function bad(message: string): never {
  throw new FlotillaError('BAD_REQUEST', message);
}

function checkNodes(nodes: readonly number[]): void {
  const seen = new Set<number>();
  for (const n of nodes) {
    if (!Number.isSafeInteger(n) || n < 1) bad(`A node id must be a positive integer, got ${n}`);
    if (seen.has(n)) bad(`Node ${n} is named twice`);
    seen.add(n);
  }
}

/** Orders nodes by count, fewest first, ties by id: the order every choice here follows. */
function byLoad(counts: ReadonlyMap<number, number>): (a: number, b: number) => number {
  return (a, b) => (counts.get(a) ?? 0) - (counts.get(b) ?? 0) || a - b;
}

/**
 * `count` nodes for a new range's replicas, ascending: those holding the fewest replicas
 * (`replicasPerNode`, absent: none), ties by id. Throws BAD_REQUEST when there are too few.
 */
export function chooseReplicas(
  nodes: readonly number[],
  count: number,
  replicasPerNode: ReadonlyMap<number, number>,
): number[] {
  checkNodes(nodes);
  if (!Number.isSafeInteger(count) || count < 1 || count > nodes.length)
    bad(`Cannot place ${count} replicas on ${nodes.length} nodes`);
  return [...nodes]
    .sort(byLoad(replicasPerNode))
    .slice(0, count)
    .sort((a, b) => a - b);
}

/** Replicas per node over the whole map, every node of `nodes` present (perhaps with 0). */
export function replicaCounts(map: RangeList, nodes: readonly number[]): Map<number, number> {
  const counts = new Map<number, number>(nodes.map((n) => [n, 0]));
  for (const d of map.ranges()) for (const r of d.replicas) counts.set(r, (counts.get(r) ?? 0) + 1);
  return counts;
}

/**
 * Moves that spread the replicas evenly over `nodes`, to be carried out in order: first every
 * replica on a node not in `nodes` (one being drained, or gone) moves to the live node with
 * the fewest that does not hold the range; then, while a node holds two more than another,
 * one replica moves from the fullest to the emptiest (a node just added starts empty and so
 * receives its share). Every range keeps its number of replicas and never has two on a node.
 * Every range must have `replicasPerRange` replicas (restoring a range's count is not a move),
 * and there must be at least that many nodes; otherwise BAD_REQUEST.
 */
export function rebalancePlan(
  map: RangeList,
  nodes: readonly number[],
  replicasPerRange: number,
): ReplicaMove[] {
  checkNodes(nodes);
  if (!Number.isSafeInteger(replicasPerRange) || replicasPerRange < 1)
    bad(`Replicas per range must be a positive integer, got ${replicasPerRange}`);
  if (nodes.length < replicasPerRange)
    bad(`Cannot keep ${replicasPerRange} replicas of each range on ${nodes.length} nodes`);
  for (const d of map.ranges())
    if (d.replicas.length !== replicasPerRange)
      bad(`Range ${d.id} has ${d.replicas.length} replicas, not ${replicasPerRange}`);

  const live = new Set(nodes);
  const counts = replicaCounts(map, nodes);
  // The replicas as the plan leaves them so far: each move is planned on the previous ones.
  const replicas = new Map(map.ranges().map((d) => [d.id, new Set(d.replicas)]));
  // The ranges on each node, so that a step looks at the fullest node's ranges only.
  const onNode = listsByNode(map, (d) => d.replicas);
  const moves: ReplicaMove[] = [];
  const move = (range: RangeId, from: number, to: number): void => {
    const set = replicas.get(range) as Set<number>;
    assert.ok(set.has(from) && !set.has(to) && live.has(to));
    set.delete(from);
    set.add(to);
    counts.set(from, (counts.get(from) as number) - 1);
    counts.set(to, (counts.get(to) as number) + 1);
    moveInLists(onNode, range, from, to);
    moves.push({ range, from, to });
  };

  for (const d of map.ranges()) {
    for (const from of d.replicas) {
      if (live.has(from)) continue;
      const set = replicas.get(d.id) as Set<number>;
      // Some live node lacks the range: it has fewer replicas than there are live nodes.
      const to = [...nodes].sort(byLoad(counts)).find((n) => !set.has(n));
      assert.ok(to !== undefined);
      move(d.id, from, to);
    }
  }

  // Each move lowers the sum of squared counts by at least 2, so this many steps always end it.
  const stepsMax = (map.ranges().length * replicasPerRange) ** 2 + 1;
  for (let step = 0; ; step++) {
    assert.ok(step <= stepsMax, 'rebalancePlan did not converge');
    const order = [...nodes].sort(byLoad(counts));
    const emptiest = order[0] as number;
    const fullest = order[order.length - 1] as number;
    if ((counts.get(fullest) as number) - (counts.get(emptiest) as number) <= 1) break;
    // The fullest holds more ranges than the emptiest, so one of them is not on the emptiest.
    const range = onNode
      .get(fullest)
      ?.find((id) => !(replicas.get(id) as Set<number>).has(emptiest));
    assert.ok(range !== undefined);
    move(range, fullest, emptiest);
  }
  return moves;
}

/** For each node, the ranges `of` puts on it, in map order. */
function listsByNode(
  map: RangeList,
  of: (d: RangeDescriptor) => readonly number[],
): Map<number, RangeId[]> {
  const lists = new Map<number, RangeId[]>();
  for (const d of map.ranges())
    for (const n of of(d)) {
      const list = lists.get(n);
      if (list === undefined) lists.set(n, [d.id]);
      else list.push(d.id);
    }
  return lists;
}

/**
 * Moves `range` from one node's list to the end of another's. The search is short: plans take
 * ranges from near the front of a list (drains in map order, steps the first that fits).
 */
function moveInLists(
  lists: Map<number, RangeId[]>,
  range: RangeId,
  from: number,
  to: number,
): void {
  const fromList = lists.get(from) as RangeId[];
  const i = fromList.indexOf(range);
  assert.ok(i >= 0);
  fromList.splice(i, 1);
  const toList = lists.get(to);
  if (toList === undefined) lists.set(to, [range]);
  else toList.push(range);
}

/**
 * Leadership transfers that even out the leaders per node. `leaders` maps a range to the node
 * leading it; a range without an entry, or whose leader is not one of its replicas (a stale
 * report), is left alone. Every node holding a replica counts, with 0 leaders if it leads
 * nothing. Each transfer goes from the node leading the most that can give one, to the replica
 * of one of its ranges leading the fewest (ties by id), and only if that one leads at least two
 * fewer; the plan stops when no such transfer exists.
 */
export function leaderPlan(
  map: RangeList,
  leaders: ReadonlyMap<RangeId, number>,
): LeaderTransfer[] {
  const counts = new Map<number, number>();
  const led = new Map<RangeId, number>();
  const queues = new PairQueues(led);
  for (const d of map.ranges()) {
    for (const r of d.replicas) if (!counts.has(r)) counts.set(r, 0);
    const l = leaders.get(d.id);
    if (l === undefined || !d.replicas.includes(l)) continue;
    led.set(d.id, l);
    counts.set(l, (counts.get(l) as number) + 1);
    queues.add(d, l);
  }
  const byId = new Map(map.ranges().map((d) => [d.id, d]));
  const transfers: LeaderTransfer[] = [];
  // Each transfer lowers the sum of squared counts by at least 2.
  const stepsMax = led.size * led.size + 1;
  for (let step = 0; ; step++) {
    assert.ok(step <= stepsMax, 'leaderPlan did not converge');
    const t = bestTransfer(queues, counts);
    if (t === null) break;
    led.set(t.range, t.to);
    counts.set(t.from, (counts.get(t.from) as number) - 1);
    counts.set(t.to, (counts.get(t.to) as number) + 1);
    queues.add(byId.get(t.range) as RangeDescriptor, t.to);
    transfers.push(t);
  }
  return transfers;
}

/**
 * For each pair (leader, other replica), the ranges so led that have a replica there, in the
 * order they were added (map order, then transfers). An entry goes stale when its range's
 * leader changes and is dropped when it reaches the front, so each costs O(1) once.
 */
class PairQueues {
  private readonly queues = new Map<string, { ids: RangeId[]; head: number }>();

  constructor(private readonly led: ReadonlyMap<RangeId, number>) {}

  add(d: RangeDescriptor, leader: number): void {
    for (const r of d.replicas) {
      if (r === leader) continue;
      const q = this.queues.get(`${leader},${r}`);
      if (q === undefined) this.queues.set(`${leader},${r}`, { ids: [d.id], head: 0 });
      else q.ids.push(d.id);
    }
  }

  /** The first range led by `from` with a replica on `to`, or undefined. */
  first(from: number, to: number): RangeId | undefined {
    const q = this.queues.get(`${from},${to}`);
    if (q === undefined) return undefined;
    while (q.head < q.ids.length && this.led.get(q.ids[q.head] as RangeId) !== from) q.head++;
    if (q.head > 1_024 && q.head * 2 > q.ids.length) {
      q.ids = q.ids.slice(q.head);
      q.head = 0;
    }
    return q.ids[q.head];
  }
}

/** The next transfer that lowers the spread, or null. */
function bestTransfer(
  queues: PairQueues,
  counts: ReadonlyMap<number, number>,
): LeaderTransfer | null {
  const ascending = [...counts.keys()].sort(byLoad(counts));
  const fewest = counts.get(ascending[0] as number) as number;
  for (const from of [...ascending].reverse()) {
    const c = counts.get(from) as number;
    if (c - fewest < 2) return null;
    for (const to of ascending) {
      if ((counts.get(to) as number) > c - 2) break;
      const range = queues.first(from, to);
      if (range !== undefined) return { range, from, to };
    }
  }
  return null;
}
