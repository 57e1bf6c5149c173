// The simulated node's disk, and the GroupStorage the production runtime writes through.
// `NodeDisk` is the seam: the simulation needs only what it declares (open storage over what
// survived, lose power, lose everything, answer the durability check), so a disk made of the
// real WAL over a simulated file system replaces `VirtualDiskStore` by passing another
// `DiskFactory` in SimOptions.

import type { Entry, HardState, Recovery, SnapshotMeta } from '../raft/index.js';
import type { GroupStorage } from '../host/contracts.js';
import { VirtualDisk } from './disk.js';

/** What a disk needs from the node it belongs to. */
export interface DiskIo {
  /**
   * Runs `done` after the virtual latency of one write, unless the node loses power first:
   * then it never runs, and the storage's promise never settles (the runtime is abandoned).
   */
  later(done: () => void): void;
  /** An entry is about to be stored at its index (the checker rechecks overwritten ones). */
  onEntry(entry: Entry): void;
  /** A write of entries landed. */
  afterWrite(): void;
  /** A snapshot became durable on this disk. */
  onSnapshot(meta: SnapshotMeta, data: Uint8Array): void;
}

/** One node's disk as the simulation sees it. */
export interface NodeDisk {
  /** Storage over what the disk holds now, for a runtime that is (re)starting. */
  open(io: DiskIo): GroupStorage | Promise<GroupStorage>;
  /** Power loss: writes not completed are lost (their completions never run). */
  crash(): void;
  /** The data directory is lost: the node restarts with nothing, recovery flag included. */
  wipe(): void;
  /** Whether the disk durably covers `index` with `term` (the durability check). */
  holds(index: number, term: number): boolean;
  /** Whether some log is stored (an entry or a snapshot): what the handshake's hasLog says. */
  hasLog(): boolean;
  /** Whether nothing at all is stored (a new or wiped data directory). */
  isBlank(): boolean;
  /**
   * The identity file's recovery state (DESIGN.md, "A node that lost its data"); null until
   * first written. The runtime writes it through `storeRecovery`, synchronously.
   */
  recovery: Recovery | null;
}

export type DiskFactory = (nodeId: number) => NodeDisk;

/** The default disk: a VirtualDisk whose writes take virtual time and are atomic. */
export class VirtualDiskStore implements NodeDisk {
  readonly disk = new VirtualDisk();

  get recovery(): Recovery | null {
    return this.disk.recovery;
  }

  set recovery(r: Recovery | null) {
    this.disk.recovery = r;
  }

  open(io: DiskIo): GroupStorage {
    const disk = this.disk;
    return {
      initialState: () => disk.initialState(),
      persist: (entries: readonly Entry[], hardState: HardState | null) =>
        new Promise<void>((resolve) =>
          io.later(() => {
            disk.persist(entries, hardState, (e) => io.onEntry(e));
            io.afterWrite();
            resolve();
          }),
        ),
      saveSnapshot: (meta: SnapshotMeta, data: Uint8Array) =>
        new Promise<void>((resolve) =>
          io.later(() => {
            disk.saveSnapshot({ meta, bytes: data });
            io.onSnapshot(meta, data);
            resolve();
          }),
        ),
      loadSnapshot: () => {
        const s = disk.snapshot();
        return Promise.resolve(s === null ? null : { meta: s.meta, data: s.bytes });
      },
      close: () => Promise.resolve(),
    };
  }

  crash(): void {
    // Nothing to undo: a write lands only when its completion runs.
  }

  wipe(): void {
    this.disk.wipe();
  }

  holds(index: number, term: number): boolean {
    return this.disk.holds(index, term);
  }

  hasLog(): boolean {
    return this.disk.hasLog();
  }

  isBlank(): boolean {
    return this.disk.isBlank();
  }
}

export const virtualDisks: DiskFactory = () => new VirtualDiskStore();
