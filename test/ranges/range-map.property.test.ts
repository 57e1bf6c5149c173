// The range map by property: ranges split and change replicas as their own logs would, and the
// records of those changes reach the map late, repeated and in any order, some never. After
// every record the map must cover the key space exactly once (checkRangeMap empty, and every
// probe key held by exactly one range, the one lookup finds), no range's generation may go
// back, and every descriptor the map holds must be one its range really had. Delivering every
// record afterwards, in the order the ranges applied them, must bring the map to exactly what
// the ranges say. Two planted bugs (a split recorded without the contiguity check, a replica
// change taken from an older generation) are caught by this same property.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { compareBytes } from '../../src/kv/kv-store.js';
import { checkRangeMap, type RangeMap, type RangeMapChange } from '../../src/ranges/range-map.js';
import type { RangeDescriptor } from '../../src/ranges/types.js';
import { plain, RangeLogs, type RangeEvent } from './harness.js';

/** The map's two change operations, so that a test can substitute broken ones. */
interface MapOps {
  recordSplit(map: RangeMap, left: RangeDescriptor, right: RangeDescriptor): RangeMapChange;
  recordReplicas(map: RangeMap, d: RangeDescriptor): RangeMapChange;
}

const realOps: MapOps = {
  recordSplit: (m, l, r) => m.recordSplit(l, r),
  recordReplicas: (m, d) => m.recordReplicas(d),
};

const keyBytes = fc
  .array(fc.integer({ min: 0x61, max: 0x64 }), { minLength: 1, maxLength: 4 })
  .map((a) => Uint8Array.from(a));

type Change = { split: Uint8Array } | { replicas: number[]; which: number };

const change: fc.Arbitrary<Change> = fc.oneof(
  { weight: 3, arbitrary: keyBytes.map((split) => ({ split })) },
  {
    weight: 2,
    arbitrary: fc
      .record({
        which: fc.nat(50),
        replicas: fc.subarray([1, 2, 3, 4, 5, 6], { minLength: 3, maxLength: 3 }),
      })
      .map(({ which, replicas }) => ({ which, replicas: [...replicas].sort((a, b) => a - b) })),
  },
);

/** The changes the ranges make, interleaved with deliveries of records picked at random. */
const scenario = fc.record({
  steps: fc.array(
    fc.oneof(
      change.map((c) => ({ change: c })),
      fc.nat(1_000).map((pick) => ({ deliver: pick })),
    ),
    // Lengths spread over the whole span (fast-check keeps arrays short unless told).
    { minLength: 10, maxLength: 120, size: 'max' },
  ),
  probes: fc.array(keyBytes, { minLength: 5, maxLength: 20 }),
});

/** How often each outcome came, so the test can show the scenarios reach every one. */
const outcomes = new Map<string, number>();

function deliver(map: RangeMap, e: RangeEvent, ops: MapOps): RangeMap {
  const c =
    e.kind === 'split' ? ops.recordSplit(map, e.left, e.right) : ops.recordReplicas(map, e.range);
  const tag = `${e.kind} ${c.outcome === 'refused' ? c.code : c.outcome}`;
  outcomes.set(tag, (outcomes.get(tag) ?? 0) + 1);
  return c.outcome === 'applied' ? c.map : map;
}

/** What is wrong with `map` after a record, given the one before it; empty when nothing. */
function problemsOf(
  map: RangeMap,
  before: RangeMap,
  logs: RangeLogs,
  probes: Uint8Array[],
): string[] {
  const problems = checkRangeMap(map);
  for (const k of probes) {
    const holding = map
      .ranges()
      .filter(
        (d) => compareBytes(d.start, k) <= 0 && (d.end === null || compareBytes(k, d.end) < 0),
      );
    if (holding.length !== 1 || map.lookup(k)?.id !== holding[0]?.id)
      problems.push(`key [${[...k].join()}] is held by ${holding.length} ranges`);
  }
  for (const d of map.ranges()) {
    const was = before.get(d.id);
    if (was !== undefined && was.generation > d.generation)
      problems.push(`range ${d.id} went back from generation ${was.generation} to ${d.generation}`);
    const real = logs.history.get(`${d.id}@${d.generation}`);
    if (real === undefined || JSON.stringify(plain(real)) !== JSON.stringify(plain(d)))
      problems.push(`range ${d.id} at generation ${d.generation} is not what its log said`);
  }
  if (map !== before && map.version !== before.version + 1)
    problems.push('version did not grow by one');
  return problems;
}

function property(ops: MapOps) {
  return fc.property(scenario, ({ steps, probes }) => {
    const logs = new RangeLogs();
    let map = logs.bootstrapMap();
    const check = (next: RangeMap, what: string) => {
      const problems = problemsOf(next, map, logs, probes);
      assert.deepEqual(problems, [], what);
      map = next;
    };
    for (const s of steps) {
      if ('change' in s) {
        const c = s.change;
        if ('split' in c) logs.split(c.split);
        else logs.changeReplicas(c.which, c.replicas);
      } else if (logs.events.length > 0) {
        const e = logs.events[s.deliver % logs.events.length] as RangeEvent;
        check(deliver(map, e, ops), `after delivering ${JSON.stringify(e)}`);
      }
    }
    // Catching up: every record, in the order the ranges applied them.
    for (const e of logs.events) check(deliver(map, e, ops), 'while catching up');
    assert.deepEqual(map.ranges().map(plain), logs.ranges.map(plain), 'the map after catching up');
  });
}

void test('records delivered late, repeated and out of order keep the map whole', () => {
  outcomes.clear();
  fc.assert(property(realOps), { numRuns: 400, seed: 18 });
  const reached = [...outcomes.keys()].sort();
  for (const tag of [
    'replicas NOT_CONTIGUOUS',
    'replicas UNKNOWN_RANGE',
    'replicas applied',
    'replicas known',
    'split NOT_CONTIGUOUS',
    'split UNKNOWN_RANGE',
    'split applied',
    'split known',
  ])
    assert.ok(reached.includes(tag), `no delivery ended "${tag}": ${JSON.stringify(reached)}`);
});

void test('planted: a split recorded without the contiguity check is caught', () => {
  const skipsContiguity: MapOps = {
    ...realOps,
    recordSplit: (m, left, right) => {
      const real = m.recordSplit(left, right);
      if (real.outcome !== 'refused' || real.code !== 'NOT_CONTIGUOUS') return real;
      const at = m.ranges().findIndex((d) => d.id === left.id);
      return { outcome: 'applied', map: m.spliced(at, 1, [left, right]) };
    },
  };
  const out = fc.check(property(skipsContiguity), { numRuns: 400, seed: 18 });
  assert.ok(out.failed, 'the property must fail');
  assert.match(String(out.errorInstance), /gap|overlap|held by|does not reach|catching up/);
});

void test('planted: a replica change from an older generation winning is caught', () => {
  const olderWins: MapOps = {
    ...realOps,
    recordReplicas: (m, d) => {
      const real = m.recordReplicas(d);
      if (real.outcome !== 'known') return real;
      const held = m.get(d.id) as RangeDescriptor;
      if (compareBytes(held.start, d.start) !== 0) return real;
      if ((held.end === null) !== (d.end === null)) return real;
      if (held.end !== null && compareBytes(held.end, d.end as Uint8Array) !== 0) return real;
      const at = m.ranges().findIndex((x) => x.id === d.id);
      return { outcome: 'applied', map: m.spliced(at, 1, [d]) };
    },
  };
  const out = fc.check(property(olderWins), { numRuns: 400, seed: 18 });
  assert.ok(out.failed, 'the property must fail');
  assert.match(String(out.errorInstance), /went back from generation/);
});
