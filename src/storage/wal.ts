// The default backend: a write-ahead log of segment files plus snapshot files, one directory
// per node. See docs/STORAGE.md for the format, recovery rules and guarantees.

import { join } from 'node:path';
import type { Entry, HardState, InitialState, SnapshotMeta } from '../raft/index.js';
import { StorageError, closedError, ioFailure, rejected } from './errors.js';
import { nodeFs } from './fs.js';
import type { StorageFs } from './fs.js';
import { Syncer } from './fsutil.js';
import { checkBatch, checkSnapshotSize, resolveLimits } from './limits.js';
import type { ResolvedLimits } from './limits.js';
import { checkHardState, checkSnapshotMeta } from './log-index.js';
import type { LogIndex } from './log-index.js';
import { LOCK_FILE } from './lock.js';
import type { DirLock } from './lock.js';
import {
  encodeBase,
  encodeEntries,
  encodeHardState,
  entriesEncodedBytes,
  firstIndexOfEntries,
  readRecord,
} from './records.js';
import type { Position } from './records.js';
import {
  SnapshotSourceError,
  listSnapshotFiles,
  readSnapshotFile,
  SnapshotChunkReader,
  removeOlderSnapshots,
  snapshotFileData,
  verifySnapshotFile,
  writeSnapshotFile,
  writeSnapshotFileFrom,
  snapshotFileName,
  type SnapshotFileHead,
} from './snapshot-file.js';
import type {
  LogStore,
  PersistOptions,
  RaftStorage,
  SnapshotStore,
  StableStore,
  StoredSnapshot,
  WalOptions,
} from './types.js';
import { recoverWal } from './wal-recover.js';
import type { WalRepair } from './wal-recover.js';

export type { WalRepair };

/** What recovery did when the WAL was opened. */
export interface WalRecoveryReport {
  /** Torn writes cut and empty segments removed: each was never acknowledged. */
  readonly repairs: readonly WalRepair[];
  /** Set when the snapshot was ahead of the WAL and the log was reset to it. */
  readonly resetTo: Position | null;
}
import { INLINE_WRITE_MAX_BYTES, InlineWrites } from './inline-writes.js';
import { SEGMENT_NAME, WalWriter } from './wal-writer.js';
import type { WalItem } from './wal-writer.js';

const MIN_SEGMENT_BYTES = 4096;
const DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024;

export class WalStorage implements RaftStorage {
  private hardState: HardState;
  private snapshotMeta: SnapshotMeta | null;
  /** The snapshot file chunks are read from while it is the latest, open (readSnapshotRange). */
  private chunkReader: { key: string; reader: Promise<SnapshotChunkReader> } | null = null;
  /** The snapshot file's header as open read it (openSnapshot at start reads it again else). */
  private readonly openedHead: SnapshotFileHead | null;
  private snapshotChain: Promise<void> = Promise.resolve();
  private closing: Promise<void> | null = null;
  readonly log: LogStore;
  readonly stable: StableStore;
  readonly snapshots: SnapshotStore;
  /** What opening this store repaired on disk; the opener logs it (nothing, after a clean stop). */
  readonly recovery: WalRecoveryReport;

  constructor(
    private readonly dir: string,
    private readonly index: LogIndex,
    private readonly writer: WalWriter,
    private readonly syncer: Syncer,
    private readonly limits: ResolvedLimits,
    private readonly lock: DirLock,
    recovered: {
      hardState: HardState;
      snapshot: SnapshotMeta | null;
      /** The snapshot file's header, read and its file checked at open. */
      head: SnapshotFileHead | null;
      report: WalRecoveryReport;
    },
  ) {
    this.hardState = recovered.hardState;
    this.snapshotMeta = recovered.snapshot;
    this.openedHead = recovered.head;
    this.recovery = recovered.report;
    this.log = {
      firstIndex: () => this.index.firstIndex(),
      lastIndex: () => this.index.lastIndex(),
      term: (i) => this.index.term(i),
      entries: (lo, hi) => this.index.entries(lo, hi),
      append: (entries) => this.persist(entries, null),
      compact: (through) => this.compact(through),
      close: () => this.close(),
    };
    this.stable = { load: () => this.hardState, save: (hs) => this.persist([], hs) };
    this.snapshots = { save: (m, d) => this.saveSnapshot(m, d), latest: () => this.loadSnapshot() };
  }

  initialState(): InitialState {
    return {
      hardState: this.hardState,
      snapshot: this.snapshotMeta,
      entries: this.index.all().slice(),
      applied: this.snapshotMeta?.index ?? 0,
    };
  }

  persist(
    entries: readonly Entry[],
    hardState: HardState | null,
    opts: PersistOptions = {},
  ): Promise<void> {
    try {
      this.writer.commits.checkWritable();
      checkBatch(entries, this.limits);
      this.index.checkAppend(entries);
      if (hardState !== null) checkHardState(hardState, this.hardState);
    } catch (err) {
      return rejected(err);
    }
    if (entries.length === 0 && hardState === null) return Promise.resolve();
    return this.writer.commits.submit(this.appendItem(entries, hardState, opts.inline === true));
  }

  /** Applies the append to the in-memory log and encodes its records (checked before writing). */
  private appendItem(
    entries: readonly Entry[],
    hardState: HardState | null,
    inline: boolean,
  ): WalItem {
    const first = entries[0];
    const prevOfFirst =
      first === undefined
        ? this.lastPosition()
        : { index: first.index - 1, term: this.index.term(first.index - 1) ?? 0 };
    const replaceFrom = this.index.append(entries);
    if (hardState !== null) this.hardState = hardState;
    const buf = this.writer.encodeBuffers.take(entriesEncodedBytes(entries));
    const end = encodeEntries(buf, 0, entries);
    verifyEncoded(buf, end, entries);
    const records = hardState === null ? [buf] : [buf, encodeHardState(hardState)];
    return {
      records,
      lease: buf,
      replaceFrom,
      prevOfFirst,
      resetTo: null,
      inline,
      ...this.stateAfter(),
    };
  }

  private lastPosition(): Position {
    const index = this.index.lastIndex();
    return { index, term: this.index.term(index) ?? 0 };
  }

  private stateAfter(): Pick<WalItem, 'lastAfter' | 'baseAfter' | 'hardStateAfter'> {
    return {
      lastAfter: this.lastPosition(),
      baseAfter: this.index.base(),
      hardStateAfter: this.hardState,
    };
  }

  private baseItem(resetTo: Position | null): WalItem {
    const base = this.index.base();
    return {
      records: [encodeBase(base)],
      lease: null,
      replaceFrom: null,
      prevOfFirst: base,
      resetTo,
      inline: false,
      ...this.stateAfter(),
    };
  }

  async compact(through: number): Promise<void> {
    this.writer.commits.checkWritable();
    if (through <= this.index.base().index) return;
    this.index.compact(through);
    await this.writer.commits.submit(this.baseItem(null));
    await this.writer.dropThrough(through);
  }

  saveSnapshot(meta: SnapshotMeta, data: Uint8Array): Promise<void> {
    try {
      this.writer.commits.checkWritable();
      checkSnapshotMeta(meta);
      checkSnapshotSize(data.length, this.limits);
    } catch (err) {
      return rejected(err);
    }
    const next = this.snapshotChain.then(() =>
      this.writeSnapshot(meta, async () => {
        await writeSnapshotFile(this.syncer, this.dir, meta, data);
      }),
    );
    this.snapshotChain = next.catch(() => undefined);
    return next;
  }

  /**
   * saveSnapshot from the snapshot's pieces as they come, never holding it whole (the file is
   * byte for byte what saveSnapshot writes). Answers its size, or null when a snapshot at or
   * past meta.index is held already: then `data` is read to its end unwritten, so its source
   * lets go of what it holds. Too large a snapshot, or a source that fails, leaves no file
   * and the store writable; a failed write or sync latches the store as saveSnapshot does.
   */
  saveSnapshotFrom(meta: SnapshotMeta, data: AsyncIterable<Uint8Array>): Promise<number | null> {
    try {
      this.writer.commits.checkWritable();
      checkSnapshotMeta(meta);
    } catch (err) {
      return rejected(err);
    }
    const next = this.snapshotChain.then(async () => {
      this.writer.commits.checkWritable();
      if (meta.index <= (this.snapshotMeta?.index ?? 0)) {
        for await (const piece of data) void piece;
        return null;
      }
      let bytes = 0;
      await this.writeSnapshot(meta, async () => {
        bytes = await writeSnapshotFileFrom(
          this.syncer,
          this.dir,
          meta,
          data,
          this.limits.maxSnapshotBytes,
        );
      });
      return bytes;
    });
    this.snapshotChain = next.then(
      () => undefined,
      () => undefined,
    );
    return next;
  }

  private async writeSnapshot(meta: SnapshotMeta, write: () => Promise<void>): Promise<void> {
    this.writer.commits.checkWritable();
    if (meta.index <= (this.snapshotMeta?.index ?? 0)) return;
    try {
      await write();
    } catch (err) {
      // A refusal (too large) or the source's own failure wrote nothing: the store goes on.
      if (err instanceof SnapshotSourceError) throw err;
      if (err instanceof StorageError && err.code === 'STORAGE_LIMIT') throw err;
      const failure = ioFailure('STORAGE_WRITE_FAILED', `writing snapshot ${meta.index}`, err);
      this.writer.commits.fail(failure);
      throw failure;
    }
    this.snapshotMeta = meta;
    void this.dropChunkReader();
    const outcome = this.index.applySnapshot(meta);
    if (outcome !== 'stale') {
      const resetTo = outcome === 'reset' ? { index: meta.index, term: meta.term } : null;
      await this.writer.commits.submit(this.baseItem(resetTo));
    }
    await removeOlderSnapshots(this.syncer.fs, this.dir, meta.index);
    await this.writer.dropThrough(meta.index);
  }

  /**
   * `length` bytes from `offset` of the data of the snapshot held for `meta` (of `dataBytes`
   * bytes), read from its file without the rest: a chunk for a follower. Null when the
   * snapshot held is another (a newer one replaced it).
   */
  async readSnapshotRange(
    meta: SnapshotMeta,
    dataBytes: number,
    offset: number,
    length: number,
    spare = 0,
  ): Promise<Uint8Array | null> {
    if (this.closing !== null) throw closedError('the WAL');
    const held = (): boolean =>
      this.snapshotMeta?.index === meta.index && this.snapshotMeta.term === meta.term;
    if (!held()) return null;
    // The file stays open from one chunk to the next, until a newer snapshot replaces it.
    const key = `${meta.index}/${meta.term}/${dataBytes}`;
    if (this.chunkReader?.key !== key) {
      void this.dropChunkReader();
      const reader = SnapshotChunkReader.open(this.syncer.fs, this.dir, meta, dataBytes);
      this.chunkReader = { key, reader };
      // A failed open is tried again by the next read, not remembered.
      reader.catch(() => {
        if (this.chunkReader?.reader === reader) this.chunkReader = null;
      });
    }
    try {
      return await (await this.chunkReader.reader).read(offset, length, spare);
    } catch (err) {
      // Replaced under the read by a newer snapshot's save.
      if (!held()) return null;
      throw err;
    }
  }

  /** Closes the snapshot file kept open for chunk reads, once the reads under way are done. */
  private dropChunkReader(): Promise<void> {
    const r = this.chunkReader;
    this.chunkReader = null;
    if (r === null) return Promise.resolve();
    // Only read from, its close can lose nothing: a failure to close it is not the store's.
    return r.reader
      .then((reader) => reader.close())
      .then(
        () => undefined,
        () => undefined,
      );
  }

  /**
   * The snapshot held, its data read from its file a few MB at a time each time `pieces` is
   * iterated (the file's CRC checked again as the last piece is read), or null for none.
   */
  async openSnapshot(): Promise<{
    meta: SnapshotMeta;
    totalBytes: number;
    pieces: () => AsyncIterable<Uint8Array>;
  } | null> {
    if (this.closing !== null) throw closedError('the WAL');
    const meta = this.snapshotMeta;
    if (meta === null) return null;
    const path = join(this.dir, snapshotFileName(meta.index));
    // The header read at open, unless a newer snapshot was saved since.
    const opened = this.openedHead;
    const head =
      opened?.meta.index === meta.index && opened.meta.term === meta.term
        ? opened
        : await verifySnapshotFile(this.syncer.fs, path);
    if (head.meta.index !== meta.index || head.meta.term !== meta.term)
      throw new StorageError(
        'STORAGE_CORRUPT',
        `Snapshot file for index ${meta.index} holds ${head.meta.index}/${head.meta.term}`,
      );
    const { fs } = this.syncer;
    return { meta, totalBytes: head.dataBytes, pieces: () => snapshotFileData(fs, head) };
  }

  async loadSnapshot(): Promise<StoredSnapshot | null> {
    if (this.closing !== null) throw closedError('the WAL');
    const meta = this.snapshotMeta;
    if (meta === null) return null;
    const snap = await readSnapshotFile(
      this.syncer.fs,
      join(this.dir, snapshotFileName(meta.index)),
    );
    if (snap.meta.index !== meta.index || snap.meta.term !== meta.term)
      throw new StorageError(
        'STORAGE_CORRUPT',
        `Snapshot file for index ${meta.index} holds ${snap.meta.index}/${snap.meta.term}`,
      );
    return snap;
  }

  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    try {
      await this.snapshotChain;
      await this.dropChunkReader();
      await this.writer.close();
    } finally {
      await this.lock.release();
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Directory this store owns (for operators and tests). */
  get path(): string {
    return this.dir;
  }
}

/** Re-reads the encoded records (crc, count, first index) before they go to disk. */
function verifyEncoded(buf: Buffer, end: number, entries: readonly Entry[]): void {
  let at = 0;
  let k = 0;
  while (at < end) {
    const r = readRecord(buf, at, end);
    const e = entries[k];
    if (r.kind !== 'ok' || e === undefined || firstIndexOfEntries(r.payload) !== e.index)
      throw new Error(`Encoded record at ${at} for entry ${e?.index} does not read back`);
    k += r.payload.readUInt32LE(0);
    at = r.end;
  }
  if (at !== end || k !== entries.length)
    throw new Error(`Encoded ${entries.length} entries but read back ${k}`);
}

async function listSegments(fs: StorageFs, dir: string): Promise<{ seq: number; path: string }[]> {
  const out: { seq: number; path: string }[] = [];
  for (const name of await fs.readdir(dir)) {
    const m = SEGMENT_NAME.exec(name);
    if (m?.[1] !== undefined) out.push({ seq: Number.parseInt(m[1], 16), path: join(dir, name) });
    else if (name.endsWith('.tmp')) await fs.rm(join(dir, name));
  }
  return out.sort((a, b) => a.seq - b.seq);
}

/** The newest snapshot file's header, the whole file checked a few MB at a time. */
async function latestSnapshotHead(fs: StorageFs, dir: string): Promise<SnapshotFileHead | null> {
  const newest = (await listSnapshotFiles(fs, dir))[0];
  if (newest === undefined) return null;
  const head = await verifySnapshotFile(fs, newest.path);
  if (head.meta.index !== newest.index)
    throw new StorageError(
      'STORAGE_CORRUPT',
      `${newest.path} holds snapshot index ${head.meta.index}`,
      { file: newest.path, offset: 12, expected: `index ${newest.index}` },
    );
  return head;
}

async function truncateFile(syncer: Syncer, path: string, sizeBytes: number): Promise<void> {
  const fh = await syncer.fs.open(path, { create: 'no' });
  try {
    await fh.truncate(sizeBytes);
    await syncer.fsync(fh, path);
  } finally {
    await fh.close();
  }
}

/**
 * Opens (creating if needed) the WAL in `dir`: takes the directory lock, verifies the latest
 * snapshot, replays the segments (cutting a torn tail of the last one) and starts a segment
 * when needed. Throws STORAGE_LOCKED, STORAGE_CORRUPT or STORAGE_VERSION.
 */
export async function openWalStorage(dir: string, opts: WalOptions = {}): Promise<WalStorage> {
  const limits = resolveLimits(opts);
  const segmentBytes = opts.segmentBytes ?? DEFAULT_SEGMENT_BYTES;
  if (!Number.isInteger(segmentBytes) || segmentBytes < MIN_SEGMENT_BYTES || segmentBytes > 2 ** 31)
    throw new StorageError(
      'STORAGE_INVALID_ARGUMENT',
      `segmentBytes must be an integer in ${MIN_SEGMENT_BYTES}..2^31, got ${segmentBytes}`,
    );
  const inlineMaxBytes = opts.inlineWriteMaxBytes ?? INLINE_WRITE_MAX_BYTES;
  if (!Number.isSafeInteger(inlineMaxBytes) || inlineMaxBytes < 0)
    throw new StorageError(
      'STORAGE_INVALID_ARGUMENT',
      `inlineWriteMaxBytes must be a non-negative integer, got ${inlineMaxBytes}`,
    );
  const fs = opts.fs ?? nodeFs;
  // Refused before anything is opened: a directory outside the journal's cannot be redone.
  opts.journal?.relativeOf(dir);
  await fs.mkdirp(dir);
  const lock = await fs.lock(join(dir, LOCK_FILE));
  try {
    const syncer = new Syncer(fs, opts.syncHook);
    const head = await latestSnapshotHead(fs, dir);
    const snapshot = head?.meta ?? null;
    const rec = await recoverWal({
      fs,
      segments: await listSegments(fs, dir),
      snapshot,
      maxRecordBytes: Math.max(limits.maxEntryBytes, 1 << 20) + 64,
      snapshotDir: dir,
      snapshotsCoverCompaction: opts.snapshotsCoverCompaction ?? false,
      truncate: (path, size) => truncateFile(syncer, path, size),
    });
    if (rec.repairs.length > 0) await syncer.fsyncDir(dir);
    const last = rec.log.lastIndex();
    const state = {
      last: { index: last, term: rec.log.term(last) ?? 0 },
      base: rec.log.base(),
      hardState: rec.hardState,
    };
    const journal = opts.journal ?? null;
    // Journaled, a segment is written to the page cache and synced only at checkpoints.
    const mode =
      journal !== null
        ? 'fdatasync'
        : (opts.syncMode ?? (opts.syncHook === undefined ? 'dsync' : 'fdatasync'));
    const writer = new WalWriter(
      dir,
      syncer,
      segmentBytes,
      mode,
      rec.segments,
      state,
      journal,
      opts.inlineWrites ??
        (inlineMaxBytes > 0 ? new InlineWrites(inlineMaxBytes, opts.nowMs) : null),
    );
    if (rec.resetTo !== null) await writer.rotate(rec.resetTo, rec.resetTo);
    else if (rec.segments.length === 0) await writer.rotate(rec.log.base(), rec.log.base());
    else await writer.resume();
    return new WalStorage(dir, rec.log, writer, syncer, limits, lock, {
      hardState: rec.hardState,
      snapshot,
      head,
      report: { repairs: rec.repairs, resetTo: rec.resetTo },
    });
  } catch (err) {
    await lock.release();
    throw err;
  }
}
