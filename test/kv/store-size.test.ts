// What a range's size is made of (docs/DESIGN.md, "Automatic splits"): the store's live bytes
// kept as writes, deletes, splits and restores go, and the key at a position of the byte order,
// from which a range's middle key is taken. Each against a brute-force model: the bytes summed
// over every record, the keys sorted and indexed.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { KvStore, bytesOf, k } from '../../src/kv/kv-store.js';
import { KvStateMachine } from '../../src/kv/machine.js';
import { SortedKeys } from '../../src/kv/sorted-keys.js';

const enc = new TextEncoder();
const keyArb = fc.string({
  unit: fc.constantFrom('a', 'b', 'c', 'd', 'e'),
  minLength: 1,
  maxLength: 3,
});

type Op =
  | { t: 'put'; key: string; value: string }
  | { t: 'delete'; key: string }
  | { t: 'deleteRange'; from: string; to: string }
  | { t: 'split'; at: string }
  | { t: 'restore' };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc
      .tuple(keyArb, fc.string({ maxLength: 6 }))
      .map(([key, value]) => ({ t: 'put' as const, key, value })),
  },
  { weight: 2, arbitrary: keyArb.map((key) => ({ t: 'delete' as const, key })) },
  {
    weight: 1,
    arbitrary: fc
      .tuple(keyArb, keyArb)
      .map(([a, b]) => ({ t: 'deleteRange' as const, from: a < b ? a : b, to: a < b ? b : a })),
  },
  { weight: 1, arbitrary: keyArb.map((at) => ({ t: 'split' as const, at })) },
  { weight: 1, arbitrary: fc.constant({ t: 'restore' as const }) },
);

/** The brute-force size: every live record's key and value lengths. */
function bruteBytes(s: KvStore): number {
  return s.snapshotState().kvs.reduce((n, kv) => n + kv.key.length + kv.value.length, 0);
}

function apply(s: KvStore, o: Op): KvStore {
  switch (o.t) {
    case 'put':
      s.apply({
        compare: [],
        success: [
          { kind: 'put', key: enc.encode(o.key), value: enc.encode(o.value), prevKv: false },
        ],
        failure: [],
      });
      return s;
    case 'delete':
      s.apply({
        compare: [],
        success: [
          { kind: 'delete', range: { key: enc.encode(o.key), rangeEnd: null }, prevKv: false },
        ],
        failure: [],
      });
      return s;
    case 'deleteRange':
      s.apply({
        compare: [],
        success: [
          {
            kind: 'delete',
            range: { key: enc.encode(o.from), rangeEnd: enc.encode(o.to) },
            prevKv: false,
          },
        ],
        failure: [],
      });
      return s;
    case 'split':
      s.splitOff(enc.encode(o.at));
      return s;
    case 'restore': {
      // A replica restored from a snapshot holds the same size as the one it was taken from.
      const copy = new KvStore();
      copy.restoreState(s.snapshotState());
      return copy;
    }
  }
}

void test('property: the live bytes and the key at each position match a brute-force count', () => {
  fc.assert(
    fc.property(fc.array(opArb, { maxLength: 120 }), (ops) => {
      let s = new KvStore();
      for (const o of ops) {
        s = apply(s, o);
        assert.equal(s.bytes(), bruteBytes(s), `after ${JSON.stringify(o)}`);
      }
      const sorted = s
        .snapshotState()
        .kvs.map((kv) => k(kv.key))
        .sort();
      assert.equal(s.size(), sorted.length);
      for (let i = -1; i <= sorted.length; i++) {
        const got = s.keyAt(i);
        assert.equal(got === undefined ? undefined : k(got), sorted[i], `position ${i}`);
      }
    }),
    { numRuns: 300 },
  );
});

void test('property: the index finds the key at a position across chunks as a sorted array does', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 2, max: 5 }),
      fc.uniqueArray(keyArb, { maxLength: 80 }),
      fc.array(keyArb, { maxLength: 30 }),
      (chunkMax, inserted, removed) => {
        const keys = new SortedKeys(chunkMax);
        for (const key of inserted) keys.insert(key);
        for (const key of removed) keys.remove(key);
        const model = keys.all();
        const expected = [...inserted].filter((x) => !removed.includes(x)).sort();
        assert.deepEqual(model, expected);
        for (let i = -2; i < model.length + 2; i++) assert.equal(keys.at(i), model[i]);
        assert.equal(keys.at(0.5), undefined, 'a position that is no integer is no key');
      },
    ),
    { numRuns: 300 },
  );
});

void test('the middle key halves a store by count, and none exists below two keys', () => {
  const m = new KvStateMachine({ maxKeyBytes: 64, maxValueBytes: 64 });
  assert.equal(m.middleKey(), null);
  const store = (m as unknown as { store: KvStore }).store;
  const put = (key: string) =>
    store.apply({
      compare: [],
      success: [{ kind: 'put', key: enc.encode(key), value: enc.encode('v'), prevKv: false }],
      failure: [],
    });
  put('a');
  assert.equal(m.middleKey(), null, 'one key cannot be halved');
  put('b');
  assert.deepEqual(m.middleKey(), bytesOf('b'));
  for (const key of ['c', 'd', 'e']) put(key);
  // Five keys: the upper half starts at the third, so the lower half holds two, the upper three.
  assert.deepEqual(m.middleKey(), bytesOf('c'));
  assert.equal(m.bytes(), 5 * 2);
});
