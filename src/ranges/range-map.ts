// The range map: every range of the key space, sorted by start, as the meta group records it.
// It is a directory, not the authority: a range's own log decides its bounds and replicas, and
// the map learns them late, out of order, sometimes twice. So the map takes a descriptor only
// when it is newer than the one it holds (a higher generation) and when taking it leaves the
// key space covered exactly once; anything else is reported as already known or refused with a
// reason, and the map is unchanged.
//
// Immutable: every change returns a new map (a copy of the descriptor list, O(ranges)), so a
// reader or a snapshot holds a map that nothing changes under it. `version` grows by one at
// every change, so two maps of one history compare by version.

import { compareBytes } from '../kv/kv-store.js';
import { FIRST_ALLOCATED_RANGE, FIRST_RANGE, type RangeDescriptor, type RangeId } from './types.js';

/** Why the map refused a change; stable, so a caller can act on it. */
export type RangeMapRefusalCode =
  /** The descriptor is malformed, or the two are not the halves of one split. */
  | 'BAD_DESCRIPTOR'
  /** The map holds no range by that id (its creating split is not recorded yet). */
  | 'UNKNOWN_RANGE'
  /** A split's right half names a range the map already holds. */
  | 'RANGE_EXISTS'
  /** Taking the change would leave a gap or an overlap: an earlier change is not recorded yet. */
  | 'NOT_CONTIGUOUS';

/** What a change to the map did. */
export type RangeMapChange =
  | { readonly outcome: 'applied'; readonly map: RangeMap }
  /** The map already holds this generation of the range or a later one; nothing changed. */
  | { readonly outcome: 'known'; readonly message: string }
  | {
      readonly outcome: 'refused';
      readonly code: RangeMapRefusalCode;
      readonly message: string;
    };

export class RangeMap {
  /**
   * Index by id, made at the first `get`: a change finds its range by a scan instead, so that
   * a chain of changes (the meta machine's) costs one copy of the list each and no more.
   * Invariant: `byId.get(list[i].id) === i` for every i.
   */
  private byId: Map<RangeId, number> | null = null;

  /** Checks nothing: the checked ways in are `bootstrap`, `fromDescriptors` and the changes. */
  private constructor(
    /** Grows by one at every change; the first map (one range) is version 1. */
    readonly version: number,
    private readonly list: readonly RangeDescriptor[],
  ) {
    Object.freeze(list);
  }

  /** The first map: one range, the whole key space, id FIRST_RANGE, generation 0. */
  static bootstrap(replicas: readonly number[]): RangeMap {
    const first = { id: FIRST_RANGE, start: new Uint8Array(0), end: null, generation: 0, replicas };
    const problem = checkDescriptor(first);
    if (problem !== null) throw new RangeError(`Cannot bootstrap the range map: ${problem}`);
    return new RangeMap(1, [copyDescriptor(first)]);
  }

  /** A map from descriptors already sorted by start (a snapshot's); throws on any violation. */
  static fromDescriptors(version: number, descriptors: readonly RangeDescriptor[]): RangeMap {
    if (!Number.isSafeInteger(version) || version < 1)
      throw new RangeError(`A range map's version must be a positive integer, got ${version}`);
    for (const d of descriptors) {
      // Before copying: a copy would turn a start that is not bytes into bytes.
      const problem = checkDescriptor(d);
      if (problem !== null) throw new RangeError(`Not a valid range map: ${problem}`);
    }
    const map = new RangeMap(version, descriptors.map(copyDescriptor));
    const problems = checkRangeMap(map);
    if (problems.length > 0)
      throw new RangeError(`Not a valid range map: ${problems.slice(0, 3).join('; ')}`);
    return map;
  }

  get size(): number {
    return this.list.length;
  }

  /** Every range, sorted by start. */
  ranges(): readonly RangeDescriptor[] {
    return this.list;
  }

  get(id: RangeId): RangeDescriptor | undefined {
    if (this.byId === null) {
      const byId = new Map<RangeId, number>();
      this.list.forEach((d, i) => byId.set(d.id, i));
      this.byId = byId;
    }
    const i = this.byId.get(id);
    return i === undefined ? undefined : this.list[i];
  }

  /** The index of range `id`, or -1: by the index if made, else by a scan. */
  private indexOfId(id: RangeId): number {
    if (this.byId !== null) return this.byId.get(id) ?? -1;
    for (let i = 0; i < this.list.length; i++)
      if ((this.list[i] as RangeDescriptor).id === id) return i;
    return -1;
  }

  /** The range holding `key` (binary search on the starts); undefined only for a broken map. */
  lookup(key: Uint8Array): RangeDescriptor | undefined {
    const i = this.indexAtKey(key);
    const d = i < 0 ? undefined : this.list[i];
    if (d === undefined || (d.end !== null && compareBytes(key, d.end) >= 0)) return undefined;
    return d;
  }

  /** The ranges the keys [start, end) touch, in key order; end null: to the end of the space. */
  spanning(start: Uint8Array, end: Uint8Array | null): RangeDescriptor[] {
    if (end !== null && compareBytes(start, end) >= 0) return [];
    const out: RangeDescriptor[] = [];
    for (let i = Math.max(this.indexAtKey(start), 0); i < this.list.length; i++) {
      const d = this.list[i] as RangeDescriptor;
      if (end !== null && compareBytes(d.start, end) >= 0) break;
      if (d.end === null || compareBytes(d.end, start) > 0) out.push(d);
    }
    return out;
  }

  /** The index of the last range starting at or before `key`, or -1. */
  private indexAtKey(key: Uint8Array): number {
    let lo = 0;
    let hi = this.list.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (compareBytes((this.list[mid] as RangeDescriptor).start, key) <= 0) {
        found = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    return found;
  }

  /**
   * Records a split the range's own log applied: `left` keeps the range's id and start, `right`
   * is the new range; both carry the left's former generation plus one. Applied only when the
   * map holds the range at a lower generation and the halves cover exactly what it held.
   */
  recordSplit(left: RangeDescriptor, right: RangeDescriptor): RangeMapChange {
    const bad = checkDescriptor(left) ?? checkDescriptor(right) ?? checkHalves(left, right);
    if (bad !== null) return refuse('BAD_DESCRIPTOR', `Cannot record the split: ${bad}`);
    const i = this.indexOfId(left.id);
    const held = this.list[i];
    if (held === undefined)
      return refuse('UNKNOWN_RANGE', `Cannot record the split of range ${left.id}: no such range`);
    if (held.generation >= left.generation)
      return known(held, `the split into ${describeRange(left)} and ${describeRange(right)}`);
    if (this.indexOfId(right.id) >= 0)
      return refuse(
        'RANGE_EXISTS',
        `Cannot record the split of range ${left.id}: the map already holds range ${right.id}`,
      );
    if (compareBytes(held.start, left.start) !== 0 || !sameEnd(held.end, right.end))
      return refuse(
        'NOT_CONTIGUOUS',
        `Cannot record ${describeRange(left)} and ${describeRange(right)}: the map holds ` +
          `${describeRange(held)}; an earlier change to the range is not recorded yet`,
      );
    return { outcome: 'applied', map: this.spliced(i, 1, [left, right]) };
  }

  /** Records a change of a range's replicas: the same bounds, a higher generation. */
  recordReplicas(desc: RangeDescriptor): RangeMapChange {
    const bad = checkDescriptor(desc);
    if (bad !== null) return refuse('BAD_DESCRIPTOR', `Cannot record the replicas: ${bad}`);
    const i = this.indexOfId(desc.id);
    const held = this.list[i];
    if (held === undefined)
      return refuse(
        'UNKNOWN_RANGE',
        `Cannot record the replicas of range ${desc.id}: no such range`,
      );
    if (held.generation >= desc.generation) return known(held, describeRange(desc));
    if (compareBytes(held.start, desc.start) !== 0 || !sameEnd(held.end, desc.end))
      return refuse(
        'NOT_CONTIGUOUS',
        `Cannot record ${describeRange(desc)}: the map holds ${describeRange(held)}; ` +
          'a change to its bounds (a split) is not recorded yet',
      );
    return { outcome: 'applied', map: this.spliced(i, 1, [desc]) };
  }

  /**
   * The next version of the map with `count` ranges from index `at` replaced by `descriptors`,
   * checking nothing: the operations above check first. Exposed so that tests can plant an
   * operation that skips a check and show the map's checker catches it.
   */
  spliced(at: number, count: number, descriptors: readonly RangeDescriptor[]): RangeMap {
    // A loop: slice and splice on the frozen list cost four times as much (V8, 100,000 ranges).
    const list: RangeDescriptor[] = [];
    for (let i = 0; i < at; i++) list.push(this.list[i] as RangeDescriptor);
    for (const d of descriptors) list.push(copyDescriptor(d));
    for (let i = at + count; i < this.list.length; i++) list.push(this.list[i] as RangeDescriptor);
    return new RangeMap(this.version + 1, list);
  }
}

function refuse(code: RangeMapRefusalCode, message: string): RangeMapChange {
  return { outcome: 'refused', code, message };
}

function known(held: RangeDescriptor, what: string): RangeMapChange {
  return {
    outcome: 'known',
    message: `Already known: the map holds ${describeRange(held)}, not older than ${what}`,
  };
}

function sameEnd(a: Uint8Array | null, b: Uint8Array | null): boolean {
  return a === null || b === null ? a === b : compareBytes(a, b) === 0;
}

/**
 * A descriptor's own consistency, or null: what the map relies on before comparing it with
 * anything. Fields are checked for type too, since descriptors arrive decoded from the log.
 */
export function checkDescriptor(d: RangeDescriptor): string | null {
  if (!Number.isSafeInteger(d.id) || d.id < 0)
    return `range id must be a non-negative integer, got ${String(d.id)}`;
  if (!(d.start instanceof Uint8Array)) return `range ${d.id}: its start is not bytes`;
  if (d.end !== null && !(d.end instanceof Uint8Array))
    return `range ${d.id}: its end is neither bytes nor null`;
  if (d.end !== null && compareBytes(d.start, d.end) >= 0)
    return `${describeRange(d)}: its start is not below its end`;
  if (!Number.isSafeInteger(d.generation) || d.generation < 0)
    return `range ${d.id}: generation must be a non-negative integer, got ${String(d.generation)}`;
  if (!Array.isArray(d.replicas) || d.replicas.length === 0)
    return `range ${d.id}: it needs at least one replica`;
  for (const [i, r] of d.replicas.entries()) {
    if (!Number.isSafeInteger(r) || r < 1)
      return `range ${d.id}: replica ${String(r)} is not a node id (a positive integer)`;
    if (i > 0 && r <= (d.replicas[i - 1] as number))
      return `range ${d.id}: replicas [${d.replicas.join(', ')}] are not ascending and unique`;
  }
  return null;
}

/** Whether `left` and `right` are the two halves one split of `left.id` gives. */
function checkHalves(left: RangeDescriptor, right: RangeDescriptor): string | null {
  if (left.end === null || compareBytes(left.end, right.start) !== 0)
    return `${describeRange(left)} does not end where ${describeRange(right)} starts`;
  if (left.generation !== right.generation || left.generation < 1)
    return `the halves' generations (${left.generation}, ${right.generation}) differ or are 0`;
  if (right.id < FIRST_ALLOCATED_RANGE || right.id === left.id)
    return `the new range's id ${right.id} is not one the meta group allocates`;
  // A split may start the new range on a subset of the left's replicas (never elsewhere: its
  // seed is made only where the split applies).
  if (right.replicas.some((r) => !left.replicas.includes(r)))
    return `the new range's replicas [${right.replicas.join(', ')}] are not among the left's [${left.replicas.join(', ')}]`;
  return null;
}

/** Everything wrong with a map, in key order; empty for a map that covers the key space once. */
export function checkRangeMap(map: RangeMap): string[] {
  const problems: string[] = [];
  const list = map.ranges();
  const first = list[0];
  if (first === undefined) return ['the map holds no range'];
  if (first.start.length !== 0) problems.push(`the first range starts at ${showKey(first.start)}`);
  const ids = new Set<RangeId>();
  for (const [i, d] of list.entries()) {
    const bad = checkDescriptor(d);
    if (bad !== null) problems.push(bad);
    if (ids.has(d.id)) problems.push(`range id ${d.id} appears twice`);
    ids.add(d.id);
    const next = list[i + 1];
    if (next === undefined) {
      if (d.end !== null)
        problems.push(`the last range, ${describeRange(d)}, does not reach the end`);
      continue;
    }
    if (d.end === null) {
      problems.push(`${describeRange(d)} reaches the end but ${describeRange(next)} follows`);
      continue;
    }
    const c = compareBytes(d.end, next.start);
    if (c < 0) problems.push(`a gap between ${describeRange(d)} and ${describeRange(next)}`);
    if (c > 0) problems.push(`${describeRange(d)} overlaps ${describeRange(next)}`);
  }
  return problems;
}

/** A key for a message: printable ASCII quoted, anything else in hex. */
export function showKey(k: Uint8Array): string {
  const printable = k.every((b) => b >= 0x20 && b < 0x7f && b !== 0x22 && b !== 0x5c);
  const text = printable ? `"${String.fromCharCode(...k.subarray(0, 64))}"` : null;
  const hex = Array.from(k.subarray(0, 64), (b) => b.toString(16).padStart(2, '0')).join('');
  const shown = text ?? `0x${hex}`;
  return k.length > 64 ? `${shown}...(${k.length} bytes)` : shown;
}

/** `range 5 ["a", "m") generation 3`, for messages. */
export function describeRange(d: RangeDescriptor): string {
  const start = d.start.length === 0 ? '-inf' : showKey(d.start);
  const end = d.end === null ? '+inf' : showKey(d.end);
  return `range ${d.id} [${start}, ${end}) generation ${d.generation}`;
}

/**
 * A copy the caller cannot change under the map (keys may be views of a decoded entry). The
 * descriptor and its replicas are frozen; its keys' bytes cannot be, and nothing writes them.
 */
function copyDescriptor(d: RangeDescriptor): RangeDescriptor {
  return Object.freeze({
    id: d.id,
    start: new Uint8Array(d.start),
    end: d.end === null ? null : new Uint8Array(d.end),
    generation: d.generation,
    replicas: Object.freeze([...d.replicas]),
  });
}
