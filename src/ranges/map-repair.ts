// What a range's leader records in the meta map so that the map catches up with the range
// (docs/DESIGN.md, "Ranges in a node", "The map repairs itself"). The range's own log is the
// authority and the map a directory told afterwards; a record can be lost (the node that carried
// a change out died before telling the map, or a split's request gave up), so each range's
// leader compares its descriptor with the map's and sends the one record the map lacks next.
// Pure: the same range and map give the same record on whichever leader asks.
//
// The map takes records one generation step at a time in the order the range applied them (a
// replica change at the same bounds, or a split that covers exactly what the map holds), so the
// record chosen is the oldest change the map lacks: a split the range made after the
// generation the map holds, rebuilt from the child the range's log kept (each child is the new
// range as it was at its split: its end is the left's end then, its generation the split's),
// else the range's descriptor itself. Repeating this, and each child's leader doing the same
// for its own range, brings the map to what the ranges say.

import { compareBytes } from '../kv/kv-store.js';
import type { RangeDescriptor } from './types.js';

/** The record a range's leader sends the map next, or why none. */
export type MapRecord =
  /** The map holds the range at its generation or a later one. */
  | { readonly kind: 'none' }
  /** The map cannot take a record of this range yet (its creating split is not recorded). */
  | { readonly kind: 'wait'; readonly why: string }
  | { readonly kind: 'replicas'; readonly range: RangeDescriptor }
  | { readonly kind: 'split'; readonly left: RangeDescriptor; readonly right: RangeDescriptor };

/**
 * The next record that brings the map's `held` descriptor of a range toward `own`, the range's
 * descriptor as its log applied it (its replicas filled in: range 0 never records them), given
 * `children`, the ranges its log split off, each as it was at its split.
 */
export function nextMapRecord(
  own: RangeDescriptor,
  children: readonly RangeDescriptor[],
  held: RangeDescriptor | undefined,
): MapRecord {
  if (held === undefined)
    return {
      kind: 'wait',
      why: `the map holds no range ${own.id}: the split that made it is not recorded yet`,
    };
  if (held.generation >= own.generation) return { kind: 'none' };
  if (compareBytes(held.start, own.start) !== 0)
    return {
      kind: 'wait',
      why: `the map holds range ${own.id} from another start: a split of the range before it is not recorded yet`,
    };
  if (sameEnd(held.end, own.end)) return { kind: 'replicas', range: own };
  // The split the map lacks first: the one made when the range still ended where the map says.
  const child = children.find((c) => sameEnd(c.end, held.end) && c.generation > held.generation);
  if (child === undefined)
    return {
      kind: 'wait',
      why: `range ${own.id} split off no range ending where the map's copy ends`,
    };
  if (child.generation === own.generation) return { kind: 'split', left: own, right: child };
  // An older split: the left half as it was then. Its replicas are not kept; the later records
  // replace them, and they must hold the new range's (the map checks a split's halves so).
  const replicas = [...new Set([...own.replicas, ...child.replicas])].sort((a, b) => a - b);
  const left: RangeDescriptor = {
    id: own.id,
    start: own.start,
    end: child.start,
    generation: child.generation,
    replicas,
  };
  return { kind: 'split', left, right: child };
}

function sameEnd(a: Uint8Array | null, b: Uint8Array | null): boolean {
  return a === null || b === null ? a === b : compareBytes(a, b) === 0;
}
