// Routing by key (src/server/range-router.ts): which range a key interval meets, at the bounds
// (start inclusive, end exclusive, "to the end", an empty interval), and the refusals of a
// request meeting two ranges or none; checked against a brute-force oracle over every byte key
// of length up to 2, so an off-by-one at a bound cannot hide.

import assert from 'node:assert/strict';
import test from 'node:test';
import { FlotillaError } from '../../src/base/errors.js';
import { compareBytes, type Range } from '../../src/kv/kv-store.js';
import type { RangeDescriptor } from '../../src/ranges/types.js';
import {
  routeSpans,
  spanMeets,
  spansOfTxn,
  writeName,
  showRange,
} from '../../src/server/range-router.js';

const b = (s: string): Uint8Array => new TextEncoder().encode(s);

function desc(id: number, start: string, end: string | null): RangeDescriptor {
  return { id, start: b(start), end: end === null ? null : b(end), generation: 1, replicas: [1] };
}

/** [""..."m"), ["m"..."t"), ["t"...end). */
const three = [desc(0, '', 'm'), desc(3, 'm', 't'), desc(4, 't', null)];

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof FlotillaError);
    return err.code;
  }
  return 'none';
}

void test('a key goes to the range whose start it is at or past and whose end it is below', () => {
  const one = (key: string) => routeSpans(three, [{ key: b(key), rangeEnd: null }], 'read');
  assert.equal(one('a'), 0);
  assert.equal(one('l\xff'), 0);
  assert.equal(one('m'), 3, 'a range starts at its start key');
  assert.equal(one('s'), 3);
  assert.equal(one('t'), 4, 'a range ends before its end key');
  assert.equal(one('zzzz'), 4);
});

void test('intervals: within one range, across a bound, to the end, and empty', () => {
  const span = (key: string, end: string): Range => ({
    key: b(key),
    rangeEnd: end === '\0' ? new Uint8Array([0]) : b(end),
  });
  assert.equal(routeSpans(three, [span('a', 'm')], 'read'), 0, 'an end at the bound stays left');
  assert.equal(
    codeOf(() => routeSpans(three, [span('a', 'n')], 'read')),
    'CROSS_RANGE',
  );
  assert.equal(routeSpans(three, [span('t', '\0')], 'read'), 4);
  assert.equal(
    codeOf(() => routeSpans(three, [span('s', '\0')], 'read')),
    'CROSS_RANGE',
  );
  // An end at or below the key names no key: routed by its key alone.
  assert.equal(routeSpans(three, [span('q', 'b')], 'read'), 3);
});

void test('a transaction is routed by all its keys: compares, puts, deletes and reads', () => {
  const txn = {
    compare: [{ key: b('a'), target: 'version' as const, op: '>' as const, value: 0 }],
    success: [{ kind: 'put' as const, key: b('b'), value: b('v'), prevKv: false }],
    failure: [{ kind: 'delete' as const, range: { key: b('u'), rangeEnd: null }, prevKv: false }],
  };
  assert.equal(spansOfTxn(txn).length, 3);
  let message = '';
  try {
    routeSpans(three, spansOfTxn(txn), 'transaction');
  } catch (err) {
    message = (err as Error).message;
  }
  assert.match(message, /transaction's keys lie in 2 ranges \(0 \["", "m"\), 4 \["t", end\)\)/);
  assert.equal(routeSpans(three, spansOfTxn({ ...txn, failure: [] }), 'transaction'), 0);
});

void test('a refusal calls a put or a delete sent alone by its name, anything else a transaction', () => {
  const del = { kind: 'delete' as const, range: { key: b('a'), rangeEnd: b('z') }, prevKv: false };
  const put = { kind: 'put' as const, key: b('b'), value: b('v'), prevKv: false };
  assert.equal(writeName({ compare: [], success: [del], failure: [] }), 'delete');
  assert.equal(writeName({ compare: [], success: [put], failure: [] }), 'put');
  assert.equal(writeName({ compare: [], success: [put, del], failure: [] }), 'transaction');
  assert.equal(writeName({ compare: [], success: [], failure: [del] }), 'transaction');
  assert.throws(
    () => routeSpans(three, [del.range], writeName({ compare: [], success: [del], failure: [] })),
    /^FlotillaError: The delete's keys lie in \d ranges/,
  );
});

void test('no range holding the keys (a split whose right half has not started) is WRONG_RANGE', () => {
  const leftOnly = [desc(0, '', 'm')];
  assert.equal(
    codeOf(() => routeSpans(leftOnly, [{ key: b('x'), rangeEnd: null }], 'write')),
    'WRONG_RANGE',
  );
});

void test('spanMeets agrees with a brute-force oracle over every short key', () => {
  // Every key of 0 to 2 bytes from a small alphabet, and every interval between two of them.
  const alphabet = [0x00, 0x61, 0x6d, 0x74, 0xff];
  const keys: Uint8Array[] = [new Uint8Array(0)];
  for (const x of alphabet) keys.push(new Uint8Array([x]));
  for (const x of alphabet) for (const y of alphabet) keys.push(new Uint8Array([x, y]));
  const inRange = (k: Uint8Array, d: RangeDescriptor) =>
    compareBytes(k, d.start) >= 0 && (d.end === null || compareBytes(k, d.end) < 0);
  let checked = 0;
  for (const d of three)
    for (const key of keys)
      for (const end of [null, new Uint8Array([0]), ...keys]) {
        const r: Range = { key, rangeEnd: end };
        // The oracle: some key the interval names lies in the range (a single key when the
        // end names none), over the keys enumerated and the range's own bounds.
        const named = (k: Uint8Array): boolean => {
          if (end === null) return compareBytes(k, key) === 0;
          if (end.length === 1 && end[0] === 0) return compareBytes(k, key) >= 0;
          if (compareBytes(end, key) <= 0) return compareBytes(k, key) === 0;
          return compareBytes(k, key) >= 0 && compareBytes(k, end) < 0;
        };
        const probes = [...keys, d.start, key];
        const expected = probes.some((k) => named(k) && inRange(k, d));
        assert.equal(spanMeets(r, d), expected, `${showRange(d)} and ${JSON.stringify(r)}`);
        checked++;
      }
  assert.ok(checked > 1_000);
});
