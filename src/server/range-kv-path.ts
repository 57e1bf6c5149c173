// The key-value requests' path through the ranges (docs/DESIGN.md, "Ranges in a node"): a
// write proposed in the log of the range holding its keys, a read served through ReadIndex on
// its range, a multi-range read range by range, and the retry after a WRONG_RANGE. A range this
// node does not run is served by a node that runs it (range-remote.ts): a write's body is
// forwarded to its leader, a read (or a multi-range read's part) to a replica. The fronts
// (HTTP, the binary protocol) reach it through the node's backend (node.ts).

import { toFlotillaError } from '../api/errors.js';
import type { BackendOp, BackendOpResult, KvBackend, KvRecord, RangeSpec } from '../api/routes.js';
import { FlotillaError } from '../base/errors.js';
import type { NodeConfig } from './config.js';
import type { RateSampler } from './dashboard.js';
import { answerOf } from './kv-service.js';
import type { NodeMetrics } from './metrics.js';
import type { RangeGroup } from './range-groups.js';
import type { RangeLane, RangeLanes } from './range-lanes.js';
import { clipSpan, showRange, spansOfTxn } from './range-router.js';
import type { RangeTarget, RemoteRanges } from './range-remote.js';
import type { RemoteWatches } from './range-watch.js';
import type { ServedWatch, WatchSink, WatchVia } from '../api/watch.js';
import type { WatchSpec } from '../kv/watch-hub.js';
import { covers, rangesMet } from './range-table.js';
import type { ReadResult } from '../api/requests.js';

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
}

export class RangeKvPath {
  constructor(private readonly o: RangeKvPathOptions) {}

  /** A write (put, delete, txn) in the range holding its keys, when it runs here. */
  write(
    txn: Parameters<KvBackend['write']>[0],
    session: Parameters<KvBackend['write']>[1],
    signal: AbortSignal,
  ): ReturnType<KvBackend['write']> {
    const spans = spansOfTxn(txn);
    return this.routed(spans, 'transaction', signal, (t) =>
      this.writeIn(this.laneOf(t), txn, session, signal, spans[0]?.key),
    );
  }

  /**
   * Where a write goes (KvBackend.routeWrite): the leader of a range running here through that
   * range's forwarder, or the leader of one run elsewhere (range-remote.ts). A route no range
   * is known for yet is refreshed first.
   */
  routeWrite(txn: Parameters<KvBackend['routeWrite']>[0]): Pick<KvBackend, 'leads' | 'forward'> {
    const spans = spansOfTxn(txn);
    const elsewhere: Pick<KvBackend, 'leads' | 'forward'> = {
      leads: () => false,
      forward: (path, rawBody, signal, authorization) =>
        this.o.remote.forwardWrite(spans, { path, rawBody }, signal, authorization),
    };
    let target: RangeTarget;
    try {
      target = this.o.remote.route(spans, 'transaction');
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
    if (op.multiRange === true) return this.readAcross(op, consistency, signal, via);
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
      const lane = this.laneOf(t);
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
    const g = lane?.group ?? this.o.range0;
    return {
      revision: g.range.kv.revision(),
      memberId: this.o.config.id,
      raftTerm: g.runtime.status().term,
    };
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

  /** The lane of a range running here; WRONG_RANGE for one that does not (see notHere). */
  private laneOf(t: RangeTarget): RangeLane {
    const lane = t.local ? this.o.lanes.lane(t.id) : undefined;
    if (lane === undefined) throw this.notHere(t);
    return lane;
  }

  /**
   * A request for a range not run here that this node may not forward (it was forwarded to
   * it): the sender routed by a map that lags, and routes again once it has caught up.
   */
  private notHere(t: RangeTarget): FlotillaError {
    const where = t.local
      ? `range ${t.id}, which has stopped here`
      : `${showRange(t.descriptor)}, which runs on nodes ${t.descriptor.replicas.join(', ')}`;
    return new FlotillaError(
      'WRONG_RANGE',
      `Node ${this.o.config.id} does not run the range holding the request's keys (${where}): ` +
        'the map it was routed by is stale',
    );
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
      return this.readIn(this.laneOf(t), op, consistency, signal);
    return this.o.remote.read(t.descriptor, op, consistency, signal, via.authorization);
  }

  private async writeIn(
    lane: RangeLane,
    txn: Parameters<KvBackend['write']>[0],
    session: Parameters<KvBackend['write']>[1],
    signal: AbortSignal,
    /** The write's first key: sampled for a split by load (range-splitter.ts). */
    firstKey: Uint8Array | undefined,
  ): Promise<Awaited<ReturnType<KvBackend['write']>>> {
    const runtime = lane.group.runtime;
    const data = lane.service.encode(txn, session);
    if (this.o.config.unsafeTestMode === 'early-ack') {
      // Planted bug for the fault-injection checker: acknowledge before the entry commits.
      runtime.propose(data, { signal }).catch(() => undefined);
      return {
        header: this.header(lane),
        succeeded: true,
        results: txn.success.map(unsafeEmptyResult),
      };
    }
    const started = performance.now();
    try {
      const result = await runtime.propose(data, { signal });
      this.o.metrics.proposals.inc({ outcome: 'ok' });
      const ms = performance.now() - started;
      this.o.metrics.applyLatency.observe(ms / 1000);
      this.o.sampler()?.write(ms);
      if (firstKey !== undefined) lane.load.wrote(firstKey);
      const answer = answerOf(result);
      return {
        header: { ...this.header(lane), revision: answer.revision },
        succeeded: answer.succeeded,
        results: answer.results,
      };
    } catch (err) {
      this.o.metrics.proposals.inc({
        outcome: err instanceof FlotillaError ? err.code : 'error',
      });
      throw toFlotillaError(err);
    }
  }

  /**
   * A multi-range read (asked for with "multiRange"): each range the interval meets is read in
   * key order, clipped to its bounds, at its own revision, through ReadIndex on that range (on a
   * replica of it when it does not run here); not atomic across ranges. `limit` counts over all
   * of them, `count` sums theirs. A route found stale (a gap in what this node knows, a part
   * refused WRONG_RANGE) is refreshed and the read made once more.
   */
  private async readAcross(
    op: Parameters<KvBackend['read']>[0],
    consistency: Parameters<KvBackend['read']>[1],
    signal: AbortSignal,
    via: ReadVia,
  ): Promise<ReadResult> {
    try {
      return await this.readAcrossOnce(op, consistency, signal, via);
    } catch (err) {
      const code = err instanceof FlotillaError ? err.code : null;
      if (code !== 'WRONG_RANGE' && code !== 'CROSS_RANGE') throw err;
      await this.o.remote.refresh(null, signal);
      return this.readAcrossOnce(op, consistency, signal, via);
    }
  }

  private async readAcrossOnce(
    op: Parameters<KvBackend['read']>[0],
    consistency: Parameters<KvBackend['read']>[1],
    signal: AbortSignal,
    via: ReadVia,
  ): Promise<ReadResult> {
    const met = rangesMet(this.o.remote.knowledge(), [op.range]);
    if (!covers(met, op.range))
      throw new FlotillaError(
        'WRONG_RANGE',
        'No range this node knows of holds part of the interval yet (a split it has not learned of)',
      );
    const kvs: KvRecord[] = [];
    let count = 0;
    let more = false;
    const ranges: { id: number; revision: number }[] = [];
    let header = this.header();
    for (const d of met) {
      const left = op.limit === 0 ? 0 : op.limit - kvs.length;
      const target = this.o.remote.targetOf(d);
      const part = await this.readOf(
        target,
        {
          ...op,
          // A part read elsewhere is read there range by range too: a split this node has not
          // learned of yet is read where its keys are now.
          multiRange: !target.local,
          range: clipSpan(op.range, d),
          // Past the limit, a range is only counted.
          countOnly: op.countOnly || (op.limit !== 0 && left === 0),
          limit: left,
        },
        consistency,
        signal,
        via,
      );
      if (ranges.length === 0) header = part.header;
      ranges.push(...(part.ranges ?? [{ id: d.id, revision: part.header.revision }]));
      kvs.push(...part.result.kvs);
      count += part.result.count;
      more ||= part.result.more || (op.limit !== 0 && left === 0 && part.result.count > 0);
    }
    return { header, result: { kind: 'range', kvs, count, more }, ranges };
  }

  private async readIn(
    lane: RangeLane,
    op: Parameters<KvBackend['read']>[0],
    consistency: Parameters<KvBackend['read']>[1],
    signal: AbortSignal,
  ): Promise<Awaited<ReturnType<KvBackend['read']>>> {
    // The planted `local-reads` bug skips ReadIndex: a deposed leader serves stale data.
    if (consistency !== 'serializable' && this.o.config.unsafeTestMode !== 'local-reads') {
      try {
        await lane.group.runtime.linearizableRead({ signal, lease: consistency === 'lease' });
      } catch (err) {
        this.o.metrics.reads.inc({ level: consistency, outcome: 'error' });
        throw toFlotillaError(err);
      }
    }
    this.o.metrics.reads.inc({ level: consistency, outcome: 'ok' });
    if (lane.group.runtime.leaderId() !== this.o.config.id)
      this.o.metrics.followerReads.inc({ level: consistency });
    this.o.sampler()?.read();
    lane.load.read();
    return { header: this.header(lane), result: lane.group.range.range(op) };
  }
}

/** The write routed nowhere else: this node serves it, or says why not (write() routes again). */
const here: Pick<KvBackend, 'leads' | 'forward'> = {
  leads: () => true,
  forward: () => Promise.resolve(null),
};

/** The planted `early-ack` bug's answer: results made up before the write applied. */
function unsafeEmptyResult(op: BackendOp): BackendOpResult {
  if (op.kind === 'put') return { kind: 'put', prevKv: null };
  if (op.kind === 'delete') return { kind: 'delete', deleted: 0, prevKvs: [] };
  return { kind: 'range', kvs: [], count: 0, more: false };
}
