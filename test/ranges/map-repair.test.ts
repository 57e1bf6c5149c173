// The map's repair by each range's leader (src/ranges/map-repair.ts). Cases: a replica change
// whose record was lost, a split never recorded, a map newer than the range (nothing is sent,
// and a stale record sent anyway changes nothing). By property: ranges split and change
// replicas, each record reaching the map or lost; then every range's leader repeats its repair
// in any order, and the map must end exactly what the ranges say, and stay so when every old
// record arrives again late. A planted repair that never records a split is caught by the same
// property.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { nextMapRecord, type MapRecord } from '../../src/ranges/map-repair.js';
import { checkRangeMap, type RangeMap, type RangeMapChange } from '../../src/ranges/range-map.js';
import type { RangeDescriptor } from '../../src/ranges/types.js';
import { desc, plain, RangeLogs, type RangeEvent } from './harness.js';

function apply(map: RangeMap, r: MapRecord): RangeMapChange | null {
  if (r.kind === 'split') return map.recordSplit(r.left, r.right);
  if (r.kind === 'replicas') return map.recordReplicas(r.range);
  return null;
}

function deliver(map: RangeMap, e: RangeEvent): RangeMap {
  const c = e.kind === 'split' ? map.recordSplit(e.left, e.right) : map.recordReplicas(e.range);
  return c.outcome === 'applied' ? c.map : map;
}

/** The children each range's log kept: every split's right half, by the left's id. */
function childrenOf(events: readonly RangeEvent[], id: number): RangeDescriptor[] {
  return events.flatMap((e) => (e.kind === 'split' && e.left.id === id ? [e.right] : []));
}

void test('a replica change the map missed is recorded from the range descriptor', () => {
  const logs = new RangeLogs();
  let map = deliver(logs.bootstrapMap(), logs.split(new TextEncoder().encode('m')) as RangeEvent);
  const lost = logs.changeReplicas(1, [2, 3, 4]);
  assert.equal(lost.kind, 'replicas');
  const own = logs.ranges[1] as RangeDescriptor;
  const r = nextMapRecord(own, [], map.get(own.id));
  assert.deepEqual(r, { kind: 'replicas', range: own });
  const c = apply(map, r);
  assert.equal(c?.outcome, 'applied');
  if (c?.outcome === 'applied') map = c.map;
  assert.deepEqual(plain(map.get(own.id) as RangeDescriptor), plain(own));
  assert.deepEqual(nextMapRecord(own, [], map.get(own.id)), { kind: 'none' });
});

void test('a split never recorded is recorded, then its child repairs itself', () => {
  const logs = new RangeLogs();
  let map = logs.bootstrapMap();
  logs.split(new TextEncoder().encode('m'));
  logs.changeReplicas(1, [2, 3, 4]);
  const [left, right] = logs.ranges as [RangeDescriptor, RangeDescriptor];
  // The child is not in the map: its leader waits for the parent's.
  assert.equal(nextMapRecord(right, [], map.get(right.id)).kind, 'wait');
  const r = nextMapRecord(left, childrenOf(logs.events, 0), map.get(0));
  assert.equal(r.kind, 'split');
  map = (apply(map, r) as { map: RangeMap }).map;
  assert.deepEqual(plain(map.get(0) as RangeDescriptor), plain(left));
  assert.equal(map.get(right.id)?.generation, 1);
  const r2 = nextMapRecord(right, [], map.get(right.id));
  assert.deepEqual(r2, { kind: 'replicas', range: right });
  map = (apply(map, r2) as { map: RangeMap }).map;
  assert.deepEqual(checkRangeMap(map), []);
  assert.deepEqual(map.ranges().map(plain), logs.ranges.map(plain));
});

void test('a map newer than the range gets nothing, and an older record sent anyway is known', () => {
  const logs = new RangeLogs();
  const older = logs.changeReplicas(0, [1, 2, 4]) as { range: RangeDescriptor };
  const newer = logs.changeReplicas(0, [2, 3, 4]) as { range: RangeDescriptor };
  const map = deliver(deliver(logs.bootstrapMap(), { kind: 'replicas', range: older.range }), {
    kind: 'replicas',
    range: newer.range,
  });
  // A leader lagging behind (it applied only the older change) sends nothing.
  assert.deepEqual(nextMapRecord(older.range, [], map.get(0)), { kind: 'none' });
  const c = map.recordReplicas(older.range);
  assert.equal(c.outcome, 'known');
  assert.deepEqual(plain(map.get(0) as RangeDescriptor), plain(newer.range));
  // An older split record too: the map holds range 0 at a later generation.
  const stale = nextMapRecord(desc(0, '', null, 1), [], map.get(0));
  assert.deepEqual(stale, { kind: 'none' });
});

type Repair = typeof nextMapRecord;

const keyBytes = fc
  .array(fc.integer({ min: 0x61, max: 0x64 }), { minLength: 1, maxLength: 4 })
  .map((a) => Uint8Array.from(a));

const scenario = fc.record({
  steps: fc.array(
    fc.record({
      change: fc.oneof(
        { weight: 3, arbitrary: keyBytes.map((split) => ({ split })) },
        {
          weight: 2,
          arbitrary: fc.record({
            which: fc.nat(50),
            replicas: fc
              .subarray([1, 2, 3, 4, 5, 6], { minLength: 3, maxLength: 3 })
              .map((r) => [...r].sort((a, b) => a - b)),
          }),
        },
      ),
      recorded: fc.boolean(),
    }),
    { minLength: 1, maxLength: 60, size: 'max' },
  ),
  order: fc.array(fc.nat(1_000), { minLength: 1, maxLength: 20 }),
});

type Scenario = typeof scenario extends fc.Arbitrary<infer T> ? T : never;

/** Runs a scenario; answers what is wrong with the map after the repair (empty: nothing). */
function runScenario(s: Scenario, repair: Repair): string[] {
  const logs = new RangeLogs();
  let map = logs.bootstrapMap();
  for (const step of s.steps) {
    const e =
      'split' in step.change
        ? logs.split(step.change.split)
        : logs.changeReplicas(step.change.which, step.change.replicas);
    if (e !== null && step.recorded) map = deliver(map, e);
  }
  // Each round, every range's leader repairs once, in an order the scenario picks; a round
  // that changes nothing ends it. Every round records at least one generation step, so the
  // number of events bounds the rounds.
  const bound = logs.events.length + 2;
  for (let round = 0; round < bound; round++) {
    const ranges = [...logs.ranges];
    const pick = s.order[round % s.order.length] as number;
    const start = pick % ranges.length;
    const before = map.version;
    for (let i = 0; i < ranges.length; i++) {
      const own = ranges[(start + i) % ranges.length] as RangeDescriptor;
      const c = apply(map, repair(own, childrenOf(logs.events, own.id), map.get(own.id)));
      if (c?.outcome === 'applied') map = c.map;
    }
    if (map.version === before) break;
  }
  const problems = checkRangeMap(map);
  const got = JSON.stringify(map.ranges().map(plain));
  const want = JSON.stringify(logs.ranges.map(plain));
  if (got !== want) problems.push(`the map holds ${got}, the ranges say ${want}`);
  // Every record again, late, newest first: the map must not go back.
  const version = map.version;
  for (const e of [...logs.events].reverse()) map = deliver(map, e);
  if (map.version !== version) problems.push('an old record changed the repaired map');
  return problems;
}

void test('by property: the leaders repair the map to exactly what the ranges say', () => {
  fc.assert(
    fc.property(scenario, (s) => {
      assert.deepEqual(runScenario(s, nextMapRecord), []);
    }),
    { numRuns: 300 },
  );
});

void test('by property: a planted repair that never records a split is caught', () => {
  const noSplits: Repair = (own, children, held) => {
    const r = nextMapRecord(own, children, held);
    return r.kind === 'split' ? { kind: 'none' } : r;
  };
  const out = fc.check(
    fc.property(scenario, (s) => runScenario(s, noSplits).length === 0),
    { numRuns: 300 },
  );
  assert.equal(out.failed, true, 'the property did not see splits left out of the map');
});
