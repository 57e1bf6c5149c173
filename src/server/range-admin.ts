// Splitting a range on request, and the map of ranges a node shows (docs/DESIGN.md, "Ranges").
// A split runs on the leader of the range holding the key, in three steps: a new range id from
// the meta group's allocator; the split in the range's own log (the range's generation as this
// leader applied it, its voters as the new range's replicas), which every replica applies and
// from which each starts the right-hand group (range-groups.ts); then both halves recorded in
// the meta group's map, retried until the map took them or knew them. A failure after the
// split applied leaves the map behind the ranges, which is allowed (the ranges are the
// authority); the next split of the range records its own halves only once this one is.

import { FlotillaError } from '../base/errors.js';
import { isRefusal, type Clock } from '../host/contracts.js';
import { encodeEnvelope } from '../host/envelope.js';
import type { RangesBackend, RangeView } from '../api/range-routes.js';
import { compareBytes } from '../kv/kv-store.js';
import { toFlotillaError } from '../api/errors.js';
import type { KvError } from '../kv/machine.js';
import { RangeMachine, type SplitResult, type WrongRangeResult } from '../ranges/range-machine.js';
import type { RangeDescriptor } from '../ranges/types.js';
import type { MetaService } from './meta-service.js';
import type { RangeLanes } from './range-lanes.js';
import { showRange } from './range-router.js';

export interface RangeAdminOptions {
  readonly selfId: number;
  readonly lanes: RangeLanes;
  readonly meta: MetaService;
  readonly clock: Clock;
  readonly maxKeyBytes: number;
  /** How long recording a split in the map is retried before the request gives up. */
  readonly recordTimeoutMs: number;
}

/** Pause between two attempts to record a split the map refused for now. */
const recordRetryMs = 100;

export function rangesBackend(o: RangeAdminOptions): RangesBackend {
  return {
    limits: { maxKeyBytes: o.maxKeyBytes },
    ranges: () => rangeViews(o),
    routeSplit: (key) => {
      const lane = o.lanes.route([{ key, rangeEnd: null }], 'split');
      const rt = lane.group.runtime;
      return {
        leads: () => rt.leaderId() === o.selfId,
        forward: (path, rawBody, signal, authorization) =>
          lane.forwarder.forward(path, rawBody, signal, authorization),
      };
    },
    split: (key, signal) => split(o, key, signal),
  };
}

function rangeViews(o: RangeAdminOptions): ReturnType<RangesBackend['ranges']> {
  const map = o.meta.machine.map();
  if (map === null) return null;
  const ranges = map.ranges().map((d): RangeView => {
    const lane = o.lanes.lane(d.id);
    if (lane === undefined) return { descriptor: d, leader: null, keys: null, applied: null };
    return {
      descriptor: d,
      leader: lane.group.runtime.leaderId(),
      keys: lane.group.range.kv.keyCount(),
      applied: lane.group.runtime.appliedIndex(),
    };
  });
  return { version: map.version, ranges };
}

async function split(
  o: RangeAdminOptions,
  key: Uint8Array,
  signal: AbortSignal,
): Promise<{ left: RangeDescriptor; right: RangeDescriptor }> {
  const lane = o.lanes.route([{ key, rangeEnd: null }], 'split');
  const rt = lane.group.runtime;
  if (rt.leaderId() !== o.selfId)
    throw new FlotillaError(
      'NOT_LEADER',
      `This node does not lead range ${lane.id}`,
      false,
      rt.leaderId(),
    );
  const d = lane.group.range.descriptor();
  // Refused here too (the range's log would refuse it) so that no id is allocated for nothing.
  if (compareBytes(key, d.start) <= 0 || (d.end !== null && compareBytes(key, d.end) >= 0))
    throw new FlotillaError(
      'BAD_REQUEST',
      `Cannot split range ${showRange(d)} at its start or outside it: the key must lie strictly inside`,
    );
  const id = await o.meta.allocate({ signal });
  const replicas = [...rt.status().voters].sort((a, b) => a - b);
  const payload = RangeMachine.encode({
    split: { key, id, generation: d.generation, replicas },
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
      r.error.code === 'WRONG_RANGE' ? 'WRONG_RANGE' : 'BAD_REQUEST',
      r.error.message,
    );
  // Range 0 never recorded its replicas in its own descriptor: the map's halves carry the
  // voters the split gave the new range, on both sides.
  const left: RangeDescriptor = { ...r.left, replicas };
  const right: RangeDescriptor = r.right;
  await record(o, left, right, signal);
  return { left, right };
}

/** Records both halves in the map, again while it refuses for now, until `recordTimeoutMs`. */
async function record(
  o: RangeAdminOptions,
  left: RangeDescriptor,
  right: RangeDescriptor,
  signal: AbortSignal,
): Promise<void> {
  const until = o.clock.nowMs() + o.recordTimeoutMs;
  for (;;) {
    try {
      await o.meta.recordSplit(left, right, { signal });
      return;
    } catch (err) {
      const e = toFlotillaError(err);
      if (signal.aborted || o.clock.nowMs() >= until || e.code === 'BAD_REQUEST') throw e;
    }
    await new Promise((resolve) => o.clock.setTimeout(() => resolve(undefined), recordRetryMs));
  }
}
