// How a node assembles the changing of its ranges' replicas (range-replicas.ts), the handing
// over of their leadership (range-transfer.ts), the giving up of ranges it is no longer a
// replica of (range-retirer.ts), and serves their routes (api/replica-routes.ts). Kept out of node.ts, which only calls this.

import type { Logger } from 'pino';
import type { JsonHttpServer } from '../api/http.js';
import { installReplicaRoutes } from '../api/replica-routes.js';
import type { Json } from '../api/validate.js';
import type { Clock } from '../host/contracts.js';
import type { RaftRuntime } from '../host/runtime.js';
import type { RangeDescriptor, RangeId } from '../ranges/types.js';
import type { ForwardAnswer, Forwarder, SendFn } from './forward.js';
import type { MetaService } from './meta-service.js';
import type { NodeRecovery } from './node-recovery.js';
import type { RangeDirs } from './range-dirs.js';
import type { RangeGroups } from './range-groups.js';
import type { RangeLanes } from './range-lanes.js';
import { RangeReplicas, type ReplicaChange } from './range-replicas.js';
import { RangeLeaderRoute } from './range-leader-route.js';
import { RangeRetirer } from './range-retirer.js';
import {
  transferRangeLeader,
  type RangeTransferOptions,
  type TransferAnswer,
} from './range-transfer.js';

export interface RangeReplicaPartsOptions {
  readonly selfId: number;
  readonly lanes: RangeLanes;
  readonly groups: RangeGroups;
  readonly dirs: RangeDirs;
  readonly meta: MetaService;
  readonly metaForwarder: Pick<Forwarder, 'forward'>;
  /** A forwarder to the leader of `runtime`'s group that waits up to `timeoutMs`. */
  readonly forwarderFor: (runtime: RaftRuntime, timeoutMs: number) => Pick<Forwarder, 'forward'>;
  /** The first group's runtime: its configuration says who the cluster's members are. */
  readonly firstGroup: RaftRuntime;
  /** Member `id`'s client URL, from the address book. */
  readonly clientUrl: (id: number) => string | undefined;
  /** One POST to `url` + `path` marked forwarded, with the caller's credential. */
  readonly forward: SendFn;
  /** One POST to `url` + `path` with this node's own credential. */
  readonly post: (
    url: string,
    path: string,
    body: string,
    signal: AbortSignal,
  ) => Promise<ForwardAnswer>;
  readonly nodeAuthorization: string | undefined;
  readonly clock: Clock;
  /** The request timeout: a change gets ten of them, a prepared replica six to be added. */
  readonly requestTimeoutMs: number;
  readonly learnerLagEntries: number;
  readonly maxKeyBytes: number;
  /** The node's recovery of lost data: a copy that has not caught up is not judged. */
  readonly recovery?: Pick<NodeRecovery, 'groupRecovering' | 'mapCurrent'>;
  /** Ranges a change of replicas or a split runs on here (shared with the splits). */
  readonly busy: Set<RangeId>;
  /** A test's fault between the range's record of its replicas and the map's (node.ts). */
  readonly beforeMapRecord?: (d: RangeDescriptor) => Promise<void>;
  readonly log: Logger;
}

export interface RangeReplicaParts {
  readonly replicas: RangeReplicas;
  readonly transfers: RangeTransferOptions;
  readonly retirer: RangeRetirer;
}

/** Builds both parts and installs their routes on `http`; the caller starts the retirer. */
export function installRangeReplicas(
  http: JsonHttpServer,
  o: RangeReplicaPartsOptions,
): RangeReplicaParts {
  const busy = o.busy;
  const moveTimeoutMs = 10 * o.requestTimeoutMs;
  const retirer = new RangeRetirer({
    selfId: o.selfId,
    groups: o.groups,
    dirs: o.dirs,
    lanes: o.lanes,
    mapped: (id) => o.meta.machine.map()?.get(id),
    ...(o.recovery === undefined
      ? {}
      : {
          recovering: (id, runtime) => o.recovery?.groupRecovering({ id, runtime }) ?? false,
          mapCurrent: () => o.recovery?.mapCurrent() ?? true,
        }),
    busy,
    clock: o.clock,
    checkEveryMs: 500,
    abandonAfterMs: 6 * o.requestTimeoutMs,
    takeUp: {
      map: () => o.meta.machine.map()?.ranges() ?? [],
      afterMs: 2 * o.requestTimeoutMs,
      run: (d) =>
        replicas.prepare(
          d.id,
          d,
          d.replicas.filter((r) => r !== o.selfId),
          o.dirs.neverRan(d.id),
        ),
    },
    log: o.log,
  });
  const members = (): number[] => {
    const c = o.firstGroup.status().conf;
    return [...c.voters, ...c.outgoing, ...c.learners];
  };
  const route = new RangeLeaderRoute({
    selfId: o.selfId,
    lanes: o.lanes,
    mapped: (id) => o.meta.machine.map()?.get(id),
    // Longer than the leader's own bound on a change, so its answer comes back rather than ours.
    forwarderFor: (runtime) => o.forwarderFor(runtime, moveTimeoutMs + o.requestTimeoutMs),
    clientUrl: o.clientUrl,
    send: o.forward,
  });
  const transfers: RangeTransferOptions = {
    selfId: o.selfId,
    route,
    // An election timeout or a few: the target is brought up to date, then campaigns at once.
    waitMs: o.requestTimeoutMs,
  };
  const replicas = new RangeReplicas({
    selfId: o.selfId,
    lanes: o.lanes,
    groups: o.groups,
    meta: o.meta,
    metaForwarder: o.metaForwarder,
    route,
    members,
    nodeAuthorization: o.nodeAuthorization,
    sendToMember: async (id: number, path: string, body: Json, signal: AbortSignal) => {
      const url = o.clientUrl(id);
      if (url === undefined) return notMember(id);
      return o.post(url, path, JSON.stringify(body), signal);
    },
    busy,
    clock: o.clock,
    moveTimeoutMs,
    prepareTimeoutMs: o.requestTimeoutMs,
    learnerLagEntries: o.learnerLagEntries,
    maxKeyBytes: o.maxKeyBytes,
    onPrepared: (id) => retirer.prepared(id),
    ...(o.beforeMapRecord === undefined ? {} : { beforeMapRecord: o.beforeMapRecord }),
    log: o.log,
  });
  installReplicaRoutes(http, {
    limits: { maxKeyBytes: o.maxKeyBytes },
    change: (range, change, w) => replicas.change(range, change, w),
    transfer: (range, to, w) => transferRangeLeader(transfers, range, to, w),
    prepare: (range, descriptor, voters) => replicas.prepare(range, descriptor, voters),
    meta: o.metaForwarder,
    recordReplicas: async (range, signal) => {
      await o.meta.recordReplicas(range, { signal });
    },
  });
  return { replicas, transfers, retirer };
}

/** The answer a member missing from the address book gives (it cannot be asked). */
function notMember(id: number): ForwardAnswer {
  return {
    status: 400,
    json: {
      error: {
        code: 'NODE_NOT_MEMBER',
        message: `Node ${id} is not in this node's address book`,
        indefinite: false,
      },
    },
  };
}

/** A change of a range's replicas asked of this node by code (the placement loop). */
export function changeReplicas(
  parts: RangeReplicaParts,
  range: RangeId,
  change: ReplicaChange,
  signal: AbortSignal,
  nodeAuthorization: string | undefined,
): Promise<RangeDescriptor> {
  return parts.replicas.change(range, change, { signal, authorization: nodeAuthorization });
}

/** A transfer of a range's leadership asked of this node by code, with its own credential. */
export function transferLeader(
  parts: RangeReplicaParts,
  range: RangeId,
  to: number,
  signal: AbortSignal,
  nodeAuthorization: string | undefined,
): Promise<TransferAnswer> {
  return transferRangeLeader(parts.transfers, range, to, {
    signal,
    authorization: nodeAuthorization,
  });
}
