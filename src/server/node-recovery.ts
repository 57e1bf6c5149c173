// A node that lost its data recovers every group it holds (docs/DESIGN.md, "A node that lost
// its data", "Every range it held"). The core's recovery (no vote, no campaign, counted in no
// quorum until caught up) is per group, but the data directory is one unit: its identity file
// says `recovering` until every group the node holds caught up, so a restart in the middle
// recovers them all again.
//
// Which groups: the key-value group (range 0), the queue and meta groups, and every range split
// off range 0 that the node starts while recovering: those range 0's log replays (the splits
// that named it), their children, and the ranges the meta group's map says it holds, which a
// move may have added it to and which nothing in its own logs names. The map is read once the
// meta group caught up (a map from before the node started may miss a move). A range group
// started while the node recovers starts recovering too: it may have acknowledged entries
// before the data was lost, and voting with an empty log could elect a leader without them.
//
// A group counts as caught up once the core says so and it applied what it then knew
// committed: until then, what it applied is a past the range has moved on from (a removal
// since undone, say), and nothing is judged on it (range-retirer.ts). The node is a full
// member again, as its identity file says, only when nothing is left to wait for: no group
// recovering or applying, no range being started, the map read.

import type { Logger } from 'pino';
import type { Clock } from '../host/contracts.js';
import type { Recovery, Status } from '../raft/index.js';
import { FIRST_ALLOCATED_RANGE, type RangeDescriptor, type RangeId } from '../ranges/types.js';
import type { MetaStateMachine } from '../ranges/meta-machine.js';
import { Periodic } from './periodic.js';
import type { RangeDirs } from './range-dirs.js';
import type { RangeGroups } from './range-groups.js';

/** A group running here, as the recovery sees it. */
export interface RecoveryGroup {
  readonly id: number;
  readonly runtime: {
    status(): Pick<Status, 'recovery' | 'lastIndex' | 'commit'>;
    appliedIndex(): number;
  };
}

/** What recovery needs of the assembled node; given once it runs. */
export interface NodeRecoveryParts {
  /** Every group running here now (range groups, the queue and meta groups). */
  readonly groups: () => readonly RecoveryGroup[];
  /** Ranges being started here and not running yet. */
  readonly pendingRanges: () => readonly RangeId[];
  /** The meta group's id: its map is read once it caught up. */
  readonly metaGroup: number;
  /** The ranges of the meta map as this node applied it (null: not bootstrapped). */
  readonly map: () => readonly RangeDescriptor[] | null;
  /** Starts a range the map says this node holds and that is not running here. */
  readonly startRange: (d: RangeDescriptor) => void;
  /**
   * Whether range `id` is marked prepared here (range-dirs.ts): asked to take it as a new
   * replica and not yet added. The map does not start such a range (see readMap).
   */
  readonly prepared: (id: RangeId) => boolean;
  /**
   * Told once the map is read, before any range may be taken up: every range allocated before
   * the data was lost is now below the meta group's next range id, so a range at or above it
   * that never ran here since never ran here at all (the node records it,
   * `RangeDirs.setCompleteFrom`).
   */
  readonly mapRead: () => void;
}

/**
 * The parts over a node's range groups (`ranges`), its other groups beside them (`others`: the
 * queue and meta groups), its meta machine and its range record: ranges are started from the
 * map unless given up, a range is prepared as the record says, and once the map is read the
 * record is whole from the meta group's next range id. The node (node-groups.ts) and the
 * simulator's nodes build theirs with it.
 */
export function nodeRecoveryParts(o: {
  readonly ranges: Pick<RangeGroups, 'ranges' | 'group' | 'pending' | 'isRetired' | 'start'>;
  readonly others: readonly RecoveryGroup[];
  readonly metaGroup: number;
  readonly metaMachine: Pick<MetaStateMachine, 'map' | 'nextRangeId'>;
  readonly dirs: Pick<RangeDirs, 'preparedAt' | 'setCompleteFrom'>;
}): NodeRecoveryParts {
  const { ranges, metaMachine, dirs } = o;
  return {
    groups: () => [
      ...ranges.ranges().flatMap((id) => {
        const g = ranges.group(id);
        return g === undefined ? [] : [{ id, runtime: g.runtime }];
      }),
      ...o.others,
    ],
    pendingRanges: () => ranges.pending(),
    metaGroup: o.metaGroup,
    map: () => metaMachine.map()?.ranges() ?? null,
    startRange: (d) => {
      if (!ranges.isRetired(d.id)) void ranges.start(d.id, d.replicas, d);
    },
    prepared: (id) => dirs.preparedAt(id) !== undefined,
    mapRead: () => dirs.setCompleteFrom(metaMachine.nextRangeId),
  };
}

export interface NodeRecoveryOptions {
  readonly selfId: number;
  /** The node's recovery as decided at start (identity file, or an empty start). */
  readonly initial: Recovery;
  /** Records the node's recovery durably (the identity file); synchronous. */
  readonly store: (r: Recovery) => void;
  readonly clock: Clock;
  readonly checkEveryMs: number;
  readonly log: Logger;
  /**
   * Planted defect for tests: range groups start as full members on a recovering node (as
   * before every range recovered). Nothing else should set it.
   */
  readonly unsafeSkipRangeRecovery?: boolean;
}

/** What the node's recovery waits for, for the status. */
export interface NodeRecoveryStatus {
  /** Whether the node is still recovering (its identity file says so). */
  readonly recovering: boolean;
  /** Groups running here that have not caught up (they neither vote nor count in a quorum). */
  readonly recoveringGroups: readonly number[];
  /** Everything the node waits for before it is a full member again; empty once it is. */
  readonly waitingFor: readonly string[];
}

export class NodeRecovery {
  private state: Recovery;
  /** Invariant: only groups whose core said it caught up; the commit it then knew. */
  private readonly caughtUpAt = new Map<number, number>();
  private parts: NodeRecoveryParts | null = null;
  private mapRead = false;
  private last: NodeRecoveryStatus;
  private readonly periodic: Periodic;

  constructor(private readonly o: NodeRecoveryOptions) {
    this.state = o.initial;
    this.last = {
      recovering: o.initial === 'recovering',
      recoveringGroups: [],
      waitingFor: o.initial === 'recovering' ? ['the node to assemble'] : [],
    };
    this.periodic = new Periodic(o.clock, o.checkEveryMs, () => this.check());
  }

  /** Whether the node is recovering: every group started now starts recovering. */
  get recovering(): boolean {
    return this.state === 'recovering';
  }

  /** The recovery a group starting now starts with. */
  recoveryFor(group: number): Recovery {
    if (group >= FIRST_ALLOCATED_RANGE && this.o.unsafeSkipRangeRecovery === true) return 'none';
    return this.state;
  }

  /**
   * A group's core changed its recovery (the runtime's `storeRecovery`). Nothing is stored
   * here: the identity file stays `recovering` until every group caught up (`check`).
   */
  groupStored(group: number, r: Recovery): void {
    if (r !== 'none' || this.state !== 'recovering') return;
    this.o.log.warn({ group }, 'group caught up with its leader; waiting for the other groups');
    this.check();
  }

  /**
   * Whether group `group`'s copy here has not caught up since the node lost its data: its
   * core is recovering, or it has not applied what it knew committed when it caught up.
   * Nothing is to be judged on such a copy (range-retirer.ts).
   */
  groupRecovering(g: RecoveryGroup): boolean {
    if (this.state !== 'recovering') return false;
    const s = g.runtime.status();
    if (s.recovery === 'recovering') return true;
    const at = this.caughtUpAt.get(g.id);
    return at === undefined || g.runtime.appliedIndex() < at;
  }

  /** Whether the meta group's map here is current enough to judge a recovering copy by. */
  mapCurrent(): boolean {
    return this.state !== 'recovering' || this.mapRead;
  }

  /** The node runs: checks every `checkEveryMs` until recovery finished. */
  start(parts: NodeRecoveryParts): void {
    this.parts = parts;
    if (this.state !== 'recovering') return;
    this.check();
    this.periodic.start();
  }

  stop(): void {
    this.periodic.stop();
  }

  status(): NodeRecoveryStatus {
    return this.last;
  }

  /** Looks at every group; reads the map once the meta group caught up; finishes when done. */
  check(): void {
    const parts = this.parts;
    if (parts === null || this.state !== 'recovering') return;
    const recovering: number[] = [];
    const waitingFor: string[] = [];
    let metaCaughtUp = false;
    for (const g of parts.groups()) {
      const s = g.runtime.status();
      if (s.recovery === 'recovering') {
        recovering.push(g.id);
        waitingFor.push(`group ${g.id} catching up (holds ${s.lastIndex}, commit ${s.commit})`);
        continue;
      }
      let at = this.caughtUpAt.get(g.id);
      if (at === undefined) this.caughtUpAt.set(g.id, (at = s.commit));
      const applied = g.runtime.appliedIndex();
      if (applied < at) {
        recovering.push(g.id);
        waitingFor.push(`group ${g.id} applying (${applied} of ${at})`);
      } else if (g.id === parts.metaGroup) metaCaughtUp = true;
    }
    if (!this.mapRead && metaCaughtUp) this.readMap(parts);
    if (!this.mapRead) waitingFor.push('the range map (the meta group catching up)');
    for (const id of parts.pendingRanges()) waitingFor.push(`range ${id} starting`);
    recovering.sort((a, b) => a - b);
    if (waitingFor.length > 0) {
      this.last = { recovering: true, recoveringGroups: recovering, waitingFor };
      return;
    }
    this.state = 'none';
    this.o.store('none');
    this.periodic.stop();
    this.last = { recovering: false, recoveringGroups: [], waitingFor: [] };
    this.o.log.warn(
      { groups: parts.groups().map((g) => g.id) },
      'caught up with the leader in every group: recovery finished, a full member again',
    );
  }

  /**
   * Starts every range the map says this node holds that is not running or starting here,
   * but for one marked prepared (as a split's seed and a parent's children leave it,
   * range-groups.ts): started from the map, its empty copy would take the map's replicas as
   * its voters, and a map older than the prepare names this node among voters the range has
   * left since (it was removed, then asked back); believing it votes, the copy would refuse
   * the next prepare and be given up by no rule while the map still names it. Not started, it
   * loses nothing: a prepared copy that received the leader's snapshot runs from its directory
   * (startHeld), and one that did not was never promoted (the leader promotes a learner only
   * once it caught up), so the change that prepared it prepares it again or removes it.
   */
  private readMap(parts: NodeRecoveryParts): void {
    const running = new Set(parts.groups().map((g) => g.id));
    const pending = new Set(parts.pendingRanges());
    const named = (parts.map() ?? []).filter(
      (d) => d.replicas.includes(this.o.selfId) && !running.has(d.id) && !pending.has(d.id),
    );
    const held: RangeDescriptor[] = [];
    for (const d of named) {
      if (!parts.prepared(d.id)) held.push(d);
      else
        this.o.log.warn(
          { range: d.id, generation: d.generation, replicas: d.replicas },
          `the range map names this node in range ${d.id}, which is only prepared here: not started from the map`,
        );
    }
    for (const d of held) {
      this.o.log.warn(
        { range: d.id, generation: d.generation, replicas: d.replicas },
        `the range map says this node holds range ${d.id}: recovering it too`,
      );
      parts.startRange(d);
    }
    parts.mapRead();
    this.mapRead = true;
  }
}
