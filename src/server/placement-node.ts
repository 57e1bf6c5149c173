// The placement loop in a node (docs/DESIGN.md, "Placement"): what it reads (the meta map and
// drain marks as this node applied them, the key-value group's voters, the ranges this node
// runs), what carries its steps out (the range routes, over HTTP, with this node's own
// credential), and the backend of the placement routes (status, drain, undrain).
//
// Every member builds one; only the meta group's leader runs it (`leads`), so one node of the
// cluster at a time plans and steps. A new leader starts from the map as it applied it, with no
// memory of its predecessor's back-offs.

import type { Logger } from 'pino';
import { FlotillaError } from '../base/errors.js';
import type { Clock } from '../host/contracts.js';
import type { RaftRuntime } from '../host/runtime.js';
import type {
  PlacementBackend,
  PlacementResponse,
  PlacementStepJson,
} from '../api/placement-routes.js';
import { errorFromWire } from '../api/wire-codec.js';
import type { RangeMap } from '../ranges/range-map.js';
import { FIRST_ALLOCATED_RANGE, FIRST_RANGE, type RangeId } from '../ranges/types.js';
import type { Member, NodeConfig } from './config.js';
import type { MetaService } from './meta-service.js';
import {
  PlacementLoop,
  type PlacementExecutor,
  type PlacementStep,
  type PlacementLoopStatus,
} from './placement-loop.js';
import type { RangeLanes } from './range-lanes.js';
import { unreachable } from './range-replicas.js';

/** One request from this node to a member's client port, with this node's own credential. */
export type MemberRequest = (
  url: string,
  method: 'GET' | 'POST',
  path: string,
  body: string | undefined,
  signal: AbortSignal,
) => Promise<{ status: number; json: unknown }>;

export interface PlacementNodeOptions {
  readonly config: Pick<
    NodeConfig,
    'id' | 'placement' | 'placementEveryMs' | 'placementStepTimeoutMs' | 'replicasPerRange'
  >;
  readonly meta: MetaService;
  /** The key-value group (range 0): its voters are the members ranges are placed on. */
  readonly kv: RaftRuntime;
  readonly lanes: RangeLanes;
  /** The members' addresses, current. */
  readonly book: () => readonly Member[];
  /** Whether node `id` was removed from the cluster for good (the replicated directory). */
  readonly removed: (id: number) => boolean;
  readonly request: MemberRequest;
  readonly metaForward: PlacementBackend['meta'];
  readonly clock: Clock;
  readonly log: Logger;
  readonly onStep?: (step: PlacementStep, outcome: 'done' | 'failed') => void;
}

/** The range routes a step goes through (served by the range's leader; any node forwards). */
export const placementRoutes = {
  move: '/v1/ranges/move',
  /** `{range, add}` or `{range, remove}`: one replica added or removed. */
  replicas: '/v1/ranges/replicas',
  /** `{range, to}`: the range's leadership handed to its voter `to`. */
  transfer: '/v1/ranges/transfer-leadership',
} as const;

export class PlacementNode {
  readonly loop: PlacementLoop;

  constructor(private readonly o: PlacementNodeOptions) {
    const { config, meta } = o;
    this.loop = new PlacementLoop({
      clock: o.clock,
      enabled: config.placement === 'on',
      everyMs: config.placementEveryMs,
      replicasPerRange: config.replicasPerRange,
      stepTimeoutMs: config.placementStepTimeoutMs,
      leads: () =>
        meta.runtime.isLeader() && meta.runtime.appliedIndex() >= meta.runtime.status().commit,
      leader: () => meta.runtime.leaderId(),
      map: () => meta.machine.map(),
      draining: () => meta.machine.draining(),
      forced: () => meta.machine.forced(),
      members: () => o.kv.status().conf.voters,
      localGeneration: (id) => o.lanes.lane(id)?.group.range.descriptor().generation,
      leaders: (signal) => this.leaders(signal),
      tidy: () => this.forgetRemoved(),
      executor: httpExecutor(
        {
          nodesOf: (range) => this.nodesOf(range),
          url: (id) => o.book().find((m) => m.id === id)?.client,
        },
        o.request,
      ),
      log: o.log,
      ...(o.onStep === undefined ? {} : { onStep: (s, outcome) => o.onStep?.(s, outcome) }),
    });
  }

  start(): void {
    this.loop.start();
  }

  stop(): void {
    this.loop.stop();
  }

  backend(): PlacementBackend {
    return {
      meta: this.o.metaForward,
      status: () => this.status(),
      mark: (op, node, m) => this.mark(op, node, m),
    };
  }

  status(): PlacementResponse {
    return renderStatus(this.loop.status(), this.o.clock.nowMs());
  }

  /**
   * Drains a member (refused for one that is not a member, or when no member would be left to
   * hold ranges) or undrains a node; runs on the meta group's leader. A drain that too few
   * members are left for is marked all the same, and the answer's `drainBlocked` says it
   * waits; `force` lets it take ranges below their replication factor.
   */
  private async mark(
    op: 'drain' | 'undrain',
    node: number,
    { signal, force }: { readonly signal: AbortSignal; readonly force: boolean },
  ): Promise<PlacementResponse> {
    if (op === 'drain') {
      const c = this.o.kv.status().conf;
      const members = new Set([...c.voters, ...c.outgoing, ...c.learners]);
      if (!members.has(node))
        throw new FlotillaError(
          'MEMBERSHIP_UNKNOWN_MEMBER',
          `Node ${node} is not a member (members: ${[...members].sort((a, b) => a - b).join(', ')}): only a member can be drained`,
        );
      const draining = new Set([...this.o.meta.machine.draining(), node]);
      if (c.voters.every((v) => draining.has(v)))
        throw new FlotillaError(
          'INVALID_REQUEST',
          `Draining node ${node} would leave no member to hold ranges (draining: ${[...draining].sort((a, b) => a - b).join(', ')})`,
        );
    }
    await this.o.meta.mark(op, node, { signal, force });
    this.o.log.info(
      { node, force },
      `placement: node ${node} ${op === 'drain' ? (force ? 'drained, forced' : 'drained') : 'undrained'}`,
    );
    const stalled = this.loop.status().drainBlocked;
    if (stalled !== null)
      this.o.log.warn({ drainBlocked: stalled }, `placement: ${stalled.message}`);
    // Start on it now rather than at the next period.
    void this.loop.check();
    return this.status();
  }

  /**
   * Clears the drain marks of removed members: a member is drained, then removed, and its mark
   * would otherwise stay for good (shown in the status, counted against the meta group's
   * limit on marks). Its id can never come back, so nothing is lost.
   */
  private async forgetRemoved(): Promise<void> {
    for (const node of this.o.meta.machine.draining()) {
      if (!this.o.removed(node)) continue;
      await this.o.meta.mark('undrain', node, { timeoutMs: this.o.config.placementStepTimeoutMs });
      this.o.log.info({ node }, `placement: removed member ${node} is no longer marked draining`);
    }
  }

  /** Range `range`'s leader if this node runs it and knows one, then its replicas in the map. */
  private nodesOf(range: RangeId): number[] {
    const leader = this.o.lanes.lane(range)?.group.runtime.leaderId() ?? 0;
    const replicas = this.o.meta.machine.map()?.get(range)?.replicas ?? [];
    return [...(leader > 0 ? [leader] : []), ...replicas.filter((r) => r !== leader)];
  }

  /**
   * Each range's leader: as this node knows it for the ranges it runs, and as the other members
   * say (their GET /v1/ranges) for the rest. A member that does not answer leaves its ranges
   * unknown, and leaderPlan leaves a range it knows no leader of alone.
   */
  private async leaders(signal: AbortSignal): Promise<ReadonlyMap<RangeId, number>> {
    const leaders = new Map<RangeId, number>();
    for (const lane of this.o.lanes.all()) {
      const l = lane.group.runtime.leaderId();
      if (l > 0) leaders.set(lane.id, l);
    }
    const map = this.o.meta.machine.map();
    if (map === null) return leaders;
    const unknown = map.ranges().filter((d) => !leaders.has(d.id));
    if (unknown.length === 0) return leaders;
    const holders = new Set(unknown.flatMap((d) => d.replicas));
    const others = this.o.book().filter((m) => m.id !== this.o.config.id && holders.has(m.id));
    // Only their own figures are read (the leader each knows), not the map: no read round on
    // the meta group for it, and a member cut off from that group's quorum still answers.
    const path = '/v1/ranges?encoding=base64&consistency=serializable';
    const answers = await Promise.allSettled(
      others.map((m) => this.o.request(m.client, 'GET', path, undefined, signal)),
    );
    for (const a of answers) {
      if (a.status !== 'fulfilled' || a.value.status !== 200) continue;
      for (const [id, l] of leadersIn(a.value.json)) {
        const d = map.get(id);
        if (d !== undefined && d.replicas.includes(l) && !leaders.has(id)) leaders.set(id, l);
      }
    }
    return leaders;
  }
}

/** The ranges from 3 on with a replica on node `id` in `map`, ascending (none without a map). */
export function heldRanges(map: RangeMap | null, id: number): RangeId[] {
  if (map === null) return [];
  return map
    .ranges()
    .filter((d) => d.id >= FIRST_ALLOCATED_RANGE && d.replicas.includes(id))
    .map((d) => d.id)
    .sort((a, b) => a - b);
}

/**
 * The ranges of `map` node `id` holds, ascending: those whose descriptor names it, and range 0
 * when `inRangeZero` (it is a voter or learner of the key-value group). Range 0's descriptor
 * keeps the replicas the map was bootstrapped with: range 0 follows the cluster's membership,
 * not the map, so a member that joined later holds it though its descriptor does not say so.
 */
export function rangesInMap(map: RangeMap | null, id: number, inRangeZero: boolean): RangeId[] {
  const ids = (map?.ranges() ?? [])
    .filter((d) => (d.id === FIRST_RANGE ? inRangeZero : d.replicas.includes(id)))
    .map((d) => d.id);
  return ids.sort((a, b) => a - b);
}

/** The (range, leader) pairs of a GET /v1/ranges answer; anything malformed is skipped. */
function leadersIn(json: unknown): [RangeId, number][] {
  const ranges = (json as { ranges?: unknown } | null)?.ranges;
  if (!Array.isArray(ranges)) return [];
  const out: [RangeId, number][] = [];
  for (const r of ranges as unknown[]) {
    const { id, leader } = (r ?? {}) as { id?: unknown; leader?: unknown };
    if (typeof id === 'number' && typeof leader === 'number' && leader > 0) out.push([id, leader]);
  }
  return out;
}

/** Where a change of a range is sent: node ids, best first, and their client URLs. */
export interface ExecutorTargets {
  /** The range's leader if known, then its replicas as the map says. */
  nodesOf(range: RangeId): readonly number[];
  url(id: number): string | undefined;
}

/** Nodes one step tries at most: the range's replicas and leaders they name, with room. */
const hopsMax = 8;

/**
 * Steps as requests to the range routes of a node that holds the range (its leader first when
 * known; a replica forwards a change to its leader), with this node's own credential. A node
 * that holds no replica (the map this node read is behind) answers NOT_LEADER naming one, and
 * a node that does not answer is passed over: the next is tried, up to `hopsMax`. When none
 * answered, the step fails UNAVAILABLE naming the node and what the connection did (refused,
 * or dropped mid-step, which leaves the step half done: a retry resumes it), not the HTTP
 * client's bare message. A transfer of a range's leadership answers once the target leads.
 */
export function httpExecutor(targets: ExecutorTargets, request: MemberRequest): PlacementExecutor {
  const post = async (
    range: RangeId,
    path: string,
    body: Record<string, number>,
    signal: AbortSignal,
    what: string,
  ) => {
    const queue = [...targets.nodesOf(range)];
    const tried = new Set<number>();
    let last: Error = new FlotillaError('NO_LEADER', `No node is known to hold range ${range}`);
    for (let hop = 0; hop < hopsMax; hop++) {
      const id = queue.find((n) => !tried.has(n));
      if (id === undefined) break;
      tried.add(id);
      const url = targets.url(id);
      if (url === undefined) continue;
      let r: { status: number; json: unknown };
      try {
        r = await request(url, 'POST', path, JSON.stringify(body), signal);
      } catch (err) {
        if (signal.aborted) throw err;
        last = unreachable(id, `${what} (at ${url})`, err);
        continue;
      }
      if (r.status === 200) return;
      const e = errorFromWire((r.json as { error?: unknown } | null)?.error, true);
      if (e.code !== 'NOT_LEADER') throw e;
      last = e;
      if (e.leader !== undefined && e.leader > 0 && !tried.has(e.leader)) queue.unshift(e.leader);
    }
    throw last;
  };
  return {
    move: (range, from, to, signal) =>
      post(
        range,
        placementRoutes.move,
        { range, from, to },
        signal,
        `move range ${range}'s replica from node ${from} to node ${to}`,
      ),
    addReplica: (range, to, signal) =>
      post(
        range,
        placementRoutes.replicas,
        { range, add: to },
        signal,
        `add a replica of range ${range} on node ${to}`,
      ),
    removeReplica: (range, from, signal) =>
      post(
        range,
        placementRoutes.replicas,
        { range, remove: from },
        signal,
        `remove range ${range}'s replica from node ${from}`,
      ),
    transferLeader: (range, to, signal) =>
      post(
        range,
        placementRoutes.transfer,
        { range, to },
        signal,
        `hand range ${range}'s leadership to node ${to}`,
      ),
  };
}

function stepJson(s: PlacementStep): PlacementStepJson {
  switch (s.kind) {
    case 'add':
      return { kind: s.kind, range: s.range, to: s.to };
    case 'remove':
      return { kind: s.kind, range: s.range, from: s.from };
    case 'move':
    case 'transfer':
      return { kind: s.kind, range: s.range, from: s.from, to: s.to };
  }
}

/** The loop's status as the API shows it; `nowMs` on the loop's clock. */
export function renderStatus(s: PlacementLoopStatus, nowMs: number): PlacementResponse {
  return {
    enabled: s.enabled,
    active: s.active,
    leader: s.leader,
    replicasPerRange: s.replicasPerRange,
    draining: [...s.draining],
    forced: [...s.forced],
    drainBlocked:
      s.drainBlocked === null ? null : { ...s.drainBlocked, nodes: [...s.drainBlocked.nodes] },
    nodes: [...s.nodes],
    target: s.target,
    phase: s.phase,
    pending: s.pending,
    ready: s.ready,
    current: s.current === null ? null : stepJson(s.current),
    running: s.running.map(stepJson),
    last:
      s.last === null
        ? null
        : {
            step: stepJson(s.last.step),
            outcome: s.last.outcome,
            ...(s.last.error === undefined ? {} : { error: s.last.error }),
            atMs: s.last.atMs,
            tookMs: s.last.tookMs,
          },
    blocked: [...s.blocked],
    backingOff: s.backingOff.map((b) => ({
      range: b.range,
      failures: b.failures,
      retryInMs: Math.max(0, b.retryAtMs - nowMs),
    })),
    stepsDone: s.stepsDone,
    stepsFailed: s.stepsFailed,
  };
}
