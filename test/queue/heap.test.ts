// The indexed heap against a sorted array: random pushes, pops, removals and re-keyings.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { IndexedHeap } from '../../src/queue/heap.js';

interface Item {
  heapPos: number;
  key: number;
  readonly seq: number;
}

void test('the heap yields what a sorted array would, through removals and re-keying', () => {
  const op = fc.oneof(
    fc.record({ kind: fc.constant('push' as const), key: fc.integer({ min: 0, max: 5 }) }),
    fc.record({ kind: fc.constant('pop' as const) }),
    fc.record({ kind: fc.constant('remove' as const), pick: fc.nat() }),
    fc.record({
      kind: fc.constant('rekey' as const),
      pick: fc.nat(),
      key: fc.integer({ min: 0, max: 5 }),
    }),
  );
  fc.assert(
    fc.property(fc.array(op, { maxLength: 300 }), (ops) => {
      const heap = new IndexedHeap<Item>(
        (i) => i.key,
        (i) => i.seq,
      );
      let model: Item[] = [];
      let seq = 0;
      const sort = () => model.sort((a, b) => a.key - b.key || a.seq - b.seq);
      for (const o of ops) {
        if (o.kind === 'push') {
          const item = { heapPos: -1, key: o.key, seq: seq++ };
          heap.push(item);
          model.push(item);
        } else if (o.kind === 'pop') {
          sort();
          assert.equal(heap.pop(), model.shift());
        } else if (model.length > 0) {
          const item = model[o.pick % model.length] as Item;
          if (o.kind === 'remove') {
            heap.remove(item);
            model = model.filter((x) => x !== item);
            assert.equal(item.heapPos, -1);
          } else {
            item.key = o.key;
            heap.update(item);
          }
        }
        sort();
        assert.equal(heap.size, model.length);
        assert.equal(heap.peek(), model[0]);
      }
    }),
    { numRuns: 300, seed: 5 },
  );
});

void test('an item in one heap cannot enter another, nor be removed from one it is not in', () => {
  const a = new IndexedHeap<Item>(
    (i) => i.key,
    (i) => i.seq,
  );
  const b = new IndexedHeap<Item>(
    (i) => i.key,
    (i) => i.seq,
  );
  const item = { heapPos: -1, key: 1, seq: 1 };
  a.push(item);
  assert.throws(() => b.push(item), /one heap at a time/);
  assert.throws(() => b.remove(item), /does not hold/);
});
