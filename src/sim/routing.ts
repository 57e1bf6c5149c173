// What a simulated client knows of the range map, as a real client caches it: the descriptor
// of each range it has heard of, the newest generation kept. A key goes to the range that
// holds it as last learned; a WRONG_RANGE refusal carries the refusing range's descriptor,
// and a key no known range holds sends the client to a node for its whole view (the ranges it
// runs and those split off them), as a client refreshes its map from the meta group.

import { compareBytes } from '../kv/kv-store.js';
import type { RangeDescriptor } from '../ranges/types.js';
import { WHOLE_KEY_SPACE } from '../ranges/range-machine.js';
import type { SimNode } from './sim-node.js';

const encoder = new TextEncoder();

export function holdsKey(d: RangeDescriptor, key: string): boolean {
  const k = encoder.encode(key);
  return compareBytes(k, d.start) >= 0 && (d.end === null || compareBytes(k, d.end) < 0);
}

/** Whether `key` lies strictly inside `d` (a split there leaves both halves non-empty). */
export function splitsInside(d: RangeDescriptor, key: string): boolean {
  const k = encoder.encode(key);
  return compareBytes(k, d.start) > 0 && (d.end === null || compareBytes(k, d.end) < 0);
}

/** Every descriptor a node holds: each range it runs, and each range split off one of them. */
export function nodeDescriptors(n: SimNode): RangeDescriptor[] {
  const out: RangeDescriptor[] = [];
  for (const id of n.groupIds()) {
    const g = n.rangeGroup(id);
    if (g === undefined) continue;
    out.push(g.range.descriptor(), ...g.range.children());
  }
  return out;
}

export class RouteCache {
  private readonly known = new Map<number, RangeDescriptor>([[0, WHOLE_KEY_SPACE]]);

  learn(d: RangeDescriptor): void {
    const had = this.known.get(d.id);
    if (had === undefined || had.generation < d.generation) this.known.set(d.id, d);
  }

  /** The range that holds `key` as last learned (the newest generation among those that do). */
  route(key: string): RangeDescriptor | null {
    let best: RangeDescriptor | null = null;
    for (const d of this.known.values())
      if (holdsKey(d, key) && (best === null || d.generation > best.generation)) best = d;
    return best;
  }
}
