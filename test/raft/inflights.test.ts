// Unit tests of the inflight window (src/raft/inflights.ts): bounded in messages and in
// bytes, freed in order by acknowledgements, a ring buffer that wraps around.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { AssertionError } from '../../src/raft/errors.js';
import { Inflights } from '../../src/raft/inflights.js';

void test('fills up by message count and frees in order', () => {
  const w = new Inflights(3, 1000);
  w.add(5, 10);
  w.add(7, 10);
  assert.equal(w.full(), false);
  w.add(9, 10);
  assert.equal(w.full(), true);
  assert.equal(w.size(), 3);
  w.freeLE(6); // frees only the message ending at 5
  assert.equal(w.size(), 2);
  assert.equal(w.full(), false);
  w.freeLE(6); // a repeated acknowledgement frees nothing more
  assert.equal(w.size(), 2);
  w.freeLE(100);
  assert.equal(w.size(), 0);
});

void test('fills up by bytes before the count limit', () => {
  const w = new Inflights(10, 100);
  w.add(1, 60);
  assert.equal(w.full(), false);
  w.add(2, 40);
  assert.equal(w.full(), true, '100 bytes in flight reach the 100-byte limit');
  w.freeLE(1);
  assert.equal(w.full(), false, 'freeing 60 bytes reopens the window');
});

void test('wraps around the ring buffer', () => {
  const w = new Inflights(3, 1_000_000);
  let last = 0;
  for (let round = 0; round < 10; round++) {
    while (!w.full()) w.add(++last, 1);
    assert.equal(w.size(), 3);
    w.freeLE(last - 1); // keep the newest one, so start moves around the ring
    assert.equal(w.size(), 1);
  }
  w.freeLE(last);
  assert.equal(w.size(), 0);
});

void test('freeFirstOne frees exactly the oldest message', () => {
  const w = new Inflights(2, 1000);
  w.freeFirstOne(); // empty: no-op
  w.add(3, 1);
  w.add(4, 1);
  assert.equal(w.full(), true);
  w.freeFirstOne();
  assert.equal(w.size(), 1);
  w.add(5, 1);
  w.freeLE(4);
  assert.equal(w.size(), 1, 'the message ending at 5 is still in flight');
});

void test('reset empties the window', () => {
  const w = new Inflights(2, 10);
  w.add(1, 10);
  assert.equal(w.full(), true);
  w.reset();
  assert.equal(w.size(), 0);
  assert.equal(w.full(), false);
  w.add(1, 1); // indexes may start over after a reset
  assert.equal(w.size(), 1);
});

void test('broken invariants assert', () => {
  assert.throws(() => new Inflights(0, 10), AssertionError);
  const w = new Inflights(1, 10);
  w.add(4, 1);
  assert.throws(() => w.add(5, 1), AssertionError, 'adding to a full window');
  const v = new Inflights(4, 10);
  v.add(4, 1);
  assert.throws(() => v.add(4, 1), AssertionError, 'indexes must increase');
});

void test('matches a naive queue under random adds and acknowledgements', () => {
  const op = fc.oneof(
    fc.record({
      kind: fc.constant('add' as const),
      gap: fc.integer({ min: 1, max: 3 }),
      bytes: fc.integer({ min: 0, max: 40 }),
    }),
    fc.record({ kind: fc.constant('ack' as const), back: fc.integer({ min: 0, max: 8 }) }),
    fc.record({ kind: fc.constant('first' as const) }),
  );
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 5 }),
      fc.integer({ min: 1, max: 100 }),
      fc.array(op, { maxLength: 60 }),
      (cap, maxBytes, ops) => {
        const w = new Inflights(cap, maxBytes);
        const model: { last: number; bytes: number }[] = [];
        let last = 0;
        const modelFull = (): boolean =>
          model.length === cap || model.reduce((s, m) => s + m.bytes, 0) >= maxBytes;
        for (const o of ops) {
          if (o.kind === 'add') {
            if (modelFull()) continue;
            last += o.gap;
            w.add(last, o.bytes);
            model.push({ last, bytes: o.bytes });
          } else if (o.kind === 'ack') {
            const upTo = last - o.back;
            w.freeLE(upTo);
            while (model.length > 0 && (model[0]?.last ?? Infinity) <= upTo) model.shift();
          } else {
            w.freeFirstOne();
            model.shift();
          }
          assert.equal(w.size(), model.length);
          assert.equal(w.full(), modelFull());
        }
      },
    ),
    { numRuns: 300 },
  );
});
