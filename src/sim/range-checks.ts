// The range map's check in the simulator: the ranges' descriptors as the nodes applied them
// (each range's newest generation any running node holds, its own or as a child recorded by
// the range it split off) must tile the key space, no overlap and no gap (checkRangeMap, run
// by RangeMap.fromDescriptors). A range's own log is the authority on its bounds, so this is
// what a router may learn from the ranges themselves, whatever the meta map says.

import { compareBytes } from '../kv/kv-store.js';
import { RangeMap } from '../ranges/range-map.js';
import type { RangeDescriptor } from '../ranges/types.js';
import { nodeDescriptors } from './routing.js';
import type { SimNode } from './sim-node.js';

/** Each range's newest descriptor held by the running nodes, by id. */
export function latestDescriptors(nodes: readonly SimNode[]): Map<number, RangeDescriptor> {
  const latest = new Map<number, RangeDescriptor>();
  for (const n of nodes) {
    if (!n.up) continue;
    for (const d of nodeDescriptors(n)) {
      const had = latest.get(d.id);
      if (had === undefined || had.generation < d.generation) latest.set(d.id, d);
    }
  }
  return latest;
}

/** Null when the newest descriptors tile the key space; else what is wrong with them. */
export function rangeMapProblem(
  nodes: readonly SimNode[],
  voters: readonly number[],
): string | null {
  const latest = latestDescriptors(nodes);
  if (latest.size === 0) return null; // no node runs: nothing was applied to look at
  // Range 0's descriptor carries no replicas in its own log (the meta map's bootstrap names
  // them): it is replicated by the cluster's voters.
  const list = [...latest.values()]
    .map((d) => (d.replicas.length === 0 ? { ...d, replicas: voters } : d))
    .sort((a, b) => compareBytes(a.start, b.start) || a.id - b.id);
  try {
    RangeMap.fromDescriptors(1, list);
    return null;
  } catch (err) {
    if (!(err instanceof RangeError)) throw err;
    return err.message;
  }
}
