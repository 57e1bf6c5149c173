// Time for the job queue. The queue machine may only use the leader's stamp on each command
// (DESIGN.md, "The job queue"), so on an idle queue its clock stands still: a lease that ended
// is still held and a delayed job never becomes due until some command commits. The queue
// group's leader therefore proposes the `tick` command, which changes nothing but the
// machine's time:
//
// - when the machine's next due time comes (a delayed or retrying job, a lease's end, a
//   repeat: `nextDueMs`) and no command has moved its clock there first, so that a 200 ms
//   backoff waits about 200 ms, not until the next whole second; at most one such tick every
//   `minGapMs`, however many due times crowd together;
// - and every `everyMs` regardless, should a due time have slipped by (a leader just elected
//   looks at its next check).
//
// Only the leader ticks, so a cluster adds one entry per due time or interval, and one tick
// is in flight at most: a slow commit does not pile up more of them behind it.

import type { Clock } from '../host/contracts.js';
import { Periodic } from './periodic.js';

export interface QueueTickerOptions {
  readonly clock: Clock;
  readonly everyMs: number;
  /** The least time between two ticks proposed for due times (default 20 ms). */
  readonly minGapMs?: number;
  readonly isLeader: () => boolean;
  /** Proposes a tick and resolves once it is applied. */
  readonly tick: () => Promise<void>;
  readonly onError: (err: unknown) => void;
  /** The machine's next due time, in its clock's terms (QueueReads.nextDueMs); omitted: none. */
  readonly nextDueMs?: () => number | null;
  /** The machine's time now: a due time it has reached needs no tick. */
  readonly machineNowMs?: () => number;
  /** Subscribes to the group's applied commands (each may change the next due time). */
  readonly onApplied?: (listener: () => void) => () => void;
}

export class QueueTicker {
  private readonly periodic: Periodic;
  private readonly minGapMs: number;
  private inFlight = false;
  /** When the last tick was proposed (clock time): the next due tick waits minGapMs after it. */
  private lastProposedMs = -Infinity;
  /** The timer armed for a due time, and when it fires (Infinity: none armed). */
  private dueTimer: unknown = null;
  private dueFiresMs = Infinity;
  private unsubscribe: (() => void) | null = null;
  private stopped = false;
  /** Ticks proposed and applied, for tests and metrics. */
  ticks = 0;
  /** Of those, the ones proposed for a due time rather than by the interval. */
  dueTicks = 0;

  constructor(private readonly o: QueueTickerOptions) {
    if (!Number.isSafeInteger(o.everyMs) || o.everyMs < 1)
      throw new RangeError(`The queue tick interval must be a positive integer, got ${o.everyMs}`);
    this.minGapMs = o.minGapMs ?? 20;
    if (!Number.isSafeInteger(this.minGapMs) || this.minGapMs < 1)
      throw new RangeError(`The queue tick gap must be a positive integer, got ${this.minGapMs}`);
    this.periodic = new Periodic(o.clock, o.everyMs, () => this.check());
  }

  start(): void {
    this.periodic.start();
    this.unsubscribe ??= this.o.onApplied?.(() => this.arm()) ?? null;
  }

  stop(): void {
    this.stopped = true;
    this.periodic.stop();
    this.unsubscribe?.();
    this.unsubscribe = null;
    this.disarm();
  }

  /** One look: the leader proposes a tick unless its previous one is still in flight. */
  check(): void {
    this.propose(false);
    this.arm();
  }

  /**
   * Arms a timer for the machine's next due time, unless one fires as early already; called
   * after every applied batch, so cheap: three heap peeks and a comparison.
   */
  arm(): void {
    if (this.stopped || this.o.nextDueMs === undefined || !this.o.isLeader()) return;
    const due = this.o.nextDueMs();
    if (due === null) return;
    const fires = Math.max(due, this.lastProposedMs + this.minGapMs);
    // Beyond the interval the periodic check arms it later. A timer is never set further out:
    // Node fires one of more than 2^31 - 1 ms (24.8 days: a long delay, a monthly repeat) at
    // once, and each such firing would have proposed a tick, over and over.
    if (fires >= this.dueFiresMs || fires - this.o.clock.nowMs() > this.o.everyMs) return;
    this.disarm();
    this.dueFiresMs = fires;
    this.dueTimer = this.o.clock.setTimeout(
      () => {
        this.dueTimer = null;
        this.dueFiresMs = Infinity;
        this.onDue(due);
      },
      Math.max(0, fires - this.o.clock.nowMs()),
    );
  }

  private onDue(due: number): void {
    // A command applied since may have moved the machine's clock past it already.
    if ((this.o.machineNowMs?.() ?? -Infinity) >= due) this.arm();
    // A tick in flight arms again once applied; one is proposed otherwise.
    else this.propose(true);
  }

  private disarm(): void {
    if (this.dueTimer !== null) this.o.clock.clearTimeout(this.dueTimer);
    this.dueTimer = null;
    this.dueFiresMs = Infinity;
  }

  /** Proposes a tick if this node leads and none is in flight; whether it did. */
  private propose(forDue: boolean): boolean {
    if (this.stopped || !this.o.isLeader() || this.inFlight) return false;
    this.inFlight = true;
    this.lastProposedMs = this.o.clock.nowMs();
    this.o.tick().then(
      () => {
        this.inFlight = false;
        this.ticks++;
        if (forDue) this.dueTicks++;
        this.arm();
      },
      (err: unknown) => {
        this.inFlight = false;
        this.o.onError(err);
      },
    );
    return true;
  }
}
