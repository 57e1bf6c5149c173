// A node's disk made of the product's real WAL (src/storage/wal.ts) over the simulated file
// system (sim-fs.ts): every append, sync, rotation, compaction and snapshot file the node
// writes goes through the code a real node runs, and a crash leaves what the simulated disk
// says survives (unsynced writes lost, the last one possibly torn), from which the next start
// runs the WAL's own recovery.
//
// The durability check needs to know what is durable without a crash: a mirror (a VirtualDisk)
// records what the WAL acknowledged, in order. At each start after a crash, everything the
// mirror held must come back from recovery; if not, the WAL lost an acknowledged write and the
// start fails with that, which the simulation reports.

import type { GroupStorage } from '../host/contracts.js';
import {
  createRng,
  type Entry,
  type HardState,
  type Recovery,
  type Rng,
  type SnapshotMeta,
} from '../raft/index.js';
import type { StorageFs } from '../storage/fs.js';
import { openWalStorage, type WalStorage } from '../storage/index.js';
import { VirtualDisk } from './disk.js';
import { SimDisk, type SimIo } from './sim-fs.js';
import { groupDir as groupDirIn } from '../server/data-dir.js';
import { RangeDirs } from '../server/range-dirs.js';
import type { DiskFactory, DiskIo, NodeDisk } from './sim-storage.js';

/** Each group's WAL lives in its own directory of the node's one simulated disk. */
const DATA_DIR = '/data';
const groupDir = (group: number): string => groupDirIn(DATA_DIR, group);

/** What the WAL of one group acknowledged: the durability check's view and recovery's floor. */
interface GroupMirror {
  mirror: VirtualDisk;
  /**
   * The first index a write in flight (issued, not acknowledged) replaces or appends, or
   * Infinity. A crash may leave such a write partly done: the WAL may have cut the old suffix
   * it replaces without the new entries being durable, which is allowed (those entries were
   * never acknowledged, and the old ones were being replaced by the current leader's).
   */
  pendingFrom: number;
  /** The group's recovery flag (RaftConfig.recovery) as the node stored it; null until then. */
  recovery: Recovery | null;
}

export class WalNodeDisk implements NodeDisk {
  private disk: SimDisk;
  /** Group 0 (the key-value group every node runs), then any range group opened on this disk. */
  private groups = new Map<number, GroupMirror>();
  /** The node's incarnation the disk serves now (it routes the disk's virtual latency). */
  private io: DiskIo | null = null;
  recovery: Recovery | null = null;
  /**
   * With the meta group: the node's recovery as its identity file holds it (node-recovery.ts),
   * `recovering` from a start after its data was lost until every group caught up. Group 0's
   * flag, `recovery`, is that group's alone then.
   */
  nodeRecovery: Recovery | null = null;
  /**
   * Range groups (other than group 0) that existed in the cluster when this disk was wiped:
   * each starts here recovering a lost disk until it stores a flag of its own, as group 0
   * does by the start-up rule. Groups created after the wipe never had data here to lose.
   */
  readonly lostGroups = new Set<number>();
  /**
   * The product's record of the ranges given up, prepared and held here (retired-ranges.json
   * in the data directory), as the running incarnation read it at its start; null until one
   * reads it after a crash.
   */
  private dirs: RangeDirs | null = null;

  constructor(
    private readonly rng: Rng,
    /** Wraps the file system the WAL sees (tests plant a disk that lies about syncs). */
    private readonly wrapFs: (fs: StorageFs) => StorageFs = (fs) => fs,
  ) {
    this.disk = this.newDisk();
  }

  async open(io: DiskIo): Promise<GroupStorage> {
    return this.openGroup(0, io);
  }

  /** Group `group`'s storage: the product's WAL in the group's own directory of this disk. */
  async openGroup(group: number, io: DiskIo): Promise<GroupStorage> {
    this.io = io;
    const g = this.group(group);
    const wal = await openWalStorage(groupDir(group), {
      fs: this.wrapFs(this.disk.mount()),
      snapshotsCoverCompaction: true,
      // Small segments, so rotation and compaction happen within a seed's few hundred entries.
      segmentBytes: 16 * 1024,
    });
    this.checkRecovered(wal, g);
    return {
      initialState: () => wal.initialState(),
      persist: async (entries: readonly Entry[], hardState: HardState | null) => {
        for (const e of entries) io.onEntry(e);
        if (entries.length > 0) g.pendingFrom = (entries[0] as Entry).index;
        await wal.persist(entries, hardState);
        g.pendingFrom = Infinity;
        g.mirror.persist(entries, hardState, () => undefined);
        io.afterWrite();
      },
      saveSnapshot: async (meta: SnapshotMeta, data: Uint8Array) => {
        await wal.saveSnapshot(meta, data);
        g.mirror.saveSnapshot({ meta, bytes: data });
        io.onSnapshot(meta, data);
      },
      // As nodes save theirs: written as encoded. The checks want the bytes, read back.
      saveSnapshotFrom: async (meta: SnapshotMeta, data: AsyncIterable<Uint8Array>) => {
        const bytes = await wal.saveSnapshotFrom(meta, data);
        if (bytes === null) return null;
        const saved = await wal.loadSnapshot();
        if (saved?.meta.index !== meta.index) throw new Error(`snapshot ${meta.index} not held`);
        g.mirror.saveSnapshot({ meta, bytes: saved.data });
        io.onSnapshot(meta, saved.data);
        return bytes;
      },
      loadSnapshot: () => wal.loadSnapshot(),
      openSnapshot: () => wal.openSnapshot(),
      readSnapshotRange: (
        meta: SnapshotMeta,
        total: number,
        offset: number,
        length: number,
        spare: number,
      ) => wal.readSnapshotRange(meta, total, offset, length, spare),
      close: () => wal.close(),
    };
  }

  crash(): void {
    this.io = null;
    this.disk.crash();
    this.dirs = null;
  }

  wipe(): void {
    this.disk = this.newDisk();
    this.groups = new Map();
    this.recovery = null;
    this.nodeRecovery = null;
    this.dirs = null;
  }

  /**
   * The range record as a starting node reads it (node-open.ts): from the file in the data
   * directory, over this disk, so that a crash keeps only what the record synced.
   */
  openRangeDirs(): RangeDirs {
    this.dirs = new RangeDirs(DATA_DIR, this.disk.mount().dirsFs());
    return this.dirs;
  }

  /** The record the running incarnation read (or the disk's, read now, while none runs). */
  get rangeDirs(): RangeDirs {
    return this.dirs ?? this.openRangeDirs();
  }

  /**
   * Deletes range `id`'s directory through `dirs`, the record of the incarnation asking (an
   * incarnation that died changes nothing). What its WAL acknowledged is no longer held here:
   * a crash that loses the removal may bring the files back, and they are then checked
   * against nothing.
   */
  removeRange(dirs: RangeDirs, id: number): void {
    dirs.remove(id);
    if (dirs !== this.dirs) return;
    this.groups.delete(id);
    // A range lost in a wipe and given up before it caught up has nothing left to recover.
    this.lostGroups.delete(id);
  }

  /** Whether group `group` holds anything on this disk (a term, an entry or a snapshot). */
  holdsGroup(group: number): boolean {
    return this.groups.get(group)?.mirror.isBlank() === false;
  }

  /** Whether group `group` holds a log on this disk (an entry or a snapshot). */
  holdsLogOf(group: number): boolean {
    return this.groups.get(group)?.mirror.hasLog() === true;
  }

  holds(index: number, term: number): boolean {
    return this.group(0).mirror.holds(index, term);
  }

  hasLog(): boolean {
    return this.group(0).mirror.hasLog();
  }

  isBlank(): boolean {
    for (const g of this.groups.values()) if (!g.mirror.isBlank()) return false;
    return true;
  }

  /** Whether group `group`'s WAL durably covers `index` with `term`. */
  holdsIn(group: number, index: number, term: number): boolean {
    return this.group(group).mirror.holds(index, term);
  }

  /** Group `group`'s stored recovery flag (group 0's is the identity file's, `recovery`). */
  groupRecovery(group: number): Recovery | null {
    return group === 0 ? this.recovery : this.group(group).recovery;
  }

  storeGroupRecovery(group: number, r: Recovery): void {
    if (group === 0) this.recovery = r;
    else this.group(group).recovery = r;
  }

  /**
   * Whether some group is still recovering a lost disk: its stored flag says so, or it lost
   * its data in the wipe and has not stored that it caught up (it may not have started yet),
   * or the node's own flag says it has not finished recovering.
   */
  anyRecovering(): boolean {
    return (
      this.recovery === 'recovering' ||
      this.nodeRecovery === 'recovering' ||
      this.recoveringGroups().length > 0
    );
  }

  /** The range groups whose stored flag says recovering, or lost and not stored caught up. */
  recoveringGroups(): number[] {
    const ids = new Set<number>();
    for (const [id, g] of this.groups) if (g.recovery === 'recovering') ids.add(id);
    for (const id of this.lostGroups) if (this.groupRecovery(id) !== 'none') ids.add(id);
    return [...ids].sort((a, b) => a - b);
  }

  private group(id: number): GroupMirror {
    let g = this.groups.get(id);
    if (g === undefined) {
      g = { mirror: new VirtualDisk(), pendingFrom: Infinity, recovery: null };
      this.groups.set(id, g);
    }
    return g;
  }

  private newDisk(): SimDisk {
    return new SimDisk({
      rng: this.rng,
      // Syncs take virtual time; the rest of the file system answers at once.
      schedule: (op: SimIo) =>
        isSync(op) && this.io !== null
          ? new Promise<void>((resolve) => (this.io as DiskIo).later(resolve))
          : Promise.resolve(),
    });
  }

  /**
   * Recovery must give back everything the WAL acknowledged before the crash: each entry the
   * mirror holds is in the recovered log with its term, or covered by the recovered snapshot,
   * or was being replaced by the write in flight at the crash;
   * the term and vote are at least as new. More may come back (writes that reached the disk
   * unacknowledged); the mirror then starts again from what recovery found.
   */
  private checkRecovered(wal: WalStorage, g: GroupMirror): void {
    const got = wal.initialState();
    const snapIndex = got.snapshot?.index ?? 0;
    const lost: string[] = [];
    const m = g.mirror.initialState();
    const termOf = new Map(got.entries.map((e) => [e.index, e.term]));
    for (const e of m.entries) {
      if (e.index <= snapIndex || e.index >= g.pendingFrom) continue;
      if (termOf.get(e.index) !== e.term) lost.push(`${e.index}/${e.term}`);
    }
    g.pendingFrom = Infinity;
    if ((m.snapshot?.index ?? 0) > snapIndex) lost.push(`snapshot ${m.snapshot?.index}`);
    if (
      got.hardState.term < m.hardState.term ||
      (got.hardState.term === m.hardState.term &&
        m.hardState.vote !== 0 &&
        got.hardState.vote !== m.hardState.vote)
    )
      lost.push(`term ${m.hardState.term} vote ${m.hardState.vote}`);
    if (lost.length > 0)
      throw new Error(
        `the WAL lost acknowledged writes in a crash: ${lost.slice(0, 5).join(', ')}`,
      );
    const mirror = new VirtualDisk();
    if (got.snapshot !== null) {
      const snap = got.snapshot;
      mirror.saveSnapshot({ meta: snap, bytes: new Uint8Array(0) });
    }
    mirror.persist(got.entries, got.hardState, () => undefined);
    g.mirror = mirror;
  }
}

/** Operations that reach the device (a write, a sync) take the disk's virtual latency. */
function isSync(op: SimIo): boolean {
  return (
    op.kind === 'write' || op.kind === 'datasync' || op.kind === 'fsync' || op.kind === 'syncdir'
  );
}

/** Every node's disk is the real WAL over a simulated file system, seeded per node. */
export const walDisks =
  (seed: number, wrapFs?: (fs: StorageFs) => StorageFs): DiskFactory =>
  (nodeId) =>
    new WalNodeDisk(createRng(seed * 1_000_003 + nodeId), wrapFs);
