// A call to the cluster: attempts at the node most likely to serve it (the leader an error
// named, the range's leader from the cached map, else the next endpoint), until one answers.
//
// Retry policy: errors that say the write surely did not happen (NOT_LEADER, NO_LEADER, ...)
// and errors that say it may have (TIMEOUT, LEADERSHIP_LOST, a dropped connection) are both
// retried with the same sequence number, until the attempt budget or the deadline runs out.
// The final error keeps `indefinite` so the caller knows whether the write may have applied.

import { queuePaths, queueReads } from '../api/queue-paths.js';
import type { NodeStatus, RangesResponse } from '../api/types.js';
import { FlotillaError, type ErrorCode } from '../base/errors.js';
import type { Connections } from './connections.js';
import type { ClientSettings } from './options.js';
import { RangeRouting, spansOfBody, type RangeMapSnapshot } from './range-routing.js';
import { hedged, markRefusedEndpoint, refusedEndpoint, sleep } from './util.js';

/** Failures to reach a node or to hear from it, as opposed to a node's answer. */
const unreached = new Set<ErrorCode>(['CONNECTION', 'TIMEOUT']);

/** Codes after which trying again (elsewhere or later) can succeed. */
export const retryable = new Set<ErrorCode>([
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
  // Not NODE_NOT_RESPONDING: a range move's target that did not answer within a request
  // timeout is asked nothing better by eight more attempts, which kept the operator ~42 s.
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

export class Caller {
  private readonly endpoints: string[];
  private readonly timeoutMs: number;
  private readonly deadlineMs: number;
  private readonly maxAttempts: number;
  /** Index into endpoints of the node we believe leads. */
  private preferred = 0;
  private leaderUrlById = new Map<number, string>();
  /** Node id -> the endpoint that reaches it, learned from the endpoints' status. */
  private readonly endpointById = new Map<number, string>();
  /** The cached range map and leaders; null when range routing is off. */
  readonly routing: RangeRouting | null;

  constructor(
    s: ClientSettings,
    private readonly connections: Connections,
  ) {
    this.endpoints = s.endpoints;
    this.timeoutMs = s.timeoutMs;
    this.deadlineMs = s.deadlineMs;
    this.maxAttempts = s.maxAttempts;
    this.routing = s.rangeRouting
      ? new RangeRouting({
          fetch: () => this.fetchRangeMap(),
          now: Date.now,
          maxAgeMs: s.rangeMapMaxAgeMs,
          minRefreshIntervalMs: 250,
          maxBackoffMs: 30_000,
          downMs: 2_000,
          maxNodes: maxRoutedNodes,
        })
      : null;
  }

  /** The endpoint of the node we believe leads. */
  get preferredEndpoint(): string {
    return this.endpoints[this.preferred] as string;
  }

  /**
   * A request, attempted until a node answers it, a node refuses it in a way no retry helps,
   * or the attempts or the deadline run out.
   */
  async call<T>(
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
        const answer = await this.connections.callOnce<T>(
          endpoint,
          method,
          path,
          body,
          signal,
          extraMs,
        );
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

  /**
   * The range map (keys in base64, so bounds compare as bytes) and the members' client URLs,
   * from the first endpoint that answers both, within one attempt's timeout in all. The
   * endpoints are asked in turn, the next one when the one before failed or has not answered
   * within a share of that timeout (at most a second), so a frozen endpoint does not use it up.
   */
  private async fetchRangeMap(): Promise<RangeMapSnapshot> {
    const n = this.endpoints.length;
    const hedgeMs = Math.min(1_000, this.timeoutMs / n);
    const order = this.endpoints.map((_, i) => this.endpoints[(this.preferred + i) % n] as string);
    const { endpoint, ranges, status } = await hedged(
      order,
      async (endpoint, signal) => {
        const [ranges, status] = await Promise.all([
          this.connections.callOnce<RangesResponse>(
            endpoint,
            'GET',
            '/v1/ranges?encoding=base64',
            undefined,
            signal,
          ),
          this.connections.callOnce<NodeStatus>(endpoint, 'GET', '/v1/status', undefined, signal),
        ]);
        return { endpoint, ranges, status };
      },
      {
        hedgeMs,
        timeoutMs: this.timeoutMs,
        // A refusal (a token without the role, a node too old to know the route) would be
        // the same from every node: only a node that failed is worth replacing by another.
        fatal: (err) => err instanceof FlotillaError && !retryable.has(err.code),
      },
    ).catch((err: unknown) => {
      throw err instanceof FlotillaError
        ? err
        : new FlotillaError('CONNECTION', `No endpoint answered the range map: ${String(err)}`);
    });
    for (const m of status.members) this.leaderUrlById.set(m.id, m.client);
    this.endpointById.set(status.id, endpoint);
    // An endpoint a member advertises as its own client URL reaches that member: only the
    // others are asked who they are (a client's first call cost five requests, one for
    // every endpoint, and a thousand new clients at once spent seconds on them).
    for (const m of status.members)
      if (this.endpoints.includes(m.client) && !this.endpointById.has(m.id))
        this.endpointById.set(m.id, m.client);
    // Waited for as long as a hedge, no longer: an endpoint that does not answer (the frozen
    // one the map's fetch went past) is asked again at the next fetch.
    const asking = new AbortController();
    await Promise.race([this.identifyEndpoints(asking.signal), sleep(hedgeMs, asking.signal)]);
    asking.abort();
    // A node the client was given an endpoint for is reached there: the address it
    // advertises to its peers may not be reachable from the client (a container's name).
    const members = status.members.map((m) => ({
      id: m.id,
      client: this.endpointById.get(m.id) ?? m.client,
    }));
    return { ranges, members };
  }

  /**
   * Learns which node each endpoint reaches (its status's id), once per endpoint that
   * answers; best effort, all at once, each within one attempt's timeout or until `signal`.
   */
  private async identifyEndpoints(signal: AbortSignal): Promise<void> {
    const known = new Set(this.endpointById.values());
    await Promise.all(
      this.endpoints
        .filter((e) => !known.has(e))
        .map(async (e) => {
          try {
            const st = await this.connections.callOnce<NodeStatus>(
              e,
              'GET',
              '/v1/status',
              undefined,
              signal,
            );
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
      const st = await this.connections.callOnce<NodeStatus>(
        endpoint,
        'GET',
        '/v1/status',
        undefined,
      );
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

/** The node an answer's header names (0: none): for a write, the leader that applied it. */
function memberIdOf(answer: unknown): number {
  const header = (answer as { header?: { memberId?: unknown } } | null)?.header;
  const id = header?.memberId;
  return typeof id === 'number' && Number.isSafeInteger(id) ? id : 0;
}
