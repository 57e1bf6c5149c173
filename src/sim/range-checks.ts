// The range map's check in the simulator: the ranges' descriptors as the nodes applied them
// (each range's newest generation any running node holds, its own or as a child recorded by
// the range it split off) must tile the key space, no overlap and no gap (checkRangeMap, run
// by RangeMap.fromDescriptors). A range's own log is the authority on its bounds, so this is
// what a router may learn from the ranges themselves, whatever the meta map says.

import { compareBytes } from '../kv/kv-store.js';
import { RangeMap } from '../ranges/range-map.js';
import { FIRST_ALLOCATED_RANGE, META_GROUP, type RangeDescriptor } from '../ranges/types.js';
import { nodeDescriptors } from './routing.js';
import type { SimNode } from './sim-node.js';

/**
 * Each range's newest descriptor held by the running nodes, by id, merged into `latest` (a
 * new map unless given): a caller that keeps one across a run sees the newest ever applied,
 * which a stale replica still running (removed by a move while cut off) cannot hide while the
 * range's current replicas are down.
 */
export function latestDescriptors(
  nodes: readonly SimNode[],
  latest = new Map<number, RangeDescriptor>(),
): Map<number, RangeDescriptor> {
  for (const n of nodes) {
    if (!n.up) continue;
    for (const d of nodeDescriptors(n)) {
      const had = latest.get(d.id);
      if (had === undefined || had.generation < d.generation) latest.set(d.id, d);
    }
  }
  return latest;
}

/** Every group the nodes run now: group 0 alone, or every range known (and the meta group). */
export function groupIdsNow(
  nodes: readonly SimNode[],
  o: { readonly ranges: boolean; readonly meta: boolean },
): number[] {
  if (!o.ranges) return [0];
  const ids = [...latestDescriptors(nodes).keys()];
  return o.meta ? [...ids, META_GROUP] : ids;
}

/** Null when the newest descriptors tile the key space; else what is wrong with them. */
export function rangeMapProblem(
  nodes: readonly SimNode[],
  voters: readonly number[],
  /** The newest descriptors seen so far in the run, updated here (omitted: the running nodes'). */
  seen?: Map<number, RangeDescriptor>,
): string | null {
  const latest = latestDescriptors(nodes, seen);
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

/**
 * Null when, on every running node, every range split off range 0 has, in the configuration
 * the node applied, as many voters as the range's descriptor (as the node applied it) names,
 * or one more, and is not joint: a move goes n → n+1 → n, never fewer (the product's
 * nextReplicaStep adds the new replica before it removes the old one, one change at a time).
 * One fewer is right only where the descriptor names more replicas than the range was made
 * with (`made`, its replica count at its split, once seen): the map repair recorded a move's
 * n+1 voters while the move waited to remove its old replica (range-map-repair.ts), and the
 * removal then takes the range back to n. `made` is filled here with each range's count the
 * first time it is seen.
 */
export function replicasProblem(
  nodes: readonly SimNode[],
  made: Map<number, number> = new Map(),
): string | null {
  for (const n of nodes) {
    for (const id of n.groupIds()) {
      if (id < FIRST_ALLOCATED_RANGE) continue;
      const group = n.rangeGroup(id);
      const core = n.coreOf(id);
      if (group === undefined || core === undefined) continue;
      // A copy prepared empty (a move's new replica, or a range taken up from the map) has
      // applied no configuration of the range yet: it starts with the others as its voters.
      const st = core.status();
      if (st.lastIndex === 0) continue;
      const d = group.range.descriptor();
      const conf = st.conf;
      const want = d.replicas.length;
      if (!made.has(id)) made.set(id, want);
      const floor = Math.min(want, made.get(id) ?? want);
      if (conf.outgoing.length > 0 || conf.voters.length < floor || conf.voters.length > want + 1)
        return `node ${n.id} applied range ${id}'s voters [${conf.voters.join(', ')}]${conf.outgoing.length > 0 ? ` joint with [${conf.outgoing.join(', ')}]` : ''}, where its descriptor (generation ${d.generation}) names [${d.replicas.join(', ')}]: a move keeps ${floor === want ? want : `${floor} to ${want}`} or ${want + 1}`;
    }
  }
  return null;
}

/** Null when no running node runs a range it recorded as given up; else which does. */
export function retiredServingProblem(nodes: readonly SimNode[]): string | null {
  for (const n of nodes)
    for (const id of n.groupIds())
      if (n.retired(id)) return `node ${n.id} gave range ${id} up but still runs it`;
  return null;
}

/**
 * Null when, for every range split off range 0 in `map` (a settled node's, which agrees with
 * the ranges' own newest descriptors), the running nodes that hold a copy of it are exactly
 * the replicas it names; else the first range where they are not, and how. A copy the map does
 * not name is one the node should have given up (range-retirer.ts: removed while cut off, or
 * prepared and never added); a replica named and not running, one it should have taken up.
 */
export function placementProblem(
  nodes: readonly SimNode[],
  map: readonly RangeDescriptor[],
): string | null {
  for (const d of map) {
    if (d.id < FIRST_ALLOCATED_RANGE) continue;
    const up = nodes.filter((n) => n.up);
    const running = up.filter((n) => n.groupIds().includes(d.id)).map((n) => n.id);
    const stray = running.filter((id) => !d.replicas.includes(id));
    const missing = d.replicas.filter((id) => up.some((n) => n.id === id) && !running.includes(id));
    if (stray.length === 0 && missing.length === 0) continue;
    const show = (xs: readonly number[]) => `[${xs.join(', ')}]`;
    return `range ${d.id}: the map names ${show(d.replicas)} (generation ${d.generation}), nodes ${show(running)} run it${stray.length > 0 ? `; ${show(stray)} hold a copy the map does not name` : ''}${missing.length > 0 ? `; ${show(missing)} named and not running it` : ''}`;
  }
  return null;
}
