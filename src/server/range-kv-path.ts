// The key-value requests' path through the ranges (docs/DESIGN.md, "Ranges in a node"): a
// write proposed in the log of the range holding its keys, a read served through ReadIndex on
// its range, a multi-range read range by range, and the retry after a WRONG_RANGE. The fronts
// (HTTP, the binary protocol) reach it through the node's backend (node.ts).

import { toFlotillaError } from '../api/errors.js';
import type { BackendOp, BackendOpResult, KvBackend, KvRecord, RangeSpec } from '../api/routes.js';
import { FlotillaError } from '../base/errors.js';
import { compareBytes } from '../kv/kv-store.js';
import type { NodeConfig } from './config.js';
import type { RateSampler } from './dashboard.js';
import { answerOf } from './kv-service.js';
import type { NodeMetrics } from './metrics.js';
import type { RangeGroup } from './range-groups.js';
import type { RangeLane, RangeLanes } from './range-lanes.js';
import { clipSpan, spanMeets, spansOfTxn } from './range-router.js';

export interface RangeKvPathOptions {
  readonly config: NodeConfig;
  readonly lanes: RangeLanes;
  readonly metrics: NodeMetrics;
  /** Range 0: the header of answers that name no range. */
  readonly range0: RangeGroup;
  /** The dashboard's rate sampler, once the node has one. */
  readonly sampler: () => RateSampler | undefined;
}

export class RangeKvPath {
  constructor(private readonly o: RangeKvPathOptions) {}

  /** A write (put, delete, txn) in the range holding its keys. */
  write(
    txn: Parameters<KvBackend['write']>[0],
    session: Parameters<KvBackend['write']>[1],
    signal: AbortSignal,
  ): ReturnType<KvBackend['write']> {
    const spans = spansOfTxn(txn);
    return this.routed(spans, 'transaction', signal, (lane) =>
      this.writeIn(lane, txn, session, signal, spans[0]?.key),
    );
  }

  /** A range read in the range holding its interval, or across ranges when asked. */
  read(
    op: Parameters<KvBackend['read']>[0],
    consistency: Parameters<KvBackend['read']>[1],
    signal: AbortSignal,
  ): ReturnType<KvBackend['read']> {
    if (op.multiRange === true) return this.readAcross(op, consistency, signal);
    return this.routed([op.range], 'range read', signal, (lane) =>
      this.readIn(lane, op, consistency, signal),
    );
  }

  /** A response header from range `lane` (range 0 when none is given). */
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
    const n = this.o.lanes.count();
    if (n > 1)
      throw new FlotillaError(
        'MULTIPLE_RANGES',
        `The store has split into ${n} ranges: ${what} is not supported on a split store`,
      );
  }

  /**
   * Runs `fn` on the range the spans lie in. A WRONG_RANGE (a split raced the routing: this
   * node routed by a descriptor its range's leader had already changed) is retried once,
   * after this node caught up with that range's log.
   */
  async routed<T>(
    spans: readonly RangeSpec[],
    what: string,
    signal: AbortSignal,
    fn: (lane: RangeLane) => Promise<T>,
  ): Promise<T> {
    let lane: RangeLane | null = null;
    try {
      lane = this.o.lanes.route(spans, what);
      return await fn(lane);
    } catch (err) {
      if (!(err instanceof FlotillaError) || err.code !== 'WRONG_RANGE') throw err;
      await this.o.lanes.catchUp(lane?.id ?? null, { signal });
      return fn(this.o.lanes.route(spans, what));
    }
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
   * key order, clipped to its bounds, at its own revision, through ReadIndex on that range; not
   * atomic across ranges. `limit` counts over all of them, `count` sums theirs.
   */
  private async readAcross(
    op: Parameters<KvBackend['read']>[0],
    consistency: Parameters<KvBackend['read']>[1],
    signal: AbortSignal,
  ): Promise<Awaited<ReturnType<KvBackend['read']>>> {
    const lanes = this.o.lanes
      .all()
      .filter((l) => spanMeets(op.range, l.group.range.descriptor()))
      .sort((a, b) =>
        compareBytes(a.group.range.descriptor().start, b.group.range.descriptor().start),
      );
    const kvs: KvRecord[] = [];
    let count = 0;
    let more = false;
    const ranges: { id: number; revision: number }[] = [];
    let header = this.header();
    for (const lane of lanes) {
      const left = op.limit === 0 ? 0 : op.limit - kvs.length;
      const part = await this.readIn(
        lane,
        {
          ...op,
          range: clipSpan(op.range, lane.group.range.descriptor()),
          // Past the limit, a range is only counted.
          countOnly: op.countOnly || (op.limit !== 0 && left === 0),
          limit: left,
        },
        consistency,
        signal,
      );
      if (ranges.length === 0) header = part.header;
      ranges.push({ id: lane.id, revision: part.header.revision });
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
    this.o.sampler()?.read();
    lane.load.read();
    return { header: this.header(lane), result: lane.group.range.range(op) };
  }
}

/** The planted `early-ack` bug's answer: results made up before the write applied. */
function unsafeEmptyResult(op: BackendOp): BackendOpResult {
  if (op.kind === 'put') return { kind: 'put', prevKv: null };
  if (op.kind === 'delete') return { kind: 'delete', deleted: 0, prevKvs: [] };
  return { kind: 'range', kvs: [], count: 0, more: false };
}
