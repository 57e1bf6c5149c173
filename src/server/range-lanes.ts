// What a node keeps per range it runs (docs/DESIGN.md, "Ranges"): the range's KvService (its
// writes into its own log), a Forwarder following its own leader, its watch hub, the
// leader's automatic compactor of its own history and the range's load as this node sees it.
// A range's lane is made when the range first runs here (range 0 at start, a right-hand range
// once its split applied, a range this node was added to as a new replica), and requests reach
// it through the router (range-router.ts). A range that stopped here (this node is no longer
// its replica) loses its lane: its compactor stops and its watches end, told to resume where
// the range is now.

import type { WaitOptions } from '../host/runtime.js';
import type { WatchHub } from '../kv/watch-hub.js';
import type { Range } from '../kv/kv-store.js';
import type { RangeDescriptor, RangeId } from '../ranges/types.js';
import type { AutoCompactor } from './compactor.js';
import type { Forwarder } from './forward.js';
import type { KvService } from './kv-service.js';
import type { RangeGroup, RangeGroups } from './range-groups.js';
import type { RangeLoad } from './range-load.js';
import { routeSpans } from './range-router.js';

export interface RangeLane {
  readonly id: RangeId;
  readonly group: RangeGroup;
  readonly service: KvService;
  readonly forwarder: Forwarder;
  readonly watchHub: WatchHub;
  readonly compactor: AutoCompactor;
  /** Writes and reads per second, and the latest written keys (range-load.ts). */
  readonly load: RangeLoad;
}

export interface RangeLanesOptions {
  readonly ranges: RangeGroups;
  /** Builds the lane of a range that runs here now. */
  readonly make: (id: RangeId, group: RangeGroup) => RangeLane;
}

export class RangeLanes {
  private readonly lanes = new Map<RangeId, RangeLane>();
  private started = false;
  private closed = false;

  constructor(private readonly o: RangeLanesOptions) {}

  /**
   * Every range's lane, ascending by id: ranges that started since the last call included,
   * ranges that stopped since dropped (see `forget`).
   */
  all(): RangeLane[] {
    for (const [id, lane] of this.lanes)
      if (this.o.ranges.group(id) !== lane.group)
        this.forget(id, `This node no longer holds range ${id}`);
    for (const id of this.o.ranges.ranges()) {
      if (this.lanes.has(id) || this.closed) continue;
      const group = this.o.ranges.group(id);
      if (group === undefined) continue;
      const lane = this.o.make(id, group);
      this.lanes.set(id, lane);
      if (this.started) lane.compactor.start();
    }
    return [...this.lanes.values()].sort((a, b) => a.id - b.id);
  }

  /**
   * The lanes made so far, without starting or dropping any: for a figure read on every
   * request (the store quota), where a range started or stopped since the last call may count
   * once more or once less.
   */
  made(): Iterable<RangeLane> {
    return this.lanes.values();
  }

  /** The lane of range `id`, when it runs here. */
  lane(id: RangeId): RangeLane | undefined {
    this.all();
    return this.lanes.get(id);
  }

  /** How many ranges run here. */
  count(): number {
    return this.all().length;
  }

  /** The ranges' descriptors as this node applied them. */
  descriptors(): RangeDescriptor[] {
    return this.all().map((l) => l.group.range.descriptor());
  }

  /** The lane of the one range the spans lie in (CROSS_RANGE, WRONG_RANGE: see routeSpans). */
  route(spans: readonly Range[], what: string): RangeLane {
    const id = routeSpans(this.descriptors(), spans, what);
    return this.lane(id) as RangeLane;
  }

  /**
   * Catches up with the ranges after a WRONG_RANGE: applies range `id`'s log as far as its
   * leader has committed (so a split it applied applies here too), then waits for the ranges
   * being started (the split's right-hand range).
   */
  async catchUp(id: RangeId | null, w: WaitOptions): Promise<void> {
    const lane = id === null ? undefined : this.lane(id);
    if (lane !== undefined) await lane.service.readBarrier(w);
    await this.o.ranges.settled();
  }

  /**
   * Drops range `id`'s lane (the range stopped here, or runs as a new group): stops its
   * compactor and ends its watches with WATCH_RESET and `why`, so their clients resume them
   * where the range is served now. A range still running gets a new lane at the next call.
   */
  forget(id: RangeId, why: string): void {
    const lane = this.lanes.get(id);
    if (lane === undefined) return;
    this.lanes.delete(id);
    lane.compactor.stop();
    lane.watchHub.release(`${why}; resume the watch on a node that does`);
  }

  /**
   * A storage failure stopped group `group` here: the watches of its range end with
   * WATCH_RESET, so that their clients resume them on another node (this one would deliver
   * nothing more). The lane stays; its group refuses what comes with STORAGE_FAILED.
   */
  groupStopped(group: number): void {
    for (const lane of this.lanes.values())
      if (lane.group.runtime.group === group)
        lane.watchHub.release(
          `This node stopped range ${lane.id} after a storage failure; resume the watch on another node`,
        );
  }

  /** Starts every lane's compactor (the leader of each range compacts its own history). */
  start(): void {
    this.started = true;
    for (const l of this.all()) l.compactor.start();
  }

  /** Stops the compactors and ends every watch. */
  close(): void {
    this.closed = true;
    for (const l of this.lanes.values()) {
      l.compactor.stop();
      l.watchHub.close();
    }
  }
}
