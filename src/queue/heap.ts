// A binary min-heap whose items know their own position, so that one can be removed or
// re-keyed in O(log n) (a cancelled waiting job, a heartbeat that moves a lease). A job sits in
// at most one heap at a time (its queue's waiting heap, the machine's timer heap or its lease
// heap), so a single position field per job serves all three.
//
// The order must be total (ties broken by a unique sequence number): then what a heap yields
// depends only on its contents, never on the order they were inserted in, and a machine
// rebuilt from a snapshot pops exactly what the original would have.

import { strict as assert } from 'node:assert';

export interface HeapItem {
  /** Index in the heap holding the item; -1 when in none. */
  heapPos: number;
}

export class IndexedHeap<T extends HeapItem> {
  private readonly items: T[] = [];

  /** `less(a, b)`: a comes out before b. Must be a strict total order over the items held. */
  constructor(private readonly less: (a: T, b: T) => boolean) {}

  get size(): number {
    return this.items.length;
  }

  peek(): T | undefined {
    return this.items[0];
  }

  push(item: T): void {
    assert.equal(item.heapPos, -1, 'an item sits in one heap at a time');
    item.heapPos = this.items.length;
    this.items.push(item);
    this.up(item.heapPos);
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
    const last = this.items.pop() as T;
    item.heapPos = -1;
    if (last === item) return;
    this.items[i] = last;
    last.heapPos = i;
    this.up(i);
    this.down(last.heapPos);
  }

  /** Restores the order after the item's key changed. */
  update(item: T): void {
    assert.ok(this.has(item), 'updating an item the heap does not hold');
    this.up(item.heapPos);
    this.down(item.heapPos);
  }

  /** Every item, in no particular order. */
  values(): readonly T[] {
    return this.items;
  }

  private up(i: number): void {
    const items = this.items;
    const item = items[i] as T;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = items[p] as T;
      if (!this.less(item, parent)) break;
      items[i] = parent;
      parent.heapPos = i;
      i = p;
    }
    items[i] = item;
    item.heapPos = i;
  }

  private down(i: number): void {
    const items = this.items;
    const n = items.length;
    const item = items[i] as T;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && this.less(items[r] as T, items[l] as T) ? r : l;
      const child = items[c] as T;
      if (!this.less(child, item)) break;
      items[i] = child;
      child.heapPos = i;
      i = c;
    }
    items[i] = item;
    item.heapPos = i;
  }
}
