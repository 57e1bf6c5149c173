// Where a node sends on what it cannot serve itself: each forwarder (forward.ts) follows the
// leader of one group and sends over a lane of the member pools (member-pools.ts).

import { queuePaths } from '../api/queue-paths.js';
import { maxClaimWaitMs } from '../api/queue-routes.js';
import type { RaftRuntime } from '../host/runtime.js';
import type { Member, NodeConfig } from './config.js';
import { Forwarder, type ForwardAnswer } from './forward.js';
import { forwardConnections, forwardedClaimsMax, type MemberPools } from './member-pools.js';

/** The forwarders to the queue group's leader, and new ones to any group's. */
export class NodeForwarders {
  /** Forwards queue writes to the queue group's leader, which may not lead the KV group. */
  private readonly queueForwarder: Forwarder;
  /** Forwards claims there, on connections of their own (the `claims` lane). */
  private readonly claimForwarder: Forwarder;

  constructor(
    private readonly o: {
      readonly config: NodeConfig;
      /** The address book, as it changes. */
      readonly members: Member[];
      readonly pools: MemberPools;
      readonly queueRuntime: RaftRuntime;
    },
  ) {
    const { config } = o;
    const queueForwarder = (
      lane: 'queue' | 'claims',
      maxInFlight: number,
      timeoutMs: number,
    ): Forwarder =>
      new Forwarder({
        selfId: config.id,
        members: o.members,
        leaders: o.queueRuntime,
        send: (url, path, rawBody, signal, authorization) =>
          o.pools.send({ url, lane }, path, rawBody, signal, authorization),
        timeoutMs,
        replacedLeaderGraceMs: 2 * config.electionTicks * config.tickMs,
        maxInFlight,
        slotWaitMs: config.maxInflightWaitMs,
      });
    this.queueForwarder = queueForwarder(
      'queue',
      forwardConnections,
      config.requestTimeoutMs + 1_000,
    );
    // A claim may wait for a job up to maxClaimWaitMs on the leader before it answers.
    this.claimForwarder = queueForwarder(
      'claims',
      forwardedClaimsMax,
      config.requestTimeoutMs + maxClaimWaitMs + 1_000,
    );
  }

  /** A forwarder to the leader of one range's group (`leaders`: its runtime). */
  newForwarder(leaders: RaftRuntime, timeoutMs?: number): Forwarder {
    const { config } = this.o;
    return new Forwarder({
      selfId: config.id,
      members: this.o.members,
      leaders,
      send: (url, path, rawBody, signal, authorization) =>
        this.o.pools.send({ url, lane: 'groups' }, path, rawBody, signal, authorization),
      // Longer than the leader's own wait, so its answer (TIMEOUT) comes back rather than ours.
      timeoutMs: timeoutMs ?? config.requestTimeoutMs + 1_000,
      // One of the longest election timeouts: the new leader was elected after about as long.
      replacedLeaderGraceMs: 2 * config.electionTicks * config.tickMs,
      // As many as the pool to the leader has connections: none waits for one. Past them a
      // request waits for a slot as long as one waits for admission (API.md, "Overload").
      maxInFlight: forwardConnections,
      slotWaitMs: config.maxInflightWaitMs,
    });
  }

  /**
   * A queue write to the queue group's leader (null: this node leads it). Claims go in a lane of
   * their own: 128 workers long-polling through a follower held every connection of the queue's
   * lane, and the follower refused its adds and reports OVERLOADED until a claim ended.
   */
  forwardQueue(
    path: string,
    rawBody: string,
    signal: AbortSignal,
    authorization?: string,
  ): Promise<ForwardAnswer | null> {
    const f = path === queuePaths.claim ? this.claimForwarder : this.queueForwarder;
    return f.forward(path, rawBody, signal, authorization);
  }
}
