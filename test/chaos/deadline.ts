// The end of a chaos run's load, one object shared by the workloads and the nemesis. It is
// fixed when the load starts and can only move earlier: an interrupted run (cli.ts, a first
// Ctrl-C) ends the seed in progress as if its time were up. Loops ask `passed()` before
// starting an operation; the waits between operations go through `sleep`, which also ends
// when the deadline moves, so a client thinking for seconds or a fault held for seconds does
// not hold the end up. An operation already sent is not cut short: it ends by itself, bounded
// by its client's deadline, and is recorded with the outcome it really had.

/** A deadline as its users see it: read-only. */
export interface Deadline {
  /** When the load ends, on the run's clock. Invariant: never increases. */
  atMs(): number;
  passed(): boolean;
  /** Waits `ms`, or less: until the deadline if it comes first, or moves there first. */
  sleep(ms: number): Promise<void>;
}

export class RunDeadline implements Deadline {
  private endMs: number;
  private cutAt: number | null = null;
  private readonly wakers = new Set<() => void>();

  constructor(
    private readonly now: () => number,
    endMs: number,
  ) {
    this.endMs = endMs;
  }

  atMs(): number {
    return this.endMs;
  }

  passed(): boolean {
    return this.now() >= this.endMs;
  }

  sleep(ms: number): Promise<void> {
    return this.sleepBefore(ms, 0);
  }

  /**
   * The same deadline `leadMs` earlier, moving with it (the nemesis stops a second before the
   * clients, so its last fault is healed while they still run).
   */
  earlier(leadMs: number): Deadline {
    return {
      atMs: () => this.endMs - leadMs,
      passed: () => this.now() >= this.endMs - leadMs,
      sleep: (ms) => this.sleepBefore(ms, leadMs),
    };
  }

  /** Moves the deadline to now (if it is later) and wakes every sleeper. Idempotent. */
  cut(): void {
    const at = this.now();
    if (this.cutAt === null && at < this.endMs) {
      this.cutAt = at;
      this.endMs = at;
    }
    for (const wake of [...this.wakers]) wake();
  }

  /** When `cut` moved the deadline, on the run's clock; null if it never did. */
  get cutAtMs(): number | null {
    return this.cutAt;
  }

  private sleepBefore(ms: number, leadMs: number): Promise<void> {
    const wait = Math.min(ms, this.endMs - leadMs - this.now());
    if (!(wait > 0)) return Promise.resolve();
    return new Promise((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        this.wakers.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, wait);
      this.wakers.add(wake);
    });
  }
}
