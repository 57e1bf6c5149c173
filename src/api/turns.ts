// Client work in turns, so that Raft's own work goes first.
//
// A node's event loop serves Raft (tick timers, heartbeats and their answers read from peer
// sockets, disk completions) and clients (parsing requests, proposing, rendering answers) on
// one thread. Node runs all the callbacks of one phase before the next: every request that
// arrived is handled in the same poll phase, and every proposal an applied batch resolves is
// answered in the same microtask checkpoint. With hundreds of requests in flight that is tens
// of milliseconds of CPU at a time, and on a machine whose cores are shared that many times
// more in wall time: the tick timer and the follower's answer wait behind it all.
//
// Instead a client request takes a turn before its work starts and again before its answer is
// rendered. At most `perTurn` requests proceed in each turn, and a turn runs in the check
// phase (setImmediate); the next turn is scheduled from inside it, so it runs only after the
// loop has gone round once more: timers fired, peer sockets read, heartbeats answered. Client
// work thus costs Raft at most one turn's worth of delay per loop iteration, however many
// requests wait. The queue holds at most two places per admitted request, so admission bounds it.
//
// A request that finds nobody waiting and the current turn's budget unspent proceeds at once
// (`pass`): it would otherwise wait a whole loop iteration for nothing, twice per request, and
// on an idle node that wait is most of a write's time that is neither disk nor network. What
// proceeds that way counts against the budget of the turn in progress, which the next turn
// resets, so the bound above holds: at most `perTurn` requests proceed between two turns.

export type Schedule = (fn: () => void) => void;

export class TurnQueue {
  private waiting: ((() => void) | undefined)[] = [];
  private head = 0;
  private scheduled = false;
  /** Requests that proceeded since the last turn ran. Invariant: <= perTurn. */
  private used = 0;

  constructor(
    /** Requests that proceed per turn of the event loop. */
    readonly perTurn: number,
    private readonly schedule: Schedule = (fn) => void setImmediate(fn),
  ) {
    if (!Number.isInteger(perTurn) || perTurn < 1)
      throw new RangeError(`perTurn must be an integer >= 1, got ${perTurn}`);
  }

  /** Requests waiting for a turn. */
  get length(): number {
    return this.waiting.length - this.head;
  }

  /**
   * Whether a request may proceed now, without waiting for a turn: true when nobody waits and
   * fewer than `perTurn` requests proceeded since the last turn (the request is counted). On
   * false, the caller waits with `turn()`.
   */
  pass(): boolean {
    if (this.length > 0 || this.used >= this.perTurn) return false;
    this.used += 1;
    // A turn resets the budget; without one scheduled, a second burst in this loop iteration
    // would be refused its fast path for good.
    this.armReset();
    return true;
  }

  /** Resolves when this request's turn comes (first come, first served). */
  turn(): Promise<void> {
    return new Promise<void>((resolve) => {
      this.waiting.push(resolve);
      this.arm();
    });
  }

  private arm(): void {
    if (this.length === 0) return;
    this.armReset();
  }

  private armReset(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    this.schedule(() => this.run());
  }

  private run(): void {
    this.scheduled = false;
    this.used = 0;
    for (; this.used < this.perTurn && this.head < this.waiting.length; this.used++) {
      const resolve = this.waiting[this.head];
      this.waiting[this.head] = undefined;
      this.head += 1;
      resolve?.();
    }
    // Drop the consumed prefix once it dominates, keeping each turn O(perTurn) amortised.
    if (this.head > 1024 && this.head * 2 > this.waiting.length) {
      this.waiting = this.waiting.slice(this.head);
      this.head = 0;
    }
    this.arm();
  }
}
