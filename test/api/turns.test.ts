// Client work proceeds a bounded number of requests per turn of the event loop, first come
// first served, and a timer due meanwhile (a Raft tick) fires between two turns rather than
// after every waiting request.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TurnQueue } from '../../src/api/turns.js';

void test('at most perTurn requests proceed per turn, in arrival order', async () => {
  const turns: (() => void)[] = [];
  const q = new TurnQueue(3, (fn) => turns.push(fn));
  const order: number[] = [];
  const all = Array.from({ length: 7 }, (_, i) => q.turn().then(() => order.push(i)));
  assert.equal(turns.length, 1, 'one turn scheduled for all the waiting requests');
  assert.equal(q.length, 7);
  for (const expected of [3, 6, 7]) {
    const run = turns.shift();
    assert.ok(run !== undefined, `a turn is scheduled while ${q.length} requests wait`);
    run();
    await Promise.resolve(); // let the resolved requests continue
    assert.deepEqual(
      order,
      Array.from({ length: expected }, (_, i) => i),
    );
  }
  assert.equal(turns.length, 0, 'no turn is scheduled once nothing waits');
  assert.equal(q.length, 0);
  await Promise.all(all);
});

void test('a timer due while many requests wait fires after one turn, not after all of them', async () => {
  const perTurn = 4;
  const q = new TurnQueue(perTurn);
  let proceeded = 0;
  let proceededWhenTimerFired = -1;
  const waiting = Array.from({ length: 200 }, () => q.turn().then(() => proceeded++));
  // Like the tick timer: due now, it must not wait behind the 200 requests.
  const timer = new Promise<void>((resolve) =>
    setTimeout(() => {
      proceededWhenTimerFired = proceeded;
      resolve();
    }, 0),
  );
  await Promise.all([timer, ...waiting]);
  assert.equal(proceeded, 200);
  assert.ok(
    proceededWhenTimerFired >= 0 && proceededWhenTimerFired <= 2 * perTurn,
    `the timer fired after ${proceededWhenTimerFired} of 200 requests proceeded; at most ${2 * perTurn} expected`,
  );
});

void test('perTurn must be a positive integer', () => {
  assert.throws(() => new TurnQueue(0), RangeError);
  assert.throws(() => new TurnQueue(1.5), RangeError);
});

void test('an idle queue lets a request proceed at once, within the turn budget', () => {
  const turns: (() => void)[] = [];
  const q = new TurnQueue(2, (fn) => turns.push(fn));
  assert.equal(q.pass(), true, 'nobody waits and the budget is unspent: no turn needed');
  assert.equal(q.pass(), true);
  assert.equal(q.pass(), false, 'a third request in the same turn must wait for the next');
  assert.equal(turns.length, 1, 'the fast path schedules the turn that resets its budget');
  turns.shift()?.();
  assert.equal(q.pass(), true, 'the turn reset the budget');
});

void test('a request never overtakes waiting ones by the fast path', async () => {
  const turns: (() => void)[] = [];
  const q = new TurnQueue(1, (fn) => turns.push(fn));
  assert.equal(q.pass(), true);
  const order: string[] = [];
  const waiting = q.turn().then(() => order.push('waiting'));
  turns.shift()?.(); // resolves the waiting request: the budget of this turn is spent
  assert.equal(q.pass(), false, 'the turn that served a waiting request spent its budget');
  const late = q.turn().then(() => order.push('late'));
  assert.equal(q.pass(), false, 'someone waits: no fast path');
  turns.shift()?.();
  await Promise.all([waiting, late]);
  assert.deepEqual(order, ['waiting', 'late']);
  assert.equal(q.length, 0);
});

void test('between two turns at most perTurn requests proceed, fast path included', () => {
  const perTurn = 3;
  const turns: (() => void)[] = [];
  const q = new TurnQueue(perTurn, (fn) => turns.push(fn));
  const pending: Promise<void>[] = [];
  let byTurn = 0; // requests the last turn let proceed
  for (let round = 0; round < 6; round++) {
    // A burst of requests in one loop iteration (fewer every round, so waiting ones drain).
    let passed = 0;
    for (let i = 0; i < 10 - 2 * round; i++) {
      if (q.pass()) passed++;
      else pending.push(q.turn());
    }
    assert.ok(
      byTurn + passed <= perTurn,
      `round ${round}: ${byTurn} by the turn and ${passed} at once; at most ${perTurn}`,
    );
    const before = q.length;
    turns.shift()?.();
    byTurn = before - q.length;
  }
  while (turns.length > 0) turns.shift()?.();
  assert.equal(q.length, 0);
});
