// What a node keeps for each range it runs (range-lanes.ts): its service, forwarder, watch hub,
// automatic compaction and load; and where its key-value requests go through them.

import type { Logger } from 'pino';
import { systemClock } from '../host/contracts.js';
import type { RaftRuntime } from '../host/runtime.js';
import { WatchHub } from '../kv/watch-hub.js';
import type { RangeId } from '../ranges/types.js';
import type { NodeConfig } from './config.js';
import type { Forwarder } from './forward.js';
import { KvService } from './kv-service.js';
import { newCompactor } from './leader-duties.js';
import { KV_GROUP } from './node-setup.js';
import type { RangeGroup } from './range-groups.js';
import { RangeLanes, type RangeLane } from './range-lanes.js';
import { RangeLoad } from './range-load.js';
import { RangeKvPath } from './range-kv-path.js';
import { RemoteRanges, knowledgeOf, refreshRanges } from './range-remote.js';
import { RemoteWatches } from './range-watch.js';
import type { RangeGroups } from './range-groups.js';
import type { Member } from './config.js';
import type { FeatureGate } from './feature-gate.js';
import type { MemberPools } from './member-pools.js';
import { forwardConnections } from './member-pools.js';
import type { MetaService } from './meta-service.js';
import type { NodeMetrics } from './metrics.js';
import type { RateSampler } from './dashboard.js';

/** What this node keeps for range `id` (range 0's parts are the node's own). */
export function makeLane(
  id: RangeId,
  group: RangeGroup,
  o: {
    readonly config: NodeConfig;
    readonly log: Logger;
    /** Range 0's parts: the node's own. */
    readonly range0: Pick<RangeLane, 'service' | 'forwarder' | 'watchHub' | 'compactor'>;
    /** A forwarder to the leader of the group `leaders` runs (FlotillaNode.newForwarder). */
    readonly newForwarder: (leaders: RaftRuntime) => Forwarder;
  },
): RangeLane {
  if (id === KV_GROUP)
    return {
      id,
      group,
      service: o.range0.service,
      forwarder: o.range0.forwarder,
      watchHub: o.range0.watchHub,
      compactor: o.range0.compactor,
      load: new RangeLoad({
        clock: systemClock,
        revision: () => group.range.kv.revision(),
        restores: () => group.range.restoreCount(),
      }),
    };
  const { config, log } = o;
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
    forwarder: o.newForwarder(group.runtime),
    watchHub: new WatchHub(group.range.kv),
    compactor: newCompactor(id, {
      config,
      log,
      runtime: group.runtime,
      kv: group.range.kv,
      service,
    }),
    load: new RangeLoad({
      clock: systemClock,
      revision: () => group.range.kv.revision(),
      restores: () => group.range.restoreCount(),
    }),
  };
}

/** Where the key-value requests go: the lanes of the ranges run here, the others' leaders. */
export interface RangeRoutes {
  /** Each range's service, forwarder, watch hub and compactor; routes requests by key. */
  readonly lanes: RangeLanes;
  /** The ranges this node does not run: where their requests go. */
  readonly remote: RemoteRanges;
  /** The key-value requests' path through the ranges. */
  readonly kvPath: RangeKvPath;
}

/** The routes of a node whose ranges `ranges` runs; range 0's lane is made of `range0Parts`. */
export function routeRanges(o: {
  readonly config: NodeConfig;
  readonly log: Logger;
  readonly metrics: NodeMetrics;
  readonly ranges: RangeGroups;
  readonly range0Parts: Pick<RangeLane, 'service' | 'forwarder' | 'watchHub' | 'compactor'>;
  readonly meta: MetaService;
  readonly gate: FeatureGate;
  /** The address book, as it changes. */
  readonly members: Member[];
  readonly pools: MemberPools;
  /** A forwarder to the leader of the group `leaders` runs (FlotillaNode.newForwarder). */
  readonly newForwarder: (leaders: RaftRuntime) => Forwarder;
  /** The dashboard's rate sampler, once the node is assembled. */
  readonly sampler: () => RateSampler | undefined;
}): RangeRoutes {
  const { config, log, metrics, ranges, range0Parts, meta, gate } = o;
  const { members, pools, newForwarder, sampler } = o;
  const lanes = new RangeLanes({
    ranges,
    make: (id, group) =>
      makeLane(id, group, {
        config,
        log,
        range0: range0Parts,
        newForwarder,
      }),
  });
  const range0 = ranges.group(KV_GROUP);
  if (range0 === undefined) throw new Error('Range 0 must run before the node is assembled');
  const remote = new RemoteRanges({
    selfId: config.id,
    members: members,
    send: (url, path, rawBody, signal, authorization) =>
      pools.send({ url, lane: 'ranges' }, path, rawBody, signal, authorization),
    clock: systemClock,
    timeoutMs: config.requestTimeoutMs + 1_000,
    maxInFlight: forwardConnections,
    slotWaitMs: config.maxInflightWaitMs,
    knowledge: () => knowledgeOf(lanes, meta.machine),
    isRunning: (id) => lanes.lane(id) !== undefined,
    refresh: (id, signal) => refreshRanges(lanes, meta.runtime, id, signal),
  });
  const kvPath = new RangeKvPath({
    config,
    lanes: lanes,
    metrics,
    range0,
    sampler,
    remote: remote,
    mapSize: () => meta.machine.map()?.size ?? 0,
    featureLevel: () => gate.active(),
    remoteWatches: new RemoteWatches({
      selfId: config.id,
      members: members,
      pool: (url) => pools.pool(url, 'watches'),
      leader: (id) => remote.leader(id),
      openTimeoutMs: config.requestTimeoutMs,
    }),
  });
  return { lanes, remote, kvPath };
}
