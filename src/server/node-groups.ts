// A node's Raft groups: the host they run on, its transport and events wired to the node's
// metrics, logs and dashboard, and the groups started on it (node.ts, FlotillaNode.start): range
// 0 and the ranges split off it, the queue group and the meta group.

import type { Logger } from 'pino';
import { APPLY_LIMITS } from '../base/limits.js';
import { monotonicClock, systemClock } from '../host/contracts.js';
import { Host } from '../host/host.js';
import type { RaftRuntime } from '../host/runtime.js';
import type { RuntimeEvent } from '../host/runtime-options.js';
import { SessionMachine, defaultSessionLimits } from '../host/sessions.js';
import type { TraceHook } from '../host/trace.js';
import { QueueStateMachine } from '../queue/index.js';
import { MetaStateMachine } from '../ranges/meta-machine.js';
import { RateSampler } from './dashboard.js';
import { readIdentity, writeIdentity } from './data-dir.js';
import { logRuntimeEvent } from './logging.js';
import { HeartbeatTimer } from './loop-health.js';
import type { NodeMetrics } from './metrics.js';
import type { OpenedNode } from './node-open.js';
import { NodeRecovery, nodeRecoveryParts } from './node-recovery.js';
import {
  KV_GROUP,
  META_GROUP,
  QUEUE_GROUP,
  groupSettings,
  openGroupStorage,
} from './node-setup.js';
import type { RangeDirs } from './range-dirs.js';
import { RangeGroups, type RangeGroup } from './range-groups.js';
import { Timeline } from './timeline.js';

/** Election timeline lines each node keeps (both groups together). */
const timelineEntries = 256;

/** What the dashboard reads of a node besides its status (DESIGN.md, "The dashboard"). */
export interface DashboardParts {
  readonly timeline: Timeline;
  readonly sampler: RateSampler;
  /** When a message from the key-value group's leader last arrived (performance.now()), or 0. */
  leaderContactMs: number;
}

/** The groups running, and what the rest of the node reads of them. */
export interface NodeGroups {
  readonly host: Host;
  /** Range 0 and the ranges split off it that this node replicates. */
  readonly ranges: RangeGroups;
  readonly range0: RangeGroup;
  readonly queueRuntime: RaftRuntime;
  readonly queueMachine: QueueStateMachine;
  readonly metaRuntime: RaftRuntime;
  readonly metaMachine: MetaStateMachine;
  readonly nodeRecovery: NodeRecovery;
  readonly dash: DashboardParts;
  /** The log a group's lines go to: the node's own for the key-value group. */
  readonly groupLog: (group: number) => Logger;
  /** Sets what a group stopped by a storage failure ends (its range's watches). */
  readonly bindGroupStopped: (fn: (group: number) => void) => void;
}

/** Starts the host and the node's groups on the storage `opened` opened; closes it on failure. */
export async function startGroups(
  opened: OpenedNode,
  metrics: NodeMetrics,
  o: {
    /** Called at each step of a write's path (host/trace.ts), for bench/trace. */
    trace?: TraceHook;
    /** The Raft group whose writes `trace` follows. */
    traceGroup?: typeof KV_GROUP | typeof QUEUE_GROUP;
    /** Planted defect (FlotillaNode.start): ranges recovered as full members. */
    unsafeSkipRangeRecovery?: boolean;
  },
): Promise<NodeGroups> {
  const { config, log, identity, recovery, rangeDirs, storage, queueStorage, metaStorage } = opened;
  const { transport } = opened.peers;
  const { limits } = config;
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
  return {
    host,
    ranges,
    range0,
    queueRuntime,
    queueMachine,
    metaRuntime,
    metaMachine,
    nodeRecovery,
    dash,
    groupLog,
    bindGroupStopped: (fn) => (groupStopped = fn),
  };
}

/**
 * Starts the recovery of lost data (node-recovery.ts) over every group of `g`, the ranges as
 * they come and go; `rangeDirs` says which ranges are prepared here.
 */
export function startRecovery(g: NodeGroups, rangeDirs: RangeDirs): void {
  const { nodeRecovery, ranges, queueRuntime, metaRuntime, metaMachine } = g;
  nodeRecovery.start(
    nodeRecoveryParts({
      ranges,
      others: [
        { id: QUEUE_GROUP, runtime: queueRuntime },
        { id: META_GROUP, runtime: metaRuntime },
      ],
      metaGroup: META_GROUP,
      metaMachine,
      dirs: rangeDirs,
    }),
  );
}
