// The placement routes (docs/API.md, "Placement"): what the placement loop is doing, and
// draining a node (its replicas of ranges split off range 0 move to the other members) or
// undoing it. The loop and the drain marks live on the meta group's leader: every request is
// forwarded there. All need the admin role when authentication is on (auth.ts: a path no
// table lists is admin's).

import { FlotillaError } from '../base/errors.js';
import type { JsonHttpServer } from './http.js';
import { forwarded, type KvBackend } from './routes.js';
import { asObject, onlyFields, optBool, optInt } from './validate.js';

export const placementPath = '/v1/placement';
export const drainPath = '/v1/nodes/drain';
export const undrainPath = '/v1/nodes/undrain';

/** A step of the placement loop, as the API shows it. */
export interface PlacementStepJson {
  readonly kind: 'add' | 'remove' | 'move' | 'transfer';
  readonly range: number;
  /** The node losing the replica (remove, move) or the leadership (transfer). */
  readonly from?: number;
  /** The node gaining the replica (add, move) or the leadership (transfer). */
  readonly to?: number;
}

/** `GET /v1/placement`, `POST /v1/nodes/drain`, `POST /v1/nodes/undrain`: the loop's state. */
export interface PlacementResponse {
  /** The `placement` setting of the answering node (the meta group's leader). */
  readonly enabled: boolean;
  /** Whether the answering node runs the loop now (it leads the meta group). */
  readonly active: boolean;
  /** The meta group's leader (0: none known). */
  readonly leader: number;
  readonly replicasPerRange: number;
  /** The nodes being drained, ascending. */
  readonly draining: readonly number[];
  /** The drains forced (`force: true`), ascending: these may leave ranges with fewer replicas. */
  readonly forced: readonly number[];
  /**
   * Set while a drain cannot finish without taking ranges below the replicas they keep
   * (`wanted`: `replicasPerRange`, or the members when there are fewer): only `available`
   * members are not being drained. `reason` is stable (`REPLICATION_FACTOR`); the replicas on
   * `nodes` stay until a member is added or undrained, or the drain is forced.
   */
  readonly drainBlocked: {
    readonly reason: 'REPLICATION_FACTOR';
    readonly nodes: readonly number[];
    readonly wanted: number;
    readonly available: number;
    readonly message: string;
  } | null;
  /** While active: the members ranges may go to (not draining) and the replicas wanted, now. */
  readonly nodes: readonly number[];
  readonly target: number | null;
  /** The last plan's phase: repair (replica counts), rebalance, leaders, or none to do. */
  readonly phase: 'repair' | 'rebalance' | 'leaders' | 'none' | null;
  /** Steps the last plan listed. */
  readonly pending: number;
  /**
   * The last plan has a step to take now; false with steps pending when each of them waits (its
   * range has a step under way, changed lately or backs off, or the step would not even the
   * counts). Absent from a node of an earlier release.
   */
  readonly ready?: boolean;
  /** The first of `running`, or null. */
  readonly current: PlacementStepJson | null;
  /**
   * The steps under way, in the order they started: up to four moves off nodes that are no
   * placement target (drained or departed) at once, each of its own range; any other alone.
   * Absent from a node of an earlier release, which runs one step at a time (`current`).
   */
  readonly running?: readonly PlacementStepJson[];
  readonly last: {
    readonly step: PlacementStepJson;
    readonly outcome: 'done' | 'failed';
    readonly error?: string;
    /** When it ended, in epoch milliseconds. */
    readonly atMs: number;
    readonly tookMs: number;
  } | null;
  /** Why some range is not where it should be and nothing is planned for it. */
  readonly blocked: readonly string[];
  /** Ranges left alone after failed steps, and in how long they are tried again. */
  readonly backingOff: readonly { range: number; failures: number; retryInMs: number }[];
  /** Steps done and failed since this node began to run the loop. */
  readonly stepsDone: number;
  readonly stepsFailed: number;
}

export interface PlacementBackend {
  /** The forwarder to the meta group's leader (null from it: this node leads the group). */
  readonly meta: Pick<KvBackend, 'forward'>;
  status(): PlacementResponse;
  /**
   * Marks `node` draining (with `force`: even below the replication factor), or clears the
   * mark; answers the loop's state after it.
   */
  mark(
    op: 'drain' | 'undrain',
    node: number,
    o: { readonly signal: AbortSignal; readonly force: boolean },
  ): Promise<PlacementResponse>;
}

const maxNodeId = 2 ** 31;

export function installPlacementRoutes(http: JsonHttpServer, b: PlacementBackend): void {
  // GET for people and tools; POST is what a forwarded GET arrives as on the meta leader.
  http.route('GET', placementPath, async ({ signal, headers }) => {
    const fwd = await forwarded(b.meta, placementPath, '{}', signal, headers);
    return fwd ?? { json: b.status() };
  });
  http.route('POST', placementPath, async ({ body, rawBody, signal, headers }) => {
    onlyFields(asObject(body), []);
    const fwd = await forwarded(b.meta, placementPath, rawBody, signal, headers);
    return fwd ?? { json: b.status() };
  });
  for (const [path, op] of [
    [drainPath, 'drain'],
    [undrainPath, 'undrain'],
  ] as const)
    http.route('POST', path, async ({ body, rawBody, signal, headers }) => {
      const o = asObject(body);
      onlyFields(o, op === 'drain' ? ['node', 'force'] : ['node']);
      const node = optInt(o, 'node', 1, maxNodeId);
      if (node === undefined)
        throw new FlotillaError(
          'BAD_REQUEST',
          `"node" (a member id in [1, ${maxNodeId}]) is required`,
        );
      const force = optBool(o, 'force');
      const fwd = await forwarded(b.meta, path, rawBody, signal, headers);
      return fwd ?? { json: await b.mark(op, node, { signal, force }) };
    });
}
