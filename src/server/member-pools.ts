// The connection pools from this node to the other members' client ports, a set per lane, and
// the requests this node sends over them: forwarded ones, with the caller's credential, and its
// own, with the node's.

import type { Pool } from 'undici';
import { forwardedHeader } from '../api/routes.js';
import { memberAuthHeaders } from './auth-tokens.js';
import type { NodeConfig } from './config.js';
import type { ForwardAnswer } from './forward.js';
import { MemberPool } from './member-pool.js';
import type { NodeMetrics } from './metrics.js';
import type { NodeTls } from './node-tls.js';

/** Connections to each other member in each lane (below) but the claims'. */
export const forwardConnections = 128;

/**
 * Claims one node forwards to the queue group's leader at once, on connections of their own
 * (the `claims` lane): a worker's long poll holds one for up to maxClaimWaitMs, so a follower
 * can relay a crowd of idle workers without refusing the queue's other writes.
 */
export const forwardedClaimsMax = 1_024;

/**
 * What a connection pool to another member carries. Each forwarder admits as many requests
 * as one pool has connections, so that none waits for one (it would fail as indefinite when
 * its deadline passed, never sent); that holds only if no other traffic takes them. A queue
 * claim with `waitMs` holds its connection until a job arrives (up to 30 s) and a relayed watch
 * for as long as it lives, so each kind has pools of its own: idle workers long-polling through
 * a follower cannot stall its key-value writes. Connections open only as they are needed.
 */
export type PoolLane =
  | 'groups' // forwarded to the leaders of the groups this node runs (newForwarder)
  | 'queue' // forwarded to the queue group's leader: its writes but claims
  | 'claims' // claims forwarded to the queue group's leader, which may wait for a job there
  | 'ranges' // forwarded to the leaders of ranges this node holds no replica of
  | 'watches' // watches relayed from a range's replica
  | 'member'; // this node's own calls: status, membership, the dashboard

/** This node's pools to other members, opened as first used, closed together. */
export class MemberPools {
  private readonly pools = new Map<string, Pool>();

  constructor(
    private readonly o: {
      readonly selfId: number;
      readonly auth: NodeConfig['auth'];
      /** Counts each forwarded request by path. */
      readonly forwarded: NodeMetrics['forwarded'];
      /** The TLS material in use, once the node has it; null without TLS. */
      readonly tls: () => NodeTls | null;
    },
  ) {}

  pool(url: string, lane: PoolLane = 'member'): Pool {
    const at = `${lane} ${url}`;
    let p = this.pools.get(at);
    if (p === undefined) {
      const tls = this.o.tls();
      p = new MemberPool(url, this.o.selfId, {
        connections: lane === 'claims' ? forwardedClaimsMax : forwardConnections,
        // Members' client ports serve the cluster's certificate; this node presents its own.
        ...(tls === null ? {} : { connect: tls.connector }),
      });
      this.pools.set(at, p);
    }
    return p;
  }

  /**
   * A request of this node's own (not a caller's) to a member's client port, with this node's
   * credential and without the forwarded mark, so the member routes it as any request.
   */
  async request(
    url: string,
    method: 'GET' | 'POST',
    path: string,
    body: string | undefined,
    signal: AbortSignal,
  ): Promise<ForwardAnswer> {
    const res = await this.pool(url).request({
      method,
      path,
      headers: { 'content-type': 'application/json', ...memberAuthHeaders(this.o.auth) },
      ...(body === undefined ? {} : { body }),
      signal,
    });
    const text = await res.body.text();
    return { status: res.statusCode, json: text === '' ? null : (JSON.parse(text) as unknown) };
  }

  /** One forwarded request; the forwarder owns its deadline and what a failure means. */
  async send(
    to: { readonly url: string; readonly lane: PoolLane },
    path: string,
    rawBody: string,
    signal: AbortSignal,
    authorization?: string,
  ): Promise<ForwardAnswer> {
    this.o.forwarded.inc({ path });
    const res = await this.pool(to.url, to.lane).request({
      method: 'POST',
      path,
      // The caller's credential, never this node's own: the leader decides what the caller
      // may do, and a read token must not become an admin one by going through a follower.
      headers: {
        'content-type': 'application/json',
        [forwardedHeader]: String(this.o.selfId),
        ...(authorization === undefined ? {} : { authorization }),
      },
      body: rawBody,
      signal,
    });
    const text = await res.body.text();
    return { status: res.statusCode, json: JSON.parse(text) as unknown };
  }

  async close(): Promise<void> {
    await Promise.all([...this.pools.values()].map((p) => p.close()));
  }
}
