// The bounded two-lane send queue of one peer. Liveness traffic (heartbeats, votes, responses,
// ReadIndex) goes in the control lane and is always taken first; appends and snapshots go in
// the bulk lane. A heartbeat therefore never waits behind a queued backlog of appends (Raft's
// election timer, paper §5.2, must not fire because the leader is busy replicating).

import type { Message } from '../raft/types.js';
import { isBulk } from './types.js';

export interface QueuedMessage {
  readonly msg: Message;
  readonly attachment: Uint8Array | null;
  /** The Raft group the message belongs to. */
  readonly group: number;
  /** Entry data plus attachment bytes: what the bulk byte bound counts. */
  readonly sizeBytes: number;
}

export interface SendQueueLimits {
  /** Most messages waiting in each lane. */
  readonly maxQueuedMessages: number;
  /** Most entry and attachment bytes waiting in the bulk lane (one item is always admitted). */
  readonly maxQueuedBytes: number;
}

class Lane {
  private items: (QueuedMessage | undefined)[] = [];
  private head = 0;
  bytes = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  push(item: QueuedMessage): void {
    this.items.push(item);
    this.bytes += item.sizeBytes;
  }

  shift(): QueuedMessage | undefined {
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head];
    this.items[this.head] = undefined;
    this.head += 1;
    // Compact once the consumed prefix dominates, keeping shift O(1) amortised.
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    if (item !== undefined) this.bytes -= item.sizeBytes;
    return item;
  }

  clear(): number {
    const n = this.length;
    this.items = [];
    this.head = 0;
    this.bytes = 0;
    return n;
  }
}

export function messageSizeBytes(msg: Message, attachment: Uint8Array | null): number {
  let n = attachment?.byteLength ?? 0;
  if (msg.type === 'append') for (const e of msg.entries) n += e.data.byteLength;
  return n;
}

export class SendQueue {
  private readonly control = new Lane();
  private readonly bulk = new Lane();

  constructor(private readonly limits: SendQueueLimits) {}

  get length(): number {
    return this.control.length + this.bulk.length;
  }

  /** Adds the message to its lane; false when the lane is full (the caller counts a drop). */
  offer(msg: Message, attachment: Uint8Array | null, group = 0): boolean {
    const item = { msg, attachment, group, sizeBytes: messageSizeBytes(msg, attachment) };
    const lane = isBulk(msg.type) ? this.bulk : this.control;
    if (lane.length >= this.limits.maxQueuedMessages) return false;
    if (lane.length > 0 && lane.bytes + item.sizeBytes > this.limits.maxQueuedBytes) return false;
    lane.push(item);
    return true;
  }

  /** The next control message, if any. */
  nextControl(): QueuedMessage | undefined {
    return this.control.shift();
  }

  /** The next bulk message, if any. */
  nextBulk(): QueuedMessage | undefined {
    return this.bulk.shift();
  }

  /** Empties both lanes and returns how many messages were discarded. */
  clear(): number {
    return this.control.clear() + this.bulk.clear();
  }
}
