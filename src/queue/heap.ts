// A 4-ary min-heap whose items know their own position, so that one can be removed or
// re-keyed in O(log n) (a cancelled waiting job, a heartbeat that moves a lease). A job sits in
// at most one heap at a time (its queue's waiting heap, or the machine's timer, lease or
// retention heap), so a single position field per job serves them all.
//
// The order is by two numbers, (primary, sequence), and must be total (the sequence unique):
// then what a heap yields depends only on its contents, never on the order they were inserted
// in, and a machine rebuilt from a snapshot pops exactly what the original would have.
//
// The keys are copied into two typed arrays beside the items when an item enters (or is
// re-keyed: a caller that changes an item's key must call `update`), so sifting compares numbers in contiguous memory instead of reading fields of
// objects scattered over a heap of a million jobs. Four children per node rather than two
// halve the levels, hence the items moved and the objects whose position is rewritten per
// pop; the four keys compared at each level share a cache line.

import { strict as assert } from 'node:assert';

export interface HeapItem {
  /** Index in the heap holding the item; -1 when in none. */
  heapPos: number;
}

export class IndexedHeap<T extends HeapItem> {
  private readonly items: T[] = [];
  private primary = new Float64Array(16);
  private sequence = new Float64Array(16);

  /** The item's key: `primary(item)` first, ties broken by `sequence(item)` (unique). */
  constructor(
    private readonly primaryOf: (item: T) => number,
    private readonly sequenceOf: (item: T) => number,
  ) {}

  get size(): number {
    return this.items.length;
  }

  peek(): T | undefined {
    return this.items[0];
  }

  push(item: T): void {
    assert.equal(item.heapPos, -1, 'an item sits in one heap at a time');
    const i = this.items.length;
    if (i === this.primary.length) this.grow();
    this.items.push(item);
    this.primary[i] = this.primaryOf(item);
    this.sequence[i] = this.sequenceOf(item);
    item.heapPos = i;
    this.up(i);
  }

  pop(): T | undefined {
    const top = this.items[0];
    if (top !== undefined) this.remove(top);
    return top;
  }

  has(item: T): boolean {
    return item.heapPos >= 0 && this.items[item.heapPos] === item;
  }

  remove(item: T): void {
    assert.ok(this.has(item), 'removing an item the heap does not hold');
    const i = item.heapPos;
    const n = this.items.length - 1;
    const last = this.items.pop() as T;
    item.heapPos = -1;
    if (last === item) return;
    this.place(i, last, this.primary[n] as number, this.sequence[n] as number);
    this.up(i);
    this.down(last.heapPos);
  }

  /** Restores the order after the item's key changed. */
  update(item: T): void {
    assert.ok(this.has(item), 'updating an item the heap does not hold');
    const i = item.heapPos;
    this.primary[i] = this.primaryOf(item);
    this.sequence[i] = this.sequenceOf(item);
    this.up(i);
    this.down(item.heapPos);
  }

  /** Every item, in no particular order. */
  values(): readonly T[] {
    return this.items;
  }

  private grow(): void {
    const p = new Float64Array(this.primary.length * 2);
    const s = new Float64Array(this.sequence.length * 2);
    p.set(this.primary);
    s.set(this.sequence);
    this.primary = p;
    this.sequence = s;
  }

  private place(i: number, item: T, p: number, s: number): void {
    this.items[i] = item;
    this.primary[i] = p;
    this.sequence[i] = s;
    item.heapPos = i;
  }

  private less(p: number, s: number, j: number): boolean {
    const q = this.primary[j] as number;
    return p < q || (p === q && s < (this.sequence[j] as number));
  }

  private up(i: number): void {
    const item = this.items[i] as T;
    const p = this.primary[i] as number;
    const s = this.sequence[i] as number;
    while (i > 0) {
      const parent = (i - 1) >> 2;
      if (!this.less(p, s, parent)) break;
      this.place(
        i,
        this.items[parent] as T,
        this.primary[parent] as number,
        this.sequence[parent] as number,
      );
      i = parent;
    }
    this.place(i, item, p, s);
  }

  private down(i: number): void {
    const n = this.items.length;
    const item = this.items[i] as T;
    const p = this.primary[i] as number;
    const s = this.sequence[i] as number;
    for (;;) {
      const first = 4 * i + 1;
      if (first >= n) break;
      let c = first;
      const end = Math.min(first + 4, n);
      for (let k = first + 1; k < end; k++)
        if (this.less(this.primary[k] as number, this.sequence[k] as number, c)) c = k;
      if (!this.lessAt(c, p, s)) break;
      this.place(i, this.items[c] as T, this.primary[c] as number, this.sequence[c] as number);
      i = c;
    }
    this.place(i, item, p, s);
  }

  /** The item at `j` comes before (p, s). */
  private lessAt(j: number, p: number, s: number): boolean {
    const q = this.primary[j] as number;
    return q < p || (q === p && (this.sequence[j] as number) < s);
  }
}
