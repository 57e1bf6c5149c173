// The fault injector. On a schedule drawn from the run's seed it injects one fault at a time,
// holds it, heals it, and lets the cluster breathe before the next:
//
//   kill       SIGKILL the leader, a random node, or every node at once (writes in flight and
//              anything not yet synced are lost), then restart them;
//   pause      SIGSTOP the leader or a random node for longer than an election timeout, then
//              SIGCONT (a paused old leader wakes up believing it still leads);
//   partition  cut links: majority/minority halves, the leader alone, a bridge (one node sees
//              both sides, the sides do not see each other), or one-way (a node can hear but
//              not speak, or speak but not hear);
//   wipe       SIGKILL the leader or a random node and delete its data directory, then start
//              it again with the same command: it must learn it lost its data and recover
//              (DESIGN.md, "A node that lost its data"). Within the documented limits: only
//              while no other node is still recovering from an earlier wipe (else a kill),
//              and only a bootstrap member (one added during the run is killed instead);
//   membership add, remove and replace members (nemesis-membership.ts). Not one fault among
//              the others but a loop of its own beside them, so that changes run while nodes
//              are killed, paused and cut off.
//   split      split a range at a register key, a bounded number of times (ranges.ts): a loop
//              of its own beside the faults too, so that splits meet kills, pauses, cuts and
//              wipes.
//   move       move a replica of a range split off range 0 to a member not holding it, and
//   drain      drain a member, then undrain it (moves.ts): loops of their own beside the faults.
//
// Which node is "the leader" is asked of the cluster at injection time. The schedule's choices
// come from the seed; what the cluster does in response (who leads) does not, so a seed fixes
// the faults' kinds and timing, not the exact history.

import type { Rng } from '../../src/raft/index.js';
import type { ChaosCluster } from './cluster.js';
import { MembershipNemesis, defaultMembershipTiming } from './nemesis-membership.js';
import type { SplitNemesis } from './ranges.js';
import type { DrainNemesis, MoveNemesis } from './moves.js';
import type { Deadline } from './deadline.js';

export const NEMESES = [
  'kill',
  'pause',
  'partition',
  'wipe',
  'membership',
  'split',
  'move',
  'drain',
] as const;
export type NemesisKind = (typeof NEMESES)[number];
/** The faults one at a time; membership, splits, moves and drains run beside them. */
type FaultKind = Exclude<NemesisKind, 'membership' | 'split' | 'move' | 'drain'>;
/** The nemeses that are loops of their own beside the faults. */
const BESIDE: readonly NemesisKind[] = ['membership', 'split', 'move', 'drain'];

export interface FaultRecord {
  readonly kind: FaultKind;
  /** What exactly was done, e.g. "kill leader 2" or "partition [1] | [2,3]". */
  detail: string;
  readonly startMs: number;
  endMs: number | null;
}

export interface NemesisTiming {
  /** Quiet time between faults, ms: [min, max). */
  readonly quietMs: readonly [number, number];
  /** How long a fault is held, ms: [min, max). */
  readonly holdMs: readonly [number, number];
}

export const defaultTiming: NemesisTiming = { quietMs: [500, 2_500], holdMs: [1_000, 5_000] };

type Heal = () => Promise<void>;

export class Nemesis {
  readonly faults: FaultRecord[] = [];
  /** Nodes wiped that have not yet said they finished recovering. */
  private readonly wiped = new Set<number>();
  /** The membership changes, when `membership` is among the kinds. */
  readonly membership: MembershipNemesis | null;
  private readonly kinds: readonly FaultKind[];

  /**
   * `membershipRng` drives the membership changes, so the faults' draws stay as they were;
   * `split` is the split nemesis, made by the caller when `split` is among the kinds.
   */
  constructor(
    private readonly cluster: ChaosCluster,
    private readonly rng: Rng,
    kinds: readonly NemesisKind[],
    private readonly timing: NemesisTiming,
    private readonly now: () => number,
    private readonly log: (line: string) => void,
    membershipRng: Rng,
    readonly split: SplitNemesis | null = null,
    readonly moves: { readonly move: MoveNemesis | null; readonly drain: DrainNemesis | null } = {
      move: null,
      drain: null,
    },
  ) {
    this.kinds = kinds.filter((k): k is FaultKind => !BESIDE.includes(k));
    this.membership = kinds.includes('membership')
      ? new MembershipNemesis(cluster, membershipRng, defaultMembershipTiming, now, log)
      : null;
  }

  /**
   * Injects faults and changes the membership until `until` passes (on `now`'s clock; it may
   * move earlier, which ends a fault's hold at once), none if `kinds` is empty; leaves
   * everything healed.
   */
  async run(until: Deadline): Promise<void> {
    await Promise.all([
      this.runFaults(until),
      this.membership?.run(until),
      this.split?.run(until),
      this.moves.move?.run(until),
      this.moves.drain?.run(until),
    ]);
    await this.healAll();
  }

  private async runFaults(until: Deadline): Promise<void> {
    while (this.kinds.length > 0 && !until.passed()) {
      await until.sleep(this.between(this.timing.quietMs));
      if (until.passed()) break;
      const kind = this.kinds[this.rng.int(this.kinds.length)] as FaultKind;
      const hold = this.between(this.timing.holdMs);
      const record: FaultRecord = { kind, detail: '', startMs: this.now(), endMs: null };
      const heal = await this.inject(kind, record);
      this.faults.push(record);
      this.log(`fault  ${record.detail}`);
      await until.sleep(hold);
      await heal();
      record.endMs = this.now();
      this.log(`healed ${record.detail}`);
    }
  }

  /** Undoes every fault that may be in force: links healed, paused nodes resumed, dead restarted. */
  async healAll(): Promise<void> {
    this.cluster.healLinks();
    for (const id of this.cluster.ids) {
      if (this.cluster.state(id) === 'paused') this.cluster.resume(id);
      if (this.cluster.state(id) === 'down') this.cluster.startNode(id);
    }
    return Promise.resolve();
  }

  private async inject(kind: FaultKind, record: FaultRecord): Promise<Heal> {
    switch (kind) {
      case 'kill':
        return this.kill(record);
      case 'pause':
        return this.pause(record);
      case 'partition':
        return this.partition(record);
      case 'wipe':
        return this.wipe(record);
    }
  }

  /**
   * The leader half of the time, else a random node. Every draw is made whatever the cluster
   * answers, so the random stream (and every later choice) depends on the seed alone.
   */
  private async target(): Promise<{ id: number; what: string }> {
    const wantLeader = this.rng.float() < 0.5;
    const random = this.pick(this.cluster.ids);
    const leader = wantLeader ? await this.cluster.leader() : 0;
    if (leader !== 0) return { id: leader, what: `leader ${leader}` };
    return { id: random, what: `node ${random}` };
  }

  private async kill(record: FaultRecord): Promise<Heal> {
    const ids =
      this.rng.float() < 0.15
        ? { list: this.cluster.ids, what: 'every node' }
        : await this.target().then((t) => ({ list: [t.id], what: t.what }));
    record.detail = `kill -9 ${ids.what}`;
    await Promise.all(ids.list.map((id) => this.cluster.kill(id)));
    return async () => {
      for (const id of ids.list) this.cluster.startNode(id);
      return Promise.resolve();
    };
  }

  private async wipe(record: FaultRecord): Promise<Heal> {
    const t = await this.target();
    const sts = await Promise.all(this.cluster.ids.map((id) => this.cluster.status(id)));
    // A wiped node counts as recovering until it says it is not: one still starting (or too
    // slow to answer) says nothing, and wiping a second node then would leave a majority of
    // the cluster without its data, which no Raft cluster survives.
    for (const s of sts) if (s?.recovering === false) this.wiped.delete(s.id);
    // A wiped member removed since holds nothing the cluster needs, and never says again.
    for (const id of this.wiped) if (!this.cluster.ids.includes(id)) this.wiped.delete(id);
    const recovering = [
      ...new Set([
        ...sts.filter((s) => s?.recovering === true).map((s) => s?.id as number),
        ...this.wiped,
      ]),
    ].sort((x, y) => x - y);
    const unsettled = await this.groupsDiffer();
    await this.cluster.kill(t.id);
    if (recovering.length > 0) {
      record.detail = `kill -9 ${t.what} (wipe skipped: ${recovering.join(',')} still recovering)`;
    } else if (unsettled !== null) {
      record.detail = `kill -9 ${t.what} (wipe skipped: ${unsettled})`;
    } else {
      this.cluster.wipe(t.id);
      this.wiped.add(t.id);
      record.detail = `wipe the data of ${t.what}`;
    }
    return async () => {
      this.cluster.startNode(t.id);
      return Promise.resolve();
    };
  }

  /**
   * Why the queue group may already be a voter short, or null. It follows the key-value
   * group's membership a change behind, and a member removed from the key-value group stops
   * only once the queue group removed it too; one the membership nemesis killed before that
   * still counts there. A lost disk then would be a second failure in that group, beyond what
   * any Raft group survives, so the wipe waits until both groups have the same voters.
   */
  private async groupsDiffer(): Promise<string | null> {
    if (this.membership === null) return null;
    const v = await this.membership.members();
    if (v === null) return 'no member answered the member list';
    const kv = [...(v.groups[0]?.voters ?? [])].sort((a, b) => a - b).join(',');
    const queue = [...(v.groups[1]?.voters ?? [])].sort((a, b) => a - b).join(',');
    return kv === queue ? null : `the queue group's voters [${queue}] are not yet [${kv}]`;
  }

  private async pause(record: FaultRecord): Promise<Heal> {
    const t = await this.target();
    record.detail = `pause ${t.what}`;
    this.cluster.pause(t.id);
    return async () => {
      this.cluster.resume(t.id);
      return Promise.resolve();
    };
  }

  /**
   * Among the current members, bootstrap and added alike: every link between two of them can be
   * cut exactly (cluster.ts). A member that joins while the partition holds is cut from nobody.
   */
  private async partition(record: FaultRecord): Promise<Heal> {
    const ids = this.cluster.ids;
    const variant = this.rng.int(4);
    let detail: string;
    if (variant === 0 || variant === 1) {
      const shuffled = this.shuffle(ids);
      let minority: number[];
      if (variant === 1) {
        const leader = await this.cluster.leader();
        minority = [leader !== 0 && ids.includes(leader) ? leader : (shuffled[0] as number)];
        detail = `partition leader alone`;
      } else {
        minority = shuffled.slice(0, 1 + this.rng.int(Math.floor((ids.length - 1) / 2)));
        detail = `partition halves`;
      }
      const majority = ids.filter((id) => !minority.includes(id));
      this.cutBetween(minority, majority);
      detail += ` [${minority.join(',')}] | [${majority.join(',')}]`;
    } else if (variant === 2) {
      const [bridge, ...rest] = this.shuffle(ids) as [number, ...number[]];
      const half = Math.ceil(rest.length / 2);
      const a = rest.slice(0, half);
      const b = rest.slice(half);
      this.cutBetween(a, b);
      detail = `partition bridge ${bridge} between [${a.join(',')}] and [${b.join(',')}]`;
    } else {
      const { id, what } = await this.target();
      const others = ids.filter((x) => x !== id);
      if (this.rng.float() < 0.5) {
        for (const o of others) this.cluster.cut(id, o);
        detail = `partition one-way: ${what} cannot send`;
      } else {
        for (const o of others) this.cluster.cut(o, id);
        detail = `partition one-way: ${what} cannot receive`;
      }
    }
    record.detail = detail;
    return async () => {
      this.cluster.healLinks();
      return Promise.resolve();
    };
  }

  private cutBetween(a: readonly number[], b: readonly number[]): void {
    for (const x of a) {
      for (const y of b) {
        this.cluster.cut(x, y);
        this.cluster.cut(y, x);
      }
    }
  }

  private pick(list: readonly number[]): number {
    return list[this.rng.int(list.length)] as number;
  }

  private shuffle(list: readonly number[]): number[] {
    const out = [...list];
    for (let i = out.length - 1; i > 0; i--) {
      const j = this.rng.int(i + 1);
      [out[i], out[j]] = [out[j] as number, out[i] as number];
    }
    return out;
  }

  private between([lo, hi]: readonly [number, number]): number {
    return lo + this.rng.float() * (hi - lo);
  }
}
