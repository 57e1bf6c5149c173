// The search is exponential in the worst case; each budget turns a pathological history into
// a prompt 'unknown' instead of a hung test run.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkHistory, type Operation } from '../../src/check/index.js';
import { r, w } from './ops.js';

/**
 * `width` writes of distinct values and `width` reads of them, all concurrent, then one read of
 * a value nobody wrote. The block has a huge number of linearizations (subsets of it times the
 * last value written), every one of which the search must refute before it may say
 * 'violation'.
 */
function pathological(width: number): Operation[] {
  const block: Operation[] = [];
  for (let i = 0; i < width; i++) {
    block.push(w(i, 0, 100, `v${i}`));
    block.push(r(width + i, 0, 100, `v${(i * 7) % width}`));
  }
  return [...block, r(0, 200, 201, 'ghost')];
}

void test('a time budget makes a pathological history unknown, quickly', () => {
  const startMs = performance.now();
  const result = checkHistory(pathological(16), { timeBudgetMs: 300 });
  const elapsedMs = performance.now() - startMs;
  assert.equal(result.verdict, 'unknown');
  assert.equal(result.perKey[0]?.unknownReason, 'time-budget');
  assert.ok(elapsedMs < 3000, `took ${elapsedMs} ms`);
});

void test('a step budget makes it unknown deterministically', () => {
  const result = checkHistory(pathological(16), { maxStepsPerKey: 20_000 });
  assert.equal(result.verdict, 'unknown');
  assert.equal(result.perKey[0]?.unknownReason, 'step-budget');
  assert.equal(result.perKey[0]?.steps, 20_001);
});

void test('a memo budget makes it unknown before memory runs out', () => {
  const result = checkHistory(pathological(16), { maxMemoBytesPerKey: 100_000 });
  assert.equal(result.verdict, 'unknown');
  assert.equal(result.perKey[0]?.unknownReason, 'memory-budget');
});

void test('a small pathological history is decided within budget', () => {
  const result = checkHistory(pathological(4), { timeBudgetMs: 5000 });
  assert.equal(result.verdict, 'violation');
});

void test('keys left when the deadline passed are unknown, but a violation still wins', () => {
  let nowMs = 0;
  // Each look at this clock moves it 10 ms: the 15 ms budget is gone after the first key.
  const now = (): number => (nowMs += 10);
  const history = [
    w(1, 0, 1, 'a', { key: 'a' }),
    r(2, 2, 3, null, { key: 'a' }),
    w(3, 0, 1, 'b', { key: 'b' }),
  ];
  const result = checkHistory(history, { timeBudgetMs: 15, now });
  assert.deepEqual(
    result.perKey.map((k) => [k.key, k.verdict, k.unknownReason]),
    [
      ['a', 'violation', null],
      ['b', 'unknown', 'time-budget'],
    ],
  );
  assert.equal(result.verdict, 'violation');
  const clean = checkHistory(history.slice(2).concat(history.slice(0, 1)), {
    timeBudgetMs: 15,
    now,
  });
  assert.equal(clean.verdict, 'unknown');
});
