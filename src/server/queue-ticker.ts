// Time for the job queue. The queue machine may only use the leader's stamp on each command
// (DESIGN.md, "The job queue"), so on an idle queue its clock stands still: a lease that ended
// is still held and a delayed job never becomes due until some command commits. The queue
// group's leader therefore proposes the `tick` command every `everyMs`; it changes nothing but
// the machine's time. Only the leader does, so a cluster adds one entry per interval, and a
// new leader starts ticking at its next check. One tick is in flight at most: a slow commit
// does not pile up more of them behind it.

import type { Clock } from '../host/contracts.js';
import { Periodic } from './periodic.js';

export interface QueueTickerOptions {
  readonly clock: Clock;
  readonly everyMs: number;
  readonly isLeader: () => boolean;
  /** Proposes a tick and resolves once it is applied. */
  readonly tick: () => Promise<void>;
  readonly onError: (err: unknown) => void;
}

export class QueueTicker {
  private readonly periodic: Periodic;
  private inFlight = false;
  /** Ticks proposed and applied, for tests and metrics. */
  ticks = 0;

  constructor(private readonly o: QueueTickerOptions) {
    if (!Number.isSafeInteger(o.everyMs) || o.everyMs < 1)
      throw new RangeError(`The queue tick interval must be a positive integer, got ${o.everyMs}`);
    this.periodic = new Periodic(o.clock, o.everyMs, () => this.check());
  }

  start(): void {
    this.periodic.start();
  }

  stop(): void {
    this.periodic.stop();
  }

  /** One look: the leader proposes a tick unless its previous one is still in flight. */
  check(): void {
    if (!this.o.isLeader() || this.inFlight) return;
    this.inFlight = true;
    this.o.tick().then(
      () => {
        this.inFlight = false;
        this.ticks++;
      },
      (err: unknown) => {
        this.inFlight = false;
        this.o.onError(err);
      },
    );
  }
}
