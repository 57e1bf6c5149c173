// Fault injection: what a seed does to the cluster in its fault phase, each fault at the rate
// its profile drew and from the seed's fault stream: crashes (power loss) and restarts, lost
// data directories, partitions, slow disks, leadership transfers, and, when turned on,
// membership churn and replica moves. None starts once the liveness phase begins.

import { createRng, type ConfState, type Rng } from '../raft/index.js';
import { FlotillaError } from '../base/errors.js';
import type { RaftRuntime } from '../host/runtime.js';
import { META_GROUP } from '../ranges/types.js';
import { proposeRandomChange } from './membership.js';
import type { Mover } from './mover.js';
import type { LinkTable } from './network.js';
import { healedDelayMaxMs, type Profile } from './profile.js';
import { groupIdsNow, latestDescriptors } from './range-checks.js';
import type { SimNode } from './sim-node.js';
import type { Trace } from './trace.js';
import type { SimEvent, SimStats } from './types.js';
import { WalNodeDisk } from './wal-disk.js';
import type { Workload } from './workload.js';

/** A move's steps are looked at this often (the product's leader: every 50 ms). */
const MOVE_STEP_MS = 50;

/** What the faults need from the simulation. */
export interface FaultHost {
  readonly nowMs: number;
  /** The liveness phase has begun: faults heal and no new one starts. */
  readonly inLiveness: boolean;
  node(id: number): SimNode;
  schedule(delayMs: number, event: SimEvent): void;
  startNode(n: SimNode): void;
  /** Every committed entry of every group is durable on a majority. */
  checkAllDurable(): void;
  fail(what: string, err: unknown): void;
}

export interface FaultOptions {
  readonly profile: Profile;
  readonly nodes: readonly SimNode[];
  /** The seed's fault stream; membership churn draws from a stream of its own, made from it. */
  readonly rng: Rng;
  readonly links: LinkTable;
  readonly workload: Workload;
  readonly trace: Trace;
  readonly stats: SimStats;
  /** With moves: the movers, each with at most one move under way (none without moves). */
  readonly movers: readonly Mover[];
  /** The nodes run ranges, and the meta group. */
  readonly ranges: boolean;
  readonly meta: boolean;
  /** Planted defect: a wiped node's ranges start as full members (SimOptions). */
  readonly plantWipedRangesVote?: boolean;
}

export class Faults {
  /** Membership churn draws from its own source, made only when churn is on. */
  private readonly churnRng: Rng | null;
  /** Nodes whose data directory was wiped and that have not caught up since. */
  private readonly lost = new Set<number>();

  constructor(
    private readonly host: FaultHost,
    private readonly o: FaultOptions,
  ) {
    this.churnRng = o.profile.membershipEveryMs > 0 ? createRng(o.rng.int(0x100000000)) : null;
  }

  /** Nodes whose data directory was wiped and that have not caught up since. */
  get wiped(): ReadonlySet<number> {
    return this.lost;
  }

  /** Schedules the first of each fault the profile turns on. */
  start(): void {
    const p = this.o.profile;
    const jitter = (ms: number): number => ms * (0.5 + this.o.rng.float());
    if (p.partitionEveryMs > 0)
      this.host.schedule(jitter(p.partitionEveryMs), { kind: 'partition' });
    if (p.crashEveryMs > 0) this.host.schedule(jitter(p.crashEveryMs), { kind: 'crash' });
    if (p.wipeEveryMs > 0) this.host.schedule(jitter(p.wipeEveryMs), { kind: 'wipe' });
    if (p.transferEveryMs > 0) this.host.schedule(jitter(p.transferEveryMs), { kind: 'transfer' });
    if (p.membershipEveryMs > 0) {
      this.host.schedule(jitter(p.membershipEveryMs), { kind: 'membership' });
    }
    if (p.moveEveryMs > 0) {
      this.host.schedule(jitter(p.moveEveryMs), { kind: 'move' });
      this.host.schedule(MOVE_STEP_MS, { kind: 'move-step' });
    }
  }

  diskLatencyMs(): number {
    const p = this.o.profile;
    const maxMs = this.host.inLiveness
      ? Math.min(p.persistMaxMs, healedDelayMaxMs(p))
      : p.persistMaxMs;
    return maxMs === 0 ? 0 : this.o.rng.int(maxMs + 1);
  }

  /** Power loss on `n`: its runtime is abandoned and its clients see their requests fail. */
  private powerOff(n: SimNode): void {
    n.crash();
    this.o.workload.onNodeCrash(n.id);
  }

  onCrash(): void {
    if (this.host.inLiveness) return;
    const p = this.o.profile;
    // Running or still starting: a crash during the WAL's recovery is a crash too.
    const up = this.o.nodes.filter((n) => n.up || n.starting);
    if (up.length > 0) {
      const victim = up[this.o.rng.int(up.length)] as SimNode;
      this.o.stats.crashes++;
      this.powerOff(victim);
      // Whatever was lost, every committed entry must still be durable on a majority.
      this.host.checkAllDurable();
      this.host.schedule(p.restartAfterMs * (0.5 + this.o.rng.float()), {
        kind: 'restart',
        node: victim.id,
      });
    }
    this.host.schedule(p.crashEveryMs * (0.5 + this.o.rng.float()), { kind: 'crash' });
  }

  /**
   * A node loses its whole data directory (DESIGN.md, "A node that lost its data"). Its disk
   * counts as holding everything until it has caught up, since the durability check is about
   * what the cluster can still lose; election safety, leader completeness and the applied
   * values prove the rule. Preconditions, as documented: the rest of the cluster is whole
   * when a disk is lost, that is every other node holds some log (with a majority of empty
   * logs the cluster looks brand new) and none is itself recovering.
   */
  onWipe(): void {
    if (this.host.inLiveness) return;
    const p = this.o.profile;
    this.host.schedule(p.wipeEveryMs * (0.5 + this.o.rng.float()), { kind: 'wipe' });
    const victim = this.o.nodes[this.o.rng.int(this.o.nodes.length)] as SimNode;
    const othersWhole = this.o.nodes.every(
      (n) =>
        n === victim ||
        (n.disk.hasLog() &&
          n.disk.recovery !== 'recovering' &&
          (!n.up || n.raft.recovery() !== 'recovering') &&
          (!this.o.ranges || !this.rangesRecovering(n))),
    );
    if (this.lost.size > 0 || !othersWhole || (this.o.ranges && this.wipeWouldWedge(victim)))
      return;
    this.o.stats.wipes++;
    this.lost.add(victim.id);
    this.o.trace.note(this.host.nowMs, `node ${victim.id} data directory wiped`);
    // A node still starting is powered off too: its start reads the disk being wiped.
    if (victim.up || victim.starting) {
      this.powerOff(victim);
      this.host.schedule(p.restartAfterMs * (0.5 + this.o.rng.float()), {
        kind: 'restart',
        node: victim.id,
      });
    }
    victim.disk.wipe();
    // Every range that exists lost its data here too: each recovers as group 0 does. A range
    // whose configuration counts the node a voter before the map names it is one of them.
    if (
      this.o.ranges &&
      victim.disk instanceof WalNodeDisk &&
      this.o.plantWipedRangesVote !== true
    ) {
      victim.disk.lostGroups.clear();
      for (const [id, d] of latestDescriptors(this.o.nodes))
        if (id !== 0 && (d.replicas.length === 0 || this.rangeVoters(id, d).has(victim.id)))
          victim.disk.lostGroups.add(id);
      if (this.o.meta) victim.disk.lostGroups.add(META_GROUP);
    }
  }

  /**
   * Whether losing `victim`'s disk now would be a second fault in one of its ranges (DESIGN.md,
   * "Ranges in a node"). A range's voters here are those its newest descriptor names and those
   * any running copy's configuration counts (a move's new voter is one before the map records
   * it). The wipe waits when one of the victim's ranges has no other voter holding data, or a
   * voter that neither runs it nor holds it on its disk and would not take it up voting at
   * once: a node down while the range split that left the parent before it caught up (it takes
   * the range up from the map, range-retirer.ts), or a voter the map does not name that lost
   * its copy in an earlier wipe. Recovering, or absent, that voter votes for no one, nor does
   * the wiped one, and the range may never elect again. A voter that misses a range it never
   * ran takes it up voting at once, and the range elects with it: such windows are not held
   * back.
   */
  private wipeWouldWedge(victim: SimNode): boolean {
    for (const [id, d] of latestDescriptors(this.o.nodes)) {
      if (id === 0) continue;
      const voters = this.rangeVoters(id, d);
      if (!voters.has(victim.id)) continue;
      let holders = 0;
      for (const n of this.o.nodes) {
        if (n === victim || !voters.has(n.id)) continue;
        const disk = n.disk instanceof WalNodeDisk ? n.disk : null;
        // A node that is down holds the range when its disk does.
        const runs = n.up ? n.coreOf(id) !== undefined : disk?.holdsGroup(id) === true;
        const data = n.up
          ? (n.coreOf(id)?.status().lastIndex ?? 0) > 0
          : disk?.holdsLogOf(id) === true;
        if (data) holders++;
        else if (!runs && disk?.rangeDirs.neverRan(id) !== true) return true;
      }
      if (holders === 0) return true;
    }
    return false;
  }

  /**
   * Range `id`'s voters: those its newest descriptor names and those the configuration of its
   * most advanced running copy (the highest commit index) counts, since a move's new voter is
   * one before the map records it. Not every copy's: one that applied its own removal keeps
   * that configuration until it is given up, and a stale one would name a voter moved off since.
   */
  private rangeVoters(id: number, d: { readonly replicas: readonly number[] }): Set<number> {
    const voters = new Set(d.replicas);
    let newest: { readonly commit: number; readonly conf: ConfState } | undefined;
    for (const n of this.o.nodes) {
      const s = n.coreOf(id)?.status();
      if (s !== undefined && (newest === undefined || s.commit > newest.commit)) newest = s;
    }
    if (newest !== undefined)
      for (const v of [...newest.conf.voters, ...newest.conf.outgoing]) voters.add(v);
    return voters;
  }

  /** Whether any of `n`'s range groups is still recovering a lost disk (on disk or running). */
  private rangesRecovering(n: SimNode): boolean {
    if (n.disk instanceof WalNodeDisk && n.disk.anyRecovering()) return true;
    if (this.o.meta && n.coreOf(META_GROUP)?.recovery() === 'recovering') return true;
    return n.groupIds().some((g) => n.coreOf(g)?.recovery() === 'recovering');
  }

  /**
   * A range lost in the wipe that was moved off the node before the node opened it again has
   * nothing to recover here: the node starts only the ranges the map gives it (node-recovery.ts),
   * and a move that removed it never reaches a copy that does not run. One whose configuration
   * still counts the node a voter is waited for, though the map may not name the node yet (a
   * move promoted it, then the disk was lost): its disk counts as holding the range until the
   * node took it up from the map and caught up, or left its configuration (seed 42088 of
   * `--nodes 7 --ranges --moves --meta --wipe-every 600` reported a committed entry lost when
   * the node was taken for whole at once).
   */
  private forgetMovedAway(n: SimNode, disk: WalNodeDisk): void {
    const latest = latestDescriptors(this.o.nodes);
    for (const id of [...disk.lostGroups]) {
      if (id === META_GROUP || disk.groupRecovery(id) !== null || n.coreOf(id) !== undefined)
        continue;
      const d = latest.get(id);
      if (d !== undefined && d.replicas.length > 0 && !this.rangeVoters(id, d).has(n.id))
        disk.lostGroups.delete(id);
    }
  }

  /** Why each wiped node is not whole again yet, for a liveness report. */
  describeWiped(): string {
    return [...this.lost]
      .map((id) => {
        const n = this.host.node(id);
        const why: string[] = [];
        if (!n.up) why.push('down');
        else if (n.raft.recovery() !== 'none') why.push('group 0 recovering');
        if (n.disk.recovery !== 'none') why.push(`identity file ${String(n.disk.recovery)}`);
        if (this.o.ranges && n.disk instanceof WalNodeDisk) {
          const onDisk = n.disk.recoveringGroups();
          if (onDisk.length > 0) why.push(`groups recovering on disk ${onDisk.join(',')}`);
        }
        if (this.o.ranges && n.up) {
          const running = n.groupIds().filter((g) => n.coreOf(g)?.recovery() === 'recovering');
          if (running.length > 0) why.push(`groups recovering running ${running.join(',')}`);
        }
        return `${id} (${why.join('; ')})`;
      })
      .join(', ');
  }

  /** A wiped node is whole again once it has caught up and its disk no longer says recovering. */
  noteRecoveries(): void {
    for (const id of this.lost) {
      const n = this.host.node(id);
      if (this.o.ranges && n.disk instanceof WalNodeDisk) this.forgetMovedAway(n, n.disk);
      if (
        n.up &&
        n.raft.recovery() === 'none' &&
        n.disk.recovery === 'none' &&
        (!this.o.ranges || !this.rangesRecovering(n))
      )
        this.lost.delete(id);
    }
  }

  onRestart(id: number): void {
    const n = this.host.node(id);
    // Running, or still starting (the WAL's recovery takes virtual time): one process at a time.
    if (n.up || n.starting) return;
    // The runtime's start-up rule for an empty data directory (DESIGN.md, "A node that lost
    // its data"): if any peer holds a log, the cluster exists and this node recovers.
    if (n.disk.isBlank() && this.o.nodes.some((o) => o !== n && o.disk.hasLog())) {
      n.disk.recovery = 'recovering';
    }
    this.host.startNode(n);
  }

  onPartition(): void {
    if (this.host.inLiveness) return;
    const p = this.o.profile;
    const r = this.o.rng;
    const links = this.o.links;
    links.healAll();
    if (p.oneWay && r.float() < 0.5) {
      // One-way cuts: a node may hear a leader it cannot answer (or the reverse).
      const cuts = 1 + r.int(p.nodes);
      for (let i = 0; i < cuts; i++) links.cutOneWay(1 + r.int(p.nodes), 1 + r.int(p.nodes));
    } else {
      const side = new Set<number>();
      const size = 1 + r.int(Math.floor(p.nodes / 2));
      while (side.size < size) side.add(1 + r.int(p.nodes));
      links.split(side);
    }
    this.o.stats.partitions++;
    this.o.trace.note(this.host.nowMs, `partition ${links.describe()}`);
    this.host.schedule(p.partitionForMs * (0.5 + r.float()), { kind: 'heal' });
    this.host.schedule(p.partitionEveryMs * (0.5 + r.float()), { kind: 'partition' });
  }

  onTransfer(): void {
    if (this.host.inLiveness) return;
    const p = this.o.profile;
    // With ranges, the leadership of a range drawn among those the nodes run.
    const ids = groupIdsNow(this.o.nodes, this.o);
    const group = ids[this.o.ranges ? this.o.rng.int(ids.length) : 0] ?? 0;
    const leaderOf = (n: SimNode): RaftRuntime | undefined => n.runtimeOf(group);
    const leader = this.o.nodes.find((n) => n.up && leaderOf(n)?.isLeader() === true);
    if (leader !== undefined) {
      let to = 1 + this.o.rng.int(p.nodes);
      if (to === leader.id) to = (to % p.nodes) + 1;
      try {
        leaderOf(leader)?.transferLeadership(to);
      } catch (err) {
        // Refused (the target is silent, or leadership just moved): as an operator would see.
        if (!(err instanceof FlotillaError)) throw err;
      }
    }
    this.host.schedule(p.transferEveryMs * (0.5 + this.o.rng.float()), { kind: 'transfer' });
  }

  /** Asks the leader for a random membership change, as an operator would. */
  onMembership(): void {
    if (this.host.inLiveness || this.churnRng === null) return;
    const p = this.o.profile;
    this.host.schedule(p.membershipEveryMs * (0.5 + this.churnRng.float()), {
      kind: 'membership',
    });
    if (proposeRandomChange(this.churnRng, this.o.nodes, (what, err) => this.host.fail(what, err)))
      this.o.stats.confChanges++;
  }

  /** Starts a move (fault phase only), as an operator or the placement loop would. */
  onMove(): void {
    if (this.host.inLiveness || this.o.movers.length === 0) return;
    this.host.schedule(this.o.profile.moveEveryMs * (0.5 + this.o.rng.float()), { kind: 'move' });
    for (const mover of this.o.movers) mover.begin();
  }

  /** The move under way takes its next step; one finishing in the liveness phase may. */
  onMoveStep(): void {
    const movers = this.o.movers;
    if (movers.length === 0) return;
    for (const mover of movers) mover.next();
    if (!this.host.inLiveness || movers.some((m) => m.active()))
      this.host.schedule(MOVE_STEP_MS, { kind: 'move-step' });
  }
}
