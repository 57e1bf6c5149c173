// The chunked key index against the obvious model (a sorted array), with chunks small enough
// that random operations split them, empty them and span several of them in one range.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { SortedKeys } from '../../src/kv/sorted-keys.js';

type Op =
  | { t: 'insert'; key: string }
  | { t: 'remove'; key: string }
  | { t: 'removeRange'; from: string; to: string | null };

const key = fc.string({ unit: fc.constantFrom('a', 'b', 'c', 'd', '\u00ff'), maxLength: 3 });
const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: key.map((k) => ({ t: 'insert' as const, key: k })) },
  { weight: 2, arbitrary: key.map((k) => ({ t: 'remove' as const, key: k })) },
  {
    weight: 1,
    arbitrary: fc
      .tuple(key, fc.option(key, { nil: null }))
      .map(([from, to]) => ({ t: 'removeRange' as const, from, to })),
  },
);

function modelRange(model: readonly string[], from: string, to: string | null): string[] {
  return model.filter((k) => k >= from && (to === null || k < to));
}

void test('property: the chunked index behaves like one sorted array', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 2, max: 6 }),
      fc.array(op, { maxLength: 200 }),
      fc.array(fc.tuple(key, fc.option(key, { nil: null }), fc.nat(5)), { maxLength: 10 }),
      (chunkMax, ops, queries) => {
        const keys = new SortedKeys(chunkMax);
        let model: string[] = [];
        for (const o of ops) {
          if (o.t === 'insert') {
            if (model.includes(o.key)) continue; // insert requires an absent key
            keys.insert(o.key);
            model = [...model, o.key].sort();
          } else if (o.t === 'remove') {
            assert.equal(keys.remove(o.key), model.includes(o.key));
            model = model.filter((k) => k !== o.key);
          } else {
            const expected = o.to !== null && o.to <= o.from ? [] : modelRange(model, o.from, o.to);
            assert.deepEqual(keys.removeRange(o.from, o.to), expected);
            model = model.filter((k) => !expected.includes(k));
          }
          assert.equal(keys.size, model.length);
        }
        assert.deepEqual(keys.all(), model);
        for (const [from, to, limit] of queries) {
          const all = to !== null && to <= from ? [] : modelRange(model, from, to);
          const r = keys.scan(from, to, limit);
          assert.equal(r.count, all.length);
          assert.equal(keys.count(from, to), all.length);
          assert.deepEqual(r.keys, limit === 0 ? all : all.slice(0, limit));
        }
        assert.deepEqual(SortedKeys.fromSorted(model, chunkMax).all(), model);
      },
    ),
    { numRuns: 300 },
  );
});

void test('a planted bug in the model comparison is caught (the property can fail)', () => {
  // Same property, but against a model that forgets removals: it must find a counterexample.
  const broken = fc.check(
    fc.property(fc.array(op, { maxLength: 50 }), (ops) => {
      const keys = new SortedKeys(2);
      const model = new Set<string>();
      for (const o of ops) {
        if (o.t === 'insert' && !model.has(o.key)) {
          keys.insert(o.key);
          model.add(o.key);
        } else if (o.t === 'remove') keys.remove(o.key);
      }
      return keys.size === model.size;
    }),
    { numRuns: 300 },
  );
  assert.equal(broken.failed, true);
});

void test('chunkMax below 2 is refused', () => {
  assert.throws(() => new SortedKeys(1), /chunkMax must be >= 2/);
});

void test('fromKeys builds the same index from keys in order and out of order', () => {
  const sorted = Array.from({ length: 50 }, (_, i) => `k${String(i).padStart(3, '0')}`);
  const shuffled = [...sorted].reverse();
  shuffled.push(shuffled.shift() as string);
  for (const input of [sorted, shuffled]) {
    const index = SortedKeys.fromKeys([...input], 4);
    assert.deepEqual(index.scan('', null, 0).keys, sorted);
    assert.equal(index.size, 50);
  }
});
