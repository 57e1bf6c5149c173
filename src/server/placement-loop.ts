// The placement loop (docs/DESIGN.md, "Placement"): on the meta group's leader, and so on one
// node of the cluster at a time, it looks at the range map every few seconds and carries out,
// one step at a time, what brings the ranges to where they should be:
//
//   1. count repair: a range with more replicas than it should have loses one (one on a node
//      that is no placement target first), one with fewer gains one on the node holding fewest;
//   2. the moves of rebalancePlan (placement.ts): replicas off draining or departed nodes, then
//      from the fullest node to the emptiest until no node holds two more than another;
//   3. the transfers of leaderPlan, once no replica needs to move; a range whose leadership the
//      loop handed over is not handed over again for `transferMemoryPeriods` periods, so a
//      leader that an election put back (or a stale view of who leads) cannot make the loop
//      move it back and forth.
//
// The nodes ranges go to are the cluster's members (the key-value group's voters) minus those
// being drained, and a range should have `replicasPerRange` replicas, or one on every member
// when there are fewer members. A drain never takes a range below that by itself: when fewer
// members than that are left that are not being drained, the replicas on a drained node stay
// where no other member can take them, and the plan says the drain is blocked (DrainBlocked),
// as a decommission that finds no target keeping the replication factor stalls rather than
// shrinking the range. A drain forced by the operator does not count its node as a member, so
// its replicas go even when the ranges are left with fewer. Ranges 0, 1 and 2 follow the
// cluster's membership and are never touched.
//
// The steps themselves are an executor's (PlacementExecutor: the range's leader changes its
// replicas). The loop only decides, waits for each step with a timeout, and is careful with a
// range whose change is under way: a range with a step running is left alone, one it just
// changed until the map shows the change, one whose replica here applied a newer descriptor
// than the map holds until the map catches up, and one whose step failed for a while that
// doubles at each failure. Moves off a node that is no placement target (a drain, a departed
// member) run up to `drainMovesInFlight` at once, each on its own range: ranges are
// independent Raft groups, and one at a time a drain of many ranges cost a step's whole round
// trip per range. Every other step runs alone, once the moves under way are over, so the
// counts it was planned on are the map's. A plan is made again before every step, from the
// map as it is then, so a step that lost a race or a map that changed under it costs one
// failed step, no more.

import type { Logger } from 'pino';
import { FlotillaError } from '../base/errors.js';
import type { Clock } from '../host/contracts.js';
import { leaderPlan, rebalancePlan, replicaCounts, type ReplicaMove } from '../ranges/placement.js';
import type { RangeMap } from '../ranges/range-map.js';
import { FIRST_ALLOCATED_RANGE, type RangeDescriptor, type RangeId } from '../ranges/types.js';
import { Periodic } from './periodic.js';

/**
 * What changes one range's replicas or leader, on that range's leader. Each call resolves once
 * the change is done and recorded in the range map (so that the next plan sees it), rejects
 * when it failed or `signal` aborted (then the change may or may not have happened: the loop
 * plans again from the map). `move` is required; a step of a kind whose method is absent is not
 * planned (the loop reports it blocked).
 */
export interface PlacementExecutor {
  /** Replaces the replica of `range` on `from` by one on `to`. */
  move(range: RangeId, from: number, to: number, signal: AbortSignal): Promise<void>;
  /** Adds a replica of `range` on `to`. */
  addReplica?(range: RangeId, to: number, signal: AbortSignal): Promise<void>;
  /** Removes the replica of `range` on `from`. */
  removeReplica?(range: RangeId, from: number, signal: AbortSignal): Promise<void>;
  /** Hands the leadership of `range` to its replica on `to`. */
  transferLeader?(range: RangeId, to: number, signal: AbortSignal): Promise<void>;
}

export type PlacementStepKind = 'add' | 'remove' | 'move' | 'transfer';

/** One step, with the range's generation in the map it was planned on. */
export type PlacementStep =
  | {
      readonly kind: 'add';
      readonly range: RangeId;
      readonly to: number;
      readonly generation: number;
    }
  | {
      readonly kind: 'remove';
      readonly range: RangeId;
      readonly from: number;
      readonly generation: number;
    }
  | {
      readonly kind: 'move' | 'transfer';
      readonly range: RangeId;
      readonly from: number;
      readonly to: number;
      readonly generation: number;
    };

/**
 * Why a drain does not finish: fewer members that are not being drained remain than the
 * replicas a range keeps, and the drained nodes hold replicas no other member can take. The
 * reason is stable, for tools; `message` says it for people.
 */
export interface DrainBlocked {
  readonly reason: 'REPLICATION_FACTOR';
  /** The nodes being drained (not forced) that still hold replicas of ranges from 3 on. */
  readonly nodes: readonly number[];
  /** The replicas a range keeps: replicasPerRange, or the members (forced drains not counted). */
  readonly wanted: number;
  /** The members not being drained: fewer than `wanted`. */
  readonly available: number;
  readonly message: string;
}

/** The drain that waits for want of members, if any: see DrainBlocked. */
export function drainBlocked(i: {
  readonly map: RangeMap | null;
  readonly members: readonly number[];
  readonly draining: readonly number[];
  readonly forced?: readonly number[] | undefined;
  readonly replicasPerRange: number;
}): DrainBlocked | null {
  const { nodes, target } = placementTargets(i);
  if (nodes.length >= target || i.map === null) return null;
  const forced = new Set(i.forced ?? []);
  const held = new Set(
    i.map
      .ranges()
      .filter((d) => d.id >= FIRST_ALLOCATED_RANGE)
      .flatMap((d) => d.replicas),
  );
  const stuck = [...new Set(i.draining)]
    .filter((n) => !forced.has(n) && held.has(n) && i.members.includes(n))
    .sort((a, b) => a - b);
  if (stuck.length === 0) return null;
  const list = stuck.join(', ');
  return {
    reason: 'REPLICATION_FACTOR',
    nodes: stuck,
    wanted: target,
    available: nodes.length,
    message:
      `the drain of node${stuck.length === 1 ? '' : 's'} ${list} is blocked: ranges keep ${target} replicas ` +
      `and only ${nodes.length} member${nodes.length === 1 ? ' is' : 's are'} not being drained ` +
      `(${nodes.join(', ') || 'none'}); add a member, undrain one, or force the drain ` +
      `(flotilla node drain --force) to leave ranges with fewer replicas`,
  };
}

/**
 * The nodes ranges may go to (members not being drained, ascending) and the replicas a range
 * should have: replicasPerRange, or every member when there are fewer, a node whose drain was
 * forced not counted (so a plain drain never lowers it).
 */
function placementTargets(i: {
  readonly members: readonly number[];
  readonly draining: readonly number[];
  readonly forced?: readonly number[] | undefined;
  readonly replicasPerRange: number;
}): { nodes: number[]; target: number } {
  const drained = new Set(i.draining);
  const forced = new Set((i.forced ?? []).filter((n) => drained.has(n)));
  const members = [...new Set(i.members)];
  const nodes = members.filter((n) => !drained.has(n)).sort((a, b) => a - b);
  const counted = members.filter((n) => !forced.has(n)).length;
  return { nodes, target: Math.min(i.replicasPerRange, counted) };
}

/**
 * What a plan says. `steps` is the whole plan of its first phase that has any, over every
 * range from 3 on (the ones left alone for now included, so that their replicas count where
 * they are); `next` is the step to carry out now, or null when every step waits on a range
 * left alone.
 */
export interface PlacementPlan {
  readonly phase: 'repair' | 'rebalance' | 'leaders' | 'none';
  readonly steps: readonly PlacementStep[];
  readonly next: PlacementStep | null;
  /** Why some range is not where it should be and no step is planned for it. */
  readonly blocked: readonly string[];
  /** The nodes ranges may go to: the members not being drained, ascending. */
  readonly nodes: readonly number[];
  /** The replicas a range should have: replicasPerRange, or fewer with fewer members. */
  readonly target: number;
  /** Set when a drain cannot finish without taking ranges below `target`. */
  readonly drainBlocked: DrainBlocked | null;
}

export interface PlanInput {
  readonly map: RangeMap;
  /** The cluster's members that may hold replicas (the key-value group's voters). */
  readonly members: readonly number[];
  readonly draining: readonly number[];
  /** The drains forced by the operator: their nodes are emptied even below the target. */
  readonly forced?: readonly number[];
  readonly replicasPerRange: number;
  /** Ranges not to change for now (a change under way, backing off); they still count. */
  readonly skip: (d: RangeDescriptor) => boolean;
  /** Which optional steps the executor carries out. */
  readonly can: { readonly add: boolean; readonly remove: boolean; readonly transfer: boolean };
  /** Each range's leader, when known; asked only when no replica needs to move. */
  readonly leaders?: () => ReadonlyMap<RangeId, number> | null;
  /** Ranges whose leadership was handed over lately: no transfer of theirs is planned for now. */
  readonly transferredLately?: (range: RangeId) => boolean;
}

const blockedMax = 20;

/**
 * The next steps, pure and deterministic: count repair if any range has the wrong number of
 * replicas, else rebalancing moves, else leadership transfers (module comment).
 *
 * The plans of placement.ts assume their steps are carried out in order; a step of a range
 * left alone is not. So the step carried out now is the first of a range not left alone that
 * no earlier step touches (so it is valid on the ranges as they are) and that helps as things
 * are: a move off a node that is no placement target, or one from a node holding at least two
 * more than the other (two more leaders, for a transfer). Every step carried out thus drains a
 * node or lowers the sum of squared counts, and the loop cannot go back and forth.
 */
export function planPlacement(i: PlanInput): PlacementPlan {
  const { nodes, target } = placementTargets(i);
  const blocked: string[] = [];
  const block = (why: string): void => {
    if (blocked.length < blockedMax) blocked.push(why);
  };
  // Said in its own field (and the status's), not among `blocked`, which names ranges.
  const stalled = drainBlocked(i);
  const plan = (
    phase: PlacementPlan['phase'],
    steps: PlacementStep[],
    next: PlacementStep | null,
  ) =>
    ({ phase, steps, next, blocked, nodes, target, drainBlocked: stalled }) satisfies PlacementPlan;
  if (nodes.length === 0) {
    block('no member that is not being drained: nowhere to place ranges');
    return plan('none', [], null);
  }
  const ranges = i.map.ranges().filter((d) => d.id >= FIRST_ALLOCATED_RANGE);
  const skipped = new Set(ranges.filter((d) => i.skip(d)).map((d) => d.id));

  const repair = repairSteps(ranges, skipped, nodes, target, i.can, block);
  if (repair.length > 0) return plan('repair', repair, repair[0] ?? null);

  const counted = ranges.filter((d) => d.replicas.length === target);
  const gen = new Map(counted.map((d) => [d.id, d.generation]));
  const live = new Set(nodes);
  // Fewer live nodes than replicas wanted: a replica leaves a drained node only for a live one
  // lacking the range, and nothing else moves (every live node should hold every range).
  const moves = (
    nodes.length < target
      ? shortMoves(counted, nodes)
      : rebalancePlan({ ranges: () => counted }, nodes, target)
  ).map((m): PlacementStep => ({ kind: 'move', ...m, generation: gen.get(m.range) ?? 0 }));
  if (moves.length > 0) {
    const counts = replicaCounts({ ranges: () => counted }, nodes);
    const helps = (s: PlacementStep & { from: number; to: number }): boolean =>
      !live.has(s.from) || (counts.get(s.from) ?? 0) - (counts.get(s.to) ?? 0) >= 2;
    return plan('rebalance', moves, firstFree(moves, skipped, helps));
  }

  if (!i.can.transfer || i.leaders === undefined) return plan('none', [], null);
  const leaders = i.leaders();
  if (leaders === null) return plan('none', [], null);
  const transfers = leaderPlan({ ranges: () => counted }, leaders)
    // A range's replicas are all on live nodes here (rebalancing found nothing to move).
    .filter((t) => live.has(t.to))
    .map((t): PlacementStep => ({ kind: 'transfer', ...t, generation: gen.get(t.range) ?? 0 }));
  if (transfers.length === 0) return plan('none', [], null);
  const led = new Map<number, number>();
  for (const d of counted) {
    const l = leaders.get(d.id);
    if (l !== undefined && d.replicas.includes(l)) led.set(l, (led.get(l) ?? 0) + 1);
  }
  const helps = (s: PlacementStep & { from: number; to: number }): boolean =>
    (led.get(s.from) ?? 0) - (led.get(s.to) ?? 0) >= 2;
  const lately = i.transferredLately;
  const held =
    lately === undefined
      ? skipped
      : new Set([...skipped, ...counted.filter((d) => lately(d.id)).map((d) => d.id)]);
  return plan('leaders', transfers, firstFree(transfers, held, helps));
}

/**
 * With fewer live nodes than replicas per range: each replica on a node that is not live moves
 * to the live node lacking the range that holds fewest (ties by id), while there is one. Every
 * range keeps its count; a replica no live node can take stays (the drain is blocked).
 */
function shortMoves(ranges: readonly RangeDescriptor[], nodes: readonly number[]): ReplicaMove[] {
  const live = new Set(nodes);
  const counts = replicaCounts({ ranges: () => ranges }, nodes);
  const moves: ReplicaMove[] = [];
  for (const d of ranges) {
    const held = new Set(d.replicas);
    for (const from of d.replicas) {
      if (live.has(from)) continue;
      const to = nodes
        .filter((n) => !held.has(n))
        .sort((a, b) => (counts.get(a) ?? 0) - (counts.get(b) ?? 0) || a - b)[0];
      if (to === undefined) break;
      held.delete(from);
      held.add(to);
      counts.set(to, (counts.get(to) ?? 0) + 1);
      moves.push({ range: d.id, from, to });
    }
  }
  return moves;
}

/** The first step of a range not skipped and not touched before it, that `helps`; or null. */
function firstFree(
  steps: readonly PlacementStep[],
  skipped: ReadonlySet<RangeId>,
  helps: (s: PlacementStep & { from: number; to: number }) => boolean,
): PlacementStep | null {
  const touched = new Set<RangeId>();
  for (const s of steps) {
    if (
      !touched.has(s.range) &&
      !skipped.has(s.range) &&
      (s.kind === 'move' || s.kind === 'transfer') &&
      helps(s)
    )
      return s;
    touched.add(s.range);
  }
  return null;
}

/**
 * One step per range not skipped whose replica count is not `target`, in map order; the
 * counts that choose a node are over every range, the skipped ones included.
 */
function repairSteps(
  ranges: readonly RangeDescriptor[],
  skipped: ReadonlySet<RangeId>,
  nodes: readonly number[],
  target: number,
  can: PlanInput['can'],
  block: (why: string) => void,
): PlacementStep[] {
  const live = new Set(nodes);
  const counts = replicaCounts({ ranges: () => ranges }, nodes);
  const steps: PlacementStep[] = [];
  for (const d of ranges) {
    const n = d.replicas.length;
    if (n === target || skipped.has(d.id)) continue;
    if (n > target) {
      if (!can.remove) {
        block(`range ${d.id} has ${n} replicas, ${target} wanted: removing one is not available`);
        continue;
      }
      // Off a node that is no placement target first, else off the fullest (ties: highest id).
      const from = [...d.replicas].sort(
        (a, b) =>
          Number(live.has(a)) - Number(live.has(b)) ||
          (counts.get(b) ?? 0) - (counts.get(a) ?? 0) ||
          b - a,
      )[0] as number;
      steps.push({ kind: 'remove', range: d.id, from, generation: d.generation });
      counts.set(from, (counts.get(from) ?? 0) - 1);
    } else {
      if (!can.add) {
        block(`range ${d.id} has ${n} replicas, ${target} wanted: adding one is not available`);
        continue;
      }
      // With as many live nodes as `target`, some lacks it; with fewer, perhaps none does.
      const to = nodes
        .filter((x) => !d.replicas.includes(x))
        .sort((a, b) => (counts.get(a) ?? 0) - (counts.get(b) ?? 0) || a - b)[0];
      if (to === undefined) {
        block(
          `range ${d.id} has ${n} replicas, ${target} wanted: every member not being drained holds one`,
        );
        continue;
      }
      steps.push({ kind: 'add', range: d.id, to, generation: d.generation });
      counts.set(to, (counts.get(to) ?? 0) + 1);
    }
  }
  return steps;
}

export interface PlacementLoopOptions {
  readonly clock: Clock;
  /** Off: the loop never plans nor steps (its status says so). */
  readonly enabled: boolean;
  /** How often the loop looks at the map when it has nothing to do. */
  readonly everyMs: number;
  readonly replicasPerRange: number;
  /** How long one step may take before it is abandoned (its signal aborts). */
  readonly stepTimeoutMs: number;
  /** Whether this node is to run the loop now: it leads the meta group, all it committed applied. */
  readonly leads: () => boolean;
  /** The meta group's leader as this node knows it (0: none), for the status. */
  readonly leader: () => number;
  readonly map: () => RangeMap | null;
  readonly draining: () => readonly number[];
  /** The drains forced by the operator (a subset of `draining`); absent: none. */
  readonly forced?: () => readonly number[];
  /** The members ranges may be placed on: the key-value group's voters. */
  readonly members: () => readonly number[];
  /** The generation of range `id` as this node's replica of it applied it, if it runs it. */
  readonly localGeneration?: (id: RangeId) => number | undefined;
  /** Each range's leader, as far as it can be learned; asked only for the leaders phase. */
  readonly leaders: (signal: AbortSignal) => Promise<ReadonlyMap<RangeId, number>>;
  readonly executor: PlacementExecutor;
  readonly log: Logger;
  /**
   * Run at the start of each round on this leader, before planning: clears what no longer
   * applies (the drain marks of removed members). A failure is logged; the round goes on.
   */
  readonly tidy?: () => Promise<void>;
  /** Called after each step, for metrics. */
  readonly onStep?: (step: PlacementStep, outcome: 'done' | 'failed', tookMs: number) => void;
}

/** What the loop did last, for the status. */
export interface PlacementStepRecord {
  readonly step: PlacementStep;
  readonly outcome: 'done' | 'failed';
  readonly error?: string;
  readonly atMs: number;
  readonly tookMs: number;
}

export interface PlacementLoopStatus {
  readonly enabled: boolean;
  /** Whether this node runs the loop now (it leads the meta group). */
  readonly active: boolean;
  readonly leader: number;
  readonly replicasPerRange: number;
  readonly draining: readonly number[];
  /** The drains forced by the operator: their nodes are emptied even below the target. */
  readonly forced: readonly number[];
  /**
   * A drain that waits because too few members are left (from the map and marks as this node
   * applied them, whether or not it runs the loop); null when none does.
   */
  readonly drainBlocked: DrainBlocked | null;
  /** While active: the nodes ranges may go to and the replicas a range should have, now. */
  readonly nodes: readonly number[];
  readonly target: number | null;
  readonly phase: PlacementPlan['phase'] | null;
  /** Steps the last plan listed (the ones running included). */
  readonly pending: number;
  /**
   * The last plan has a step to take now. False with steps pending when each waits: its range
   * has a step under way, changed lately or backs off, or taking it would not even the counts.
   */
  readonly ready: boolean;
  /** The first of `running`, or null. */
  readonly current: PlacementStep | null;
  /** The steps under way, in the order they started: at most one unless they are drain moves. */
  readonly running: readonly PlacementStep[];
  readonly last: PlacementStepRecord | null;
  readonly blocked: readonly string[];
  /** Ranges left alone after failed steps, with when they are tried again. */
  readonly backingOff: readonly { range: RangeId; failures: number; retryAtMs: number }[];
  readonly stepsDone: number;
  readonly stepsFailed: number;
}

/** How many periods a range whose leadership the loop handed over keeps it before another. */
export const transferMemoryPeriods = 10;
/** Moves off nodes that are no placement target carried out at once, at most (module comment). */
export const drainMovesInFlight = 4;
/** Steps one round carries out at most before it lets the next tick go on. */
const stepsPerRoundMax = 64;
/** A failed range waits everyMs × 2^failures, up to this many periods. */
const backoffPeriodsMax = 64;

export class PlacementLoop {
  private readonly periodic: Periodic;
  private running = false;
  /**
   * The steps under way, by range, in the order they started, each with what aborts it: on
   * stop, on its timeout, or when this node stops leading.
   */
  private readonly steps = new Map<
    RangeId,
    { readonly step: PlacementStep; readonly abort: AbortController }
  >();
  /** Ranges changed by a step that succeeded, left alone until the map shows the change. */
  private readonly awaiting = new Map<RangeId, { generation: number; untilMs: number }>();
  private readonly failures = new Map<RangeId, { count: number; retryAtMs: number }>();
  /** Ranges whose leadership a step handed over, with when they may be handed over again. */
  private readonly transferred = new Map<RangeId, number>();
  private plan: PlacementPlan | null = null;
  private last: PlacementStepRecord | null = null;
  private done = 0;
  private failed = 0;
  private stopped = false;

  constructor(private readonly o: PlacementLoopOptions) {
    for (const [name, v, min] of [
      ['everyMs', o.everyMs, 1],
      ['stepTimeoutMs', o.stepTimeoutMs, 1],
      ['replicasPerRange', o.replicasPerRange, 1],
    ] as const)
      if (!Number.isSafeInteger(v) || v < min)
        throw new RangeError(`Placement ${name} must be an integer of at least ${min}, got ${v}`);
    this.periodic = new Periodic(o.clock, o.everyMs, () => void this.check());
  }

  start(): void {
    if (this.o.enabled) this.periodic.start();
  }

  stop(): void {
    this.stopped = true;
    this.periodic.stop();
    this.abortAll(new FlotillaError('SHUTTING_DOWN', 'The node is stopping'));
  }

  private abortAll(reason: FlotillaError): void {
    for (const s of this.steps.values()) s.abort.abort(reason);
  }

  /**
   * One round: while this node leads the meta group, plans and carries out step after step
   * until nothing is left, a step fails, or the round's bound is reached; drain moves run up
   * to `drainMovesInFlight` at once, anything else alone (module comment). A round ends once
   * every step it started is over. A round that finds one under way only checks that this
   * node still leads (and abandons the steps if not).
   */
  async check(): Promise<void> {
    if (!this.o.enabled || this.stopped) return;
    if (this.running) {
      if (!this.o.leads())
        this.abortAll(
          new FlotillaError('LEADERSHIP_LOST', 'This node no longer leads the meta group'),
        );
      return;
    }
    this.running = true;
    const under = new Set<Promise<void>>();
    try {
      await this.o
        .tidy?.()
        .catch((err: unknown) =>
          this.o.log.warn({ err: (err as Error).message }, 'placement: tidying failed'),
        );
      let started = 0;
      let failed = false;
      while (!this.stopped && this.o.leads()) {
        const step = failed || started >= stepsPerRoundMax ? null : await this.next();
        const drain = step !== null && this.isDrainMove(step);
        if (step !== null && (under.size === 0 || (drain && under.size < drainMovesInFlight))) {
          started++;
          const run: Promise<void> = this.carryOut(step)
            .then(
              (ok) => {
                if (!ok) failed = true;
              },
              (err: unknown) => {
                failed = true;
                this.o.log.error({ err: (err as Error).message }, 'placement: step failed');
              },
            )
            .finally(() => under.delete(run));
          under.add(run);
          if (!drain) await run;
          continue;
        }
        if (under.size === 0) return;
        // Planned again once one is over: its range's change shows in the map by then.
        await Promise.race(under);
      }
    } catch (err) {
      // A bug in planning, not in a step: said loudly, tried again next period.
      this.o.log.error({ err: (err as Error).message }, 'placement: planning failed');
    } finally {
      // Each settles (a failure is recorded above), whatever ended the round.
      await Promise.all(under);
      this.running = false;
    }
  }

  /** A move off a node that is no placement target, as the last plan has them. */
  private isDrainMove(step: PlacementStep): boolean {
    return step.kind === 'move' && !(this.plan?.nodes ?? []).includes(step.from);
  }

  /** The next step to carry out, or null (and the plan recorded for the status). */
  private async next(): Promise<PlacementStep | null> {
    const map = this.o.map();
    if (map === null) {
      this.plan = null;
      return null;
    }
    this.forgetSettled(map);
    const now = this.o.clock.nowMs();
    const skip = (d: RangeDescriptor): boolean => {
      if (this.steps.has(d.id) || this.awaiting.has(d.id)) return true;
      const f = this.failures.get(d.id);
      if (f !== undefined && f.retryAtMs > now) return true;
      const local = this.o.localGeneration?.(d.id);
      // This node's replica applied a change the map does not show yet (a split, a move).
      return local !== undefined && local > d.generation;
    };
    const ex = this.o.executor;
    const input: PlanInput = {
      map,
      members: this.o.members(),
      draining: this.o.draining(),
      forced: this.o.forced?.() ?? [],
      replicasPerRange: this.o.replicasPerRange,
      skip,
      transferredLately: (id) => (this.transferred.get(id) ?? 0) > now,
      can: {
        add: ex.addReplica !== undefined,
        remove: ex.removeReplica !== undefined,
        transfer: ex.transferLeader !== undefined,
      },
    };
    let plan = planPlacement(input);
    if (plan.phase === 'none' && input.can.transfer) {
      const leaders = await this.learnLeaders();
      if (leaders !== null) plan = planPlacement({ ...input, leaders: () => leaders });
    }
    this.plan = plan;
    return plan.next;
  }

  private async learnLeaders(): Promise<ReadonlyMap<RangeId, number> | null> {
    const abort = new AbortController();
    const timer = this.o.clock.setTimeout(() => abort.abort(), this.o.stepTimeoutMs);
    try {
      return await this.o.leaders(abort.signal);
    } catch (err) {
      this.o.log.debug({ err: (err as Error).message }, 'placement: leaders unknown for now');
      return null;
    } finally {
      this.o.clock.clearTimeout(timer);
    }
  }

  /** Drops what the map now shows: ranges that changed, failures of ranges that are gone. */
  private forgetSettled(map: RangeMap): void {
    const now = this.o.clock.nowMs();
    for (const [id, a] of this.awaiting) {
      const d = map.get(id);
      if (d === undefined || d.generation > a.generation || now >= a.untilMs)
        this.awaiting.delete(id);
    }
    for (const id of this.failures.keys()) if (map.get(id) === undefined) this.failures.delete(id);
    for (const [id, untilMs] of this.transferred)
      if (map.get(id) === undefined || now >= untilMs) this.transferred.delete(id);
  }

  /** Runs one step with its timeout; whether it succeeded. */
  private async carryOut(step: PlacementStep): Promise<boolean> {
    const abort = new AbortController();
    this.steps.set(step.range, { step, abort });
    const started = this.o.clock.nowMs();
    const timer = this.o.clock.setTimeout(
      () =>
        abort.abort(
          new FlotillaError('TIMEOUT', `The step took longer than ${this.o.stepTimeoutMs} ms`),
        ),
      this.o.stepTimeoutMs,
    );
    this.o.log.info({ step }, `placement: ${describeStep(step)}`);
    let error: string | null = null;
    let code: string | undefined;
    try {
      await untilAborted(this.run(step, abort.signal), abort.signal);
    } catch (err) {
      error = (err as Error).message;
      if (err instanceof FlotillaError) code = err.code;
    } finally {
      this.o.clock.clearTimeout(timer);
      this.steps.delete(step.range);
    }
    const now = this.o.clock.nowMs();
    const tookMs = now - started;
    this.o.onStep?.(step, error === null ? 'done' : 'failed', tookMs);
    if (error === null) {
      this.done++;
      this.failures.delete(step.range);
      // A transfer changes no generation: the range waits one period for the leaders to show it.
      this.awaiting.set(step.range, {
        generation: step.kind === 'transfer' ? Number.MAX_SAFE_INTEGER : step.generation,
        untilMs: now + (step.kind === 'transfer' ? this.o.everyMs : this.o.stepTimeoutMs),
      });
      if (step.kind === 'transfer')
        this.transferred.set(step.range, now + transferMemoryPeriods * this.o.everyMs);
      this.last = { step, outcome: 'done', atMs: now, tookMs };
      this.o.log.info({ step, tookMs }, `placement: done: ${describeStep(step)}`);
      return true;
    }
    this.failed++;
    const count = (this.failures.get(step.range)?.count ?? 0) + 1;
    const waitMs = this.o.everyMs * Math.min(2 ** count, backoffPeriodsMax);
    this.failures.set(step.range, { count, retryAtMs: now + waitMs });
    this.last = { step, outcome: 'failed', error, atMs: now, tookMs };
    this.o.log.warn(
      { step, err: error, code, failures: count, retryInMs: waitMs },
      `placement: failed: ${describeStep(step)}; range ${step.range} waits ${waitMs} ms`,
    );
    return false;
  }

  private run(s: PlacementStep, signal: AbortSignal): Promise<void> {
    const ex = this.o.executor;
    switch (s.kind) {
      case 'move':
        return ex.move(s.range, s.from, s.to, signal);
      case 'add':
        if (ex.addReplica !== undefined) return ex.addReplica(s.range, s.to, signal);
        break;
      case 'remove':
        if (ex.removeReplica !== undefined) return ex.removeReplica(s.range, s.from, signal);
        break;
      case 'transfer':
        if (ex.transferLeader !== undefined) return ex.transferLeader(s.range, s.to, signal);
        break;
    }
    // Planned only when the executor has the method: a bug if reached.
    return Promise.reject(new FlotillaError('INTERNAL', `No executor for a ${s.kind} step`));
  }

  status(): PlacementLoopStatus {
    const now = this.o.clock.nowMs();
    const active = this.o.enabled && !this.stopped && this.o.leads();
    const plan = active ? this.plan : null;
    return {
      enabled: this.o.enabled,
      active,
      leader: this.o.leader(),
      replicasPerRange: this.o.replicasPerRange,
      draining: this.o.draining(),
      forced: this.o.forced?.() ?? [],
      drainBlocked: drainBlocked({
        map: this.o.map(),
        members: this.o.members(),
        draining: this.o.draining(),
        forced: this.o.forced?.(),
        replicasPerRange: this.o.replicasPerRange,
      }),
      // From the members and drains as they are now: the answer to a drain shows it at once.
      ...(active
        ? placementTargets({
            members: this.o.members(),
            draining: this.o.draining(),
            forced: this.o.forced?.(),
            replicasPerRange: this.o.replicasPerRange,
          })
        : { nodes: [], target: null }),
      phase: plan?.phase ?? null,
      pending: plan?.steps.length ?? 0,
      ready: (plan?.next ?? null) !== null,
      current: this.steps.values().next().value?.step ?? null,
      running: [...this.steps.values()].map((s) => s.step),
      last: this.last,
      blocked: plan?.blocked ?? [],
      backingOff: [...this.failures]
        .filter(([, f]) => f.retryAtMs > now)
        .map(([range, f]) => ({ range, failures: f.count, retryAtMs: f.retryAtMs })),
      stepsDone: this.done,
      stepsFailed: this.failed,
    };
  }
}

/** Settles as `p` does, or rejects with the signal's reason once it aborts (p left to itself). */
function untilAborted(p: Promise<void>, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  return new Promise((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

export function describeStep(s: PlacementStep): string {
  switch (s.kind) {
    case 'add':
      return `add a replica of range ${s.range} on node ${s.to}`;
    case 'remove':
      return `remove the replica of range ${s.range} from node ${s.from}`;
    case 'move':
      return `move the replica of range ${s.range} from node ${s.from} to node ${s.to}`;
    case 'transfer':
      return `hand the leadership of range ${s.range} from node ${s.from} to node ${s.to}`;
  }
}
