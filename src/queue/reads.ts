// The queue machine's read queries, on the applied state. They change nothing and return
// copies; the node puts a ReadIndex barrier in front of them for linearizable reads. Each is
// bounded: a page holds at most `maxPageSize` items and a list looks at most at `maxListScan`
// jobs before returning a cursor to continue from.

import type { EventRead } from './events.js';
import { viewOf, type Job, type Repeatable } from './jobs.js';
import type { QueueCore } from './state.js';
import type { Backoff, EventPosition, JobState, JobView, QueueStats } from './types.js';

export interface JobPage {
  readonly jobs: readonly JobView[];
  /** Pass as `after` to read on; null when the list is exhausted. */
  readonly next: number | null;
}

export interface RepeatableView {
  readonly queue: string;
  readonly repeatId: string;
  readonly everyMs: number | null;
  readonly cron: string | null;
  readonly name: string;
  /** The template of each job it adds. */
  readonly payload: Uint8Array;
  readonly priority: number;
  readonly maxAttempts: number;
  readonly backoff: Backoff;
  readonly leaseMs: number;
  readonly nextMs: number;
}

export interface RepeatablePage {
  readonly repeatables: readonly RepeatableView[];
  /** Pass as `after` to read on; null when there are no more. */
  readonly next: string | null;
}

export abstract class QueueReads {
  constructor(protected readonly s: QueueCore) {}

  /** The machine's time, as of the last command applied. */
  timeMs(): number {
    return this.s.nowMs;
  }

  /**
   * The earliest time something runs by itself: a delayed or retrying job becoming due, a
   * lease ending, a repeat firing; null when nothing waits for time. It happens when a command
   * with that time or later applies (the queue's ticker proposes one then, QueueTicker).
   * Retention's removals and dedup windows are not counted: nothing waits for them.
   */
  nextDueMs(): number | null {
    const t = Math.min(
      this.s.timers.peek()?.runAtMs ?? Infinity,
      this.s.leases.peek()?.leaseExpiresMs ?? Infinity,
      this.s.repeatHeap.peek()?.nextMs ?? Infinity,
    );
    return t === Infinity ? null : t;
  }

  jobs(): number {
    return this.s.jobCount;
  }

  queueNames(): string[] {
    return [...this.s.queues.keys()];
  }

  stats(queue: string): QueueStats | null {
    const q = this.s.queues.get(queue);
    if (q === undefined) return null;
    return {
      queue,
      paused: q.paused,
      counts: { ...q.counts },
      rateLimit: q.rateLimit,
      concurrency: q.concurrency,
      keepCompleted: q.keepCompleted,
      keepDead: q.keepDead,
      maxReleases: q.maxReleases,
      totals: { ...q.totals },
    };
  }

  /**
   * How many jobs a claim on `queue` applied at `nowMs` could take, as the applied state has
   * it: its waiting jobs, capped by the concurrency limit's free slots and what is left of the
   * rate limit's window at that time (a window that has rolled over by then is whole again).
   * 0 while paused. A hint for a node deciding whether proposing a claim is worth a write; the
   * claim's apply decides (claims and ends applied meanwhile change it).
   */
  claimableNow(queue: string, nowMs: number): number {
    const q = this.s.queues.get(queue);
    if (q === undefined || q.paused) return 0;
    let n = q.waiting.size;
    if (q.concurrency !== null) n = Math.min(n, q.concurrency - q.counts.active);
    if (q.rateLimit !== null) {
      // A claim applies at the later of the proposer's stamp and the machine's time (after a
      // leader change the machine's may be ahead of this clock): judge the window there.
      const window = Math.floor(Math.max(nowMs, this.s.nowMs) / q.rateLimit.intervalMs);
      const used = window === q.rateWindow ? q.rateCount : 0;
      n = Math.min(n, q.rateLimit.max - used);
    }
    return Math.max(0, n);
  }

  getJob(queue: string, id: string): JobView | null {
    const j = this.s.queues.get(queue)?.jobs.get(id);
    return j === undefined ? null : viewOf(j);
  }

  /**
   * Jobs of a queue in a state, in the order they were added, after the cursor `after` (a
   * position from an earlier page; 0 from the start).
   */
  list(queue: string, state: JobState, o: { after?: number; limit?: number } = {}): JobPage {
    const q = this.s.queues.get(queue);
    if (q === undefined) return { jobs: [], next: null };
    const limit = Math.max(1, Math.min(o.limit ?? 100, this.s.limits.maxPageSize));
    const order = q.order;
    // `order` is sorted by seq: binary search for the first job after the cursor.
    let lo = 0;
    let hi = order.length;
    const after = o.after ?? 0;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((order[mid] as Job).seq <= after) lo = mid + 1;
      else hi = mid;
    }
    const out: JobView[] = [];
    const end = Math.min(order.length, lo + this.s.limits.maxListScan);
    let bytes = 0;
    for (let i = lo; i < end; i++) {
      const j = order[i] as Job;
      if (j.removed || j.state !== state) continue;
      // A page of large jobs ends at maxAnswerBytes (the first job always in it).
      bytes += j.payloadBytes + (j.result?.length ?? 0);
      if (out.length > 0 && bytes > this.s.limits.maxAnswerBytes)
        return { jobs: out, next: (order[i - 1] as Job).seq };
      out.push(viewOf(j));
      if (out.length === limit) return { jobs: out, next: i + 1 < order.length ? j.seq : null };
    }
    return { jobs: out, next: end < order.length ? (order[end - 1] as Job).seq : null };
  }

  /** Events after `after` ({index: 0, seq: 0} from the oldest kept), optionally of one queue. */
  eventsAfter(after: EventPosition, o: { limit?: number; queue?: string } = {}): EventRead {
    const limit = Math.max(1, Math.min(o.limit ?? 100, this.s.limits.maxPageSize));
    return this.s.events.read(after, limit, o.queue ?? null);
  }

  repeatablesOf(queue: string): RepeatableView[] {
    return [...this.s.repeatables.values()].filter((r) => r.queue === queue).map(repeatableView);
  }

  /**
   * A queue's repeatable jobs ordered by id, after the id `after` ('' from the start). The
   * machine holds at most `maxRepeatables` of them, which bounds the scan and the sort.
   */
  repeatablePage(queue: string, o: { after?: string; limit?: number } = {}): RepeatablePage {
    const limit = Math.max(1, Math.min(o.limit ?? 100, this.s.limits.maxPageSize));
    const after = o.after ?? '';
    const ids = [...this.s.repeatables.values()]
      .filter((r) => r.queue === queue && r.repeatId > after)
      .sort((a, b) => (a.repeatId < b.repeatId ? -1 : 1));
    const page = ids.slice(0, limit).map(repeatableView);
    return {
      repeatables: page,
      next: ids.length > limit ? (page[page.length - 1]?.repeatId ?? null) : null,
    };
  }
}

function repeatableView(r: Repeatable): RepeatableView {
  return {
    queue: r.queue,
    repeatId: r.repeatId,
    everyMs: r.everyMs,
    cron: r.cron?.source ?? null,
    name: r.name,
    payload: r.payload,
    priority: r.priority,
    maxAttempts: r.maxAttempts,
    backoff: r.backoff,
    leaseMs: r.leaseMs,
    nextMs: r.nextMs,
  };
}
