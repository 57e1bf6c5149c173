// A node giving up the ranges it is no longer a replica of (docs/DESIGN.md, "Ranges in a
// node"). Every check, for each range split off range 0 that runs here, it decides from what
// it knows whether it is out of the range, and if so retires it (range-groups.ts: recorded
// as given up, group stopped, directory deleted) and drops its lane (its watches end, told to
// resume elsewhere). Never while it is in the range's configuration as the range's log says,
// except in the third case below, where that configuration is provably stale.
//
// Out, when one of these holds (`retireVerdict`, a pure function):
//  1. it applied its removal: it is in no configuration it applied, and it was in one before
//     (seen at an earlier check), or the descriptor it applied names it among the replicas
//     (recorded after the configuration that made it a voter, so a later one removed it). Not
//     for a range prepared here that has not yet applied a configuration naming this node:
//     what it applied then (a leader's snapshot) may be from before this node was added back;
//  2. it is in no configuration it applied and has made no progress (no entry applied, no
//     snapshot byte received) for `abandonAfterMs`: a replica prepared and never added;
//  3. it is in the configuration it applied (a voter, or a learner: one whose catching up timed
//     out is removed again), but the meta group's map holds the range at a newer generation
//     whose replicas leave it out: it was removed while down or cut off and never applied its
//     removal (a removed node is sent nothing more). Safe because the range records its
//     replicas only with no learner in its configuration, so at that newer generation the
//     range counted this node in none; it is added back only through a prepare, which a copy
//     that believes it votes refuses and which replaces any other copy. Every generation the
//     range records comes with no learner in its configuration: a move's record waits for
//     its stray learners to go, a split is refused while any learner is there, and a learner's
//     removal is followed by a record of the voters (removeLearner, range-replicas.ts; made by
//     the next leader's map repair when its own leader was deposed first, from the mark the
//     removal leaves), so the copy a removed learner leaves (sent nothing more) sees such a
//     generation in the map.
//     A prepared copy is judged by 1 only once it applied a configuration naming it at the
//     generation it was prepared at or later, and by 3 against that generation rather than
//     its own: the leader's first snapshot may be older than the change that removed it
//     before, and name it a voter (so its own generation is older than the map's while the
//     move that prepared it is still under way). Judged against the prepare's generation it
//     is never given up while that move may still promote it: the map gets no newer
//     generation until the move recorded (it would name it) or its learner was removed. Such
//     a copy, left by a move that did not finish, would otherwise believe it votes and be
//     judged by no rule. What a prepared copy applied comes from the range's leaders only:
//     nothing starts it from a split's seed, its parent's children (range-groups.ts) or the map
//     read of a recovering node (node-recovery.ts), whose replicas would name it a voter of a
//     configuration the range left long ago.
//
// A copy recovering lost data (node-recovery.ts: its core has not caught up, or it has not
// applied what it knew committed then) is judged by 2 and 3 only, and only once the meta group
// here caught up: what it applied is a past the range moved on from (a removal since undone,
// a configuration from a split's seed), so 1 would read a removal that may no longer hold;
// 2 reads no past, only that nothing arrives (a replica prepared here and never added); the
// map, read after the meta group caught up, is at least as new as the node's start. A copy
// the range removed while the node was down, or prepared and never added, is never sent what
// would end its recovery, so without 2 and 3 it would hold the node's recovery open for ever.

import type { Logger } from 'pino';
import type { Clock } from '../host/contracts.js';
import type { ConfState } from '../raft/index.js';
import { FIRST_ALLOCATED_RANGE, type RangeDescriptor, type RangeId } from '../ranges/types.js';
import { Periodic } from './periodic.js';
import type { RangeGroup, RangeGroups } from './range-groups.js';
import type { RangeDirs } from './range-dirs.js';
import type { RangeLanes } from './range-lanes.js';

/** What the retirer knows of one range running here, at one check. */
export interface RetireInput {
  readonly self: number;
  /** The configuration this node applied. */
  readonly conf: ConfState;
  /** The range's descriptor as this node applied it. */
  readonly descriptor: RangeDescriptor;
  /** The meta map's descriptor of the range (undefined: not in the map here). */
  readonly mapped: RangeDescriptor | undefined;
  /** This node was in the configuration at an earlier check of this group. */
  readonly wasMember: boolean;
  /**
   * Prepared here as a new replica, and not yet in a configuration it applied at the range's
   * generation of then or later (what it applied may be a leader's older snapshot).
   */
  readonly preparing: boolean;
  /** While `preparing`: the range's generation it was prepared at (absent: not judged by 3). */
  readonly preparedAt?: number;
  /** How long since this node last made progress in the range (entries, snapshot bytes). */
  readonly idleMs: number;
  readonly abandonAfterMs: number;
  /** The copy is recovering lost data and has not caught up (absent: false). */
  readonly recovering?: boolean;
  /** The meta map here is current enough to judge a recovering copy by (absent: true). */
  readonly mapCurrent?: boolean;
}

/**
 * The ranges of the map (`map`, as this node applied it) that name `self` among their replicas
 * and that nothing here holds or handles: not running or being started (`here`), not given up,
 * not busy, and with at least one other replica. Such a range is one this node never started:
 * it was down when the split that named it committed and was removed from the parent before it
 * caught up (a removed node is sent nothing more, so it never applies the split). A range
 * prepared here and not running is one too: its copy held nothing at a restart and was deleted
 * (a take-up or a move's prepare that a crash cut short; simulator seed 72783). Its prepared
 * mark stays, so that a split replayed from a parent's log never seeds it with an empty vote,
 * and taking it up prepares it again, recovering. Pure.
 */
export function rangesToTakeUp(
  self: number,
  map: readonly RangeDescriptor[],
  o: {
    readonly here: (id: RangeId) => boolean;
    readonly retired: (id: RangeId) => boolean;
    readonly busy: ReadonlySet<RangeId>;
  },
): RangeDescriptor[] {
  return map.filter(
    (d) =>
      d.id >= FIRST_ALLOCATED_RANGE &&
      d.replicas.includes(self) &&
      d.replicas.some((r) => r !== self) &&
      !o.here(d.id) &&
      !o.retired(d.id) &&
      !o.busy.has(d.id),
  );
}

/** Why this node is out of the range, or null when it is (or may be) a replica. */
export function retireVerdict(i: RetireInput): string | null {
  const { self, conf, descriptor, mapped } = i;
  const voter = conf.voters.includes(self) || conf.outgoing.includes(self);
  const member = voter || conf.learners.includes(self);
  const named = descriptor.replicas.includes(self);
  if (i.recovering === true && i.mapCurrent === false) return null;
  if (!member && i.recovering !== true && !i.preparing && (i.wasMember || named))
    return 'it applied its removal';
  if (!member && i.idleMs >= i.abandonAfterMs)
    return `it is in no configuration it applied and made no progress for ${i.idleMs} ms`;
  // A prepared copy's own generation may be an old snapshot's: the prepare's is what it knows.
  const own = i.preparing ? i.preparedAt : descriptor.generation;
  // A recovering copy is judged by the map only once it made no progress for the abandon
  // time: the map records a move once it is done, so a range that added this node back while
  // it was losing its data names it in its configuration and not yet in the map. Given up at
  // once, the copy the range's leader was about to catch up was gone, the range counted a
  // voter holding nothing, and the node, given up the range, never took it up again
  // (simulator seed 788 of `--ranges --moves --meta --wipe-every 300`). A copy no leader
  // feeds is given up after that time as before.
  if (
    member &&
    (i.recovering !== true || i.idleMs >= i.abandonAfterMs) &&
    own !== undefined &&
    mapped !== undefined &&
    mapped.generation > own &&
    !mapped.replicas.includes(self)
  )
    return i.preparing
      ? `the range map holds it at generation ${mapped.generation} with replicas [${mapped.replicas.join(', ')}], newer than the ${own} it was prepared at`
      : `the range map holds it at generation ${mapped.generation} with replicas [${mapped.replicas.join(', ')}], newer than its own ${own}`;
  return null;
}

export interface RangeRetirerOptions {
  readonly selfId: number;
  /** `pending` and `isRetired` are asked only with `takeUp`. */
  readonly groups: Pick<RangeGroups, 'ranges' | 'group' | 'retire'> &
    Partial<Pick<RangeGroups, 'pending' | 'isRetired'>>;
  /** Which ranges are prepared here and not yet added (durable: range-dirs.ts). */
  readonly dirs: Pick<RangeDirs, 'preparedAt' | 'added'>;
  readonly lanes: Pick<RangeLanes, 'forget'>;
  /** The meta map's descriptor of a range, as this node applied the map. */
  readonly mapped: (id: RangeId) => RangeDescriptor | undefined;
  /** Whether range `id`'s copy here is recovering lost data (absent: never). */
  readonly recovering?: (id: RangeId, runtime: RangeGroup['runtime']) => boolean;
  /** Whether the meta map here is current enough to judge a recovering copy (absent: yes). */
  readonly mapCurrent?: () => boolean;
  /**
   * Takes up a range the map names this node in and that never ran here (`rangesToTakeUp`),
   * once the map has named it so for `takeUpAfterMs`: prepares it as a new replica (an empty,
   * recovering copy whose voters are the range's others; one voting at once when the node's
   * record proves the range never ran here). Absent: never.
   */
  readonly takeUp?: {
    readonly map: () => readonly RangeDescriptor[];
    readonly afterMs: number;
    readonly run: (d: RangeDescriptor) => Promise<void>;
  };
  /** Ranges being changed or given up on this node: one thing at a time per range. */
  readonly busy: Set<RangeId>;
  readonly clock: Clock;
  readonly checkEveryMs: number;
  /** How long a range this node is in no configuration of may make no progress. */
  readonly abandonAfterMs: number;
  readonly log: Logger;
}

interface Seen {
  readonly group: RangeGroup;
  wasMember: boolean;
  /** Applied index and snapshot bytes received at the last change of either. */
  progress: string;
  sinceMs: number;
}

export class RangeRetirer {
  private readonly periodic: Periodic;
  private readonly seen = new Map<RangeId, Seen>();
  /** Ranges the map names this node in that do not run here, with when first seen so. */
  private readonly missing = new Map<RangeId, number>();
  private checking = false;

  constructor(private readonly o: RangeRetirerOptions) {
    this.periodic = new Periodic(o.clock, o.checkEveryMs, () => void this.check());
  }

  start(): void {
    this.periodic.start();
  }

  stop(): void {
    this.periodic.stop();
  }

  /** A range was prepared here: its time to be added starts now. */
  prepared(id: RangeId): void {
    this.seen.delete(id);
  }

  /** Looks at every range running here once; retires those this node is out of. */
  async check(): Promise<void> {
    if (this.checking) return;
    this.checking = true;
    try {
      const running = new Set(this.o.groups.ranges());
      for (const id of this.seen.keys()) if (!running.has(id)) this.seen.delete(id);
      for (const id of running) {
        if (id < FIRST_ALLOCATED_RANGE || this.o.busy.has(id)) continue;
        const why = this.verdict(id);
        if (why !== null) await this.retire(id, why);
      }
      // Looked at without a wait: a check that finds nothing to do ends within its turn.
      for (const d of this.dueTakeUps()) await this.takeUp(d);
    } finally {
      this.checking = false;
    }
  }

  /**
   * The ranges the map has named this node in, for `takeUp.afterMs`, without their running
   * here: to be prepared. The grace lets a node that lags in the parent apply the split and
   * seed the range itself. Taking one up is safe whatever the range's state: the copy starts
   * empty and recovering (as a copy prepared for a move), so it neither votes nor counts toward
   * a quorum until it holds the leader's log up to a commit the leader reached after it
   * started, and its voters are the range's others, so until the leader's snapshot arrives it
   * believes it is no member. A range the node's record proves never ran here (`run` is told,
   * RangeDirs.neverRan) votes at once instead: it acknowledged nothing and voted in no term,
   * and recovering, it left the range wedged when another replica lost its disk meanwhile
   * (both recovering, the third alone). If the map was stale and the range has left this
   * node, nothing arrives and the second rule gives the copy up; the map at a newer generation
   * without it, the third.
   */
  private dueTakeUps(): RangeDescriptor[] {
    const t = this.o.takeUp;
    if (t === undefined || !(this.o.mapCurrent?.() ?? true)) return [];
    const now = this.o.clock.nowMs();
    const pending = new Set(this.o.groups.pending?.() ?? []);
    const due = rangesToTakeUp(this.o.selfId, t.map(), {
      here: (id) => this.o.groups.group(id) !== undefined || pending.has(id),
      retired: (id) => this.o.groups.isRetired?.(id) ?? false,
      busy: this.o.busy,
    });
    const ids = new Set(due.map((d) => d.id));
    for (const id of [...this.missing.keys()]) if (!ids.has(id)) this.missing.delete(id);
    const ready: RangeDescriptor[] = [];
    for (const d of due) {
      const since = this.missing.get(d.id) ?? now;
      this.missing.set(d.id, since);
      if (now - since < t.afterMs) continue;
      this.missing.delete(d.id);
      this.o.log.warn(
        { range: d.id, generation: d.generation, replicas: d.replicas, missingMs: now - since },
        `the range map names this node in range ${d.id}, which never ran here: taking it up as a new replica`,
      );
      ready.push(d);
    }
    return ready;
  }

  private async takeUp(d: RangeDescriptor): Promise<void> {
    try {
      await this.o.takeUp?.run(d);
    } catch (err) {
      this.o.log.warn(
        { range: d.id, err: (err as Error).message },
        `could not take range ${d.id} up; will try again`,
      );
    }
  }

  private verdict(id: RangeId): string | null {
    const group = this.o.groups.group(id);
    if (group === undefined) return null;
    const s = group.runtime.status();
    const now = this.o.clock.nowMs();
    const progress = `${group.runtime.appliedIndex()}/${s.incomingSnapshot?.received ?? -1}`;
    let seen = this.seen.get(id);
    if (seen?.group !== group) {
      seen = { group, wasMember: false, progress, sinceMs: now };
      this.seen.set(id, seen);
    }
    if (seen.progress !== progress) {
      seen.progress = progress;
      seen.sinceMs = now;
    }
    // The configuration below is the core's, the descriptor the state machine's: they describe
    // the same point only once the machine applied what the core knows committed. A snapshot
    // installed from a leader gives the core its configuration at once and the machine its
    // descriptor only when restored; judged in between, a prepared copy read the leader's
    // (old) configuration naming it beside the prepare's descriptor, was taken as added, and
    // was given up once the old descriptor showed, while the move promoting it went on.
    if (group.runtime.appliedIndex() < s.commit) return null;
    const preparedAt = this.o.dirs.preparedAt(id);
    const descriptor = group.range.descriptor();
    const recovering = this.o.recovering?.(id, group.runtime) ?? false;
    const why = retireVerdict({
      self: this.o.selfId,
      conf: s.conf,
      descriptor,
      mapped: this.o.mapped(id),
      wasMember: seen.wasMember,
      preparing: preparedAt !== undefined,
      ...(preparedAt === undefined ? {} : { preparedAt }),
      idleMs: now - seen.sinceMs,
      abandonAfterMs: this.o.abandonAfterMs,
      recovering,
      mapCurrent: this.o.mapCurrent?.() ?? true,
    });
    const c = s.conf;
    const self = this.o.selfId;
    // A recovering copy's configuration may be a seed's, or one since changed: not counted.
    if (!recovering && [...c.voters, ...c.outgoing, ...c.learners].includes(self)) {
      // A prepared copy's configuration counts from the range's generation it was prepared at.
      if (preparedAt === undefined) seen.wasMember = true;
      else if (descriptor.generation >= preparedAt) this.o.dirs.added(id);
    }
    return why;
  }

  private async retire(id: RangeId, why: string): Promise<void> {
    this.o.busy.add(id);
    try {
      this.o.log.info({ range: id, why }, `giving range ${id} up: ${why}`);
      await this.o.groups.retire(id);
      this.seen.delete(id);
      this.o.lanes.forget(id, `This node gave range ${id} up (${why})`);
    } catch (err) {
      this.o.log.warn(
        { range: id, err: (err as Error).message },
        `could not give range ${id} up; will try again`,
      );
    } finally {
      this.o.busy.delete(id);
    }
  }
}
