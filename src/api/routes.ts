// The HTTP routes of a node: validate each request strictly, hand it to the backend as typed
// bytes, and render the answer in the request's encoding.

import type { Registry } from 'prom-client';
import type {
  Compare as BackendCompare,
  KeyValue as KvRecord,
  Op as BackendOp,
  OpResult as BackendOpResult,
  Range as RangeSpec,
} from '../kv/kv-store.js';
import { FlotillaError } from '../base/errors.js';
import { checkClientId, checkKey, checkValue, type Limits } from '../base/limits.js';
import type { JsonHttpServer } from './http.js';
import { checkTxnKeysDistinct } from './txn-keys.js';
import type { ClusterStatus, NodeStatus } from './types.js';
import {
  asObject,
  bytesField,
  encodeBytes,
  encodingOf,
  onlyFields,
  optArray,
  optBool,
  optBytesField,
  optInt,
  optString,
  reqString,
  type Encoding,
  type Json,
  type Obj,
} from './validate.js';

/** A write's exactly-once session (the state machine's type). */
/** A write's exactly-once session: the client's id and the write's sequence number. */
export interface Session {
  readonly clientId: string;
  readonly seq: number;
}

// The operations, compares and results are the key-value store's own types: the API
// validates into them and renders from them, so there is one definition of each.
export type {
  KeyValue as KvRecord,
  Range as RangeSpec,
  Op as BackendOp,
  Compare as BackendCompare,
  OpResult as BackendOpResult,
} from '../kv/kv-store.js';

export interface Header {
  readonly revision: number;
  readonly memberId: number;
  readonly raftTerm: number;
}

/** What the routes need from the node. Throws FlotillaError (or errors it maps) on failure. */
export interface KvBackend {
  readonly limits: Pick<
    Limits,
    'maxKeyBytes' | 'maxValueBytes' | 'maxTxnOps' | 'maxClientIdChars' | 'maxRangeLimit'
  >;
  /** A write (put, delete or txn) through the log. */
  write(
    txn: {
      readonly compare: readonly BackendCompare[];
      readonly success: readonly BackendOp[];
      readonly failure: readonly BackendOp[];
    },
    session: Session | null,
    signal: AbortSignal,
  ): Promise<{ header: Header; succeeded: boolean; results: readonly BackendOpResult[] }>;
  /** A range at `op.revision` (0: the current one). */
  read(
    op: {
      readonly range: RangeSpec;
      readonly limit: number;
      readonly countOnly: boolean;
      readonly revision: number;
    },
    serializable: boolean,
    signal: AbortSignal,
  ): Promise<{ header: Header; result: Extract<BackendOpResult, { kind: 'range' }> }>;
  /** Compacts the history to `revision` through the log; answers the compacted revision. */
  compact(revision: number, signal: AbortSignal): Promise<{ header: Header; compacted: number }>;
  /**
   * Sends a request's body unchanged to the leader and returns its answer verbatim, or null
   * when this node must handle it here (it leads, or no leader was found and it will say so).
   */
  forward(
    path: string,
    rawBody: string,
    signal: AbortSignal,
  ): Promise<{ status: number; json: unknown } | null>;
  status(): NodeStatus;
  clusterStatus(signal: AbortSignal): Promise<ClusterStatus>;
  ready(): { ready: boolean; reason: string };
  transferLeadership(to: number): Promise<void>;
  metrics: Registry;
}

/** The largest revision a request may name. */
const maxRevision = Number.MAX_SAFE_INTEGER;

export function installRoutes(http: JsonHttpServer, b: KvBackend): void {
  http.route('POST', '/v1/kv/put', async ({ body, rawBody, signal, headers }) => {
    const fwd = await forwarded(b, '/v1/kv/put', rawBody, signal, headers);
    if (fwd !== null) return fwd;
    const o = asObject(body);
    onlyFields(o, ['key', 'value', 'prevKv', 'lease', 'encoding', 'clientId', 'seq']);
    const enc = encodingOf(o);
    const op = parsePut(o, enc, b);
    const r = await b.write({ compare: [], success: [op], failure: [] }, session(o, b), signal);
    const res = r.results[0] as Extract<BackendOpResult, { kind: 'put' }>;
    return {
      json: { header: r.header, ...(res.prevKv ? { prevKv: renderKv(res.prevKv, enc) } : {}) },
    };
  });

  http.route('POST', '/v1/kv/range', async ({ body, signal }) => {
    const o = asObject(body);
    onlyFields(o, [
      'key',
      'rangeEnd',
      'prefix',
      'limit',
      'countOnly',
      'serializable',
      'revision',
      'encoding',
    ]);
    const enc = encodingOf(o);
    const op = { ...parseRange(o, enc, b), revision: optInt(o, 'revision', 0, maxRevision) ?? 0 };
    const r = await b.read(op, optBool(o, 'serializable'), signal);
    return {
      json: {
        header: r.header,
        kvs: r.result.kvs.map((kv) => renderKv(kv, enc)),
        count: r.result.count,
        more: r.result.more,
      },
    };
  });

  http.route('POST', '/v1/kv/delete', async ({ body, rawBody, signal, headers }) => {
    const fwd = await forwarded(b, '/v1/kv/delete', rawBody, signal, headers);
    if (fwd !== null) return fwd;
    const o = asObject(body);
    onlyFields(o, ['key', 'rangeEnd', 'prefix', 'prevKv', 'encoding', 'clientId', 'seq']);
    const enc = encodingOf(o);
    const op: BackendOp = {
      kind: 'delete',
      range: parseRangeSpec(o, enc, b),
      prevKv: optBool(o, 'prevKv'),
    };
    const r = await b.write({ compare: [], success: [op], failure: [] }, session(o, b), signal);
    const res = r.results[0] as Extract<BackendOpResult, { kind: 'delete' }>;
    return {
      json: {
        header: r.header,
        deleted: res.deleted,
        ...(op.prevKv ? { prevKvs: res.prevKvs.map((kv) => renderKv(kv, enc)) } : {}),
      },
    };
  });

  http.route('POST', '/v1/kv/txn', async ({ body, rawBody, signal, headers }) => {
    const fwd = await forwarded(b, '/v1/kv/txn', rawBody, signal, headers);
    if (fwd !== null) return fwd;
    const o = asObject(body);
    onlyFields(o, ['compare', 'success', 'failure', 'encoding', 'clientId', 'seq']);
    const enc = encodingOf(o);
    const compare = optArray(o, 'compare', b.limits.maxTxnOps).map((c, i) =>
      parseCompare(asObject(c, `compare[${i}]`), enc, b, i),
    );
    const success = optArray(o, 'success', b.limits.maxTxnOps).map((x, i) =>
      parseTxnOp(x, enc, b, `success[${i}]`),
    );
    const failure = optArray(o, 'failure', b.limits.maxTxnOps).map((x, i) =>
      parseTxnOp(x, enc, b, `failure[${i}]`),
    );
    checkTxnKeysDistinct(success, 'success');
    checkTxnKeysDistinct(failure, 'failure');
    const r = await b.write({ compare, success, failure }, session(o, b), signal);
    return {
      json: {
        header: r.header,
        succeeded: r.succeeded,
        responses: r.results.map((x) => renderOpResult(x, enc)),
      },
    };
  });

  http.route('POST', '/v1/kv/compact', async ({ body, rawBody, signal, headers }) => {
    const fwd = await forwarded(b, '/v1/kv/compact', rawBody, signal, headers);
    if (fwd !== null) return fwd;
    const o = asObject(body);
    onlyFields(o, ['revision']);
    const revision = optInt(o, 'revision', 1, maxRevision);
    if (revision === undefined)
      throw new FlotillaError('BAD_REQUEST', '"revision" (the revision to compact to) is required');
    const r = await b.compact(revision, signal);
    return { json: { header: r.header, compacted: r.compacted } };
  });

  http.route('GET', '/v1/status', () => ({ json: b.status() }));
  http.route('GET', '/v1/cluster/status', async ({ signal }) => ({
    json: await b.clusterStatus(signal),
  }));
  const transfer = '/v1/cluster/transfer-leadership';
  http.route('POST', transfer, async ({ body, rawBody, signal, headers }) => {
    const fwd = await forwarded(b, transfer, rawBody, signal, headers);
    if (fwd !== null) return fwd;
    const o = asObject(body);
    onlyFields(o, ['to']);
    const to = optInt(o, 'to', 1, 2 ** 31);
    if (to === undefined) throw new FlotillaError('BAD_REQUEST', '"to" (a member id) is required');
    await b.transferLeadership(to);
    return { json: { ok: true } };
  });
  http.route('GET', '/healthz', () => ({ json: { ok: true } }));
  http.route('GET', '/readyz', () => {
    const r = b.ready();
    return { status: r.ready ? 200 : 503, json: { ready: r.ready, reason: r.reason } };
  });
  http.route('GET', '/metrics', async () => ({
    text: await b.metrics.metrics(),
    contentType: b.metrics.contentType,
  }));
  // Client work counts against the node's admission limit; status and metrics never do.
  http.countAgainstAdmission(
    '/v1/kv/put',
    '/v1/kv/range',
    '/v1/kv/delete',
    '/v1/kv/txn',
    '/v1/kv/compact',
  );
}

const FORWARDED_HEADER = 'x-flotilla-forwarded';

/** Forwards a request to the leader; a forwarded request is never forwarded again. */
export async function forwarded(
  b: Pick<KvBackend, 'forward'>,
  path: string,
  rawBody: string,
  signal: AbortSignal,
  headers: Record<string, string | string[] | undefined>,
): Promise<{ status: number; json: unknown } | null> {
  if (headers[FORWARDED_HEADER] !== undefined) return null;
  return b.forward(path, rawBody, signal);
}

export const forwardedHeader = FORWARDED_HEADER;

function session(o: Obj, b: KvBackend): Session | null {
  const clientId = optString(o, 'clientId');
  const seq = optInt(o, 'seq', 1, Number.MAX_SAFE_INTEGER);
  if (clientId === undefined && seq === undefined) return null;
  if (clientId === undefined || seq === undefined)
    throw new FlotillaError('BAD_REQUEST', '"clientId" and "seq" go together');
  return { clientId: checkClientId(clientId, b.limits), seq };
}

function parsePut(o: Obj, enc: Encoding, b: KvBackend): BackendOp {
  return {
    kind: 'put',
    key: checkKey(bytesField(o, 'key', enc), b.limits),
    value: checkValue(bytesField(o, 'value', enc), b.limits),
    prevKv: optBool(o, 'prevKv'),
    ...leaseField(o),
  };
}

/** A put's `lease` (attach the key to it), absent when 0 or not given. */
function leaseField(o: Obj): { lease?: number } {
  const lease = optInt(o, 'lease', 0, Number.MAX_SAFE_INTEGER) ?? 0;
  return lease === 0 ? {} : { lease };
}

export function parseRangeSpec(
  o: Obj,
  enc: Encoding,
  b: { readonly limits: Pick<Limits, 'maxKeyBytes'> },
): RangeSpec {
  const key = checkKey(bytesField(o, 'key', enc), b.limits);
  const prefix = optBool(o, 'prefix');
  const rangeEnd = optBytesField(o, 'rangeEnd', enc);
  if (prefix && rangeEnd !== undefined)
    throw new FlotillaError('BAD_REQUEST', '"prefix" and "rangeEnd" are exclusive');
  if (rangeEnd !== undefined) return { key, rangeEnd: checkKey(rangeEnd, b.limits, 'rangeEnd') };
  return { key, rangeEnd: prefix ? prefixEnd(key) : null };
}

function parseRange(
  o: Obj,
  enc: Encoding,
  b: KvBackend,
): { range: RangeSpec; limit: number; countOnly: boolean } {
  return {
    range: parseRangeSpec(o, enc, b),
    limit: optInt(o, 'limit', 0, b.limits.maxRangeLimit) ?? 0,
    countOnly: optBool(o, 'countOnly'),
  };
}

/** The smallest key greater than every key with this prefix (etcd's GetPrefixRangeEnd). */
export function prefixEnd(prefix: Uint8Array): Uint8Array {
  const end = prefix.slice();
  for (let i = end.length - 1; i >= 0; i--) {
    if ((end[i] as number) < 0xff) {
      end[i] = (end[i] as number) + 1;
      return end.slice(0, i + 1);
    }
  }
  // All 0xff: no upper bound. A single zero byte means "to the end" (etcd's convention).
  return new Uint8Array([0]);
}

function parseCompare(c: Obj, enc: Encoding, b: KvBackend, i: number): BackendCompare {
  onlyFields(c, ['key', 'target', 'op', 'value'], `compare[${i}]`);
  const key = checkKey(bytesField(c, 'key', enc), b.limits);
  const target = reqString(c, 'target');
  const op = reqString(c, 'op');
  if (!['value', 'version', 'createRevision', 'modRevision', 'lease'].includes(target)) {
    throw new FlotillaError(
      'BAD_REQUEST',
      `compare[${i}].target must be value, version, createRevision, modRevision or lease, got "${target}"`,
    );
  }
  if (!['=', '!=', '<', '>'].includes(op))
    throw new FlotillaError('BAD_REQUEST', `compare[${i}].op must be =, !=, < or >, got "${op}"`);
  const value =
    target === 'value'
      ? checkValue(bytesField(c, 'value', enc), b.limits)
      : optInt(c, 'value', 0, Number.MAX_SAFE_INTEGER);
  if (value === undefined)
    throw new FlotillaError(
      'BAD_REQUEST',
      `compare[${i}].value must be an integer for target ${target}`,
    );
  return { key, target: target as BackendCompare['target'], op: op as BackendCompare['op'], value };
}

function parseTxnOp(x: Json, enc: Encoding, b: KvBackend, where: string): BackendOp {
  const o = asObject(x, where);
  const kinds = Object.keys(o);
  if (kinds.length !== 1)
    throw new FlotillaError('BAD_REQUEST', `${where} must have exactly one of put, delete, range`);
  const kind = kinds[0] as string;
  const inner = asObject(o[kind], `${where}.${kind}`);
  switch (kind) {
    case 'put':
      onlyFields(inner, ['key', 'value', 'prevKv', 'lease'], `${where}.put`);
      return parsePut(inner, enc, b);
    case 'delete':
      onlyFields(inner, ['key', 'rangeEnd', 'prefix', 'prevKv'], `${where}.delete`);
      return {
        kind: 'delete',
        range: parseRangeSpec(inner, enc, b),
        prevKv: optBool(inner, 'prevKv'),
      };
    case 'range': {
      onlyFields(inner, ['key', 'rangeEnd', 'prefix', 'limit'], `${where}.range`);
      return { kind: 'range', ...parseRange(inner, enc, b) };
    }
    default:
      throw new FlotillaError('BAD_REQUEST', `${where} has unknown operation "${kind}"`);
  }
}

export function renderKv(kv: KvRecord, enc: Encoding): Json {
  return {
    key: encodeBytes(kv.key, enc),
    value: encodeBytes(kv.value, enc),
    createRevision: kv.createRevision,
    modRevision: kv.modRevision,
    version: kv.version,
    ...((kv.lease ?? 0) !== 0 ? { lease: kv.lease } : {}),
  };
}

function renderOpResult(r: BackendOpResult, enc: Encoding): Json {
  switch (r.kind) {
    case 'put':
      return { put: r.prevKv ? { prevKv: renderKv(r.prevKv, enc) } : {} };
    case 'delete':
      return { delete: { deleted: r.deleted, prevKvs: r.prevKvs.map((kv) => renderKv(kv, enc)) } };
    case 'range':
      return { range: { kvs: r.kvs.map((kv) => renderKv(kv, enc)), count: r.count, more: r.more } };
  }
}
