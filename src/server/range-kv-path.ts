// The key-value requests' path through the ranges (docs/DESIGN.md, "Ranges in a node"): each
// request routed to the range holding its keys, and the retry after a WRONG_RANGE. A range
// running here serves it (range-kv-local.ts: a write proposed in its log, a read through
// ReadIndex); a range this node does not run is served by a node that runs it
// (range-remote.ts): a write's body is forwarded to its leader, a read to a replica, a watch
// relayed from one (range-watch.ts). A multi-range read is read range by range
// (range-kv-across.ts). The fronts (HTTP, the binary protocol) reach it through the node's
// backend (kv-backend.ts).

import type { KvBackend, RangeSpec } from '../api/routes.js';
import { FlotillaError } from '../base/errors.js';
import type { NodeConfig } from './config.js';
import type { RateSampler } from './dashboard.js';
import type { NodeMetrics } from './metrics.js';
import type { RangeGroup } from './range-groups.js';
import type { RangeLane, RangeLanes } from './range-lanes.js';
import { spansOfTxn, writeName } from './range-router.js';
import type { RangeTarget, RemoteRanges } from './range-remote.js';
import type { RemoteWatches } from './range-watch.js';
import type { ServedWatch, WatchSink, WatchVia } from '../api/watch.js';
import type { WatchSpec } from '../kv/watch-hub.js';
import type { ReadResult } from '../api/requests.js';
import { RangeKvLocal } from './range-kv-local.js';
import { readAcross } from './range-kv-across.js';

/** How a read reached this node: forwarded by another (never forwarded again), and by whom. */
export interface ReadVia {
  readonly forwarded?: boolean;
  /** The caller's credential, passed on with a read forwarded to a replica. */
  readonly authorization?: string;
}

export interface RangeKvPathOptions {
  readonly config: NodeConfig;
  readonly lanes: RangeLanes;
  readonly metrics: NodeMetrics;
  /** Range 0: the header of answers that name no range. */
  readonly range0: RangeGroup;
  /** The dashboard's rate sampler, once the node has one. */
  readonly sampler: () => RateSampler | undefined;
  /** The ranges not run here, and the route to every range. */
  readonly remote: RemoteRanges;
  /** How many ranges the meta map holds (0 before it is bootstrapped). */
  readonly mapSize: () => number;
  /** Watches relayed from replicas of ranges not run here. */
  readonly remoteWatches: RemoteWatches;
  /** The cluster's active feature level as this node applied it (FeatureGate.active). */
  readonly featureLevel: () => number;
}

export class RangeKvPath {
  private readonly local: RangeKvLocal;

  constructor(private readonly o: RangeKvPathOptions) {
    this.local = new RangeKvLocal(o);
  }

  /** Bytes of keys and values this node holds over every range it runs (storeQuotaBytes). */
  storeBytes(): number {
    return this.local.storeBytes();
  }

  /** A write (put, delete, txn) in the range holding its keys, when it runs here. */
  write(
    txn: Parameters<KvBackend['write']>[0],
    session: Parameters<KvBackend['write']>[1],
    signal: AbortSignal,
  ): ReturnType<KvBackend['write']> {
    const spans = spansOfTxn(txn);
    return this.routed(spans, writeName(txn), signal, (t) =>
      this.local.write(this.local.laneOf(t), txn, session, signal, spans[0]?.key),
    );
  }

  /**
   * Where a write goes (KvBackend.routeWrite): the leader of a range running here through that
   * range's forwarder, or the leader of one run elsewhere (range-remote.ts). A route no range
   * is known for yet is refreshed first.
   */
  routeWrite(txn: Parameters<KvBackend['routeWrite']>[0]): Pick<KvBackend, 'leads' | 'forward'> {
    const spans = spansOfTxn(txn);
    const what = writeName(txn);
    const elsewhere: Pick<KvBackend, 'leads' | 'forward'> = {
      leads: () => false,
      forward: (path, rawBody, signal, authorization) =>
        this.o.remote.forwardWrite(spans, { path, rawBody }, signal, authorization, what),
    };
    let target: RangeTarget;
    try {
      target = this.o.remote.route(spans, what);
    } catch (err) {
      if (!(err instanceof FlotillaError) || err.code !== 'WRONG_RANGE') return here;
      return {
        leads: () => false,
        forward: async (path, rawBody, signal, authorization) => {
          await this.o.remote.refresh(null, signal);
          return elsewhere.forward(path, rawBody, signal, authorization);
        },
      };
    }
    if (!target.local) return elsewhere;
    const lane = this.o.lanes.lane(target.id);
    if (lane === undefined) return here;
    const rt = lane.group.runtime;
    return {
      leads: () => rt.leaderId() === this.o.config.id,
      forward: (path, rawBody, signal, authorization) =>
        lane.forwarder.forward(path, rawBody, signal, authorization),
    };
  }

  /** A range read in the range holding its interval, or across ranges when asked. */
  read(
    op: Parameters<KvBackend['read']>[0],
    consistency: Parameters<KvBackend['read']>[1],
    signal: AbortSignal,
    via: ReadVia = {},
  ): ReturnType<KvBackend['read']> {
    if (op.multiRange === true)
      return readAcross(
        {
          remote: this.o.remote,
          header: () => this.header(),
          readOne: (t, part) => this.readOf(t, part, consistency, signal, via),
        },
        op,
        signal,
      );
    return this.routed([op.range], 'range read', signal, (t) =>
      this.readOf(t, op, consistency, signal, via),
    );
  }

  /**
   * A watch on the range holding its keys: that range's hub here, or a stream relayed from a
   * replica of a range not run here (range-watch.ts). CROSS_RANGE for keys in two ranges.
   */
  watch(spec: WatchSpec, sink: WatchSink, via: WatchVia): Promise<ServedWatch> {
    const signal = via.signal ?? new AbortController().signal;
    return this.routed([spec.range], 'watch', signal, (t) => {
      if (!t.local && via.forwarded !== true)
        return this.o.remoteWatches.watch(t.descriptor, spec, sink, via);
      const lane = this.local.laneOf(t);
      const stopped = lane.group.runtime.stoppedError();
      if (stopped !== null) throw stopped;
      const w = lane.watchHub.watch(spec, sink);
      return Promise.resolve({
        id: w.id,
        startRevision: w.startRevision,
        cancel: () => w.cancel(),
        header: () => this.header(lane),
      });
    });
  }

  /** Watches relayed now from replicas of ranges not run here. */
  remoteWatches(): number {
    return this.o.remoteWatches.count();
  }

  /** A header from range `lane` (range 0 when none is given). */
  header(lane?: RangeLane): { revision: number; memberId: number; raftTerm: number } {
    return this.local.header(lane);
  }

  /** Throws MULTIPLE_RANGES when the store has split: `what` covers the whole store. */
  checkOneRange(what: string): void {
    // The map counts the ranges this node does not run too; its own count may be ahead of it.
    const n = Math.max(this.o.lanes.count(), this.o.mapSize());
    if (n > 1)
      throw new FlotillaError(
        'MULTIPLE_RANGES',
        `The store has split into ${n} ranges: ${what} is not supported on a split store`,
      );
  }

  /**
   * Runs `fn` on the range the spans lie in. A WRONG_RANGE (a split raced the routing: this
   * node routed by a descriptor the range's leader had already changed, or by a map that lags)
   * is retried once, after this node caught up with that range's log and the meta map.
   */
  async routed<T>(
    spans: readonly RangeSpec[],
    what: string,
    signal: AbortSignal,
    fn: (target: RangeTarget) => Promise<T>,
  ): Promise<T> {
    let target: RangeTarget | null = null;
    try {
      target = this.o.remote.route(spans, what);
      return await fn(target);
    } catch (err) {
      if (!(err instanceof FlotillaError) || err.code !== 'WRONG_RANGE') throw err;
      await this.o.remote.refresh(target?.local === true ? target.id : null, signal);
      return fn(this.o.remote.route(spans, what));
    }
  }

  /** A read of one range: here when it runs here, else on a replica of it. */
  private readOf(
    t: RangeTarget,
    op: Parameters<KvBackend['read']>[0],
    consistency: Parameters<KvBackend['read']>[1],
    signal: AbortSignal,
    via: ReadVia,
  ): Promise<ReadResult> {
    if (t.local || via.forwarded === true)
      return this.local.read(this.local.laneOf(t), op, consistency, signal);
    return this.o.remote.read(t.descriptor, op, consistency, signal, via.authorization);
  }
}

/** The write routed nowhere else: this node serves it, or says why not (write() routes again). */
const here: Pick<KvBackend, 'leads' | 'forward'> = {
  leads: () => true,
  forward: () => Promise.resolve(null),
};
