// The invariants checked as a run goes: every Raft group's safety checker (checker.ts) fed
// what the nodes report (entries written, commits, applies, snapshots, new leaders), the
// client checker fed the writes applied, and the cluster-wide checks that run after every
// event (leases, configurations, replica moves) or every FULL_CHECK_EVERY events (full log
// matching, the range map). At the end, the replicas' whole states are compared.

import type { Entry, RaftNode, Ready } from '../raft/index.js';
import type { RaftRuntime } from '../host/runtime.js';
import type { RangeMap } from '../ranges/range-map.js';
import { FIRST_ALLOCATED_RANGE, META_GROUP, type RangeDescriptor } from '../ranges/types.js';
import { SafetyChecker, type ClientChecker, type DiskView } from './checker.js';
import type { Faults } from './faults.js';
import { ConfChecker } from './membership.js';
import type { ClientWrite } from './ops.js';
import {
  latestDescriptors,
  rangeMapProblem,
  replicasProblem,
  retiredServingProblem,
} from './range-checks.js';
import { metaMapProblem } from './sim-meta.js';
import type { SimNode } from './sim-node.js';
import type { SimStats } from './types.js';
import { WalNodeDisk } from './wal-disk.js';

/** Events between full pairwise log comparisons (the incremental checks run every event). */
const FULL_CHECK_EVERY = 512;

/** What the checks need from the simulation. */
export interface InvariantHost {
  readonly nowMs: number;
  node(id: number): SimNode;
}

export interface InvariantOptions {
  readonly nodes: readonly SimNode[];
  /** Group 0's checker: every group's checker reports into its list. */
  readonly checker: SafetyChecker;
  readonly clients: ClientChecker;
  readonly stats: SimStats;
  /** The wiped nodes, whose disks count as holding everything until they caught up. */
  readonly faults: Faults;
  /** The cluster's voters: group 0's first configuration, and range 0's replicas. */
  readonly voters: readonly number[];
  /** The nodes run ranges, the meta group, and moves of ranges' replicas. */
  readonly ranges: boolean;
  readonly meta: boolean;
  readonly moves: boolean;
  /** The nodes hold leases (lease reads with check-quorum): their overlap is checked. */
  readonly leaseReads: boolean;
}

/** One replica's state at the index it applied, read out as a backup reads it. */
export interface ReplicaImage {
  readonly node: number;
  readonly group: number;
  readonly index: number;
  /** Base64; null until its chunks were read. */
  image: string | null;
}

export class Invariants {
  private readonly nodes: readonly SimNode[];
  private readonly checker: SafetyChecker;
  private readonly stats: SimStats;
  private readonly newLeaders: { node: number; term: number; group: number }[] = [];
  /** Committed indexes a write in progress replaces, by group: rechecked once it lands. */
  private readonly overwritten = new Map<number, number[]>();
  /** Each Raft group's safety checker (group 0's is `checker`), all reporting into one list. */
  private readonly groupCheckers: Map<number, SafetyChecker>;
  private readonly confs: ConfChecker;
  /** With moves: each range's configurations (for durability), by group. */
  private readonly rangeConfs = new Map<number, ConfChecker>();
  /** Each range's replica count when first seen, at its split (replicasProblem). */
  private readonly madeReplicas = new Map<number, number>();
  /** Each range's newest descriptor any node applied so far in the run (the range-map check). */
  private readonly newestRanges = new Map<number, RangeDescriptor>();
  /** With meta: the map each node's meta machine applied last, and in which incarnation. */
  private readonly lastMaps = new Map<number, { gen: number; map: RangeMap | null }>();

  constructor(
    private readonly host: InvariantHost,
    private readonly o: InvariantOptions,
  ) {
    this.nodes = o.nodes;
    this.checker = o.checker;
    this.stats = o.stats;
    this.groupCheckers = new Map([[0, o.checker]]);
    this.confs = new ConfChecker(o.voters);
  }

  /** Group `group`'s checker, made on first use. */
  checkerOf(group: number): SafetyChecker {
    let c = this.groupCheckers.get(group);
    if (c === undefined) {
      const name = this.o.meta && group === META_GROUP ? 'meta group' : `range ${group}`;
      c = new SafetyChecker(this.checker.violations, `${name}: `);
      c.nowMs = this.host.nowMs;
      this.groupCheckers.set(group, c);
    }
    return c;
  }

  /** Every checker's clock reads `timeMs`, the time of the event about to run. */
  setNow(timeMs: number): void {
    for (const c of this.groupCheckers.values()) c.nowMs = timeMs;
  }

  /** A node became leader of `group` in `term`: checked once the event is done. */
  onLeader(node: number, term: number, group: number): void {
    this.newLeaders.push({ node, term, group });
  }

  afterEvent(): void {
    while (this.newLeaders.length > 0) {
      const { node, term, group } = this.newLeaders.shift() as (typeof this.newLeaders)[0];
      const checker = this.checkerOf(group);
      checker.onLeader(node, term);
      const n = this.host.node(node);
      const log = group === 0 ? n : n.logOf(group);
      if (n.up && log !== null) checker.checkLeaderCompleteness(log, term);
    }
    if (this.o.leaseReads) this.checkLeases();
    if (this.confs.active()) this.checkConfigurations();
    if (this.o.moves) {
      // After every event: a descriptor a node applied is seen even if every node holding it
      // is down at the next full check (a move leaves a stale removed replica running).
      latestDescriptors(this.nodes, this.newestRanges);
      this.checkMoves();
    }
    if (this.stats.events % FULL_CHECK_EVERY === 0) this.checkAllLogs();
  }

  /** After every event: no leader's lease holds past another node's election (lease reads). */
  private checkLeases(): void {
    for (const n of this.nodes) {
      if (!n.up) continue;
      this.checker.checkLease(n.id, n.raft.term(), n.runtime.leaseHoldsNow());
    }
  }

  /** Full log matching in every group, and (with ranges) the range map. */
  checkAllLogs(): void {
    this.checker.checkLogsPairwise(this.nodes.filter((n) => n.up));
    if (!this.o.ranges) return;
    for (const [group, checker] of this.groupCheckers) {
      if (group === 0) continue;
      checker.checkLogsPairwise(this.nodes.map((n) => n.logOf(group)).filter((l) => l !== null));
    }
    const problem = rangeMapProblem(this.nodes, this.o.voters, this.newestRanges);
    if (problem !== null) this.checker.report('range-map', problem);
  }

  /** Every range's voters n, n+1 or n; a range given up serves nowhere. */
  private checkMoves(): void {
    const replicas = replicasProblem(this.nodes, this.madeReplicas);
    if (replicas !== null) this.checker.report('range-replicas', replicas);
    const retired = retiredServingProblem(this.nodes);
    if (retired !== null) this.checker.report('retired-serving', retired);
  }

  private checkConfigurations(): void {
    const problem = this.confs.checkNodes(this.nodes);
    if (problem !== null) this.checker.report('configuration', problem);
  }

  onReady(node: SimNode, raft: RaftNode, rd: Ready, group = 0): void {
    const checker = this.checkerOf(group);
    // With moves, a range's configurations change: its durability counts in them.
    let rangeConf = this.rangeConfs.get(group);
    if (rangeConf === undefined && this.o.moves && group >= FIRST_ALLOCATED_RANGE) {
      // First seen on a replica the split seeded: its snapshot's voters are the split's.
      rangeConf = new ConfChecker(raft.status().conf.voters);
      this.rangeConfs.set(group, rangeConf);
    }
    if (rd.entries.length > 0) {
      const first = (rd.entries[0] as Entry).index;
      checker.onLogEntries(node.id, rd.entries, raft.entry(first - 1)?.term);
    }
    if (rd.hardState !== null) {
      checker.onCommit(node.id, rd.hardState.commit, (i) => raft.entry(i));
      if (group === 0) {
        this.confs.onCommit(rd.hardState.commit, (i) => raft.entry(i));
        this.stats.committed = this.checker.maxCommitted;
      }
      rangeConf?.onCommit(rd.hardState.commit, (i) => raft.entry(i));
    }
    // The runtime applies exactly these (no-ops included) before it takes the next Ready.
    this.onApplyEntries(node, rd.committedEntries, group);
  }

  onApplyEntries(node: SimNode, entries: readonly Entry[], group: number): void {
    const checker = this.checkerOf(group);
    const rangeConf = this.rangeConfs.get(group);
    for (const e of entries) {
      checker.onApply(node.id, e);
      if (group === 0) this.confs.onApply(e);
      rangeConf?.onApply(e);
    }
  }

  onPersist(entry: Entry, group = 0): void {
    if (!this.checkerOf(group).overwritesCommitted(entry)) return;
    let list = this.overwritten.get(group);
    if (list === undefined) {
      list = [];
      this.overwritten.set(group, list);
    }
    list.push(entry.index);
  }

  afterPersist(group = 0): void {
    const list = this.overwritten.get(group);
    if (list === undefined || list.length === 0) return;
    this.checkerOf(group).checkDurable(this.diskViews(group), list, this.durableEnough(group));
    list.length = 0;
  }

  /** Every committed entry of every group is durable on a majority. */
  checkAllDurable(): void {
    for (const [group, checker] of this.groupCheckers)
      checker.checkDurable(this.diskViews(group), undefined, this.durableEnough(group));
  }

  /**
   * With membership changes, a quorum of the configuration that committed it; with moves, for
   * a range split off range 0, of the range's (its replicas are a few of the nodes); else none.
   */
  private durableEnough(
    group = 0,
  ): ((i: number, holds: (id: number) => boolean) => boolean) | undefined {
    const rangeConf = this.rangeConfs.get(group);
    if (rangeConf !== undefined)
      return (i, holds) => rangeConf.durableOn(i, holds) || rangeConf.durableInLast(holds);
    return this.confs.active() ? (i, holds) => this.confs.durableOn(i, holds) : undefined;
  }

  private diskViews(group = 0): DiskView[] {
    const faults = this.o.faults;
    faults.noteRecoveries();
    return this.nodes.map((n) => ({
      id: n.id,
      holds: (i, t) =>
        faults.wiped.has(n.id) ||
        (group === 0 || !(n.disk instanceof WalNodeDisk)
          ? n.disk.holds(i, t)
          : n.disk.holdsIn(group, i, t)),
    }));
  }

  onApply(
    node: SimNode,
    entry: Entry,
    op: ClientWrite | null,
    effective: boolean,
    group = 0,
  ): void {
    if (op === null) {
      this.checker.report(
        'core-failure',
        `node ${node.id} applied entry ${entry.index} that holds no client write`,
      );
      return;
    }
    if (effective) this.o.clients.onWrite(op, entry.index, group);
    else this.stats.deduped++;
  }

  /** Every map a node's meta machine holds tiles the key space; no generation goes back. */
  onMetaApplied(node: SimNode, map: RangeMap | null): void {
    const last = this.lastMaps.get(node.id);
    const before = last !== undefined && last.gen === node.gen ? last.map : null;
    this.lastMaps.set(node.id, { gen: node.gen, map });
    if (map === null) {
      if (before !== null)
        this.checker.report('meta-map', `node ${node.id}'s meta machine lost its range map`);
      return;
    }
    if (map === before) return;
    const problem = metaMapProblem(map, before);
    if (problem !== null) this.checker.report('meta-map', `node ${node.id}: ${problem}`);
  }

  onSnapshot(node: SimNode, index: number, image: Uint8Array, group = 0): void {
    this.checkerOf(group).onSnapshot(node.id, index, Buffer.from(image).toString('base64'));
  }

  /** Two replicas of a group at the same index hold the same state; each pair compared counts. */
  compareImages(images: readonly ReplicaImage[]): void {
    const seen = new Map<string, { node: number; image: string }>();
    for (const { node, group, index, image } of images) {
      const key = `${group}/${index}`;
      const first = seen.get(key);
      if (first === undefined) {
        seen.set(key, { node, image: image ?? '' });
        continue;
      }
      this.stats.imagesCompared++;
      if (first.image !== image) {
        this.checkerOf(group).report(
          'state-machine-safety',
          `at the end of the run, node ${node}'s state in group ${group} at index ${index} differs from node ${first.node}'s`,
        );
        return;
      }
    }
  }
}

/**
 * Every group's state on `nodes` (those up), at the index each applied; `reads` settle as the
 * images are read out.
 */
export function captureImages(nodes: readonly SimNode[]): {
  images: ReplicaImage[];
  reads: Promise<void>[];
} {
  // Every state is captured now, at one instant; the chunks are made later, paced by the
  // nodes' clocks, so the simulation runs on while they are read.
  const images: ReplicaImage[] = [];
  const reads: Promise<void>[] = [];
  for (const n of nodes) {
    for (const [group, rt] of n.runtimes()) {
      let captured: ReturnType<RaftRuntime['captureApplied']>;
      try {
        captured = rt.captureApplied();
      } catch {
        continue; // installing a snapshot, or stopped: not at an index
      }
      const one = { node: n.id, group, index: captured.index, image: null as string | null };
      images.push(one);
      reads.push(
        (async () => {
          const parts: Buffer[] = [];
          for await (const c of captured.chunks) parts.push(Buffer.from(c));
          one.image = Buffer.concat(parts).toString('base64');
        })(),
      );
    }
  }
  return { images, reads };
}
