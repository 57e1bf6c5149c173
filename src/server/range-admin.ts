// Splitting a range on request, and the map of ranges a node shows (docs/DESIGN.md, "Ranges").
// A split runs on the leader of the range holding the key, in three steps: a new range id from
// the meta group's allocator; the split in the range's own log (the range's generation as this
// leader applied it, its voters as the new range's replicas), which every replica applies and
// from which each starts the right-hand group (range-groups.ts); then both halves recorded in
// the meta group's map, retried until the map took them or knew them. A failure after the
// split applied leaves the map behind the ranges, which is allowed (the ranges are the
// authority): the range's leader records the split later (range-map-repair.ts). A split holds
// the range's change lock, as a change of its replicas does, so the voters it names stay so,
// and is refused while a change of the range's replicas is half-way (splitRefusal).

import { FlotillaError } from '../base/errors.js';
import { isRefusal, type Clock } from '../host/contracts.js';
import { encodeEnvelope } from '../host/envelope.js';
import {
  metaAllocatePath,
  metaRecordSplitPath,
  renderDescriptor,
  type RangesBackend,
  type RangeView,
} from '../api/range-routes.js';
import { onMetaLeader, type Forwarder } from './forward.js';
import { compareBytes } from '../kv/kv-store.js';
import { toFlotillaError } from '../api/errors.js';
import type { KvError } from '../kv/machine.js';
import { RangeMachine, type SplitResult, type WrongRangeResult } from '../ranges/range-machine.js';
import type { RangeDescriptor, RangeId } from '../ranges/types.js';
import type { MetaService } from './meta-service.js';
import { features } from '../base/features.js';
import type { FeatureCheck } from './feature-gate.js';
import type { RangeLane, RangeLanes } from './range-lanes.js';
import type { RemoteRanges } from './range-remote.js';
import { showRange } from './range-router.js';
import { splitRefusal } from './range-replicas.js';
import { readBarrierAt } from './kv-service.js';

export interface RangeAdminOptions {
  readonly selfId: number;
  readonly lanes: RangeLanes;
  /** The ranges not run here: their leaders as this node knows them, and the way to them. */
  readonly remote: RemoteRanges;
  readonly meta: MetaService;
  /** Forwards to the meta group's leader (null: this node leads it). */
  readonly metaForwarder: Pick<Forwarder, 'forward'>;
  readonly clock: Clock;
  readonly maxKeyBytes: number;
  /** How long recording a split in the map is retried before the request gives up. */
  readonly recordTimeoutMs: number;
  /** The version gate: a split belongs to `features.ranges`. */
  readonly gate: FeatureCheck;
  /**
   * Ranges a change of replicas or a split runs on here: a split holds its range's entry from
   * reading the voters until both halves are recorded, so no move changes them meanwhile.
   */
  readonly busy: Set<RangeId>;
  /**
   * A test's fault (node-ranges.ts, NodeTestHooks): runs after the split applied and before the map
   * records it; a throw ends the request there.
   */
  readonly beforeMapRecord?: (left: RangeDescriptor, right: RangeDescriptor) => Promise<void>;
}

/** Pause between two attempts to record a split the map refused for now. */
const recordRetryMs = 100;

export function rangesBackend(o: RangeAdminOptions): RangesBackend {
  return {
    limits: { maxKeyBytes: o.maxKeyBytes },
    ranges: async (consistency, signal) => {
      await readBarrierAt(o.meta.runtime, consistency, signal);
      return rangeViews(o);
    },
    routeSplit: (key) => {
      let lane: RangeLane;
      try {
        const t = o.remote.route([{ key, rangeEnd: null }], 'split');
        if (!t.local)
          return {
            leads: () => false,
            forward: (path, rawBody, signal, authorization) =>
              o.remote.forwardTo(t.descriptor, { path, rawBody }, signal, authorization),
          };
        lane = o.lanes.route([{ key, rangeEnd: null }], 'split');
      } catch {
        // Handled here, where split() waits for the range or says why not.
        return { leads: () => true, forward: () => Promise.resolve(null) };
      }
      const rt = lane.group.runtime;
      return {
        leads: () => rt.leaderId() === o.selfId,
        forward: (path, rawBody, signal, authorization) =>
          lane.forwarder.forward(path, rawBody, signal, authorization),
      };
    },
    split: (key, replicas, signal, authorization) =>
      split(o, key, { replicas, signal, authorization }),
    meta: o.metaForwarder,
    allocate: (signal) => o.meta.allocate({ signal }),
    recordSplit: async (left, right, signal) => {
      await o.meta.recordSplit(left, right, { signal });
    },
  };
}

/** The meta map with this node's figures of each range it runs (the dashboard shows it too). */
export function rangeViews(
  o: Pick<RangeAdminOptions, 'selfId' | 'lanes' | 'meta' | 'remote'>,
): Awaited<ReturnType<RangesBackend['ranges']>> {
  const map = o.meta.machine.map();
  if (map === null) return null;
  const ranges = map.ranges().map((d): RangeView => {
    const lane = o.lanes.lane(d.id);
    if (lane === undefined)
      return {
        descriptor: d,
        leader: o.remote.leader(d.id) || null,
        keys: null,
        bytes: null,
        writesPerSec: null,
        readsPerSec: null,
        applied: null,
      };
    return {
      // Range 0 runs on every member and follows the membership, but the map records its
      // replicas only when it splits: its voters, as this node applied them, are the truth.
      descriptor:
        d.id === 0
          ? { ...d, replicas: [...lane.group.runtime.status().voters].sort((a, b) => a - b) }
          : d,
      leader: lane.group.runtime.leaderId(),
      keys: lane.group.range.kv.keyCount(),
      bytes: lane.group.range.kv.bytes(),
      writesPerSec: round1(lane.load.writesPerSec()),
      readsPerSec: round1(lane.load.readsPerSec()),
      applied: lane.group.runtime.appliedIndex(),
    };
  });
  return { version: map.version, node: o.selfId, ranges };
}

function round1(x: number): number {
  return Math.round(x * 10) / 10;
}

/** What a split is asked with: the new range's replicas, and the request's signal and credential. */
interface SplitCall {
  /** The new range's replicas (null: the left range's voters). */
  readonly replicas: readonly number[] | null;
  readonly signal: AbortSignal;
  readonly authorization: string | undefined;
}

/**
 * Splits the range holding `key` at `key` on this node, its leader: the split asked for over
 * the API, and the automatic one (range-splitter.ts).
 */
export async function split(
  o: RangeAdminOptions,
  key: Uint8Array,
  w: SplitCall,
): Promise<{ left: RangeDescriptor; right: RangeDescriptor }> {
  const lane = await routeOnce(o, key, w.signal);
  const rt = lane.group.runtime;
  if (rt.leaderId() !== o.selfId)
    throw new FlotillaError(
      'NOT_LEADER',
      `This node does not lead range ${lane.id}`,
      false,
      rt.leaderId(),
    );
  if (o.busy.has(lane.id))
    throw new FlotillaError(
      'RANGE_CHANGE_IN_PROGRESS',
      `Cannot split range ${lane.id} on node ${o.selfId}: a change of its replicas or another split of it is running here; retry once it finished`,
    );
  o.busy.add(lane.id);
  try {
    return await splitHeld(o, lane, key, w);
  } finally {
    o.busy.delete(lane.id);
  }
}

/** The split itself, on the range's leader, with the range's change lock held. */
async function splitHeld(
  o: RangeAdminOptions,
  lane: RangeLane,
  key: Uint8Array,
  w: SplitCall,
): Promise<{ left: RangeDescriptor; right: RangeDescriptor }> {
  const { signal, authorization } = w;
  const rt = lane.group.runtime;
  // Everything committed before this leader's term is applied once the barrier passed, so the
  // voters and the generation read below are the range's last; the lock keeps them so.
  await lane.service.readBarrier({ signal });
  const d = lane.group.range.descriptor();
  // A range starts at the key already: a retried split whose first attempt went through (its
  // answer lost, or the caller gave up on it) finds the split done, and is answered it.
  if (d.start.length > 0 && compareBytes(key, d.start) === 0) return splitDone(o, d, w);
  // Refused here too (the range's log would refuse it) so that no id is allocated for nothing.
  if (compareBytes(key, d.start) <= 0 || (d.end !== null && compareBytes(key, d.end) >= 0))
    throw new FlotillaError(
      'BAD_REQUEST',
      `Cannot split range ${showRange(d)} at its start or outside it: the key must lie strictly inside`,
    );
  // Before an id is allocated: a release before ranges would refuse the split when applying it.
  await o.gate.require(features.ranges, signal);
  const status = rt.status();
  // A change of the replicas half-way (led here before, or by an earlier leader) could remove a
  // voter the split names before it received the split: refused until the change finished.
  const refusal = splitRefusal(status.conf, d);
  if (refusal !== null) throw new FlotillaError('RANGE_CHANGE_IN_PROGRESS', refusal);
  const voters = [...status.voters].sort((a, b) => a - b);
  const replicas = w.replicas ?? voters;
  checkReplicas(lane.id, replicas, voters);
  // Refused here too (its log refuses it where every member knows how): leased keys moved to
  // the new range would outlive their lease, which only range 0 keeps.
  const leases = lane.group.range.kv.leases().length;
  if (leases > 0)
    throw new FlotillaError(
      'LEASES_HELD',
      `Cannot split range ${showRange(d)}: the store holds ${leases} lease(s), and the keys of a lease in the range split off would outlive it; revoke them (or let them expire) first`,
    );
  const id = await allocateRangeId(o, { signal, authorization });
  const noLeases = o.gate.active() >= features.splitWithoutLeases.level;
  const payload = RangeMachine.encode({
    split: { key, id, generation: d.generation, replicas, ...(noLeases ? { noLeases } : {}) },
  });
  let result: unknown;
  try {
    result = await rt.propose(
      encodeEnvelope({ client: '', seq: 0, timeMs: o.clock.nowMs(), payload }),
      { signal },
    );
  } catch (err) {
    throw toFlotillaError(err);
  }
  if (isRefusal(result)) throw new FlotillaError('BAD_REQUEST', result.message);
  // A split entry applies as a split or as a refusal of it (nothing else).
  const r = result as SplitResult | KvError | WrongRangeResult;
  if (r.kind !== 'split')
    throw new FlotillaError(
      r.error.code === 'WRONG_RANGE' || r.error.code === 'LEASES_HELD'
        ? r.error.code
        : 'BAD_REQUEST',
      r.error.message,
    );
  // Range 0 never recorded its replicas in its own descriptor: the map's left half carries the
  // range's voters, the right half the replicas the split gave the new range.
  const left: RangeDescriptor = { ...r.left, replicas: voters };
  const right: RangeDescriptor = r.right;
  await o.beforeMapRecord?.(left, right);
  await recordSplitInMap(o, left, right, { signal, authorization });
  return { left, right };
}

/**
 * The answer to a split at `right`'s start: nothing changes. `right` is the range starting at
 * the key, the left half the range the map holds ending there (read linearizably). Replicas
 * asked for must be `right`'s: a different request is refused, not answered as done.
 */
async function splitDone(
  o: RangeAdminOptions,
  right: RangeDescriptor,
  w: SplitCall,
): Promise<{ left: RangeDescriptor; right: RangeDescriptor }> {
  if (w.replicas !== null) {
    const asked = [...w.replicas].sort((a, b) => a - b).join(',');
    if (asked !== [...right.replicas].sort((a, b) => a - b).join(','))
      throw new FlotillaError(
        'BAD_REQUEST',
        `Cannot split at the start of range ${showRange(right)}: it is split there already, on replicas [${right.replicas.join(', ')}], not those asked for`,
      );
  }
  await readBarrierAt(o.meta.runtime, 'linearizable', w.signal);
  const left = o.meta.machine
    .map()
    ?.ranges()
    .find((r) => r.end !== null && compareBytes(r.end, right.start) === 0);
  if (left === undefined)
    throw new FlotillaError(
      'RANGE_CHANGE_IN_PROGRESS',
      `Range ${showRange(right)} starts at this key already, but the range map does not record the split yet; retry once it does`,
    );
  return { left, right };
}

/**
 * Refuses (BAD_REQUEST, before an id is allocated) replicas that are not the left range's
 * voters: the new range starts only where its seed is, on the nodes that apply the split.
 */
function checkReplicas(
  range: number,
  replicas: readonly number[],
  voters: readonly number[],
): void {
  const strangers = replicas.filter((r) => !voters.includes(r));
  if (strangers.length > 0)
    throw new FlotillaError(
      'BAD_REQUEST',
      `Cannot split range ${range} onto replicas [${replicas.join(', ')}]: node(s) ` +
        `${strangers.join(', ')} are not voters of range ${range} (its voters are ` +
        `[${voters.join(', ')}]); a new range's replicas are a subset of its left range's voters`,
    );
}

/** What allocating an id and recording a split need: the meta group, here or on its leader. */
export type MapRecordOptions = Pick<
  RangeAdminOptions,
  'meta' | 'metaForwarder' | 'clock' | 'recordTimeoutMs'
>;

/** A new range id from the meta group's allocator, on its leader. */
export async function allocateRangeId(
  o: Pick<RangeAdminOptions, 'meta' | 'metaForwarder'>,
  w: { readonly signal: AbortSignal; readonly authorization: string | undefined },
): Promise<RangeId> {
  const { signal } = w;
  const allocated = await onMetaLeader(o.metaForwarder, metaAllocatePath, {}, w, async () => ({
    id: await o.meta.allocate({ signal }),
  }));
  const id = (allocated as { id?: unknown }).id;
  if (typeof id !== 'number')
    throw new FlotillaError('INTERNAL', 'The meta group gave no range id');
  return id;
}

/** Records both halves in the map, again while it refuses for now, until `recordTimeoutMs`. */
export async function recordSplitInMap(
  o: MapRecordOptions,
  left: RangeDescriptor,
  right: RangeDescriptor,
  w: { readonly signal: AbortSignal; readonly authorization: string | undefined },
): Promise<void> {
  const { signal } = w;
  const until = o.clock.nowMs() + o.recordTimeoutMs;
  const body = { left: renderDescriptor(left, 'base64'), right: renderDescriptor(right, 'base64') };
  for (;;) {
    try {
      await onMetaLeader(o.metaForwarder, metaRecordSplitPath, body, w, async () => {
        await o.meta.recordSplit(left, right, { signal });
        return { ok: true };
      });
      return;
    } catch (err) {
      const e = toFlotillaError(err);
      if (signal.aborted || o.clock.nowMs() >= until || e.code === 'BAD_REQUEST') throw e;
    }
    await new Promise((resolve) => o.clock.setTimeout(() => resolve(undefined), recordRetryMs));
  }
}

/** The range holding `key`, once this node runs it (a split it applied starts the right half). */
async function routeOnce(
  o: RangeAdminOptions,
  key: Uint8Array,
  signal: AbortSignal,
): Promise<RangeLane> {
  const spans = [{ key, rangeEnd: null }];
  try {
    return o.lanes.route(spans, 'split');
  } catch (err) {
    if (!(err instanceof FlotillaError) || err.code !== 'WRONG_RANGE') throw err;
    await o.lanes.catchUp(null, { signal });
    return o.lanes.route(spans, 'split');
  }
}
