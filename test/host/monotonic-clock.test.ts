// Raft's ticks and the leader's lease run on the monotonic clock: a wall clock stepped back by
// an hour (NTP, an operator) must not stand them still, nor one stepped forward end them early.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { monotonicClock, systemClock } from '../../src/host/contracts.js';

void test('the monotonic clock moves on by real time whatever the wall clock is set to', (t) => {
  const wall = Date.now;
  t.after(() => {
    Date.now = wall;
  });
  const before = monotonicClock.nowMs();
  // Starts on the wall clock's scale, so a time it gives reads as one.
  assert.ok(Math.abs(before - wall()) < 60_000, `${before} against ${wall()}`);
  Date.now = () => wall() - 3_600_000;
  const back = monotonicClock.nowMs();
  assert.ok(back >= before, `stepped back: ${back} < ${before}`);
  assert.ok(systemClock.nowMs() < before, 'the wall clock did step back');
  Date.now = () => wall() + 3_600_000;
  const forward = monotonicClock.nowMs();
  assert.ok(forward - back < 60_000, `stepped forward: ${forward - back} ms in an instant`);
});
