// The HTTP routes of a node: validate each request strictly (requests.ts, shared with the
// binary client protocol), hand it to the backend as typed bytes, and render the answer in the
// request's encoding.

import type { Registry } from 'prom-client';
import type { Range as RangeSpec } from '../kv/kv-store.js';
import { FlotillaError } from '../base/errors.js';
import type { JsonHttpServer } from './http.js';
import {
  parseRead,
  parseWrite,
  rangePath,
  writePaths,
  type Header,
  type ReadConsistency,
  type ReadResult,
  type RequestLimits,
  type Session,
  type WriteKind,
  type WriteRequest,
  type WriteResult,
} from './requests.js';
import type { ClusterStatus, NodeStatus } from './types.js';
import { asObject, onlyFields, optInt } from './validate.js';

export { parseRangeSpec, prefixEnd, renderKv, type Header, type Session } from './requests.js';

// The operations, compares and results are the key-value store's own types: the API
// validates into them and renders from them, so there is one definition of each.
export type {
  KeyValue as KvRecord,
  Range as RangeSpec,
  Op as BackendOp,
  Compare as BackendCompare,
  OpResult as BackendOpResult,
} from '../kv/kv-store.js';

/**
 * What the fronts (the HTTP routes, the binary client protocol) need from the node. Throws
 * FlotillaError (or errors it maps) on failure.
 */
export interface KvBackend {
  readonly limits: RequestLimits;
  /** A write (put, delete or txn) through the log. */
  write(
    txn: WriteRequest['txn'],
    session: Session | null,
    signal: AbortSignal,
  ): Promise<WriteResult>;
  /** A range at `op.revision` (0: the current one). */
  read(
    op: {
      readonly range: RangeSpec;
      readonly limit: number;
      readonly countOnly: boolean;
      readonly revision: number;
      /** Read across ranges, each at its own revision (not atomic). */
      readonly multiRange?: boolean;
    },
    consistency: ReadConsistency,
    signal: AbortSignal,
    /**
     * How the read came: forwarded by another node (served here or refused, never forwarded
     * again), with the caller's credential (passed on when it is forwarded to a replica).
     */
    via?: { readonly forwarded?: boolean; readonly authorization?: string },
  ): Promise<ReadResult>;
  /** Compacts the history to `revision` through the log; answers the compacted revision. */
  compact(revision: number, signal: AbortSignal): Promise<{ header: Header; compacted: number }>;
  /**
   * Whether this node leads now, so that `forward` would return null at once. The binary
   * protocol asks first, so that a leader proposes a batch of writes without waiting a turn.
   */
  leads(): boolean;
  /**
   * Where a write goes: whether this node leads the range that holds its keys, and the
   * forwarder to that range's leader. A write refused by routing (its keys span ranges) is
   * handled here, where `write` says why.
   */
  routeWrite(txn: WriteRequest['txn']): Pick<KvBackend, 'leads' | 'forward'>;
  /**
   * Sends a request's body unchanged to the leader and returns its answer verbatim, or null
   * when this node must handle it here (it leads, or no leader was found and it will say so).
   * `authorization` is the caller's Authorization header, passed on for the leader to check.
   */
  forward(
    path: string,
    rawBody: string,
    signal: AbortSignal,
    authorization?: string,
  ): Promise<{ status: number; json: unknown } | null>;
  /**
   * Runs `fn` with the Raft loop held: the proposals and ReadIndex requests it starts go into
   * one Ready, so a batch of writes leaves as one append per follower and a batch of reads
   * shares one heartbeat round.
   */
  batch<T>(fn: () => T): T;
  status(): NodeStatus;
  clusterStatus(signal: AbortSignal): Promise<ClusterStatus>;
  ready(): { ready: boolean; reason: string };
  /** False once the process can no longer serve until restarted (a group stopped by its disk). */
  live(): { live: boolean; reason: string };
  /** To voter `to`, or (0) to the best that takes it (successors: heard from lately, most caught up). */
  transferLeadership(to: number): Promise<void>;
  metrics: Registry;
}

export function installRoutes(http: JsonHttpServer, b: KvBackend): void {
  for (const kind of ['put', 'delete', 'txn'] as const satisfies readonly WriteKind[]) {
    const path = writePaths[kind];
    http.route('POST', path, async ({ body, rawBody, signal, headers }) => {
      // Parsed first: the write goes to the leader of the range its keys lie in (a forwarded
      // one is routed again on arrival, by the same keys).
      const w = parseWrite(kind, body, b.limits);
      const fwd = await forwarded(b.routeWrite(w.txn), path, rawBody, signal, headers);
      if (fwd !== null) return fwd;
      return { json: w.render(await b.write(w.txn, w.session, signal)) };
    });
  }

  http.route('POST', rangePath, async ({ body, signal, headers }) => {
    const r = parseRead(body, b.limits);
    // A read of a range this node does not run goes to a replica of it (a forwarded one not).
    const authorization = headers['authorization'];
    const via = {
      forwarded: headers[FORWARDED_HEADER] !== undefined,
      ...(typeof authorization === 'string' ? { authorization } : {}),
    };
    return { json: r.render(await b.read(r.op, r.consistency, signal, via)) };
  });

  http.route('POST', compactPath, async ({ body, rawBody, signal, headers }) => {
    const fwd = await forwarded(b, compactPath, rawBody, signal, headers);
    if (fwd !== null) return fwd;
    const o = asObject(body);
    onlyFields(o, ['revision']);
    const revision = optInt(o, 'revision', 1, Number.MAX_SAFE_INTEGER);
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
    // Without "to", the leader picks one heard from lately, the most caught up.
    await b.transferLeadership(optInt(o, 'to', 1, 2 ** 31) ?? 0);
    return { json: { ok: true } };
  });
  http.route('GET', '/healthz', () => {
    const l = b.live();
    return l.live ? { json: { ok: true } } : { status: 503, json: { ok: false, reason: l.reason } };
  });
  http.route('GET', '/readyz', () => {
    const r = b.ready();
    return { status: r.ready ? 200 : 503, json: { ready: r.ready, reason: r.reason } };
  });
  http.route('GET', '/metrics', async () => ({
    text: await b.metrics.metrics(),
    contentType: b.metrics.contentType,
  }));
  // Client work counts against the node's admission limit; status and metrics never do.
  http.countAgainstAdmission(...Object.values(writePaths), rangePath, compactPath);
}

const compactPath = '/v1/kv/compact';

const FORWARDED_HEADER = 'x-flotilla-forwarded';

/**
 * Forwards a request to the leader with its caller's credential; a forwarded request is never
 * forwarded again.
 */
export async function forwarded(
  b: Pick<KvBackend, 'forward'>,
  path: string,
  rawBody: string,
  signal: AbortSignal,
  headers: Record<string, string | string[] | undefined>,
): Promise<{ status: number; json: unknown } | null> {
  if (headers[FORWARDED_HEADER] !== undefined) return null;
  const authorization = headers['authorization'];
  return b.forward(
    path,
    rawBody,
    signal,
    typeof authorization === 'string' ? authorization : undefined,
  );
}

export const forwardedHeader = FORWARDED_HEADER;
