// Hand-made histories with a known answer. Each anomaly the chaos tests hunt for (stale read,
// lost write, CAS on a stale value, a value never written, time running backwards) appears
// here as a planted bug the checker must catch, beside linearizable histories it must accept.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  checkHistory,
  formatResult,
  formatViolation,
  type CheckResult,
  type History,
} from '../../src/check/index.js';
import { cas, failed, r, unknown, w } from './ops.js';

function verdict(history: History): CheckResult['verdict'] {
  return checkHistory(history, { timeBudgetMs: 5000 }).verdict;
}

void test('linearizable: sequential writes and reads', () => {
  const h = [w(1, 0, 1, 'a'), r(2, 2, 3, 'a'), w(1, 4, 5, 'b'), r(2, 6, 7, 'b'), w(1, 8, 9, null)];
  assert.equal(verdict([...h, r(2, 10, 11, null)]), 'ok');
});

void test('linearizable: concurrent writes observed in either order', () => {
  // Writes of a and b overlap; readers during the overlap may see them in either order, as
  // long as everyone after the overlap agrees on the last one.
  for (const [first, last] of [
    ['a', 'b'],
    ['b', 'a'],
  ] as const) {
    const h = [
      w(1, 0, 10, 'a'),
      w(2, 0, 10, 'b'),
      r(3, 1, 4, first),
      r(4, 5, 9, last),
      r(3, 11, 12, last),
      r(4, 13, 14, last),
    ];
    assert.equal(verdict(h), 'ok', `reads ${first} then ${last}`);
  }
});

void test('linearizable: a read overlapping a write sees the old or the new value', () => {
  for (const seen of ['a', 'b']) {
    const h = [w(1, 0, 1, 'a'), w(1, 2, 10, 'b'), r(2, 3, 9, seen), r(3, 11, 12, 'b')];
    assert.equal(verdict(h), 'ok', `read saw ${seen}`);
  }
  // Reads may even overlap each other and the write in any mix, as long as no reader sees the
  // old value after another reader's read of the new one completed.
  const h = [w(1, 0, 10, 'b'), r(2, 1, 5, 'b'), r(3, 2, 9, null), r(4, 6, 8, 'b')];
  assert.equal(verdict(h), 'ok');
});

void test('linearizable: cas chains, sequential and contended', () => {
  const chain = [
    w(1, 0, 1, '0'),
    cas(2, [2, 3], ['0', '1'], true),
    cas(1, [4, 5], ['1', '2'], true),
    cas(2, [6, 7], ['1', '3'], false),
    r(1, 8, 9, '2'),
  ];
  assert.equal(verdict(chain), 'ok');
  // Two clients race to swap 0: exactly one wins, and later reads show the winner's value.
  const race = [
    w(1, 0, 1, '0'),
    cas(2, [2, 6], ['0', 'two'], false),
    cas(3, [2, 6], ['0', 'three'], true),
    r(1, 7, 8, 'three'),
  ];
  assert.equal(verdict(race), 'ok');
});

void test('linearizable: an unknown write may or may not take effect, at any later time', () => {
  const prefix = [w(1, 0, 1, 'a'), unknown(w(2, 2, 3, 'b'))];
  assert.equal(verdict([...prefix, r(3, 10, 11, 'b')]), 'ok', 'took effect');
  assert.equal(verdict([...prefix, r(3, 10, 11, 'a')]), 'ok', 'never took effect');
  // It may take effect long after the client gave up at t=3.
  assert.equal(
    verdict([...prefix, r(3, 10, 11, 'a'), r(3, 20, 21, 'b')]),
    'ok',
    'took effect late',
  );
  const gaveUpAt = [w(1, 0, 1, 'a'), unknown(w(2, 2, null, 'b')), r(3, 10, 11, 'b')];
  assert.equal(verdict(gaveUpAt), 'ok', 'completion time not recorded');
  const unknownCas = [
    w(1, 0, 1, 'a'),
    unknown(cas(2, [2, 3], ['a', 'c'], true)),
    r(3, 10, 11, 'c'),
  ];
  assert.equal(verdict(unknownCas), 'ok', 'unknown cas took effect');
  assert.equal(
    verdict([...unknownCas.slice(0, 2), r(3, 10, 11, 'a')]),
    'ok',
    'unknown cas did not',
  );
  // An unknown read says nothing; it is dropped rather than matched.
  assert.equal(verdict([w(1, 0, 1, 'a'), unknown(r(2, 2, 3, 'zzz'))]), 'ok');
});

void test('violation: an unknown write cannot take effect before it was invoked', () => {
  assert.equal(verdict([r(1, 0, 1, 'b'), unknown(w(2, 2, 3, 'b'))]), 'violation');
});

void test('violation: a failed write that was observed (fail means it definitely did not happen)', () => {
  const prefix = [w(1, 0, 1, 'a'), failed(w(2, 2, 3, 'b'))];
  assert.equal(verdict([...prefix, r(3, 10, 11, 'a')]), 'ok');
  assert.equal(verdict([...prefix, r(3, 10, 11, 'b')]), 'violation');
});

void test('violation: stale read after an acknowledged write', () => {
  assert.equal(verdict([w(1, 0, 1, 'a'), r(2, 2, 3, 'a')]), 'ok');
  assert.equal(verdict([w(1, 0, 1, 'a'), r(2, 2, 3, null)]), 'violation');
});

void test('violation: an acknowledged write is lost', () => {
  const h = [w(1, 0, 1, 'a'), w(2, 2, 3, 'b'), r(3, 4, 5, 'a'), r(1, 6, 7, 'a')];
  assert.equal(verdict(h), 'violation');
});

void test('violation: cas succeeds on a stale value', () => {
  const base = [w(1, 0, 1, 'a'), w(2, 2, 3, 'b')];
  assert.equal(verdict([...base, cas(3, [4, 5], ['a', 'c'], false)]), 'ok');
  assert.equal(verdict([...base, cas(3, [4, 5], ['a', 'c'], true)]), 'violation');
  // Nor may a swap fail when the value did match.
  assert.equal(verdict([...base, cas(3, [4, 5], ['b', 'c'], false)]), 'violation');
  // Two concurrent swaps of the same old value cannot both win.
  const both = [
    w(1, 0, 1, '0'),
    cas(2, [2, 6], ['0', 'two'], true),
    cas(3, [2, 6], ['0', 'three'], true),
  ];
  assert.equal(verdict(both), 'violation');
});

void test('violation: a read of a value never written', () => {
  assert.equal(verdict([w(1, 0, 1, 'a'), r(2, 0, 3, 'ghost')]), 'violation');
});

void test('violation: a read goes back in time', () => {
  // While b is being written, one reader sees b; a reader who starts after that read ended
  // sees the older a: the register went backwards.
  const h = [w(1, 0, 1, 'a'), w(1, 2, 20, 'b'), r(2, 3, 4, 'b'), r(3, 5, 6, 'a')];
  assert.equal(verdict(h), 'violation');
  const overlapping = [w(1, 0, 1, 'a'), w(1, 2, 20, 'b'), r(2, 3, 6, 'b'), r(3, 5, 7, 'a')];
  assert.equal(verdict(overlapping), 'ok', 'the same reads overlapping each other are fine');
});

void test('keys are checked independently and the report names the bad one', () => {
  const h = [
    w(1, 0, 1, 'a', { key: 'good' }),
    r(2, 2, 3, 'a', { key: 'good' }),
    w(3, 0, 1, 'a', { key: 'bad' }),
    w(3, 2, 3, 'b', { key: 'bad' }),
    r(4, 4, 5, 'a', { key: 'bad' }),
  ];
  const result = checkHistory(h);
  assert.equal(result.verdict, 'violation');
  assert.deepEqual(
    result.perKey.map((k) => [k.key, k.verdict]),
    [
      ['bad', 'violation'],
      ['good', 'ok'],
    ],
  );
  const [v] = result.violations;
  assert.ok(v);
  assert.equal(v.key, 'bad');
  // The longest prefix is both writes; the stale read (history #4) is the op that cannot fit.
  assert.deepEqual(
    v.prefix.map((op) => op.index),
    [2, 3],
  );
  assert.equal(v.valueAfterPrefix, '"b"');
  assert.deepEqual(
    v.candidates.map((op) => op.index),
    [4],
  );
  const text = formatViolation(v);
  assert.match(text, /Not linearizable: key "bad"/);
  assert.match(text, /#4 client 4 key "bad" read -> "a" \[4\.000, 5\.000\] ok/);
  assert.match(text, /Register value after the prefix: "b"/);
  assert.match(formatResult(result), /key "good": ok, 2 ops/);
});

void test('initial values are honoured per key', () => {
  assert.equal(verdict([r(1, 0, 1, 'seed')]), 'violation');
  const result = checkHistory([r(1, 0, 1, 'seed')], { initialValues: { x: 'seed' } });
  assert.equal(result.verdict, 'ok');
  // Keys that name Object.prototype members still start absent.
  for (const key of ['constructor', '__proto__', 'toString']) {
    assert.equal(checkHistory([r(1, 0, 1, null, { key })]).verdict, 'ok', key);
  }
});

void test('an empty history is linearizable', () => {
  const result = checkHistory([]);
  assert.equal(result.verdict, 'ok');
  assert.deepEqual(result.perKey, []);
});
