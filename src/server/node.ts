// One Flotilla node, assembled: storage, peer transport, the key-value state machine behind
// exactly-once sessions, the Raft runtime, the HTTP API, metrics and logs. `runNode` is what
// `flotilla start` runs; `FlotillaNode.start` is the same for tests and embedders.

import { constants } from 'node:os';
import { resolve as resolvePath } from 'node:path';
import { FEATURE_LEVEL } from '../base/features.js';
import { FeatureGate } from './feature-gate.js';
import type { Logger } from 'pino';
import type { Pool } from 'undici';
import { Deadline } from '../api/deadline.js';
import { toFlotillaError } from '../api/errors.js';
import { FlotillaError } from '../base/errors.js';
import { joinHostPort, localUrl } from '../base/host-port.js';
import { JsonHttpServer } from '../api/http.js';
import { clientProtocolHeader } from '../api/wire-codec.js';
import type { WireServer } from '../api/wire-server.js';
import type { ServerTlsOptions } from '../api/tls.js';
import { forwardedHeader, installRoutes, type KvBackend } from '../api/routes.js';
import { queuePaths } from '../api/queue-paths.js';
import type { ClusterStatus, NodeStatus, SnapshotTransferStatus } from '../api/types.js';
import type { Recovery } from '../raft/index.js';
import { checkResolvedConfig, type NodeConfig } from './config.js';
import { monotonicClock, systemClock } from '../host/contracts.js';
import { Host } from '../host/host.js';
import type { TraceHook } from '../host/trace.js';
import { SessionMachine, defaultSessionLimits } from '../host/sessions.js';
import { MetaStateMachine } from '../ranges/meta-machine.js';
import { RangeGroups, type RangeGroup } from './range-groups.js';
import { MetaService } from './meta-service.js';
import { RangeLanes, type RangeLane } from './range-lanes.js';
import { RangeKvPath } from './range-kv-path.js';
import { RemoteRanges, knowledgeOf, refreshRanges } from './range-remote.js';
import { RemoteWatches } from './range-watch.js';
import type { RangeDescriptor, RangeId } from '../ranges/types.js';
import { readIdentity, writeIdentity, writeLimits, type DataDirIdentity } from './data-dir.js';
import { NodeRecovery } from './node-recovery.js';
import type { KvStateMachine } from '../kv/machine.js';
import { Admission } from './admission.js';
import { Forwarder, type ForwardAnswer } from './forward.js';
import { MemberPool } from './member-pool.js';
import { RateLimitedWarning, createLogger, logRuntimeEvent, reasonClass } from './logging.js';
import { HeartbeatTimer, LoopDelayMonitor, LoopStallWatch } from './loop-health.js';
import { NodeMetrics } from './metrics.js';
import type { RaftRuntime } from '../host/runtime.js';
import type { RuntimeEvent } from '../host/runtime-options.js';
import { KvService } from './kv-service.js';
import { AutoCompactor } from './compactor.js';
import { WatchHub } from '../kv/watch-hub.js';
import { installWatchRoute, type WatchBackend } from '../api/watch.js';
import { installLeaseRoutes } from '../api/lease-routes.js';
import { LeaseKeeper } from './lease-keeper.js';
import {
  clientProtocolAddress,
  createClientProtocolServer,
  listenClientProtocol,
} from './client-protocol.js';
import { decideEmptyStart, listenError } from './startup.js';
import { LeaderlessWatch } from './leaderless.js';
import {
  KV_GROUP,
  META_GROUP,
  QUEUE_GROUP,
  blankGroupDirs,
  groupSettings,
  holdsState,
  openGroupStorage,
  openGroupStorages,
  missingIdentity,
  openPeerTransport,
  resolveIdentity,
} from './node-setup.js';
import { APPLY_LIMITS, defaultQueueLimits } from '../base/limits.js';
import { QueueStateMachine } from '../queue/index.js';
import { QueueService } from './queue-service.js';
import { QueueTicker } from './queue-ticker.js';
import { bindQueueMetrics } from './queue-metrics.js';
import {
  installQueueRoutes,
  maxClaimWaitMs,
  queueOps,
  type QueueBackend,
} from '../api/queue-routes.js';
import { installMemberRoutes } from '../api/member-routes.js';
import { installRangeRoutes, renderRangeView } from '../api/range-routes.js';
import { rangeViews, rangesBackend, type RangeAdminOptions } from './range-admin.js';
import { RangeLoad } from './range-load.js';
import { nodeRangeSplitter } from './range-splitter.js';
import { MapRepair } from './range-map-repair.js';
import { RangeDirs } from './range-dirs.js';
import {
  changeReplicas,
  installRangeReplicas,
  transferLeader,
  type RangeReplicaParts,
} from './range-replica-node.js';
import type { ReplicaChange } from './range-replicas.js';
import { installPlacementRoutes } from '../api/placement-routes.js';
import { PlacementNode, heldRanges, rangesInMap } from './placement-node.js';
import { installBackupRoute } from './backup.js';
import { NodeMembers } from './member-node.js';
import { LiveTokenBook, memberAuthHeaders } from './auth-tokens.js';
import { httpAuthorizer } from '../api/auth.js';
import type { TcpTransport as Transport } from '../transport/index.js';
import { CorsPolicy } from '../api/cors.js';
import {
  dashboardApiPaths,
  dashboardMemberPath,
  installDashboardRoutes,
  type MemberView,
} from '../api/dashboard-routes.js';
import { DashboardFeed, RateSampler } from './dashboard.js';
import { Timeline } from './timeline.js';
import { NodeTls, logTlsPorts } from './node-tls.js';
import { packageVersion } from './version.js';
import { SERVING_FILE, writeServing } from './serving-file.js';

/** How often the queue group's leader moves the queue's clock on (DESIGN.md, "The job queue"). */
const queueTickMs = 1_000;

/**
 * How long `/v1/cluster/status` waits for each member's own status. A member under load may
 * take a second to answer (the CLI called it unreachable at 1 s); one that is down answers no
 * sooner for waiting longer, so the cluster status is at most this slow.
 */
const memberStatusWaitMs = 3_000;

export { KV_GROUP, QUEUE_GROUP } from './node-setup.js';

/** Both groups' snapshot transfers in progress, each tagged with its group. */
function snapshotTransfersOf(kv: RaftRuntime, queue: RaftRuntime): SnapshotTransferStatus[] {
  return [
    ...kv.snapshotTransfers().map((t) => ({ group: KV_GROUP, ...t })),
    ...queue.snapshotTransfers().map((t) => ({ group: QUEUE_GROUP, ...t })),
  ];
}

/**
 * How often each range's leader compares its range with the meta map and records what the map
 * lacks (range-map-repair.ts): a lost record is repaired within about this long.
 */
const mapRepairEveryMs = 1_000;

/**
 * Faults a test plants in a node, to stand for a node killed at an awkward moment or to show
 * what a mechanism fixes by turning it off. Production never sets them.
 */
export interface NodeTestHooks {
  /**
   * Runs on a range's leader between a change of replicas recorded in the range's log and its
   * record in the meta map; a throw ends the change there, as a leader killed between the two.
   */
  readonly beforeReplicasMapRecord?: (d: RangeDescriptor) => Promise<void>;
  /** The same between a split applying in its range and its record in the meta map. */
  readonly beforeSplitMapRecord?: (left: RangeDescriptor, right: RangeDescriptor) => Promise<void>;
  /** False: the meta map is not repaired from the ranges (range-map-repair.ts). */
  readonly mapRepair?: boolean;
}

/** Connections to each other member in each lane (below) but the claims'. */
const forwardConnections = 128;

/**
 * Claims one node forwards to the queue group's leader at once, on connections of their own
 * (the `claims` lane): a worker's long poll holds one for up to maxClaimWaitMs, so a follower
 * can relay a crowd of idle workers without refusing the queue's other writes.
 */
const forwardedClaimsMax = 1_024;

/**
 * What a connection pool to another member carries. Each forwarder admits as many requests
 * as one pool has connections, so that none waits for one (it would fail as indefinite when
 * its deadline passed, never sent); that holds only if no other traffic takes them. A queue
 * claim with `waitMs` holds its connection until a job arrives (up to 30 s) and a relayed watch
 * for as long as it lives, so each kind has pools of its own: idle workers long-polling through
 * a follower cannot stall its key-value writes. Connections open only as they are needed.
 */
type PoolLane =
  | 'groups' // forwarded to the leaders of the groups this node runs (newForwarder)
  | 'queue' // forwarded to the queue group's leader: its writes but claims
  | 'claims' // claims forwarded to the queue group's leader, which may wait for a job there
  | 'ranges' // forwarded to the leaders of ranges this node holds no replica of
  | 'watches' // watches relayed from a range's replica
  | 'member'; // this node's own calls: status, membership, the dashboard

/** Election timeline lines each node keeps (both groups together). */
const timelineEntries = 256;

/** What the dashboard reads of a node besides its status (DESIGN.md, "The dashboard"). */
interface DashboardParts {
  readonly timeline: Timeline;
  readonly sampler: RateSampler;
  /** When a message from the key-value group's leader last arrived (performance.now()), or 0. */
  leaderContactMs: number;
}

/** How far its apply may trail its commit index with a node still ready (/readyz). */
const readyApplyLag = 100;

export class FlotillaNode implements AsyncDisposable {
  private closing = false;
  private readonly pools = new Map<string, Pool>();
  private readonly forwarder: Forwarder;
  /** Forwards queue writes to the queue group's leader, which may not lead the KV group. */
  private readonly queueForwarder: Forwarder;
  /** Forwards claims there, on connections of their own (the `claims` lane). */
  private readonly claimForwarder: Forwarder;
  readonly queueTicker: QueueTicker;
  private readonly compactor: AutoCompactor;
  /** Each range's service, forwarder, watch hub and compactor; routes requests by key. */
  readonly lanes: RangeLanes;
  /** The key-value requests' path through the ranges. */
  readonly kvPath: RangeKvPath;
  /** The ranges this node does not run: where their requests go. */
  readonly remote: RemoteRanges;
  readonly watchHub: WatchHub;
  readonly leaseKeeper: LeaseKeeper;
  /** Splits the ranges this node leads past the configured thresholds (off by default). */
  private splitter: ReturnType<typeof nodeRangeSplitter> | null = null;
  /** The binary client protocol's server, when `clientProtocolPort` is set. */
  private wire: WireServer | null = null;
  /** The tokens clients must present, following the tokens file; null without authentication. */
  private tokens: LiveTokenBook | null = null;
  /** The dashboard's event stream; set once the node is assembled. */
  private feed: DashboardFeed | null = null;
  private dash: DashboardParts | null = null;
  /** The placement loop (run while this node leads the meta group); set once assembled. */
  private placement: PlacementNode | null = null;
  /** The TLS material in use and its reloads, when `tlsCertFile` is set. */
  private tls: NodeTls | null = null;
  /** What a peer's handshake said of this node's address, when it sends elsewhere (node-setup.ts). */
  private peerAddressMismatch: () => string | null = () => null;
  /** Warns of each event-loop stall long enough to cost an election; set once assembled. */
  private stallWatch: LoopStallWatch | null = null;
  /** Says why, when no leader has been known for long (leaderless.ts). */
  private leaderless: LeaderlessWatch | null = null;
  /** The address book, removal handling and membership routes' backend (member-node.ts). */
  readonly members: NodeMembers;
  /** Changing ranges' replicas, and giving up ranges this node is out of; set once assembled. */
  private replicaParts: RangeReplicaParts | null = null;
  /**
   * The node's recovery of lost data across all its groups (node-recovery.ts); set once
   * assembled.
   */
  recovery: NodeRecovery | null = null;
  /** Brings the meta map up to the ranges this node leads (range-map-repair.ts). */
  private mapRepair: MapRepair | null = null;
  /** Settles when the node stopped, by close() or because it was removed from the cluster. */
  readonly stopped: Promise<void>;
  private markStopped: () => void = () => undefined;

  private constructor(
    readonly config: NodeConfig,
    readonly host: Host,
    readonly runtime: RaftRuntime,
    readonly kv: KvStateMachine,
    readonly service: KvService,
    readonly queueService: QueueService,
    private readonly http: JsonHttpServer,
    readonly metrics: NodeMetrics,
    readonly log: Logger,
    private readonly loopDelay: LoopDelayMonitor,
    transport: Transport,
    kvSessions: SessionMachine,
    identity: Omit<DataDirIdentity, 'format' | 'recovery'>,
    /** Range 0 and the ranges split off it that this node replicates. */
    readonly ranges: RangeGroups,
    /** The meta group (the range map) and its bootstrap. */
    readonly meta: MetaService,
    /** The version gate of rolling upgrades (feature-gate.ts). */
    readonly gate: FeatureGate,
  ) {
    this.stopped = new Promise((resolve) => (this.markStopped = resolve));
    this.members = new NodeMembers({
      config,
      identity,
      runtime,
      queueRuntime: queueService.runtime,
      followers: [{ group: META_GROUP, name: 'meta', runtime: meta.runtime }],
      kvSessions,
      transport,
      // The leaderless watch samples what each voter sent this node, every second.
      heardFrom: (id) => this.leaderless?.heardFrom(id) ?? false,
      pool: (url) => this.pool(url),
      forward: (path, rawBody, signal, authorization) =>
        this.forwarder.forward(path, rawBody, signal, authorization),
      log,
      clock: systemClock,
      isClosing: () => this.closing,
      stop: () => void this.close(),
      holdsRanges: (id) => heldRanges(meta.machine.map(), id),
    });
    this.forwarder = this.newForwarder(runtime);
    const queueForwarder = (
      lane: 'queue' | 'claims',
      maxInFlight: number,
      timeoutMs: number,
    ): Forwarder =>
      new Forwarder({
        selfId: config.id,
        members: this.members.book,
        leaders: queueService.runtime,
        send: (url, path, rawBody, signal, authorization) =>
          this.send({ url, lane }, path, rawBody, signal, authorization),
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
    this.queueTicker = new QueueTicker({
      clock: systemClock,
      everyMs: queueTickMs,
      isLeader: () => queueService.runtime.isLeader(),
      tick: () => queueService.tick(),
      onError: (err) =>
        log.debug({ err: (err as Error).message }, 'queue tick failed; will tick again'),
      nextDueMs: () => queueService.queue.nextDueMs(),
      machineNowMs: () => queueService.queue.timeMs(),
      onApplied: (listener) => queueService.runtime.onApplied(listener),
    });
    this.watchHub = new WatchHub(kv);
    this.leaseKeeper = new LeaseKeeper({
      clock: systemClock,
      isLeader: () => runtime.isLeader(),
      leases: () => kv.leases(),
      lease: (id) => kv.lease(id)?.lease,
      // The longest election timeout: how long keep-alives may have found no leader.
      extendMs: 2 * config.electionTicks * config.tickMs,
      checkEveryMs: 100,
      applied: () => service.readBarrier(),
      revoke: async (id) => {
        await service.leaseRevoke(id);
        log.info({ lease: id }, 'lease expired: revoked, its keys deleted');
      },
      onError: (id, err) =>
        log.warn(
          { lease: id, err: (err as Error).message },
          'revoking an expired lease failed; will try again',
        ),
    });
    this.compactor = this.newCompactor(KV_GROUP, runtime, kv, service);
    this.lanes = new RangeLanes({ ranges, make: (id, group) => this.makeLane(id, group) });
    const range0 = ranges.group(KV_GROUP);
    if (range0 === undefined) throw new Error('Range 0 must run before the node is assembled');
    this.remote = new RemoteRanges({
      selfId: config.id,
      members: this.members.book,
      send: (url, path, rawBody, signal, authorization) =>
        this.send({ url, lane: 'ranges' }, path, rawBody, signal, authorization),
      clock: systemClock,
      timeoutMs: config.requestTimeoutMs + 1_000,
      maxInFlight: forwardConnections,
      slotWaitMs: config.maxInflightWaitMs,
      knowledge: () => knowledgeOf(this.lanes, meta.machine),
      isRunning: (id) => this.lanes.lane(id) !== undefined,
      refresh: (id, signal) => refreshRanges(this.lanes, meta.runtime, id, signal),
    });
    this.kvPath = new RangeKvPath({
      config,
      lanes: this.lanes,
      metrics,
      range0,
      sampler: () => this.dash?.sampler,
      remote: this.remote,
      mapSize: () => meta.machine.map()?.size ?? 0,
      featureLevel: () => this.gate.active(),
      remoteWatches: new RemoteWatches({
        selfId: config.id,
        members: this.members.book,
        pool: (url) => this.pool(url, 'watches'),
        leader: (id) => this.remote.leader(id),
        openTimeoutMs: config.requestTimeoutMs,
      }),
    });
  }

  /** A forwarder to the leader of one range's group (`leaders`: its runtime). */
  private newForwarder(leaders: RaftRuntime, timeoutMs?: number): Forwarder {
    const { config } = this;
    return new Forwarder({
      selfId: config.id,
      members: this.members.book,
      leaders,
      send: (url, path, rawBody, signal, authorization) =>
        this.send({ url, lane: 'groups' }, path, rawBody, signal, authorization),
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

  /** The automatic compaction of one range's history, run by that range's leader. */
  private newCompactor(
    range: RangeId,
    runtime: RaftRuntime,
    kv: KvStateMachine,
    service: KvService,
  ): AutoCompactor {
    const { config, log } = this;
    return new AutoCompactor({
      clock: systemClock,
      keepRevisions: config.compactionKeepRevisions,
      keepMs: config.compactionKeepMs,
      keepBytes: config.compactionKeepBytes,
      revisionToFit: (bytes) => kv.historyRevisionToFit(bytes),
      checkEveryMs: 1_000,
      isLeader: () => runtime.status().role === 'leader',
      revision: () => kv.revision(),
      compacted: () => kv.compacted(),
      compact: async (revision) => {
        await service.compact(revision);
        log.debug({ range, revision }, 'compacted the key-value history');
      },
      onError: (err) =>
        log.warn(
          { range, err: (err as Error).message },
          'automatic compaction failed; will try again',
        ),
    });
  }

  /** What this node keeps for range `id` (range 0's parts are the node's own). */
  private makeLane(id: RangeId, group: RangeGroup): RangeLane {
    if (id === KV_GROUP)
      return {
        id,
        group,
        service: this.service,
        forwarder: this.forwarder,
        watchHub: this.watchHub,
        compactor: this.compactor,
        load: new RangeLoad({
          clock: systemClock,
          revision: () => group.range.kv.revision(),
          restores: () => group.range.restoreCount(),
        }),
      };
    const { config } = this;
    const service = new KvService(
      group.runtime,
      group.range.kv,
      { maxKeyBytes: config.maxKeyBytes, maxValueBytes: config.maxValueBytes },
      systemClock,
    );
    return {
      id,
      group,
      service,
      forwarder: this.newForwarder(group.runtime),
      watchHub: new WatchHub(group.range.kv),
      compactor: this.newCompactor(id, group.runtime, group.range.kv, service),
      load: new RangeLoad({
        clock: systemClock,
        revision: () => group.range.kv.revision(),
        restores: () => group.range.restoreCount(),
      }),
    };
  }

  static async start(
    given: NodeConfig,
    o: {
      logger?: Logger;
      /** Called at each step of a write's path (host/trace.ts), for bench/trace. */
      trace?: TraceHook;
      /** The Raft group whose writes `trace` follows: the key-value store's (default) or the queue's. */
      traceGroup?: typeof KV_GROUP | typeof QUEUE_GROUP;
      /**
       * The feature level this node says it runs (default FEATURE_LEVEL). Tests set a lower one
       * to play a member of an older release in a rolling upgrade; nothing else should.
       */
      featureLevel?: number;
      /**
       * Planted defect: ranges split off range 0 start as full members while this node recovers
       * lost data (node-recovery.ts). Tests set it to show their checks catch it; nothing else.
       */
      unsafeSkipRangeRecovery?: boolean;
      /** Faults planted by tests (see NodeTestHooks); nothing else should set them. */
      testHooks?: NodeTestHooks;
      /**
       * Aborted when the process is asked to stop: a start still waiting (to join, or for its
       * peers to say whether its empty data directory means a new cluster) ends, closing what
       * it opened, with SHUTTING_DOWN. Its reason (a string: the signal's name) is logged.
       */
      signal?: AbortSignal;
    } = {},
  ): Promise<FlotillaNode> {
    checkResolvedConfig(given);
    const log =
      o.logger ?? createLogger(given.id, { level: given.logLevel, format: given.logFormat });
    // Fail before touching storage (node-setup.ts). The peer port is bound for real (messages
    // arriving before the runtime starts are dropped; Raft resends).
    const wireListen = clientProtocolAddress(given);
    // Unusable TLS files are reported before anything else is touched.
    const tls =
      given.tls === null ? null : new NodeTls({ config: given.tls, clock: systemClock, log });
    const { config, identity, recorded, joined, lostData } = await resolveIdentity(
      given,
      wireListen,
      log,
      tls?.connector,
      o.signal,
    );
    const metrics = new NodeMetrics(config.id);
    const { limits } = config;
    // Read before any storage opens: a damaged record stops the start with nothing to close.
    const rangeDirs = new RangeDirs(config.dataDir);
    const blank = blankGroupDirs(config.dataDir);
    const lostRanges = rangeDirs.lost();
    const {
      kv: storage,
      queue: queueStorage,
      meta: metaStorage,
    } = await openGroupStorages(config, log);
    const initial = storage.initialState();
    const holdsLog = initial.entries.length > 0 || initial.snapshot !== null;
    const someHeld =
      holdsLog || initial.hardState.term > 0 || holdsState(queueStorage) || holdsState(metaStorage);
    // The identity file is written on first start, before anything is proposed: a log (or a
    // term) without it means the file was lost, and with it every check of whose log this is.
    if (recorded === null && someHeld) {
      await storage.close();
      await queueStorage.close();
      await metaStorage.close();
      throw missingIdentity(config);
    }
    // Some groups' storage lost while others kept theirs: recovered as a wiped node is.
    const fixedLost = blank.length > 0 && someHeld;
    if (fixedLost)
      log.warn(
        { dataDir: config.dataDir, groups: blank },
        `the storage of group(s) ${blank.join(',')} holds nothing while another group holds a log: part of this node's data was lost`,
      );
    if (lostRanges.length > 0)
      log.warn(
        { dataDir: config.dataDir, ranges: lostRanges },
        `range(s) ${lostRanges.join(',')} held here hold no storage now: part of this node's data was lost`,
      );
    const partLost = fixedLost || lostRanges.length > 0;
    let runtimeHolder: RaftRuntime | null = null;
    let knowsCluster = recorded !== null && recorded.recovery === 'recovering';
    const peers = await openPeerTransport(
      config,
      // A node recovering lost data says it holds a log: it knows the cluster exists, and an
      // empty member asking must not count it toward a new cluster (startup.ts).
      () =>
        knowsCluster || (runtimeHolder === null ? holdsLog : runtimeHolder.status().lastIndex > 0),
      async () => {
        await storage.close();
        await queueStorage.close();
        await metaStorage.close();
      },
      log,
      tls?.material,
      o.featureLevel ?? FEATURE_LEVEL,
    );
    const { transport } = peers;
    let recovery: Recovery;
    try {
      recovery =
        (recorded !== null && recorded.recovery === 'recovering') || lostData || partLost
          ? 'recovering'
          : holdsLog || initial.hardState.term > 0 || joined
            ? 'none'
            : await decideEmptyStart(config, peers.peerLogs, log, o.signal);
      // Written on first start (or after recovery was decided); an unchanged one is left alone.
      if (recorded?.recovery !== recovery) writeIdentity(config.dataDir, { ...identity, recovery });
      // What its groups' commands are applied under, for a look at the directory once stopped.
      writeLimits(config.dataDir, config.limits);
      if (recovery === 'recovering') knowsCluster = true;
      // Once the recovery is durable: the ranges found lost are forgotten (recovering restarts
      // those this node still replicates, which records them again).
      rangeDirs.settle();
    } catch (err) {
      await transport.close();
      await storage.close();
      await queueStorage.close();
      await metaStorage.close();
      throw err;
    }
    if (recovery === 'recovering') {
      log.warn(
        { dataDir: config.dataDir },
        'this node lost its data: recovering from the leader; it neither votes nor counts toward a quorum until caught up',
      );
    }
    const heartbeats = new HeartbeatTimer(
      () => performance.now(),
      (ms) => metrics.heartbeatRoundTrip.observe(ms / 1000),
      (ms) => metrics.leaderContactGap.observe(ms / 1000),
    );
    const dash: DashboardParts = {
      timeline: new Timeline(config.id, timelineEntries, () => systemClock.nowMs()),
      sampler: new RateSampler(systemClock),
      leaderContactMs: 0,
    };
    const sessionLimits = {
      ...defaultSessionLimits,
      maxSessions: limits.maxSessions,
      window: limits.sessionWindow,
    };
    // Every group but the key-value group logs its events tagged with its id.
    const groupLogs = new Map<number, Logger>();
    const groupLog = (group: number): Logger => {
      if (group === KV_GROUP) return log;
      let l = groupLogs.get(group);
      if (l === undefined) groupLogs.set(group, (l = log.child({ group })));
      return l;
    };
    // Bound once the node is made: a group a storage failure stopped ends its range's watches.
    let groupStopped: (group: number) => void = () => undefined;
    const host = new Host({
      id: config.id,
      // Ticks and the lease by the monotonic clock, never a wall clock that can be stepped.
      clock: monotonicClock,
      tickMs: config.tickMs,
      transport: {
        send: (m, a, group) => {
          metrics.messagesSent.inc({ type: m.type });
          heartbeats.sending(m);
          transport.send(m, a, group);
        },
        onMessage: (h) =>
          transport.onMessage((m, a, group) => {
            metrics.messagesReceived.inc({ type: m.type });
            heartbeats.received(m);
            // Only a leader sends appends and heartbeats (and the core drops a stale one's).
            if (group === KV_GROUP && (m.type === 'append' || m.type === 'heartbeat'))
              dash.leaderContactMs = performance.now();
            h(m, a, group);
          }),
        flush: () => transport.flush(),
        close: () => transport.close(),
        liveness: transport.liveness,
      },
      // The metrics describe the key-value group, as they did before the queue group existed;
      // the queue group's events are logged, tagged with their group.
      onEvent: (group, e: RuntimeEvent) => {
        dash.timeline.record(group, e);
        // One per durable write of any group: with walSync "per-group", one sync each.
        if (e.kind === 'persisted') metrics.groupPersists.inc();
        if (group === KV_GROUP) {
          metrics.observe(e);
          if (e.kind === 'applied') dash.sampler.appliedEntries(e.entries);
        }
        logRuntimeEvent(groupLog(group), e);
        if (e.kind === 'fatal') groupStopped(group);
      },
    });
    const nodeRecovery = new NodeRecovery({
      selfId: config.id,
      initial: recovery,
      store: (r) => {
        // A member marked removed (member-node.ts) stays marked.
        const removed = readIdentity(config.dataDir)?.removed === true;
        writeIdentity(config.dataDir, {
          ...identity,
          recovery: r,
          ...(removed ? { removed } : {}),
        });
      },
      clock: systemClock,
      checkEveryMs: 200,
      log,
      ...(o.unsafeSkipRangeRecovery === true ? { unsafeSkipRangeRecovery: true } : {}),
    });
    const groupOptions = groupSettings(config, identity, nodeRecovery);
    const queueMachine = new QueueStateMachine();
    const metaMachine = new MetaStateMachine({ maxKeyBytes: APPLY_LIMITS.maxKeyBytes });
    // Range 0 (the key-value group) and every range split off it that this node replicates,
    // each SessionMachine(RangeMachine(KvStateMachine)) in its own group-<id>/ directory.
    const tracedGroup = o.traceGroup ?? KV_GROUP;
    const ranges = new RangeGroups({
      host,
      dirs: rangeDirs,
      openStorage: (id) =>
        id === KV_GROUP ? Promise.resolve(storage) : openGroupStorage(config, id, log),
      settings: (id) => {
        const { voters: _voters, ...settings } = groupOptions(id);
        // The write tracer (bench/trace) follows one group's writes: the key-value store's here.
        return id === KV_GROUP && tracedGroup === KV_GROUP && o.trace !== undefined
          ? { ...settings, trace: o.trace }
          : settings;
      },
      sessionLimits,
      onError: (range, err) =>
        log.error({ range, err: err.message }, 'a range group could not be started'),
    });
    let range0: RangeGroup;
    let queueRuntime: RaftRuntime;
    let metaRuntime: RaftRuntime;
    try {
      range0 = await ranges.start(KV_GROUP, groupOptions(KV_GROUP).voters);
      queueRuntime = await host.addGroup(QUEUE_GROUP, {
        ...groupOptions(QUEUE_GROUP),
        ...(tracedGroup === QUEUE_GROUP && o.trace !== undefined ? { trace: o.trace } : {}),
        storage: queueStorage,
        stateMachine: new SessionMachine(queueMachine, sessionLimits),
      });
      metaRuntime = await host.addGroup(META_GROUP, {
        ...groupOptions(META_GROUP),
        storage: metaStorage,
        stateMachine: new SessionMachine(metaMachine, sessionLimits),
      });
      // Ranges split off range 0 start with it (their seeds are on disk): wait for them, so the
      // node serves once it runs every range it replicates (one that fails is logged).
      await ranges.settled();
      // Ranges this node was added to as a new replica: no split it applied names them.
      await ranges.startHeld(rangeDirs.held());
    } catch (err) {
      await host.close(0);
      if (!host.group(KV_GROUP)) await storage.close();
      if (!host.group(QUEUE_GROUP)) await queueStorage.close();
      if (!host.group(META_GROUP)) await metaStorage.close();
      throw err;
    }
    const runtime = range0.runtime;
    const kv = range0.range.kv;
    const kvSessions = range0.sessions;
    runtimeHolder = runtime;
    if (config.unsafeTestMode !== 'none') {
      log.warn(
        { unsafeTestMode: config.unsafeTestMode },
        'UNSAFE TEST MODE: this node breaks linearizability on purpose',
      );
    }
    const admission = new Admission(
      {
        maxRequests: config.maxInflightRequests,
        maxBytes: config.maxInflightBytes,
        maxAgeMs: config.maxInflightAgeMs,
        maxWaitMs: config.maxInflightWaitMs,
        maxWaiting: 4 * config.maxInflightRequests,
      },
      (ok) => metrics.admission.inc({ outcome: ok ? 'admitted' : 'overloaded' }),
    );
    metrics.bindAdmission(() => admission.state());
    const loopDelay = new LoopDelayMonitor();
    metrics.bindLoopDelay(() => loopDelay.snapshot());
    metrics.bindBuild(packageVersion());
    if (tls !== null) metrics.bindTlsExpiry(() => Math.floor(tls.material.validToMs / 1000));
    metrics.bindQuiescing(() => host.stats());
    // A heartbeat sent just before a stall leaves a peer's election timer the election timeout
    // less one heartbeat interval: a stall that long may cost an election, or, on a follower,
    // its leader's check-quorum. The warning names the stall that explains such an election.
    const electionTimeoutMs = config.electionTicks * config.tickMs;
    const stallWatch = new LoopStallWatch({
      clock: systemClock,
      periodMs: config.tickMs,
      thresholdMs: (config.electionTicks - config.heartbeatTicks) * config.tickMs,
      onStall: (s) => {
        metrics.loopStalls.inc();
        log.warn(
          { stalledMs: s.stalledMs, electionTimeoutMs },
          'event loop stalled: long enough for an election to start meanwhile',
        );
      },
    });
    const leaderless = new LeaderlessWatch({
      clock: systemClock,
      log,
      status: () => runtime.status(),
      received: (id) => {
        const got = transport.stats().peers.get(id)?.received ?? {};
        return Object.values(got).reduce((n, t) => n + t.messages, 0);
      },
    });
    metrics.bindLiveness(() => peers.transport.liveness?.sent ?? 0);
    // Followed for changes from here on; off (null) without authTokensFile.
    const tokens =
      config.auth === null ? null : new LiveTokenBook(config.auth, log, { pollMs: 1_000 });
    const authorize = tokens === null ? undefined : httpAuthorizer(() => tokens.current());
    // The page of one member follows another when its own is down: the members' origins may
    // call the dashboard's paths across origins (src/api/cors.ts).
    // The node (and its address book) is assembled around the server: the book is bound below.
    let clientAddresses = (): string[] => [];
    const cors = new CorsPolicy([...dashboardApiPaths, dashboardMemberPath], () =>
      clientAddresses(),
    );
    // Clients refused for their certificate, on either client port: said once a minute each.
    const certRefusals = new RateLimitedWarning(log, monotonicClock);
    const http = new JsonHttpServer({
      ...(authorize === undefined ? {} : { authorize }),
      cors,
      admission,
      maxBodyBytes: config.maxBodyBytes,
      headersTimeoutMs: config.httpHeadersTimeoutMs,
      requestTimeoutMs: config.httpRequestTimeoutMs,
      idleTimeoutMs: config.httpIdleTimeoutMs,
      maxConnections: config.httpMaxConnections,
      ...(wireListen === null
        ? {}
        : { answerHeaders: { [clientProtocolHeader]: String(config.clientProtocolPort) } }),
      onRequest: (route, status) => metrics.httpRequests.inc({ route, status: String(status) }),
      onError: (err) => log.error({ err }, 'request failed with an internal error'),
      ...(o.trace === undefined ? {} : { trace: o.trace }),
      ...(tls === null ? {} : { tls: clientPortTls(tls, config, certRefusals, 'HTTP') }),
    });
    const service = new KvService(
      runtime,
      kv,
      { maxKeyBytes: config.maxKeyBytes, maxValueBytes: config.maxValueBytes },
      systemClock,
    );
    const gate = new FeatureGate({
      selfId: config.id,
      level: o.featureLevel ?? FEATURE_LEVEL,
      runtime,
      sessions: kvSessions,
      peerLevels: peers.peerLevels,
      clock: systemClock,
      // As long as a request waits for a leader: a raise needs group 0 to have one.
      raiseWaitMs: Math.min(config.requestTimeoutMs, 10 * config.electionTicks * config.tickMs),
      checkEveryMs: 1_000,
      log,
    });
    peers.onPeerLevel(() => gate.peerChanged());
    const queueService = new QueueService(
      queueRuntime,
      queueMachine,
      defaultQueueLimits,
      systemClock,
      gate,
    );
    const node = new FlotillaNode(
      config,
      host,
      runtime,
      kv,
      service,
      queueService,
      http,
      metrics,
      log,
      loopDelay,
      transport,
      kvSessions,
      identity,
      ranges,
      new MetaService({
        runtime: metaRuntime,
        machine: metaMachine,
        clock: systemClock,
        firstRangeReplicas: () => runtime.status().voters,
        checkEveryMs: 500,
        log: groupLog(META_GROUP),
        gate,
      }),
      gate,
    );
    clientAddresses = () => node.members.book.map((m) => m.client);
    groupStopped = (group) => node.lanes.groupStopped(group);
    // The directory restored from the snapshot (and the log replayed so far) names members
    // added at run time: the transport learns them before the first message goes out.
    node.members.refreshBook();
    peers.onRefused(() => node.members.askPeerForMembers());
    transport.setAdmission((id, a) => node.members.admit(id, a.peer, a.client));
    for (const h of peers.heard)
      if (
        !node.members.admit(h.id, h.peer, h.client) &&
        !node.members.book.some((m) => m.id === h.id)
      )
        transport.removePeer(h.id);
    metrics.bindMembership(() => ({
      status: runtime.status(),
      replication: node.members.membership.replication(),
    }));
    metrics.bindStatus(() => ({ ...runtime.status(), applied: runtime.appliedIndex() }));
    metrics.bindSnapshotTransfers(() => ({
      transfers: snapshotTransfersOf(runtime, queueRuntime),
      counters: [runtime, queueRuntime].map((rt, group) => ({ group, ...rt.snapshotCounters() })),
    }));
    metrics.bindRanges(() => node.lanes.count());
    metrics.bindKvHistory(() => ({
      revision: kv.revision(),
      compacted: kv.compacted(),
      versions: kv.historySize(),
      bytes: kv.historyBytes(),
    }));
    metrics.bindPeerBytes(() => {
      const rows: { direction: 'sent' | 'received'; type: string; bytes: number }[] = [];
      for (const peer of transport.stats().peers.values()) {
        for (const direction of ['sent', 'received'] as const) {
          for (const [type, t] of Object.entries(peer[direction]))
            rows.push({ direction, type, bytes: t.bytes });
        }
      }
      return rows;
    });
    node.tokens = tokens;
    const nodeAuthorization = memberAuthHeaders(config.auth)['authorization'];
    installRoutes(http, node.backend());
    installMemberRoutes(http, node.members.backend());
    // Ranges a change of replicas or a split runs on here: one at a time per range.
    const busy = new Set<RangeId>();
    const hooks = o.testHooks ?? {};
    const rangeAdmin: RangeAdminOptions = {
      selfId: config.id,
      busy,
      ...(hooks.beforeSplitMapRecord === undefined
        ? {}
        : { beforeMapRecord: hooks.beforeSplitMapRecord }),
      lanes: node.lanes,
      remote: node.remote,
      meta: node.meta,
      metaForwarder: node.newForwarder(metaRuntime),
      clock: systemClock,
      maxKeyBytes: config.maxKeyBytes,
      recordTimeoutMs: config.requestTimeoutMs,
      gate: node.gate,
    };
    installRangeRoutes(http, rangesBackend(rangeAdmin));
    node.splitter = nodeRangeSplitter({
      thresholds: {
        keys: config.rangeSplitKeys,
        bytes: config.rangeSplitBytes,
        writesPerSec: config.rangeSplitWritesPerSec,
        loadWindowMs: config.rangeSplitLoadWindowMs,
        cooldownMs: config.rangeSplitCooldownMs,
      },
      lanes: node.lanes,
      admin: rangeAdmin,
      authorization: nodeAuthorization,
      // Allocation, the split and its record, each bounded by the request timeout.
      timeoutMs: 3 * config.requestTimeoutMs,
      log,
    });
    node.replicaParts = installRangeReplicas(http, {
      selfId: config.id,
      lanes: node.lanes,
      groups: ranges,
      dirs: rangeDirs,
      meta: node.meta,
      metaForwarder: node.newForwarder(metaRuntime),
      forwarderFor: (rt, timeoutMs) => node.newForwarder(rt, timeoutMs),
      firstGroup: runtime,
      clientUrl: (id) => node.members.book.find((m) => m.id === id)?.client,
      forward: (url, path, body, signal, authorization) =>
        node.send({ url, lane: 'groups' }, path, body, signal, authorization),
      post: (url, path, body, signal) =>
        node.send({ url, lane: 'member' }, path, body, signal, nodeAuthorization),
      nodeAuthorization,
      clock: systemClock,
      requestTimeoutMs: config.requestTimeoutMs,
      learnerLagEntries: config.learnerPromoteLagEntries,
      maxKeyBytes: config.maxKeyBytes,
      recovery: nodeRecovery,
      busy,
      ...(hooks.beforeReplicasMapRecord === undefined
        ? {}
        : { beforeMapRecord: hooks.beforeReplicasMapRecord }),
      log,
    });
    node.recovery = nodeRecovery;
    node.mapRepair =
      hooks.mapRepair === false
        ? null
        : new MapRepair({
            selfId: config.id,
            lanes: node.lanes,
            meta: node.meta,
            metaForwarder: node.newForwarder(metaRuntime),
            nodeAuthorization,
            busy,
            clock: systemClock,
            checkEveryMs: mapRepairEveryMs,
            leaderCheckMs: 100,
            recordTimeoutMs: config.requestTimeoutMs,
            // Past the time a change forwarded after a hand-off takes to reach the new leader.
            strayLearnerGraceMs: 2 * config.requestTimeoutMs,
            log: groupLog(META_GROUP),
          });
    node.placement = new PlacementNode({
      config,
      meta: node.meta,
      kv: runtime,
      lanes: node.lanes,
      book: () => node.members.book,
      removed: (id) => kvSessions.directory.isRemoved(id),
      request: (url, method, path, body, signal) =>
        node.memberRequest(url, method, path, body, signal),
      metaForward: node.newForwarder(metaRuntime),
      clock: systemClock,
      log: groupLog(META_GROUP),
      onStep: (step, outcome) => metrics.placementSteps.inc({ kind: step.kind, outcome }),
    });
    installPlacementRoutes(http, node.placement.backend());
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
      checkWhole: () => node.kvPath.checkOneRange('a backup'),
    });
    installLeaseRoutes(http, {
      forward: (path, rawBody, signal, authorization) =>
        node.forwarder.forward(path, rawBody, signal, authorization),
      header: () => ({
        revision: kv.revision(),
        memberId: config.id,
        raftTerm: runtime.term(),
      }),
      // Leases are range 0's: a split store refuses them rather than half-serve them (the
      // right-hand ranges hold copies of the leases no keeper expires).
      grant: async (id, ttl, signal) => {
        node.kvPath.checkOneRange('a lease');
        return service.leaseGrant(id, ttl, { signal });
      },
      revoke: async (id, signal) => {
        node.kvPath.checkOneRange('a lease');
        return service.leaseRevoke(id, { signal });
      },
      keepAlive: async (id) => {
        node.kvPath.checkOneRange('a lease');
        return node.leaseKeeper.keepAliveApplied(id);
      },
      timeToLive: async (id) => {
        node.kvPath.checkOneRange('a lease');
        const ttl = await node.leaseKeeper.timeToLiveApplied(id);
        return { ...ttl, keys: kv.lease(id)?.keys ?? [] };
      },
      leases: () => {
        node.kvPath.checkOneRange('a lease');
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
        node.forwardQueue(path, rawBody, signal, authorization),
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
      watches: () =>
        node.lanes.all().reduce((n, l) => n + l.watchHub.size(), 0) + node.kvPath.remoteWatches(),
      // Served by the watch hub of the range the watched keys lie in (CROSS_RANGE otherwise),
      // or relayed from a replica of a range not run here.
      watch: (spec, sink, via) => node.kvPath.watch(spec, sink, via),
      // Two election timeouts without a leader: not an election under way, a node cut off.
      leaderless: () => leaderless.leaderlessMs() >= 2 * electionTimeoutMs,
    };
    installWatchRoute(http, watchBackend);
    metrics.bindWatches(() => watchBackend.watches());
    metrics.bindStoreBytes(() => node.kvPath.storeBytes());
    node.dash = dash;
    node.feed = new DashboardFeed({
      selfId: config.id,
      clock: systemClock,
      periodMs: 250,
      peerTimeoutMs: 750,
      maxStreams: 32,
      maxBufferedBytes: 4 * 1024 * 1024,
      timelineLines: 200,
      members: () => node.members.book,
      local: (version) => node.memberView(version),
      fetchMember: (client, version, signal) => node.fetchMemberView(client, version, signal),
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
    const feed = node.feed;
    installDashboardRoutes(
      http,
      {
        member: (version) => node.memberView(version),
        follow: (out) => feed.follow(out),
        checkRoom: () => feed.checkRoom(),
      },
      { memberOrigins: () => cors.origins() },
    );
    node.wire =
      wireListen === null
        ? null
        : createClientProtocolServer(config, {
            backend: node.backend(),
            watch: watchBackend,
            service: {
              leads: () => queueRuntime.leaderId() === config.id,
              forward: (path, rawBody, signal, authorization) =>
                node.forwardQueue(path, rawBody, signal, authorization),
              batch: (fn) => queueRuntime.batch(fn),
              ops: new Map(queue.ops.map((op) => [`queue.${op.name}`, op])),
            },
            admission,
            metrics,
            log,
            ...(tokens === null ? {} : { tokens: () => tokens.current() }),
            ...(tls === null
              ? {}
              : { tls: clientPortTls(tls, config, certRefusals, 'binary protocol') }),
            ...(o.trace === undefined ? {} : { trace: o.trace }),
          });
    metrics.bindClientAbortListeners(() => ({
      http: http.abortListeners(),
      binary: node.wire?.abortListeners() ?? 0,
    }));
    node.tls = tls;
    node.peerAddressMismatch = () => peers.addressMismatch();
    peers.bindClientUrls((id) => node.members.book.find((m) => m.id === id)?.client ?? null);
    if (tls !== null) {
      tls.onChange((m) => transport.setTls(m));
      tls.onChange((m) => http.setTls(m));
      const wire = node.wire;
      if (wire !== null) tls.onChange((m) => wire.setTls(m));
    }
    let addr: Awaited<ReturnType<typeof http.listen>>;
    try {
      addr = await http.listen(config.listenClient);
      if (node.wire !== null && wireListen !== null)
        await listenClientProtocol(node.wire, wireListen).catch(async (err: unknown) => {
          await http.close();
          throw err;
        });
      if (tls !== null)
        logTlsPorts(log, tls.material, [
          { kind: 'peer', address: config.listenPeer, certificateRequired: true },
          {
            kind: 'HTTP client',
            address: joinHostPort(addr.address, addr.port),
            certificateRequired: config.tls?.clientCertAuth === true,
          },
          ...(node.wire !== null && wireListen !== null
            ? [
                {
                  kind: 'binary protocol' as const,
                  address: wireListen,
                  certificateRequired: config.tls?.clientCertAuth === true,
                },
              ]
            : []),
        ]);
      log.info(
        {
          client: joinHostPort(addr.address, addr.port),
          peer: config.listenPeer,
          dataDir: config.dataDir,
          storage: config.storage,
          dashboard: localUrl(addr.address, addr.port, tls !== null, '/'),
          pid: process.pid,
        },
        'node started',
      );
    } catch (err) {
      await host.close(0);
      loopDelay[Symbol.dispose]();
      tokens?.[Symbol.dispose]();
      throw listenError(config.listenClient, 'clients (listenClient)', err);
    }
    // For the image's health check; best effort: a node that could not write it still runs.
    try {
      writeServing(config.dataDir, {
        readyz: localUrl(addr.address, addr.port, given.tls !== null, '/readyz'),
        tls:
          given.tls === null
            ? null
            : {
                caFile: resolvePath(given.tls.caFile),
                certFile: resolvePath(given.tls.certFile),
                keyFile: resolvePath(given.tls.keyFile),
              },
      });
    } catch (err) {
      log.warn(
        { err },
        `Cannot write ${SERVING_FILE}: the image's health check will guess the client port`,
      );
    }
    node.tls?.start();
    node.stallWatch = stallWatch;
    stallWatch.start();
    node.leaderless = leaderless;
    leaderless.start();
    node.lanes.start();
    node.splitter.start();
    dash.sampler.start();
    node.leaseKeeper.start();
    node.queueTicker.start();
    node.meta.start();
    node.replicaParts.retirer.start();
    nodeRecovery.start({
      groups: () => [
        ...ranges.ranges().flatMap((id) => {
          const g = ranges.group(id);
          return g === undefined ? [] : [{ id, runtime: g.runtime }];
        }),
        { id: QUEUE_GROUP, runtime: queueRuntime },
        { id: META_GROUP, runtime: metaRuntime },
      ],
      pendingRanges: () => ranges.pending(),
      metaGroup: META_GROUP,
      map: () => metaMachine.map()?.ranges() ?? null,
      startRange: (d) => {
        if (!ranges.isRetired(d.id)) void ranges.start(d.id, d.replicas, d);
      },
      prepared: (id) => rangeDirs.preparedAt(id) !== undefined,
    });
    node.mapRepair?.start();
    node.gate.start();
    node.placement?.start();
    node.members.membership.start();
    return node;
  }

  /** Clean shutdown: hand leadership over, stop serving, flush and close. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.members.membership.stop();
    this.tls?.stop();
    this.stallWatch?.stop();
    this.leaderless?.stop();
    this.splitter?.[Symbol.dispose]();
    this.lanes.close();
    this.leaseKeeper.stop();
    this.queueTicker.stop();
    this.meta.stop();
    this.replicaParts?.retirer.stop();
    this.recovery?.stop();
    this.mapRepair?.stop();
    this.gate.stop();
    this.placement?.stop();
    this.watchHub.close();
    this.feed?.close();
    this.dash?.sampler.stop();
    // Closing a storage can fail (a disk gone read-only refuses even the removal of its lock):
    // the servers close all the same, or the process would never exit and go on answering
    // /healthz. The failure is reported once everything else is closed.
    let storageFailure: { err: unknown } | null = null;
    this.closeStage = 'closing the Raft groups';
    try {
      await this.host.close();
    } catch (err) {
      storageFailure = { err };
    }
    this.closeStage = 'closing the HTTP server';
    await this.http.close();
    this.closeStage = 'closing the binary protocol server';
    await this.wire?.close();
    this.closeStage = 'closing the connections to other members';
    await Promise.all([...this.pools.values()].map((p) => p.close()));
    this.closeStage = null;
    this.loopDelay[Symbol.dispose]();
    this.tokens?.[Symbol.dispose]();
    this.markStopped();
    if (storageFailure !== null) throw storageFailure.err;
    this.log.info('node stopped');
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** Where close() is; null before it starts and once it ended. */
  private closeStage: string | null = null;

  /**
   * What a close under way waits for: the node's step, and within the Raft groups, each group's
   * (RaftRuntime.closeStage) or the host's. Empty when no close is under way.
   */
  closingStages(): string[] {
    if (this.closeStage === null) return [];
    return [
      this.closeStage,
      ...this.host
        .closing()
        .map(({ group, stage }) => (group === null ? stage : `group ${group}: ${stage}`)),
    ];
  }

  /**
   * Changes range `range`'s replicas: adds node `add`, removes node `remove`, or both (moves
   * one replica), on the range's leader (forwarded there), with this node's own credential.
   * Answers the range's descriptor once done and recorded in the range map (range-replicas.ts).
   */
  changeReplicas(
    range: RangeId,
    change: ReplicaChange,
    signal: AbortSignal,
  ): Promise<RangeDescriptor> {
    if (this.replicaParts === null)
      return Promise.reject(new Error('The node is not assembled yet'));
    return changeReplicas(
      this.replicaParts,
      range,
      change,
      signal,
      memberAuthHeaders(this.config.auth)['authorization'],
    );
  }

  /**
   * Hands range `range`'s leadership to its voter `to`, on the range's leader (forwarded
   * there), with this node's own credential; answers once `to` leads (range-transfer.ts).
   */
  transferRangeLeader(
    range: RangeId,
    to: number,
    signal: AbortSignal,
  ): Promise<{ range: RangeId; leader: number }> {
    if (this.replicaParts === null)
      return Promise.reject(new Error('The node is not assembled yet'));
    return transferLeader(
      this.replicaParts,
      range,
      to,
      signal,
      memberAuthHeaders(this.config.auth)['authorization'],
    );
  }

  nodeStatus(): NodeStatus {
    const s = this.runtime.status();
    const q = this.queueService.runtime.status();
    const r = this.recovery?.status();
    return {
      id: s.id,
      pid: process.pid,
      role: s.role,
      term: s.term,
      leader: s.leader,
      commit: s.commit,
      applied: this.runtime.appliedIndex(),
      lastIndex: s.lastIndex,
      firstIndex: s.firstIndex,
      revision: this.kv.revision(),
      // Any group: the data directory is marked recovered only when every one has caught up.
      recovering:
        r?.recovering === true ||
        s.recovery === 'recovering' ||
        q.recovery === 'recovering' ||
        this.meta.runtime.status().recovery === 'recovering',
      recoveringGroups: r?.recoveringGroups ?? [],
      recoveryWaitingFor: r?.waitingFor ?? [],
      rangesInMap: rangesInMap(
        this.meta.machine.map(),
        s.id,
        s.voters.includes(s.id) || s.learners.includes(s.id),
      ),
      stoppedGroups: this.host.stoppedGroups(),
      members: [...this.members.book],
      voters: s.voters,
      learners: s.learners,
      replication: this.members.membership.replication(),
      snapshotTransfers: snapshotTransfersOf(this.runtime, this.queueService.runtime),
      ranges: this.lanes.count(),
      featureLevel: {
        node: this.gate.level,
        active: this.gate.active(),
        members: this.gate.members(),
      },
      queueGroup: {
        role: q.role,
        term: q.term,
        leader: q.leader,
        commit: q.commit,
        applied: this.queueService.runtime.appliedIndex(),
      },
    };
  }

  /**
   * What this node tells the dashboard of itself: its status, how long since it heard from its
   * leader, what it has in flight to each follower when it leads, and its election timeline
   * when that changed since `timelineVersion`.
   */
  memberView(timelineVersion: number): MemberView {
    const s = this.runtime.status();
    const inflight: Record<string, number> = {};
    if (s.role === 'leader')
      for (const [id, p] of Object.entries(s.progress))
        if (Number(id) !== s.id) inflight[id] = Math.max(0, p.next - 1 - p.match);
    const t = this.dash?.timeline.entriesAfter(0);
    return {
      status: this.nodeStatus(),
      leaderContactAgoMs:
        s.role === 'leader' || !this.dash?.leaderContactMs
          ? null
          : Math.round(performance.now() - this.dash.leaderContactMs),
      inflight,
      timeline:
        t === undefined || t.version === timelineVersion
          ? null
          : { version: t.version, entries: t.entries },
    };
  }

  /** Another member's view for this node's dashboard feed. */
  private async fetchMemberView(
    client: string,
    timelineVersion: number,
    signal: AbortSignal,
  ): Promise<MemberView> {
    const res = await this.pool(client).request({
      method: 'GET',
      path: `${dashboardMemberPath}?timelineVersion=${timelineVersion}`,
      headers: memberAuthHeaders(this.config.auth),
      signal,
    });
    const text = await res.body.text();
    if (res.statusCode !== 200) throw new Error(`HTTP ${res.statusCode}`);
    return JSON.parse(text) as MemberView;
  }

  /**
   * Why the node cannot serve as it should, if one of its groups stopped after a storage
   * failure; null otherwise. Such a group never runs again in this process (STORAGE.md,
   * "Guarantees"), so the node is neither ready nor live: an orchestrator restarts it.
   */
  private stoppedReason(): string | null {
    const stopped = this.host.stoppedGroups();
    const first = stopped[0];
    if (first === undefined) return null;
    const groups = stopped.map((g) => g.group).join(', ');
    return `group${stopped.length > 1 ? 's' : ''} ${groups} stopped after a storage failure (${first.error}); restart the node`;
  }

  /** The key-value backend both fronts (HTTP and the binary protocol) serve requests through. */
  private backend(): KvBackend {
    return {
      limits: this.config.limits,
      metrics: this.metrics.registry,
      write: (txn, session, signal) => this.kvPath.write(txn, session, signal),
      read: (op, consistency, signal, via) => this.kvPath.read(op, consistency, signal, via),
      compact: async (revision, signal) => {
        this.kvPath.checkOneRange('compaction to one revision');
        const r = await this.service.compact(revision, { signal });
        return {
          header: { ...this.kvPath.header(), revision: r.revision },
          compacted: r.compacted,
        };
      },
      routeWrite: (txn) => this.kvPath.routeWrite(txn),
      leads: () => this.runtime.leaderId() === this.config.id,
      forward: (path, rawBody, signal, authorization) =>
        this.forwarder.forward(path, rawBody, signal, authorization),
      batch: (fn) => this.runtime.batch(fn),
      status: () => this.nodeStatus(),
      clusterStatus: (signal) => this.clusterStatus(signal),
      live: () => {
        const stopped = this.stoppedReason();
        return stopped === null
          ? { live: true, reason: 'serving' }
          : { live: false, reason: stopped };
      },
      ready: () => {
        const stopped = this.stoppedReason();
        if (stopped !== null) return { ready: false, reason: stopped };
        const s = this.runtime.status();
        const leaderless = this.leaderless?.reason() ?? null;
        if (s.recovery === 'recovering')
          return {
            ready: false,
            reason:
              leaderless ??
              `recovering lost data: holds ${s.lastIndex} entries, commit ${s.commit}; not a voter until caught up`,
          };
        const r = this.recovery?.status();
        if (r?.recovering === true)
          return {
            ready: false,
            reason: `recovering lost data: waiting for ${r.waitingFor.join('; ')}`,
          };
        if (s.leader === 0) {
          const moved = this.members.membership.ownAddressMismatch() ?? this.peerAddressMismatch();
          return { ready: false, reason: moved ?? leaderless ?? 'no leader known' };
        }
        // A member that just joined, or came back empty, knows the leader from its first
        // heartbeat, before any entry or snapshot: it held no data and said ready.
        if (s.lastIndex === 0)
          return { ready: false, reason: `waiting for the log from leader ${s.leader}` };
        // Caught up as a learner is for promotion, but never more than readyApplyLag behind:
        // one entry behind, between a commit and its apply under steady writes, made a
        // caught-up follower flap.
        const lag = Math.min(this.config.learnerPromoteLagEntries, readyApplyLag);
        if (this.runtime.appliedIndex() + lag < s.commit)
          return {
            ready: false,
            reason: `applying: ${this.runtime.appliedIndex()} of ${s.commit}`,
          };
        // The queue and meta groups too: a member they have not made a voter yet, or that
        // one of them cannot serve through, is not ready for its neighbour to be replaced.
        const follower = this.members.membership.followerNotReady(this.config.id, lag);
        if (follower !== null) return { ready: false, reason: follower };
        return { ready: true, reason: s.leader === s.id ? 'leader' : `following ${s.leader}` };
      },
      transferLeadership: (to) => {
        try {
          if (to === 0) this.members.transferToBest();
          else this.runtime.transferLeadership(to);
        } catch (err) {
          throw toFlotillaError(err);
        }
        return Promise.resolve();
      },
    };
  }

  /**
   * A queue write to the queue group's leader (null: this node leads it). Claims go in a lane of
   * their own: 128 workers long-polling through a follower held every connection of the queue's
   * lane, and the follower refused its adds and reports OVERLOADED until a claim ended.
   */
  private forwardQueue(
    path: string,
    rawBody: string,
    signal: AbortSignal,
    authorization?: string,
  ): Promise<ForwardAnswer | null> {
    const f = path === queuePaths.claim ? this.claimForwarder : this.queueForwarder;
    return f.forward(path, rawBody, signal, authorization);
  }

  private pool(url: string, lane: PoolLane = 'member'): Pool {
    const at = `${lane} ${url}`;
    let p = this.pools.get(at);
    if (p === undefined) {
      p = new MemberPool(url, this.config.id, {
        connections: lane === 'claims' ? forwardedClaimsMax : forwardConnections,
        // Members' client ports serve the cluster's certificate; this node presents its own.
        ...(this.tls === null ? {} : { connect: this.tls.connector }),
      });
      this.pools.set(at, p);
    }
    return p;
  }

  /**
   * A request of this node's own (not a caller's) to a member's client port, with this node's
   * credential and without the forwarded mark, so the member routes it as any request.
   */
  private async memberRequest(
    url: string,
    method: 'GET' | 'POST',
    path: string,
    body: string | undefined,
    signal: AbortSignal,
  ): Promise<ForwardAnswer> {
    const res = await this.pool(url).request({
      method,
      path,
      headers: { 'content-type': 'application/json', ...memberAuthHeaders(this.config.auth) },
      ...(body === undefined ? {} : { body }),
      signal,
    });
    const text = await res.body.text();
    return { status: res.statusCode, json: text === '' ? null : (JSON.parse(text) as unknown) };
  }

  /** One forwarded request; the forwarder owns its deadline and what a failure means. */
  private async send(
    to: { readonly url: string; readonly lane: PoolLane },
    path: string,
    rawBody: string,
    signal: AbortSignal,
    authorization?: string,
  ): Promise<ForwardAnswer> {
    this.metrics.forwarded.inc({ path });
    const res = await this.pool(to.url, to.lane).request({
      method: 'POST',
      path,
      // The caller's credential, never this node's own: the leader decides what the caller
      // may do, and a read token must not become an admin one by going through a follower.
      headers: {
        'content-type': 'application/json',
        [forwardedHeader]: String(this.config.id),
        ...(authorization === undefined ? {} : { authorization }),
      },
      body: rawBody,
      signal,
    });
    const text = await res.body.text();
    return { status: res.statusCode, json: JSON.parse(text) as unknown };
  }

  private async clusterStatus(signal: AbortSignal): Promise<ClusterStatus> {
    // A removed member still running (it has not learned yet) is asked too, at its last known
    // address, and said removed: left out, an operator could not see it still runs.
    const removed = this.members.membership.removedMembers();
    const gone = new Set(removed.map((r) => r.id));
    const book = [...this.members.book];
    const asked = [
      ...book.map((m) => ({ id: m.id, client: m.client })),
      ...removed.flatMap((r) =>
        r.client === null || book.some((m) => m.id === r.id)
          ? []
          : [{ id: r.id, client: r.client }],
      ),
    ];
    const unknown = removed
      .filter((r) => r.client === null && !book.some((m) => m.id === r.id))
      .map((r) => ({
        id: r.id,
        client: '',
        removed: true,
        error: 'its address is no longer known (removed before this node last started)',
      }));
    const answers = await Promise.all(asked.map((m) => this.memberStatus(m, signal)));
    const nodes = answers.map((a) => (gone.has(a.id) ? { ...a, removed: true } : a));
    return { leader: this.runtime.leaderId(), nodes: [...nodes, ...unknown] };
  }

  /** One member's own status for clusterStatus, or why there is none. */
  private async memberStatus(
    m: { id: number; client: string },
    signal: AbortSignal,
  ): Promise<ClusterStatus['nodes'][number]> {
    if (m.id === this.config.id) return { id: m.id, client: m.client, status: this.nodeStatus() };
    const deadline = new Deadline(memberStatusWaitMs, signal);
    try {
      const res = await this.pool(m.client).request({
        method: 'GET',
        path: '/v1/status',
        headers: memberAuthHeaders(this.config.auth),
        signal: deadline.signal,
      });
      const text = await res.body.text();
      if (res.statusCode !== 200)
        return { id: m.id, client: m.client, error: `HTTP ${res.statusCode}` };
      return { id: m.id, client: m.client, status: JSON.parse(text) as NodeStatus };
    } catch (err) {
      return deadline.timedOut
        ? {
            id: m.id,
            client: m.client,
            error: `no answer within ${memberStatusWaitMs} ms`,
            slow: true,
          }
        : { id: m.id, client: m.client, error: (err as Error).message };
    } finally {
      deadline[Symbol.dispose]();
    }
  }
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

/**
 * The client ports' TLS: the node's certificate, and the CA clients must have, if asked. A
 * client refused for its certificate is logged, at most once a minute per address and kind of
 * reason (`refusals`, shared by both ports; without the certificate's details, which the client
 * chose): a misconfigured client retries at will.
 */
function clientPortTls(
  tls: NodeTls,
  config: NodeConfig,
  refusals: RateLimitedWarning,
  port: 'HTTP' | 'binary protocol',
): ServerTlsOptions {
  return {
    ...tls.material,
    requestCert: config.tls?.clientCertAuth === true,
    onRefused: (remote, reason) =>
      refusals.warn(
        `${remote.address} ${reasonClass(reason)}`,
        { remote: joinHostPort(remote.address, remote.port), port, reason },
        `client connection from ${joinHostPort(remote.address, remote.port)} (${port}) refused: ${reason}`,
      ),
  };
}

/** How long a shutdown may take before the node says what it still waits for. */
const shutdownWarnMs = 10_000;

/**
 * A stop signal this soon after the first is the same stop arriving twice, not a second
 * Ctrl-C: under `npm run` one Ctrl-C reaches the command twice (from the terminal and
 * forwarded by npm), and a node of `cluster up` gets the terminal's SIGINT and its parent's
 * SIGTERM at once. A person pressing Ctrl-C again to stop at once is slower than this.
 */
export const SIGNAL_ECHO_MS = 500;

/**
 * What the first stop signal's log line adds: how to stop at once. Not as process 1 (a
 * container's entry), which keeps its shutdown whatever follows (forcedStop).
 */
function secondSignalHint(signal: string): string {
  if (process.pid === 1) return '';
  if (signal === 'SIGINT') return '; press Ctrl-C again to stop at once';
  if (signal === 'SIGTERM') return '; a second SIGTERM stops it at once';
  return '';
}

/**
 * A second stop signal during a shutdown (or a start told to stop): the process ends at once,
 * saying so, with 128 + the signal's number (130 for SIGINT, 143 for SIGTERM), as the signal's
 * default action would have ended it before, without a word. Nothing acknowledged is lost: a
 * write is acknowledged only once its log entry is synced to disk, and the next start replays
 * the log as after a crash. As process 1 the signal changes nothing (returns false): there the
 * kernel dropped it before, and an orchestrator's grace period, then its kill, is what bounds
 * the shutdown; the line says so.
 */
function forcedStop(log: Logger, signal: NodeJS.Signals): void {
  if (process.pid === 1) {
    log.info({ signal }, `${signal} again: as process 1 the shutdown under way goes on`);
    return;
  }
  log.warn(
    { signal },
    `${signal} again: stopping at once without finishing the shutdown ` +
      '(nothing acknowledged is lost: the log is synced before a write is acknowledged)',
  );
  process.exit(128 + constants.signals[signal]);
}

/**
 * Runs a node until SIGTERM or SIGINT, then shuts it down cleanly. The handlers are installed
 * before the node starts: a signal that arrives while it starts (or just after it said "node
 * started") stops it cleanly once started, rather than killing the process mid-write.
 */
export async function runNode(
  config: NodeConfig,
  o: {
    /** FLOTILLA_* variables nothing reads (config.ts, unknownEnvVars): logged as warnings first. */
    unknownEnv?: readonly { name: string; meant?: string }[];
  } = {},
): Promise<void> {
  let stopSignal: string | null = null;
  // A signal before the node started ends a start that waits (a join, an empty data
  // directory's wait for its peers) at once; one that is not waiting stops the node once up.
  const starting = new AbortController();
  let onSignal: (signal: string) => void = (signal) => {
    stopSignal = signal;
    starting.abort(signal);
  };
  // `on`, not `once`: a second signal is not left to its default action, which ended the
  // process mid-shutdown without a word; it is said, then ends it (forcedStop).
  let signalledAt: number | null = null;
  /** Whether the shutdown began (on a signal, or on the member's removal). */
  let shuttingDown = false;
  const handler = (signal: NodeJS.Signals): void => {
    if (signalledAt !== null) {
      if (performance.now() - signalledAt < SIGNAL_ECHO_MS) return;
      return forcedStop(logger, signal);
    }
    signalledAt = performance.now();
    // A shutdown begun without a signal (the member was removed) said no hint: say it now.
    if (shuttingDown) logger.info({ signal }, `already shutting down${secondSignalHint(signal)}`);
    onSignal(signal);
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
  // A node started with an IPC channel (by `cluster up`) belongs to that parent: when the
  // channel closes because the parent ended without stopping it (killed, or orphaned by a
  // wrapper that took the signal), the node stops as on SIGTERM rather than running on with
  // nobody left to stop it. The channel does not keep the process alive by itself.
  const parentGone = (): void => onSignal('parent exited');
  if (process.channel !== undefined) {
    process.channel.unref();
    process.once('disconnect', parentGone);
  }
  const logger = createLogger(config.id, { level: config.logLevel, format: config.logFormat });
  for (const { name, meant } of o.unknownEnv ?? [])
    logger.warn(
      { variable: name, meant },
      `${name} is not a setting and is ignored${meant === undefined ? '' : `: did you mean ${meant}?`}`,
    );
  let node: FlotillaNode;
  try {
    node = await FlotillaNode.start(config, { signal: starting.signal, logger });
  } catch (err) {
    process.off('SIGTERM', handler);
    process.off('SIGINT', handler);
    process.off('disconnect', parentGone);
    // Stopped while it waited: that is the stop asked for, not a failure (exit code 0).
    if (stopSignal !== null && err instanceof FlotillaError && err.code === 'SHUTTING_DOWN') return;
    throw err;
  }
  // A member removed from the cluster stops by itself; the process then ends as on a signal.
  // `stopped` also settles after a close() on a signal: that shutdown is already under way.
  void node.stopped.then(() => onSignal('removed'));
  await new Promise<void>((resolve) => {
    onSignal = (signal) => {
      if (shuttingDown) return;
      shuttingDown = true;
      node.log.info({ signal }, `shutting down${secondSignalHint(signal)}`);
      // A stop should take a second or two: one that lasts says what it waits for, once, so
      // that a node an orchestrator must kill leaves its reason in the log.
      const slow = setTimeout(() => {
        node.log.warn(
          { waitingFor: node.closingStages(), afterMs: shutdownWarnMs },
          `shutdown still under way after ${shutdownWarnMs / 1000} s: waiting for ${node.closingStages().join('; ')}`,
        );
      }, shutdownWarnMs);
      slow.unref();
      node
        .close()
        .finally(() => clearTimeout(slow))
        .then(resolve, (err: unknown) => {
          node.log.error({ err }, 'shutdown failed');
          // Everything is closed but what failed: the process ends, and says it did not end well.
          process.exitCode = 1;
          resolve();
        });
    };
    if (stopSignal !== null) onSignal(stopSignal);
  });
  // The shutdown is over: a signal now has nothing left to cut short.
  process.off('SIGTERM', handler);
  process.off('SIGINT', handler);
}
