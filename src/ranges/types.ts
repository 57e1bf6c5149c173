// The vocabulary of a partitioned key-value store: the key space cut into contiguous ranges,
// each one Raft group with its own replicas (docs/DESIGN.md, "Ranges"). A range's own log is
// the authority on its bounds; the meta group's map of all ranges is a directory that may lag
// and is repaired from what the ranges say.

import type { GroupId } from '../host/contracts.js';

/** A range is a Raft group: its id is the group id every peer message carries. */
export type RangeId = GroupId;

/** The first range: the key-value group every node has always run, first the whole key space. */
export const FIRST_RANGE: RangeId = 0;
/** The group of the meta range, which holds the range map. */
export const META_GROUP: GroupId = 2;
/** Ids below this are taken (0 the first range, 1 the job queue, 2 the meta group). */
export const FIRST_ALLOCATED_RANGE: RangeId = 3;

/** One range as the map (and the range itself) knows it. */
export interface RangeDescriptor {
  readonly id: RangeId;
  /** The first key in the range (inclusive); empty: the start of the key space. */
  readonly start: Uint8Array;
  /** The first key after the range (exclusive); null: the end of the key space. */
  readonly end: Uint8Array | null;
  /**
   * Grows by one at every change to the range's bounds or replicas; both halves of a split take
   * the left's generation plus one. Between two descriptors of one range, the higher wins.
   */
  readonly generation: number;
  /** The node ids of the range's voters, ascending. */
  readonly replicas: readonly number[];
}
