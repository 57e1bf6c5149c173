// Getting a request about one range to that range's leader (docs/DESIGN.md, "Ranges in a
// node"): the routes that change a range (moving a replica, handing its leadership over) are
// carried out by its leader, and any node may be asked. A replica that does not lead forwards
// to the leader it knows (the range's own forwarder, which follows it as it changes); a node
// that holds no replica sends the request, marked forwarded, to the range's replicas as the
// map names them, following the leaders they name. A forwarded request reaching a node that
// does not lead is answered NOT_LEADER, never forwarded again, so a request takes a bounded
// number of hops even while the map lags.

import { errorFromWire } from '../api/wire-codec.js';
import type { Json } from '../api/validate.js';
import { FlotillaError } from '../base/errors.js';
import type { RaftRuntime } from '../host/runtime.js';
import type { RangeDescriptor, RangeId } from '../ranges/types.js';
import type { Forwarder, SendFn } from './forward.js';
import type { RangeLane, RangeLanes } from './range-lanes.js';

export interface RangeLeaderRouteOptions {
  readonly selfId: number;
  readonly lanes: Pick<RangeLanes, 'lane'>;
  /** Range `id` as this node's copy of the meta map holds it. */
  readonly mapped: (id: RangeId) => RangeDescriptor | undefined;
  /** A forwarder to the leader of the group `runtime` drives. */
  readonly forwarderFor: (runtime: RaftRuntime) => Pick<Forwarder, 'forward'>;
  /** Member `id`'s client URL, from the address book. */
  readonly clientUrl: (id: number) => string | undefined;
  /** One request marked forwarded, with the caller's credential. */
  readonly send: SendFn;
}

/** How a route was called: a request forwarded by another node is not forwarded again. */
export interface RangeCall {
  readonly signal: AbortSignal;
  readonly authorization?: string | undefined;
  readonly forwarded?: boolean;
}

/** Leader changes one request follows on this node before it gives up. */
const MAX_HOPS = 4;
/** Replicas (and leaders they name) a node holding no replica tries for one request. */
const MAX_REPLICA_HOPS = 8;

export class RangeLeaderRoute {
  private readonly forwarders = new Map<
    RangeId,
    { runtime: RaftRuntime; forwarder: Pick<Forwarder, 'forward'> }
  >();

  constructor(private readonly o: RangeLeaderRouteOptions) {}

  /**
   * Runs `local` when this node leads range `range` (null from it: leadership moved, look
   * again), else sends `body` to `path` on the range's leader and parses its answer with
   * `parse`; an error answer is thrown as the error it names.
   */
  async run<T>(
    range: RangeId,
    request: { readonly path: string; readonly body: Json },
    w: RangeCall,
    local: (lane: RangeLane) => Promise<T | null>,
    parse: (json: unknown) => T,
  ): Promise<T> {
    for (let hop = 0; hop < MAX_HOPS; hop++) {
      const lane = this.o.lanes.lane(range);
      if (lane === undefined) return this.viaReplicas(range, request, w, parse);
      const rt = lane.group.runtime;
      if (rt.leaderId() === this.o.selfId) {
        const done = await local(lane);
        if (done !== null) return done;
        continue;
      }
      if (w.forwarded === true)
        throw new FlotillaError(
          'NOT_LEADER',
          `This node does not lead range ${range}`,
          false,
          rt.leaderId(),
        );
      const fwd = await this.forwarder(range, rt).forward(
        request.path,
        JSON.stringify(request.body),
        w.signal,
        w.authorization,
      );
      if (fwd === null) continue;
      if (fwd.status !== 200)
        throw errorFromWire((fwd.json as { error?: unknown } | null)?.error, true);
      return parse(fwd.json);
    }
    throw new FlotillaError(
      'NO_LEADER',
      `Range ${range}'s leadership moved ${MAX_HOPS} times while the request was on its way; retry`,
    );
  }

  /**
   * This node holds no replica of `range`: a forwarded request is answered NOT_LEADER naming
   * a replica; any other goes to the replicas the map names, then to the leaders they name.
   */
  private async viaReplicas<T>(
    range: RangeId,
    request: { readonly path: string; readonly body: Json },
    w: RangeCall,
    parse: (json: unknown) => T,
  ): Promise<T> {
    const d = this.o.mapped(range);
    if (d === undefined)
      throw new FlotillaError('RANGE_NOT_FOUND', `The range map holds no range ${range}`);
    const here = `This node holds no replica of range ${range}; its replicas are [${d.replicas.join(', ')}]`;
    if (w.forwarded === true)
      throw new FlotillaError('NOT_LEADER', here, false, d.replicas[0] ?? 0);
    const queue = [...d.replicas];
    const tried = new Set<number>([this.o.selfId]);
    let last = new FlotillaError('NO_LEADER', `${here}, and none of them answered`);
    const rawBody = JSON.stringify(request.body);
    for (let hop = 0; hop < MAX_REPLICA_HOPS; hop++) {
      const id = queue.find((n) => !tried.has(n));
      if (id === undefined) break;
      tried.add(id);
      const url = this.o.clientUrl(id);
      if (url === undefined) continue;
      let a: { status: number; json: unknown };
      try {
        a = await this.o.send(url, request.path, rawBody, w.signal, w.authorization);
      } catch (err) {
        if (w.signal.aborted) throw err;
        continue;
      }
      if (a.status === 200) return parse(a.json);
      const e = errorFromWire((a.json as { error?: unknown } | null)?.error, true);
      if (e.code !== 'NOT_LEADER') throw e;
      last = e;
      if (e.leader !== undefined && e.leader > 0) queue.unshift(e.leader);
    }
    throw last;
  }

  private forwarder(range: RangeId, runtime: RaftRuntime): Pick<Forwarder, 'forward'> {
    const held = this.forwarders.get(range);
    if (held?.runtime === runtime) return held.forwarder;
    const forwarder = this.o.forwarderFor(runtime);
    this.forwarders.set(range, { runtime, forwarder });
    return forwarder;
  }
}
