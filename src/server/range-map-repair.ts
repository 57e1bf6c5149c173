// The meta map repairs itself (docs/DESIGN.md, "Ranges in a node", "The map repairs itself").
// A change of a range is recorded twice, in the range's own log and then in the meta group's
// map, and a node can stop between the two (a move's leader killed after the range recorded
// its new replicas, a split whose request gave up after the split applied). The range is the
// authority, so each range's leader compares, every `checkEveryMs` and as soon as it becomes
// leader (looked at every `leaderCheckMs`), the descriptor and children its log applied with
// the map's copy, and sends
// the record the map lacks next (src/ranges/map-repair.ts). The map takes a record only when it
// is newer, so a repair racing the change's own record, or another leader's repair, changes
// nothing twice and never takes the map back.
//
// The same pass removes a stray learner: one in a range's configuration that no change under
// way wants (a move whose leader died, or whose request gave up, between adding the new replica
// as a learner and promoting it). Such a learner refuses the range's splits (splitRefusal) and
// is run as a copy the map does not name, until the range's next change removes it (its first
// step), which may never come. A change runs on the range's leader only, holding the range's
// lock (`busy`), so a learner the leader has seen for `strayLearnerGraceMs` while it led the
// range and held no change on it is one no change wants; the grace covers a change on its way
// from a former leader to this one (forwarded after a hand-off), which, if it does want the
// learner, prepares and adds it again. Removing a learner changes no quorum, so this is safe
// whatever the learner holds; ranges below FIRST_ALLOCATED_RANGE are left alone (their
// learners are members joining, which the membership promotes). The removal is followed by a
// record of the range's voters at its next generation (removeLearner, range-replicas.ts), which
// the next pass copies into the map: the removed node is sent nothing more, and it is by that
// newer generation without it that its copy learns to give the range up (range-retirer.ts).
//
// And it records voters the range never recorded: a move that stopped between promoting its
// new replica and removing the old one (its request gave up, its leader lost the range) leaves
// one voter more than the range's descriptor names. The range then refuses every split (its
// voters are not the replicas it recorded), and the map names neither the new replica nor the
// count that makes a quorum, until the range's next change, which may never come. After the
// same grace, with no learner, no joint configuration and no change held, the leader records
// the voters as they are at the next generation (recordVoters), and the next pass copies them
// into the map. It records them too when the range's log marked them due (RangeMachine's
// recordDue): a learner's removal whose own record never followed (its leader deposed between
// the two) leaves voters that are the recorded replicas, and nothing else would show it. Recording changes no configuration; the placement loop may then move replicas
// as for any range.

import type { Logger } from 'pino';
import { toFlotillaError } from '../api/errors.js';
import { metaRecordSplitPath, renderDescriptor } from '../api/range-routes.js';
import { metaRecordReplicasPath } from '../api/replica-routes.js';
import type { Clock } from '../host/contracts.js';
import type { ConfState } from '../raft/index.js';
import { nextMapRecord, type MapRecord } from '../ranges/map-repair.js';
import { FIRST_ALLOCATED_RANGE, type RangeDescriptor, type RangeId } from '../ranges/types.js';
import type { Forwarder } from './forward.js';
import type { MetaService } from './meta-service.js';
import { onMetaLeader } from './forward.js';
import type { RangeLane } from './range-lanes.js';
import { recordVoters, removeLearner } from './range-replicas.js';
import { Periodic } from './periodic.js';

export interface MapRepairOptions {
  readonly selfId: number;
  /** The ranges this node runs (only each lane's id and group are read). */
  readonly lanes: { all(): readonly Pick<RangeLane, 'id' | 'group'>[] };
  readonly meta: Pick<MetaService, 'machine' | 'recordSplit' | 'recordReplicas'>;
  /** Forwards to the meta group's leader (null: this node leads it). */
  readonly metaForwarder: Pick<Forwarder, 'forward'>;
  /** This node's own credential for the meta routes (undefined without authentication). */
  readonly nodeAuthorization: string | undefined;
  /**
   * Ranges a change or a split is running on here: that change records its own result. The
   * repair holds a range's entry itself while it removes a stray learner.
   */
  readonly busy: Set<RangeId>;
  readonly clock: Clock;
  readonly checkEveryMs: number;
  /** How often it looks for ranges this node has just come to lead (a pass follows at once). */
  readonly leaderCheckMs: number;
  /** How long one record may take (the meta group's leader may be elsewhere). */
  readonly recordTimeoutMs: number;
  /**
   * How long a learner no change wants stays before the range's leader removes it: longer
   * than a change takes to reach a new leader after a hand-off. Absent: stray learners are
   * left to the range's next change, and unrecorded voters too.
   */
  readonly strayLearnerGraceMs?: number;
  readonly log: Logger;
}

/**
 * The learners of range `range`'s configuration `c` that a leader holding no change on the
 * range may remove: every learner of a range split off range 0 while the configuration is not
 * joint (a joint one is left by its leader first). Pure.
 */
export function strayLearners(range: RangeId, c: ConfState): readonly number[] {
  if (range < FIRST_ALLOCATED_RANGE || c.outgoing.length > 0) return [];
  return c.learners;
}

/**
 * The voters of range `range`'s configuration `c`, ascending, when they are to be recorded and
 * no change shows in the configuration (no learner, not joint): they are not the replicas its
 * descriptor `d` records, or a learner's removal marked them due (`due`, RangeMachine's
 * recordDue) and its record never followed. Null otherwise. Pure.
 */
export function unrecordedVoters(
  range: RangeId,
  c: ConfState,
  d: Pick<RangeDescriptor, 'replicas'>,
  due: boolean,
): readonly number[] | null {
  if (range < FIRST_ALLOCATED_RANGE || c.outgoing.length > 0 || c.learners.length > 0) return null;
  const voters = [...c.voters].sort((a, b) => a - b);
  if (due) return voters;
  return voters.join() === [...d.replicas].sort((a, b) => a - b).join() ? null : voters;
}

/** Records sent in one pass at most: the rest wait for the next (a pass stays short). */
const MAX_RECORDS_PER_PASS = 64;

export class MapRepair {
  private readonly periodic: Periodic;
  private readonly leaderWatch: Periodic;
  /** The ranges this node led at the last look, to see which it has just come to lead. */
  private led = new Set<RangeId>();
  private running = false;
  /**
   * Per range led here with no change held on it: each stray learner and when it was first
   * seen so. Invariant: only ranges this node led, not busy, at the last pass.
   */
  private readonly strays = new Map<RangeId, Map<number, number>>();
  /**
   * Per range led here with no change held on it whose voters it never recorded: when first
   * seen so. Invariant as `strays`'.
   */
  private readonly unrecorded = new Map<RangeId, number>();
  /** Records this node sent that the map took or already held, since start. */
  repaired = 0;
  /** Stray learners this node removed, since start. */
  straysRemoved = 0;
  /** Ranges whose unrecorded voters this node recorded, since start. */
  votersRecorded = 0;
  /** Of those, the ones a learner's removal had marked due (its own record never made). */
  marksRecorded = 0;

  constructor(private readonly o: MapRepairOptions) {
    this.periodic = new Periodic(o.clock, o.checkEveryMs, () => void this.pass());
    this.leaderWatch = new Periodic(o.clock, o.leaderCheckMs, () => {
      if (this.newlyLed()) void this.pass();
    });
  }

  start(): void {
    this.periodic.start();
    this.leaderWatch.start();
  }

  stop(): void {
    this.periodic.stop();
    this.leaderWatch.stop();
  }

  /** Whether this node leads a range it did not lead at the last look. */
  private newlyLed(): boolean {
    const now = new Set<RangeId>();
    for (const lane of this.o.lanes.all())
      if (lane.group.runtime.leaderId() === this.o.selfId) now.add(lane.id);
    const gained = [...now].some((id) => !this.led.has(id));
    this.led = now;
    return gained;
  }

  /** One look at every range this node leads; answers how many records the map took. */
  async pass(): Promise<number> {
    if (this.running) return 0;
    this.running = true;
    let took = 0;
    try {
      // One record per range a pass: the map this node reads may lag the one that took it,
      // and the range's next record (if any) goes at the next pass.
      const seen = new Set<RangeId>();
      for (let sent = 0; sent < MAX_RECORDS_PER_PASS; sent++) {
        const next = this.nextRecord(seen);
        if (next === null) break;
        seen.add(next.lane.id);
        if (await this.send(next.lane, next.record)) took++;
      }
      // Looked at without a wait: a pass that finds nothing to do ends within its turn.
      for (const d of this.dueStrays()) await this.removeStray(d.lane, d.node, d.strayMs);
      for (const d of this.dueUnrecorded()) await this.recordUnrecorded(d.lane, d.waitedMs);
    } finally {
      this.running = false;
    }
    this.repaired += took;
    return took;
  }

  /** The first range led here whose map copy is older, with the record it lacks next. */
  private nextRecord(seen: ReadonlySet<RangeId>): { lane: RepairedLane; record: MapRecord } | null {
    const map = this.o.meta.machine.map();
    if (map === null) return null;
    for (const lane of this.o.lanes.all()) {
      const rt = lane.group.runtime;
      if (seen.has(lane.id) || this.o.busy.has(lane.id)) continue;
      if (rt.leaderId() !== this.o.selfId) continue;
      // A leader just elected may not have applied its range's last changes yet.
      if (rt.appliedIndex() < rt.status().commit) continue;
      const own = ownDescriptor(lane);
      const record = nextMapRecord(own, lane.group.range.children(), map.get(own.id));
      if (record.kind === 'split' || record.kind === 'replicas') return { lane, record };
    }
    return null;
  }

  /** The learners that stayed stray past the grace, on the ranges led here. */
  private dueStrays(): { lane: RepairedLane; node: number; strayMs: number }[] {
    const graceMs = this.o.strayLearnerGraceMs;
    if (graceMs === undefined) return [];
    const now = this.o.clock.nowMs();
    const due: { lane: RepairedLane; node: number; strayMs: number }[] = [];
    const looked = new Set<RangeId>();
    for (const lane of this.o.lanes.all()) {
      const rt = lane.group.runtime;
      if (this.o.busy.has(lane.id) || rt.leaderId() !== this.o.selfId) continue;
      const stray = strayLearners(lane.id, rt.status().conf);
      if (stray.length === 0) continue;
      looked.add(lane.id);
      const before = this.strays.get(lane.id);
      const seen = new Map<number, number>();
      for (const node of stray) {
        const sinceMs = before?.get(node) ?? now;
        seen.set(node, sinceMs);
        if (now - sinceMs >= graceMs) due.push({ lane, node, strayMs: now - sinceMs });
      }
      this.strays.set(lane.id, seen);
    }
    // A range not looked at (no longer led, busy, or no learner) starts its grace again.
    for (const id of [...this.strays.keys()]) if (!looked.has(id)) this.strays.delete(id);
    return due;
  }

  /** The ranges led here whose voters stayed unrecorded past the grace. */
  private dueUnrecorded(): { lane: RepairedLane; waitedMs: number }[] {
    const graceMs = this.o.strayLearnerGraceMs;
    if (graceMs === undefined) return [];
    const now = this.o.clock.nowMs();
    const due: { lane: RepairedLane; waitedMs: number }[] = [];
    const looked = new Set<RangeId>();
    for (const lane of this.o.lanes.all()) {
      const rt = lane.group.runtime;
      if (this.o.busy.has(lane.id) || rt.leaderId() !== this.o.selfId) continue;
      // A leader just elected may not have applied its range's last record yet.
      if (rt.appliedIndex() < rt.status().commit) continue;
      if (unrecorded(lane) === null) continue;
      looked.add(lane.id);
      const sinceMs = this.unrecorded.get(lane.id) ?? now;
      this.unrecorded.set(lane.id, sinceMs);
      if (now - sinceMs >= graceMs) due.push({ lane, waitedMs: now - sinceMs });
    }
    for (const id of [...this.unrecorded.keys()]) if (!looked.has(id)) this.unrecorded.delete(id);
    return due;
  }

  private async recordUnrecorded(lane: RepairedLane, waitedMs: number): Promise<void> {
    const rt = lane.group.runtime;
    // Read again under the range's lock: a change may have started since the look.
    if (this.o.busy.has(lane.id) || rt.leaderId() !== this.o.selfId) return;
    const voters = unrecorded(lane);
    if (voters === null) return;
    const due = lane.group.range.recordDue();
    this.o.busy.add(lane.id);
    const bound = this.bound();
    try {
      await recordVoters(lane.group, { clock: this.o.clock, signal: bound.signal });
      this.unrecorded.delete(lane.id);
      this.votersRecorded++;
      if (due) this.marksRecorded++;
      this.o.log.info(
        { range: lane.id, voters, waitedMs, due },
        `recorded range ${lane.id}'s voters [${voters.join(', ')}]: ${due ? "a learner's removal" : 'a change'} left them unrecorded for ${waitedMs} ms`,
      );
    } catch (err) {
      this.o.log.debug(
        { range: lane.id, err: toFlotillaError(err).message },
        'unrecorded voters not recorded; will retry',
      );
    } finally {
      bound.clear();
      this.o.busy.delete(lane.id);
    }
  }

  private async removeStray(lane: RepairedLane, node: number, strayMs: number): Promise<void> {
    const rt = lane.group.runtime;
    // Read again under the range's lock: a change may have started since the look.
    if (this.o.busy.has(lane.id) || rt.leaderId() !== this.o.selfId) return;
    if (!strayLearners(lane.id, rt.status().conf).includes(node)) return;
    this.o.busy.add(lane.id);
    // Bounded on the node's clock, as a record is (send).
    const bound = this.bound();
    try {
      await removeLearner(lane.group, node, { clock: this.o.clock, signal: bound.signal });
      this.strays.get(lane.id)?.delete(node);
      this.straysRemoved++;
      this.o.log.info(
        { range: lane.id, node, strayMs },
        `removed node ${node} from range ${lane.id}: a learner no change wanted for ${strayMs} ms`,
      );
    } catch (err) {
      this.o.log.debug(
        { range: lane.id, node, err: toFlotillaError(err).message },
        'stray learner not removed; will retry',
      );
    } finally {
      bound.clear();
      this.o.busy.delete(lane.id);
    }
  }

  /**
   * A signal that aborts after `recordTimeoutMs` on the node's clock (`clear` when done): a
   * simulated node's repair stays deterministic, and an ordinary timer would hold the
   * controller until it fired (api/deadline.ts).
   */
  private bound(): { readonly signal: AbortSignal; clear(): void } {
    const c = new AbortController();
    const timer = this.o.clock.setTimeout(
      () =>
        c.abort(new DOMException(`No answer within ${this.o.recordTimeoutMs} ms`, 'TimeoutError')),
      this.o.recordTimeoutMs,
    );
    return { signal: c.signal, clear: () => this.o.clock.clearTimeout(timer) };
  }

  /** Sends one record; answers whether the map took it (or already knew it). */
  private async send(lane: RepairedLane, r: MapRecord): Promise<boolean> {
    // The bound runs on the node's clock, as the passes do.
    const bound = this.bound();
    const signal = bound.signal;
    const w = { signal, authorization: this.o.nodeAuthorization };
    try {
      if (r.kind === 'split') {
        const body = {
          left: renderDescriptor(r.left, 'base64'),
          right: renderDescriptor(r.right, 'base64'),
        };
        await onMetaLeader(this.o.metaForwarder, metaRecordSplitPath, body, w, async () => {
          await this.o.meta.recordSplit(r.left, r.right, { signal });
          return { ok: true };
        });
        this.o.log.info(
          { range: lane.id, left: r.left.generation, right: r.right.id },
          `range map repaired: recorded range ${lane.id}'s split off range ${r.right.id}`,
        );
      } else if (r.kind === 'replicas') {
        const body = { range: renderDescriptor(r.range, 'base64') };
        await onMetaLeader(this.o.metaForwarder, metaRecordReplicasPath, body, w, async () => {
          await this.o.meta.recordReplicas(r.range, { signal });
          return { ok: true };
        });
        this.o.log.info(
          { range: lane.id, generation: r.range.generation, replicas: r.range.replicas },
          `range map repaired: recorded range ${lane.id} at generation ${r.range.generation}`,
        );
      }
      return true;
    } catch (err) {
      // Refused for now (an earlier record is missing), or the meta group is unreachable:
      // the next pass tries again.
      this.o.log.debug(
        { range: lane.id, err: toFlotillaError(err).message },
        'range map repair not taken; will retry',
      );
      return false;
    } finally {
      bound.clear();
    }
  }
}

/** What the repair reads of a range this node runs. */
type RepairedLane = Pick<RangeLane, 'id' | 'group'>;

/** The voters range `lane` is to record (unrecordedVoters), as this node applied it. */
function unrecorded(lane: RepairedLane): readonly number[] | null {
  const r = lane.group.range;
  return unrecordedVoters(lane.id, lane.group.runtime.status().conf, r.descriptor(), r.recordDue());
}

/** The range's descriptor as its log applied it, range 0's replicas being its voters. */
function ownDescriptor(lane: RepairedLane): RangeDescriptor {
  const d = lane.group.range.descriptor();
  if (d.replicas.length > 0) return d;
  const voters = [...lane.group.runtime.status().conf.voters].sort((a, b) => a - b);
  return { ...d, replicas: voters };
}
