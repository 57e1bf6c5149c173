// Handing one range's leadership to another of its voters (docs/API.md, "Ranges"): asked of
// any node, carried out by the range's leader (range-leader-route.ts gets it there), which
// starts the transfer (Raft thesis §3.10: it brings the target up to date, then tells it to
// campaign at once) and answers once the target leads, or fails after a bounded wait. The
// placement loop spreads leaders with it; an operator may move one by hand.

import { toFlotillaError } from '../api/errors.js';
import { transferLeaderPath } from '../api/replica-routes.js';
import { FlotillaError } from '../base/errors.js';
import { META_GROUP, type RangeId } from '../ranges/types.js';
import type { RangeCall, RangeLeaderRoute } from './range-leader-route.js';
import type { RangeLane } from './range-lanes.js';

/** What a transfer answers: the range and the node that leads it now. */
export interface TransferAnswer {
  readonly range: RangeId;
  readonly leader: number;
}

/** The job queue's group: a Raft group with an id in the ranges' space, but no key range. */
const QUEUE_GROUP_ID: RangeId = 1;

/**
 * Refuses a transfer no range can carry out: a range id or node id that is not one, and the
 * job queue's and the meta group's ids (groups of their own, not key ranges: their leaders
 * move with the cluster's own transfer, not this one).
 */
export function checkTransferShape(range: RangeId, to: number): void {
  if (!Number.isSafeInteger(range) || range < 0)
    throw new FlotillaError('BAD_REQUEST', `"range" must be a range id, got ${String(range)}`);
  if (!Number.isSafeInteger(to) || to < 1)
    throw new FlotillaError('BAD_REQUEST', `"to" must be a node id, got ${String(to)}`);
  if (range === QUEUE_GROUP_ID || range === META_GROUP)
    throw new FlotillaError(
      'INVALID_REQUEST',
      `Range ${range} is ${range === META_GROUP ? 'the meta group' : "the job queue's group"}, not a key range: its leadership is not handed over by range`,
    );
}

export interface RangeTransferOptions {
  readonly selfId: number;
  readonly route: Pick<RangeLeaderRoute, 'run'>;
  /** How long the leader waits for the target to take over before it answers a failure. */
  readonly waitMs: number;
}

/**
 * Hands range `range`'s leadership to its voter `to`, on the range's leader (forwarded there
 * unless `w.forwarded`); answers once `to` leads. A transfer to the leader itself answers at
 * once: asking again after a transfer that happened changes nothing.
 */
export function transferRangeLeader(
  o: RangeTransferOptions,
  range: RangeId,
  to: number,
  w: RangeCall,
): Promise<TransferAnswer> {
  checkTransferShape(range, to);
  return o.route.run(
    range,
    { path: transferLeaderPath, body: { range, to } },
    w,
    (lane) => onLeader(o, lane, to, w.signal),
    (json) => parseAnswer(json, range),
  );
}

/** The transfer on the range's leader; null when this node no longer leads it (look again). */
async function onLeader(
  o: RangeTransferOptions,
  lane: RangeLane,
  to: number,
  signal: AbortSignal,
): Promise<TransferAnswer | null> {
  const rt = lane.group.runtime;
  const voters = rt.status().conf.voters;
  if (!voters.includes(to))
    throw new FlotillaError(
      'NOT_RANGE_VOTER',
      `Node ${to} is not a voter of range ${lane.id} (voters [${[...voters].sort((a, b) => a - b).join(', ')}]): only a voter can lead it`,
    );
  if (to === o.selfId) return { range: lane.id, leader: to };
  try {
    rt.transferLeadership(to);
  } catch (err) {
    const e = toFlotillaError(err);
    if (e.code === 'NOT_LEADER') return null;
    throw e;
  }
  let leader: number;
  try {
    leader = await rt.waitForLeader({ other: o.selfId, signal, timeoutMs: o.waitMs });
  } catch (err) {
    const e = toFlotillaError(err);
    if (signal.aborted) throw e;
    throw new FlotillaError(
      'TIMEOUT',
      `Node ${to} did not take range ${lane.id}'s leadership within ${o.waitMs} ms (${e.message}); retry`,
    );
  }
  if (leader !== to)
    throw new FlotillaError(
      'NOT_LEADER',
      `Node ${leader} took range ${lane.id}'s leadership, not node ${to}; retry`,
      false,
      leader,
    );
  return { range: lane.id, leader };
}

function parseAnswer(json: unknown, range: RangeId): TransferAnswer {
  const { range: r, leader } = (json ?? {}) as { range?: unknown; leader?: unknown };
  if (r !== range || typeof leader !== 'number')
    throw new FlotillaError('BAD_RESPONSE', `A transfer of range ${range} was answered oddly`);
  return { range, leader };
}
