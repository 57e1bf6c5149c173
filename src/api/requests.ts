// The key-value requests a node serves, whichever front they arrive by: validation of a
// request's fields into the key-value store's own types, and the rendering of its answer. The
// HTTP routes (routes.ts) and the binary client protocol (wire-server.ts) both call these, so a
// request means the same and is refused with the same code and message over either.

import type {
  Compare as BackendCompare,
  KeyValue as KvRecord,
  Op as BackendOp,
  OpResult as BackendOpResult,
  Range as RangeSpec,
} from '../kv/kv-store.js';
import { FlotillaError } from '../base/errors.js';
import { checkClientId, checkKey, checkValue, type Limits } from '../base/limits.js';
import { checkTxnKeysDistinct } from './txn-keys.js';
import {
  asObject,
  bytesField,
  encodeBytes,
  encodingOf,
  naming,
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

/** A write's exactly-once session: the client's id and the write's sequence number. */
export interface Session {
  readonly clientId: string;
  readonly seq: number;
  /**
   * The lowest sequence number the client still awaits (1 to `seq`): it has every answer below
   * it, and the session forgets their results (API.md, "Exactly-once writes").
   */
  readonly ackedBelow?: number;
}

/** The body fields of a write's session. */
export const sessionFields = ['clientId', 'seq', 'ackedBelow'] as const;

export interface Header {
  readonly revision: number;
  readonly memberId: number;
  readonly raftTerm: number;
}

/** The limits request validation checks against. */
export type RequestLimits = Pick<
  Limits,
  'maxKeyBytes' | 'maxValueBytes' | 'maxTxnOps' | 'maxClientIdChars' | 'maxRangeLimit'
>;

export type WriteKind = 'put' | 'delete' | 'txn';

/** The HTTP path of each write: where a follower forwards it, whichever front it came by. */
export const writePaths: Readonly<Record<WriteKind, string>> = {
  put: '/v1/kv/put',
  delete: '/v1/kv/delete',
  txn: '/v1/kv/txn',
};
export const rangePath = '/v1/kv/range';

export interface WriteResult {
  readonly header: Header;
  readonly succeeded: boolean;
  readonly results: readonly BackendOpResult[];
}

export interface ReadResult {
  readonly header: Header;
  readonly result: Extract<BackendOpResult, { kind: 'range' }>;
  /** A multi-range read's ranges, in key order, each read at its own revision. */
  readonly ranges?: readonly { readonly id: number; readonly revision: number }[];
}

/** A validated write: the transaction to propose, its session, and how to render its answer. */
export interface WriteRequest {
  readonly txn: {
    readonly compare: readonly BackendCompare[];
    readonly success: readonly BackendOp[];
    readonly failure: readonly BackendOp[];
  };
  readonly session: Session | null;
  render(r: WriteResult): Json;
}

/**
 * How a read is served (API.md, "Consistency of reads"): `linearizable` confirms leadership
 * with a ReadIndex round; `lease` skips the round while the leader's lease holds (stale only if
 * clocks drift past the configured bound or a process pauses past its lease); `serializable`
 * answers from this node's state at once.
 */
export type ReadConsistency = 'linearizable' | 'serializable' | 'lease';

const consistencies: readonly ReadConsistency[] = ['linearizable', 'serializable', 'lease'];

/**
 * A read's consistency from `consistency` and the older `serializable` flag, which stays as
 * an alias: `serializable: true` means `consistency: "serializable"`. Both given must agree;
 * `serializable: false` beside `"serializable"` is a contradiction, not a default.
 */
export function parseConsistency(o: Obj): ReadConsistency {
  const raw = o['consistency'];
  const c = consistencies.find((x) => x === raw);
  if (raw !== undefined && c === undefined)
    throw new FlotillaError(
      'BAD_REQUEST',
      `"consistency" must be one of ${consistencies.map((x) => `"${x}"`).join(', ')}, got ${JSON.stringify(raw)}`,
    );
  const serializable = optBool(o, 'serializable');
  if (c === undefined) return serializable ? 'serializable' : 'linearizable';
  if (o['serializable'] !== undefined && serializable !== (c === 'serializable'))
    throw new FlotillaError(
      'CONFLICTING_FIELDS',
      `"serializable": ${String(serializable)} contradicts "consistency": "${c}"; give one of them`,
    );
  return c;
}

/** A validated range read and how to render its answer. */
export interface ReadRequest {
  readonly op: {
    readonly range: RangeSpec;
    readonly limit: number;
    readonly countOnly: boolean;
    /** The revision to read at; 0 for the current one. */
    readonly revision: number;
    /** Read across ranges, each at its own revision (not atomic); refused otherwise. */
    readonly multiRange: boolean;
  };
  readonly consistency: ReadConsistency;
  render(r: ReadResult): Json;
}

/** Validates a write's body (the JSON object of the HTTP API); throws a coded FlotillaError. */
export function parseWrite(kind: WriteKind, body: unknown, limits: RequestLimits): WriteRequest {
  const o = asObject(body);
  switch (kind) {
    case 'put': {
      onlyFields(o, ['key', 'value', 'prevKv', 'lease', 'encoding', ...sessionFields]);
      const enc = encodingOf(o);
      const op = parsePut(o, enc, limits);
      return {
        txn: { compare: [], success: [op], failure: [] },
        session: parseSession(o, limits),
        render: (r) => {
          const res = r.results[0] as Extract<BackendOpResult, { kind: 'put' }>;
          return {
            header: { ...r.header },
            ...(res.prevKv ? { prevKv: renderKv(res.prevKv, enc) } : {}),
          };
        },
      };
    }
    case 'delete': {
      onlyFields(o, ['key', 'rangeEnd', 'prefix', 'prevKv', 'encoding', ...sessionFields]);
      const enc = encodingOf(o);
      const op: BackendOp = {
        kind: 'delete',
        range: parseRangeSpec(o, enc, limits),
        prevKv: optBool(o, 'prevKv'),
      };
      return {
        txn: { compare: [], success: [op], failure: [] },
        session: parseSession(o, limits),
        render: (r) => {
          const res = r.results[0] as Extract<BackendOpResult, { kind: 'delete' }>;
          return {
            header: { ...r.header },
            deleted: res.deleted,
            ...(op.prevKv ? { prevKvs: res.prevKvs.map((kv) => renderKv(kv, enc)) } : {}),
          };
        },
      };
    }
    case 'txn':
      return parseTxn(o, limits);
  }
}

function parseTxn(o: Obj, limits: RequestLimits): WriteRequest {
  onlyFields(o, ['compare', 'success', 'failure', 'encoding', ...sessionFields]);
  const enc = encodingOf(o);
  const compare = optArray(o, 'compare', limits.maxTxnOps).map((c, i) =>
    parseCompare(asObject(c, `compare[${i}]`), enc, limits, i),
  );
  const success = optArray(o, 'success', limits.maxTxnOps).map((x, i) =>
    parseTxnOp(x, enc, limits, `success[${i}]`),
  );
  const failure = optArray(o, 'failure', limits.maxTxnOps).map((x, i) =>
    parseTxnOp(x, enc, limits, `failure[${i}]`),
  );
  // A transaction is run by the range holding its keys; one that names no key has no range,
  // and routing it would fail as a split not learned of yet (WRONG_RANGE), which clients retry.
  if (compare.length === 0 && success.length === 0 && failure.length === 0)
    throw new FlotillaError(
      'BAD_REQUEST',
      'A transaction needs at least one compare or operation: "compare", "success" and "failure" are all empty',
    );
  checkTxnKeysDistinct(success, 'success');
  checkTxnKeysDistinct(failure, 'failure');
  return {
    txn: { compare, success, failure },
    session: parseSession(o, limits),
    render: (r) => ({
      header: { ...r.header },
      succeeded: r.succeeded,
      responses: r.results.map((x, i) =>
        renderOpResult(x, enc, askedPrevKv((r.succeeded ? success : failure)[i])),
      ),
    }),
  };
}

/** Validates a range read's body; throws a coded FlotillaError. */
export function parseRead(body: unknown, limits: RequestLimits): ReadRequest {
  const o = asObject(body);
  onlyFields(o, [
    'key',
    'rangeEnd',
    'prefix',
    'limit',
    'countOnly',
    'serializable',
    'consistency',
    'revision',
    'encoding',
    'multiRange',
  ]);
  const enc = encodingOf(o);
  const revision = optInt(o, 'revision', 0, Number.MAX_SAFE_INTEGER) ?? 0;
  const multiRange = optBool(o, 'multiRange');
  if (multiRange && revision !== 0)
    throw new FlotillaError(
      'CONFLICTING_FIELDS',
      '"multiRange" reads each range at its own current revision: "revision" cannot be given with it',
    );
  return {
    op: { ...parseRange(o, enc, limits), revision, multiRange },
    consistency: parseConsistency(o),
    render: (r) => ({
      header: { ...r.header },
      kvs: r.result.kvs.map((kv) => renderKv(kv, enc)),
      count: r.result.count,
      more: r.result.more,
      ...(r.ranges === undefined
        ? {}
        : { ranges: r.ranges.map((x) => ({ id: x.id, revision: x.revision })) }),
    }),
  };
}

/**
 * A write's optional exactly-once session (`clientId` and `seq`, both or neither), with the
 * client's optional acknowledgement mark `ackedBelow` (1 to `seq`, only with a session).
 */
export function parseSession(
  o: Obj,
  limits: Pick<RequestLimits, 'maxClientIdChars'>,
): Session | null {
  const clientId = optString(o, 'clientId');
  const seq = optInt(o, 'seq', 1, Number.MAX_SAFE_INTEGER);
  const ackedBelow = optInt(o, 'ackedBelow', 1, Number.MAX_SAFE_INTEGER);
  if (clientId === undefined && seq === undefined) {
    if (ackedBelow !== undefined)
      throw new FlotillaError('BAD_REQUEST', '"ackedBelow" needs "clientId" and "seq"');
    return null;
  }
  if (clientId === undefined || seq === undefined)
    throw new FlotillaError('BAD_REQUEST', '"clientId" and "seq" go together');
  if (ackedBelow !== undefined && ackedBelow > seq)
    throw new FlotillaError(
      'BAD_REQUEST',
      `"ackedBelow" (${ackedBelow}) is above "seq" (${seq}): a write is awaited until answered`,
    );
  const id = checkClientId(clientId, limits);
  return ackedBelow === undefined ? { clientId: id, seq } : { clientId: id, seq, ackedBelow };
}

function parsePut(o: Obj, enc: Encoding, limits: RequestLimits): BackendOp {
  return {
    kind: 'put',
    key: checkKey(bytesField(o, 'key', enc), limits),
    value: checkValue(bytesField(o, 'value', enc), limits),
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
  limits: Pick<RequestLimits, 'maxKeyBytes'>,
): RangeSpec {
  const raw = bytesField(o, 'key', enc);
  const prefix = optBool(o, 'prefix');
  // The empty prefix would be every key: said how, rather than only that the key is empty.
  if (raw.length === 0 && prefix)
    throw new FlotillaError(
      'KEY_EMPTY',
      '"key" must not be empty, even with "prefix": to cover every key, send "key": "\\u0000" and "rangeEnd": "\\u0000" (as etcd)',
    );
  const key = checkKey(raw, limits);
  const rangeEnd = optBytesField(o, 'rangeEnd', enc);
  if (prefix && rangeEnd !== undefined)
    throw new FlotillaError('CONFLICTING_FIELDS', '"prefix" and "rangeEnd" are exclusive');
  if (rangeEnd !== undefined) return { key, rangeEnd: checkKey(rangeEnd, limits, 'rangeEnd') };
  return { key, rangeEnd: prefix ? prefixEnd(key) : null };
}

function parseRange(
  o: Obj,
  enc: Encoding,
  limits: RequestLimits,
): { range: RangeSpec; limit: number; countOnly: boolean } {
  return {
    range: parseRangeSpec(o, enc, limits),
    limit: optInt(o, 'limit', 0, limits.maxRangeLimit) ?? 0,
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

function parseCompare(c: Obj, enc: Encoding, limits: RequestLimits, i: number): BackendCompare {
  onlyFields(c, ['key', 'target', 'op', 'value'], `compare[${i}]`);
  const [key, target, op] = naming(
    `compare[${i}]`,
    () =>
      [
        checkKey(bytesField(c, 'key', enc), limits),
        reqString(c, 'target'),
        reqString(c, 'op'),
      ] as const,
  );
  if (!['value', 'version', 'createRevision', 'modRevision', 'lease'].includes(target)) {
    throw new FlotillaError(
      'BAD_REQUEST',
      `compare[${i}].target must be value, version, createRevision, modRevision or lease, got "${target}"`,
    );
  }
  if (!['=', '!=', '<', '>'].includes(op))
    throw new FlotillaError('BAD_REQUEST', `compare[${i}].op must be =, !=, < or >, got "${op}"`);
  const value = naming(`compare[${i}]`, () =>
    target === 'value'
      ? checkValue(bytesField(c, 'value', enc), limits)
      : optInt(c, 'value', 0, Number.MAX_SAFE_INTEGER),
  );
  if (value === undefined)
    throw new FlotillaError(
      'BAD_REQUEST',
      `compare[${i}].value must be an integer for target ${target}`,
    );
  return { key, target: target as BackendCompare['target'], op: op as BackendCompare['op'], value };
}

function parseTxnOp(x: Json, enc: Encoding, limits: RequestLimits, where: string): BackendOp {
  const o = asObject(x, where);
  const kinds = Object.keys(o);
  if (kinds.length !== 1)
    throw new FlotillaError('BAD_REQUEST', `${where} must have exactly one of put, delete, range`);
  const kind = kinds[0] as string;
  const inner = asObject(o[kind], `${where}.${kind}`);
  switch (kind) {
    case 'put':
      onlyFields(inner, ['key', 'value', 'prevKv', 'lease'], `${where}.put`);
      return naming(`${where}.put`, () => parsePut(inner, enc, limits));
    case 'delete':
      onlyFields(inner, ['key', 'rangeEnd', 'prefix', 'prevKv'], `${where}.delete`);
      return naming(`${where}.delete`, () => ({
        kind: 'delete',
        range: parseRangeSpec(inner, enc, limits),
        prevKv: optBool(inner, 'prevKv'),
      }));
    case 'range': {
      onlyFields(inner, ['key', 'rangeEnd', 'prefix', 'limit'], `${where}.range`);
      return naming(`${where}.range`, () => ({ kind: 'range', ...parseRange(inner, enc, limits) }));
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

function askedPrevKv(op: BackendOp | undefined): boolean {
  return op !== undefined && op.kind !== 'range' && op.prevKv;
}

/** A txn operation's answer; a delete carries `prevKvs` when it asked for them, as alone. */
function renderOpResult(r: BackendOpResult, enc: Encoding, askedPrev: boolean): Json {
  switch (r.kind) {
    case 'put':
      return { put: r.prevKv ? { prevKv: renderKv(r.prevKv, enc) } : {} };
    case 'delete':
      return {
        delete: {
          deleted: r.deleted,
          ...(askedPrev ? { prevKvs: r.prevKvs.map((kv) => renderKv(kv, enc)) } : {}),
        },
      };
    case 'range':
      return { range: { kvs: r.kvs.map((kv) => renderKv(kv, enc)), count: r.count, more: r.more } };
  }
}
