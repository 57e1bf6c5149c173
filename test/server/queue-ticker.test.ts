// The queue group's leader proposes a tick every interval, driven by a clock the test moves:
// only while leading, at most one in flight, and again after a failed one.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { QueueTicker } from '../../src/server/queue-ticker.js';
import { TimerClock } from '../support/timer-clock.js';

async function settle(): Promise<void> {
  await new Promise((r) => setImmediate(r));
}

function ticker(o: { tick?: () => Promise<void> } = {}) {
  const clock = new TimerClock();
  const state = { leader: true, calls: 0, errors: [] as unknown[] };
  const t = new QueueTicker({
    clock,
    everyMs: 1_000,
    isLeader: () => state.leader,
    tick:
      o.tick ??
      (() => {
        state.calls++;
        return Promise.resolve();
      }),
    onError: (err) => state.errors.push(err),
  });
  return { t, clock, state };
}

void test('the leader proposes one tick per interval; a follower none', async () => {
  const { t, clock, state } = ticker();
  t.start();
  clock.advance(999);
  await settle();
  assert.equal(state.calls, 0, 'nothing before the first interval ends');
  for (let i = 1; i <= 3; i++) {
    clock.advance(1);
    await settle();
    clock.advance(999);
    await settle();
  }
  assert.equal(state.calls, 3, 'one tick per second while leading');
  assert.equal(t.ticks, 3);
  state.leader = false;
  clock.advance(5_000);
  await settle();
  assert.equal(state.calls, 3, 'a follower proposes no tick');
  state.leader = true;
  clock.advance(1_000);
  await settle();
  assert.equal(state.calls, 4, 'leading again: ticking again');
  t.stop();
  clock.advance(5_000);
  await settle();
  assert.equal(state.calls, 4, 'stopped: no more ticks');
  assert.deepEqual(state.errors, []);
});

void test('at most one tick in flight: a slow commit does not pile up ticks', async () => {
  let release: () => void = () => undefined;
  let calls = 0;
  const { t, clock } = ticker({
    tick: () => {
      calls++;
      return new Promise<void>((r) => (release = r));
    },
  });
  t.start();
  clock.advance(5_000);
  await settle();
  assert.equal(calls, 1, 'four more intervals passed while the first tick was in flight');
  release();
  await settle();
  clock.advance(1_000);
  await settle();
  assert.equal(calls, 2, 'the next interval after it applied proposes again');
  t.stop();
});

void test('a failed tick is reported and the next interval tries again', async () => {
  let calls = 0;
  const { t, clock, state } = ticker({
    tick: () => {
      calls++;
      return calls === 1 ? Promise.reject(new Error('NOT_LEADER')) : Promise.resolve();
    },
  });
  t.start();
  clock.advance(1_000);
  await settle();
  assert.equal(state.errors.length, 1);
  assert.equal((state.errors[0] as Error).message, 'NOT_LEADER');
  clock.advance(1_000);
  await settle();
  assert.equal(calls, 2);
  assert.equal(t.ticks, 1, 'only the applied tick counts');
  t.stop();
});

void test('a non-positive interval is refused', () => {
  assert.throws(
    () =>
      new QueueTicker({
        clock: new TimerClock(),
        everyMs: 0,
        isLeader: () => true,
        tick: () => Promise.resolve(),
        onError: () => undefined,
      }),
    /positive integer/,
  );
});
