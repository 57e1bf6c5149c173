// The range map's operations one by one: lookups, each change applied, each already-known
// record and each refusal with its code, and the checker on maps broken in every way it names.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compareBytes } from '../../src/kv/kv-store.js';
import { checkRangeMap, RangeMap, type RangeMapChange } from '../../src/ranges/range-map.js';
import type { RangeDescriptor } from '../../src/ranges/types.js';
import { desc, key, plain } from './harness.js';

function applied(change: RangeMapChange): RangeMap {
  assert.equal(change.outcome, 'applied', JSON.stringify(change));
  return (change as { map: RangeMap }).map;
}

function refused(change: RangeMapChange, code: string): string {
  assert.equal(change.outcome, 'refused', JSON.stringify(change));
  const r = change as { code: string; message: string };
  assert.equal(r.code, code, r.message);
  return r.message;
}

function known(change: RangeMapChange): string {
  assert.equal(change.outcome, 'known', JSON.stringify(change));
  return (change as { message: string }).message;
}

const ids = (ds: readonly RangeDescriptor[]): number[] => ds.map((d) => d.id);

/** [-inf, "g") 0, ["g", "p") 3, ["p", +inf) 4, each at generation 1 or 2. */
function threeRanges(): RangeMap {
  let m = RangeMap.bootstrap([1, 2, 3]);
  m = applied(m.recordSplit(desc(0, '', 'g', 1), desc(3, 'g', null, 1)));
  return applied(m.recordSplit(desc(3, 'g', 'p', 2), desc(4, 'p', null, 2)));
}

void test('the first map is one range over the whole key space', () => {
  const m = RangeMap.bootstrap([1, 2, 3]);
  assert.equal(m.version, 1);
  assert.deepEqual(checkRangeMap(m), []);
  assert.deepEqual(m.ranges().map(plain), [plain(desc(0, '', null, 0))]);
  for (const k of ['', 'a', '\u00ff\u00ff']) assert.equal(m.lookup(key(k))?.id, 0);
  assert.throws(() => RangeMap.bootstrap([2, 1]), /not ascending/);
  assert.throws(() => RangeMap.bootstrap([]), /at least one replica/);
});

void test('lookup and spanning find the ranges by key, ends exclusive', () => {
  const m = threeRanges();
  assert.equal(m.version, 3);
  assert.deepEqual(checkRangeMap(m), []);
  const at = (k: string) => m.lookup(key(k))?.id;
  assert.deepEqual(['', 'a', 'f\u00ff', 'g', 'o', 'p', 'zz'].map(at), [0, 0, 0, 3, 3, 4, 4]);
  assert.deepEqual(ids(m.spanning(key('a'), key('g'))), [0]);
  assert.deepEqual(ids(m.spanning(key('a'), key('g\u0000'))), [0, 3]);
  assert.deepEqual(ids(m.spanning(key('g'), key('p'))), [3]);
  assert.deepEqual(ids(m.spanning(key('h'), null)), [3, 4]);
  assert.deepEqual(ids(m.spanning(new Uint8Array(0), null)), [0, 3, 4]);
  assert.deepEqual(ids(m.spanning(key('q'), key('q'))), [], 'an empty interval touches nothing');
  assert.equal(m.get(4)?.start[0], 0x70);
  assert.equal(m.get(7), undefined);
});

void test('lookup by binary search agrees with a scan over a thousand ranges', () => {
  let m = RangeMap.bootstrap([1, 2, 3]);
  // Split the last range again and again at increasing keys.
  for (let i = 1; i <= 1_000; i++) {
    const last = m.ranges()[m.size - 1] as RangeDescriptor;
    const at = `k${String(i * 7).padStart(5, '0')}`;
    const g = last.generation + 1;
    m = applied(m.recordSplit({ ...last, end: key(at), generation: g }, desc(i + 2, at, null, g)));
  }
  assert.equal(m.size, 1_001);
  assert.deepEqual(checkRangeMap(m), []);
  for (let probe = 0; probe < 8_000; probe += 13) {
    const k = key(`k${String(probe).padStart(5, '0')}`);
    const scanned = m
      .ranges()
      .filter(
        (d) => compareBytes(d.start, k) <= 0 && (d.end === null || compareBytes(k, d.end) < 0),
      );
    assert.equal(scanned.length, 1);
    assert.equal(m.lookup(k)?.id, scanned[0]?.id);
  }
});

void test('a split is recorded once; the same or an older one again is already known', () => {
  const m0 = RangeMap.bootstrap([1, 2, 3]);
  const m1 = applied(m0.recordSplit(desc(0, '', 'm', 1), desc(3, 'm', null, 1)));
  assert.equal(m1.version, 2);
  assert.equal(m0.size, 1, 'the old map is unchanged');
  assert.match(known(m1.recordSplit(desc(0, '', 'm', 1), desc(3, 'm', null, 1))), /Already known/);
  const m2 = applied(m1.recordReplicas(desc(0, '', 'm', 2, [1, 2, 4])));
  // The split again, after a later change to the range: known, and the replicas stay.
  known(m2.recordSplit(desc(0, '', 'm', 1), desc(3, 'm', null, 1)));
  assert.deepEqual(m2.get(0)?.replicas, [1, 2, 4]);
});

void test('a split onto a subset of the left range replicas is recorded with the replicas of each half', () => {
  const m0 = RangeMap.bootstrap([1, 2, 3, 4]);
  const m1 = applied(
    m0.recordSplit(desc(0, '', 'm', 1, [1, 2, 3, 4]), desc(3, 'm', null, 1, [1, 2, 3])),
  );
  assert.deepEqual(m1.get(0)?.replicas, [1, 2, 3, 4]);
  assert.deepEqual(m1.get(3)?.replicas, [1, 2, 3]);
  assert.deepEqual(checkRangeMap(m1), []);
});

void test('a split is refused when the halves are not one split of a known range', () => {
  const m = threeRanges();
  const cases: [RangeDescriptor, RangeDescriptor, string, RegExp][] = [
    [desc(9, 'a', 'b', 3), desc(10, 'b', 'c', 3), 'UNKNOWN_RANGE', /no such range/],
    [desc(3, 'g', 'h', 3), desc(4, 'h', 'p', 3), 'RANGE_EXISTS', /already holds range 4/],
    [desc(0, '', 'c', 2), desc(5, 'd', 'g', 2), 'BAD_DESCRIPTOR', /does not end where/],
    [desc(0, '', 'c', 2), desc(5, 'c', 'g', 3), 'BAD_DESCRIPTOR', /generations/],
    [desc(0, '', 'c', 0), desc(5, 'c', 'g', 0), 'BAD_DESCRIPTOR', /generations/],
    [desc(0, '', 'c', 2), desc(2, 'c', 'g', 2), 'BAD_DESCRIPTOR', /not one the meta group/],
    [desc(0, '', 'c', 2), desc(5, 'c', 'g', 2, [1, 2, 4]), 'BAD_DESCRIPTOR', /not among the left/],
    [desc(0, '', 'c', 2, [3, 1]), desc(5, 'c', 'g', 2, [3, 1]), 'BAD_DESCRIPTOR', /ascending/],
    [desc(0, 'c', 'c', 2), desc(5, 'c', 'g', 2), 'BAD_DESCRIPTOR', /start is not below its end/],
    // Range 0 split at "c" after an unrecorded split at "e": the halves do not reach "g".
    [desc(0, '', 'c', 3), desc(5, 'c', 'e', 3), 'NOT_CONTIGUOUS', /not recorded yet/],
  ];
  for (const [left, right, code, message] of cases) {
    assert.match(refused(m.recordSplit(left, right), code), message);
  }
  assert.equal(m.version, 3);
});

void test('a replica change is recorded when newer and of the same bounds', () => {
  const m = threeRanges();
  const m2 = applied(m.recordReplicas(desc(3, 'g', 'p', 3, [2, 4, 5])));
  assert.equal(m2.version, 4);
  assert.deepEqual(m2.get(3)?.replicas, [2, 4, 5]);
  assert.deepEqual(m.get(3)?.replicas, [1, 2, 3], 'the old map is unchanged');
  known(m2.recordReplicas(desc(3, 'g', 'p', 3, [1, 2, 3])));
  known(m2.recordReplicas(desc(3, 'g', 'p', 2, [1, 2, 3])));
  assert.deepEqual(m2.get(3)?.replicas, [2, 4, 5]);
  refused(m2.recordReplicas(desc(8, 'g', 'p', 5)), 'UNKNOWN_RANGE');
  assert.match(refused(m2.recordReplicas(desc(3, 'g', 'k', 5)), 'NOT_CONTIGUOUS'), /split/);
  refused(m2.recordReplicas(desc(3, 'g', 'p', 5, [])), 'BAD_DESCRIPTOR');
  refused(m2.recordReplicas(desc(3, 'g', 'p', 5, [0, 1])), 'BAD_DESCRIPTOR');
  refused(m2.recordReplicas(desc(3, 'g', 'p', -1)), 'BAD_DESCRIPTOR');
});

void test('the map keeps its own copies of what it is given', () => {
  const left = desc(0, '', 'm', 1);
  const right = { ...desc(3, 'm', null, 1), replicas: [1, 2, 3] };
  const m = applied(RangeMap.bootstrap([1, 2, 3]).recordSplit(left, right));
  (left.end as Uint8Array)[0] = 0x7a;
  right.replicas.push(9);
  assert.deepEqual(m.ranges().map(plain), [
    plain(desc(0, '', 'm', 1)),
    plain(desc(3, 'm', null, 1)),
  ]);
  assert.throws(() => (m.get(3)?.replicas as number[]).push(4));
  assert.throws(() => (m.ranges() as RangeDescriptor[]).pop());
});

void test('checkRangeMap names every way a map can be broken', () => {
  const m = threeRanges();
  const broken = (at: number, count: number, ds: RangeDescriptor[]) =>
    checkRangeMap(m.spliced(at, count, ds));
  const cases: [string[], RegExp][] = [
    [broken(0, 3, []), /holds no range/],
    [broken(0, 1, [desc(0, 'a', 'g', 1)]), /first range starts at "a"/],
    [broken(1, 1, [desc(3, 'h', 'p', 2)]), /gap between range 0/],
    [broken(1, 1, [desc(3, 'f', 'p', 2)]), /range 0 .* overlaps range 3/],
    [broken(2, 1, [desc(4, 'p', 'z', 2)]), /last range.*does not reach the end/],
    [broken(1, 1, [desc(4, 'g', 'p', 2)]), /range id 4 appears twice/],
    [broken(1, 1, [desc(3, 'g', null, 2)]), /reaches the end but range 4 /],
    [broken(1, 1, [desc(3, 'g', 'g', 2)]), /start is not below its end/],
    [broken(1, 1, [desc(3, 'g', 'p', 2, [2, 2, 3])]), /not ascending and unique/],
  ];
  for (const [problems, expected] of cases) {
    assert.ok(
      problems.some((p) => expected.test(p)),
      `expected ${expected} in ${JSON.stringify(problems)}`,
    );
  }
});

void test('a map from descriptors is checked before it is used', () => {
  const good = threeRanges().ranges();
  assert.equal(RangeMap.fromDescriptors(7, good).version, 7);
  assert.throws(
    () => RangeMap.fromDescriptors(7, [good[0] as RangeDescriptor, good[2] as RangeDescriptor]),
    /gap/,
  );
  assert.throws(() => RangeMap.fromDescriptors(0, good), /positive integer/);
  const notBytes = { ...desc(0, '', null, 0), start: 5 as unknown as Uint8Array };
  assert.throws(() => RangeMap.fromDescriptors(1, [notBytes]), /start is not bytes/);
});
