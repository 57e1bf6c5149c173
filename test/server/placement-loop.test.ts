// The placement loop against a fake cluster: a range map that an in-memory executor changes as
// a range's leader would (each change a new generation recorded in the map), members, draining
// nodes and leaders. The executor refuses any step that is not valid when it arrives (a move
// from a node that holds no replica, to one that holds one, to a node that is no member...), so
// a loop that plans badly fails the tests. What the loop must reach is checked by
// `placementProblems`: every range from 3 on has the replicas it should, on nodes that are
// members and not draining, the counts per node within one of each other, and the leaders too;
// a planted executor that says done and changes nothing shows the checker fails a drain that
// did not happen.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { pino } from 'pino';
import { FlotillaError } from '../../src/base/errors.js';
import { RangeMap } from '../../src/ranges/range-map.js';
import type { RangeDescriptor, RangeId } from '../../src/ranges/types.js';
import {
  drainMovesInFlight,
  PlacementLoop,
  planPlacement,
  type PlacementExecutor,
  type PlacementLoopOptions,
  type PlacementStep,
} from '../../src/server/placement-loop.js';
import { desc } from '../ranges/harness.js';
import { TimerClock } from '../support/timer-clock.js';
import { until } from '../support/until.js';

class TestClock extends TimerClock {}

/** Ranges 0 (on `range0`) and 3, 4, ... with replicas `placeOf(i)`, contiguous, generation 1. */
function mapOf(n: number, range0: readonly number[], placeOf: (i: number) => number[]): RangeMap {
  const k = (i: number) => `k${String(i).padStart(4, '0')}`;
  const list: RangeDescriptor[] = [desc(0, '', n === 0 ? null : k(0), 1, range0)];
  for (let i = 0; i < n; i++)
    list.push(
      desc(
        i + 3,
        k(i),
        i === n - 1 ? null : k(i + 1),
        1,
        [...placeOf(i)].sort((a, b) => a - b),
      ),
    );
  return RangeMap.fromDescriptors(1, list);
}

/**
 * A cluster as the loop sees it, with an executor that carries out steps on its map as ranges
 * would, refusing invalid ones. `fail(step)` makes a step fail (before it changes anything);
 * `hang(step)` makes it never answer (until its signal aborts).
 */
class FakeCluster implements PlacementExecutor {
  map: RangeMap;
  members: number[];
  draining: number[] = [];
  /** The drains forced: a subset of `draining`. */
  forced: number[] = [];
  leaders = new Map<RangeId, number>();
  leads = true;
  readonly calls: PlacementStep[] = [];
  readonly refused: string[] = [];
  fail: (s: PlacementStep) => boolean = () => false;
  hang: (s: PlacementStep) => boolean = () => false;
  /** Awaited by each step before it changes anything (null: none). */
  gate: ((s: PlacementStep) => Promise<void>) | null = null;
  /** Steps called and not yet over, and what overlapped: steps that ran beside another. */
  readonly inFlight: PlacementStep[] = [];
  maxInFlight = 0;
  readonly overlapped: PlacementStep[][] = [];
  /** A planted bug: answer done and change nothing. */
  noop = false;
  readonly aborted: PlacementStep[] = [];

  constructor(map: RangeMap, members: number[]) {
    this.map = map;
    this.members = members;
    for (const d of map.ranges()) this.leaders.set(d.id, d.replicas[0] as number);
  }

  /** Carries out `s`: `change` gives the new replicas (null: a transfer, which changes none). */
  private async apply(
    s: PlacementStep,
    signal: AbortSignal,
    change: ((r: number[]) => number[]) | null,
  ): Promise<void> {
    this.calls.push(s);
    this.inFlight.push(s);
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight.length);
    if (this.inFlight.length > 1) this.overlapped.push([...this.inFlight]);
    try {
      if (this.gate !== null) await this.gate(s);
      await this.carryOut(s, signal, change);
    } finally {
      this.inFlight.splice(this.inFlight.indexOf(s), 1);
    }
  }

  private async carryOut(
    s: PlacementStep,
    signal: AbortSignal,
    change: ((r: number[]) => number[]) | null,
  ): Promise<void> {
    if (this.hang(s))
      return new Promise<void>((_, reject) =>
        signal.addEventListener('abort', () => {
          this.aborted.push(s);
          reject(signal.reason as Error);
        }),
      );
    if (this.fail(s)) throw new FlotillaError('NO_LEADER', `planted failure of range ${s.range}`);
    const d = this.map.get(s.range);
    if (d === undefined) return this.refuse(`range ${s.range} does not exist`);
    const problem = this.problem(s, d);
    if (problem !== null) return this.refuse(problem);
    if (this.noop) return;
    if (change === null) {
      if (s.kind === 'transfer') this.leaders.set(s.range, s.to);
      return;
    }
    const replicas = change([...d.replicas]).sort((a, b) => a - b);
    const r = this.map.recordReplicas({ ...d, generation: d.generation + 1, replicas });
    assert.equal(r.outcome, 'applied');
    if (r.outcome === 'applied') this.map = r.map;
    const leader = this.leaders.get(s.range);
    if (leader !== undefined && !replicas.includes(leader))
      this.leaders.set(s.range, replicas[0] as number);
  }

  private refuse(why: string): never {
    this.refused.push(why);
    throw new FlotillaError('BAD_REQUEST', why);
  }

  private problem(s: PlacementStep, d: RangeDescriptor): string | null {
    if (s.range < 3) return `step on range ${s.range}, which is never moved`;
    if (s.kind !== 'add' && !d.replicas.includes(s.from))
      return `${s.kind} of range ${s.range} from ${s.from}, which holds no replica`;
    if (s.kind === 'transfer' && !d.replicas.includes(s.to))
      return `transfer of range ${s.range} to ${s.to}, which holds no replica`;
    if ((s.kind === 'add' || s.kind === 'move') && d.replicas.includes(s.to))
      return `${s.kind} of range ${s.range} to ${s.to}, which holds one already`;
    if (s.kind !== 'remove' && (!this.members.includes(s.to) || this.draining.includes(s.to)))
      return `${s.kind} of range ${s.range} to ${s.to}, not a member or draining`;
    if (s.kind === 'remove' && d.replicas.length === 1) return `removing the last replica`;
    return null;
  }

  move(range: RangeId, from: number, to: number, signal: AbortSignal): Promise<void> {
    const s = { kind: 'move', range, from, to, generation: 0 } as const;
    return this.apply(s, signal, (r) => [...r.filter((x) => x !== from), to]);
  }
  addReplica(range: RangeId, to: number, signal: AbortSignal): Promise<void> {
    return this.apply({ kind: 'add', range, to, generation: 0 }, signal, (r) => [...r, to]);
  }
  removeReplica(range: RangeId, from: number, signal: AbortSignal): Promise<void> {
    const s = { kind: 'remove', range, from, generation: 0 } as const;
    return this.apply(s, signal, (r) => r.filter((x) => x !== from));
  }
  transferLeader(range: RangeId, to: number, signal: AbortSignal): Promise<void> {
    const from = this.leaders.get(range) ?? 0;
    return this.apply({ kind: 'transfer', range, from, to, generation: 0 }, signal, null);
  }
}

/**
 * Everything wrong with where the ranges are; empty when placement is done. A range keeps
 * replicasPerRange replicas, or one per member when there are fewer, a forced drain's node not
 * counted. With fewer live members than that (a drain blocked), every live member holds every
 * range and the rest stays where it was: see `blockedProblems`.
 */
function placementProblems(
  c: FakeCluster,
  replicasPerRange: number,
  o: { leaders?: boolean } = {},
): string[] {
  const live = c.members.filter((m) => !c.draining.includes(m));
  const target = Math.min(
    replicasPerRange,
    c.members.filter((m) => !c.forced.includes(m) || !c.draining.includes(m)).length,
  );
  if (live.length < target) return blockedProblems(c, live, target);
  const problems: string[] = [];
  const counts = new Map(live.map((n) => [n, 0]));
  const led = new Map(live.map((n) => [n, 0]));
  for (const d of c.map.ranges()) {
    if (d.id < 3) continue;
    if (d.replicas.length !== target)
      problems.push(`range ${d.id} has ${d.replicas.length} replicas, not ${target}`);
    for (const r of d.replicas) {
      if (!live.includes(r)) problems.push(`range ${d.id} has a replica on ${r}, not live`);
      else counts.set(r, (counts.get(r) as number) + 1);
    }
    const l = c.leaders.get(d.id);
    if (l !== undefined && led.has(l)) led.set(l, (led.get(l) as number) + 1);
  }
  const spread = (m: Map<number, number>) => Math.max(...m.values()) - Math.min(...m.values());
  if (spread(counts) > 1) problems.push(`replicas per node uneven: ${JSON.stringify([...counts])}`);
  // Leaders even out among the nodes of the ranges; with 3 of 4 nodes a node may lead 2 fewer
  // only when no range it holds can give it one, which leaderPlan checks; here: within 2.
  if (o.leaders === true && spread(led) > 2)
    problems.push(`leaders per node uneven: ${JSON.stringify([...led])}`);
  return problems;
}

/** A blocked drain: every range on every live member, none with more than `target`. */
function blockedProblems(c: FakeCluster, live: readonly number[], target: number): string[] {
  const problems: string[] = [];
  for (const d of c.map.ranges()) {
    if (d.id < 3) continue;
    if (d.replicas.length > target)
      problems.push(`range ${d.id} has ${d.replicas.length} replicas, more than ${target}`);
    for (const n of live)
      if (!d.replicas.includes(n)) problems.push(`range ${d.id} lacks live member ${n}`);
  }
  return problems;
}

/** For each range from 3 on, its number of replicas. */
function countsOf(map: RangeMap): Map<RangeId, number> {
  return new Map(
    map
      .ranges()
      .filter((d) => d.id >= 3)
      .map((d) => [d.id, d.replicas.length]),
  );
}

function loopOn(
  c: FakeCluster,
  clock: TestClock,
  over: Partial<PlacementLoopOptions> = {},
): PlacementLoop {
  return new PlacementLoop({
    clock,
    enabled: true,
    everyMs: 1_000,
    replicasPerRange: 3,
    stepTimeoutMs: 10_000,
    leads: () => c.leads,
    leader: () => 1,
    map: () => c.map,
    draining: () => c.draining,
    forced: () => c.forced,
    members: () => c.members,
    leaders: () => Promise.resolve(new Map(c.leaders)),
    executor: c,
    log: pino({ level: 'silent' }),
    ...over,
  });
}

/** Runs rounds until a round carries out no step, at most `rounds`; the rounds it took. */
async function settle(loop: PlacementLoop, c: FakeCluster, clock: TestClock, rounds = 200) {
  for (let i = 0; i < rounds; i++) {
    const before = c.calls.length;
    await loop.check();
    clock.advance(1_000);
    if (c.calls.length === before && loop.status().pending === 0) return i;
  }
  assert.fail(`placement did not settle in ${rounds} rounds: ${JSON.stringify(loop.status())}`);
}

void test('ranges on every member come down to three each, evenly, leaders spread too', async () => {
  const clock = new TestClock();
  const c = new FakeCluster(
    mapOf(20, [1, 2, 3, 4, 5], () => [1, 2, 3, 4, 5]),
    [1, 2, 3, 4, 5],
  );
  // Every range led by node 1, as a cluster where one node made every split would be.
  for (let id = 3; id < 23; id++) c.leaders.set(id, 1);
  const loop = loopOn(c, clock);
  assert.deepEqual(placementProblems(c, 3).length > 0, true);
  await settle(loop, c, clock);
  assert.deepEqual(c.refused, []);
  assert.deepEqual(placementProblems(c, 3, { leaders: true }), []);
  assert.equal(c.map.get(0)?.replicas.length, 5, 'range 0 is never touched');
  const kinds = new Set(c.calls.map((s) => s.kind));
  assert.ok(kinds.has('remove') && kinds.has('transfer'), [...kinds].join());
  const s = loop.status();
  assert.equal(s.active, true);
  assert.equal(s.pending, 0);
  assert.equal(s.stepsDone, c.calls.length);
  assert.equal(s.stepsFailed, 0);
});

void test('a drained node ends with no replica; undrained, it gets its share back', async () => {
  const clock = new TestClock();
  const c = fourNodesThreeReplicas(16);
  const loop = loopOn(c, clock);
  await settle(loop, c, clock);
  assert.deepEqual(placementProblems(c, 3), []);
  assert.equal(c.calls.filter((s) => s.kind !== 'transfer').length, 0, 'already placed');

  c.draining = [2];
  // The status says where ranges go from the drain marks as they are, before any plan.
  assert.deepEqual([loop.status().nodes, loop.status().target], [[1, 3, 4], 3]);
  await settle(loop, c, clock);
  assert.deepEqual(c.refused, []);
  assert.deepEqual(placementProblems(c, 3), []);
  const on2 = c.map.ranges().filter((d) => d.id >= 3 && d.replicas.includes(2));
  assert.deepEqual(on2, [], 'node 2 holds no replica of a range from 3 on');
  assert.ok(c.map.get(0)?.replicas.includes(2), 'range 0 follows membership, not the loop');
  assert.deepEqual(loop.status().draining, [2]);

  c.draining = [];
  await settle(loop, c, clock);
  assert.deepEqual(placementProblems(c, 3), []);
  const back = c.map.ranges().filter((d) => d.id >= 3 && d.replicas.includes(2)).length;
  assert.ok(back >= 11, `node 2 holds ${back} of the 48 replicas again`);
});

void test('drain moves run up to four at once, each on its own range; other steps alone', async () => {
  const clock = new TestClock();
  const c = fourNodesThreeReplicas(16);
  const loop = loopOn(c, clock);
  await settle(loop, c, clock);
  assert.deepEqual(placementProblems(c, 3), []);

  // Every step waits for the test to let it go.
  const waiting: (() => void)[] = [];
  c.gate = () => new Promise<void>((resolve) => waiting.push(resolve));
  c.draining = [2];
  const before = c.calls.length;
  const onNode2 = c.map.ranges().filter((d) => d.id >= 3 && d.replicas.includes(2)).length;
  assert.ok(onNode2 > drainMovesInFlight, `node 2 holds ${onNode2} replicas`);
  const round = loop.check();
  const seen = () => JSON.stringify({ calls: c.calls, status: loop.status() });
  await until(seen, () => waiting.length === drainMovesInFlight, 5_000);
  const running = loop.status().running;
  assert.equal(running.length, drainMovesInFlight, seen());
  assert.ok(
    running.every((r) => r.kind === 'move' && r.from === 2),
    seen(),
  );
  assert.equal(new Set(running.map((r) => r.range)).size, drainMovesInFlight, seen());
  assert.deepEqual(loop.status().current, running[0]);
  // A fifth move is planned and waits for a place: there is a step to take.
  assert.equal(loop.status().ready, true, seen());
  // One done: the next starts, still at most four.
  (waiting.shift() as () => void)();
  await until(seen, () => c.calls.length === before + drainMovesInFlight + 1, 5_000);
  assert.equal(loop.status().running.length, drainMovesInFlight, seen());
  // The rest go as they come.
  c.gate = null;
  for (const go of waiting.splice(0)) go();
  await round;
  await settle(loop, c, clock);
  assert.deepEqual(c.refused, []);
  assert.deepEqual(placementProblems(c, 3), []);
  assert.deepEqual(loop.status().running, []);
  assert.equal(c.maxInFlight, drainMovesInFlight);
  // Only drain moves ran beside another step.
  const notDrain = c.overlapped.flat().filter((st) => st.kind !== 'move' || st.from !== 2);
  assert.deepEqual(notDrain, []);
  assert.ok(c.overlapped.length > 0);

  // Undrained, node 2 gets its share back by rebalancing moves: one at a time.
  c.overlapped.length = 0;
  c.maxInFlight = 0;
  c.gate = () => new Promise<void>((resolve) => setImmediate(resolve));
  c.draining = [];
  await settle(loop, c, clock);
  assert.deepEqual(placementProblems(c, 3), []);
  assert.equal(c.maxInFlight, 1);
  assert.deepEqual(c.overlapped, []);
});

void test('a failed drain move starts no more; the moves under way finish first', async () => {
  const clock = new TestClock();
  const c = fourNodesThreeReplicas(16);
  const loop = loopOn(c, clock);
  await settle(loop, c, clock);
  const waiting: (() => void)[] = [];
  c.gate = () => new Promise<void>((resolve) => waiting.push(resolve));
  c.draining = [2];
  const before = c.calls.length;
  const doneBefore = loop.status().stepsDone;
  const round = loop.check();
  const seen = () => JSON.stringify({ calls: c.calls, status: loop.status() });
  await until(seen, () => waiting.length === drainMovesInFlight, 5_000);
  const first = loop.status().running[0] as PlacementStep;
  c.fail = (st) => st.range === first.range;
  (waiting.shift() as () => void)();
  await until(seen, () => loop.status().stepsFailed === 1, 5_000);
  // Three still under way, none started since.
  assert.equal(loop.status().running.length, drainMovesInFlight - 1, seen());
  assert.equal(c.calls.length - before, drainMovesInFlight, seen());
  for (const go of waiting.splice(0)) go();
  await round;
  assert.equal(c.calls.length - before, drainMovesInFlight, seen());
  assert.equal(loop.status().stepsDone - doneBefore, drainMovesInFlight - 1);
  assert.deepEqual(
    loop.status().backingOff.map((b) => b.range),
    [first.range],
  );
  // Stopping aborts every step under way.
  c.gate = null;
  c.fail = () => false;
  c.hang = () => true;
  const next = loop.check();
  await until(seen, () => loop.status().running.length === drainMovesInFlight, 5_000);
  loop.stop();
  await next;
  assert.equal(c.aborted.length, drainMovesInFlight);
  assert.deepEqual(loop.status().running, []);
});

void test('a new member receives its share; a departed member is moved off', async () => {
  const clock = new TestClock();
  const c = new FakeCluster(
    mapOf(12, [1, 2, 3], () => [1, 2, 3]),
    [1, 2, 3],
  );
  const loop = loopOn(c, clock);
  await settle(loop, c, clock);
  assert.equal(c.calls.filter((s) => s.kind !== 'transfer').length, 0);
  c.members = [1, 2, 3, 4];
  await settle(loop, c, clock);
  assert.deepEqual(placementProblems(c, 3), []);
  assert.equal(c.map.ranges().filter((d) => d.replicas.includes(4)).length, 9);
  // Member 1 removed for good (forced while it held replicas): they move to the others.
  c.members = [2, 3, 4];
  await settle(loop, c, clock);
  assert.deepEqual(c.refused, []);
  assert.deepEqual(placementProblems(c, 3), []);
  assert.equal(c.map.ranges().filter((d) => d.id >= 3 && d.replicas.includes(1)).length, 0);
});

void test('count repair: too many and too few replicas, capped by the members', async () => {
  const clock = new TestClock();
  const place = [[1], [1, 2], [1, 2, 3, 4, 5], [2, 5], [1, 2, 3, 4], [3]];
  const c = new FakeCluster(
    mapOf(6, [1, 2, 3, 4, 5], (i) => place[i] as number[]),
    [1, 2, 3, 4, 5],
  );
  const loop = loopOn(c, clock);
  await settle(loop, c, clock);
  assert.deepEqual(c.refused, []);
  assert.deepEqual(placementProblems(c, 3), []);

  // Two members left (the others drained): a plain drain leaves three replicas each, a forced
  // one two, the drained ones removed first.
  c.draining = [3, 4, 5];
  c.forced = [3, 4, 5];
  const steps = c.calls.length;
  await settle(loop, c, clock);
  assert.deepEqual(c.refused, []);
  assert.deepEqual(placementProblems(c, 3), []);
  for (const d of c.map.ranges()) if (d.id >= 3) assert.deepEqual(d.replicas, [1, 2]);
  const removes = c.calls.slice(steps).filter((s) => s.kind === 'remove');
  assert.ok(
    removes.every((s) => s.kind === 'remove' && s.from >= 3),
    JSON.stringify(removes),
  );

  // Planned directly: a range with 5 replicas of which one is on a departed node loses that one.
  const plan = planPlacement({
    map: mapOf(1, [1, 2, 3, 4], () => [1, 2, 3, 4, 9]),
    members: [1, 2, 3, 4],
    draining: [],
    replicasPerRange: 3,
    skip: () => false,
    can: { add: true, remove: true, transfer: true },
  });
  assert.deepEqual(plan.steps[0], { kind: 'remove', range: 3, from: 9, generation: 1 });
});

void test('a drain that would leave ranges with fewer replicas waits, says why, and goes when forced', async () => {
  const clock = new TestClock();
  const c = new FakeCluster(
    mapOf(6, [1, 2, 3], () => [1, 2, 3]),
    [1, 2, 3],
  );
  const loop = loopOn(c, clock);
  await settle(loop, c, clock);
  const before = c.calls.length;

  // Three members, three replicas each: draining one for maintenance takes none away.
  c.draining = [3];
  await settle(loop, c, clock);
  assert.deepEqual(c.refused, []);
  assert.deepEqual(
    c.calls.slice(before).filter((s) => s.kind !== 'transfer'),
    [],
    'no replica moved or removed',
  );
  for (const d of c.map.ranges()) assert.deepEqual(d.replicas, [1, 2, 3], `range ${d.id}`);
  assert.deepEqual(placementProblems(c, 3), []);
  const s = loop.status();
  assert.equal(s.target, 3);
  assert.deepEqual(s.nodes, [1, 2]);
  assert.deepEqual(s.drainBlocked && { ...s.drainBlocked, message: '' }, {
    reason: 'REPLICATION_FACTOR',
    nodes: [3],
    wanted: 3,
    available: 2,
    message: '',
  });
  assert.match(
    s.drainBlocked?.message ?? '',
    /^the drain of node 3 is blocked: ranges keep 3 replicas and only 2 members are not being drained \(1, 2\); .*--force/,
  );

  // Forced: the node is emptied, the ranges left with two replicas; the status says no more.
  c.forced = [3];
  await settle(loop, c, clock);
  assert.deepEqual(c.refused, []);
  for (const d of c.map.ranges()) if (d.id >= 3) assert.deepEqual(d.replicas, [1, 2]);
  assert.equal(loop.status().drainBlocked, null);
  assert.deepEqual(loop.status().forced, [3]);

  // Undrained: the ranges get their third replica back.
  c.draining = [];
  c.forced = [];
  await settle(loop, c, clock);
  for (const d of c.map.ranges()) assert.deepEqual(d.replicas, [1, 2, 3], `range ${d.id}`);
});

void test('a blocked drain still moves what it can: onto a live member lacking the range', async () => {
  const clock = new TestClock();
  const c = fourNodesThreeReplicas(8);
  c.draining = [3, 4];
  const loop = loopOn(c, clock);
  const counts = countsOf(c.map);
  await settle(loop, c, clock);
  assert.deepEqual(c.refused, []);
  assert.deepEqual(countsOf(c.map), counts, 'every range keeps its three replicas');
  assert.deepEqual(placementProblems(c, 3), []);
  for (const d of c.map.ranges())
    if (d.id >= 3) assert.ok(d.replicas.includes(1) && d.replicas.includes(2), `range ${d.id}`);
  assert.deepEqual(loop.status().drainBlocked?.nodes, [3, 4]);
  assert.ok(c.calls.every((s) => s.kind === 'move' || s.kind === 'transfer'));
});

void test('a failing step backs off, doubling, while other ranges go on; then it is retried', async () => {
  const clock = new TestClock();
  const c = new FakeCluster(
    mapOf(4, [1, 2, 3, 4], () => [1, 2, 3]),
    [1, 2, 3, 4],
  );
  c.draining = [3];
  let failuresLeft = 3;
  c.fail = (s) => s.range === 3 && failuresLeft-- > 0;
  const loop = loopOn(c, clock, { everyMs: 1_000 });
  await loop.check();
  // Range 3 failed once; the round started nothing after (the drain moves that started beside
  // it finished).
  assert.deepEqual(loop.status().backingOff, [{ range: 3, failures: 1, retryAtMs: 2_000 }]);
  assert.equal(loop.status().stepsFailed, 1);
  await loop.check();
  // The others moved off node 3; range 3 waits.
  assert.deepEqual(
    c.map
      .ranges()
      .filter((d) => d.replicas.includes(3))
      .map((d) => d.id),
    [0, 3],
  );
  const triesOf3 = () => c.calls.filter((s) => s.range === 3 && s.kind === 'move').length;
  assert.equal(triesOf3(), 1);
  clock.advance(1_999);
  await loop.check();
  assert.equal(triesOf3(), 1, 'not before its retry time');
  clock.advance(1);
  await loop.check();
  assert.equal(triesOf3(), 2);
  assert.equal(loop.status().last?.outcome, 'failed');
  assert.match(loop.status().last?.error ?? '', /planted failure of range 3/);
  assert.deepEqual(
    loop.status().backingOff.map((b) => [b.range, b.failures, b.retryAtMs - clock.now]),
    [[3, 2, 4_000]],
  );
  clock.advance(4_000);
  await loop.check();
  assert.deepEqual(
    loop.status().backingOff.map((b) => [b.failures, b.retryAtMs - clock.now]),
    [[3, 8_000]],
  );
  clock.advance(8_000);
  await loop.check();
  assert.equal(triesOf3(), 4);
  assert.deepEqual(loop.status().backingOff, []);
  assert.equal(c.map.ranges().filter((d) => d.id >= 3 && d.replicas.includes(3)).length, 0);
  assert.equal(loop.status().stepsFailed, 3);
});

void test('a step that hangs is abandoned at its timeout, and when this node stops leading', async () => {
  const clock = new TestClock();
  const c = new FakeCluster(
    mapOf(2, [1, 2, 3, 4], () => [1, 2, 3]),
    [1, 2, 3, 4],
  );
  c.draining = [1];
  c.hang = (s) => s.range === 3;
  const loop = loopOn(c, clock, { stepTimeoutMs: 5_000 });
  const round = loop.check();
  await new Promise((r) => setImmediate(r));
  assert.equal(loop.status().current?.range, 3);
  clock.advance(5_000);
  await round;
  assert.equal(c.aborted.length, 1);
  assert.match(loop.status().last?.error ?? '', /longer than 5000 ms/);

  // Range 4 moved beside it. Range 3 again once its back-off is over; it hangs again, and this
  // node loses the meta group's leadership.
  assert.deepEqual(
    c.calls.map((s) => s.range),
    [3, 4],
  );
  clock.advance(2_000);
  const next = loop.check();
  await new Promise((r) => setImmediate(r));
  assert.equal(loop.status().current?.range, 3);
  c.leads = false;
  await loop.check();
  await next;
  assert.equal(c.aborted.length, 2);
  assert.match(loop.status().last?.error ?? '', /no longer leads the meta group/);
  assert.equal(loop.status().active, false);
  // Not leading, it plans nothing.
  const calls = c.calls.length;
  await loop.check();
  assert.equal(c.calls.length, calls);
});

void test('ranges in flux are left alone; so is everything when off or not leading', async () => {
  const clock = new TestClock();
  const c = new FakeCluster(
    mapOf(3, [1, 2, 3, 4], () => [1, 2, 3]),
    [1, 2, 3, 4],
  );
  c.draining = [2];
  // This node's replica of range 4 applied generation 2; the map still says 1.
  const loop = loopOn(c, clock, { localGeneration: (id) => (id === 4 ? 2 : 1) });
  for (let i = 0; i < 5; i++) {
    await loop.check();
    clock.advance(1_000);
  }
  assert.equal(loop.status().pending, 1, 'the move of range 4 stays planned, not carried out');
  assert.equal(loop.status().ready, false, 'said ready to take a step it holds back');
  assert.deepEqual(
    c.map
      .ranges()
      .filter((d) => d.replicas.includes(2))
      .map((d) => d.id),
    [0, 4],
  );
  const off = loopOn(c, clock, { enabled: false });
  const calls = c.calls.length;
  await off.check();
  assert.equal(c.calls.length, calls);
  assert.equal(off.status().enabled, false);
  c.leads = false;
  await loopOn(c, clock).check();
  assert.equal(c.calls.length, calls);
});

void test('without add and remove, count repair is reported blocked and the rest goes on', async () => {
  const clock = new TestClock();
  const c = new FakeCluster(
    mapOf(4, [1, 2, 3, 4], (i) => (i === 0 ? [1, 2, 3, 4] : [1, 2, 3])),
    [1, 2, 3, 4],
  );
  c.draining = [1];
  const moveOnly: PlacementExecutor = { move: (r, f, t, s) => c.move(r, f, t, s) };
  const loop = loopOn(c, clock, { executor: moveOnly });
  await settle(loop, c, clock);
  assert.deepEqual(loop.status().blocked, [
    'range 3 has 4 replicas, 3 wanted: removing one is not available',
  ]);
  assert.deepEqual(
    c.map
      .ranges()
      .filter((d) => d.replicas.includes(1))
      .map((d) => d.id),
    [0, 3],
  );
});

void test('planted: an executor that says done and does nothing leaves problems the checker names', async () => {
  const clock = new TestClock();
  const c = new FakeCluster(
    mapOf(6, [1, 2, 3, 4], () => [1, 2, 3]),
    [1, 2, 3, 4],
  );
  c.draining = [3];
  c.noop = true;
  const loop = loopOn(c, clock);
  // The loop keeps asking (each range again once its wait for the map ran out), bounded here.
  for (let i = 0; i < 30; i++) {
    await loop.check();
    clock.advance(1_000);
  }
  const problems = placementProblems(c, 3);
  assert.ok(
    problems.some((p) => /range 3 has a replica on 3, not live/.test(p)),
    problems.join('; '),
  );
  assert.ok(c.calls.filter((s) => s.range === 3).length >= 2, 'asked again after the wait');
});

void test('by property: from any placement, the loop settles where the checker finds nothing', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 1, max: 7 }),
      fc.array(fc.array(fc.integer({ min: 1, max: 9 }), { minLength: 1, maxLength: 6 }), {
        minLength: 1,
        maxLength: 25,
      }),
      fc.array(fc.integer({ min: 1, max: 7 }), { maxLength: 3 }),
      fc.integer({ min: 1, max: 5 }),
      fc.array(fc.integer({ min: 1, max: 7 }), { maxLength: 2 }),
      async (memberCount, places, drainList, replicasPerRange, forceList) => {
        const members = Array.from({ length: memberCount }, (_, i) => i + 1);
        const c = new FakeCluster(
          mapOf(places.length, members, (i) => [...new Set(places[i])]),
          members,
        );
        c.draining = [...new Set(drainList)].filter((n) => n <= memberCount);
        c.forced = c.draining.filter((n) => forceList.includes(n));
        const clock = new TestClock();
        const loop = loopOn(c, clock, { replicasPerRange });
        const before = countsOf(c.map);
        await settle(loop, c, clock, 400);
        assert.deepEqual(c.refused, []);
        // Unless forced, no range ends with fewer replicas than it had and than it should have.
        const want = Math.min(replicasPerRange, memberCount - c.forced.length);
        for (const [id, n] of countsOf(c.map))
          assert.ok(
            n >= Math.min(before.get(id) as number, want),
            `range ${id}: ${before.get(id)} replicas, now ${n}, ${want} wanted`,
          );
        if (c.draining.length < memberCount)
          assert.deepEqual(placementProblems(c, replicasPerRange), []);
        else
          assert.deepEqual(loop.status().blocked, [
            'no member that is not being drained: nowhere to place ranges',
          ]);
      },
    ),
    { numRuns: 60, seed: 18 },
  );
});

/** `ranges` ranges on four nodes, three replicas each, placed round the four in turn. */
function fourNodesThreeReplicas(ranges: number): FakeCluster {
  const place = [
    [1, 2, 3],
    [2, 3, 4],
    [1, 3, 4],
    [1, 2, 4],
  ];
  return new FakeCluster(
    mapOf(ranges, [1, 2, 3, 4], (i) => place[i % 4] as number[]),
    [1, 2, 3, 4],
  );
}
