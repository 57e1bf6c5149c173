// Changing a range's replicas while it serves (docs/DESIGN.md, "Ranges in a node"): add a
// replica, remove one, or move one (add the new, then remove the old), for the ranges split off
// range 0 (ids from FIRST_ALLOCATED_RANGE; ranges 0, 1 and 2 follow the membership instead).
//
// The range's leader carries a change out, one step at a time, each step chosen from what the
// range's log has applied (`nextReplicaStep`, a pure function): remove a stray learner (left by
// a change that did not finish); prepare the new node (it starts the range on empty storage, an
// internal route) and add it as a learner; wait, bounded, until it caught up and promote it;
// remove the old replica, after handing leadership to another voter if the old replica leads;
// record the new voters in the range's own log (a `replicas` command at the generation the
// leader applied, so every replica's descriptor says them at generation + 1); record that
// descriptor in the meta group's map. Each step is read from the state again before it is
// taken, so a change retried after a crash, a timeout or a leader change resumes where the
// range is and completes once: a move whose new voters the range already recorded answers its
// descriptor without changing anything. The voters never number fewer than before a move: the
// new replica votes before the old one leaves.
//
// One change per range at a time on its leader (a second is refused RANGE_CHANGE_IN_PROGRESS);
// a node that does not lead the range forwards the change to the range's leader.

import type { Logger } from 'pino';
import { toFlotillaError } from '../api/errors.js';
import { parseDescriptor, renderDescriptor } from '../api/range-routes.js';
import { metaRecordReplicasPath, preparePath, replicasPath } from '../api/replica-routes.js';
import type { Json } from '../api/validate.js';
import { errorFromWire } from '../api/wire-codec.js';
import { FlotillaError } from '../base/errors.js';
import { isRefusal, type Clock } from '../host/contracts.js';
import { encodeEnvelope } from '../host/envelope.js';
import type { RaftRuntime } from '../host/runtime.js';
import { successors, type ConfState, type Status } from '../raft/index.js';
import { RangeMachine } from '../ranges/range-machine.js';
import { FIRST_ALLOCATED_RANGE, type RangeDescriptor, type RangeId } from '../ranges/types.js';
import type { ForwardAnswer, Forwarder } from './forward.js';
import type { MetaService } from './meta-service.js';
import { onMetaLeader } from './forward.js';
import type { RangeGroups } from './range-groups.js';
import type { RangeLeaderRoute } from './range-leader-route.js';
import type { RangeLane, RangeLanes } from './range-lanes.js';

/** A change of one range's replicas: add a node, remove one, or both (a move). */
export interface ReplicaChange {
  readonly add?: number;
  readonly remove?: number;
}

/** The next thing a range's leader does toward a change, read from the range's state. */
export type ReplicaStep =
  /** The configuration is joint: the leader leaves it by itself. */
  | { readonly kind: 'wait' }
  /** A learner the change does not want (a change that did not finish left it). */
  | { readonly kind: 'remove-learner'; readonly node: number }
  /** Prepare the node, then add it as a learner. */
  | { readonly kind: 'add-learner'; readonly node: number }
  /** Once the learner caught up, make it a voter. */
  | { readonly kind: 'promote'; readonly node: number }
  /** This leader is the replica to remove: hand leadership to another voter first. */
  | { readonly kind: 'hand-off' }
  | { readonly kind: 'remove'; readonly node: number }
  /** Record the voters in the range's log (its descriptor does not say them yet). */
  | { readonly kind: 'record'; readonly voters: readonly number[] }
  /** The configuration and the range's descriptor are what the change asks. */
  | { readonly kind: 'done' };

/**
 * The next step of `change` on range `d` whose applied configuration is `c`, on its leader
 * `self`. Pure: the same state gives the same step on whichever leader takes it over.
 */
export function nextReplicaStep(
  c: ConfState,
  d: RangeDescriptor,
  change: ReplicaChange,
  self: number,
): ReplicaStep {
  if (c.outgoing.length > 0) return { kind: 'wait' };
  const stray = c.learners.find((l) => l !== change.add);
  if (stray !== undefined) return { kind: 'remove-learner', node: stray };
  const { add, remove } = change;
  if (add !== undefined && !c.voters.includes(add))
    return c.learners.includes(add)
      ? { kind: 'promote', node: add }
      : { kind: 'add-learner', node: add };
  if (remove !== undefined && c.voters.includes(remove))
    return remove === self ? { kind: 'hand-off' } : { kind: 'remove', node: remove };
  const voters = [...c.voters].sort((a, b) => a - b);
  if (voters.join() !== d.replicas.join()) return { kind: 'record', voters };
  return { kind: 'done' };
}

/**
 * Why range `d`, whose applied configuration is `c`, may not split now; null when it may. A
 * split names the range's voters as the new range's replicas, and only a replica that applies
 * the split starts the new range: while a change of the range's replicas is half-way (a
 * learner added, a joint configuration, or voters that are not yet the replicas the range
 * recorded), a voter about to leave may be removed before it received the split, and the new
 * range would run one voter short of those it names. Ranges below FIRST_ALLOCATED_RANGE follow
 * the membership and record no replicas: only a joint configuration refuses them (a member
 * joining is a learner of range 0 until it caught up, and a split never names it meanwhile).
 * Pure: the product's split and the simulator's ask it alike.
 */
export function splitRefusal(c: ConfState, d: RangeDescriptor): string | null {
  const voters = [...c.voters].sort((a, b) => a - b);
  const show = (xs: readonly number[]) => `[${xs.join(', ')}]`;
  const seen = `voters ${show(voters)}, learners ${show(c.learners)}, outgoing voters ${show(c.outgoing)}`;
  const why = (what: string) =>
    `Cannot split range ${d.id}: ${what} (${seen}; recorded replicas ${show(d.replicas)}); retry once the change finished`;
  if (c.outgoing.length > 0)
    return why('its configuration is joint, a change of its voters is under way');
  if (d.id < FIRST_ALLOCATED_RANGE) return null;
  if (c.learners.length > 0) return why('it has learners, a change of its replicas is under way');
  if (voters.join() !== [...d.replicas].sort((a, b) => a - b).join())
    return why(
      'its voters are not the replicas it recorded, a change of its replicas is under way',
    );
  return null;
}

/**
 * Whether learner `node` caught up, as the range's leader sees it (`s`, its status): heard
 * from within the last election timeout, replicating, its log within `lagEntries` of the
 * leader's, and no longer recovering (a prepared copy starts recovering: promoted before it
 * finished, it would be a voter that neither votes nor counts in a quorum, and removing the old
 * replica next could leave the range no electable majority). The leader keeps a learner's
 * progress while the learner is down, so without the recent answer a learner that caught up
 * and then went down would still look caught up, and be promoted to a voter that is down: the
 * old replica's removal next would leave the range one live voter short. The promote step
 * waits for this.
 */
export function learnerCaughtUp(s: Status, node: number, lagEntries: number): boolean {
  const p = s.progress[node];
  return (
    p !== undefined &&
    p.heardRecently &&
    p.state === 'replicate' &&
    !p.catchingUp &&
    p.match > 0 &&
    p.match >= s.lastIndex - lagEntries
  );
}

/**
 * The voter a leader `self` that is to be removed hands leadership to: the best of
 * `successors` (heard from lately, then the most caught up) other than `added` (the voter just
 * promoted, which may not know yet that it votes and would let the leader's TimeoutNow pass),
 * or `added` when it is the only other; undefined when `self` is the only voter.
 */
export function handOffTarget(
  s: Status,
  self: number,
  added: number | undefined,
): number | undefined {
  const order = successors({ ...s, id: self });
  return order.find((v) => v !== added) ?? order[0];
}

/**
 * Why node `self`, holding a copy of the range (its descriptor `held`, its group's status `s`),
 * refuses to prepare it as a new replica at `asked`; null when it may (what it holds is then
 * dropped). Refused when it holds the range at a newer generation, or a copy in which it
 * votes (it gives that copy up once it learns it is none).
 */
export function prepareRefusal(
  self: number,
  held: RangeDescriptor,
  s: Status,
  asked: RangeDescriptor,
): FlotillaError | null {
  if (held.generation > asked.generation)
    return new FlotillaError(
      'WRONG_RANGE',
      `Node ${self} holds range ${held.id} at generation ${held.generation}, newer than the ${asked.generation} asked for`,
    );
  if ((s.conf.voters.includes(self) || s.conf.outgoing.includes(self)) && s.lastIndex > 0)
    return new FlotillaError(
      'REPLICA_EXISTS',
      `Node ${self} holds range ${held.id} as a voter; it gives that copy up once it learns it is none`,
    );
  return null;
}

/**
 * Refuses a change the range's recorded replicas `d` make meaningless (nothing changed yet): a
 * move to a node that holds a replica besides the one moved, a move from a node holding none
 * (unless the move already happened: then it completes as a retry), removing the last replica.
 */
export function checkReplicaChange(d: RangeDescriptor, change: ReplicaChange): void {
  const { add, remove } = change;
  const has = (n: number): boolean => d.replicas.includes(n);
  if (add !== undefined && remove !== undefined) {
    if (has(add) && has(remove))
      throw new FlotillaError(
        'REPLICA_EXISTS',
        `Cannot move range ${d.id}'s replica from node ${remove} to node ${add}: node ${add} already holds one (replicas [${d.replicas.join(', ')}])`,
      );
    if (!has(add) && !has(remove))
      throw new FlotillaError(
        'REPLICA_NOT_FOUND',
        `Cannot move range ${d.id}'s replica from node ${remove}: it holds none (replicas [${d.replicas.join(', ')}])`,
      );
  }
  if (add === undefined && remove !== undefined && d.replicas.length === 1 && has(remove))
    throw new FlotillaError(
      'MEMBERSHIP_NO_VOTERS',
      `Cannot remove node ${remove} from range ${d.id}: it is the range's only replica`,
    );
}

/** Checks a change's shape; throws BAD_REQUEST or RANGE_NOT_MOVABLE. */
export function checkChangeShape(range: RangeId, change: ReplicaChange): void {
  if (!Number.isSafeInteger(range) || range < 0)
    throw new FlotillaError('BAD_REQUEST', `"range" must be a range id, got ${String(range)}`);
  if (range < FIRST_ALLOCATED_RANGE)
    throw new FlotillaError(
      'RANGE_NOT_MOVABLE',
      `Range ${range} runs on every member (ranges below ${FIRST_ALLOCATED_RANGE} follow the membership): its replicas are not moved`,
    );
  const { add, remove } = change;
  if (add === undefined && remove === undefined)
    throw new FlotillaError('BAD_REQUEST', 'A change of replicas names a node to add or remove');
  for (const n of [add, remove])
    if (n !== undefined && (!Number.isSafeInteger(n) || n < 1))
      throw new FlotillaError('BAD_REQUEST', `A node id is a positive integer, got ${String(n)}`);
  if (add !== undefined && add === remove)
    throw new FlotillaError('INVALID_REQUEST', `A move from node ${add} to itself changes nothing`);
}

export interface RangeReplicasOptions {
  readonly selfId: number;
  readonly lanes: RangeLanes;
  readonly groups: Pick<RangeGroups, 'prepare' | 'group'>;
  readonly meta: MetaService;
  /** Forwards to the meta group's leader (null: this node leads it). */
  readonly metaForwarder: Pick<Forwarder, 'forward'>;
  /** Gets a change to the range's leader (its forwarder waits `moveTimeoutMs` for an answer). */
  readonly route: Pick<RangeLeaderRoute, 'run'>;
  /** The cluster's members as this node knows them (the first group's voters and learners). */
  readonly members: () => readonly number[];
  /**
   * This node's own credential (the Authorization header's value; undefined without
   * authentication), for the steps it takes on others: preparing the new replica, recording in
   * the map. A change forwarded to the range's leader carries its caller's instead.
   */
  readonly nodeAuthorization: string | undefined;
  /** Sends `body` to member `id`'s client port at `path`, with this node's own credential. */
  readonly sendToMember: (
    id: number,
    path: string,
    body: Json,
    signal: AbortSignal,
  ) => Promise<ForwardAnswer>;
  /** Ranges being changed or given up on this node: one thing at a time per range. */
  readonly busy: Set<RangeId>;
  readonly clock: Clock;
  /** The longest a change may take on the leader; a new replica's catch-up gets half of it. */
  readonly moveTimeoutMs: number;
  /**
   * How long the new replica has to answer the request to prepare it (default: a tenth of
   * `moveTimeoutMs`, the request timeout). A node that accepts the connection and never answers
   * (stopped with SIGSTOP, its event loop stuck) otherwise held the change, and the caller, for
   * as long as the caller waited: past its own deadline, and past `moveTimeoutMs`.
   */
  readonly prepareTimeoutMs?: number;
  /** A learner is caught up once its log is within this many entries of the leader's. */
  readonly learnerLagEntries: number;
  readonly maxKeyBytes: number;
  /** Told of a range prepared here (the retirer gives it time to be added). */
  readonly onPrepared?: (range: RangeId) => void;
  /**
   * A test's fault (node-ranges.ts, NodeTestHooks): runs after the range recorded its new replicas and
   * before the map does; a throw ends the change there.
   */
  readonly beforeMapRecord?: (d: RangeDescriptor) => Promise<void>;
  readonly log: Logger;
}

/** Steps one leader takes for one change (each is one proposal or a short wait). */
const MAX_STEPS = 256;
/** Pause between looks at a learner's progress or a joint configuration. */
const pollMs = 50;
/** How long a leader that is to be removed waits for another voter to take over. */
const handOffWaitMs = 2_000;

export class RangeReplicas {
  constructor(private readonly o: RangeReplicasOptions) {}

  /**
   * Changes range `range`'s replicas as `change` asks, on the range's leader (forwarded there
   * unless `forwarded`: a forwarded request is answered NOT_LEADER instead). Answers the
   * range's descriptor once the change is done and recorded in the map.
   */
  async change(
    range: RangeId,
    change: ReplicaChange,
    w: {
      readonly signal: AbortSignal;
      readonly authorization?: string | undefined;
      readonly forwarded?: boolean;
    },
  ): Promise<RangeDescriptor> {
    checkChangeShape(range, change);
    return this.o.route.run(
      range,
      { path: replicasPath, body: renderChange(range, change) },
      w,
      (lane) => this.lead(range, lane, change, w.signal),
      (json) =>
        parseDescriptor((json as { range?: unknown } | null)?.range, 'range', {
          maxKeyBytes: this.o.maxKeyBytes,
        }),
    );
  }

  /**
   * Starts range `range` here as a new replica on empty storage (the leader of the range asks,
   * before it adds this node as a learner), dropping what this node held of it. Refused when
   * this node is not a member, holds the range at a newer generation than `descriptor`'s, or
   * holds a copy in which it is a voter (it gives that copy up once it learns it is none).
   * `neverRan`: the range never ran here, so the copy may vote at once (RangeGroups.prepare);
   * a range taken up from the map only (range-retirer.ts), never a move's.
   */
  async prepare(
    range: RangeId,
    descriptor: RangeDescriptor,
    voters: readonly number[],
    neverRan = false,
  ): Promise<void> {
    const self = this.o.selfId;
    checkChangeShape(range, { add: self });
    if (descriptor.id !== range)
      throw new FlotillaError('BAD_REQUEST', `The descriptor is range ${descriptor.id}'s`);
    if (voters.length === 0 || voters.includes(self))
      throw new FlotillaError(
        'BAD_REQUEST',
        `A prepared replica's initial voters are the range's others, got [${voters.join(', ')}]`,
      );
    if (!this.o.members().includes(self))
      throw new FlotillaError(
        'NODE_NOT_MEMBER',
        `Node ${self} is not a member of the cluster (as it knows it): it takes no replica`,
      );
    this.claim(range, 'prepare');
    try {
      const held = this.o.groups.group(range);
      const refused =
        held === undefined
          ? null
          : prepareRefusal(self, held.range.descriptor(), held.runtime.status(), descriptor);
      if (refused !== null) throw refused;
      await this.o.groups.prepare(range, descriptor, voters, neverRan);
      this.o.lanes.all();
      this.o.onPrepared?.(range);
      this.o.log.info(
        { range, voters, neverRan },
        `prepared to receive range ${range} as a new replica${neverRan ? ' (it never ran here: it votes at once)' : ''}`,
      );
    } finally {
      this.o.busy.delete(range);
    }
  }

  private claim(range: RangeId, what: string): void {
    if (this.o.busy.has(range))
      throw new FlotillaError(
        'RANGE_CHANGE_IN_PROGRESS',
        `Cannot ${what} range ${range} on node ${this.o.selfId}: a change of its replicas is already running here`,
      );
    this.o.busy.add(range);
  }

  /** Runs the change on this leader; null when leadership moved (the new leader finishes). */
  private async lead(
    range: RangeId,
    lane: RangeLane,
    change: ReplicaChange,
    signal: AbortSignal,
  ): Promise<RangeDescriptor | null> {
    this.claim(range, 'change the replicas of');
    try {
      return await this.steps(lane, change, signal);
    } finally {
      this.o.busy.delete(range);
    }
  }

  private async steps(
    lane: RangeLane,
    change: ReplicaChange,
    signal: AbortSignal,
  ): Promise<RangeDescriptor | null> {
    const { runtime: rt, range: machine } = lane.group;
    const self = this.o.selfId;
    const until = this.o.clock.nowMs() + this.o.moveTimeoutMs;
    if (change.add !== undefined && !this.o.members().includes(change.add))
      throw new FlotillaError(
        'NODE_NOT_MEMBER',
        `Node ${change.add} is not a member of the cluster: it cannot hold a replica of range ${lane.id}`,
      );
    // Everything committed before this leader's term is applied here once the barrier passed,
    // so the configuration read below is the range's last: only this leader changes it now.
    await lane.service.readBarrier({ signal });
    checkReplicaChange(machine.descriptor(), change);
    // A node being drained takes no new replica: the placement loop would move it off again,
    // after the whole range was copied there. A move that already put it there answers as done.
    const add = change.add;
    if (
      add !== undefined &&
      !machine.descriptor().replicas.includes(add) &&
      this.o.meta.machine.draining().includes(add)
    )
      throw new FlotillaError(
        'INVALID_REQUEST',
        `Node ${add} is being drained: it takes no new replica of range ${lane.id} (the placement loop would move it off again); undrain it first (flotilla node undrain ${add})`,
      );
    for (let step = 0; step < MAX_STEPS; step++) {
      if (rt.leaderId() !== self) return null;
      if (signal.aborted) throw new FlotillaError('ABORTED', 'The change was aborted');
      if (this.o.clock.nowMs() > until)
        throw new FlotillaError(
          'TIMEOUT',
          `Range ${lane.id}'s replicas did not change within ${this.o.moveTimeoutMs} ms; retry to resume`,
        );
      const d = machine.descriptor();
      const next = nextReplicaStep(rt.status().conf, d, change, self);
      this.o.log.debug({ range: lane.id, step: next }, 'range replica change step');
      switch (next.kind) {
        case 'wait':
          await this.pause();
          break;
        case 'remove-learner':
          await this.removeLearner(lane, next.node, signal);
          break;
        case 'remove':
          await this.confChange(rt, 'remove', next.node, signal);
          break;
        case 'add-learner':
          await this.prepareOn(next.node, d, rt.status().conf.voters, signal);
          await this.confChange(rt, 'add-learner', next.node, signal);
          break;
        case 'promote':
          await this.catchUp(lane, next.node, Math.min(until, this.catchUpDeadline()), signal);
          await this.confChange(rt, 'add-voter', next.node, signal);
          break;
        case 'hand-off':
          if (await this.handOff(rt, change.add, signal)) return null;
          break;
        case 'record':
          await this.record(rt, d, next.voters, signal);
          break;
        case 'done':
          await this.o.beforeMapRecord?.(d);
          await this.recordInMap(d, until, signal);
          this.o.log.info(
            { range: d.id, generation: d.generation, replicas: d.replicas },
            `range ${d.id}'s replicas are [${d.replicas.join(', ')}]`,
          );
          return d;
      }
    }
    throw new FlotillaError(
      'INTERNAL',
      `Range ${lane.id}'s replica change took more than ${MAX_STEPS} steps`,
    );
  }

  /** Removes a learner and records the voters after (removeLearner); a change in flight waits. */
  private async removeLearner(lane: RangeLane, node: number, signal: AbortSignal): Promise<void> {
    try {
      await removeLearner(lane.group, node, { clock: this.o.clock, signal });
    } catch (err) {
      const e = toFlotillaError(err);
      // Another change in flight (the leave of a joint one): the next step reads it again.
      if (e.code !== 'MEMBERSHIP_CHANGE_PENDING') throw e;
      await this.pause();
    }
  }

  private catchUpDeadline(): number {
    return this.o.clock.nowMs() + this.o.moveTimeoutMs / 2;
  }

  private async confChange(
    rt: RaftRuntime,
    kind: 'add-learner' | 'add-voter' | 'remove',
    node: number,
    signal: AbortSignal,
  ): Promise<void> {
    try {
      await rt.proposeConfChange({ changes: [{ kind, node }] }, { signal });
    } catch (err) {
      const e = toFlotillaError(err);
      // Another change in flight (the leave of a joint one): the next step reads it again.
      if (e.code !== 'MEMBERSHIP_CHANGE_PENDING') throw e;
      await this.pause();
    }
  }

  /**
   * Asks `node` to start the range on empty storage, with the range's voters now. A node that
   * does not answer within the prepare bound fails the change NODE_NOT_RESPONDING; one that
   * could not be reached or dropped the connection, UNAVAILABLE (unreachable).
   */
  private async prepareOn(
    node: number,
    d: RangeDescriptor,
    voters: readonly number[],
    signal: AbortSignal,
  ): Promise<void> {
    const body = { range: d.id, descriptor: renderDescriptor(d, 'base64'), voters: [...voters] };
    const waitMs = this.o.prepareTimeoutMs ?? this.o.moveTimeoutMs / 10;
    const bounded = new AbortController();
    const abort = (): void => bounded.abort();
    signal.addEventListener('abort', abort, { once: true });
    const timer = this.o.clock.setTimeout(abort, waitMs);
    let answer: ForwardAnswer;
    try {
      answer = await this.o.sendToMember(node, preparePath, body, bounded.signal);
    } catch (err) {
      if (signal.aborted) throw new FlotillaError('ABORTED', 'The change was aborted');
      // Definite: the node was not added (a learner is added only once it answered), and the
      // client does not retry it, which took eight request timeouts to say the same thing.
      if (bounded.signal.aborted)
        throw new FlotillaError(
          'NODE_NOT_RESPONDING',
          `Node ${node} did not answer the request to prepare it as a new replica of range ${d.id} within ${waitMs} ms (is it stopped or overloaded?): it was not added, the range keeps its replicas; check node ${node}, then retry`,
        );
      throw unreachable(node, `prepare it for range ${d.id}`, err);
    } finally {
      this.o.clock.clearTimeout(timer);
      signal.removeEventListener('abort', abort);
    }
    if (answer.status !== 200)
      throw errorFromWire((answer.json as { error?: unknown } | null)?.error, false);
  }

  /**
   * Waits until the leader has heard from learner `node` and its log is within the lag
   * allowed; past `until`, removes the learner (a retry then prepares it again) and fails.
   */
  private async catchUp(
    lane: RangeLane,
    node: number,
    until: number,
    signal: AbortSignal,
  ): Promise<void> {
    const rt = lane.group.runtime;
    for (;;) {
      const s = rt.status();
      if (learnerCaughtUp(s, node, this.o.learnerLagEntries)) return;
      const p = s.progress[node];
      if (rt.leaderId() !== this.o.selfId)
        throw new FlotillaError(
          'NOT_LEADER',
          `Node ${this.o.selfId} no longer leads range ${lane.id}`,
          false,
          rt.leaderId(),
        );
      if (this.o.clock.nowMs() > until || signal.aborted) {
        await this.removeLearner(lane, node, signal).catch(() => undefined);
        throw new FlotillaError(
          'TIMEOUT',
          `Node ${node} did not catch up with range ${lane.id} in time (match ${p?.match ?? 0} of ${s.lastIndex}); it was removed again: retry`,
        );
      }
      await this.pause();
    }
  }

  /**
   * Hands leadership to the best of successors other than `added` (the voter just promoted,
   * which may not know yet that it votes and would let the leader's TimeoutNow pass), or to
   * `added` when it is the only other. Answers whether another voter took over in time; if
   * not, the next step tries again.
   */
  private async handOff(
    rt: RaftRuntime,
    added: number | undefined,
    signal: AbortSignal,
  ): Promise<boolean> {
    const s = rt.status();
    const self = this.o.selfId;
    const to = handOffTarget(s, self, added);
    if (to === undefined)
      throw new FlotillaError(
        'MEMBERSHIP_NO_VOTERS',
        `Node ${self} is the only voter of range ${rt.group}: it cannot be removed`,
      );
    this.o.log.info(
      { range: rt.group, to },
      `handing range ${rt.group}'s leadership to node ${to} before leaving it`,
    );
    try {
      rt.transferLeadership(to);
      await rt.waitForLeader({ other: self, signal, timeoutMs: handOffWaitMs });
      return true;
    } catch (err) {
      const e = toFlotillaError(err);
      if (signal.aborted) throw e;
      this.o.log.info(
        { range: rt.group, to, err: e.message },
        'leadership hand-off did not happen; trying again',
      );
      return false;
    }
  }

  /** Proposes the range's new voters in its own log, at the generation this leader applied. */
  private async record(
    rt: RaftRuntime,
    d: RangeDescriptor,
    voters: readonly number[],
    signal: AbortSignal,
  ): Promise<void> {
    const payload = RangeMachine.encode({ replicas: { generation: d.generation, voters } });
    let r: unknown;
    try {
      r = await rt.propose(
        encodeEnvelope({ client: '', seq: 0, timeMs: this.o.clock.nowMs(), payload }),
        { signal },
      );
    } catch (err) {
      throw toFlotillaError(err);
    }
    if (isRefusal(r)) throw new FlotillaError('INTERNAL', r.message);
    // Applied as the record, or refused because the generation moved on (a split applied
    // meanwhile): the next step reads the range again either way.
  }

  /** Records `d` in the meta group's map, again while it refuses for now, until `until`. */
  private async recordInMap(d: RangeDescriptor, until: number, signal: AbortSignal) {
    const body = { range: renderDescriptor(d, 'base64') };
    for (;;) {
      try {
        await onMetaLeader(
          this.o.metaForwarder,
          metaRecordReplicasPath,
          body,
          { signal, authorization: this.o.nodeAuthorization },
          async () => {
            await this.o.meta.recordReplicas(d, { signal });
            return { ok: true };
          },
        );
        return;
      } catch (err) {
        const e = toFlotillaError(err);
        if (signal.aborted || this.o.clock.nowMs() >= until || e.code === 'BAD_REQUEST') throw e;
      }
      await this.pause(2 * pollMs);
    }
  }

  private pause(ms = pollMs): Promise<void> {
    return new Promise((resolve) => this.o.clock.setTimeout(() => resolve(), ms));
  }
}

/** A change as the internal route takes it. */
export function renderChange(range: RangeId, change: ReplicaChange): Json {
  return {
    range,
    ...(change.add === undefined ? {} : { add: change.add }),
    ...(change.remove === undefined ? {} : { remove: change.remove }),
  };
}

/**
 * The error a step answers when `node` could not be asked (the connection dropped or was
 * refused): UNAVAILABLE, retryable, since a change retried resumes where the range is. A
 * FlotillaError (the answer of a node, or the caller's abort) is passed on as it is.
 */
export function unreachable(node: number, what: string, err: unknown): FlotillaError {
  if (err instanceof FlotillaError) return err;
  const why = err instanceof Error ? err.message : String(err);
  return new FlotillaError(
    'UNAVAILABLE',
    `Could not ask node ${node} to ${what}: ${why}; the change resumes where it stopped when retried`,
    true,
  );
}

/**
 * Removes learner `node` from the range this leader runs (`group`), then, once its
 * configuration holds no learner and is not joint, records its voters in the range's log at
 * the generation it applied (so at generation + 1, the voters unchanged). Every learner removal
 * goes this way: the removed node is sent nothing more, so its copy may never apply the
 * removal, nor the record; the record gives the range, and once the map repair copied it the
 * map, a generation at which the range counted the node in no configuration, and the node's
 * retirer gives its copy up on seeing it (range-retirer.ts, third rule). Without the record a
 * copy left by a learner whose move did not finish would run the range until its next change.
 * A record refused because the generation moved on (a split) is left: the split recorded one.
 *
 * The range's log first marks the voters due to be recorded (RecordDueCommand): a leader
 * deposed between the removal and the record leaves the mark, and the next leader's map repair
 * records the voters (range-map-repair.ts). Without it nothing told that leader a record was
 * owed: the voters are the replicas the range recorded, as before the learner was added.
 */
export async function removeLearner(
  group: { readonly runtime: RaftRuntime; readonly range: Pick<RangeMachine, 'descriptor'> },
  node: number,
  o: { readonly clock: Clock; readonly signal: AbortSignal },
): Promise<void> {
  const rt = group.runtime;
  try {
    await markRecordDue(group, o);
    await rt.proposeConfChange({ changes: [{ kind: 'remove', node }] }, { signal: o.signal });
  } catch (err) {
    throw toFlotillaError(err);
  }
  await recordVoters(group, o);
}

/**
 * Marks the range's voters due to be recorded (RecordDueCommand) at the generation it applied; a
 * mark refused because the generation moved on meanwhile is made again at the new one.
 */
async function markRecordDue(
  group: { readonly runtime: RaftRuntime; readonly range: Pick<RangeMachine, 'descriptor'> },
  o: { readonly clock: Clock; readonly signal: AbortSignal },
): Promise<void> {
  for (let attempt = 0; attempt < 3; attempt++) {
    const generation = group.range.descriptor().generation;
    const payload = RangeMachine.encode({ recordDue: { generation } });
    const r = await group.runtime.propose(
      encodeEnvelope({ client: '', seq: 0, timeMs: o.clock.nowMs(), payload }),
      { signal: o.signal },
    );
    if (isRefusal(r)) throw new FlotillaError('INTERNAL', r.message);
    // Refused WRONG_RANGE: the generation moved on (a record or a split) since it was read.
    if ((r as { kind?: unknown } | null)?.kind !== 'error') return;
  }
  throw new FlotillaError(
    'RANGE_CHANGE_IN_PROGRESS',
    `Range ${group.range.descriptor().id}'s generation kept moving while a learner was to be removed; retry`,
  );
}

/**
 * Records the range's voters in its log at its next generation, when its configuration has no
 * learner and is not joint (else nothing: a change is under way). A voter left unrecorded (a
 * move that stopped after promoting its new replica) is named by the range's descriptor, and
 * so by the map, only once recorded.
 */
export async function recordVoters(
  group: { readonly runtime: RaftRuntime; readonly range: Pick<RangeMachine, 'descriptor'> },
  o: { readonly clock: Clock; readonly signal: AbortSignal },
): Promise<void> {
  const rt = group.runtime;
  const c = rt.status().conf;
  if (c.learners.length > 0 || c.outgoing.length > 0) return;
  const d = group.range.descriptor();
  const voters = [...c.voters].sort((a, b) => a - b);
  const payload = RangeMachine.encode({ replicas: { generation: d.generation, voters } });
  try {
    await rt.propose(encodeEnvelope({ client: '', seq: 0, timeMs: o.clock.nowMs(), payload }), {
      signal: o.signal,
    });
  } catch (err) {
    throw toFlotillaError(err);
  }
}
