// Replica moves in the simulator (docs/DESIGN.md, "Ranges in a node"): every so often in the
// fault phase, one replica of a range split off range 0 moves to a node that holds none, as an
// operator's move would. The steps are the product's: each is chosen by `nextReplicaStep` from
// the configuration the range's leader applied and the descriptor its log recorded, and taken
// on that leader as RangeReplicas takes it (prepare the new node, add it as a learner, promote
// it once `learnerCaughtUp`, hand leadership to `handOffTarget` when the leader is the one to
// go, remove the old replica, record the voters in the range's log). A leader new to the move
// first passes a read barrier, as the product's does, so the configuration it reads is the
// range's last. The new node prepares through the product's RangeGroups.prepare, and every
// node gives up what it is no longer a replica of with the product's RangeRetirer (sim-node.ts).
//
// With `concurrentMoves` above 1 the simulation runs several movers, each moving a range no
// other one is, as the placement loop runs drain moves (placement-loop.ts).
//
// Differences from the product, none in the step logic: a move gives up after its bound and
// leaves the range as it is, for the next move to resume from (a stray learner is removed
// first, as a retried change does). As the product's catch-up does, a learner that has not
// caught up within half the bound (or by the bound) is removed again before the move gives up:
// left in place, a learner whose node lost its prepared copy (a crash before the first
// snapshot arrived) would keep the range's leader sending to it, and its group from quiescing. With the meta group (sim-meta.ts) the last step records
// the range's new replicas in the map, as the product's does; without it there is no map.

import { FlotillaError } from '../base/errors.js';
import { isRefusal } from '../host/contracts.js';
import { encodeEnvelope } from '../host/envelope.js';
import type { ConfChangeSingle, Rng } from '../raft/index.js';
import { RangeMachine } from '../ranges/range-machine.js';
import { FIRST_ALLOCATED_RANGE, type RangeId } from '../ranges/types.js';
import {
  checkReplicaChange,
  handOffTarget,
  learnerCaughtUp,
  nextReplicaStep,
  removeLearner,
  type ReplicaChange,
} from '../server/range-replicas.js';
import { latestDescriptors } from './range-checks.js';
import { recordReplicasInMap } from './sim-meta.js';
import type { SimNode } from './sim-node.js';

/** The step function the mover follows: the product's, unless a test plants another. */
export type ReplicaStepFn = typeof nextReplicaStep;

/** What the mover needs from the simulation. */
export interface MoverHost {
  readonly nodes: readonly SimNode[];
  /** The ranges the movers other than `self` are moving (absent: there are no others). */
  movedElsewhere?(self: Mover): readonly RangeId[];
  now(): number;
  fail(what: string, err: unknown): void;
  note(line: string): void;
  count(what: 'moves' | 'moveSteps' | 'movesAbandoned' | 'movesBeside'): void;
}

export interface MoverOptions {
  /** Defaults to the product's nextReplicaStep. */
  readonly step?: ReplicaStepFn;
  /** A learner is promoted once its log is within this many entries of the leader's. */
  readonly lagEntries: number;
  /** A move not done within this long is abandoned (the next one resumes from the range). */
  readonly moveTimeoutMs: number;
  /** The bound on one proposal or barrier. */
  readonly requestTimeoutMs: number;
}

interface Move {
  readonly range: RangeId;
  readonly change: Required<ReplicaChange>;
  readonly untilMs: number;
  /** The leader (node and term) that passed the read barrier for this move. */
  barrier: string;
  /** With the meta group: the map took the range's new replicas (the move's last step). */
  recorded: boolean;
  /** The learner must have caught up by then (-1: no promote step seen yet). */
  catchUpUntilMs: number;
}

export class Mover {
  private move: Move | null = null;
  /**
   * A step's proposal, barrier or prepare is in flight until this time: the next waits for it
   * or, should its node lose power (its promises never settle), for the bound.
   */
  private inFlightUntilMs = -1;
  private readonly step: ReplicaStepFn;

  constructor(
    private readonly rng: Rng,
    private readonly host: MoverHost,
    private readonly o: MoverOptions,
  ) {
    this.step = o.step ?? nextReplicaStep;
  }

  /** Whether a move is under way. */
  active(): boolean {
    return this.move !== null;
  }

  /** The range whose replica this mover is moving, or undefined. */
  moving(): RangeId | undefined {
    return this.move?.range;
  }

  /** Starts moving a random replica of a random range to a node without one, unless moving. */
  begin(): void {
    if (this.move !== null) return;
    const nodes = this.host.nodes;
    const elsewhere = this.host.movedElsewhere?.(this) ?? [];
    const ranges = [...latestDescriptors(nodes).values()].filter(
      (d) => d.id >= FIRST_ALLOCATED_RANGE && !elsewhere.includes(d.id),
    );
    if (ranges.length === 0) return;
    const d = ranges[this.rng.int(ranges.length)];
    if (d === undefined) return;
    const others = nodes.map((n) => n.id).filter((id) => !d.replicas.includes(id));
    const remove = d.replicas[this.rng.int(d.replicas.length)];
    const add = others[this.rng.int(Math.max(1, others.length))];
    if (remove === undefined || add === undefined) return;
    const change = { add, remove };
    try {
      checkReplicaChange(d, change);
    } catch (err) {
      if (err instanceof FlotillaError) return;
      throw err;
    }
    this.move = {
      range: d.id,
      change,
      untilMs: this.host.now() + this.o.moveTimeoutMs,
      barrier: '',
      recorded: false,
      catchUpUntilMs: -1,
    };
    this.host.note(`move of range ${d.id}'s replica from node ${remove} to node ${add} begins`);
    if (elsewhere.length > 0) this.host.count('movesBeside');
  }

  /** Takes the move's next step on the range's leader, as RangeReplicas would. */
  next(): void {
    const m = this.move;
    const now = this.host.now();
    if (m === null || now < this.inFlightUntilMs) return;
    // Past the bound, a learner still to be removed again gets one more bound for that.
    if (now > m.untilMs + (m.catchUpUntilMs < 0 ? 0 : this.o.moveTimeoutMs))
      return this.abandon(m, 'not done in time');
    const leader = this.host.nodes.find(
      (n) => n.up && n.rangeGroup(m.range)?.runtime.isLeader() === true,
    );
    const group = leader?.rangeGroup(m.range);
    const service = leader?.rangeService(m.range);
    if (leader === undefined || group === undefined || service === undefined) {
      if (now > m.untilMs && m.catchUpUntilMs < 0) this.abandon(m, 'not done in time');
      return;
    }
    // As RangeReplicas: the change waits while a split (or another change) holds the range.
    if (leader.busy.has(m.range)) return;
    const rt = group.runtime;
    const s = rt.status();
    const key = `${leader.id}/${s.term}`;
    if (m.barrier !== key) {
      // Everything committed before this leader's term is applied once the barrier passed.
      this.run(
        leader,
        m.range,
        service.readBarrier({ timeoutMs: this.o.requestTimeoutMs }).then(() => (m.barrier = key)),
      );
      return;
    }
    const next = this.step(s.conf, group.range.descriptor(), m.change, leader.id);
    if (now > m.untilMs && next.kind !== 'promote') return this.abandon(m, 'not done in time');
    if (next.kind !== 'wait') this.host.count('moveSteps');
    const confChange = (kind: ConfChangeSingle['kind'], node: number): Promise<unknown> =>
      rt.proposeConfChange({ changes: [{ kind, node }] }, { timeoutMs: this.o.requestTimeoutMs });
    switch (next.kind) {
      case 'wait':
        return;
      case 'remove-learner':
        return this.run(leader, m.range, this.removeLearner(leader, group, next.node));
      case 'remove':
        return this.run(leader, m.range, confChange('remove', next.node));
      case 'add-learner': {
        const target = this.host.nodes.find((n) => n.id === next.node);
        if (target === undefined || !target.up) return;
        const d = group.range.descriptor();
        const voters = s.conf.voters;
        return this.run(
          leader,
          m.range,
          target.prepareRange(m.range, d, voters).then(() => confChange('add-learner', next.node)),
        );
      }
      case 'promote': {
        if (learnerCaughtUp(s, next.node, this.o.lagEntries))
          return this.run(leader, m.range, confChange('add-voter', next.node));
        // As RangeReplicas.catchUp: half the bound to catch up, then removed again.
        if (m.catchUpUntilMs < 0)
          m.catchUpUntilMs = Math.min(m.untilMs, now + this.o.moveTimeoutMs / 2);
        if (now <= m.catchUpUntilMs) return;
        const removed = this.removeLearner(leader, group, next.node).then(() =>
          this.abandon(m, `node ${next.node} did not catch up in time; it was removed again`),
        );
        return this.run(leader, m.range, removed);
      }
      case 'hand-off': {
        const to = handOffTarget(s, leader.id, m.change.add);
        if (to === undefined) throw new Error(`range ${m.range}: its leader is its only voter`);
        try {
          rt.transferLeadership(to);
        } catch (err) {
          if (!(err instanceof FlotillaError)) throw err;
        }
        return;
      }
      case 'record': {
        const payload = RangeMachine.encode({
          replicas: { generation: group.range.descriptor().generation, voters: next.voters },
        });
        const envelope = encodeEnvelope({
          client: '',
          seq: 0,
          timeMs: leader.clock.nowMs(),
          payload,
        });
        return this.run(
          leader,
          m.range,
          rt.propose(envelope, { timeoutMs: this.o.requestTimeoutMs }).then((r) => {
            // Applied as the record, or refused WRONG_RANGE as the generation moved on (a
            // split applied meanwhile): the next step reads the range again either way.
            if (isRefusal(r))
              throw new Error(`recording range ${m.range}'s voters was refused: ${r.message}`);
          }),
        );
      }
      case 'done': {
        const d = group.range.descriptor();
        const recorder = leader.metaRecorder();
        if (recorder !== null && !m.recorded) {
          // As RangeReplicas: the move ends once the map holds the range's new replicas.
          const signal = leader.signalAfter(this.o.requestTimeoutMs);
          return this.run(
            leader,
            m.range,
            recordReplicasInMap(recorder, d, signal).then(() => (m.recorded = true)),
          );
        }
        this.host.note(
          `move of range ${m.range} done: replicas [${d.replicas.join(', ')}] at generation ${d.generation}`,
        );
        this.host.count('moves');
        this.move = null;
        return;
      }
    }
  }

  /**
   * The product's learner removal (range-replicas.ts removeLearner): the voters are recorded
   * at the next generation after, so the removed node's copy learns from the map to give up.
   */
  private removeLearner(
    leader: SimNode,
    group: NonNullable<ReturnType<SimNode['rangeGroup']>>,
    node: number,
  ): Promise<void> {
    return removeLearner(group, node, {
      clock: leader.clock,
      signal: leader.signalAfter(this.o.requestTimeoutMs),
    });
  }

  private abandon(m: Move, why: string): void {
    if (this.move !== m) return;
    this.host.note(`move of range ${m.range} abandoned: ${why}`);
    this.host.count('movesAbandoned');
    this.move = null;
  }

  /**
   * Runs one step's work with the range claimed on the leader (its retirer leaves the range
   * alone meanwhile); a refusal or a timeout is what the product's change would retry on.
   */
  private run(leader: SimNode, range: RangeId, work: Promise<unknown>): void {
    // A prepare then an add: two requests' worth.
    const untilMs = this.host.now() + 2 * this.o.requestTimeoutMs + 1;
    this.inFlightUntilMs = untilMs;
    leader.busy.add(range);
    const gen = leader.gen;
    work
      .catch((err: unknown) => {
        if (!(err instanceof FlotillaError)) this.host.fail(`move step on node ${leader.id}`, err);
      })
      .finally(() => {
        if (this.inFlightUntilMs === untilMs) this.inFlightUntilMs = -1;
        if (leader.gen === gen) leader.busy.delete(range);
      });
  }
}
