// What the ranges' own logs would say, for tests of the map that follows them: a contiguous
// set of ranges that splits and changes replicas as ranges do, remembering every descriptor
// each change produced (the record a proposer would send to the meta group, in the order the
// ranges applied them). Tests deliver those records to a map late, twice or out of order.

import { compareBytes } from '../../src/kv/kv-store.js';
import { RangeMap } from '../../src/ranges/range-map.js';
import {
  FIRST_ALLOCATED_RANGE,
  FIRST_RANGE,
  type RangeDescriptor,
} from '../../src/ranges/types.js';

export const key = (s: string): Uint8Array => new TextEncoder().encode(s);

export function desc(
  id: number,
  start: string,
  end: string | null,
  generation: number,
  replicas: readonly number[] = [1, 2, 3],
): RangeDescriptor {
  return { id, start: key(start), end: end === null ? null : key(end), generation, replicas };
}

/** One change a range's log applied, as it would be recorded in the meta group. */
export type RangeEvent =
  | { readonly kind: 'split'; readonly left: RangeDescriptor; readonly right: RangeDescriptor }
  | { readonly kind: 'replicas'; readonly range: RangeDescriptor };

export class RangeLogs {
  /** The ranges as their own logs say now, sorted by start. */
  ranges: RangeDescriptor[];
  readonly events: RangeEvent[] = [];
  /** Every descriptor any range ever had, by `id@generation`. */
  readonly history = new Map<string, RangeDescriptor>();
  private nextId = FIRST_ALLOCATED_RANGE;

  constructor(readonly replicas: readonly number[] = [1, 2, 3]) {
    const first: RangeDescriptor = {
      id: FIRST_RANGE,
      start: new Uint8Array(0),
      end: null,
      generation: 0,
      replicas,
    };
    this.ranges = [first];
    this.remember(first);
  }

  /** The map the meta group starts from. */
  bootstrapMap(): RangeMap {
    return RangeMap.bootstrap(this.replicas);
  }

  private remember(d: RangeDescriptor): void {
    this.history.set(`${d.id}@${d.generation}`, d);
  }

  holding(k: Uint8Array): number {
    let i = 0;
    while (
      i + 1 < this.ranges.length &&
      compareBytes((this.ranges[i + 1] as RangeDescriptor).start, k) <= 0
    )
      i++;
    return i;
  }

  /** Splits the range holding `at` there; null when `at` is already a range's start. */
  split(at: Uint8Array): RangeEvent | null {
    const i = this.holding(at);
    const r = this.ranges[i] as RangeDescriptor;
    if (compareBytes(r.start, at) === 0) return null;
    const generation = r.generation + 1;
    const left = { ...r, end: at, generation };
    const right = { id: this.nextId++, start: at, end: r.end, generation, replicas: r.replicas };
    this.ranges.splice(i, 1, left, right);
    this.remember(left);
    this.remember(right);
    const e: RangeEvent = { kind: 'split', left, right };
    this.events.push(e);
    return e;
  }

  /** Gives the `which`-th range (modulo their number) new replicas. */
  changeReplicas(which: number, replicas: readonly number[]): RangeEvent {
    const i = which % this.ranges.length;
    const r = this.ranges[i] as RangeDescriptor;
    const range = { ...r, generation: r.generation + 1, replicas };
    this.ranges[i] = range;
    this.remember(range);
    const e: RangeEvent = { kind: 'replicas', range };
    this.events.push(e);
    return e;
  }
}

/** Plain data of a descriptor, for deepEqual against frozen copies. */
export function plain(d: RangeDescriptor): unknown {
  return {
    id: d.id,
    start: [...d.start],
    end: d.end === null ? null : [...d.end],
    generation: d.generation,
    replicas: [...d.replicas],
  };
}
