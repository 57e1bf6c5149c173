// The queue's event stream: every transition, in log order, kept up to a count. It is state
// like any other (every replica holds the same events, and snapshots carry them), so a reader
// can resume from a position on any node. Older events are trimmed; a reader whose position
// falls before the oldest kept is told that it missed some rather than silently skipping them.
//
// Every member appends about three events per job and most are never read, so the log keeps
// them in columns of a ring (typed arrays for the numbers, arrays of the strings the jobs and
// queues already hold) and makes an event object only when one is read. One object per event,
// kept until 10,000 later ones trimmed it, was a third of the apply path's garbage collection:
// each survived the young generation and died in the old (docs/BENCHMARKS.md, "What one job
// costs each member").

import type { EventPosition, EventType, QueueEvent } from './types.js';

export interface EventRead {
  readonly events: readonly QueueEvent[];
  /** Pass as `after` to read on. */
  readonly next: EventPosition;
  /**
   * Events after the reader's position were trimmed before it read them: it missed some. Read
   * with a queue, events of that queue (once the log was restored from a snapshot, or past
   * MAX_TRIM_MARKS queues, any trimmed before that: it may say so wrongly, never fail to).
   */
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

/** Event types as the ring stores them: their rank in this list. Append only. */
const eventTypes: readonly EventType[] = [
  'added',
  'waiting',
  'active',
  'progress',
  'completed',
  'failed',
  'stalled',
  'dead',
  'cancelled',
  'retried',
  'deleted',
  'paused',
  'resumed',
];
const typeCode = new Map<EventType, number>(eventTypes.map((t, i) => [t, i]));

/** Slots the ring starts with; it doubles up to what it must hold (max + 1). */
const INITIAL_SLOTS = 1_024;

/**
 * Queues whose newest trimmed event the log remembers, at most: past it, it forgets them all
 * and answers as though every queue had lost events up to the newest trimmed (as after a
 * restore), which may say `behind` wrongly but never fails to.
 */
const MAX_TRIM_MARKS = 4_096;

export class EventLog {
  // The ring: the kept events are slots head, head + 1, ... (mod slots), `size` of them,
  // oldest first. Invariant: size <= slots; size <= max after every append.
  private slots: number;
  private head = 0;
  private count = 0;
  private index: Float64Array;
  private seq: Float64Array;
  private timeMs: Float64Array;
  private type: Uint8Array;
  private queue: string[];
  private job: (string | null)[];
  private detail: (string | number | null)[];
  /** Events ever trimmed, and the position of the newest of them. */
  private trimmed = 0;
  private lastTrimmedIndex = 0;
  private lastTrimmedSeq = 0;
  /** The position of the newest event appended (0, 0: none yet). */
  private lastIndex = 0;
  private lastSeq = 0;
  /**
   * Per queue, the position of its newest trimmed event, so that a reader of one queue is told
   * it is behind only when that queue lost events. Not replicated state (snapshots do not carry
   * it): it answers reads only. Events trimmed before a restore, or before the marks were
   * forgotten, are of unknown queues: up to `trimFloor` every queue counts as trimmed.
   */
  private readonly trimMarks = new Map<string, EventPosition>();
  private trimFloor: EventPosition = { index: 0, seq: 0 };

  constructor(private readonly max: number) {
    this.slots = Math.min(INITIAL_SLOTS, max + 1);
    this.index = new Float64Array(this.slots);
    this.seq = new Float64Array(this.slots);
    this.timeMs = new Float64Array(this.slots);
    this.type = new Uint8Array(this.slots);
    this.queue = new Array<string>(this.slots).fill('');
    this.job = new Array<string | null>(this.slots).fill(null);
    this.detail = new Array<string | number | null>(this.slots).fill(null);
  }

  append(
    index: number,
    timeMs: number,
    type: EventType,
    queue: string,
    job: string | null,
    detail: string | number | null,
  ): void {
    const seq = index === this.lastIndex ? this.lastSeq + 1 : 1;
    if (this.count === this.slots) this.grow(this.count + 1);
    const at = (this.head + this.count) % this.slots;
    this.index[at] = index;
    this.seq[at] = seq;
    this.timeMs[at] = timeMs;
    this.type[at] = typeCode.get(type) as number;
    this.queue[at] = queue;
    this.job[at] = job;
    this.detail[at] = detail;
    this.count++;
    this.lastIndex = index;
    this.lastSeq = seq;
    if (this.count > this.max) {
      const gone = this.head;
      this.lastTrimmedIndex = this.index[gone] as number;
      this.lastTrimmedSeq = this.seq[gone] as number;
      this.markTrimmed(this.queue[gone] as string);
      // Let the trimmed strings go with their jobs.
      this.job[gone] = null;
      this.detail[gone] = null;
      this.head = (this.head + 1) % this.slots;
      this.count--;
      this.trimmed++;
    }
  }

  private markTrimmed(queue: string): void {
    const at = { index: this.lastTrimmedIndex, seq: this.lastTrimmedSeq };
    if (!this.trimMarks.has(queue) && this.trimMarks.size >= MAX_TRIM_MARKS) {
      this.trimMarks.clear();
      this.trimFloor = at;
      return;
    }
    this.trimMarks.set(queue, at);
  }

  /** Makes room for `need` events, keeping the order (the oldest moves to slot 0). */
  private grow(need: number): void {
    let slots = this.slots;
    while (slots < need) slots *= 2;
    const order = (i: number): number => (this.head + i) % this.slots;
    const moveNumbers = <A extends Float64Array | Uint8Array>(from: A, to: A): A => {
      for (let i = 0; i < this.count; i++) to[i] = from[order(i)] as number;
      return to;
    };
    const moveRefs = <T>(from: T[], fill: T): T[] => {
      const to = new Array<T>(slots).fill(fill);
      for (let i = 0; i < this.count; i++) to[i] = from[order(i)] as T;
      return to;
    };
    this.index = moveNumbers(this.index, new Float64Array(slots));
    this.seq = moveNumbers(this.seq, new Float64Array(slots));
    this.timeMs = moveNumbers(this.timeMs, new Float64Array(slots));
    this.type = moveNumbers(this.type, new Uint8Array(slots));
    this.queue = moveRefs(this.queue, '');
    this.job = moveRefs(this.job, null);
    this.detail = moveRefs(this.detail, null);
    this.head = 0;
    this.slots = slots;
  }

  get size(): number {
    return this.count;
  }

  /** The slot of the `i`-th kept event, oldest first. */
  private slot(i: number): number {
    return (this.head + i) % this.slots;
  }

  private eventAt(at: number): QueueEvent {
    // The fields in the order the log always built them: snapshots encode the same bytes.
    return {
      index: this.index[at] as number,
      timeMs: this.timeMs[at] as number,
      type: eventTypes[this.type[at] as number] as EventType,
      queue: this.queue[at] as string,
      job: this.job[at] as string | null,
      detail: this.detail[at] as string | number | null,
      seq: this.seq[at] as number,
    };
  }

  /** Whether position `after` is before the `i`-th kept event. */
  private before(after: EventPosition, i: number): boolean {
    const at = this.slot(i);
    const index = this.index[at] as number;
    return after.index < index || (after.index === index && after.seq < (this.seq[at] as number));
  }

  /** Events strictly after `after`, at most `limit`, optionally of one queue. */
  read(after: EventPosition, limit: number, queue: string | null): EventRead {
    // The first kept event after `after`, by binary search: the log is sorted by position.
    let lo = 0;
    let hi = this.count;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.before(after, mid)) hi = mid;
      else lo = mid + 1;
    }
    // Of one queue: behind only if that queue lost events after the reader's position.
    const trimmedUpTo =
      queue === null
        ? { index: this.lastTrimmedIndex, seq: this.lastTrimmedSeq }
        : later(this.trimFloor, this.trimMarks.get(queue));
    const behind = this.trimmed > 0 && positionBefore(after, trimmedUpTo);
    const out: QueueEvent[] = [];
    let next = after;
    for (let i = lo; i < this.count && out.length < limit; i++) {
      const at = this.slot(i);
      next = { index: this.index[at] as number, seq: this.seq[at] as number };
      if (queue === null || this.queue[at] === queue) out.push(this.eventAt(at));
    }
    return { events: out, next, behind };
  }

  /** The kept events, oldest first (for snapshots and tests). */
  kept(): readonly QueueEvent[] {
    const out: QueueEvent[] = new Array<QueueEvent>(this.count);
    for (let i = 0; i < this.count; i++) out[i] = this.eventAt(this.slot(i));
    return out;
  }

  state(): EventLogState {
    return {
      trimmed: this.trimmed,
      lastTrimmed: { index: this.lastTrimmedIndex, seq: this.lastTrimmedSeq },
      last: { index: this.lastIndex, seq: this.lastSeq },
    };
  }

  restore(events: readonly QueueEvent[], s: EventLogState): void {
    this.head = 0;
    this.count = 0;
    if (this.slots < events.length + 1) this.grow(events.length + 1);
    this.queue.fill('');
    this.job.fill(null);
    this.detail.fill(null);
    for (const [i, e] of events.entries()) {
      const code = typeCode.get(e.type);
      if (code === undefined) throw new Error(`Unknown queue event type ${String(e.type)}`);
      this.index[i] = e.index;
      this.seq[i] = e.seq;
      this.timeMs[i] = e.timeMs;
      this.type[i] = code;
      this.queue[i] = e.queue;
      this.job[i] = e.job;
      this.detail[i] = e.detail;
    }
    this.count = events.length;
    this.trimmed = s.trimmed;
    this.lastTrimmedIndex = s.lastTrimmed.index;
    this.lastTrimmedSeq = s.lastTrimmed.seq;
    this.lastIndex = s.last.index;
    this.lastSeq = s.last.seq;
    this.trimMarks.clear();
    this.trimFloor = s.lastTrimmed;
  }
}

function later(a: EventPosition, b: EventPosition | undefined): EventPosition {
  return b !== undefined && positionBefore(a, b) ? b : a;
}
