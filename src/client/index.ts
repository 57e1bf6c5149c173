// The TypeScript client for a Flotilla cluster: a list of endpoints, leader discovery, and
// retries that are safe because every write carries an exactly-once session (client id and a
// sequence number that a retry reuses; Raft thesis §6.3).
//
// Retry policy: errors that say the write surely did not happen (NOT_LEADER, NO_LEADER, ...)
// and errors that say it may have (TIMEOUT, LEADERSHIP_LOST, a dropped connection) are both
// retried with the same sequence number, until the attempt budget or the deadline runs out.
// The final error keeps `indefinite` so the caller knows whether the write may have applied.
//
// The cluster remembers results for a window of each client's recent sequence numbers (256),
// and refuses a sequence number that fell behind it. A write is therefore sent only while its
// number is within `writeWindow` of the oldest write still in flight; more writes wait their
// turn in the client rather than be refused with SESSION_STALE_SEQUENCE.
//
// Each write also says the oldest sequence number still in flight (`ackedBelow`): the client
// has every answer below it and will not send them again, so the cluster forgets their results
// (API.md, "Exactly-once writes") and holds about one per write in flight. A node of a release
// that does not know the field refuses it (UNKNOWN_FIELD, nothing applied); the client then
// sends the write again without it, and leaves the mark out of the next `markRetryWrites`
// writes before it tries it again: a rolling upgrade ends, and a long-lived client must not go
// on without marks (the session table would hold a whole window of results per client) for
// the rest of its life. Each try that an older node still refuses costs one refused attempt.

import { randomUUID } from 'node:crypto';
import { Pool } from 'undici';
import {
  checkOptions,
  failureText,
  markRefusedEndpoint,
  pick,
  refusedEndpoint,
  schemeHint,
  sleep,
  withRefusalCause,
} from './util.js';
import {
  httpWatchLines,
  watchStream,
  wireWatchLines,
  type WatchBatch,
  type WatchBody,
  type WatchLine,
  type WatchOptions,
} from './watch.js';
import { Deadline } from '../api/deadline.js';
import { FlotillaError, isErrorCode, type ErrorCode } from '../base/errors.js';
import { defaultLimits, defaultQueueLimits, isQueueName } from '../base/limits.js';
import { clientProtocolHeader, tlsOnlyHeader, type WireOp } from '../api/wire-codec.js';
import { queuePaths, queueReads, type QueueOpName } from '../api/queue-paths.js';
import { features } from '../base/features.js';
import { WireConnection } from './wire.js';
import { BearerPool } from './bearer-pool.js';
import type { PlacementResponse } from '../api/placement-routes.js';
import {
  AddGatherer,
  QueueClient,
  ReportGatherer,
  type QueueGatherers,
  type QueueTransport,
} from './queue.js';
import { RangeRouting, spansOfBody, type RangeMapSnapshot } from './range-routing.js';
import type {
  ClusterStatus,
  MembersResponse,
  CompactResponse,
  Compare,
  LeaseGrantResponse,
  LeaseKeepAliveResponse,
  LeaseListResponse,
  LeaseRevokeResponse,
  LeaseTimeToLiveResponse,
  DeleteResponse,
  ErrorBody,
  KeyValue,
  NodeStatus,
  PutResponse,
  RangeResponse,
  RangesResponse,
  SplitResponse,
  MoveResponse,
  TransferLeaderResponse,
  TxnOp,
  TxnResponse,
} from '../api/types.js';

/** How a read is served; see API.md, "Consistency of reads". */
export type ReadConsistency = 'linearizable' | 'serializable' | 'lease';
export type * from '../api/types.js';
export type { PlacementResponse, PlacementStepJson } from '../api/placement-routes.js';
export type { WatchBatch, WatchEventJson, WatchOptions } from './watch.js';

// One error type from the Raft core to here: `code` is one of src/base/errors.ts's table, the
// codes a node sends plus the client's own (CONNECTION, BAD_RESPONSE, CLIENT_CLOSED); `indefinite` says
// whether the operation may have taken effect; `leader` is the leader the answering node named.
export { FlotillaError, errorCodes, type ErrorCode } from '../base/errors.js';
export { Election, Mutex, Session, observe, type Held } from './concurrency.js';
export { Worker, type Handler, type WorkerContext, type WorkerOptions } from './worker.js';
export {
  QueueClient,
  type AddBulkResponse,
  type AddOptions,
  type AddResponse,
  type ClaimOptions,
  type ClaimResponse,
  type ClaimedJob,
  type Job,
  type JobState,
  type QueueSettings,
  type QueueStatsResponse,
  type Repeatable,
  type RepeatOptions,
  type ReportOptions,
  type ReportResponse,
  type Retention,
} from './queue.js';

export interface ClientOptions {
  /** Base URLs of the nodes, e.g. http://127.0.0.1:8001. */
  readonly endpoints: readonly string[];
  /** Per-attempt timeout. Default 5,000 ms. */
  readonly timeoutMs?: number;
  /** Total time one call may take, retries included. Default 15,000 ms. */
  readonly deadlineMs?: number;
  /** Attempts per call. Default 8. */
  readonly maxAttempts?: number;
  /** Connections per endpoint. Default 64. */
  readonly connections?: number;
  /** Session id; a new random one by default. */
  readonly clientId?: string;
  /**
   * How far a write's sequence number may run ahead of the oldest write still in flight;
   * keep it below the cluster's session window (256). Default 128.
   */
  readonly writeWindow?: number;
  /**
   * After a node refused the `ackedBelow` mark (a release before it, during an upgrade), how
   * many writes go without it before the client tries it again. Default 1,000 (a refused try
   * costs one attempt per that many writes); from 1 to 1,000,000.
   */
  readonly markRetryWrites?: number;
  /**
   * `auto`: use a node's binary client protocol once its HTTP answers name the port
   * (docs/CLIENT-PROTOCOL.md), HTTP otherwise; `http`: HTTP only. Default `auto`.
   */
  readonly protocol?: 'auto' | 'http';
  /** Binary protocol connections per endpoint; requests share them. Default 2. */
  readonly binaryConnections?: number;
  /**
   * The bearer token every request presents, to a cluster that requires one (API.md,
   * "Authentication"); its role decides what the client may do. A cluster without
   * authentication ignores it.
   */
  readonly token?: string;
  /**
   * For `https://` endpoints (docs/SECURITY.md, "TLS"): the cluster's CA certificate (PEM) to
   * trust instead of the system's, and a client certificate and key for a cluster that asks
   * for one (tlsClientCertAuth). The binary protocol of such an endpoint runs over TLS too.
   */
  readonly tls?: ClientTlsOptions;
  /**
   * Send each key-value request (put, get, range, delete, txn) to the node leading the range
   * that holds its keys, from a cached copy of the range map (docs/CLIENT.md, "Range
   * routing"), rather than to any endpoint, which would forward it there. Default: on when
   * more than one endpoint is given (one endpoint is often a load balancer).
   */
  readonly rangeRouting?: boolean;
  /** With range routing: a cached range map older than this is fetched again. Default 30,000 ms. */
  readonly rangeMapMaxAgeMs?: number;
  /**
   * Send a queue's adds made in the same turn of the event loop as one add-bulk write, and its
   * completes and fails as one report-bulk write, each still answered as its own (docs/CLIENT.md,
   * "Job queue"). Default true; false sends every call alone.
   */
  readonly gather?: boolean;
}

/** Every field of ClientOptions: the constructor refuses any other (a misspelt option). */
const clientOptionNames = [
  'endpoints',
  'timeoutMs',
  'deadlineMs',
  'maxAttempts',
  'connections',
  'clientId',
  'writeWindow',
  'markRetryWrites',
  'protocol',
  'binaryConnections',
  'token',
  'tls',
  'rangeRouting',
  'rangeMapMaxAgeMs',
  'gather',
] as const satisfies readonly (keyof ClientOptions)[];

/** Compiles only while clientOptionNames lists every field of ClientOptions. */
export type ClientOptionsListed =
  Exclude<keyof ClientOptions, (typeof clientOptionNames)[number]> extends never ? true : never;

export interface ClientTlsOptions {
  readonly ca?: string | Uint8Array;
  readonly cert?: string | Uint8Array;
  readonly key?: string | Uint8Array;
}

/** The options of the key-value calls, besides `signal` (checkOptions). */
const putOptions = ['prevKv', 'lease', 'encoding'] as const;
const getOptions = ['serializable', 'consistency', 'revision', 'encoding'] as const;
const rangeOptions = [
  ...getOptions,
  'rangeEnd',
  'prefix',
  'limit',
  'countOnly',
  'multiRange',
] as const;
const deleteOptions = ['rangeEnd', 'prefix', 'prevKv', 'encoding'] as const;
const watchOptions = [
  'rangeEnd',
  'prefix',
  'startRevision',
  'prevKv',
  'progressNotifyMs',
  'encoding',
] as const;

/** The binary protocol's request type of each HTTP path it serves. */
const wireOpOfPath: Readonly<Record<string, WireOp>> = {
  '/v1/kv/put': 'put',
  '/v1/kv/range': 'range',
  '/v1/kv/delete': 'delete',
  '/v1/kv/txn': 'txn',
  ...Object.fromEntries(
    (Object.entries(queuePaths) as [QueueOpName, string][]).map(([name, path]) => [
      path,
      `queue.${name}` as const,
    ]),
  ),
};

/** Request types that change nothing: lost with their connection, they failed definitely. */
const wireReads = new Set<WireOp>([
  'range',
  ...[...queueReads].map((name) => `queue.${name}` as const),
]);

/** Request types a node knows only from a feature level on (the handshake says the node's). */
const wireOpLevels = new Map<WireOp, number>([
  ['queue.reportBulk', features.queueReportBulk.level],
]);

/** After a binary connection could not be made, an endpoint is served over HTTP this long. */
const binaryRetryMs = 5_000;

export interface CallOptions {
  readonly signal?: AbortSignal;
}

/** Failures to reach a node or to hear from it, as opposed to a node's answer. */
const unreached = new Set<ErrorCode>(['CONNECTION', 'TIMEOUT']);

/** Codes after which trying again (elsewhere or later) can succeed. */
const retryable = new Set<ErrorCode>([
  'NOT_LEADER',
  'NO_LEADER',
  'TRANSFER_IN_PROGRESS',
  // Another membership change is proposed and not applied yet: refused before proposing, and
  // the next attempt, once it applied, can go through.
  'MEMBERSHIP_CHANGE_PENDING',
  'UNCOMMITTED_LIMIT',
  'OVERLOADED',
  'PROPOSAL_DROPPED',
  'LEADERSHIP_LOST',
  'TIMEOUT',
  'READ_FAILED',
  'SHUTTING_DOWN',
  'FORWARD_FAILED',
  'UNAVAILABLE',
  'CONNECTION',
  // A leadership transfer to a voter the leader has not heard from since it took over: the
  // voter answers within a heartbeat unless it is down (then the call gives up at its deadline).
  'PEER_INACTIVE',
  // The request reached a range that no longer holds its keys (it split): definite, and the
  // next attempt is routed by a fresher map.
  'WRONG_RANGE',
  // A failed disk write stopped the group on the node asked: definite, and another node serves.
  'STORAGE_FAILED',
  // The node closed the connection before it had the request (a handshake or headers that
  // arrived late, as on a loaded machine): another attempt may get through.
  'REQUEST_TIMEOUT',
]);

/** Requests that read only: none of them can have taken effect when it fails. */
const readPaths: ReadonlySet<string> = new Set([
  '/v1/kv/range',
  '/v1/lease/timetolive',
  '/v1/lease/leases',
  '/v1/cluster/members/list',
  ...[...queueReads].map((name) => queuePaths[name]),
]);

/** Nodes a routing client keeps connections to, beyond its endpoints. */
const maxRoutedNodes = 64;

/** How much longer than a call a range move may take on its node (the new replica catches up). */
const moveExtraMs = 60_000;

export class FlotillaClient {
  private readonly endpoints: string[];
  private readonly pools = new Map<string, Pool>();
  /**
   * Endpoint -> the pool its HTTP watches stream over. Apart from `pools`: a watch holds its
   * connection for as long as it lives, and in the request pool `connections` watches would
   * take every connection, leaving the calls (a lease's keep-alives among them) queued behind
   * them for ever. Not bounded here: the node bounds its watches (`maxWatches`).
   */
  private readonly watchPools = new Map<string, Pool>();
  private readonly timeoutMs: number;
  private readonly deadlineMs: number;
  private readonly maxAttempts: number;
  readonly clientId: string;
  private seq = 0;
  private readonly writeWindow: number;
  /** Sequence numbers handed out and not yet finished. */
  private readonly writesInFlight = new Set<number>();
  /** Invariant: no write in flight has a lower sequence number. */
  private oldestInFlight = 1;
  /** Whether writes say `ackedBelow`; off for `markRetryWrites` writes after a refusal. */
  private sendAcks = true;
  private readonly markRetryWrites: number;
  /** While marks are off: the writes still to go without one before the next try. */
  private writesUntilMark = 0;
  /** Writes waiting for their sequence number to come within the window. */
  private readonly windowWaiters: (() => void)[] = [];
  /** Index into endpoints of the node we believe leads. */
  private preferred = 0;
  private leaderUrlById = new Map<number, string>();
  private readonly protocol: 'auto' | 'http';
  private readonly binaryConnections: number;
  /** Endpoint -> the binary protocol port its node advertised. */
  private readonly binaryPorts = new Map<string, number>();
  /** Endpoint -> when to try its binary port again after a failure (ms since the epoch). */
  private readonly binaryRetryAt = new Map<string, number>();
  /** Endpoints that answered over HTTP: their scheme is right, whatever fails later. */
  private readonly answeredOverHttp = new Set<string>();
  /** Endpoint -> its binary connections (or connections being made), used round-robin. */
  private readonly wires = new Map<string, (Promise<WireConnection> | undefined)[]>();
  private nextWire = 0;
  /** Presented by every request (BearerPool) and every binary handshake; null: none. */
  readonly #token: string | null;
  private readonly tls: TlsPem;
  private readonly poolConnections: number;
  /** Node id -> the endpoint that reaches it, learned from the endpoints' status. */
  private readonly endpointById = new Map<number, string>();
  /** The cached range map and leaders; null when range routing is off. */
  private readonly routing: RangeRouting | null;
  /** Each queue's gatherers of calls (ClientOptions.gather), made when it is first named. */
  private readonly gatherers: Map<string, QueueGatherers> | null;
  /** Set by close(): calls made afterwards are refused CLIENT_CLOSED. */
  private closed = false;

  constructor(opts: ClientOptions) {
    // Checked here, each naming the option and the value seen, for callers in plain JavaScript
    // too: before, a missing `endpoints` threw a TypeError without a code, and a `maxAttempts`
    // of 0 or a `timeoutMs` that is not a number was taken and every call failed TIMEOUT.
    if (typeof opts !== 'object' || opts === null)
      throw new FlotillaError('BAD_REQUEST', 'FlotillaClient needs options: { endpoints }', false);
    if (!Array.isArray(opts.endpoints) || opts.endpoints.length === 0)
      throw new FlotillaError(
        'BAD_REQUEST',
        `endpoints must be a non-empty array of base URLs, got ${describe(opts.endpoints)}`,
        false,
      );
    checkOptions(opts, 'FlotillaClient', clientOptionNames);
    this.endpoints = opts.endpoints.map(checkEndpoint);
    this.timeoutMs = positiveInt(opts, 'timeoutMs', 5_000);
    this.deadlineMs = positiveInt(opts, 'deadlineMs', 15_000);
    this.maxAttempts = positiveInt(opts, 'maxAttempts', 8);
    // The node's limit, in the same units (UTF-16 code units): a longer id would have every
    // write refused, one by one, long after the client was made.
    const maxIdChars = defaultLimits.maxClientIdChars;
    if (
      opts.clientId !== undefined &&
      (typeof opts.clientId !== 'string' ||
        opts.clientId === '' ||
        opts.clientId.length > maxIdChars)
    )
      throw new FlotillaError(
        'BAD_REQUEST',
        `clientId must be a string of 1 to ${maxIdChars} characters, got ` +
          `${typeof opts.clientId === 'string' ? `${opts.clientId.length} characters` : describe(opts.clientId)}`,
        false,
      );
    this.clientId = opts.clientId ?? randomUUID();
    // A name given by the caller may be the one an earlier run of the same program used (a
    // service's name is the natural choice): its sequence numbers start where that run's
    // cannot have reached, so the session does not answer this run's writes with that run's
    // results and apply nothing (it did, silently). Time in units of 1/1024 ms: an earlier run
    // would have needed over a million writes a second, all its life, to get there.
    if (opts.clientId !== undefined) {
      this.seq = Date.now() * 1024;
      this.oldestInFlight = this.seq + 1;
    }
    this.markRetryWrites = opts.markRetryWrites ?? 1_000;
    if (
      !Number.isInteger(this.markRetryWrites) ||
      this.markRetryWrites < 1 ||
      this.markRetryWrites > 1_000_000
    )
      throw new FlotillaError(
        'BAD_REQUEST',
        `markRetryWrites must be an integer from 1 to 1000000, got ${String(opts.markRetryWrites)}`,
        false,
      );
    this.writeWindow = opts.writeWindow ?? 128;
    if (!Number.isInteger(this.writeWindow) || this.writeWindow < 1 || this.writeWindow > 256)
      throw new FlotillaError(
        'BAD_REQUEST',
        `writeWindow must be an integer from 1 to 256, got ${String(opts.writeWindow)}`,
        false,
      );
    if (opts.protocol !== undefined && opts.protocol !== 'auto' && opts.protocol !== 'http')
      throw new FlotillaError(
        'BAD_REQUEST',
        `protocol must be "auto" or "http", got ${describe(opts.protocol)}`,
        false,
      );
    this.protocol = opts.protocol ?? 'auto';
    this.binaryConnections = opts.binaryConnections ?? 2;
    if (!Number.isInteger(this.binaryConnections) || this.binaryConnections < 1)
      throw new FlotillaError(
        'BAD_REQUEST',
        `binaryConnections must be a positive integer, got ${String(opts.binaryConnections)}`,
        false,
      );
    if (opts.token !== undefined && !/^[A-Za-z0-9\-._~+/]+=*$/.test(opts.token))
      throw new FlotillaError(
        'BAD_REQUEST',
        'token must be a bearer token (letters, digits and - . _ ~ + /, = at the end)',
        false,
      );
    this.#token = opts.token ?? null;
    this.tls = tlsConnectOptions(opts.tls);
    this.poolConnections = positiveInt(opts, 'connections', 64);
    if (opts.gather !== undefined && typeof opts.gather !== 'boolean')
      throw new FlotillaError(
        'BAD_REQUEST',
        `gather must be true or false, got ${JSON.stringify(opts.gather)}`,
        false,
      );
    this.gatherers = opts.gather === false ? null : new Map();
    for (const e of this.endpoints) this.pools.set(e, this.newPool(e));
    const maxAgeMs = opts.rangeMapMaxAgeMs ?? 30_000;
    if (!Number.isInteger(maxAgeMs) || maxAgeMs < 1)
      throw new FlotillaError(
        'BAD_REQUEST',
        `rangeMapMaxAgeMs must be a positive integer, got ${String(opts.rangeMapMaxAgeMs)}`,
        false,
      );
    this.routing =
      (opts.rangeRouting ?? this.endpoints.length > 1)
        ? new RangeRouting({
            fetch: () => this.fetchRangeMap(),
            now: Date.now,
            maxAgeMs,
            minRefreshIntervalMs: 250,
            maxBackoffMs: 30_000,
            downMs: 2_000,
            maxNodes: maxRoutedNodes,
          })
        : null;
  }

  /** The pool to `url`, made at its first use and closed with the client. */
  private poolFor(url: string): Pool {
    let p = this.pools.get(url);
    if (p === undefined) {
      p = this.newPool(url);
      this.pools.set(url, p);
    }
    return p;
  }

  /** The pool `url`'s HTTP watches stream over, made at the first. */
  private watchPoolFor(url: string): Pool {
    let p = this.watchPools.get(url);
    if (p === undefined) {
      p = this.newPool(url, null);
      this.watchPools.set(url, p);
    }
    return p;
  }

  /**
   * A pool to `endpoint` of `connections` connections (null: as many as are asked for): over
   * TLS with the given CA and certificate, and its requests presenting the token, when there is
   * one.
   */
  private newPool(endpoint: string, connections: number | null = this.poolConnections): Pool {
    const options: Pool.Options = {
      connections,
      pipelining: 1,
      ...(Object.keys(this.tls).length === 0 ? {} : { connect: this.tls }),
    };
    return this.#token === null
      ? new Pool(endpoint, options)
      : new BearerPool(endpoint, this.#token, options);
  }

  async put(
    key: string,
    value: string,
    o: { prevKv?: boolean; lease?: number; encoding?: 'utf8' | 'base64' } & CallOptions = {},
  ): Promise<PutResponse> {
    checkOptions(o, 'put', putOptions);
    return this.write<PutResponse>(
      '/v1/kv/put',
      { key, value, ...pick(o, 'prevKv', 'lease', 'encoding') },
      o.signal,
    );
  }

  async get(
    key: string,
    o: {
      serializable?: boolean;
      /** `linearizable` (default), `lease` or `serializable` (API.md, "Consistency of reads"). */
      consistency?: ReadConsistency;
      revision?: number;
      encoding?: 'utf8' | 'base64';
    } & CallOptions = {},
  ): Promise<KeyValue | null> {
    // A range's options (prefix, rangeEnd, limit) would read other keys and answer the first.
    checkOptions(o, 'get', getOptions);
    const r = await this.range(key, o);
    return r.kvs[0] ?? null;
  }

  async range(
    key: string,
    o: {
      rangeEnd?: string;
      prefix?: boolean;
      limit?: number;
      countOnly?: boolean;
      serializable?: boolean;
      /** `linearizable` (default), `lease` or `serializable` (API.md, "Consistency of reads"). */
      consistency?: ReadConsistency;
      /** Read the store as it was at this revision (not compacted yet); default: now. */
      revision?: number;
      encoding?: 'utf8' | 'base64';
      /**
       * An interval over several ranges is read range by range in key order, each range at its
       * own revision (not one atomic snapshot; API.md, "Ranges"), instead of refused
       * `CROSS_RANGE`. Not with `revision`.
       */
      multiRange?: boolean;
    } & CallOptions = {},
  ): Promise<RangeResponse> {
    checkOptions(o, 'range', rangeOptions);
    const body = {
      key,
      ...pick(
        o,
        'rangeEnd',
        'prefix',
        'limit',
        'countOnly',
        'serializable',
        'consistency',
        'revision',
        'encoding',
        'multiRange',
      ),
    };
    return this.call<RangeResponse>('POST', '/v1/kv/range', body, o.signal);
  }

  async delete(
    key: string,
    o: {
      rangeEnd?: string;
      prefix?: boolean;
      prevKv?: boolean;
      encoding?: 'utf8' | 'base64';
    } & CallOptions = {},
  ): Promise<DeleteResponse> {
    checkOptions(o, 'delete', deleteOptions);
    return this.write<DeleteResponse>(
      '/v1/kv/delete',
      { key, ...pick(o, 'rangeEnd', 'prefix', 'prevKv', 'encoding') },
      o.signal,
    );
  }

  async txn(
    compare: readonly Compare[],
    success: readonly TxnOp[],
    failure: readonly TxnOp[] = [],
    o: CallOptions = {},
  ): Promise<TxnResponse> {
    checkOptions(o, 'txn', []);
    return this.write<TxnResponse>('/v1/kv/txn', { compare, success, failure }, o.signal);
  }

  /**
   * Follows the changes of `key` (or a range or prefix of keys), one batch per revision, in
   * revision order, from `startRevision` (past or future) or from now; across node failures
   * it resumes on another endpoint without a gap or a repeat (watch.ts). Ends when
   * `o.signal` aborts; throws `COMPACTED` if it must resume from history that is gone.
   */
  watch(key: string, o: WatchOptions = {}): AsyncGenerator<WatchBatch> {
    checkOptions(o, 'watch', watchOptions);
    return watchStream(
      {
        endpoints: this.endpoints,
        lines: (endpoint, body, signal, idleMs) => this.watchLines(endpoint, body, signal, idleMs),
      },
      key,
      o,
    );
  }

  /** One watch stream from `endpoint`: over the binary protocol when its node serves it. */
  private async *watchLines(
    endpoint: string,
    body: WatchBody,
    signal: AbortSignal,
    idleMs: number,
  ): AsyncGenerator<WatchLine> {
    this.refuseIfClosed('watch');
    if (!this.binaryUsable(endpoint)) {
      yield* httpWatchLines(this.watchPoolFor(endpoint), endpoint, body, signal, idleMs);
      return;
    }
    yield* wireWatchLines(await this.wireOrBackOff(endpoint), body, signal, idleMs);
  }

  /**
   * Grants a lease of `ttl` seconds (with `o.id`, or one the cluster picks). Keys put with
   * `{ lease: id }` are deleted when it is revoked or expires: keep it alive with
   * `leaseKeepAlive` (or `keepLeaseAlive`) more often than its time to live.
   */
  async leaseGrant(
    ttl: number,
    o: { id?: number } & CallOptions = {},
  ): Promise<LeaseGrantResponse> {
    checkOptions(o, 'leaseGrant', ['id']);
    return this.call<LeaseGrantResponse>(
      'POST',
      '/v1/lease/grant',
      { ttl, ...pick(o, 'id') },
      o.signal,
    );
  }

  /** Revokes a lease: its keys are deleted, in one revision. */
  async leaseRevoke(id: number, o: CallOptions = {}): Promise<LeaseRevokeResponse> {
    return this.call<LeaseRevokeResponse>('POST', '/v1/lease/revoke', { id }, o.signal);
  }

  /** Renews a lease for a whole time to live from now; `LEASE_NOT_FOUND` once it expired. */
  async leaseKeepAlive(id: number, o: CallOptions = {}): Promise<LeaseKeepAliveResponse> {
    return this.call<LeaseKeepAliveResponse>('POST', '/v1/lease/keepalive', { id }, o.signal);
  }

  /** Seconds a lease has left (as its leader sees it), its granted time to live, its keys. */
  async leaseTimeToLive(
    id: number,
    o: { keys?: boolean } & CallOptions = {},
  ): Promise<LeaseTimeToLiveResponse> {
    return this.call<LeaseTimeToLiveResponse>(
      'POST',
      '/v1/lease/timetolive',
      { id, ...pick(o, 'keys') },
      o.signal,
    );
  }

  /** Every lease. */
  async leases(o: CallOptions = {}): Promise<LeaseListResponse> {
    return this.call<LeaseListResponse>('POST', '/v1/lease/leases', {}, o.signal);
  }

  /**
   * Keeps a lease alive until `o.signal` aborts (then resolves), renewing it every third of
   * its time to live; rejects with `LEASE_NOT_FOUND` if it was lost (expired or revoked), with
   * the `CONNECTION` error at once when every endpoint was refused in a way no retry changes (its
   * certificate refused, its scheme wrong), and with the last error if renewals kept failing
   * until the lease must be presumed expired.
   */
  async keepLeaseAlive(id: number, ttl: number, o: { signal?: AbortSignal } = {}): Promise<void> {
    // 0 or less renewed in a tight loop, hundreds of requests a second.
    if (typeof ttl !== 'number' || !(ttl > 0) || !Number.isFinite(ttl))
      throw new FlotillaError(
        'BAD_REQUEST',
        `ttl must be the lease's time to live in seconds, above 0, got ${JSON.stringify(ttl) ?? String(ttl)}`,
      );
    const ttlMs = ttl * 1000;
    // Each renewal gets a third of the time to live: one that waited out the client's whole
    // timeout on a frozen leader outlasted a short lease, though another leader was elected
    // within a second. One not answered in time is tried again at once, at another node.
    const attemptMs = Math.max(50, Math.min(this.timeoutMs, Math.floor(ttlMs / 3)));
    let lastRenewed = Date.now();
    while (!(o.signal?.aborted ?? false)) {
      // A Deadline, not AbortSignal.any over the caller's long-lived signal in a loop: it holds
      // its listener on that signal only until disposed.
      const attempt = new Deadline(attemptMs, o.signal);
      let renewed = false;
      let soon = false;
      try {
        await this.leaseKeepAlive(id, { signal: attempt.signal });
        lastRenewed = Date.now();
        renewed = true;
      } catch (err) {
        if (o.signal?.aborted ?? false) return;
        if (err instanceof FlotillaError && err.code === 'LEASE_NOT_FOUND') throw err;
        // Every endpoint's certificate refused (or its scheme wrong): the same on every try,
        // so the lease cannot be renewed. It was tried every 100 ms until the lease ran out.
        if (err instanceof FlotillaError && refusedEndpoint(err) !== null) throw err;
        // Unanswered in time, or a failure another try can get past (the next endpoint): again
        // soon. One that will not clear (a token refused) waits as a renewal does.
        const unanswered = attempt.timedOut;
        soon = unanswered || (err instanceof FlotillaError && retryable.has(err.code));
        if (Date.now() - lastRenewed > ttlMs)
          throw unanswered
            ? new FlotillaError(
                'TIMEOUT',
                `No node renewed lease ${id} within its time to live (${ttl} s): presume it expired`,
                false,
              )
            : err;
      } finally {
        attempt[Symbol.dispose]();
      }
      await sleep(renewed || !soon ? ttlMs / 3 : Math.min(ttlMs / 3, 100), o.signal);
    }
  }

  /**
   * Forgets the store's history before `revision`: reads at older revisions are refused
   * (`COMPACTED`) from then on. Answers the compacted revision.
   */
  async compact(revision: number, o: CallOptions = {}): Promise<CompactResponse> {
    // Not a session write: compacting twice to one revision changes nothing, and a retry of
    // one that did apply answers COMPACTED.
    return this.call<CompactResponse>('POST', '/v1/kv/compact', { revision }, o.signal);
  }

  /**
   * Sets `key` to `next` only if its value is `expected` (null: only if absent). Returns
   * whether it swapped.
   */
  async compareAndSwap(
    key: string,
    expected: string | null,
    next: string,
    o: CallOptions = {},
  ): Promise<boolean> {
    const cmp: Compare =
      expected === null
        ? { key, target: 'version', op: '=', value: 0 }
        : { key, target: 'value', op: '=', value: expected };
    const r = await this.txn([cmp], [{ put: { key, value: next } }], [], o);
    return r.succeeded;
  }

  /**
   * The job queue `name`: add jobs, claim them, report on them (docs/CLIENT.md, "Job queue").
   * Writes carry this client's session, so a retried one applies at most once.
   */
  queue(name: string): QueueClient {
    // Refused here, not by every call: a worker on a name no queue can have ran no job and
    // said so only to onError (or `queue work`, to its terminal), every second, for ever.
    const max = defaultQueueLimits.maxNameChars;
    if (!isQueueName(name, defaultQueueLimits))
      throw new FlotillaError(
        'BAD_REQUEST',
        `A queue name must be 1 to ${max} letters, digits or ._:-, got ${JSON.stringify(typeof name === 'string' ? name.slice(0, 200) : name)}`,
      );
    const t: QueueTransport = {
      write: (path, body, signal, extraMs) => this.write(path, body, signal, extraMs),
      read: (path, body, signal) => this.call('POST', path, body, signal),
    };
    let gather: QueueGatherers | null = null;
    if (this.gatherers !== null) {
      gather = this.gatherers.get(name) ?? {
        adds: new AddGatherer(name, t),
        reports: new ReportGatherer(name, t),
      };
      this.gatherers.set(name, gather);
    }
    return new QueueClient(name, t, gather);
  }

  async status(endpoint?: string, o: CallOptions = {}): Promise<NodeStatus> {
    return this.callOnce<NodeStatus>(
      endpoint ?? (this.endpoints[this.preferred] as string),
      'GET',
      '/v1/status',
      undefined,
      o.signal,
    );
  }

  async clusterStatus(o: CallOptions = {}): Promise<ClusterStatus> {
    return this.call<ClusterStatus>('GET', '/v1/cluster/status', undefined, o.signal);
  }

  /**
   * The members of the cluster, as the key-value group's leader sees them (with each one's
   * replication): roles in both Raft groups, addresses, removed ids.
   */
  async members(o: CallOptions = {}): Promise<MembersResponse> {
    return this.call<MembersResponse>('POST', '/v1/cluster/members/list', {}, o.signal);
  }

  /**
   * Adds a member: a voter, or with `learner` a learner (replicated to, no vote). The node at
   * `peer` and `client` is started afterwards with the cluster's members; `flotilla start
   * --join` does both in one step. A voter added before its node runs counts toward every
   * quorum at once: add a learner and promote it once caught up to keep the cluster available.
   */
  async addMember(
    m: { id: number; peer: string; client: string },
    o: { learner?: boolean } & CallOptions = {},
  ): Promise<MembersResponse> {
    const path = o.learner === true ? '/v1/cluster/members/add-learner' : '/v1/cluster/members/add';
    return this.call<MembersResponse>('POST', path, pick(m, 'id', 'peer', 'client'), o.signal);
  }

  /** Makes a learner a voter. */
  async promoteMember(id: number, o: CallOptions = {}): Promise<MembersResponse> {
    return this.call<MembersResponse>('POST', '/v1/cluster/members/promote', { id }, o.signal);
  }

  /**
   * Removes a member for good: its id can never be used again. A member still holding replicas
   * of ranges is refused MEMBER_HOLDS_RANGES (drain it first) unless `force` (it is gone).
   */
  async removeMember(
    id: number,
    o: { force?: boolean } & CallOptions = {},
  ): Promise<MembersResponse> {
    const body = o.force === true ? { id, force: true } : { id };
    return this.call<MembersResponse>('POST', '/v1/cluster/members/remove', body, o.signal);
  }

  /**
   * Hands leadership of the key-value group to voter `o.to`, or without it to the voter most
   * caught up. Resolves once the leader started the transfer (it completes within an election
   * timeout, or is abandoned).
   */
  async transferLeadership(o: { to?: number } & CallOptions = {}): Promise<void> {
    await this.call<unknown>(
      'POST',
      '/v1/cluster/transfer-leadership',
      o.to === undefined ? {} : { to: o.to },
      o.signal,
    );
  }

  /**
   * The range map (docs/API.md, "Ranges"), with what the answering node knows of each; the map
   * is read linearizably unless `consistency` says otherwise.
   */
  async ranges(o: { consistency?: ReadConsistency } & CallOptions = {}): Promise<RangesResponse> {
    const path =
      o.consistency === undefined ? '/v1/ranges' : `/v1/ranges?consistency=${o.consistency}`;
    return this.call<RangesResponse>('GET', path, undefined, o.signal);
  }

  /**
   * Splits the range holding `key` at `key`: the keys from `key` on move to a new range, on
   * `replicas` (a subset of the range's voters; default: all of them). Not repeated blindly: a
   * retry of a split that applied is refused (the key is a range's start).
   */
  async splitRange(
    key: string,
    o: CallOptions & { readonly replicas?: readonly number[] } = {},
  ): Promise<SplitResponse> {
    const body = o.replicas === undefined ? { key } : { key, replicas: [...o.replicas] };
    return this.call<SplitResponse>('POST', '/v1/ranges/split', body, o.signal);
  }

  /**
   * What range routing knows now (for tests and tools): whether it is on, the cached map's
   * version (0: none yet), how many times it was fetched, the leader known per range, and
   * why the last fetch failed.
   */
  rangeRoutingState(): {
    readonly on: boolean;
    readonly version: number;
    readonly fetched: number;
    readonly leaderOf: (range: number) => number;
    readonly lastError: FlotillaError | null;
  } {
    const r = this.routing;
    return {
      on: r !== null,
      version: r?.version ?? 0,
      fetched: r?.fetched ?? 0,
      leaderOf: (range) => r?.leaderOf(range) ?? 0,
      lastError: r?.lastError ?? null,
    };
  }

  /** What the placement loop is doing, and the nodes being drained (docs/API.md, "Placement"). */
  async placement(o: CallOptions = {}): Promise<PlacementResponse> {
    return this.call<PlacementResponse>('GET', '/v1/placement', undefined, o.signal);
  }

  /**
   * Drains member `node`: the placement loop moves its replicas of ranges split off range 0 to
   * the other members (`undrainNode` undoes it). Answers at once; `placement()` shows progress.
   * A drain never takes a range below its replication factor: with too few other members the
   * answer's `drainBlocked` says so, and `force: true` lets the replicas go all the same.
   */
  async drainNode(
    node: number,
    o: CallOptions & { readonly force?: boolean } = {},
  ): Promise<PlacementResponse> {
    const body = o.force === true ? { node, force: true } : { node };
    return this.call<PlacementResponse>('POST', '/v1/nodes/drain', body, o.signal);
  }

  async undrainNode(node: number, o: CallOptions = {}): Promise<PlacementResponse> {
    return this.call<PlacementResponse>('POST', '/v1/nodes/undrain', { node }, o.signal);
  }

  /**
   * Moves range `range`'s replica from node `from` to node `to`; answers the range once the
   * move is done and recorded. A move runs while the new replica catches up, so each attempt
   * may wait up to a minute longer than `timeoutMs`. Safe to repeat: a move that happened
   * answers the range as it is.
   */
  async moveRange(
    range: number,
    from: number,
    to: number,
    o: CallOptions = {},
  ): Promise<MoveResponse> {
    return this.call<MoveResponse>(
      'POST',
      '/v1/ranges/move',
      { range, from, to },
      o.signal,
      Date.now() + this.deadlineMs + moveExtraMs,
      moveExtraMs,
    );
  }

  /**
   * Hands range `range`'s leadership to `to`, one of its voters; answers once `to` leads.
   * Safe to repeat: a transfer that happened answers at once. Ranges 1 and 2 (the job queue,
   * the meta group) are refused INVALID_REQUEST, a `to` that is no voter NOT_RANGE_VOTER.
   */
  async transferRangeLeader(
    range: number,
    to: number,
    o: CallOptions = {},
  ): Promise<TransferLeaderResponse> {
    return this.call<TransferLeaderResponse>(
      'POST',
      '/v1/ranges/transfer-leadership',
      { range, to },
      o.signal,
    );
  }

  /** Whether calls to `endpoint` go over the binary protocol now (for tests and tools). */
  usesBinary(endpoint: string): boolean {
    return this.binaryPorts.has(endpoint.replace(/\/$/, ''));
  }

  /**
   * Closes every connection, once the calls in flight have their answers; a second close does
   * nothing (so `await using` after an explicit close is safe). A call made afterwards fails at
   * once, `CLIENT_CLOSED` (definite: nothing was sent), rather than retrying a pool that is gone.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const wires = [...this.wires.values()].flat();
    this.wires.clear();
    for (const w of wires)
      void w?.then(
        (c) => c.close(),
        () => undefined,
      );
    // A watch's stream lasts until it is cancelled: closing would wait for it, so end them.
    const watchPools = [...this.watchPools.values()];
    this.watchPools.clear();
    await Promise.all([
      ...[...this.pools.values()].map((p) => p.close()),
      ...watchPools.map((p) => p.destroy()),
    ]);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  private refuseIfClosed(what: string): void {
    if (this.closed)
      throw new FlotillaError('CLIENT_CLOSED', `${what}: the client is closed`, false);
  }

  // -------------------------------------------------------------------------------------------

  /** A write: one session sequence number for all its attempts. */
  private async write<T>(
    path: string,
    body: Record<string, unknown>,
    signal?: AbortSignal,
    /** Longer than usual each attempt may take: a claim that waits for a job waits this long. */
    extraMs = 0,
  ): Promise<T> {
    const deadline = Date.now() + this.deadlineMs + extraMs;
    const seq = await this.takeSeq(deadline, signal);
    const send = (mark: boolean): Promise<T> => {
      const acked = mark ? { ackedBelow: this.oldestInFlight } : {};
      const session = { clientId: this.clientId, seq, ...acked };
      return this.call<T>('POST', path, { ...body, ...session }, signal, deadline, extraMs);
    };
    try {
      const mark = this.markThisWrite();
      try {
        return await send(mark);
      } catch (err) {
        // A node of an older release: the write was refused whole (definite), so it is sent
        // again, with the same seq, without the mark, and the marks wait for a while.
        if (!mark || !refusedMark(err)) throw err;
        this.sendAcks = false;
        this.writesUntilMark = this.markRetryWrites;
        return await send(false);
      }
    } finally {
      this.finishSeq(seq);
    }
  }

  /**
   * Whether this write carries the mark: yes unless a refusal turned marks off, and then again
   * once `markRetryWrites` writes went without (the upgrade may have ended since).
   */
  private markThisWrite(): boolean {
    if (this.sendAcks) return true;
    if (this.writesUntilMark-- > 0) return false;
    this.sendAcks = true;
    return true;
  }

  /** The next sequence number, once it is within the window of the oldest write in flight. */
  private async takeSeq(deadline: number, signal?: AbortSignal): Promise<number> {
    while (this.seq + 1 >= this.oldestInFlight + this.writeWindow) {
      if (signal?.aborted) throw new FlotillaError('ABORTED', 'Aborted by the caller', false);
      const waitMs = deadline - Date.now();
      if (waitMs <= 0)
        throw new FlotillaError(
          'TIMEOUT',
          `The write waited ${this.deadlineMs} ms for one of the ${this.writeWindow} writes ` +
            `in flight to finish; it was never sent`,
          false,
        );
      await new Promise<void>((resolve) => {
        const wake = (): void => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', wake);
          const i = this.windowWaiters.indexOf(wake);
          if (i >= 0) this.windowWaiters.splice(i, 1);
          resolve();
        };
        const timer = setTimeout(wake, waitMs);
        signal?.addEventListener('abort', wake, { once: true });
        this.windowWaiters.push(wake);
      });
    }
    const seq = ++this.seq;
    this.writesInFlight.add(seq);
    return seq;
  }

  private finishSeq(seq: number): void {
    this.writesInFlight.delete(seq);
    while (this.oldestInFlight <= this.seq && !this.writesInFlight.has(this.oldestInFlight))
      this.oldestInFlight++;
    // Wake, oldest first, as many waiters as the window now has room for; each re-checks.
    const room = this.oldestInFlight + this.writeWindow - 1 - this.seq;
    for (const wake of this.windowWaiters.slice(0, Math.max(0, room))) wake();
  }

  private async call<T>(
    method: 'GET' | 'POST',
    path: string,
    body: unknown,
    signal?: AbortSignal,
    deadline = Date.now() + this.deadlineMs,
    extraMs = 0,
  ): Promise<T> {
    let last: FlotillaError | null = null;
    /** The last error a node answered with, rather than one of not reaching a node. */
    let answered: FlotillaError | null = null;
    let indefinite = false;
    let attempts = 0;
    /** Each endpoint tried, in order, with the code of its last failure: said when giving up. */
    const tried = new Map<string, string>();
    /**
     * The nodes whose certificate this client refused (with OpenSSL's code), that speak TLS
     * to an http:// endpoint, or that answer an https:// one without TLS: not tried again.
     */
    const refused = new Map<string, string>();
    // A read changes nothing, so its failure is definite whatever the transport said.
    const reads = method === 'GET' || readPaths.has(path);
    // A key-value request goes to its range's leader when the cached map says which it is.
    const spans = this.routing !== null && method === 'POST' ? spansOfBody(path, body) : null;
    for (let attempt = 0; attempt < this.maxAttempts && Date.now() < deadline; attempt++) {
      if (signal?.aborted) throw new FlotillaError('ABORTED', 'Aborted by the caller', indefinite);
      const route =
        spans === null || this.routing === null ? null : await this.routing.target(spans, attempt);
      const preferred = this.endpoints[this.preferred] as string;
      const endpoint = route === null ? preferred : route.url;
      attempts++;
      try {
        const answer = await this.callOnce<T>(endpoint, method, path, body, signal, extraMs);
        // A write's header names the node that applied it: its range's leader.
        if (route !== null)
          this.routing?.answered(route, memberIdOf(answer), { write: path !== '/v1/kv/range' });
        return answer;
      } catch (err) {
        const e =
          err instanceof FlotillaError ? err : new FlotillaError('CONNECTION', String(err), true);
        indefinite ||= e.indefinite && !reads;
        last = e;
        if (!unreached.has(e.code)) answered = e;
        tried.delete(endpoint);
        tried.set(endpoint, e.code);
        // A certificate this client refused is refused again on every attempt (8 attempts over
        // 2 s came to the same hint), as a port that speaks TLS answers an http:// endpoint,
        // and a port without TLS an https:// one, the same way each time. Another endpoint may
        // serve (a node whose renewal was missed), so each is tried once; when none is left,
        // the call fails now.
        const refusal = refusedEndpoint(e);
        if (refusal !== null) {
          const again = refused.has(endpoint);
          refused.set(endpoint, refusal);
          if (again || this.endpoints.every((u) => refused.has(u)))
            throw refusedEverywhere(e, refused, indefinite);
        }
        // An earlier attempt may have applied even if this one was refused outright.
        if (!retryable.has(e.code))
          throw indefinite === e.indefinite
            ? e
            : new FlotillaError(
                e.code,
                e.message,
                indefinite,
                e.leader,
                e.retryAfterMs,
                e.compactRevision,
              );
        const backoffMs = Math.min(25 * 2 ** attempt, 500) * (0.5 + Math.random() / 2);
        if (e.code === 'OVERLOADED') {
          // The node refused before doing anything. Another node would forward to the same
          // leader, so stay, and come back no sooner than asked, spread over half as long
          // again so that the clients refused together do not return together.
          const waitMs = Math.max(backoffMs, e.retryAfterMs * (1 + Math.random() / 2));
          await sleep(Math.min(waitMs, Math.max(0, deadline - Date.now())));
          continue;
        }
        if (route !== null) {
          // Learn from the failure (a leader named, a node down); WRONG_RANGE waits for a
          // fresher map, without which the next attempt would go astray the same way.
          await this.routing?.failed(route, e);
        } else {
          if (e.leader > 0 && !this.leaderUrlById.has(e.leader))
            await this.refreshMembers(endpoint);
          this.redirect(e);
          // To the next endpoint not refused so, at once: the refusal was no node's failure
          // that a pause lets pass.
          if (refusal !== null) {
            this.skipRefused(refused);
            continue;
          }
        }
        await sleep(backoffMs);
      }
    }
    // What a node said (NO_LEADER, say) tells more than the node tried last being down; not
    // when an attempt may have applied, since such a code reads as "nothing was done".
    const l =
      (last !== null && unreached.has(last.code) && !indefinite ? (answered ?? last) : last) ??
      new FlotillaError('TIMEOUT', 'No attempt was made before the deadline', false);
    throw new FlotillaError(
      l.code,
      `${l.message} (gave up after retries: ${attempts} attempt${attempts === 1 ? '' : 's'}` +
        (tried.size > 1
          ? ` at ${[...tried].map(([url, code]) => `${url} (${code})`).join(', ')})`
          : ')'),
      indefinite,
      l.leader,
      l.retryAfterMs,
    );
  }

  /** A node's HTTP answer names its binary protocol port: use it from the next call on. */
  private learnBinaryPort(endpoint: string, header: string | string[] | undefined): void {
    if (this.protocol !== 'auto' || typeof header !== 'string') return;
    const port = Number(header);
    if (!Number.isInteger(port) || port < 1 || port > 65_535) return;
    if (this.binaryPorts.get(endpoint) !== port) this.binaryPorts.set(endpoint, port);
  }

  /**
   * The range map (keys in base64, so bounds compare as bytes) and the members' client URLs,
   * from the first endpoint that answers both, within one attempt's timeout in all.
   */
  private async fetchRangeMap(): Promise<RangeMapSnapshot> {
    const until = Date.now() + this.timeoutMs;
    let last: unknown = null;
    for (let i = 0; i < this.endpoints.length && Date.now() < until; i++) {
      const endpoint = this.endpoints[(this.preferred + i) % this.endpoints.length] as string;
      try {
        const [ranges, status] = await Promise.all([
          this.callOnce<RangesResponse>(endpoint, 'GET', '/v1/ranges?encoding=base64', undefined),
          this.callOnce<NodeStatus>(endpoint, 'GET', '/v1/status', undefined),
        ]);
        for (const m of status.members) this.leaderUrlById.set(m.id, m.client);
        this.endpointById.set(status.id, endpoint);
        // An endpoint a member advertises as its own client URL reaches that member: only the
        // others are asked who they are (a client's first call cost five requests, one for
        // every endpoint, and a thousand new clients at once spent seconds on them).
        for (const m of status.members)
          if (this.endpoints.includes(m.client) && !this.endpointById.has(m.id))
            this.endpointById.set(m.id, m.client);
        await this.identifyEndpoints();
        // A node the client was given an endpoint for is reached there: the address it
        // advertises to its peers may not be reachable from the client (a container's name).
        const members = status.members.map((m) => ({
          id: m.id,
          client: this.endpointById.get(m.id) ?? m.client,
        }));
        return { ranges, members };
      } catch (err) {
        // A refusal (a token without the role, a node too old to know the route) would be
        // the same from every node: only a node that failed is worth replacing by another.
        if (err instanceof FlotillaError && !retryable.has(err.code)) throw err;
        last = err;
      }
    }
    throw last instanceof FlotillaError
      ? last
      : new FlotillaError('CONNECTION', `No endpoint answered the range map: ${String(last)}`);
  }

  /**
   * Learns which node each endpoint reaches (its status's id), once per endpoint that
   * answers; best effort, all at once, each within one attempt's timeout.
   */
  private async identifyEndpoints(): Promise<void> {
    const known = new Set(this.endpointById.values());
    await Promise.all(
      this.endpoints
        .filter((e) => !known.has(e))
        .map(async (e) => {
          try {
            const st = await this.callOnce<NodeStatus>(e, 'GET', '/v1/status', undefined);
            if (Number.isSafeInteger(st.id) && st.id > 0) this.endpointById.set(st.id, e);
          } catch {
            // Not reachable now: asked again at the next fetch of the map.
          }
        }),
    );
  }

  /** Learns the members' client URLs, so a NOT_LEADER hint (a node id) can be followed. */
  private async refreshMembers(endpoint: string): Promise<void> {
    try {
      const st = await this.callOnce<NodeStatus>(endpoint, 'GET', '/v1/status', undefined);
      for (const m of st.members) this.leaderUrlById.set(m.id, m.client);
    } catch {
      // Best effort: without the map we rotate through the endpoints instead.
    }
  }

  /**
   * Moves on from the endpoints refused so (a certificate, a port that speaks TLS only, a port
   * without TLS) while one that was not is left.
   */
  private skipRefused(refused: ReadonlyMap<string, string>): void {
    for (let i = 0; i < this.endpoints.length; i++) {
      if (!refused.has(this.endpoints[this.preferred] as string)) return;
      this.preferred = (this.preferred + 1) % this.endpoints.length;
    }
  }

  /** After a failure, move to the leader if the error named one, else to the next endpoint. */
  private redirect(e: FlotillaError): void {
    const url = e.leader > 0 ? this.leaderUrlById.get(e.leader) : undefined;
    if (url !== undefined) {
      const i = this.endpoints.indexOf(url);
      if (i >= 0) {
        this.preferred = i;
        return;
      }
    }
    this.preferred = (this.preferred + 1) % this.endpoints.length;
  }

  private async callOnce<T>(
    endpoint: string,
    method: 'GET' | 'POST',
    path: string,
    body: unknown,
    signal?: AbortSignal,
    extraMs = 0,
  ): Promise<T> {
    this.refuseIfClosed(`${method} ${path}`);
    const pool = this.poolFor(endpoint);
    const deadline = new Deadline(this.timeoutMs + extraMs, signal);
    try {
      const op = method === 'POST' ? wireOpOfPath[path] : undefined;
      if (op !== undefined && this.binaryUsable(endpoint))
        return (await this.exchangeBinary(endpoint, op, body, deadline)) as T;
      return await this.exchange<T>(pool, endpoint, method, path, body, deadline);
    } finally {
      deadline[Symbol.dispose]();
    }
  }

  private binaryUsable(endpoint: string): boolean {
    if (!this.binaryPorts.has(endpoint)) return false;
    const retryAt = this.binaryRetryAt.get(endpoint);
    if (retryAt === undefined) return true;
    if (Date.now() < retryAt) return false;
    this.binaryRetryAt.delete(endpoint);
    return true;
  }

  /** One attempt over the binary protocol; errors as an HTTP attempt's would be. */
  private async exchangeBinary(
    endpoint: string,
    op: WireOp,
    body: unknown,
    deadline: Deadline,
  ): Promise<unknown> {
    const read = wireReads.has(op);
    const conn = await this.wireOrBackOff(endpoint);
    const level = wireOpLevels.get(op);
    if (level !== undefined && conn.hello.featureLevel < level)
      // Nothing sent: a node of an earlier release would close the connection on a request
      // type it does not know, failing every other request on it. The caller (a gatherer)
      // sends the calls one by one instead.
      throw new FlotillaError(
        'FEATURE_NOT_ENABLED',
        `${conn.where} runs a release before ${op} (its feature level is ${conn.hello.featureLevel}, ${op} needs ${level})`,
        false,
      );
    // The connection's handshake carries the session id; a write's body need not repeat it.
    const b = body as Record<string, unknown>;
    const sent = b['clientId'] === this.clientId ? { ...b, clientId: undefined } : b;
    try {
      return await conn.request(op, dropUndefined(sent), {
        read,
        signal: deadline.signal,
        longPoll: op === 'queue.claim',
      });
    } catch (err) {
      if (err instanceof FlotillaError && err.code === 'ABORTED' && deadline.timedOut)
        throw new FlotillaError(
          'TIMEOUT',
          `${op} to ${conn.where}: no answer within ${this.timeoutMs} ms`,
          !read,
        );
      throw err;
    }
  }

  /**
   * A binary connection to `endpoint`'s node; when none can be made, the endpoint is served
   * over HTTP for a while and this attempt fails (definitely: nothing was sent).
   */
  private async wireOrBackOff(endpoint: string): Promise<WireConnection> {
    try {
      return await this.wire(endpoint);
    } catch (err) {
      this.binaryRetryAt.set(endpoint, Date.now() + binaryRetryMs);
      throw err instanceof FlotillaError ? err : new FlotillaError('CONNECTION', String(err));
    }
  }

  /** A binary connection to `endpoint`'s node: the next of its few, made when missing or closed. */
  private wire(endpoint: string): Promise<WireConnection> {
    let slots = this.wires.get(endpoint);
    if (slots === undefined) {
      slots = new Array<Promise<WireConnection> | undefined>(this.binaryConnections);
      this.wires.set(endpoint, slots);
    }
    const i = this.nextWire++ % this.binaryConnections;
    const have = slots[i];
    if (have !== undefined) {
      // A connection that closed is replaced; one still connecting is shared.
      return have.then(
        (c) => (c.closed ? this.connectWire(endpoint, slots, i) : c),
        () => this.connectWire(endpoint, slots, i),
      );
    }
    return this.connectWire(endpoint, slots, i);
  }

  private connectWire(
    endpoint: string,
    slots: (Promise<WireConnection> | undefined)[],
    i: number,
  ): Promise<WireConnection> {
    const port = this.binaryPorts.get(endpoint) as number;
    const url = new URL(endpoint);
    const p = WireConnection.connect({
      host: url.hostname.replace(/^\[(.*)\]$/, '$1'),
      port,
      clientId: this.clientId,
      ...(this.#token === null ? {} : { token: this.#token }),
      timeoutMs: this.timeoutMs,
      // A node that serves HTTPS serves its binary protocol over TLS as well.
      ...(url.protocol === 'https:' ? { tls: this.tls } : {}),
    });
    slots[i] = p;
    p.catch(() => {
      if (slots[i] === p) slots[i] = undefined;
    });
    return p;
  }

  private async exchange<T>(
    pool: Pool,
    endpoint: string,
    method: 'GET' | 'POST',
    path: string,
    body: unknown,
    deadline: Deadline,
  ): Promise<T> {
    let res;
    let text: string;
    try {
      res = await pool.request({
        method,
        path,
        headers: body === undefined ? {} : { 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: deadline.signal,
      });
      text = await res.body.text();
    } catch (err) {
      // The request may have reached the server: whether it applied is unknown, unless the
      // connection was never made (nothing was sent).
      const code = deadline.timedOut ? 'TIMEOUT' : 'CONNECTION';
      throw withRefusalCause(
        new FlotillaError(
          code,
          `${method} ${endpoint}${path} failed: ${failureText(err)}${this.answeredOverHttp.has(endpoint) ? '' : schemeHint(endpoint, err)}`,
          method === 'POST' && !connectFailed(err),
        ),
        err,
      );
    }
    if (res.headers[tlsOnlyHeader] !== undefined)
      // An HTTPS port's plain-text answer to a plain request: nothing was done.
      throw markRefusedEndpoint(
        new FlotillaError(
          'CONNECTION',
          `${method} ${endpoint}${path} failed: the port answered that it speaks TLS only (the node serves its clients over TLS: its endpoint is https://)`,
          false,
        ),
        'TLS only',
      );
    this.answeredOverHttp.add(endpoint);
    this.learnBinaryPort(endpoint, res.headers[clientProtocolHeader]);
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new FlotillaError(
        'BAD_RESPONSE',
        `Non-JSON answer (${res.statusCode}) from ${endpoint}${path}: ${text.slice(0, 200)}`,
        method === 'POST',
      );
    }
    if (res.statusCode >= 400) {
      const e = (json as ErrorBody).error;
      // A newer node may send a code this client does not know: say so rather than pass on a
      // code outside the vocabulary its callers switch on.
      if (typeof e?.code !== 'string' || !isErrorCode(e.code))
        throw new FlotillaError(
          'BAD_RESPONSE',
          `Unknown error (${res.statusCode}) from ${endpoint}${path}: ${text.slice(0, 200)}`,
          e?.indefinite ?? method === 'POST',
        );
      const after = Number(res.headers['retry-after']);
      const retryAfterMs = Number.isFinite(after) && after > 0 ? Math.min(after, 60) * 1000 : 0;
      throw new FlotillaError(
        e.code,
        e.message,
        e.indefinite,
        e.leader ?? 0,
        retryAfterMs,
        typeof e.compactRevision === 'number' ? e.compactRevision : 0,
      );
    }
    return json as T;
  }
}

/** What a TLS connection to a node is made with (node:tls options). */
interface TlsPem {
  ca?: string | Buffer;
  cert?: string | Buffer;
  key?: string | Buffer;
}

function tlsConnectOptions(o: ClientTlsOptions | undefined): TlsPem {
  const pem = (v: string | Uint8Array): string | Buffer =>
    typeof v === 'string' ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  if (o === undefined) return {};
  checkOptions(o, 'FlotillaClient tls', ['ca', 'cert', 'key']);
  if ((o.cert === undefined) !== (o.key === undefined))
    throw new FlotillaError(
      'BAD_REQUEST',
      'tls.cert and tls.key go together: a client certificate needs its key',
      false,
    );
  return {
    ...(o.ca === undefined ? {} : { ca: pem(o.ca) }),
    ...(o.cert === undefined ? {} : { cert: pem(o.cert) }),
    ...(o.key === undefined ? {} : { key: pem(o.key) }),
  };
}

/** A value as an error message shows it. */
/**
 * Failures of making a connection, before any byte of a request is written on it: refused,
 * unreachable, a name not found, a connect timeout, or a TLS handshake this client gave up
 * (the node's certificate not trusted, expired or for another name; a port without TLS). A
 * handshake the node refused (no client certificate) closes the socket like any other drop,
 * and stays indefinite.
 */
const connectFailures = new Set([
  'ECONNREFUSED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'UND_ERR_CONNECT_TIMEOUT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'ERR_SSL_WRONG_VERSION_NUMBER',
]);

function connectFailed(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && connectFailures.has(code);
}

/**
 * The failure of a call whose every endpoint tried failed in a way no retry helps (a
 * certificate this client refused, a port that speaks TLS only, a port without TLS): the last
 * failure, with its hint, and what each endpoint did when there were several. Definite unless
 * an earlier attempt may have applied.
 */
function refusedEverywhere(
  e: FlotillaError,
  refused: ReadonlyMap<string, string>,
  indefinite: boolean,
): FlotillaError {
  const each =
    refused.size > 1
      ? ` (each endpoint tried once: ${[...refused].map(([url, why]) => `${url} (${why})`).join(', ')})`
      : '';
  return markRefusedEndpoint(
    new FlotillaError(e.code, `${e.message}${each}`, indefinite, e.leader, e.retryAfterMs),
    refusedEndpoint(e) ?? '',
  );
}

/** A refusal of the `ackedBelow` field by a node of a release that does not know it. */
function refusedMark(err: unknown): boolean {
  return (
    err instanceof FlotillaError && err.code === 'UNKNOWN_FIELD' && /"ackedBelow"/.test(err.message)
  );
}

function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean' || v === null) return String(v);
  return Array.isArray(v) ? 'an array' : `a ${typeof v}`;
}

/** A numeric option: absent takes `fallback`; anything but a positive integer is refused. */
function positiveInt(
  opts: ClientOptions,
  name: 'timeoutMs' | 'deadlineMs' | 'maxAttempts' | 'connections',
  fallback: number,
): number {
  const v: unknown = opts[name];
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1)
    throw new FlotillaError(
      'BAD_REQUEST',
      `${name} must be a positive integer, got ${describe(v)}`,
      false,
    );
  return v;
}

/** The node an answer's header names (0: none): for a write, the leader that applied it. */
function memberIdOf(answer: unknown): number {
  const header = (answer as { header?: { memberId?: unknown } } | null)?.header;
  const id = header?.memberId;
  return typeof id === 'number' && Number.isSafeInteger(id) ? id : 0;
}

function dropUndefined(o: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) out[k] = v;
  return out;
}

/**
 * An endpoint as the requests use it: a node's base URL without its trailing slash. Anything
 * else is refused here, naming the value, rather than by the HTTP stack on the first request as
 * "Invalid URL" without saying which endpoint.
 */
function checkEndpoint(endpoint: string): string {
  const refuse = (why: string) =>
    new FlotillaError(
      'BAD_REQUEST',
      `Endpoint ${JSON.stringify(endpoint)} ${why}: give a node's base URL, such as http://127.0.0.1:8001`,
      false,
    );
  if (typeof endpoint !== 'string') throw refuse('is not a string');
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw refuse('is not a URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw refuse(`has scheme ${JSON.stringify(url.protocol)}, not http: or https:`);
  if (url.pathname !== '/' || url.search !== '' || url.hash !== '')
    throw refuse('has a path, query or fragment');
  return endpoint.replace(/\/$/, '');
}
