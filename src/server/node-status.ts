// What a node says of itself: its status (`/v1/status`), its view for the dashboard, and the
// gauges of its metrics that read the same.

import type { MemberView } from '../api/dashboard-routes.js';
import type { NodeStatus, SnapshotTransferStatus } from '../api/types.js';
import type { Host } from '../host/host.js';
import type { RaftRuntime } from '../host/runtime.js';
import type { KvStateMachine } from '../kv/machine.js';
import type { TcpTransport as Transport } from '../transport/index.js';
import type { FeatureGate } from './feature-gate.js';
import type { NodeMembers } from './member-node.js';
import type { MetaService } from './meta-service.js';
import type { NodeMetrics } from './metrics.js';
import type { DashboardParts } from './node-groups.js';
import type { NodeRecovery } from './node-recovery.js';
import { KV_GROUP, QUEUE_GROUP } from './node-setup.js';
import { rangesInMap } from './placement-node.js';
import type { RangeLanes } from './range-lanes.js';

/** What a node's status is read from. */
export interface StatusParts {
  readonly host: Host;
  /** Range 0's runtime and machine. */
  readonly runtime: RaftRuntime;
  readonly kv: KvStateMachine;
  readonly queueRuntime: RaftRuntime;
  readonly meta: MetaService;
  readonly members: NodeMembers;
  readonly lanes: RangeLanes;
  readonly gate: FeatureGate;
  /** Null until the node is assembled. */
  readonly recovery: NodeRecovery | null;
}

/** Both groups' snapshot transfers in progress, each tagged with its group. */
function snapshotTransfersOf(kv: RaftRuntime, queue: RaftRuntime): SnapshotTransferStatus[] {
  return [
    ...kv.snapshotTransfers().map((t) => ({ group: KV_GROUP, ...t })),
    ...queue.snapshotTransfers().map((t) => ({ group: QUEUE_GROUP, ...t })),
  ];
}

export function nodeStatus(o: StatusParts): NodeStatus {
  const s = o.runtime.status();
  const q = o.queueRuntime.status();
  const r = o.recovery?.status();
  return {
    id: s.id,
    pid: process.pid,
    role: s.role,
    term: s.term,
    leader: s.leader,
    commit: s.commit,
    applied: o.runtime.appliedIndex(),
    lastIndex: s.lastIndex,
    firstIndex: s.firstIndex,
    revision: o.kv.revision(),
    // Any group: the data directory is marked recovered only when every one has caught up.
    recovering:
      r?.recovering === true ||
      s.recovery === 'recovering' ||
      q.recovery === 'recovering' ||
      o.meta.runtime.status().recovery === 'recovering',
    recoveringGroups: r?.recoveringGroups ?? [],
    recoveryWaitingFor: r?.waitingFor ?? [],
    rangesInMap: rangesInMap(
      o.meta.machine.map(),
      s.id,
      s.voters.includes(s.id) || s.learners.includes(s.id),
    ),
    stoppedGroups: o.host.stoppedGroups(),
    members: [...o.members.book],
    voters: s.voters,
    learners: s.learners,
    replication: o.members.membership.replication(),
    snapshotTransfers: snapshotTransfersOf(o.runtime, o.queueRuntime),
    ranges: o.lanes.count(),
    featureLevel: {
      node: o.gate.level,
      active: o.gate.active(),
      members: o.gate.members(),
    },
    queueGroup: {
      role: q.role,
      term: q.term,
      leader: q.leader,
      commit: q.commit,
      applied: o.queueRuntime.appliedIndex(),
    },
  };
}

/**
 * What this node tells the dashboard of itself: its status, how long since it heard from its
 * leader, what it has in flight to each follower when it leads, and its election timeline
 * when that changed since `timelineVersion`.
 */
export function memberView(
  timelineVersion: number,
  o: StatusParts & { readonly dash: DashboardParts | null },
): MemberView {
  const s = o.runtime.status();
  const inflight: Record<string, number> = {};
  if (s.role === 'leader')
    for (const [id, p] of Object.entries(s.progress))
      if (Number(id) !== s.id) inflight[id] = Math.max(0, p.next - 1 - p.match);
  const t = o.dash?.timeline.entriesAfter(0);
  return {
    status: nodeStatus(o),
    leaderContactAgoMs:
      s.role === 'leader' || !o.dash?.leaderContactMs
        ? null
        : Math.round(performance.now() - o.dash.leaderContactMs),
    inflight,
    timeline:
      t === undefined || t.version === timelineVersion
        ? null
        : { version: t.version, entries: t.entries },
  };
}

/** Binds the metrics' gauges of the node's status, membership, history and peer traffic. */
export function bindStatusMetrics(
  metrics: NodeMetrics,
  o: Pick<StatusParts, 'runtime' | 'kv' | 'queueRuntime' | 'members' | 'lanes'> & {
    readonly transport: Transport;
  },
): void {
  const { runtime, kv, queueRuntime, members, lanes, transport } = o;
  metrics.bindMembership(() => ({
    status: runtime.status(),
    replication: members.membership.replication(),
  }));
  metrics.bindStatus(() => ({ ...runtime.status(), applied: runtime.appliedIndex() }));
  metrics.bindSnapshotTransfers(() => ({
    transfers: snapshotTransfersOf(runtime, queueRuntime),
    counters: [runtime, queueRuntime].map((rt, group) => ({ group, ...rt.snapshotCounters() })),
  }));
  metrics.bindRanges(() => lanes.count());
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
}
