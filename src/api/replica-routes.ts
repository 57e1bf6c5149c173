// The routes that change a range's replicas (docs/API.md, "Ranges"): moving one replica of a
// range from one node to another, handing a range's leadership to another of its voters, and
// the internal routes a move takes (the change forwarded to the range's leader, the new
// replica's preparation, the record in the meta group's map).
// All need the admin role when authentication is on (auth.ts: a path no table lists is
// admin's).

import type { JsonHttpServer } from './http.js';
import { forwarded, forwardedHeader, type KvBackend } from './routes.js';
import { parseDescriptor, renderDescriptor } from './range-routes.js';
import { asObject, encodingOf, onlyFields, optInt, type Obj } from './validate.js';
import type { RequestLimits } from './requests.js';
import { FlotillaError } from '../base/errors.js';
import type { RangeDescriptor, RangeId } from '../ranges/types.js';

/** Moves one replica of a range: `{range, from, to}`. */
export const movePath = '/v1/ranges/move';
/** A change of a range's replicas, forwarded to the range's leader: `{range, add?, remove?}`. */
export const replicasPath = '/v1/ranges/replicas';
/** Hands a range's leadership to another of its voters: `{range, to}`. */
export const transferLeaderPath = '/v1/ranges/transfer-leadership';
/** Asks a node to start a range as a new replica: `{range, descriptor, voters}`. */
export const preparePath = '/v1/ranges/replicas/prepare';
/** The meta group's part of a change, on its leader: `{range}` (a descriptor). */
export const metaRecordReplicasPath = '/v1/ranges/meta/record-replicas';

/** The most node ids a prepare names (the meta group's limit on a range's replicas). */
const MAX_VOTERS = 15;
/** Node ids and range ids: positive integers below this. */
const MAX_ID = 2 ** 31;

export interface ReplicasBackend {
  readonly limits: Pick<RequestLimits, 'maxKeyBytes'>;
  /** Changes a range's replicas on its leader (forwarded there unless `forwarded`). */
  change(
    range: RangeId,
    change: { readonly add?: number; readonly remove?: number },
    w: {
      readonly signal: AbortSignal;
      readonly authorization: string | undefined;
      readonly forwarded: boolean;
    },
  ): Promise<RangeDescriptor>;
  /**
   * Hands range `range`'s leadership to its voter `to` on the range's leader (forwarded there
   * unless `forwarded`); answers the node that leads it then.
   */
  transfer(
    range: RangeId,
    to: number,
    w: {
      readonly signal: AbortSignal;
      readonly authorization: string | undefined;
      readonly forwarded: boolean;
    },
  ): Promise<{ range: RangeId; leader: number }>;
  /** Starts a range on this node as a new replica, on empty storage. */
  prepare(range: RangeId, descriptor: RangeDescriptor, voters: readonly number[]): Promise<void>;
  /** The forwarder to the meta group's leader (null from it: this node leads the group). */
  readonly meta: Pick<KvBackend, 'forward'>;
  /** Records a range's new replicas in the map (on the meta group's leader). */
  recordReplicas(range: RangeDescriptor, signal: AbortSignal): Promise<void>;
}

export function installReplicaRoutes(http: JsonHttpServer, b: ReplicasBackend): void {
  http.route('POST', movePath, async ({ body, signal, headers }) => {
    const o = asObject(body);
    onlyFields(o, ['range', 'from', 'to', 'encoding']);
    const enc = encodingOf(o);
    const range = id(o, 'range', 0);
    const d = await b.change(
      range,
      { remove: id(o, 'from', 1), add: id(o, 'to', 1) },
      { signal, authorization: auth(headers), forwarded: false },
    );
    return { json: { range: renderDescriptor(d, enc) } };
  });
  http.route('POST', replicasPath, async ({ body, signal, headers }) => {
    const o = asObject(body);
    onlyFields(o, ['range', 'add', 'remove']);
    const add = optInt(o, 'add', 1, MAX_ID);
    const remove = optInt(o, 'remove', 1, MAX_ID);
    const d = await b.change(
      id(o, 'range', 0),
      { ...(add === undefined ? {} : { add }), ...(remove === undefined ? {} : { remove }) },
      {
        signal,
        authorization: auth(headers),
        forwarded: headers[forwardedHeader] !== undefined,
      },
    );
    return { json: { range: renderDescriptor(d, 'base64') } };
  });
  http.route('POST', transferLeaderPath, async ({ body, signal, headers }) => {
    const o = asObject(body);
    onlyFields(o, ['range', 'to']);
    const r = await b.transfer(id(o, 'range', 0), id(o, 'to', 1), {
      signal,
      authorization: auth(headers),
      forwarded: headers[forwardedHeader] !== undefined,
    });
    return { json: { range: r.range, leader: r.leader } };
  });
  http.route('POST', preparePath, async ({ body }) => {
    const o = asObject(body);
    onlyFields(o, ['range', 'descriptor', 'voters']);
    const voters = o['voters'];
    if (
      !Array.isArray(voters) ||
      voters.length > MAX_VOTERS ||
      !voters.every((v) => typeof v === 'number' && Number.isSafeInteger(v) && v > 0)
    )
      throw new FlotillaError(
        'BAD_REQUEST',
        `"voters" must be a list of up to ${MAX_VOTERS} node ids`,
      );
    await b.prepare(
      id(o, 'range', 0),
      parseDescriptor(o['descriptor'], 'descriptor', b.limits),
      voters as number[],
    );
    return { json: { ok: true } };
  });
  http.route('POST', metaRecordReplicasPath, async ({ body, rawBody, signal, headers }) => {
    const o = asObject(body);
    onlyFields(o, ['range']);
    const range = parseDescriptor(o['range'], 'range', b.limits);
    const fwd = await forwarded(b.meta, metaRecordReplicasPath, rawBody, signal, headers);
    if (fwd !== null) return fwd;
    await b.recordReplicas(range, signal);
    return { json: { ok: true } };
  });
}

function id(o: Obj, k: string, min: number): number {
  const v = optInt(o, k, min, MAX_ID);
  if (v === undefined) throw new FlotillaError('BAD_REQUEST', `"${k}" is required`);
  return v;
}

function auth(headers: Record<string, string | string[] | undefined>): string | undefined {
  const a = headers['authorization'];
  return typeof a === 'string' ? a : undefined;
}
