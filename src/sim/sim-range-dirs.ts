// A simulated node's record of its ranges' directories (the product's is range-dirs.ts, a
// file in the data directory): which ranges it gave up, which it was prepared for as a new
// replica, and which directories it holds. It lives with the node's disk: a crash keeps it
// (the product writes it synced before anything else), a wipe loses it.

import type { RangeDirs } from '../server/range-dirs.js';
import { FIRST_ALLOCATED_RANGE, type RangeId } from '../ranges/types.js';

/** What RangeGroups and RangeRetirer use of a node's range directories. */
export type SimRangeDirsView = Pick<
  RangeDirs,
  'isRetired' | 'retire' | 'prepare' | 'remove' | 'preparedAt' | 'added' | 'held'
>;

export class SimRangeDirs implements SimRangeDirsView {
  private readonly retired = new Set<RangeId>();
  private readonly preparing = new Map<RangeId, number>();
  /** Range directories holding files (a range's storage was opened since it was last removed). */
  private readonly dirs = new Set<RangeId>();

  /** `removeDir` deletes a range's directory from the disk (at its next opening at the latest). */
  constructor(private readonly removeDir: (id: RangeId) => void) {}

  isRetired(id: RangeId): boolean {
    return this.retired.has(id);
  }

  retire(id: RangeId): void {
    this.preparing.delete(id);
    this.retired.add(id);
  }

  prepare(id: RangeId, generation: number): void {
    this.retired.delete(id);
    this.preparing.set(id, generation);
  }

  preparedAt(id: RangeId): number | undefined {
    return this.preparing.get(id);
  }

  added(id: RangeId): void {
    this.preparing.delete(id);
  }

  held(): RangeId[] {
    return [...this.dirs].filter((id) => id >= FIRST_ALLOCATED_RANGE).sort((a, b) => a - b);
  }

  remove(id: RangeId): void {
    if (id < FIRST_ALLOCATED_RANGE)
      throw new Error(`Range ${id} is not an allocated range: its directory is never deleted`);
    this.dirs.delete(id);
    this.removeDir(id);
  }

  /** Range `id`'s storage was opened: its directory exists. */
  opened(id: RangeId): void {
    this.dirs.add(id);
  }
}
