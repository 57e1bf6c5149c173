// The TypeScript client for a Flotilla cluster: a list of endpoints, leader discovery, and
// retries that are safe because every write carries an exactly-once session (client id and a
// sequence number that a retry reuses; Raft thesis §6.3).
//
// The client is a face over its parts: options.ts checks what it is made with, caller.ts
// chooses the endpoint of each attempt and retries, connections.ts makes one attempt over
// HTTP or the binary protocol, write-session.ts numbers the writes.

import { Deadline } from '../api/deadline.js';
import { FlotillaError } from '../base/errors.js';
import { defaultQueueLimits, isQueueName } from '../base/limits.js';
import type { PlacementResponse } from '../api/placement-routes.js';
import { queuePaths } from '../api/queue-paths.js';
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
import { Caller, retryable } from './caller.js';
import { Connections } from './connections.js';
import {
  checkClientOptions,
  type CallOptions,
  type ClientOptions,
  type ReadConsistency,
} from './options.js';
import {
  AddGatherer,
  QueueClient,
  ReportGatherer,
  type QueueGatherers,
  type QueueTransport,
  type QueuesResponse,
} from './queue.js';
import { checkOptions, pick, refusedEndpoint, sleep } from './util.js';
import { watchStream, type WatchBatch, type WatchOptions } from './watch.js';
import { WriteSession } from './write-session.js';

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

/** How much longer than a call a range move may take on its node (the new replica catches up). */
const moveExtraMs = 60_000;

export class FlotillaClient {
  private readonly endpoints: string[];
  private readonly timeoutMs: number;
  private readonly deadlineMs: number;
  readonly clientId: string;
  /** Each queue's gatherers of calls (ClientOptions.gather), made when it is first named. */
  private readonly gatherers: Map<string, QueueGatherers> | null;
  private readonly connections: Connections;
  private readonly caller: Caller;
  private readonly writes: WriteSession;

  constructor(opts: ClientOptions) {
    const s = checkClientOptions(opts);
    this.endpoints = s.endpoints;
    this.timeoutMs = s.timeoutMs;
    this.deadlineMs = s.deadlineMs;
    this.clientId = s.clientId;
    this.gatherers = s.gather ? new Map() : null;
    this.connections = new Connections(s);
    this.caller = new Caller(s, this.connections);
    this.writes = new WriteSession(s, this.caller);
  }

  async put(
    key: string,
    value: string,
    o: { prevKv?: boolean; lease?: number; encoding?: 'utf8' | 'base64' } & CallOptions = {},
  ): Promise<PutResponse> {
    checkOptions(o, 'put', putOptions);
    return this.writes.write<PutResponse>(
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
    return this.caller.call<RangeResponse>('POST', '/v1/kv/range', body, o.signal);
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
    return this.writes.write<DeleteResponse>(
      '/v1/kv/delete',
      { key, ...pick(o, 'rangeEnd', 'prefix', 'prevKv', 'encoding') },
      o.signal,
    );
  }

  /** With `encoding: 'base64'` every key and value, of the request and the answer, is base64. */
  async txn(
    compare: readonly Compare[],
    success: readonly TxnOp[],
    failure: readonly TxnOp[] = [],
    o: { encoding?: 'utf8' | 'base64' } & CallOptions = {},
  ): Promise<TxnResponse> {
    checkOptions(o, 'txn', ['encoding']);
    return this.writes.write<TxnResponse>(
      '/v1/kv/txn',
      { compare, success, failure, ...pick(o, 'encoding') },
      o.signal,
    );
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
        lines: (endpoint, body, signal, idleMs) =>
          this.connections.watchLines(endpoint, body, signal, idleMs),
      },
      key,
      o,
    );
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
    return this.caller.call<LeaseGrantResponse>(
      'POST',
      '/v1/lease/grant',
      { ttl, ...pick(o, 'id') },
      o.signal,
    );
  }

  /** Revokes a lease: its keys are deleted, in one revision. */
  async leaseRevoke(id: number, o: CallOptions = {}): Promise<LeaseRevokeResponse> {
    return this.caller.call<LeaseRevokeResponse>('POST', '/v1/lease/revoke', { id }, o.signal);
  }

  /** Renews a lease for a whole time to live from now; `LEASE_NOT_FOUND` once it expired. */
  async leaseKeepAlive(id: number, o: CallOptions = {}): Promise<LeaseKeepAliveResponse> {
    return this.caller.call<LeaseKeepAliveResponse>(
      'POST',
      '/v1/lease/keepalive',
      { id },
      o.signal,
    );
  }

  /** Seconds a lease has left (as its leader sees it), its granted time to live, its keys. */
  async leaseTimeToLive(
    id: number,
    o: { keys?: boolean } & CallOptions = {},
  ): Promise<LeaseTimeToLiveResponse> {
    return this.caller.call<LeaseTimeToLiveResponse>(
      'POST',
      '/v1/lease/timetolive',
      { id, ...pick(o, 'keys') },
      o.signal,
    );
  }

  /** Every lease. */
  async leases(o: CallOptions = {}): Promise<LeaseListResponse> {
    return this.caller.call<LeaseListResponse>('POST', '/v1/lease/leases', {}, o.signal);
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
    return this.caller.call<CompactResponse>('POST', '/v1/kv/compact', { revision }, o.signal);
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
   * The cluster's queues in name order, a page at a time: each with its counts per state. `after`
   * is a name (the previous page's `next`); `limit` 1 to 1,000 (default 100). A node of a
   * release before the read refuses it FEATURE_NOT_ENABLED (over HTTP, NOT_FOUND).
   */
  queues(o: { after?: string; limit?: number } & CallOptions = {}): Promise<QueuesResponse> {
    checkOptions(o, 'queues', ['after', 'limit']);
    return this.caller.call('POST', queuePaths.queues, pick(o, 'after', 'limit'), o.signal);
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
      write: (path, body, signal, extraMs) => this.writes.write(path, body, signal, extraMs),
      read: (path, body, signal) => this.caller.call('POST', path, body, signal),
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
    return this.connections.callOnce<NodeStatus>(
      endpoint ?? this.caller.preferredEndpoint,
      'GET',
      '/v1/status',
      undefined,
      o.signal,
    );
  }

  async clusterStatus(o: CallOptions = {}): Promise<ClusterStatus> {
    return this.caller.call<ClusterStatus>('GET', '/v1/cluster/status', undefined, o.signal);
  }

  /**
   * The members of the cluster, as the key-value group's leader sees them (with each one's
   * replication): roles in both Raft groups, addresses, removed ids.
   */
  async members(o: CallOptions = {}): Promise<MembersResponse> {
    return this.caller.call<MembersResponse>('POST', '/v1/cluster/members/list', {}, o.signal);
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
    return this.caller.call<MembersResponse>(
      'POST',
      path,
      pick(m, 'id', 'peer', 'client'),
      o.signal,
    );
  }

  /** Makes a learner a voter. */
  async promoteMember(id: number, o: CallOptions = {}): Promise<MembersResponse> {
    return this.caller.call<MembersResponse>(
      'POST',
      '/v1/cluster/members/promote',
      { id },
      o.signal,
    );
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
    return this.caller.call<MembersResponse>('POST', '/v1/cluster/members/remove', body, o.signal);
  }

  /**
   * Hands leadership of the key-value group to voter `o.to`, or without it to the voter most
   * caught up. Resolves once the leader started the transfer (it completes within an election
   * timeout, or is abandoned).
   */
  async transferLeadership(o: { to?: number } & CallOptions = {}): Promise<void> {
    await this.caller.call<unknown>(
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
    return this.caller.call<RangesResponse>('GET', path, undefined, o.signal);
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
    return this.caller.call<SplitResponse>('POST', '/v1/ranges/split', body, o.signal);
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
    const r = this.caller.routing;
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
    return this.caller.call<PlacementResponse>('GET', '/v1/placement', undefined, o.signal);
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
    return this.caller.call<PlacementResponse>('POST', '/v1/nodes/drain', body, o.signal);
  }

  async undrainNode(node: number, o: CallOptions = {}): Promise<PlacementResponse> {
    return this.caller.call<PlacementResponse>('POST', '/v1/nodes/undrain', { node }, o.signal);
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
    return this.caller.call<MoveResponse>(
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
    return this.caller.call<TransferLeaderResponse>(
      'POST',
      '/v1/ranges/transfer-leadership',
      { range, to },
      o.signal,
    );
  }

  /** Whether calls to `endpoint` go over the binary protocol now (for tests and tools). */
  usesBinary(endpoint: string): boolean {
    return this.connections.usesBinary(endpoint);
  }

  /**
   * Closes every connection, once the calls in flight have their answers; a second close does
   * nothing (so `await using` after an explicit close is safe). A call made afterwards fails at
   * once, `CLIENT_CLOSED` (definite: nothing was sent), rather than retrying a pool that is gone.
   */
  async close(): Promise<void> {
    await this.connections.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
