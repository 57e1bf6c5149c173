// The HTTP routes a node serves besides the key-value store's, the members' and the ranges'
// (node.ts, FlotillaNode.start): backups, leases, the job queue, watches and the dashboard.

import type { CorsPolicy } from '../api/cors.js';
import { installDashboardRoutes, type MemberView } from '../api/dashboard-routes.js';
import type { JsonHttpServer } from '../api/http.js';
import { installLeaseRoutes } from '../api/lease-routes.js';
import {
  installQueueRoutes,
  maxClaimWaitMs,
  queueOps,
  type QueueBackend,
} from '../api/queue-routes.js';
import { renderRangeView } from '../api/range-routes.js';
import { installWatchRoute, type WatchBackend } from '../api/watch.js';
import { defaultQueueLimits } from '../base/limits.js';
import { systemClock } from '../host/contracts.js';
import { installBackupRoute } from './backup.js';
import type { Member } from './config.js';
import { DashboardFeed, type DashboardFeedOptions } from './dashboard.js';
import type { Forwarder } from './forward.js';
import type { KvService } from './kv-service.js';
import { queueTickMs } from './leader-duties.js';
import type { LeaseKeeper } from './lease-keeper.js';
import type { NodeMetrics } from './metrics.js';
import type { NodeHealth } from './node-health.js';
import type { OpenedNode } from './node-open.js';
import type { NodeGroups } from './node-groups.js';
import { KV_GROUP, QUEUE_GROUP } from './node-setup.js';
import { bindQueueMetrics } from './queue-metrics.js';
import type { QueueService } from './queue-service.js';
import { rangeViews, type RangeAdminOptions } from './range-admin.js';
import type { RangeKvPath } from './range-kv-path.js';
import type { RangeLanes } from './range-lanes.js';

/** What other parts of the node serve through too: the binary protocol, the metrics, close(). */
export interface NodeRoutes {
  /** The queue's operations, for the binary protocol. */
  readonly queue: ReturnType<typeof queueOps>;
  readonly watchBackend: WatchBackend;
  readonly feed: DashboardFeed;
}

/** Installs the routes on `http`. */
export function installNodeRoutes(
  http: JsonHttpServer,
  o: {
    readonly opened: Pick<OpenedNode, 'config' | 'log'>;
    readonly groups: NodeGroups;
    readonly health: NodeHealth;
    readonly metrics: NodeMetrics;
    /** Range 0's service. */
    readonly service: KvService;
    readonly queueService: QueueService;
    readonly kvPath: RangeKvPath;
    readonly lanes: RangeLanes;
    /** Forwards to range 0's leader. */
    readonly forwarder: Forwarder;
    readonly leaseKeeper: LeaseKeeper;
    readonly rangeAdmin: RangeAdminOptions;
    readonly cors: CorsPolicy;
    /** The address book. */
    readonly book: () => readonly Member[];
    /** A queue write to the queue group's leader (NodeForwarders.forwardQueue). */
    readonly forwardQueue: QueueBackend['forward'];
    /** This node's view for the dashboard (FlotillaNode.memberView). */
    readonly memberView: (timelineVersion: number) => MemberView;
    /** Another member's view for the dashboard (member-status.ts). */
    readonly fetchMemberView: DashboardFeedOptions['fetchMember'];
  },
): NodeRoutes {
  const { config, log } = o.opened;
  const { queueRuntime, queueMachine, dash } = o.groups;
  const { runtime, range } = o.groups.range0;
  const { kv } = range;
  const { leaderless, electionTimeoutMs } = o.health;
  const { metrics, service, queueService, kvPath, lanes, forwarder, leaseKeeper } = o;
  const { rangeAdmin, cors, book, forwardQueue, memberView, fetchMemberView } = o;
  installBackupRoute(http, {
    clusterId: config.clusterId,
    memberId: config.id,
    groups: [
      { group: KV_GROUP, runtime },
      { group: QUEUE_GROUP, runtime: queueRuntime },
    ],
    nowMs: () => systemClock.nowMs(),
    log,
    // A backup holds range 0 and the queue: a split store's other ranges would be missing.
    checkWhole: () => kvPath.checkOneRange('a backup'),
  });
  installLeaseRoutes(http, {
    forward: (path, rawBody, signal, authorization) =>
      forwarder.forward(path, rawBody, signal, authorization),
    header: () => ({
      revision: kv.revision(),
      memberId: config.id,
      raftTerm: runtime.term(),
    }),
    // Leases are range 0's: a split store refuses them rather than half-serve them (the
    // right-hand ranges hold copies of the leases no keeper expires).
    grant: async (id, ttl, signal) => {
      kvPath.checkOneRange('a lease');
      return service.leaseGrant(id, ttl, { signal });
    },
    revoke: async (id, signal) => {
      kvPath.checkOneRange('a lease');
      return service.leaseRevoke(id, { signal });
    },
    keepAlive: async (id) => {
      kvPath.checkOneRange('a lease');
      return leaseKeeper.keepAliveApplied(id);
    },
    timeToLive: async (id) => {
      kvPath.checkOneRange('a lease');
      const ttl = await leaseKeeper.timeToLiveApplied(id);
      return { ...ttl, keys: kv.lease(id)?.keys ?? [] };
    },
    leases: () => {
      kvPath.checkOneRange('a lease');
      return kv.leases();
    },
  });
  const queueBackend: QueueBackend = {
    service: config.unsafeTestMode === 'stale-tokens' ? unfenced(queueService) : queueService,
    limits: defaultQueueLimits,
    clock: systemClock,
    tickMs: queueTickMs,
    maxClaimWaitMs,
    header: () => ({ memberId: config.id, raftTerm: queueRuntime.term() }),
    forward: (path, rawBody, signal, authorization) =>
      forwardQueue(path, rawBody, signal, authorization),
    requestLimits: config.limits,
  };
  const queue = queueOps(queueBackend);
  const queueRoutes = installQueueRoutes(http, queueBackend, queue);
  bindQueueMetrics(metrics.registry, {
    queue: queueMachine,
    appliedIndex: () => queueRuntime.appliedIndex(),
    claimWaiters: () => queueRoutes.claimWaiters(),
  });
  const watchBackend: WatchBackend = {
    limits: config.limits,
    clock: systemClock,
    maxWatchBufferBytes: config.maxWatchBufferBytes,
    maxWatches: config.maxWatches,
    watches: () => lanes.all().reduce((n, l) => n + l.watchHub.size(), 0) + kvPath.remoteWatches(),
    // Served by the watch hub of the range the watched keys lie in (CROSS_RANGE otherwise),
    // or relayed from a replica of a range not run here.
    watch: (spec, sink, via) => kvPath.watch(spec, sink, via),
    // Two election timeouts without a leader: not an election under way, a node cut off.
    leaderless: () => leaderless.leaderlessMs() >= 2 * electionTimeoutMs,
  };
  installWatchRoute(http, watchBackend);
  metrics.bindWatches(() => watchBackend.watches());
  metrics.bindStoreBytes(() => kvPath.storeBytes());
  const feed = new DashboardFeed({
    selfId: config.id,
    clock: systemClock,
    periodMs: 250,
    peerTimeoutMs: 750,
    maxStreams: 32,
    maxBufferedBytes: 4 * 1024 * 1024,
    timelineLines: 200,
    members: book,
    local: (version) => memberView(version),
    fetchMember: (client, version, signal) => fetchMemberView(client, version, signal),
    queues: () => ({
      applied: queueRuntime.appliedIndex(),
      queues: queueMachine
        .queueNames()
        .sort()
        .slice(0, 100)
        .map((name) => queueMachine.stats(name))
        .filter((q) => q !== null)
        .map((q) => ({ queue: q.queue, paused: q.paused, counts: q.counts, totals: q.totals })),
    }),
    ranges: () => {
      const m = rangeViews(rangeAdmin);
      // Keys in base64: a key of any bytes reaches the page. The first 500 ranges by key, as
      // the queues event sends the first 100 queues: the stream stays small however many.
      return m === null
        ? null
        : {
            ...m,
            count: m.ranges.length,
            ranges: m.ranges.slice(0, 500).map((r) => renderRangeView(r, 'base64')),
          };
    },
    sampler: dash.sampler,
  });
  installDashboardRoutes(
    http,
    {
      member: (version) => memberView(version),
      follow: (out) => feed.follow(out),
      checkRoom: () => feed.checkRoom(),
    },
    { memberOrigins: () => cors.origins() },
  );
  return { queue, watchBackend, feed };
}

/**
 * The planted `stale-tokens` bug: a worker's report about a job is proposed under the job's
 * current claim, whatever token the worker sent, so a worker whose lease passed to another
 * completes the job over it. Only for proving the fault-injection checker catches it.
 */
function unfenced(s: QueueService): QueueBackend['service'] {
  return {
    queue: s.queue,
    runtime: s.runtime,
    read: (read, w) => s.read(read, w),
    write: (cmd, session, w) => {
      if (
        cmd.op === 'complete' ||
        cmd.op === 'fail' ||
        cmd.op === 'heartbeat' ||
        cmd.op === 'progress'
      ) {
        const job = s.queue.getJob(cmd.queue, cmd.id);
        if (job?.state === 'active') return s.write({ ...cmd, token: job.token }, session, w);
      }
      return s.write(cmd, session, w);
    },
  };
}
