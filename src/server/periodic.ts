// Work a node does on a fixed period of its clock (the leader's compaction, queue ticks, lease
// deadlines): one timer at a time, re-armed after each run, stopped for good by `stop`.

import type { Clock } from '../host/contracts.js';

export class Periodic {
  private timer: unknown = null;
  private stopped = false;

  constructor(
    private readonly clock: Clock,
    private readonly everyMs: number,
    private readonly run: () => void,
  ) {}

  start(): void {
    if (this.stopped || this.timer !== null) return;
    this.timer = this.clock.setTimeout(() => {
      this.timer = null;
      if (this.stopped) return;
      this.run();
      this.start();
    }, this.everyMs);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) this.clock.clearTimeout(this.timer);
    this.timer = null;
  }
}
