// The liveness phase: once the faults heal, every group must have a stable leader within a
// bound, every request the clients retried must be answered within another, and (when turned
// on) every idle group must quiesce and the meta map agree with the ranges. A probe every
// tick looks; the run is finished when all hold, and fails when a bound passes first.

import type { RaftRuntime } from '../host/runtime.js';
import { META_GROUP, type RangeDescriptor } from '../ranges/types.js';
import type { SafetyChecker } from './checker.js';
import type { Faults } from './faults.js';
import { electionTimeoutMs, type Profile } from './profile.js';
import { groupIdsNow, latestDescriptors, placementProblem } from './range-checks.js';
import { metaAgreementProblem } from './sim-meta.js';
import type { SimNode } from './sim-node.js';
import type { SimEvent } from './types.js';
import type { Workload } from './workload.js';

/** How long the map may take past the other liveness bounds to agree with the ranges. */
const META_SETTLE_MS = 10_000;
/**
 * How long past that the copies may take to follow the map: a node gives a copy up after the
 * retirer's abandon time at most, and takes a range up after its take-up time (sim-node.ts).
 */
const PLACEMENT_SETTLE_MS = 10_000;

/** What the probe needs from the simulation. */
export interface LivenessHost {
  readonly nowMs: number;
  schedule(delayMs: number, event: SimEvent): void;
}

export interface LivenessOptions {
  readonly profile: Profile;
  readonly nodes: readonly SimNode[];
  readonly checker: SafetyChecker;
  readonly workload: Workload;
  /** The wiped nodes, which must have caught up. */
  readonly faults: Faults;
  /** The cluster's voters (range 0's replicas). */
  readonly voters: readonly number[];
  /** The nodes run ranges, and the meta group. */
  readonly ranges: boolean;
  readonly meta: boolean;
}

export class Liveness {
  private readonly nodes: readonly SimNode[];
  private startMs = 0;
  private leaderSeenMs = -1;
  private done = false;

  constructor(
    private readonly host: LivenessHost,
    private readonly o: LivenessOptions,
  ) {
    this.nodes = o.nodes;
  }

  /** Every bound was met: a leader everywhere, nothing pending. */
  get finished(): boolean {
    return this.done;
  }

  /** The faults healed now: the bounds count from here. */
  begin(): void {
    this.startMs = this.host.nowMs;
  }

  probe(): void {
    const nowMs = this.host.nowMs;
    const elapsed = nowMs - this.startMs;
    // Bounds: randomized timeouts make a split vote repeat with probability < 1/2 per round
    // (paper §5.2), so 30 election timeouts bound a leader's arrival very loosely.
    const leaderBoundMs = 30 * 2 * electionTimeoutMs(this.o.profile);
    if (this.leaderSeenMs < 0 && this.everyGroupLeads()) this.leaderSeenMs = nowMs;
    if (this.leaderSeenMs < 0 && elapsed > leaderBoundMs) {
      this.o.checker.report(
        'liveness',
        `no leader ${leaderBoundMs}ms after the faults healed${this.leaderless()}; ${describeNodes(this.nodes)}`,
      );
      return;
    }
    const faults = this.o.faults;
    faults.noteRecoveries();
    let pending =
      this.o.workload.pendingDescription() +
      (faults.wiped.size > 0 ? ` wiped nodes not caught up: ${faults.describeWiped()}` : '');
    if (this.leaderSeenMs >= 0 && pending === '' && this.o.profile.quiesce)
      pending = this.notQuiesced();
    // The map catches up with the ranges once everything else settled (the map repair).
    const unmapped = pending === '' && this.leaderSeenMs >= 0 ? this.metaDisagreement() : null;
    // Then the copies follow the map (the retirer gives up, and takes up, what it says).
    const misplaced =
      pending === '' && this.leaderSeenMs >= 0 && unmapped === null ? this.misplacement() : null;
    if (this.leaderSeenMs >= 0 && pending === '' && unmapped === null && misplaced === null) {
      this.done = true;
      return;
    }
    const opsBoundMs = leaderBoundMs + this.o.workload.retryBoundMs();
    if (unmapped !== null && elapsed > opsBoundMs + META_SETTLE_MS) {
      this.o.checker.report(
        'meta-agreement',
        `${opsBoundMs + META_SETTLE_MS}ms after the faults healed, ${unmapped}`,
      );
      return;
    }
    const placedBoundMs = opsBoundMs + META_SETTLE_MS + PLACEMENT_SETTLE_MS;
    if (misplaced !== null && elapsed > placedBoundMs) {
      this.o.checker.report(
        'placement',
        `${placedBoundMs}ms after the faults healed, ${misplaced}`,
      );
      return;
    }
    if (unmapped === null && misplaced === null && elapsed > opsBoundMs) {
      this.o.checker.report(
        'liveness',
        `${opsBoundMs}ms after the faults healed, still pending: ${pending}; ${describeNodes(this.nodes)}`,
      );
      return;
    }
    this.host.schedule(this.o.profile.tickMs, { kind: 'probe' });
  }

  /**
   * With meta: null when every node's map agrees with the ranges' own newest descriptors
   * (bounds, generation and replicas; range 0's replicas are the cluster's voters); else the
   * first node whose map does not, and how.
   */
  private metaDisagreement(): string | null {
    if (!this.o.meta || !this.o.ranges) return null;
    const voters = this.o.voters;
    const newest = new Map<number, RangeDescriptor>();
    for (const [id, d] of latestDescriptors(this.nodes))
      newest.set(id, d.replicas.length === 0 ? { ...d, replicas: voters } : d);
    for (const n of this.nodes) {
      const m = n.meta;
      if (m === null) return `node ${n.id} runs no meta group`;
      const problem = metaAgreementProblem(m.machine.map(), newest);
      if (problem !== null) return `node ${n.id}'s range map disagrees with the ranges: ${problem}`;
    }
    return null;
  }

  /**
   * With the meta group: null when every running node holds a copy of exactly the
   * ranges split off range 0 that the map names it in (placementProblem); else the first range
   * where it does not.
   */
  private misplacement(): string | null {
    if (!this.o.meta || !this.o.ranges) return null;
    const map = this.nodes.find((n) => n.meta !== null)?.meta?.machine.map();
    return map === undefined || map === null ? null : placementProblem(this.nodes, map.ranges());
  }

  /**
   * With quiescing: per group (with ranges, every range the nodes know of and the meta group),
   * the members not quiesced yet and those quiesced behind the leader's commit index (empty:
   * every idle group went quiet everywhere, caught up). Once the workload is done and the map
   * agrees every group is idle, so each must quiesce within the liveness bound. The members are
   * those in the newest leader's configuration: a replica moved away is not waited for.
   */
  private notQuiesced(): string {
    const out: string[] = [];
    for (const group of groupIdsNow(this.nodes, this.o)) {
      const name = !this.o.ranges ? '' : group === META_GROUP ? 'meta ' : `range ${group} `;
      // The runtime, not the core: a copy given up leaves its last core behind.
      const members = this.nodes.flatMap((n) => {
        const rt = n.runtimeOf(group);
        return rt === undefined ? [] : [{ id: n.id, st: rt.status() }];
      });
      let leader: (typeof members)[number] | undefined;
      for (const m of members)
        if (m.st.role === 'leader' && (leader === undefined || m.st.term > leader.st.term))
          leader = m;
      if (leader === undefined) {
        out.push(`${name}no leader`);
        continue;
      }
      const conf = new Set([...leader.st.voters, ...leader.st.learners]);
      for (const id of conf)
        if (!members.some((m) => m.id === id)) out.push(`${name}n${id} not running it`);
      for (const { id, st } of members) {
        if (!conf.has(id)) continue;
        if (!st.quiesced) out.push(`${name}n${id} awake`);
        else if (st.commit < leader.st.commit)
          out.push(`${name}n${id} quiesced at commit ${st.commit} < ${leader.st.commit}`);
      }
    }
    return out.length === 0 ? '' : ` not quiesced: ${out.join(', ')}`;
  }

  /** With ranges, which of them have no stable leader, for liveness reports. */
  private leaderless(): string {
    if (!this.o.ranges) return '';
    const ids = groupIdsNow(this.nodes, this.o).filter((id) => !this.hasStableLeader(id));
    return ids.length === 0 ? '' : ` in group${ids.length > 1 ? 's' : ''} ${ids.join(', ')}`;
  }

  /** Group 0 (and with ranges, every range the nodes know of) has a stable leader. */
  private everyGroupLeads(): boolean {
    for (const id of groupIdsNow(this.nodes, this.o)) if (!this.hasStableLeader(id)) return false;
    return true;
  }

  /** A leader whose term has committed an entry (its no-op), so it can serve. */
  private hasStableLeader(group: number): boolean {
    for (const n of this.nodes) {
      const core = n.coreOf(group);
      if (core === undefined) continue;
      if (n.runtimeOf(group)?.isLeader() !== true) continue;
      const st = core.status();
      const t = core.entry(st.commit)?.term ?? st.term;
      if (st.role === 'leader' && t === st.term) return true;
    }
    return false;
  }
}

/**
 * In every group the running nodes (`upNodes`) hold, each member the leader replicates to has
 * applied as far as the leader committed.
 */
export function converged(upNodes: readonly SimNode[]): boolean {
  const byGroup = new Map<number, RaftRuntime[]>();
  for (const n of upNodes)
    for (const [g, rt] of n.runtimes()) byGroup.set(g, [...(byGroup.get(g) ?? []), rt]);
  for (const rts of byGroup.values()) {
    // The leader of the newest term: an old one cut off may not have stepped down yet.
    const leader = rts
      .filter((rt) => rt.isLeader())
      .reduce<RaftRuntime | undefined>(
        (a, b) => (a === undefined || b.term() > a.term() ? b : a),
        undefined,
      );
    if (leader === undefined) return false;
    const st = leader.status();
    if (leader.appliedIndex() < st.commit) return false;
    for (const rt of rts) {
      if (st.progress[rt.id] !== undefined && rt.appliedIndex() !== leader.appliedIndex())
        return false;
    }
  }
  return true;
}

/** Each node's role, term, commit and (for leaders) follower progress, for liveness reports. */
function describeNodes(nodes: readonly SimNode[]): string {
  return nodes
    .map((n) => {
      if (!n.up) return `n${n.id} down`;
      const st = n.raft.status();
      const prs = Object.entries(st.progress)
        .map(([id, pr]) => `${id}:${pr.state}/m${pr.match}/n${pr.next}`)
        .join(' ');
      return `n${n.id} ${st.role} t${st.term} commit=${st.commit} last=${st.lastIndex}${prs === '' ? '' : ` [${prs}]`}`;
    })
    .join('; ');
}
