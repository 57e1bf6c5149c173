// A bounded window of AppendEntries messages sent to one follower and not yet acknowledged,
// limited both in messages and in bytes of entry data (flow control, as in etcd-io/raft's
// tracker/inflights.go). A ring buffer: the oldest message is at `start`.

import { assert } from './errors.js';
import type { Index } from './types.js';

export class Inflights {
  private readonly lastIndexes: Index[];
  private readonly sizes: number[];
  private start = 0;
  /** Invariant: 0 <= count <= capacity. */
  private count = 0;
  /** Invariant: the sum of sizes of the messages in the window. */
  private bytes = 0;

  constructor(
    private readonly capacity: number,
    private readonly maxBytes: number,
  ) {
    assert(capacity >= 1, `Inflights capacity must be >= 1, got ${capacity}`);
    this.lastIndexes = new Array<number>(capacity).fill(0);
    this.sizes = new Array<number>(capacity).fill(0);
  }

  /** Records a message whose last entry is `lastIndex` carrying `sizeBytes` of entry data. */
  add(lastIndex: Index, sizeBytes: number): void {
    assert(!this.full(), 'Cannot add to a full inflights window');
    if (this.count > 0) {
      const newest = this.lastIndexes[(this.start + this.count - 1) % this.capacity] as number;
      assert(lastIndex > newest, `Inflight index ${lastIndex} must exceed ${newest}`);
    }
    const slot = (this.start + this.count) % this.capacity;
    this.lastIndexes[slot] = lastIndex;
    this.sizes[slot] = sizeBytes;
    this.count++;
    this.bytes += sizeBytes;
  }

  /** Frees every message whose last index is <= `index` (they were acknowledged). */
  freeLE(index: Index): void {
    while (this.count > 0) {
      const slot = this.start;
      if ((this.lastIndexes[slot] as number) > index) break;
      this.bytes -= this.sizes[slot] as number;
      this.start = (this.start + 1) % this.capacity;
      this.count--;
    }
    if (this.count === 0) this.start = 0;
  }

  /** Frees the oldest message: a heartbeat answer proved the follower alive, so let one through. */
  freeFirstOne(): void {
    if (this.count === 0) return;
    this.freeLE(this.lastIndexes[this.start] as number);
  }

  full(): boolean {
    return this.count === this.capacity || this.bytes >= this.maxBytes;
  }

  size(): number {
    return this.count;
  }

  reset(): void {
    this.start = 0;
    this.count = 0;
    this.bytes = 0;
  }
}
