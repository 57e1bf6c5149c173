// The membership nemesis: while the other faults go on, it changes who is in the cluster, one
// change at a time, each waited for before the next:
//
//   add      start a new process with an empty data directory and `--join` through the live
//            members; done once it votes in both Raft groups (it joins as a learner and is
//            promoted when caught up);
//   remove   remove a voter (the leader a third of the time): done once the cluster lists it
//            removed; its process should then stop by itself. A member that holds replicas
//            of ranges (refused MEMBER_HOLDS_RANGES) is drained first, as an operator does;
//   replace  add a fresh member, then remove an old one. Adding first keeps the cluster at 3
//            voters or more throughout, which removing first would not at 3.
//
// It never leaves fewer than 3 voters, and never removes more than one bootstrap member: the
// workloads' clients keep the endpoints they started with (they are not told of new members,
// though a client follows a leader it is told of), so two of those must stay to fail over to.
// A change refused with a code that may pass (a change already in flight, no leader, a
// timeout) is logged and retried until the change's bound; one still not done then is recorded
// as failed. Every draw is made whatever the cluster answers, as in nemesis.ts.

import { FlotillaClient, FlotillaError } from '../../src/client/index.js';
import type { MembersResponse } from '../../src/api/types.js';
import type { Rng } from '../../src/raft/index.js';
import { FIRST_ALLOCATED_RANGE } from '../../src/ranges/types.js';
import type { ChaosCluster } from './cluster.js';
import type { Deadline } from './deadline.js';

export type MembershipKind = 'add' | 'remove' | 'replace';

export interface MembershipChange {
  readonly kind: MembershipKind;
  /** What was done, e.g. "add 4" or "replace 2 by 5". */
  detail: string;
  readonly startMs: number;
  endMs: number;
  /** Adds and removes that completed within this change (a replace is one of each). */
  added: number[];
  removed: number[];
  /** Whether the change completed; if not, why not. */
  ok: boolean;
  failure: string | null;
  /** Refusals met and retried, e.g. "MEMBERSHIP_CHANGE_PENDING ×2". */
  refusals: string[];
}

export interface MembershipTiming {
  /** Quiet time between changes, ms: [min, max). */
  readonly quietMs: readonly [number, number];
  /** How long an add may take to end with a voter, ms. */
  readonly addMs: number;
  /** How long a removal may take to be listed, ms. */
  readonly removeMs: number;
  /** How long a removed member's process may take to stop by itself, ms. */
  readonly stopMs: number;
  /** How long the placement loop may take to move a member's replicas off it, ms. */
  readonly drainMs: number;
}

export const defaultMembershipTiming: MembershipTiming = {
  quietMs: [1_000, 3_000],
  addMs: 30_000,
  removeMs: 20_000,
  stopMs: 10_000,
  drainMs: 45_000,
};

/** At least this many voters, always. */
const MIN_VOTERS = 3;
/** Adds stop here: more members cost CPU on a small machine and test nothing new. */
const MAX_VOTERS = 5;
/** Bootstrap members that are never removed (the workload clients' failover targets). */
const KEEP_BOOTSTRAP = 2;

/** Refusals after which the same change may succeed later. */
const RETRYABLE = new Set([
  'MEMBERSHIP_CHANGE_PENDING',
  'MEMBERSHIP_JOINT_UNRESOLVED',
  'NOT_LEADER',
  'NO_LEADER',
  'TIMEOUT',
  'FORWARD_FAILED',
  'LEADERSHIP_LOST',
  'SHUTTING_DOWN',
  'OVERLOADED',
  'UNAVAILABLE',
]);

function votesInBoth(v: MembersResponse, id: number): boolean {
  const m = v.members.find((x) => x.id === id);
  return m?.role === 'voter' && m.queueRole === 'voter';
}

export class MembershipNemesis {
  readonly changes: MembershipChange[] = [];
  private readonly bootstrap: readonly number[];

  constructor(
    private readonly cluster: ChaosCluster,
    private readonly rng: Rng,
    private readonly timing: MembershipTiming,
    private readonly now: () => number,
    private readonly log: (line: string) => void,
  ) {
    this.bootstrap = cluster.ids;
  }

  /** Changes the membership until `until` passes; a change under way then is finished. */
  async run(until: Deadline): Promise<void> {
    while (!until.passed()) {
      const [lo, hi] = this.timing.quietMs;
      const quiet = lo + this.rng.float() * (hi - lo);
      await until.sleep(quiet);
      if (until.passed()) break;
      const roll = this.rng.float();
      const wantLeader = this.rng.float() < 1 / 3;
      const pick = this.rng.float();
      const view = await this.members();
      if (view === null) {
        this.log('membership: no member answered the member list; skipped');
        continue;
      }
      const voters = view.groups[0]?.voters ?? [];
      const kind: MembershipKind =
        voters.length <= MIN_VOTERS
          ? roll < 0.5
            ? 'add'
            : 'replace'
          : voters.length >= MAX_VOTERS
            ? roll < 0.5
              ? 'remove'
              : 'replace'
            : ((['add', 'remove', 'replace'] as const)[Math.floor(roll * 3)] ?? 'add');
      const target = kind === 'add' ? 0 : this.target(view, wantLeader, pick);
      if (kind !== 'add' && target === 0) {
        this.log(`membership: no voter may be removed now (voters ${voters.join(',')}); skipped`);
        continue;
      }
      await this.change(kind, target, target !== 0 && target === view.leader);
    }
  }

  /** A voter that may be removed: the leader if wanted and allowed, else one drawn by `pick`. */
  private target(view: MembersResponse, wantLeader: boolean, pick: number): number {
    const voters = view.members.filter((m) => votesInBoth(view, m.id)).map((m) => m.id);
    const bootstrapLeft = voters.filter((id) => this.bootstrap.includes(id)).length;
    const removable = voters.filter(
      (id) => !this.bootstrap.includes(id) || bootstrapLeft > KEEP_BOOTSTRAP,
    );
    if (wantLeader && removable.includes(view.leader)) return view.leader;
    return removable[Math.floor(pick * removable.length)] ?? 0;
  }

  private async change(kind: MembershipKind, target: number, leader: boolean): Promise<void> {
    const what = `${leader ? 'leader ' : ''}${target}`;
    const c: MembershipChange = {
      kind,
      detail: kind === 'add' ? 'add' : `${kind} ${what}`,
      startMs: this.now(),
      endMs: 0,
      added: [],
      removed: [],
      ok: false,
      failure: null,
      refusals: [],
    };
    this.changes.push(c);
    this.log(`membership: ${c.detail} begins`);
    try {
      if (kind !== 'remove') {
        const id = await this.add(c);
        c.detail = kind === 'add' ? `add ${id}` : `replace ${what} by ${id}`;
      }
      if (kind !== 'add') await this.remove(c, target);
      c.ok = true;
    } catch (err) {
      c.failure = (err as Error).message;
    }
    c.endMs = this.now();
    const took = ((c.endMs - c.startMs) / 1000).toFixed(1);
    const refused = c.refusals.length > 0 ? `; refused ${c.refusals.join(', ')}` : '';
    this.log(
      `membership: ${c.detail} ${c.ok ? 'done' : `FAILED (${c.failure})`} in ${took} s${refused}`,
    );
  }

  /** Starts a new member that joins; resolves with its id once it votes in both groups. */
  private async add(c: MembershipChange): Promise<number> {
    const id = await this.cluster.addMember();
    const deadline = this.now() + this.timing.addMs;
    while (this.now() < deadline) {
      const v = await this.members();
      if (v !== null && votesInBoth(v, id)) {
        c.added.push(id);
        return id;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`member ${id} was not a voter of both groups within ${this.timing.addMs} ms`);
  }

  /**
   * Removes `id`, retrying refusals that may pass. An attempt whose outcome is unknown may have
   * applied: a later "not a member" (or "removed") answer then means it did, which the member
   * list must confirm.
   */
  private async remove(c: MembershipChange, id: number): Promise<void> {
    this.cluster.markLeaving(id);
    let deadline = this.now() + this.timing.removeMs;
    let done = false;
    while (!done && this.now() < deadline) {
      const admin = this.admin();
      try {
        await admin.removeMember(id);
        done = true;
      } catch (err) {
        const code = err instanceof FlotillaError ? err.code : 'ERROR';
        if (code === 'MEMBER_HOLDS_RANGES') {
          // With ranges in the run, as an operator does (API.md, "Placement"): drain it, wait
          // until it holds no replica, then remove it. A forced removal of live members one
          // after another, faster than the placement loop moves their replicas, took a majority
          // of some range's replicas away for good: that range could never elect again.
          this.refused(c, code);
          await this.drain(c, id);
          deadline = this.now() + this.timing.removeMs;
        } else if (code === 'MEMBERSHIP_UNKNOWN_MEMBER' || code === 'MEMBER_REMOVED') {
          done = (await this.members())?.removed.includes(id) ?? false;
          if (!done) this.refused(c, code);
        } else if (RETRYABLE.has(code) || !(err instanceof FlotillaError)) {
          this.refused(c, code);
        } else {
          this.cluster.unmarkLeaving(id);
          throw err;
        }
      } finally {
        await admin.close();
      }
      if (!done) await new Promise((r) => setTimeout(r, 300));
    }
    if (!done) {
      // The last attempt may still apply; until the list says so it is a member to keep up.
      if ((await this.members())?.removed.includes(id) !== true) {
        this.cluster.unmarkLeaving(id);
        throw new Error(`member ${id} was not removed within ${this.timing.removeMs} ms`);
      }
    }
    c.removed.push(id);
    const stopped = await this.cluster.markRemoved(id, this.timing.stopMs);
    if (!stopped) c.detail += ` (did not stop by itself within ${this.timing.stopMs} ms; killed)`;
  }

  /**
   * Drains `id` and waits until the range map names it in the replicas of no range split off
   * range 0; past the
   * drain's bound, undrains it and fails the change.
   */
  private async drain(c: MembershipChange, id: number): Promise<void> {
    const deadline = this.now() + this.timing.drainMs;
    const admin = this.admin();
    let holds = 'no range map';
    let undrain = '';
    try {
      while (this.now() < deadline) {
        try {
          await admin.drainNode(id);
          const map = await admin.ranges();
          // Range 0 follows the membership; the ranges split off it are the ones a member holds.
          const held = map.ranges
            .filter((r) => r.id >= FIRST_ALLOCATED_RANGE && r.replicas.includes(id))
            .map((r) => r.id);
          if (held.length === 0) return;
          holds = `ranges ${held.join(',')}`;
        } catch (err) {
          // Refusals that pass (no leader, a change in flight): asked again below.
          this.refused(c, err instanceof FlotillaError ? err.code : 'ERROR');
        }
        await new Promise((r) => setTimeout(r, 500));
      }
      // The failure says whether the member was left drained.
      undrain = await admin.undrainNode(id).then(
        () => '',
        (err: unknown) => `; its undrain failed too (${(err as Error).message})`,
      );
    } finally {
      await admin.close();
    }
    this.cluster.unmarkLeaving(id);
    throw new Error(
      `member ${id} still held ${holds} after ${this.timing.drainMs} ms of drain${undrain}`,
    );
  }

  /**
   * After the faults healed: waits up to `timeoutMs` until the cluster's voters, in both groups,
   * are exactly the members this harness runs, and every member it removed is listed removed.
   * Returns what still differs then, or null.
   */
  async agree(timeoutMs: number): Promise<string | null> {
    const sorted = (ids: readonly number[]): string => [...ids].sort((a, b) => a - b).join(',');
    const want = sorted(this.cluster.ids);
    const removed = this.changes.flatMap((c) => c.removed);
    const deadline = this.now() + timeoutMs;
    let seen = 'no member list';
    while (this.now() < deadline) {
      const v = await this.members();
      if (v !== null) {
        const kv = sorted(v.groups[0]?.voters ?? []);
        const queue = sorted(v.groups[1]?.voters ?? []);
        const missing = removed.filter((id) => !v.removed.includes(id));
        if (kv === want && queue === want && missing.length === 0) return null;
        seen = `voters [${kv}], queue voters [${queue}], not listed removed [${missing.join(',')}]`;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    return `the membership did not settle on voters [${want}] within ${timeoutMs} ms: ${seen}`;
  }

  private refused(c: MembershipChange, code: string): void {
    const prefix = `${code} ×`;
    const i = c.refusals.findIndex((r) => r.startsWith(prefix));
    if (i < 0) c.refusals.push(`${prefix}1`);
    else c.refusals[i] = `${prefix}${Number(c.refusals[i]?.slice(prefix.length)) + 1}`;
  }

  /** The member list as some live member answers it, or null. */
  /** The member list as some member answers it, or null when none did. */
  async members(): Promise<MembersResponse | null> {
    const admin = this.admin();
    try {
      return await admin.members();
    } catch {
      return null;
    } finally {
      await admin.close();
    }
  }

  private admin(): FlotillaClient {
    return new FlotillaClient({
      endpoints: this.cluster.endpoints(),
      timeoutMs: 2_000,
      deadlineMs: 5_000,
      maxAttempts: 6,
    });
  }
}
