// The simulator's agenda: a binary min-heap of events ordered by virtual time, then by the
// order they were scheduled, so that two events at the same instant always run in the same
// order and a seed replays exactly.

export interface Scheduled<T> {
  readonly timeMs: number;
  readonly seq: number;
  readonly event: T;
}

function before<T>(a: Scheduled<T>, b: Scheduled<T>): boolean {
  return a.timeMs < b.timeMs || (a.timeMs === b.timeMs && a.seq < b.seq);
}

export class EventQueue<T> {
  private readonly heap: Scheduled<T>[] = [];
  private nextSeq = 0;

  get size(): number {
    return this.heap.length;
  }

  /** When the next event is due (Infinity when none is). */
  peekTimeMs(): number {
    return this.heap[0]?.timeMs ?? Infinity;
  }

  push(timeMs: number, event: T): void {
    const item: Scheduled<T> = { timeMs, seq: this.nextSeq++, event };
    const h = this.heap;
    let i = h.length;
    h.push(item);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = h[parent] as Scheduled<T>;
      if (!before(item, p)) break;
      h[i] = p;
      i = parent;
    }
    h[i] = item;
  }

  pop(): Scheduled<T> | undefined {
    const h = this.heap;
    const top = h[0];
    const last = h.pop();
    if (top === undefined || last === undefined || h.length === 0) return top;
    let i = 0;
    const n = h.length;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const child = r < n && before(h[r] as Scheduled<T>, h[l] as Scheduled<T>) ? r : l;
      const c = h[child] as Scheduled<T>;
      if (!before(c, last)) break;
      h[i] = c;
      i = child;
    }
    h[i] = last;
    return top;
  }
}
