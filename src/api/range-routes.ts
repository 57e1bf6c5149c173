// The ranges' HTTP routes (docs/API.md, "Ranges"): the range map with what this node knows of
// each range, and splitting a range at a key. A split is served by the leader of the range
// holding the key (a request reaching another node is forwarded there); both need the admin
// role when authentication is on (auth.ts: a path no table lists is admin's).

import type { JsonHttpServer } from './http.js';
import { forwarded, type KvBackend } from './routes.js';
import {
  asObject,
  bytesField,
  encodeBytes,
  encodingOf,
  onlyFields,
  type Encoding,
  type Json,
} from './validate.js';
import { parseConsistency, type ReadConsistency, type RequestLimits } from './requests.js';
import { FlotillaError } from '../base/errors.js';
import type { RangeDescriptor } from '../ranges/types.js';

export const rangesPath = '/v1/ranges';
export const splitPath = '/v1/ranges/split';
/**
 * The meta group's part of a split, served by its leader: the split's node (the leader of the
 * range, which may not lead the meta group) forwards these with its caller's credential.
 */
export const metaAllocatePath = '/v1/ranges/meta/allocate';
export const metaRecordSplitPath = '/v1/ranges/meta/record-split';

/** One range of the map, with what this node knows of it (null: it does not run it). */
export interface RangeView {
  readonly descriptor: RangeDescriptor;
  /**
   * The leader this node knows: its own view for a range it runs (0: none), else the one it
   * learned from answers to requests it sent there (null: none yet).
   */
  readonly leader: number | null;
  readonly keys: number | null;
  /** Bytes of the live keys and values in this node's copy. */
  readonly bytes: number | null;
  /** Write transactions applied per second in this node's copy (about the same on each). */
  readonly writesPerSec: number | null;
  /** Reads of the range this node served per second (this node's alone). */
  readonly readsPerSec: number | null;
  readonly applied: number | null;
}

export interface RangesBackend {
  readonly limits: Pick<RequestLimits, 'maxKeyBytes'>;
  /**
   * The meta group's map (null before it is bootstrapped) with this node's view of each, and
   * this node's id (whose figures they are). The map is read with `consistency`: linearizable
   * (a ReadIndex round on the meta group first) unless the caller asks otherwise.
   */
  ranges(
    consistency: ReadConsistency,
    signal: AbortSignal,
  ): Promise<{
    readonly version: number;
    readonly node: number;
    readonly ranges: readonly RangeView[];
  } | null>;
  /** Whether this node leads the range holding `key`, and the forwarder to its leader. */
  routeSplit(key: Uint8Array): Pick<KvBackend, 'leads' | 'forward'>;
  /**
   * Splits the range holding `key` at `key`; answers both halves. `replicas` (null: the left
   * range's voters) are the new range's replicas, a subset of the left range's voters.
   */
  split(
    key: Uint8Array,
    replicas: readonly number[] | null,
    signal: AbortSignal,
    authorization: string | undefined,
  ): Promise<{ readonly left: RangeDescriptor; readonly right: RangeDescriptor }>;
  /** The forwarder to the meta group's leader (null from it: this node leads the group). */
  readonly meta: Pick<KvBackend, 'forward'>;
  /** A new range id from the meta group (on its leader). */
  allocate(signal: AbortSignal): Promise<number>;
  /** Records a split's halves in the map (on the meta group's leader); throws a refusal. */
  recordSplit(left: RangeDescriptor, right: RangeDescriptor, signal: AbortSignal): Promise<void>;
}

export function installRangeRoutes(http: JsonHttpServer, b: RangesBackend): void {
  http.route('GET', rangesPath, async ({ query, signal }) => {
    // Keys as the KV API encodes them: UTF-8 text, or base64 with ?encoding=base64.
    const enc = query.get('encoding') ?? 'utf8';
    if (enc !== 'utf8' && enc !== 'base64')
      throw new FlotillaError(
        'BAD_REQUEST',
        `"encoding" must be "utf8" or "base64", got ${JSON.stringify(enc)}`,
      );
    // ?consistency= as a read's "consistency" field: linearizable unless asked otherwise.
    const asked = query.get('consistency');
    const consistency = parseConsistency(asked === null ? {} : { consistency: asked });
    const m = await b.ranges(consistency, signal);
    if (m === null)
      throw new FlotillaError(
        'NO_LEADER',
        'The range map is not bootstrapped yet (the meta group has not elected a leader)',
      );
    return {
      json: {
        version: m.version,
        node: m.node,
        ranges: m.ranges.map((r) => renderRangeView(r, enc)),
      },
    };
  });
  http.route('POST', splitPath, async ({ body, rawBody, signal, headers }) => {
    const o = asObject(body);
    onlyFields(o, ['key', 'encoding', 'replicas']);
    const enc = encodingOf(o);
    const replicas = parseReplicas(o['replicas']);
    const key = bytesField(o, 'key', enc);
    if (key.length === 0)
      throw new FlotillaError('KEY_EMPTY', 'A range cannot split at the empty key (its start)');
    if (key.length > b.limits.maxKeyBytes)
      throw new FlotillaError(
        'KEY_TOO_LARGE',
        `The split key is ${key.length} bytes, over the limit of ${b.limits.maxKeyBytes}`,
      );
    const fwd = await forwarded(b.routeSplit(key), splitPath, rawBody, signal, headers);
    if (fwd !== null) return fwd;
    const auth = headers['authorization'];
    const r = await b.split(key, replicas, signal, typeof auth === 'string' ? auth : undefined);
    return {
      json: { left: renderDescriptor(r.left, enc), right: renderDescriptor(r.right, enc) },
    };
  });
  http.route('POST', metaAllocatePath, async ({ body, rawBody, signal, headers }) => {
    onlyFields(asObject(body), []);
    const fwd = await forwarded(b.meta, metaAllocatePath, rawBody, signal, headers);
    if (fwd !== null) return fwd;
    return { json: { id: await b.allocate(signal) } };
  });
  http.route('POST', metaRecordSplitPath, async ({ body, rawBody, signal, headers }) => {
    const o = asObject(body);
    onlyFields(o, ['left', 'right']);
    const left = parseDescriptor(o['left'], 'left', b.limits);
    const right = parseDescriptor(o['right'], 'right', b.limits);
    const fwd = await forwarded(b.meta, metaRecordSplitPath, rawBody, signal, headers);
    if (fwd !== null) return fwd;
    await b.recordSplit(left, right, signal);
    return { json: { ok: true } };
  });
}

/** The most replicas a range may have (the meta machine's limit). */
export const maxReplicas = 15;

/**
 * A split's `replicas`: absent (null: the left range's voters) or 1 to 15 distinct node ids,
 * answered ascending. Whether they are the left range's voters is checked by its leader.
 */
export function parseReplicas(v: unknown): number[] | null {
  if (v === undefined) return null;
  if (!Array.isArray(v) || v.length === 0 || v.length > maxReplicas)
    throw new FlotillaError(
      'BAD_REQUEST',
      `"replicas" must be a list of 1 to ${maxReplicas} node ids, got ${JSON.stringify(v)}`,
    );
  for (const r of v)
    if (typeof r !== 'number' || !Number.isSafeInteger(r) || r < 1 || r > 2 ** 31)
      throw new FlotillaError(
        'BAD_REQUEST',
        `"replicas" must hold node ids (positive integers), got ${JSON.stringify(r)}`,
      );
  const ids = [...(v as number[])].sort((a, b) => a - b);
  if (ids.some((r, i) => i > 0 && r === ids[i - 1]))
    throw new FlotillaError('BAD_REQUEST', `"replicas" names a node twice: ${JSON.stringify(v)}`);
  return ids;
}

/** A descriptor as renderDescriptor wrote it in base64; the meta machine checks the rest. */
export function parseDescriptor(
  v: unknown,
  what: string,
  limits: Pick<RequestLimits, 'maxKeyBytes'>,
): RangeDescriptor {
  const o = asObject(v, what);
  onlyFields(o, ['id', 'start', 'end', 'generation', 'replicas'], what);
  const count = (x: unknown, field: string): number => {
    if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < 0)
      throw new FlotillaError('BAD_REQUEST', `${what}.${field} must be a count, got ${String(x)}`);
    return x;
  };
  const replicas = o['replicas'];
  if (!Array.isArray(replicas))
    throw new FlotillaError('BAD_REQUEST', `${what}.replicas must be a list of node ids`);
  const start = bytesField(o, 'start', 'base64');
  const end = o['end'] === null ? null : bytesField(o, 'end', 'base64');
  if (start.length > limits.maxKeyBytes || (end?.length ?? 0) > limits.maxKeyBytes)
    throw new FlotillaError('KEY_TOO_LARGE', `${what}'s bounds are over the key limit`);
  return {
    id: count(o['id'], 'id'),
    start,
    end,
    generation: count(o['generation'], 'generation'),
    replicas: replicas.map((r, i) => count(r, `replicas[${i}]`)),
  };
}

/** A range as `GET /v1/ranges` (and the dashboard's stream) shows it. */
export function renderRangeView(r: RangeView, enc: Encoding): Json {
  return {
    ...(renderDescriptor(r.descriptor, enc) as Record<string, Json>),
    leader: r.leader,
    keys: r.keys,
    bytes: r.bytes,
    writesPerSec: r.writesPerSec,
    readsPerSec: r.readsPerSec,
    applied: r.applied,
  };
}

/** A descriptor in JSON: keys as the KV API encodes them, the end null for the key space's. */
export function renderDescriptor(d: RangeDescriptor, enc: Encoding): Json {
  return {
    id: d.id,
    start: encodeBytes(d.start, enc),
    end: d.end === null ? null : encodeBytes(d.end, enc),
    generation: d.generation,
    replicas: [...d.replicas],
  };
}
