// A clock whose timers fire when the test moves it on, for code that takes a Clock
// (src/host/contracts.ts) and runs its periodic work through the clock's timers.

import type { Clock } from '../../src/host/contracts.js';

export interface PendingTimer {
  readonly at: number;
  readonly fn: () => void;
  readonly id: number;
}

export class TimerClock implements Clock {
  protected timers: PendingTimer[] = [];
  private nextId = 1;

  constructor(public now = 0) {}

  nowMs(): number {
    return this.now;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.nextId++;
    this.timers.push({ at: this.now + ms, fn, id });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.timers = this.timers.filter((t) => t.id !== handle);
  }

  /** Timers set and not fired yet. */
  pending(): number {
    return this.timers.length;
  }

  /** Moves time on by `ms`, firing the timers that come due, in order, each at its time. */
  advance(ms: number): void {
    const end = this.now + ms;
    for (let fired = 0; fired < 100_000; fired++) {
      const due = this.timers.filter((t) => t.at <= end).sort((a, b) => a.at - b.at)[0];
      if (due === undefined) break;
      this.fire(due, due.at);
    }
    this.now = end;
  }

  /** Fires one timer at time `at`. */
  protected fire(t: PendingTimer, at: number): void {
    this.timers = this.timers.filter((x) => x !== t);
    this.now = at;
    t.fn();
  }
}
