// The meta group in the simulator (docs/DESIGN.md, "Ranges in a node"): with `meta` on, every
// simulated node runs the product's meta group (group META_GROUP, MetaStateMachine inside the
// session layer, on the node's one host and disk) with the product's MetaService (the bootstrap)
// and MapRepair. What a node sends to the meta group's leader, the product sends over HTTP to
// that member's meta routes (`onMetaLeader` in forward.ts); here the forwarder below hands
// the same body to the leader's MetaService as the route would, across the simulated links: a
// leader that is down or cut off from the sender is unreachable, and an answer that cannot
// cross back is lost (indefinite, as a dropped connection is).
//
// The checks: every map a node's meta machine applies tiles the key space and never takes a
// range's generation back (within one incarnation: a restarted node replays its log from older
// maps), and at the end of a run the map agrees with the ranges' own newest descriptors.

import {
  metaAllocatePath,
  metaRecordSplitPath,
  parseDescriptor,
  renderDescriptor,
} from '../api/range-routes.js';
import { metaRecordReplicasPath } from '../api/replica-routes.js';
import { asObject, onlyFields } from '../api/validate.js';
import { FlotillaError } from '../base/errors.js';
import { compareBytes } from '../kv/kv-store.js';
import { checkRangeMap, describeRange, type RangeMap } from '../ranges/range-map.js';
import type { RangeDescriptor, RangeId } from '../ranges/types.js';
import type { ForwardAnswer, Forwarder } from '../server/forward.js';
import type { MetaService } from '../server/meta-service.js';
import type { MapRecordOptions } from '../server/range-admin.js';
import { onMetaLeader } from '../server/forward.js';
import type { RaftRuntime } from '../host/runtime.js';

/** The meta routes' limit on a descriptor's bounds (the simulated keys are short). */
const META_ROUTE_LIMITS = { maxKeyBytes: 1_024 };

/** Where a node's request to the meta group's leader can go. */
export interface MetaReach {
  /** Node `to`'s meta service when `from` can reach it now (up, running it, not cut off). */
  metaOf(from: number, to: number): MetaService | null;
}

/**
 * A node's way to the meta group's leader, as the product's Forwarder: null when this node
 * leads the group or knows no leader (the local call then refuses as the product's does), else
 * the leader's answer, or a FORWARD_FAILED error when it cannot be reached or its answer is lost.
 */
export class SimMetaForwarder implements Pick<Forwarder, 'forward'> {
  constructor(
    private readonly selfId: number,
    private readonly runtime: RaftRuntime,
    private readonly reach: MetaReach,
  ) {}

  async forward(path: string, rawBody: string, signal: AbortSignal): Promise<ForwardAnswer | null> {
    const leader = this.runtime.leaderId();
    if (leader === this.selfId || leader === 0) return null;
    const meta = this.reach.metaOf(this.selfId, leader);
    if (meta === null)
      throw new FlotillaError(
        'FORWARD_FAILED',
        `Node ${this.selfId} cannot reach the meta group's leader, node ${leader}`,
        false,
      );
    // The leader's promises die with it: the caller's bound ends the wait.
    const json = await untilAborted(metaRoute(meta, path, rawBody, signal), signal);
    if (this.reach.metaOf(this.selfId, leader) === null)
      throw new FlotillaError(
        'FORWARD_FAILED',
        `Node ${leader}'s answer to node ${this.selfId} was lost`,
        true,
      );
    return { status: 200, json };
  }
}

/**
 * Records a range's new replicas in the map as the product's move does once it is done
 * (RangeReplicas, range-replicas.ts): on the meta group's leader, here or through the
 * forwarder. One attempt: the mover repeats its last step until it is taken.
 */
export async function recordReplicasInMap(
  o: MapRecordOptions,
  d: RangeDescriptor,
  signal: AbortSignal,
): Promise<void> {
  const body = { range: renderDescriptor(d, 'base64') };
  await onMetaLeader(
    o.metaForwarder,
    metaRecordReplicasPath,
    body,
    { signal, authorization: undefined },
    async () => {
      await o.meta.recordReplicas(d, { signal });
      return { ok: true };
    },
  );
}

/** What the product's meta routes do with a body (range-routes.ts, replica-routes.ts). */
async function metaRoute(
  meta: MetaService,
  path: string,
  rawBody: string,
  signal: AbortSignal,
): Promise<unknown> {
  const o = asObject(JSON.parse(rawBody) as unknown);
  switch (path) {
    case metaAllocatePath:
      onlyFields(o, []);
      return { id: await meta.allocate({ signal }) };
    case metaRecordSplitPath: {
      onlyFields(o, ['left', 'right']);
      const left = parseDescriptor(o['left'], 'left', META_ROUTE_LIMITS);
      const right = parseDescriptor(o['right'], 'right', META_ROUTE_LIMITS);
      await meta.recordSplit(left, right, { signal });
      return { ok: true };
    }
    case metaRecordReplicasPath: {
      onlyFields(o, ['range']);
      await meta.recordReplicas(parseDescriptor(o['range'], 'range', META_ROUTE_LIMITS), {
        signal,
      });
      return { ok: true };
    }
    default:
      throw new Error(`the simulated meta routes have no ${path}`);
  }
}

/** `work`'s outcome, or FORWARD_FAILED once `signal` aborts; `work` is always handled. */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void =>
      reject(new FlotillaError('FORWARD_FAILED', 'the meta leader did not answer in time', true));
    // Handlers first: a work begun under an aborted signal rejects too, and must not go unseen.
    work.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * Null when `map`, just applied by a node's meta machine, tiles the key space and holds no
 * range at a lower generation than `before` (the map that node applied last in this
 * incarnation) held it; else what is wrong. A range may leave the map only by a split of the
 * range before it: its id stays once recorded.
 */
export function metaMapProblem(map: RangeMap, before: RangeMap | null): string | null {
  const problems = checkRangeMap(map);
  if (problems.length > 0)
    return `map version ${map.version} does not tile the key space: ${problems.slice(0, 3).join('; ')}`;
  if (before === null) return null;
  for (const old of before.ranges()) {
    const now = map.get(old.id);
    if (now === undefined)
      return `map version ${map.version} lost range ${old.id}, held at version ${before.version} as ${describeRange(old)}`;
    if (now.generation < old.generation)
      return `map version ${map.version} holds ${describeRange(now)}, at a lower generation than version ${before.version}'s ${describeRange(old)}`;
  }
  return null;
}

/**
 * Null when `map` holds exactly the ranges of `newest` (each range's newest descriptor, range
 * 0's replicas filled in with its voters) with the same bounds, generation and replicas; else
 * the first difference.
 */
export function metaAgreementProblem(
  map: RangeMap | null,
  newest: ReadonlyMap<RangeId, RangeDescriptor>,
): string | null {
  if (map === null) return 'no range map (never bootstrapped)';
  for (const d of newest.values()) {
    const held = map.get(d.id);
    if (held === undefined) return `the map lacks ${describeRange(d)}`;
    if (!sameDescriptor(held, d))
      return `the map holds ${describeRange(held)}, the range's own log ${describeRange(d)}`;
  }
  for (const d of map.ranges())
    if (!newest.has(d.id)) return `the map holds ${describeRange(d)}, which no range runs as`;
  return null;
}

function sameDescriptor(a: RangeDescriptor, b: RangeDescriptor): boolean {
  const sameEnd =
    a.end === null || b.end === null ? a.end === b.end : compareBytes(a.end, b.end) === 0;
  return (
    a.generation === b.generation &&
    compareBytes(a.start, b.start) === 0 &&
    sameEnd &&
    a.replicas.length === b.replicas.length &&
    a.replicas.every((r, i) => r === b.replicas[i])
  );
}
