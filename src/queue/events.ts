// The queue's event stream: every transition, in log order, kept up to a count. It is state
// like any other (every replica holds the same events, and snapshots carry them), so a reader
// can resume from a position on any node. Older events are trimmed; a reader whose position
// falls before the oldest kept is told that it missed some rather than silently skipping them.

import type { EventPosition, EventType, QueueEvent } from './types.js';

export interface EventRead {
  readonly events: readonly QueueEvent[];
  /** Pass as `after` to read on. */
  readonly next: EventPosition;
  /** Events after the reader's position were trimmed before it read them: it missed some. */
  readonly behind: boolean;
}

export interface EventLogState {
  readonly trimmed: number;
  readonly lastTrimmed: EventPosition;
  readonly last: EventPosition;
}

export function positionBefore(a: EventPosition, b: EventPosition): boolean {
  return a.index < b.index || (a.index === b.index && a.seq < b.seq);
}

export class EventLog {
  /** Oldest first. A ring would save the shifts; trimming in blocks keeps them rare. */
  private events: QueueEvent[] = [];
  private start = 0;
  /** Events ever trimmed, and the position of the newest of them. */
  private trimmed = 0;
  private lastTrimmed: EventPosition = { index: 0, seq: 0 };
  private last: EventPosition = { index: 0, seq: 0 };

  constructor(private readonly max: number) {}

  append(e: Omit<QueueEvent, 'seq'> & { readonly type: EventType }): void {
    const seq = e.index === this.last.index ? this.last.seq + 1 : 1;
    const event: QueueEvent = { ...e, seq };
    this.last = { index: event.index, seq };
    this.events.push(event);
    if (this.events.length - this.start > this.max) {
      const gone = this.events[this.start] as QueueEvent;
      this.lastTrimmed = { index: gone.index, seq: gone.seq };
      this.start++;
      this.trimmed++;
      // Drop the trimmed prefix once it is as long as what is kept: amortised O(1) per event.
      if (this.start >= this.max) {
        this.events = this.events.slice(this.start);
        this.start = 0;
      }
    }
  }

  get size(): number {
    return this.events.length - this.start;
  }

  /** Events strictly after `after`, at most `limit`, optionally of one queue. */
  read(after: EventPosition, limit: number, queue: string | null): EventRead {
    const ev = this.events;
    // The first kept event after `after`, by binary search: the log is sorted by position.
    let lo = this.start;
    let hi = ev.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (positionBefore(after, ev[mid] as QueueEvent)) hi = mid;
      else lo = mid + 1;
    }
    const behind = this.trimmed > 0 && positionBefore(after, this.lastTrimmed);
    const out: QueueEvent[] = [];
    let next = after;
    for (let i = lo; i < ev.length && out.length < limit; i++) {
      const e = ev[i] as QueueEvent;
      next = { index: e.index, seq: e.seq };
      if (queue === null || e.queue === queue) out.push(e);
    }
    return { events: out, next, behind };
  }

  /** The kept events, oldest first (for snapshots and tests). */
  kept(): readonly QueueEvent[] {
    return this.events.slice(this.start);
  }

  state(): EventLogState {
    return { trimmed: this.trimmed, lastTrimmed: this.lastTrimmed, last: this.last };
  }

  restore(events: readonly QueueEvent[], s: EventLogState): void {
    this.events = [...events];
    this.start = 0;
    this.trimmed = s.trimmed;
    this.lastTrimmed = s.lastTrimmed;
    this.last = s.last;
  }
}
