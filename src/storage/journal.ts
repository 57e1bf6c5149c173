// The node journal: one redo log in front of every group's WAL on a node, so that the writes of
// all groups gathered while one sync is in flight become durable in ONE write + sync, not one
// per group. Each group keeps its own WAL (format, recovery, compaction and snapshots unchanged,
// docs/STORAGE.md); in journaled mode a group's append is first written, with every other
// group's appends of the same batch, to the journal (durable), and only then written to the
// group's segment without a sync. The segment is made durable later, at a checkpoint, or
// rebuilt from the journal after a crash: at open, before any group opens its WAL, every write
// the journal holds is written again at its offset (a physical redo: same bytes, same place, so
// doing it twice is harmless) and the files are synced; the groups' own recovery then reads
// segments as complete as if each write had been synced where it was made.
//
// Why a journal in front of the per-group logs rather than one log holding every group's
// entries: on this kind of disk, N files synced together cost N syncs (docs/BENCHMARKS.md,
// "Shared fsync across groups"), so the saving needs one file; and a redo journal leaves each
// group's log, its recovery and its tests exactly as they are, where a log shared by every
// group would need a new format, per-group recovery from a mixed log and a compaction that
// copies live entries forward (an idle group would otherwise pin every segment).
//
// Files, in the node's data directory: `journal-<seq, 16 hex>.jnl`, each a sequence of WAL
// records (records.ts framing) of these types:
//
//   16 header   magic "FLOTJNL\n" | u32 version (1) | u64 seq
//   17 write    u16 pathBytes | path (utf-8, relative to the data directory) | u64 offset | data
//   18 release  u16 pathBytes | path of a directory: writes before this record to files under
//               it are not redone (the group closed after syncing them; the directory may be
//               deleted and made again by a new group, whose files must not get old bytes)
//
// Invariants: a group-file write is issued only after its journal record is durable, so every
// byte written to a segment since the last checkpoint is in the journal (a torn or missing
// journal record means the group write never happened). A journal file is deleted only after
// every file it wrote to was synced (or released).

import { join, relative, isAbsolute, sep } from 'node:path';
import { hex, readU64, writeU64 } from './codec.js';
import { StorageError, corrupt, ioFailure, rejected } from './errors.js';
import { nodeFs } from './fs.js';
import type { DirLock, StorageFile, StorageFs } from './fs.js';
import { Syncer, writevFully } from './fsutil.js';
import { GroupCommitter } from './group-commit.js';
import { RECORD_HEADER_BYTES, readRecord, sealPayload } from './records.js';
import type { SyncHook } from './fsutil.js';

export const JOURNAL_NAME = /^journal-([0-9a-f]{16})\.jnl$/;
export const JOURNAL_LOCK_FILE = 'journal.lock';
export const JOURNAL_FORMAT_VERSION = 1;
const MAGIC = Buffer.from('FLOTJNL\n', 'latin1');

export const JournalRecord = { Header: 16, Write: 17, Release: 18 } as const;

const DEFAULT_JOURNAL_BYTES = 64 * 1024 * 1024;
const MIN_JOURNAL_BYTES = 256;
/** A journal record holds one group write: at most a WAL batch (limits.ts) plus slack. */
const MAX_RECORD_BYTES = 2 ** 31 - 1;
const MAX_PATH_BYTES = 4096;

export function journalFileName(seq: number): string {
  return `journal-${hex(seq, 16)}.jnl`;
}

/** A file a group writes through the journal (a WAL segment). */
export interface JournaledFile {
  /** Absolute (or root-relative) path; must lie under the journal's directory. */
  readonly path: string;
  /** Writes the buffers at `position`, unsynced (the journal made them durable already). */
  write(bufs: Buffer[], position: number): Promise<void>;
  /** Makes every write so far durable (fdatasync); a file closed after its own sync resolves. */
  sync(): Promise<void>;
}

export interface JournalOptions {
  readonly fs?: StorageFs;
  readonly syncHook?: SyncHook;
  /** A checkpoint starts a new journal file once the active one reaches this size. Default 64 MiB. */
  readonly journalBytes?: number;
  /**
   * 'dsync' (default): the journal file is opened with O_DSYNC, as WAL segments are.
   * 'fdatasync': write, then fdatasync (the default with a syncHook, so it sees every sync).
   */
  readonly syncMode?: 'dsync' | 'fdatasync';
}

/** What opening the journal redid. */
export interface JournalRecoveryReport {
  /** Journal files read (and then removed). */
  readonly journalFiles: number;
  /** Write records redone, and the distinct files they went to. */
  readonly writesRedone: number;
  readonly filesRedone: number;
  /** Writes to files that no longer exist (segments a group's compaction deleted). */
  readonly writesSkipped: number;
  /** Writes cancelled by a later release of their directory. */
  readonly writesReleased: number;
  /** A torn final record of the last journal file (never acknowledged): where it was cut. */
  readonly tornTail: { readonly file: string; readonly offset: number } | null;
}

const NOTHING_REDONE: JournalRecoveryReport = {
  journalFiles: 0,
  writesRedone: 0,
  filesRedone: 0,
  writesSkipped: 0,
  writesReleased: 0,
  tornTail: null,
};

type Item =
  | {
      readonly kind: 'write';
      readonly rel: string;
      readonly file: JournaledFile;
      readonly position: number;
      readonly bufs: Buffer[];
    }
  | { readonly kind: 'release'; readonly rel: string };

interface Parsed {
  readonly kind: 'write' | 'release';
  readonly rel: string;
  readonly position: number;
  readonly data: Buffer;
}

export class NodeJournal {
  private readonly commits: GroupCommitter<Item>;
  /** Files written through the active journal file, by root-relative path: synced at checkpoint. */
  private readonly touched = new Map<string, JournaledFile>();
  private closing: Promise<void> | null = null;

  constructor(
    readonly root: string,
    private readonly syncer: Syncer,
    private readonly dsync: boolean,
    private readonly journalBytes: number,
    private active: { seq: number; path: string; fh: StorageFile; sizeBytes: number },
    private readonly lock: DirLock,
    readonly recovery: JournalRecoveryReport,
  ) {
    this.commits = new GroupCommitter((items) => this.flush(items), `journal in ${root}`);
  }

  /** Throws the latched failure or STORAGE_CLOSED. */
  checkWritable(): void {
    this.commits.checkWritable();
  }

  /**
   * Writes `bufs` at `position` of `file`: durable in the journal, then written to the file,
   * with every other write submitted meanwhile sharing the journal's one write and sync.
   */
  write(file: JournaledFile, position: number, bufs: Buffer[]): Promise<void> {
    let rel: string;
    try {
      rel = this.relativeOf(file.path);
    } catch (err) {
      return rejected(err);
    }
    return this.commits.submit({ kind: 'write', rel, file, position, bufs });
  }

  /**
   * Says durably that the files under `dir` need no redo: their owner synced them and closed.
   * Call before the directory is deleted, or reused by a new owner.
   */
  release(dir: string): Promise<void> {
    let rel: string;
    try {
      rel = this.relativeOf(dir);
    } catch (err) {
      return rejected(err);
    }
    return this.commits.submit({ kind: 'release', rel });
  }

  /** Throws unless `path` lies under the journal's directory; returns it relative to that. */
  relativeOf(path: string): string {
    const rel = relative(this.root, path);
    if (rel === '' || rel.startsWith('..') || isAbsolute(rel))
      throw new StorageError(
        'STORAGE_INVALID_ARGUMENT',
        `${path} is not under the journal's directory ${this.root}`,
      );
    const posix = rel.split(sep).join('/');
    if (Buffer.byteLength(posix) > MAX_PATH_BYTES)
      throw new StorageError(
        'STORAGE_LIMIT',
        `Path ${path} is longer than ${MAX_PATH_BYTES} bytes`,
      );
    return posix;
  }

  /** Syncs every file the journal wrote to, then removes the journal: a clean stop leaves none. */
  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    try {
      await this.commits.close();
      if (this.commits.failed() !== null) {
        await this.active.fh.close();
        return;
      }
      await this.syncTouched();
      await this.active.fh.close();
      await this.syncer.fs.rm(this.active.path);
      await this.syncer.fsyncDir(this.root);
    } finally {
      await this.lock.release();
    }
  }

  private async flush(items: readonly Item[]): Promise<void> {
    if (this.active.sizeBytes >= this.journalBytes) await this.checkpoint();
    const records = items.map(encodeItem);
    const { fh, path } = this.active;
    try {
      this.active.sizeBytes += await writevFully(fh, records, this.active.sizeBytes);
    } catch (err) {
      throw ioFailure('STORAGE_WRITE_FAILED', `writing ${path}`, err);
    }
    if (!this.dsync) await this.syncer.datasync(fh, path);
    // Durable: now the group files may receive the bytes (never before, or a crash could leave
    // a segment holding bytes the journal cannot redo over a hole left by a lost page).
    const writes: Promise<unknown>[] = [];
    for (const item of items) {
      if (item.kind === 'release') {
        for (const rel of [...this.touched.keys()])
          if (rel.startsWith(`${item.rel}/`)) this.touched.delete(rel);
        continue;
      }
      this.touched.set(item.rel, item.file);
      writes.push(item.file.write(item.bufs, item.position));
    }
    // A failed write to a group's file latches the journal, so every group stops: the disk's
    // state is unknown, and a later checkpoint could not make that file durable.
    const failed = (await Promise.allSettled(writes)).find((r) => r.status === 'rejected');
    if (failed !== undefined)
      throw ioFailure(
        'STORAGE_WRITE_FAILED',
        'writing a group file after the journal',
        failed.reason,
      );
  }

  /**
   * Makes everything the active journal file redoes durable in its own files, starts the next
   * journal file, and removes the old one. Runs inside a flush, so no write is in flight.
   */
  private async checkpoint(): Promise<void> {
    await this.syncTouched();
    const old = this.active;
    this.active = await createJournalFile(this.syncer, this.root, old.seq + 1, this.dsync);
    await old.fh.close();
    await this.syncer.fs.rm(old.path);
    await this.syncer.fsyncDir(this.root);
  }

  private async syncTouched(): Promise<void> {
    const files = [...this.touched.values()];
    this.touched.clear();
    await Promise.all(files.map((f) => f.sync()));
  }

  get path(): string {
    return this.active.path;
  }
}

function encodeItem(item: Item): Buffer {
  const pathBytes = Buffer.from(item.rel, 'utf8');
  const dataBytes = item.kind === 'write' ? item.bufs.reduce((n, b) => n + b.length, 0) : 0;
  const payloadBytes = 2 + pathBytes.length + (item.kind === 'write' ? 8 + dataBytes : 0);
  if (payloadBytes > MAX_RECORD_BYTES)
    throw new StorageError(
      'STORAGE_LIMIT',
      `A journal record of ${payloadBytes} bytes is too large`,
    );
  const buf = Buffer.allocUnsafe(RECORD_HEADER_BYTES + payloadBytes);
  let at = RECORD_HEADER_BYTES;
  buf.writeUInt16LE(pathBytes.length, at);
  at += 2;
  at += pathBytes.copy(buf, at);
  if (item.kind === 'write') {
    writeU64(buf, at, item.position);
    at += 8;
    for (const b of item.bufs) at += b.copy(buf, at);
  }
  sealPayload(
    buf,
    item.kind === 'write' ? JournalRecord.Write : JournalRecord.Release,
    payloadBytes,
  );
  return buf;
}

function encodeHeader(seq: number): Buffer {
  const payloadBytes = MAGIC.length + 4 + 8;
  const buf = Buffer.alloc(RECORD_HEADER_BYTES + payloadBytes);
  let at = RECORD_HEADER_BYTES;
  at += MAGIC.copy(buf, at);
  buf.writeUInt32LE(JOURNAL_FORMAT_VERSION, at);
  writeU64(buf, at + 4, seq);
  sealPayload(buf, JournalRecord.Header, payloadBytes);
  return buf;
}

async function createJournalFile(
  syncer: Syncer,
  root: string,
  seq: number,
  dsync: boolean,
): Promise<{ seq: number; path: string; fh: StorageFile; sizeBytes: number }> {
  const path = join(root, journalFileName(seq));
  const fh = await syncer.fs.open(path, { create: 'exclusive', dsync });
  let sizeBytes: number;
  try {
    sizeBytes = await writevFully(fh, [encodeHeader(seq)], 0);
    await syncer.datasync(fh, path);
    await syncer.fsyncDir(root);
  } catch (err) {
    await fh.close();
    throw ioFailure('STORAGE_WRITE_FAILED', `creating ${path}`, err);
  }
  return { seq, path, fh, sizeBytes };
}

/** Is the failed record at `at` a torn final write? (The WAL's rule, wal-recover.ts.) */
function isTorn(buf: Buffer, at: number, r: ReturnType<typeof readRecord>): boolean {
  if (r.kind === 'short') return true;
  if (r.kind === 'ok') return false;
  for (let k = at; k < buf.length; k++) if (buf[k] !== 0) return r.end === buf.length;
  return true;
}

function parseRecord(type: number, payload: Buffer, file: string, at: number): Parsed {
  if (type !== JournalRecord.Write && type !== JournalRecord.Release)
    throw corrupt(file, at, 'a journal record of type 17 or 18', `type ${type}`);
  const pathBytes = payload.length >= 2 ? payload.readUInt16LE(0) : -1;
  const fixed = 2 + pathBytes + (type === JournalRecord.Write ? 8 : 0);
  if (
    pathBytes < 1 ||
    payload.length < fixed ||
    (type === JournalRecord.Release && payload.length !== fixed)
  )
    throw corrupt(file, at, 'a well-formed journal record', `${payload.length} bytes`);
  const rel = payload.toString('utf8', 2, 2 + pathBytes);
  if (rel.startsWith('/') || rel.split('/').includes('..'))
    throw corrupt(file, at, 'a path inside the data directory', JSON.stringify(rel));
  if (type === JournalRecord.Release)
    return { kind: 'release', rel, position: 0, data: Buffer.alloc(0) };
  return {
    kind: 'write',
    rel,
    position: readU64(payload, 2 + pathBytes),
    data: payload.subarray(fixed),
  };
}

/** Reads one journal file; a damaged record is a torn tail only in the last file. */
async function readJournalFile(
  fs: StorageFs,
  path: string,
  seq: number,
  isLast: boolean,
): Promise<{ records: Parsed[]; tornAt: number | null }> {
  const buf = await fs.readFile(path);
  const head = readRecord(buf, 0, MAX_RECORD_BYTES);
  if (head.kind !== 'ok') {
    // A crash while the journal file was being created: it holds nothing.
    if (isLast && isTorn(buf, 0, head)) return { records: [], tornAt: 0 };
    throw corrupt(path, 0, 'a journal header', head.kind === 'bad' ? head.seen : 'end of file');
  }
  checkHeader(head.type, head.payload, path, seq);
  const records: Parsed[] = [];
  let at = head.end;
  while (at < buf.length) {
    const r = readRecord(buf, at, MAX_RECORD_BYTES);
    if (r.kind !== 'ok') {
      if (isLast && isTorn(buf, at, r)) return { records, tornAt: at };
      throw corrupt(path, at, r.expected, r.kind === 'bad' ? r.seen : 'end of file');
    }
    records.push(parseRecord(r.type, r.payload, path, at));
    at = r.end;
  }
  return { records, tornAt: null };
}

function checkHeader(type: number, payload: Buffer, path: string, seq: number): void {
  if (type !== JournalRecord.Header || payload.length !== MAGIC.length + 12)
    throw corrupt(path, 0, 'a journal header record', `record type ${type}`);
  if (!payload.subarray(0, MAGIC.length).equals(MAGIC))
    throw corrupt(path, 0, 'the journal magic', payload.subarray(0, MAGIC.length).toString('hex'));
  const version = payload.readUInt32LE(MAGIC.length);
  if (version !== JOURNAL_FORMAT_VERSION)
    throw new StorageError(
      'STORAGE_VERSION',
      `${path} has journal format ${version}; this build reads ${JOURNAL_FORMAT_VERSION}`,
      { file: path, offset: 0, expected: `version ${JOURNAL_FORMAT_VERSION}` },
    );
  const found = readU64(payload, MAGIC.length + 4);
  if (found !== seq) throw corrupt(path, 0, `sequence ${seq} (from the file name)`, `${found}`);
}

async function listJournals(fs: StorageFs, root: string): Promise<{ seq: number; path: string }[]> {
  const out: { seq: number; path: string }[] = [];
  for (const name of await fs.readdir(root)) {
    const m = JOURNAL_NAME.exec(name);
    if (m?.[1] !== undefined) out.push({ seq: Number.parseInt(m[1], 16), path: join(root, name) });
  }
  return out.sort((a, b) => a.seq - b.seq);
}

/**
 * Redoes every journal file in `root` into the files it wrote to, syncs them and removes the
 * journal files, holding the journal's lock. Run before any group opens its WAL; a node whose
 * journal is off runs it too, so a directory last used with the journal on is never read
 * without its redo. Throws STORAGE_LOCKED while another process holds the journal.
 */
export async function replayJournal(
  root: string,
  opts: Pick<JournalOptions, 'fs' | 'syncHook'> = {},
): Promise<JournalRecoveryReport> {
  const fs = opts.fs ?? nodeFs;
  await fs.mkdirp(root);
  // Most starts find none: they take no lock (the lock file is then never made).
  if ((await listJournals(fs, root)).length === 0) return NOTHING_REDONE;
  const lock = await fs.lock(join(root, JOURNAL_LOCK_FILE));
  try {
    return (await redo(fs, new Syncer(fs, opts.syncHook), root)).report;
  } finally {
    await lock.release();
  }
}

/** replayJournal's work, under the caller's lock; also returns the highest sequence seen. */
async function redo(
  fs: StorageFs,
  syncer: Syncer,
  root: string,
): Promise<{ report: JournalRecoveryReport; lastSeq: number }> {
  const journals = await listJournals(fs, root);
  for (let k = 1; k < journals.length; k++) {
    const prev = journals[k - 1];
    const cur = journals[k];
    if (prev !== undefined && cur !== undefined && cur.seq !== prev.seq + 1)
      throw new StorageError(
        'STORAGE_CORRUPT',
        `Journal file ${prev.seq + 1} is missing: found ${prev.path} then ${cur.path}`,
        { file: cur.path, offset: 0, expected: `journal ${prev.seq + 1}` },
      );
  }
  const all: Parsed[] = [];
  let tornTail: JournalRecoveryReport['tornTail'] = null;
  for (const [k, j] of journals.entries()) {
    const r = await readJournalFile(fs, j.path, j.seq, k === journals.length - 1);
    all.push(...r.records);
    if (r.tornAt !== null) tornTail = { file: j.path, offset: r.tornAt };
  }
  const { byFile, released } = liveWrites(all);
  let skipped = 0;
  let filesRedone = 0;
  let writesRedone = 0;
  for (const [rel, writes] of byFile) {
    const done = await redoFile(syncer, join(root, ...rel.split('/')), writes);
    if (done) {
      filesRedone++;
      writesRedone += writes.length;
    } else skipped += writes.length;
  }
  for (const j of journals) await fs.rm(j.path);
  if (journals.length > 0) await syncer.fsyncDir(root);
  const report: JournalRecoveryReport = {
    journalFiles: journals.length,
    writesRedone,
    filesRedone,
    writesSkipped: skipped,
    writesReleased: released,
    tornTail,
  };
  return { report, lastSeq: journals[journals.length - 1]?.seq ?? 0 };
}

/** The writes to redo, per file in journal order: those no later release cancels. */
function liveWrites(all: readonly Parsed[]): { byFile: Map<string, Parsed[]>; released: number } {
  const releasedAt = new Map<string, number>();
  for (const [k, r] of all.entries()) if (r.kind === 'release') releasedAt.set(r.rel, k);
  const byFile = new Map<string, Parsed[]>();
  let released = 0;
  for (const [k, r] of all.entries()) {
    if (r.kind !== 'write') continue;
    if (isReleased(r.rel, k, releasedAt)) {
      released++;
      continue;
    }
    const list = byFile.get(r.rel);
    if (list === undefined) byFile.set(r.rel, [r]);
    else list.push(r);
  }
  return { byFile, released };
}

function isReleased(rel: string, at: number, releasedAt: ReadonlyMap<string, number>): boolean {
  const parts = rel.split('/');
  for (let n = 1; n < parts.length; n++) {
    const k = releasedAt.get(parts.slice(0, n).join('/'));
    if (k !== undefined && k > at) return true;
  }
  return false;
}

/** Writes the journal's bytes back at their offsets and syncs; false when the file is gone. */
async function redoFile(syncer: Syncer, path: string, writes: readonly Parsed[]): Promise<boolean> {
  let fh: StorageFile;
  try {
    fh = await syncer.fs.open(path, { create: 'no' });
  } catch (err) {
    // A segment its group's compaction deleted: nothing in it was needed any more. (Segments
    // are created durably before anything is journaled for them, so absence is deletion.)
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw ioFailure('STORAGE_WRITE_FAILED', `opening ${path} to redo the journal`, err);
  }
  try {
    for (const w of writes) await writevFully(fh, [w.data], w.position);
    await syncer.datasync(fh, path);
  } catch (err) {
    throw ioFailure('STORAGE_WRITE_FAILED', `redoing the journal into ${path}`, err);
  } finally {
    await fh.close();
  }
  return true;
}

/**
 * Opens the node journal in `root` (the node's data directory): takes its lock, redoes and
 * removes what an earlier run left (redoJournal), and starts a new journal file.
 */
export async function openNodeJournal(
  root: string,
  opts: JournalOptions = {},
): Promise<NodeJournal> {
  const journalBytes = opts.journalBytes ?? DEFAULT_JOURNAL_BYTES;
  if (!Number.isInteger(journalBytes) || journalBytes < MIN_JOURNAL_BYTES || journalBytes > 2 ** 40)
    throw new StorageError(
      'STORAGE_INVALID_ARGUMENT',
      `journalBytes must be an integer in ${MIN_JOURNAL_BYTES}..2^40, got ${journalBytes}`,
    );
  const fs = opts.fs ?? nodeFs;
  await fs.mkdirp(root);
  const lock = await fs.lock(join(root, JOURNAL_LOCK_FILE));
  try {
    const syncer = new Syncer(fs, opts.syncHook);
    const { report, lastSeq } = await redo(fs, syncer, root);
    const dsync =
      (opts.syncMode ?? (opts.syncHook === undefined ? 'dsync' : 'fdatasync')) === 'dsync';
    const active = await createJournalFile(syncer, root, lastSeq + 1, dsync);
    return new NodeJournal(root, syncer, dsync, journalBytes, active, lock, report);
  } catch (err) {
    await lock.release();
    throw err;
  }
}
