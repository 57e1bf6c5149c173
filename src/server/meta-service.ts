// The meta group's side of a node (docs/DESIGN.md, "Ranges"): how the node proposes to the
// meta group (group 2, the range map and the id allocator of src/ranges/meta-machine.ts) and
// the periodic work that bootstraps the map. The meta group runs on every member with the
// key-value group's voters; its leader, finding no map, proposes `bootstrap` with range 0's
// replicas, so a store made before the meta group existed gets its map on first start.

import type { Logger } from 'pino';
import { toFlotillaError } from '../api/errors.js';
import { FlotillaError } from '../base/errors.js';
import { isRefusal, type Clock } from '../host/contracts.js';
import { encodeEnvelope } from '../host/envelope.js';
import type { RaftRuntime, WaitOptions } from '../host/runtime.js';
import { MetaStateMachine, type MetaCommand, type MetaResult } from '../ranges/meta-machine.js';
import type { RangeDescriptor, RangeId } from '../ranges/types.js';
import { features } from '../base/features.js';
import type { FeatureCheck } from './feature-gate.js';
import { Periodic } from './periodic.js';

export interface MetaServiceOptions {
  readonly runtime: RaftRuntime;
  readonly machine: MetaStateMachine;
  readonly clock: Clock;
  /** Range 0's voters now: the replicas the first map gives it. */
  readonly firstRangeReplicas: () => readonly number[];
  /** How often the leader looks for a missing map. */
  readonly checkEveryMs: number;
  readonly log: Logger;
  /** The version gate: every meta command belongs to `features.ranges`. Null: none (tests). */
  readonly gate?: FeatureCheck | null;
}

export class MetaService {
  private readonly periodic: Periodic;
  private checking = false;

  constructor(private readonly o: MetaServiceOptions) {
    this.periodic = new Periodic(o.clock, o.checkEveryMs, () => void this.check());
  }

  get runtime(): RaftRuntime {
    return this.o.runtime;
  }

  get machine(): MetaStateMachine {
    return this.o.machine;
  }

  start(): void {
    this.periodic.start();
  }

  stop(): void {
    this.periodic.stop();
  }

  /** Proposes `bootstrap` when this node leads the meta group and it holds no map. */
  async check(): Promise<void> {
    if (this.checking || !this.o.runtime.isLeader() || this.o.machine.map() !== null) return;
    this.checking = true;
    try {
      // Applied entries only: a leader elected moments ago may not have applied a map yet.
      const s = this.o.runtime.status();
      if (this.o.runtime.appliedIndex() < s.commit) return;
      const replicas = [...this.o.firstRangeReplicas()].sort((a, b) => a - b);
      if (replicas.length === 0) return;
      const r = await this.propose({ op: 'bootstrap', replicas });
      if (r.outcome === 'applied')
        this.o.log.info({ replicas }, 'range map bootstrapped: range 0 over the whole key space');
    } catch (err) {
      this.o.log.debug({ err: (err as Error).message }, 'range map bootstrap failed; will retry');
    } finally {
      this.checking = false;
    }
  }

  /** A new range id from the allocator (a lost answer wastes an id, which is harmless). */
  async allocate(w: WaitOptions = {}): Promise<RangeId> {
    const r = await this.propose({ op: 'allocate' }, w);
    if (r.outcome !== 'applied' || r.range === undefined) throw refusal(r);
    return r.range;
  }

  /**
   * Marks `node` as being drained (`drain`) or clears the mark (`undrain`): the placement loop
   * moves a drained node's replicas away. Answers applied, or known when it already was so;
   * throws a refusal (too many nodes draining). A drain with `force` may take ranges below
   * their replication factor; it is proposed only once every member knows it (FEATURE_NOT_ENABLED
   * before).
   */
  async mark(
    op: 'drain' | 'undrain',
    node: number,
    w: WaitOptions & { readonly force?: boolean } = {},
  ): Promise<MetaResult> {
    if (op === 'drain' && w.force === true)
      await this.o.gate?.require(features.forcedDrain, w.signal);
    const r = await this.propose(
      op === 'drain' && w.force === true ? { op, node, force: true } : { op, node },
      w,
    );
    if (r.outcome === 'refused')
      throw new FlotillaError('INVALID_REQUEST', `Cannot ${op} node ${node}: ${r.message}`);
    return r;
  }

  /**
   * Records a split's two halves; answers once the map took them or already knew them.
   * Throws the refusal otherwise (an earlier change of the range is not recorded yet).
   */
  async recordSplit(
    left: RangeDescriptor,
    right: RangeDescriptor,
    w: WaitOptions = {},
  ): Promise<MetaResult> {
    const r = await this.propose({ op: 'recordSplit', left, right }, w);
    if (r.outcome === 'refused') throw refusal(r);
    return r;
  }

  /**
   * Records a range's new replicas (its descriptor as its own log applied it); answers once the
   * map took it or already knew it. Throws the refusal otherwise (a split of the range is not
   * recorded yet).
   */
  async recordReplicas(range: RangeDescriptor, w: WaitOptions = {}): Promise<MetaResult> {
    const r = await this.propose({ op: 'recordReplicas', range }, w);
    if (r.outcome === 'refused') throw refusal(r);
    return r;
  }

  private async propose(cmd: MetaCommand, w: WaitOptions = {}): Promise<MetaResult> {
    // A release before ranges runs no meta group, and would refuse the split these serve.
    await this.o.gate?.require(features.ranges, w.signal);
    const data = encodeEnvelope({
      client: '',
      seq: 0,
      timeMs: this.o.clock.nowMs(),
      payload: MetaStateMachine.encode(cmd),
    });
    let r: unknown;
    try {
      r = await this.o.runtime.propose(data, w);
    } catch (err) {
      throw toFlotillaError(err);
    }
    if (isRefusal(r)) throw new FlotillaError('INTERNAL', `The meta group refused: ${r.message}`);
    return r as MetaResult;
  }
}

function refusal(r: MetaResult): FlotillaError {
  // A cluster starting: the meta group's leader has not bootstrapped the map yet, and will
  // within a check. Nothing changed; answered as `GET /v1/ranges` is then, which clients retry.
  if (r.outcome === 'refused' && r.code === 'NO_MAP')
    return new FlotillaError(
      'NO_LEADER',
      `The range map is not bootstrapped yet (the meta group is starting): nothing changed, retry (${r.message})`,
    );
  const why = r.outcome === 'refused' ? `${r.code}: ${r.message}` : r.outcome;
  return new FlotillaError('RANGE_MAP_REFUSED', `The range map refused the change (${why})`);
}
