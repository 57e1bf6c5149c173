// The automatic splitter's rules on a hand-moved clock (src/server/range-splitter.ts): which
// range splits, when and where; the cool-down that keeps a range still over a threshold from
// splitting again at once; the check that refuses a split key outside the range (a planted
// wrong choice is caught before anything is proposed); and the load split key against a
// brute-force search. The rates it reads (src/server/range-load.ts) against a steady stream.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { FlotillaError } from '../../src/base/errors.js';
import { compareBytes } from '../../src/kv/kv-store.js';
import type { RangeDescriptor } from '../../src/ranges/types.js';
import { DecayingRate, RangeLoad, writtenKeysKept } from '../../src/server/range-load.js';
import {
  RangeSplitter,
  loadSplitKey,
  minWrittenKeysForLoadSplit,
  splitKeyProblem,
  type AutoSplit,
  type SplitCandidate,
  type SplitThresholds,
} from '../../src/server/range-splitter.js';
import { ManualClock } from '../support/manual-clock.js';

const enc = new TextEncoder();
const dec = new TextDecoder();
const b = (s: string) => enc.encode(s);

/** A range a test describes by hand: its figures are fields the test sets. */
class FakeRange implements SplitCandidate {
  leading = true;
  keyCount = 0;
  byteCount = 0;
  rate = 0;
  written: Uint8Array[] = [];
  constructor(
    readonly id: number,
    public desc: RangeDescriptor,
    /** The range's keys, sorted: its middle key is the first of the upper half. */
    public sortedKeys: string[] = [],
  ) {
    this.keyCount = sortedKeys.length;
  }
  leads(): boolean {
    return this.leading;
  }
  descriptor(): RangeDescriptor {
    return this.desc;
  }
  keys(): number {
    return this.keyCount;
  }
  bytes(): number {
    return this.byteCount;
  }
  writesPerSec(): number {
    return this.rate;
  }
  middleKey(): Uint8Array | null {
    const n = this.sortedKeys.length;
    return n < 2 ? null : b(this.sortedKeys[n >> 1] as string);
  }
  writtenKeys(): readonly Uint8Array[] {
    return this.written;
  }
}

function desc(id: number, start: string, end: string | null): RangeDescriptor {
  return { id, start: b(start), end: end === null ? null : b(end), generation: 0, replicas: [1] };
}

const off: SplitThresholds = {
  keys: 0,
  bytes: 0,
  writesPerSec: 0,
  loadWindowMs: 1_000,
  cooldownMs: 10_000,
};

/** A splitter over `ranges` whose splits are held until the test settles them. */
function harness(
  thresholds: Partial<SplitThresholds>,
  ranges: FakeRange[],
  o: Partial<{ chooseKey: (c: SplitCandidate) => Uint8Array | null }> = {},
) {
  const clock = new ManualClock();
  const calls: { range: number; key: string; settle: (right: number | Error) => void }[] = [];
  const splits: { s: AutoSplit; right?: number; error?: string }[] = [];
  const skips: { range: number; why: string }[] = [];
  const splitter = new RangeSplitter({
    clock,
    checkEveryMs: 1_000,
    thresholds: { ...off, ...thresholds },
    ranges: () => ranges,
    split: (range, key) =>
      new Promise((resolve, reject) =>
        calls.push({
          range,
          key: dec.decode(key),
          settle: (r) => (r instanceof Error ? reject(r) : resolve({ right: r })),
        }),
      ),
    onSplit: (s, outcome) =>
      splits.push(
        'right' in outcome ? { s, right: outcome.right } : { s, error: outcome.error.message },
      ),
    onSkip: (s, why) => skips.push({ range: s.range, why }),
    ...(o.chooseKey === undefined ? {} : { chooseKey: o.chooseKey }),
  });
  return { clock, splitter, calls, splits, skips };
}

const settled = () => new Promise((resolve) => setImmediate(resolve));
const keysAZ = (n: number) => Array.from({ length: n }, (_, i) => `k${String(i).padStart(3, '0')}`);

void test('a range past the key threshold splits at its middle key, once, and its halves cool down', async () => {
  const r0 = new FakeRange(0, desc(0, '', null), keysAZ(100));
  const ranges = [r0];
  const h = harness({ keys: 100, cooldownMs: 10_000 }, ranges);
  assert.equal(h.splitter.enabled, true);
  const s = h.splitter.check();
  assert.equal(s?.reason, 'keys');
  assert.deepEqual(
    h.calls.map((c) => [c.range, c.key]),
    [[0, 'k050']],
  );
  // While the split runs, nothing else starts, however often the splitter looks.
  for (let i = 0; i < 5; i++) {
    h.clock.now += 1_000;
    assert.equal(h.splitter.check(), null);
  }
  assert.equal(h.splitter.splitting, true);
  // The split applied: the left half holds 50 keys, the right half (range 7) 50.
  const right = new FakeRange(7, desc(7, 'k050', null), keysAZ(100).slice(50));
  r0.desc = desc(0, '', 'k050');
  r0.sortedKeys = keysAZ(50);
  r0.keyCount = 50;
  h.calls[0]?.settle(7);
  await settled();
  assert.equal(h.splits[0]?.right, 7);
  assert.equal(h.splitter.splitting, false);
  // Both halves grow past the threshold at once: the cool-down holds them (no split storm).
  ranges.push(right);
  const h2calls = h.calls.length;
  r0.keyCount = right.keyCount = 500;
  for (let t = 0; t < 9_000; t += 1_000) {
    h.clock.now += 1_000;
    assert.equal(h.splitter.check(), null, `no split ${t} ms after the last`);
  }
  assert.equal(h.calls.length, h2calls);
  // Past the cool-down, one of them splits (one at a time per node).
  h.clock.now += 2_000;
  assert.notEqual(h.splitter.check(), null);
  assert.equal(h.calls.length, h2calls + 1);
  assert.equal(h.splitter.check(), null, 'one split at a time');
});

void test('a split another node made cools down here too: the new range, and the range whose generation changed', () => {
  const r5 = new FakeRange(5, desc(5, 'a', null), keysAZ(10));
  r5.leading = false;
  const ranges = [r5];
  const h = harness({ keys: 10, cooldownMs: 10_000 }, ranges);
  assert.equal(h.splitter.check(), null, 'led elsewhere');
  // Another node split range 5 (generation 1) into 5 and 9; then this node came to lead both,
  // each still over the threshold.
  h.clock.now += 1_000;
  r5.desc = { ...desc(5, 'a', 'k050'), generation: 1 };
  const r9 = new FakeRange(9, { ...desc(9, 'k050', null), generation: 1 }, keysAZ(60).slice(50));
  ranges.push(r9);
  r5.leading = r9.leading = true;
  for (let t = 0; t < 9; t++) {
    assert.equal(h.splitter.check(), null, `${t + 1} s after the split seen`);
    h.clock.now += 1_000;
  }
  h.clock.now += 1_000;
  assert.notEqual(h.splitter.check(), null, 'after the cool-down');
  assert.equal(h.calls.length, 1);
  assert.equal(h.skips.length, 0);
});

void test('a range this node does not lead, below every threshold, or with every rule off does not split', () => {
  const r = new FakeRange(3, desc(3, 'a', 'z'), ['b', 'c', 'd']);
  r.leading = false;
  r.byteCount = 1_000;
  const h = harness({ keys: 3, bytes: 1_000 }, [r]);
  assert.equal(h.splitter.check(), null, 'not the leader');
  r.leading = true;
  r.keyCount = 2;
  r.byteCount = 999;
  assert.equal(h.splitter.check(), null, 'below both');
  r.byteCount = 1_000;
  assert.equal(h.splitter.check()?.reason, 'bytes');
  assert.deepEqual(h.calls[0]?.key, 'c');
  const none = harness({}, [r]);
  assert.equal(none.splitter.enabled, false);
  r.keyCount = 1e9;
  assert.equal(none.splitter.check(), null);
});

void test('load: writes must stay above the threshold for the window, then split at the middle of the written keys', () => {
  const r = new FakeRange(0, desc(0, '', null), keysAZ(10));
  r.written = keysAZ(40).map(b);
  const h = harness({ writesPerSec: 100, loadWindowMs: 3_000 }, [r]);
  r.rate = 150;
  assert.equal(h.splitter.check(), null);
  h.clock.now += 2_000;
  assert.equal(h.splitter.check(), null, '2 s above a 3 s window');
  r.rate = 50;
  h.clock.now += 1_000;
  assert.equal(h.splitter.check(), null, 'dropped below: the window starts again');
  r.rate = 150;
  h.clock.now += 1_000;
  assert.equal(h.splitter.check(), null);
  h.clock.now += 3_000;
  const s = h.splitter.check();
  assert.equal(s?.reason, 'load');
  // 40 written keys k000..k039: 20 below k020, 20 from it on.
  assert.equal(h.calls[0]?.key, 'k020');
});

void test('load on one key is not split, and the range is left alone for the cool-down; too few written keys is no verdict', () => {
  const r = new FakeRange(0, desc(0, '', null), keysAZ(10));
  r.rate = 500;
  r.written = Array.from({ length: 5 }, () => b('hot'));
  const h = harness({ writesPerSec: 100, loadWindowMs: 1_000, cooldownMs: 10_000 }, [r]);
  h.splitter.check();
  h.clock.now += 1_000;
  assert.equal(h.splitter.check(), null, 'five written keys say too little');
  assert.equal(h.skips.length, 0);
  r.written = [...Array.from({ length: 60 }, () => b('hot')), b('a'), b('z')];
  h.clock.now += 1_000;
  assert.equal(h.splitter.check(), null);
  assert.equal(h.skips.length, 1);
  assert.match(h.skips[0]?.why ?? '', /one key/);
  h.clock.now += 5_000;
  h.splitter.check();
  assert.equal(h.skips.length, 1, 'the cool-down holds the range');
  h.clock.now += 6_000;
  h.splitter.check();
  assert.equal(h.skips.length, 2, 'looked at again after the cool-down');
  assert.equal(h.calls.length, 0);
});

void test('planted: a split key at the range start or outside the range is refused before anything is proposed', () => {
  for (const [planted, why] of [
    ['m', /at or below the range's start/],
    ['a', /at or below the range's start/],
    ['t', /past the range's end/],
    ['zz', /past the range's end/],
  ] as const) {
    const r = new FakeRange(4, desc(4, 'm', 't'), ['n', 'o', 'p']);
    const h = harness({ keys: 3 }, [r], { chooseKey: () => b(planted) });
    assert.equal(h.splitter.check(), null, planted);
    assert.equal(h.calls.length, 0, `no split proposed at ${planted}`);
    assert.match(h.skips[0]?.why ?? '', why);
  }
  // The same check lets a key strictly inside through.
  const r = new FakeRange(4, desc(4, 'm', 't'), ['n', 'o', 'p']);
  const h = harness({ keys: 3 }, [r], { chooseKey: () => b('m\u0000') });
  assert.notEqual(h.splitter.check(), null);
  assert.equal(h.calls[0]?.key, 'm\u0000');
  assert.equal(splitKeyProblem(desc(0, '', null), b('x')), null);
  assert.notEqual(splitKeyProblem(desc(0, '', null), b('')), null);
});

void test('a failed split is logged and the range waits for its cool-down', async () => {
  const r = new FakeRange(0, desc(0, '', null), keysAZ(10));
  const h = harness({ keys: 10, cooldownMs: 5_000 }, [r]);
  h.splitter.check();
  h.calls[0]?.settle(new Error('NOT_LEADER'));
  await settled();
  assert.equal(h.splits[0]?.error, 'NOT_LEADER');
  h.clock.now += 4_000;
  assert.equal(h.splitter.check(), null);
  h.clock.now += 1_000;
  assert.notEqual(h.splitter.check(), null);
  // A split held back while the range's replicas change (RANGE_CHANGE_IN_PROGRESS) is a failed
  // split like any other: the range waits for its cool-down again.
  h.calls[1]?.settle(new FlotillaError('RANGE_CHANGE_IN_PROGRESS', 'Cannot split range 0'));
  await settled();
  assert.equal(h.splits[1]?.error, 'Cannot split range 0');
  h.clock.now += 4_000;
  assert.equal(h.splitter.check(), null, 'still cooling down after the refusal');
  h.clock.now += 1_000;
  assert.notEqual(h.splitter.check(), null);
});

/** The brute-force load split key: every written key as K, the most even cut, the smallest K. */
function bruteLoadKey(written: readonly string[]): string | null {
  const n = written.length;
  if (n < minWrittenKeysForLoadSplit) return null;
  let best: { key: string; off: number } | null = null;
  for (const key of [...new Set(written)].sort()) {
    const below = written.filter((w) => w < key).length;
    if (below === 0) continue;
    const off = Math.abs(2 * below - n);
    if (best === null || off < best.off) best = { key, off };
  }
  if (best === null) return null;
  const cut = best.key;
  const below = written.filter((w) => w < cut).length;
  return Math.min(below, n - below) * 4 < n ? null : cut;
}

void test('property: the load split key is the one a brute-force search finds', () => {
  const key = fc.string({ unit: fc.constantFrom('a', 'b', 'c', 'd'), minLength: 1, maxLength: 2 });
  fc.assert(
    fc.property(fc.array(key, { maxLength: 60 }), (written) => {
      const got = loadSplitKey(written.map(b));
      assert.equal(got === null ? null : dec.decode(got), bruteLoadKey(written));
      if (got !== null) {
        const below = written.filter((w) => compareBytes(b(w), got) < 0).length;
        assert.ok(below > 0 && below < written.length);
      }
    }),
    { numRuns: 1_000 },
  );
});

void test('a decaying rate tends to a steady rate whether read often or rarely, and forgets it', () => {
  const clock = new ManualClock();
  const often = new DecayingRate(clock, 5_000);
  const rarely = new DecayingRate(clock, 5_000);
  // 100 events a second for 30 s (six time constants).
  for (let ms = 0; ms < 30_000; ms += 10) {
    clock.now += 10;
    often.add();
    rarely.add();
    often.perSecond();
  }
  const a = often.perSecond();
  const r = rarely.perSecond();
  assert.ok(Math.abs(a - 100) < 1, `read often: ${a}`);
  assert.ok(Math.abs(r - 100) < 1, `read once: ${r}`);
  clock.now += 25_000;
  assert.ok(often.perSecond() < 1, 'five time constants later the rate is under 1% of it');
  assert.throws(() => new DecayingRate(clock, 0), /positive/);
});

void test("a range's load counts no writes for a revision a snapshot brought forward", () => {
  // A replica moved onto a node, or caught up from far behind, installs a snapshot: its revision
  // jumps by every write the range ever had. Before, that jump showed as writes per second
  // (tens per second on an idle range in `flotilla ranges`, for a few time constants) and
  // counted toward a split by load on a leader that had just been handed the range.
  const clock = new ManualClock();
  let revision = 1;
  let restores = 0;
  const load = new RangeLoad({ clock, revision: () => revision, restores: () => restores });
  clock.now += 1_000;
  revision = 5_001;
  restores = 1;
  assert.equal(load.writesPerSec(), 0);
  // Writes applied after it count again.
  for (let s = 0; s < 30; s++) {
    clock.now += 1_000;
    revision += 10;
    load.writesPerSec();
  }
  assert.ok(Math.abs(load.writesPerSec() - 10) < 1, `${load.writesPerSec()}`);
});

void test("a range's load: writes from its revision, reads counted, the latest written keys kept", () => {
  const clock = new ManualClock();
  let revision = 1;
  const load = new RangeLoad({ clock, revision: () => revision });
  for (let s = 0; s < 30; s++) {
    clock.now += 1_000;
    revision += 50;
    for (let i = 0; i < 20; i++) load.read();
    load.writesPerSec();
  }
  assert.ok(Math.abs(load.writesPerSec() - 50) < 1, `${load.writesPerSec()}`);
  assert.ok(Math.abs(load.readsPerSec() - 20) < 1, `${load.readsPerSec()}`);
  // A revision that went back (an older snapshot installed) counts as no writes.
  revision = 1;
  clock.now += 1_000;
  assert.ok(load.writesPerSec() < 50);
  for (let i = 0; i < writtenKeysKept + 10; i++) load.wrote(b(`key${i}${'x'.repeat(100)}`));
  assert.equal(load.writtenKeys().length, writtenKeysKept);
  assert.ok(
    load.writtenKeys().every((k) => k.length === 64),
    'keys kept as 64-byte prefixes',
  );
  assert.ok(load.writtenKeys().some((k) => dec.decode(k).startsWith(`key${writtenKeysKept + 9}x`)));
  assert.ok(!load.writtenKeys().some((k) => dec.decode(k).startsWith('key0x')), 'the oldest went');
  load.forgetWrittenKeys();
  assert.equal(load.writtenKeys().length, 0);
});
