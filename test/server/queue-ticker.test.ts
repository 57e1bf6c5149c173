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

/**
 * A ticker over a stand-in for the queue machine: due times, a clock that moves only when a
 * command applies (a tick, stamped with the leader's clock, or `command`), and the applied
 * listeners the ticker arms from.
 */
function dueTicker(o: { minGapMs?: number; hold?: boolean } = {}) {
  const clock = new TimerClock();
  const m = {
    now: 0,
    due: [] as number[],
    ticks: [] as number[],
    held: [] as (() => void)[],
    listeners: new Set<() => void>(),
  };
  const state = { leader: true };
  const apply = (stampMs: number): void => {
    m.now = Math.max(m.now, stampMs);
    m.due = m.due.filter((d) => d > m.now);
    for (const l of m.listeners) l();
  };
  const t = new QueueTicker({
    clock,
    everyMs: 1_000,
    ...(o.minGapMs === undefined ? {} : { minGapMs: o.minGapMs }),
    isLeader: () => state.leader,
    tick: () => {
      const at = clock.nowMs();
      m.ticks.push(at);
      if (o.hold === true && m.held.length === 0)
        return new Promise<void>((resolve) =>
          m.held.push(() => {
            apply(at);
            resolve();
          }),
        );
      return Promise.resolve().then(() => apply(at));
    },
    onError: (err) => assert.fail(String(err)),
    nextDueMs: () => (m.due.length === 0 ? null : Math.min(...m.due)),
    machineNowMs: () => m.now,
    onApplied: (l) => {
      m.listeners.add(l);
      return () => m.listeners.delete(l);
    },
  });
  /** A command applied now, stamped `stampMs` (default: the clock's time), adding due times. */
  const command = (dues: number[], stampMs = clock.nowMs()): void => {
    m.due.push(...dues);
    apply(stampMs);
  };
  /** Moves the clock to `to`, a millisecond at a time, letting applied ticks settle. */
  const until = async (to: number): Promise<void> => {
    while (clock.nowMs() < to) {
      clock.advance(1);
      await settle();
    }
  };
  return { t, clock, m, state, command, until };
}

void test('a due time is ticked when it comes, not at the next whole interval', async () => {
  const { t, m, command, until } = dueTicker();
  t.start();
  command([200]);
  await until(199);
  assert.deepEqual(m.ticks, [], 'nothing before it is due');
  await until(200);
  assert.deepEqual(m.ticks, [200], 'a 200 ms delay waits 200 ms');
  assert.deepEqual(m.due, [], 'the tick made it happen');
  await until(1_000);
  assert.deepEqual(m.ticks, [200, 1_000], 'then only the interval');
  assert.equal(t.dueTicks, 1);
  t.stop();
});

void test('crowded due times are ticked at most once per gap', async () => {
  const { t, m, command, until } = dueTicker({ minGapMs: 20 });
  t.start();
  command(Array.from({ length: 61 }, (_, i) => 100 + i));
  await until(170);
  assert.deepEqual(m.due, [], `all due by 170: ticks ${m.ticks.join(',')}`);
  assert.deepEqual(m.ticks, [100, 120, 140, 160]);
  t.stop();
});

void test('no tick for a due time a command has already passed', async () => {
  // A command stamped by a clock ahead of this one moved the machine past the due time.
  const { t, m, command, until } = dueTicker();
  t.start();
  command([300]);
  await until(250);
  command([], 400);
  await until(999);
  assert.deepEqual(m.ticks, [], 'the timer found the machine past it');
  t.stop();
});

void test('a follower arms nothing; a new leader arms at its next check', async () => {
  const { t, m, state, command, until } = dueTicker();
  state.leader = false;
  t.start();
  command([1_500]);
  await until(999);
  assert.deepEqual(m.ticks, []);
  state.leader = true;
  await until(1_600);
  assert.deepEqual(m.ticks, [1_000, 1_500]);
  t.stop();
  command([1_700]);
  await until(3_000);
  assert.deepEqual(m.ticks, [1_000, 1_500], 'stopped: nothing armed');
});

void test('a due time that comes while a tick is in flight is ticked after it applies', async () => {
  const { t, m, command, until } = dueTicker({ hold: true });
  t.start();
  await until(1_000);
  assert.deepEqual(m.ticks, [1_000], 'the interval tick, held');
  command([1_010]);
  await until(1_049);
  assert.deepEqual(m.ticks, [1_000], 'one in flight: the due time waits');
  m.held[0]?.();
  await until(1_051);
  assert.deepEqual(m.ticks, [1_000, 1_050], 'proposed once the held tick applied');
  assert.deepEqual(m.due, []);
  t.stop();
});

void test('a due time far out is left to the interval: no timer is set past it', async () => {
  // Node fires a timer of more than 2^31 - 1 ms at once; one set for a due time 30 days out
  // proposed a tick, re-armed, and proposed again, a commit every few milliseconds.
  const { t, clock, m, command, until } = dueTicker();
  const delays: number[] = [];
  const setTimeout = clock.setTimeout.bind(clock);
  clock.setTimeout = (fn: () => void, ms: number): unknown => {
    delays.push(ms);
    return setTimeout(fn, ms);
  };
  t.start();
  const month = 30 * 24 * 3_600_000;
  command([month]);
  await until(3_000);
  assert.deepEqual(m.ticks, [1_000, 2_000, 3_000], 'only the interval ticks');
  assert.ok(
    delays.every((ms) => ms <= 1_000),
    `no timer past the interval: ${delays.join(',')}`,
  );
  t.stop();
});
