// The WAL's write side: the active segment, rotation to new segments, and group commit.
// Invariant: every entry written to segment k has an index > prev(k), the position its header
// names; so segments before the newest one whose prev <= T hold nothing after T and may be
// deleted once the log is compacted through T (see dropThrough).

import { join } from 'node:path';
import type { HardState } from '../raft/index.js';
import { hex } from './codec.js';
import { ioFailure } from './errors.js';
import type { StorageFile, StorageFs } from './fs.js';
import type { Syncer } from './fsutil.js';
import { writevFully, writevFullyNow } from './fsutil.js';
import { BufferPool } from './buffer-pool.js';
import { GroupCommitter } from './group-commit.js';
import type { InlineWrites } from './inline-writes.js';
import type { JournaledFile, NodeJournal } from './journal.js';
import type { Position } from './records.js';
import { encodeBase, encodeHardState, encodeSegmentHeader } from './records.js';
import type { SegmentInfo } from './wal-recover.js';

const POOLED_BUFFER_MAX_BYTES = 4 * 1024 * 1024;
const POOLED_BUFFERS = 4;

export const SEGMENT_NAME = /^wal-([0-9a-f]{16})\.seg$/;

export function segmentFileName(seq: number): string {
  return `wal-${hex(seq, 16)}.seg`;
}

/** One unit of the write queue, built by WalStorage from the in-memory log at submit time. */
export interface WalItem {
  readonly records: readonly Buffer[];
  /** A buffer from the writer's pool that `records` use; handed back once the flush is over. */
  readonly lease: Buffer | null;
  /** Index of the first entry when it replaces part of the suffix; else null. */
  readonly replaceFrom: number | null;
  /** Position before the first entry (used as a new segment's prev on a forced rotation). */
  readonly prevOfFirst: Position;
  /** A snapshot replaced the whole log: start a segment whose prev is this position. */
  readonly resetTo: Position | null;
  /** State after this item: last entry, compaction base and hard state. */
  readonly lastAfter: Position;
  readonly baseAfter: Position;
  readonly hardStateAfter: HardState;
  /** The caller asked for the write on its own thread (PersistOptions.inline). */
  readonly inline: boolean;
}

interface Active {
  readonly info: SegmentInfo;
  readonly fh: StorageFile;
  /** The segment as the node journal writes it (journaled mode only). */
  readonly file: SegmentFile | null;
}

/**
 * A segment written through the node journal: its writes are not synced where they are made
 * (the journal's are), so the journal syncs it at a checkpoint, and the writer syncs it once
 * more when it stops writing to it (rotation, close).
 */
class SegmentFile implements JournaledFile {
  private final: Promise<void> | null = null;
  private readonly syncing = new Set<Promise<void>>();

  constructor(
    readonly path: string,
    private readonly fh: StorageFile,
    private readonly syncer: Syncer,
  ) {}

  async write(bufs: Buffer[], position: number): Promise<void> {
    if (this.final !== null) throw new Error(`${this.path} was written after it was closed`);
    await writevFully(this.fh, bufs, position);
  }

  sync(): Promise<void> {
    if (this.final !== null) return this.final;
    const p = this.syncer.datasync(this.fh, this.path);
    this.syncing.add(p);
    return p.finally(() => this.syncing.delete(p));
  }

  /** Syncs and closes; a checkpoint's later sync() waits for this one rather than fail. */
  finish(): Promise<void> {
    this.final ??= (async () => {
      try {
        await Promise.allSettled([...this.syncing]);
        await this.syncer.datasync(this.fh, this.path);
      } finally {
        await this.fh.close();
      }
    })();
    return this.final;
  }
}

export interface WriterState {
  readonly last: Position;
  readonly base: Position;
  readonly hardState: HardState;
}

/**
 * How a write becomes durable. 'dsync' opens segments with O_DSYNC, so each write returns only
 * once its data (and the size needed to read it back) is on stable storage: the same promise
 * as write + fdatasync (POSIX synchronized I/O data integrity), in one system call and one trip
 * to the thread pool, so the next batch is encoded while this one is written. 'fdatasync'
 * writes, then calls fdatasync, through the sync hook (tests use it to inject failures).
 */
export type SyncMode = 'dsync' | 'fdatasync';

export class WalWriter {
  private active: Active | null = null;
  private written: WriterState;
  readonly commits: GroupCommitter<WalItem>;
  /** Encode buffers: a few, since one batch is encoded while the previous ones are written. */
  readonly encodeBuffers = new BufferPool(POOLED_BUFFER_MAX_BYTES, POOLED_BUFFERS);

  constructor(
    private readonly dir: string,
    private readonly syncer: Syncer,
    private readonly segmentBytes: number,
    private readonly mode: SyncMode,
    readonly segments: SegmentInfo[],
    initial: WriterState,
    /** Journaled mode: writes go through the node journal (mode must then be 'fdatasync'). */
    private readonly journal: NodeJournal | null = null,
    /** When a flush whose every item asks for it is written on the calling thread; null never. */
    private readonly inline: InlineWrites | null = null,
  ) {
    if (journal !== null && mode !== 'fdatasync')
      throw new Error('A journaled WAL writes its segments without O_DSYNC (syncMode fdatasync)');
    this.written = initial;
    this.commits = new GroupCommitter((items) => this.flush(items), `WAL in ${dir}`);
  }

  /** Opens the last recovered segment for appending. */
  async resume(): Promise<void> {
    const info = this.segments[this.segments.length - 1];
    if (info === undefined) throw new Error('resume() needs a segment');
    const fh = await this.fs.open(info.path, { create: 'no', dsync: this.dsync });
    this.active = { info, fh, file: this.journaledFile(info.path, fh) };
  }

  /** Starts a new segment (at open, on size, on a deep suffix replacement, or on a reset). */
  async rotate(prev: Position, base: Position): Promise<void> {
    if (this.active !== null) {
      await this.retire(this.active);
      this.active = null;
    }
    const seq = (this.segments[this.segments.length - 1]?.seq ?? 0) + 1;
    const path = join(this.dir, segmentFileName(seq));
    const head = [
      encodeSegmentHeader(seq, prev),
      encodeBase(base),
      encodeHardState(this.written.hardState),
    ];
    const fh = await this.fs.open(path, { create: 'exclusive', dsync: this.dsync });
    const info: SegmentInfo = { seq, path, prev, sizeBytes: 0 };
    this.active = { info, fh, file: this.journaledFile(path, fh) };
    try {
      info.sizeBytes = await writevFully(fh, head, 0);
    } catch (err) {
      throw ioFailure('STORAGE_WRITE_FAILED', `writing ${path}`, err);
    }
    await this.sync(this.active);
    await this.syncer.fsyncDir(this.dir);
    // Listed only now: a snapshot finishing meanwhile compacts against the listed segments,
    // and must not delete the ones before this segment (the hard state among them) until its
    // head, which carries the hard state on, is durable.
    this.segments.push(info);
  }

  private rotationFor(item: WalItem, info: SegmentInfo): { prev: Position; base: Position } | null {
    if (item.resetTo !== null) return { prev: item.resetTo, base: item.resetTo };
    if (item.replaceFrom !== null && item.replaceFrom <= info.prev.index)
      return { prev: item.prevOfFirst, base: this.written.base };
    if (info.sizeBytes >= this.segmentBytes) {
      // A replacement's entries start at or below the last index: the new segment's prev must
      // be the position before them, or the invariant above breaks.
      const prev = item.replaceFrom === null ? this.written.last : item.prevOfFirst;
      return { prev, base: this.written.base };
    }
    return null;
  }

  private async flush(items: readonly WalItem[]): Promise<void> {
    try {
      await this.writeItems(items);
    } finally {
      // Settled writes no longer read the buffers (and failed ones are never retried).
      for (const item of items) if (item.lease !== null) this.encodeBuffers.give(item.lease);
    }
  }

  private async writeItems(items: readonly WalItem[]): Promise<void> {
    const inline = items.every((item) => item.inline);
    let bufs: Buffer[] = [];
    for (const item of items) {
      const active = this.activeOrThrow();
      const rot = this.rotationFor(item, active.info);
      if (rot !== null) {
        await this.writeOut(bufs, inline);
        bufs = [];
        await this.rotate(rot.prev, rot.base);
      }
      bufs.push(...item.records);
      this.written = { last: item.lastAfter, base: item.baseAfter, hardState: item.hardStateAfter };
    }
    await this.writeOut(bufs, inline);
    // Journaled: durable already, in the node journal.
    if (this.journal === null) await this.sync(this.activeOrThrow());
  }

  private journaledFile(path: string, fh: StorageFile): SegmentFile | null {
    return this.journal === null ? null : new SegmentFile(path, fh, this.syncer);
  }

  /** Makes a segment this writer stops writing to durable, and closes it. */
  private async retire(active: Active): Promise<void> {
    if (active.file !== null) return active.file.finish();
    await this.sync(active);
    await active.fh.close();
  }

  private get fs(): StorageFs {
    return this.syncer.fs;
  }

  private get dsync(): boolean {
    return this.mode === 'dsync';
  }

  /** In dsync mode every completed write is already durable. */
  private async sync(active: Active): Promise<void> {
    if (this.mode === 'fdatasync') await this.syncer.datasync(active.fh, active.info.path);
  }

  /**
   * Writes `bufs` at the end of the active segment. `inline`: on the calling thread when the
   * write is durable as it returns (O_DSYNC, no journal) and small enough, so the caller's
   * promise settles without a trip to the thread pool and back.
   */
  private async writeOut(bufs: Buffer[], inline: boolean): Promise<void> {
    if (bufs.length === 0) return;
    const { info, fh, file } = this.activeOrThrow();
    const bytes = bufs.reduce((n, b) => n + b.length, 0);
    if (this.journal !== null && file !== null) {
      await this.journal.write(file, info.sizeBytes, bufs);
      info.sizeBytes += bytes;
      return;
    }
    const policy = this.dsync ? this.inline : null;
    const started = policy?.start() ?? 0;
    try {
      const now =
        inline && policy?.allows(bytes) === true
          ? writevFullyNow(this.fs, fh, bufs, info.sizeBytes)
          : null;
      info.sizeBytes += now ?? (await writevFully(fh, bufs, info.sizeBytes));
      policy?.end(started);
    } catch (err) {
      throw ioFailure('STORAGE_WRITE_FAILED', `writing ${info.path}`, err);
    }
  }

  private activeOrThrow(): Active {
    if (this.active === null) throw new Error('WAL has no active segment');
    return this.active;
  }

  /**
   * Deletes the segments that hold nothing after `through`: all before the newest segment
   * whose prev <= through. Oldest first, so a crash part-way leaves a valid suffix.
   */
  async dropThrough(through: number): Promise<number> {
    let keepFrom = 0;
    for (const [k, s] of this.segments.entries()) if (s.prev.index <= through) keepFrom = k;
    const doomed = this.segments.splice(0, keepFrom);
    for (const s of doomed) await this.fs.rm(s.path);
    if (doomed.length > 0) await this.syncer.fsyncDir(this.dir);
    return doomed.length;
  }

  async close(): Promise<void> {
    await this.commits.close();
    const active = this.active;
    this.active = null;
    if (active === null) return;
    if (active.file === null || this.journal === null) {
      await active.fh.close();
      return;
    }
    if (this.commits.failed() !== null) {
      // No release: the next start redoes this directory's writes from the journal. Should this
      // last sync fail, the journal's next checkpoint fails on it and stops every group rather
      // than drop writes that exist nowhere else.
      await active.file.finish().catch(() => undefined);
      return;
    }
    await this.retire(active);
    // Its segments are durable: their journal records must not be redone into whatever this
    // directory holds next (it may be deleted and made again by a new replica of the group).
    await this.journal.release(this.dir);
  }
}
