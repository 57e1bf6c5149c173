// The key-value backend both client fronts (HTTP and the binary protocol) serve requests
// through, with what the node says of its liveness and readiness.

import type { KvBackend } from '../api/routes.js';
import type { NodeStatus } from '../api/types.js';
import { toFlotillaError } from '../api/errors.js';
import type { Host } from '../host/host.js';
import type { RaftRuntime } from '../host/runtime.js';
import type { NodeConfig } from './config.js';
import type { Forwarder } from './forward.js';
import type { KvService } from './kv-service.js';
import type { LeaderlessWatch } from './leaderless.js';
import type { MemberStatuses } from './member-status.js';
import type { NodeMembers } from './member-node.js';
import type { NodeMetrics } from './metrics.js';
import type { NodeRecovery } from './node-recovery.js';
import type { RangeKvPath } from './range-kv-path.js';

/** How far its apply may trail its commit index with a node still ready (/readyz). */
const readyApplyLag = 100;

/**
 * Why the node cannot serve as it should, if one of its groups stopped after a storage
 * failure; null otherwise. Such a group never runs again in this process (STORAGE.md,
 * "Guarantees"), so the node is neither ready nor live: an orchestrator restarts it.
 */
function stoppedReason(host: Host): string | null {
  const stopped = host.stoppedGroups();
  const first = stopped[0];
  if (first === undefined) return null;
  const groups = stopped.map((g) => g.group).join(', ');
  return `group${stopped.length > 1 ? 's' : ''} ${groups} stopped after a storage failure (${first.error}); restart the node`;
}

/** The key-value backend of a node; what is set once the node is assembled is read as it is. */
export function kvBackend(o: {
  readonly config: NodeConfig;
  readonly metrics: NodeMetrics;
  readonly host: Host;
  /** Range 0's runtime and service. */
  readonly runtime: RaftRuntime;
  readonly service: KvService;
  readonly kvPath: RangeKvPath;
  /** Forwards to range 0's leader. */
  readonly forwarder: Forwarder;
  readonly members: NodeMembers;
  readonly statuses: MemberStatuses;
  readonly nodeStatus: () => NodeStatus;
  readonly leaderlessWatch: () => LeaderlessWatch | null;
  readonly recovery: () => NodeRecovery | null;
  /** What a peer's handshake said of this node's address, when it sends elsewhere. */
  readonly peerAddressMismatch: () => string | null;
}): KvBackend {
  const { config, metrics, host, runtime, service, kvPath, forwarder } = o;
  const { members, statuses, nodeStatus, leaderlessWatch, recovery, peerAddressMismatch } = o;
  return {
    limits: config.limits,
    metrics: metrics.registry,
    write: (txn, session, signal) => kvPath.write(txn, session, signal),
    read: (op, consistency, signal, via) => kvPath.read(op, consistency, signal, via),
    compact: async (revision, signal) => {
      kvPath.checkOneRange('compaction to one revision');
      const r = await service.compact(revision, { signal });
      return {
        header: { ...kvPath.header(), revision: r.revision },
        compacted: r.compacted,
      };
    },
    routeWrite: (txn) => kvPath.routeWrite(txn),
    leads: () => runtime.leaderId() === config.id,
    forward: (path, rawBody, signal, authorization) =>
      forwarder.forward(path, rawBody, signal, authorization),
    batch: (fn) => runtime.batch(fn),
    status: () => nodeStatus(),
    clusterStatus: (signal) => statuses.clusterStatus(signal),
    live: () => {
      const stopped = stoppedReason(host);
      return stopped === null
        ? { live: true, reason: 'serving' }
        : { live: false, reason: stopped };
    },
    ready: () => {
      const stopped = stoppedReason(host);
      if (stopped !== null) return { ready: false, reason: stopped };
      const s = runtime.status();
      const leaderless = leaderlessWatch()?.reason() ?? null;
      if (s.recovery === 'recovering')
        return {
          ready: false,
          reason:
            leaderless ??
            `recovering lost data: holds ${s.lastIndex} entries, commit ${s.commit}; not a voter until caught up`,
        };
      const r = recovery()?.status();
      if (r?.recovering === true)
        return {
          ready: false,
          reason: `recovering lost data: waiting for ${r.waitingFor.join('; ')}`,
        };
      if (s.leader === 0) {
        const moved = members.membership.ownAddressMismatch() ?? peerAddressMismatch();
        return { ready: false, reason: moved ?? leaderless ?? 'no leader known' };
      }
      // A member that just joined, or came back empty, knows the leader from its first
      // heartbeat, before any entry or snapshot: it held no data and said ready.
      if (s.lastIndex === 0)
        return { ready: false, reason: `waiting for the log from leader ${s.leader}` };
      // Caught up as a learner is for promotion, but never more than readyApplyLag behind:
      // one entry behind, between a commit and its apply under steady writes, made a
      // caught-up follower flap.
      const lag = Math.min(config.learnerPromoteLagEntries, readyApplyLag);
      if (runtime.appliedIndex() + lag < s.commit)
        return {
          ready: false,
          reason: `applying: ${runtime.appliedIndex()} of ${s.commit}`,
        };
      // The queue and meta groups too: a member they have not made a voter yet, or that
      // one of them cannot serve through, is not ready for its neighbour to be replaced.
      const follower = members.membership.followerNotReady(config.id, lag);
      if (follower !== null) return { ready: false, reason: follower };
      return { ready: true, reason: s.leader === s.id ? 'leader' : `following ${s.leader}` };
    },
    transferLeadership: (to) => {
      try {
        if (to === 0) members.transferToBest();
        else runtime.transferLeadership(to);
      } catch (err) {
        throw toFlotillaError(err);
      }
      return Promise.resolve();
    },
  };
}
