// The loop stall watch reports each stretch in which the event loop ran nothing for at least
// its threshold, with when it ended, and nothing while its timer fires on time; on a clock
// the test moves, where a stall is time passing with no timer run.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TimerClock } from '../support/timer-clock.js';
import { LoopStallWatch, type LoopStall } from '../../src/server/loop-health.js';

/** A clock whose timers fire on time when advanced, or late after a stall. */
class StallClock extends TimerClock {
  constructor() {
    super(1_000);
  }
  /** Time passes with the loop busy: the timers that fell due fire only at its end, late. */
  stall(ms: number): void {
    this.now += ms;
    for (const due of this.timers.filter((t) => t.at <= this.now)) this.fire(due, this.now);
  }
}

function watch(): { clock: StallClock; w: LoopStallWatch; seen: LoopStall[] } {
  const clock = new StallClock();
  const seen: LoopStall[] = [];
  const w = new LoopStallWatch({
    clock,
    periodMs: 10,
    thresholdMs: 100,
    onStall: (s) => seen.push(s),
  });
  return { clock, w, seen };
}

void test('a loop whose timer fires on time reports no stall', () => {
  const { clock, w, seen } = watch();
  w.start();
  clock.advance(10_000);
  assert.deepEqual(seen, []);
  assert.equal(w.stalls, 0);
});

void test('a stall of the threshold or more is reported with its end and length; a shorter one is not', () => {
  const { clock, w, seen } = watch();
  w.start();
  clock.advance(5); // mid-period: the timer is due at 1,010
  clock.stall(104); // it runs at 1,109, 99 ms late: under the threshold
  clock.advance(50); // on time again: it last ran at 1,159
  clock.stall(310); // due at 1,169, it runs at 1,469: 300 ms late
  clock.advance(50); // last ran at 1,519
  assert.deepEqual(seen, [{ endMs: 1_469, stalledMs: 300 }]);
  assert.equal(w.stalls, 1);
  assert.equal(w.longestMs, 300);
  clock.stall(1_000);
  assert.deepEqual(seen.at(-1), { endMs: 2_519, stalledMs: 990 });
  assert.equal(w.stalls, 2);
  assert.equal(w.longestMs, 990);
});

void test('a stopped watch leaves no timer and reports nothing more', () => {
  const { clock, w, seen } = watch();
  w.start();
  clock.advance(30);
  w.stop();
  assert.equal(clock.pending(), 0);
  clock.stall(1_000);
  assert.deepEqual(seen, []);
});

void test('a watch needs a period and a threshold above 0 ms', () => {
  const clock = new StallClock();
  for (const [periodMs, thresholdMs] of [
    [0, 100],
    [10, 0],
    [Number.NaN, 100],
  ] as const)
    assert.throws(
      () => new LoopStallWatch({ clock, periodMs, thresholdMs, onStall: () => undefined }),
      /needs a period and a threshold above 0 ms/,
    );
});
