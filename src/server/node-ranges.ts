// A node's parts that change its ranges (node.ts, FlotillaNode.start): splits, changes of
// replicas, the repair of the meta map and the placement loop, with their HTTP routes.

import type { JsonHttpServer } from '../api/http.js';
import { installPlacementRoutes } from '../api/placement-routes.js';
import { installRangeRoutes } from '../api/range-routes.js';
import { systemClock } from '../host/contracts.js';
import type { RaftRuntime } from '../host/runtime.js';
import type { RangeDescriptor, RangeId } from '../ranges/types.js';
import type { Member } from './config.js';
import type { FeatureGate } from './feature-gate.js';
import type { Forwarder } from './forward.js';
import type { MemberPools } from './member-pools.js';
import type { MetaService } from './meta-service.js';
import type { NodeMetrics } from './metrics.js';
import type { NodeGroups } from './node-groups.js';
import type { OpenedNode } from './node-open.js';
import { META_GROUP } from './node-setup.js';
import { PlacementNode } from './placement-node.js';
import { rangesBackend, type RangeAdminOptions } from './range-admin.js';
import type { RangeLanes } from './range-lanes.js';
import { MapRepair } from './range-map-repair.js';
import type { RemoteRanges } from './range-remote.js';
import { installRangeReplicas, type RangeReplicaParts } from './range-replica-node.js';
import { nodeRangeSplitter } from './range-splitter.js';

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

/** What changes the ranges of a node, each started and stopped with the node. */
export interface RangeParts {
  readonly rangeAdmin: RangeAdminOptions;
  readonly splitter: ReturnType<typeof nodeRangeSplitter>;
  readonly replicaParts: RangeReplicaParts;
  readonly mapRepair: MapRepair | null;
  readonly placement: PlacementNode;
}

/** Makes the range parts and installs their routes on `http`. */
export function installRangeParts(
  http: JsonHttpServer,
  o: {
    /** The configuration, log and range directories the start opened. */
    readonly opened: Pick<OpenedNode, 'config' | 'log' | 'rangeDirs'>;
    readonly groups: NodeGroups;
    readonly metrics: NodeMetrics;
    readonly hooks: NodeTestHooks;
    readonly lanes: RangeLanes;
    readonly remote: RemoteRanges;
    readonly meta: MetaService;
    readonly gate: FeatureGate;
    readonly nodeAuthorization: string | undefined;
    readonly pools: MemberPools;
    /** The address book. */
    readonly book: () => readonly Member[];
    /** A forwarder to the leader of the group `leaders` runs (FlotillaNode.newForwarder). */
    readonly newForwarder: (leaders: RaftRuntime, timeoutMs?: number) => Forwarder;
  },
): RangeParts {
  const { config, log, rangeDirs } = o.opened;
  const { ranges, metaRuntime, nodeRecovery } = o.groups;
  const { runtime, sessions: kvSessions } = o.groups.range0;
  const metaLog = o.groups.groupLog(META_GROUP);
  const {
    metrics,
    hooks,
    lanes,
    remote,
    meta,
    gate,
    nodeAuthorization,
    pools,
    book,
    newForwarder,
  } = o;
  // Ranges a change of replicas or a split runs on here: one at a time per range.
  const busy = new Set<RangeId>();
  const rangeAdmin: RangeAdminOptions = {
    selfId: config.id,
    busy,
    ...(hooks.beforeSplitMapRecord === undefined
      ? {}
      : { beforeMapRecord: hooks.beforeSplitMapRecord }),
    lanes: lanes,
    remote: remote,
    meta: meta,
    metaForwarder: newForwarder(metaRuntime),
    clock: systemClock,
    maxKeyBytes: config.maxKeyBytes,
    recordTimeoutMs: config.requestTimeoutMs,
    gate: gate,
  };
  installRangeRoutes(http, rangesBackend(rangeAdmin));
  const splitter = nodeRangeSplitter({
    thresholds: {
      keys: config.rangeSplitKeys,
      bytes: config.rangeSplitBytes,
      writesPerSec: config.rangeSplitWritesPerSec,
      loadWindowMs: config.rangeSplitLoadWindowMs,
      cooldownMs: config.rangeSplitCooldownMs,
    },
    lanes: lanes,
    admin: rangeAdmin,
    authorization: nodeAuthorization,
    // Allocation, the split and its record, each bounded by the request timeout.
    timeoutMs: 3 * config.requestTimeoutMs,
    log,
  });
  const replicaParts = installRangeReplicas(http, {
    selfId: config.id,
    lanes: lanes,
    groups: ranges,
    dirs: rangeDirs,
    meta: meta,
    metaForwarder: newForwarder(metaRuntime),
    forwarderFor: (rt, timeoutMs) => newForwarder(rt, timeoutMs),
    firstGroup: runtime,
    clientUrl: (id) => book().find((m) => m.id === id)?.client,
    forward: (url, path, body, signal, authorization) =>
      pools.send({ url, lane: 'groups' }, path, body, signal, authorization),
    post: (url, path, body, signal) =>
      pools.send({ url, lane: 'member' }, path, body, signal, nodeAuthorization),
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
  const mapRepair =
    hooks.mapRepair === false
      ? null
      : new MapRepair({
          selfId: config.id,
          lanes: lanes,
          meta: meta,
          metaForwarder: newForwarder(metaRuntime),
          nodeAuthorization,
          busy,
          clock: systemClock,
          checkEveryMs: mapRepairEveryMs,
          leaderCheckMs: 100,
          recordTimeoutMs: config.requestTimeoutMs,
          // Past the time a change forwarded after a hand-off takes to reach the new leader.
          strayLearnerGraceMs: 2 * config.requestTimeoutMs,
          log: metaLog,
        });
  const placement = new PlacementNode({
    config,
    meta: meta,
    kv: runtime,
    lanes: lanes,
    book,
    removed: (id) => kvSessions.directory.isRemoved(id),
    request: (url, method, path, body, signal) => pools.request(url, method, path, body, signal),
    metaForward: newForwarder(metaRuntime),
    clock: systemClock,
    log: metaLog,
    onStep: (step, outcome) => metrics.placementSteps.inc({ kind: step.kind, outcome }),
  });
  installPlacementRoutes(http, placement.backend());
  return { rangeAdmin, splitter, replicaParts, mapRepair, placement };
}
