// One Flotilla node, assembled: storage, peer transport, the key-value state machine behind
// exactly-once sessions, the Raft runtime, the HTTP API, metrics and logs. `runNode` is what
// `flotilla start` runs (run-node.ts); `FlotillaNode.start` is the same for tests and embedders.
// The steps of the start are in node-open.ts, node-groups.ts, node-health.ts, node-clients.ts,
// node-ranges.ts and node-routes.ts, in that order.

import type { Logger } from 'pino';
import type { MemberView } from '../api/dashboard-routes.js';
import type { JsonHttpServer } from '../api/http.js';
import { installMemberRoutes } from '../api/member-routes.js';
import { installRoutes, type KvBackend } from '../api/routes.js';
import type { NodeStatus } from '../api/types.js';
import type { WireServer } from '../api/wire-server.js';
import { FEATURE_LEVEL } from '../base/features.js';
import { defaultQueueLimits } from '../base/limits.js';
import { systemClock } from '../host/contracts.js';
import type { Host } from '../host/host.js';
import type { RaftRuntime } from '../host/runtime.js';
import type { SessionMachine } from '../host/sessions.js';
import type { TraceHook } from '../host/trace.js';
import type { KvStateMachine } from '../kv/machine.js';
import { WatchHub } from '../kv/watch-hub.js';
import type { RangeDescriptor, RangeId } from '../ranges/types.js';
import type { TcpTransport as Transport } from '../transport/index.js';
import { memberAuthHeaders, type LiveTokenBook } from './auth-tokens.js';
import { createClientProtocolServer } from './client-protocol.js';
import type { AutoCompactor } from './compactor.js';
import type { NodeConfig } from './config.js';
import type { DashboardFeed } from './dashboard.js';
import type { DataDirIdentity } from './data-dir.js';
import { FeatureGate } from './feature-gate.js';
import type { Forwarder } from './forward.js';
import { kvBackend } from './kv-backend.js';
import { KvService } from './kv-service.js';
import type { LeaderlessWatch } from './leaderless.js';
import { newCompactor, newLeaseKeeper, newQueueTicker } from './leader-duties.js';
import type { LeaseKeeper } from './lease-keeper.js';
import type { LoopDelayMonitor, LoopStallWatch } from './loop-health.js';
import { NodeMembers } from './member-node.js';
import { MemberPools } from './member-pools.js';
import { MemberStatuses } from './member-status.js';
import { MetaService } from './meta-service.js';
import { NodeMetrics } from './metrics.js';
import { clientPortTls, createHttpFront, listenClients } from './node-clients.js';
import { NodeForwarders } from './node-forwarders.js';
import { startGroups, startRecovery, type DashboardParts } from './node-groups.js';
import { watchHealth } from './node-health.js';
import { routeRanges } from './node-lanes.js';
import { openNode } from './node-open.js';
import { installRangeParts, type NodeTestHooks } from './node-ranges.js';
import type { NodeRecovery } from './node-recovery.js';
import { installNodeRoutes } from './node-routes.js';
import { KV_GROUP, META_GROUP, type QUEUE_GROUP } from './node-setup.js';
import { bindStatusMetrics, memberView, nodeStatus, type StatusParts } from './node-status.js';
import type { NodeTls } from './node-tls.js';
import { heldRanges, type PlacementNode } from './placement-node.js';
import { QueueService } from './queue-service.js';
import type { QueueTicker } from './queue-ticker.js';
import type { RangeGroups } from './range-groups.js';
import type { RangeKvPath } from './range-kv-path.js';
import type { RangeLanes } from './range-lanes.js';
import type { MapRepair } from './range-map-repair.js';
import type { RemoteRanges } from './range-remote.js';
import { changeReplicas, transferLeader, type RangeReplicaParts } from './range-replica-node.js';
import type { ReplicaChange } from './range-replicas.js';
import type { nodeRangeSplitter } from './range-splitter.js';

export { KV_GROUP, QUEUE_GROUP } from './node-setup.js';

export class FlotillaNode implements AsyncDisposable {
  private closing = false;
  /** Connections to the other members, a pool per lane (member-pools.ts). */
  private readonly pools: MemberPools;
  /** What the other members say of themselves (member-status.ts). */
  private readonly statuses: MemberStatuses;
  private readonly forwarder: Forwarder;
  /** To the leaders of the groups this node runs (node-forwarders.ts). */
  private readonly forwarders: NodeForwarders;
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
    this.pools = new MemberPools({
      selfId: config.id,
      auth: config.auth,
      forwarded: metrics.forwarded,
      tls: () => this.tls,
    });
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
      pool: (url) => this.pools.pool(url),
      forward: (path, rawBody, signal, authorization) =>
        this.forwarder.forward(path, rawBody, signal, authorization),
      log,
      clock: systemClock,
      isClosing: () => this.closing,
      stop: () => void this.close(),
      holdsRanges: (id) => heldRanges(meta.machine.map(), id),
    });
    this.statuses = new MemberStatuses({
      selfId: config.id,
      auth: config.auth,
      pools: this.pools,
      membership: this.members.membership,
      book: () => this.members.book,
      nodeStatus: () => this.nodeStatus(),
      leaderId: () => runtime.leaderId(),
    });
    this.forwarders = new NodeForwarders({
      config,
      members: this.members.book,
      pools: this.pools,
      queueRuntime: queueService.runtime,
    });
    this.forwarder = this.forwarders.newForwarder(runtime);
    this.queueTicker = newQueueTicker(queueService, log);
    this.watchHub = new WatchHub(kv);
    this.leaseKeeper = newLeaseKeeper({ config, log, runtime, kv, service });
    this.compactor = newCompactor(KV_GROUP, { config, log, runtime, kv, service });
    const routes = routeRanges({
      config,
      log,
      metrics,
      ranges,
      range0Parts: {
        service: this.service,
        forwarder: this.forwarder,
        watchHub: this.watchHub,
        compactor: this.compactor,
      },
      meta,
      gate,
      members: this.members.book,
      pools: this.pools,
      newForwarder: (leaders) => this.forwarders.newForwarder(leaders),
      sampler: () => this.dash?.sampler,
    });
    this.lanes = routes.lanes;
    this.remote = routes.remote;
    this.kvPath = routes.kvPath;
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
       * A file to write where the node serves, besides `serving.json` in its data directory:
       * the container image names one (FLOTILLA_SERVING_FILE) so that its health check finds
       * the node wherever its data directory is.
       */
      servingFile?: string;
      /**
       * Aborted when the process is asked to stop: a start still waiting (to join, or for its
       * peers to say whether its empty data directory means a new cluster) ends, closing what
       * it opened, with SHUTTING_DOWN. Its reason (a string: the signal's name) is logged.
       */
      signal?: AbortSignal;
    } = {},
  ): Promise<FlotillaNode> {
    const opened = await openNode(given, o);
    const { log, wireListen, tls, config, identity, rangeDirs, peers, bindRuntime } = opened;
    const { transport } = peers;
    const metrics = new NodeMetrics(config.id);
    const groups = await startGroups(opened, metrics, o);
    const { host, ranges, queueRuntime, nodeRecovery, dash } = groups;
    const { runtime, sessions: kvSessions } = groups.range0;
    const { kv } = groups.range0.range;
    bindRuntime(runtime);
    if (config.unsafeTestMode !== 'none') {
      log.warn(
        { unsafeTestMode: config.unsafeTestMode },
        'UNSAFE TEST MODE: this node breaks linearizability on purpose',
      );
    }
    const health = watchHealth(opened, { metrics, host, runtime });
    const { admission, loopDelay, stallWatch, leaderless } = health;
    const { http, tokens, cors, certRefusals, bindClientAddresses } = createHttpFront({
      config,
      log,
      metrics,
      admission,
      wireListen,
      tls,
      trace: o.trace,
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
      groups.queueMachine,
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
        runtime: groups.metaRuntime,
        machine: groups.metaMachine,
        clock: systemClock,
        firstRangeReplicas: () => runtime.status().voters,
        checkEveryMs: 500,
        log: groups.groupLog(META_GROUP),
        gate,
      }),
      gate,
    );
    bindClientAddresses(() => node.members.book.map((m) => m.client));
    groups.bindGroupStopped((group) => node.lanes.groupStopped(group));
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
    bindStatusMetrics(metrics, {
      runtime,
      kv,
      queueRuntime,
      members: node.members,
      lanes: node.lanes,
      transport,
    });
    node.tokens = tokens;
    const nodeAuthorization = memberAuthHeaders(config.auth)['authorization'];
    installRoutes(http, node.backend());
    installMemberRoutes(http, node.members.backend());
    const hooks = o.testHooks ?? {};
    const { rangeAdmin, splitter, replicaParts, mapRepair, placement } = installRangeParts(http, {
      opened,
      groups,
      metrics,
      hooks,
      lanes: node.lanes,
      remote: node.remote,
      meta: node.meta,
      gate: node.gate,
      nodeAuthorization,
      pools: node.pools,
      book: () => node.members.book,
      newForwarder: (leaders, timeoutMs) => node.forwarders.newForwarder(leaders, timeoutMs),
    });
    node.splitter = splitter;
    node.replicaParts = replicaParts;
    node.recovery = nodeRecovery;
    node.mapRepair = mapRepair;
    node.placement = placement;
    const { queue, watchBackend, feed } = installNodeRoutes(http, {
      opened,
      groups,
      health,
      metrics,
      service,
      queueService,
      kvPath: node.kvPath,
      lanes: node.lanes,
      forwarder: node.forwarder,
      leaseKeeper: node.leaseKeeper,
      rangeAdmin,
      cors,
      book: () => node.members.book,
      forwardQueue: (path, rawBody, signal, authorization) =>
        node.forwarders.forwardQueue(path, rawBody, signal, authorization),
      memberView: (version) => node.memberView(version),
      fetchMemberView: (client, version, signal) =>
        node.statuses.fetchMemberView(client, version, signal),
    });
    node.dash = dash;
    node.feed = feed;
    node.wire =
      wireListen === null
        ? null
        : createClientProtocolServer(config, {
            backend: node.backend(),
            watch: watchBackend,
            service: {
              leads: () => queueRuntime.leaderId() === config.id,
              forward: (path, rawBody, signal, authorization) =>
                node.forwarders.forwardQueue(path, rawBody, signal, authorization),
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
    await listenClients({
      given,
      config,
      log,
      http,
      wire: node.wire,
      wireListen,
      tls,
      servingFile: o.servingFile ?? null,
      release: async () => {
        await host.close(0);
        loopDelay[Symbol.dispose]();
        tokens?.[Symbol.dispose]();
      },
    });
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
    startRecovery(groups, rangeDirs);
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
    await this.pools.close();
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
    return nodeStatus(this.statusParts());
  }

  /**
   * What this node tells the dashboard of itself (node-status.ts), with its election timeline
   * when that changed since `timelineVersion`.
   */
  memberView(timelineVersion: number): MemberView {
    return memberView(timelineVersion, { ...this.statusParts(), dash: this.dash });
  }

  private statusParts(): StatusParts {
    return {
      host: this.host,
      runtime: this.runtime,
      kv: this.kv,
      queueRuntime: this.queueService.runtime,
      meta: this.meta,
      members: this.members,
      lanes: this.lanes,
      gate: this.gate,
      recovery: this.recovery,
    };
  }

  /** The key-value backend both fronts (HTTP and the binary protocol) serve requests through. */
  private backend(): KvBackend {
    return kvBackend({
      config: this.config,
      metrics: this.metrics,
      host: this.host,
      runtime: this.runtime,
      service: this.service,
      kvPath: this.kvPath,
      forwarder: this.forwarder,
      members: this.members,
      statuses: this.statuses,
      nodeStatus: () => this.nodeStatus(),
      leaderlessWatch: () => this.leaderless,
      recovery: () => this.recovery,
      peerAddressMismatch: () => this.peerAddressMismatch(),
    });
  }
}
