// The key-value requests served by a range running on this node (docs/DESIGN.md, "Ranges in a
// node"): a write proposed in the range's log, a read through ReadIndex on the range (or at
// once, serializable), and the header of an answer. Which range a request goes to, and what is
// served elsewhere, is range-kv-path.ts's.

import { toFlotillaError } from '../api/errors.js';
import type { BackendOp, BackendOpResult, KvBackend } from '../api/routes.js';
import { FlotillaError } from '../base/errors.js';
import { features } from '../base/features.js';
import { defaultLimits } from '../base/limits.js';
import type { NodeConfig } from './config.js';
import type { RateSampler } from './dashboard.js';
import { sessionAtLevel } from './feature-gate.js';
import { answerOf, readBarrierAt } from './kv-service.js';
import type { NodeMetrics } from './metrics.js';
import type { RangeGroup } from './range-groups.js';
import type { RangeLane, RangeLanes } from './range-lanes.js';
import type { RangeTarget } from './range-remote.js';
import { showRange } from './range-router.js';

export interface RangeKvLocalOptions {
  readonly config: NodeConfig;
  readonly lanes: RangeLanes;
  readonly metrics: NodeMetrics;
  /** Range 0: the header of answers that name no range. */
  readonly range0: RangeGroup;
  /** The dashboard's rate sampler, once the node has one. */
  readonly sampler: () => RateSampler | undefined;
  /** The cluster's active feature level as this node applied it (FeatureGate.active). */
  readonly featureLevel: () => number;
}

export class RangeKvLocal {
  constructor(private readonly o: RangeKvLocalOptions) {}

  /** A header from range `lane` (range 0 when none is given). */
  header(lane?: RangeLane): { revision: number; memberId: number; raftTerm: number } {
    const g = lane?.group ?? this.o.range0;
    return {
      revision: g.range.kv.revision(),
      memberId: this.o.config.id,
      raftTerm: g.runtime.term(),
    };
  }

  /** The lane of a range running here; WRONG_RANGE for one that does not (see notHere). */
  laneOf(t: RangeTarget): RangeLane {
    const lane = t.local ? this.o.lanes.lane(t.id) : undefined;
    if (lane === undefined) throw this.notHere(t);
    return lane;
  }

  /** A write (put, delete, txn) proposed in the log of range `lane`. */
  async write(
    lane: RangeLane,
    txn: Parameters<KvBackend['write']>[0],
    session: Parameters<KvBackend['write']>[1],
    signal: AbortSignal,
    /** The write's first key: sampled for a split by load (range-splitter.ts). */
    firstKey: Uint8Array | undefined,
  ): Promise<Awaited<ReturnType<KvBackend['write']>>> {
    const runtime = lane.group.runtime;
    this.checkQuota(txn);
    // The session's acknowledgement mark only once every member knows it (feature-gate.ts).
    const data = lane.service.encode(
      this.boundPrevKv(lane, txn),
      sessionAtLevel(session, this.o.featureLevel()),
    );
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
   * Bytes of keys and values this node holds, live and history, over every range it runs: what
   * `storeQuotaBytes` bounds.
   */
  storeBytes(): number {
    return bytesHeld(this.o.lanes.all());
  }

  /**
   * STORE_FULL for a write that puts once this node's data reached `storeQuotaBytes`, before
   * anything is proposed. The store is in memory, so a write with nowhere to go is refused
   * rather than let the node run out of memory; a write that only deletes or reads goes on, so
   * room can be made. Decided from this node's applied state (its replicas hold the same data):
   * a check before proposing, not a rule of the state machine, so members configured
   * differently never apply an entry differently. Writes in flight may overshoot by what they
   * carry.
   */
  private checkQuota(txn: Parameters<KvBackend['write']>[0]): void {
    const quota = this.o.config.storeQuotaBytes;
    if (!(quota > 0)) return;
    const puts = (ops: readonly { readonly kind: string }[]): boolean =>
      ops.some((op) => op.kind === 'put');
    if (!puts(txn.success) && !puts(txn.failure)) return;
    const held = bytesHeld(this.o.lanes.made());
    if (held >= quota)
      throw new FlotillaError(
        'STORE_FULL',
        `This node holds ${held} bytes of keys and values (live and history), its quota ` +
          `storeQuotaBytes is ${quota}: nothing was written. Delete keys or compact the ` +
          `history to make room, or raise the quota`,
      );
  }

  /**
   * A write whose deletes with `prevKv` are bounded by `maxRangeBytes` (DESIGN.md, "Deletes
   * with prevKv"): refused PREV_KV_TOO_LARGE at once, with nothing proposed, when this node's
   * applied state already holds more in their ranges; bounded in the command once the
   * cluster's level has the feature, so every member refuses the same when it applies it if
   * the range grew meanwhile. Below that level the command goes unbounded, as before: a member
   * of an older release would delete what the others refuse.
   */
  private boundPrevKv(
    lane: RangeLane,
    txn: Parameters<KvBackend['write']>[0],
  ): Parameters<KvBackend['write']>[0] {
    const prevKv = (ops: readonly BackendOp[]): boolean =>
      ops.some((op) => op.kind === 'delete' && op.prevKv);
    if (!prevKv(txn.success) && !prevKv(txn.failure)) return txn;
    const max = defaultLimits.maxRangeBytes;
    lane.group.range.kv.checkPrevKv(txn, max);
    if (this.o.featureLevel() < features.boundedPrevKv.level) return txn;
    const bound = (ops: readonly BackendOp[]): BackendOp[] =>
      ops.map((op) => (op.kind === 'delete' && op.prevKv ? { ...op, prevKvBytesMax: max } : op));
    return { ...txn, success: bound(txn.success), failure: bound(txn.failure) };
  }

  /** A range read of range `lane`: through ReadIndex unless serializable. */
  async read(
    lane: RangeLane,
    op: Parameters<KvBackend['read']>[0],
    consistency: Parameters<KvBackend['read']>[1],
    signal: AbortSignal,
  ): Promise<Awaited<ReturnType<KvBackend['read']>>> {
    // The planted `local-reads` bug skips ReadIndex: a deposed leader serves stale data.
    if (this.o.config.unsafeTestMode !== 'local-reads') {
      try {
        await readBarrierAt(lane.group.runtime, consistency, signal);
      } catch (err) {
        this.o.metrics.reads.inc({ level: consistency, outcome: 'error' });
        throw err;
      }
    }
    this.o.metrics.reads.inc({ level: consistency, outcome: 'ok' });
    if (lane.group.runtime.leaderId() !== this.o.config.id)
      this.o.metrics.followerReads.inc({ level: consistency });
    this.o.sampler()?.read();
    lane.load.read();
    return { header: this.header(lane), result: lane.group.range.range(op) };
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
}

/** The planted `early-ack` bug's answer: results made up before the write applied. */
function unsafeEmptyResult(op: BackendOp): BackendOpResult {
  if (op.kind === 'put') return { kind: 'put', prevKv: null };
  if (op.kind === 'delete') return { kind: 'delete', deleted: 0, prevKvs: [] };
  return { kind: 'range', kvs: [], count: 0, more: false };
}

/** Bytes of keys and values, live and history, in the ranges of `lanes`. */
function bytesHeld(lanes: Iterable<RangeLane>): number {
  let n = 0;
  for (const l of lanes) n += l.group.range.kv.bytes() + l.group.range.kv.historyBytes();
  return n;
}
