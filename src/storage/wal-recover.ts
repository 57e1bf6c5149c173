// Recovery: rebuilds the in-memory log and hard state from the segments (and the snapshot),
// truncating a torn tail of the last segment and refusing anything else that is damaged.
//
// Replay rules (docs/STORAGE.md, "Recovery"): segments are read in sequence order. A segment
// header names `prev`, the log position before the first entry written to it; the log so far
// must hold prev (the new segment continues or overwrites the suffix after it), unless the
// segment opens with a Base record equal to prev (a snapshot replaced the whole log). An entry
// record either extends the log or replaces its suffix from its index (paper §5.3). Base records
// say how far the log was compacted; the latest Base and the snapshot bound where it must start.

import type { HardState } from '../raft/index.js';
import { StorageError, corrupt } from './errors.js';
import type { StorageFs } from './fs.js';
import { snapshotFileName } from './snapshot-file.js';
import { LogIndex } from './log-index.js';
import type { Position, SegmentHeader } from './records.js';
import {
  RecordType,
  SEGMENT_HEAD_BYTES,
  decodeEntries,
  decodeHardState,
  decodePosition,
  decodeSegmentHeader,
  readRecord,
} from './records.js';

export interface SegmentInfo {
  readonly seq: number;
  readonly path: string;
  readonly prev: Position;
  sizeBytes: number;
}

/** Something recovery changed on disk, for the operator's log. */
export type WalRepair =
  /** A torn final write: the last segment was cut back to `offset`, its valid prefix. */
  | {
      readonly kind: 'tail-cut';
      readonly file: string;
      readonly offset: number;
      readonly droppedBytes: number;
    }
  /** A last segment with no valid header (a crash while creating it), removed. */
  | { readonly kind: 'segment-removed'; readonly file: string; readonly droppedBytes: number };

export interface Recovered {
  readonly log: LogIndex;
  readonly hardState: HardState;
  readonly segments: SegmentInfo[];
  /** The snapshot is newer than the WAL's record of it and the log had to be reset to it. */
  readonly resetTo: Position | null;
  /** What was cut or removed; empty after a clean shutdown. */
  readonly repairs: readonly WalRepair[];
}

interface ReplayState {
  log: LogIndex | null;
  hardState: HardState;
  base: Position;
  /** Where the latest Base record was read, for the error when its snapshot is missing. */
  baseAt: { file: string; offset: number } | null;
}

const ZERO_HS: HardState = { term: 0, vote: 0, commit: 0 };

function allZero(buf: Buffer, from: number): boolean {
  for (let k = from; k < buf.length; k++) if (buf[k] !== 0) return false;
  return true;
}

/** Is the bad record at `at` a torn final write rather than damage? Only asked for the last segment. */
function isTornTail(buf: Buffer, at: number, r: ReturnType<typeof readRecord>): boolean {
  if (r.kind === 'short') return true;
  if (r.kind === 'ok') return false;
  // A write cut short by a crash leaves the record's sectors unwritten (zeros) or ends the file.
  return allZero(buf, at) || r.end === buf.length;
}

/**
 * Whether the records after a segment header, its base record and hard state, end in a torn
 * tail. The three are one write, made durable before anything else goes into the segment, so
 * a crash inside it (a tear, or a short O_DSYNC write) leaves a segment holding nothing: it is
 * removed like one whose header is torn. Kept, it would lack the hard state record that lets
 * compaction delete the segments before it (and, opened by a snapshot install, the base
 * record that connects it to the log).
 */
function headTorn(buf: Buffer, afterHeader: number, maxRecordBytes: number): boolean {
  const base = readRecord(buf, afterHeader, maxRecordBytes);
  if (base.kind !== 'ok') return isTornTail(buf, afterHeader, base);
  const hardState = readRecord(buf, base.end, maxRecordBytes);
  return hardState.kind !== 'ok' && isTornTail(buf, base.end, hardState);
}

function applyHeader(
  st: ReplayState,
  hdr: SegmentHeader,
  opensWithBase: Position | null,
  file: string,
): void {
  const { prev } = hdr;
  if (st.log === null) {
    st.log = new LogIndex(prev);
    return;
  }
  if (prev.index >= st.log.base().index && st.log.term(prev.index) === prev.term) {
    st.log.truncateAfter(prev.index);
    return;
  }
  if (opensWithBase?.index === prev.index && opensWithBase.term === prev.term) {
    st.log.reset(prev.index, prev.term);
    return;
  }
  if (prev.index < st.log.base().index) {
    // Compaction deletes, oldest first, every segment before the newest one whose prev is at
    // or below the compaction point. After a deep suffix replacement that segment's prev can
    // lie below an earlier segment's, so a crash between two deletions leaves segments that
    // start the log past it. Everything they hold lies after this prev, which this segment
    // replaces; what lies before it is compacted, and settleBase checks that it is covered.
    st.log.reset(prev.index, prev.term);
    return;
  }
  throw corrupt(
    file,
    0,
    `a segment continuing the log, which ends at index ${st.log.lastIndex()} term ${st.log.term(st.log.lastIndex())}`,
    `a segment starting after index ${prev.index} term ${prev.term}`,
  );
}

function applyRecord(
  st: ReplayState,
  type: number,
  payload: Buffer,
  file: string,
  at: number,
): void {
  const log = st.log;
  if (log === null) throw corrupt(file, at, 'a segment header first', `record type ${type}`);
  if (type === RecordType.Entries) {
    const entries = decodeEntries(payload);
    if (entries === null)
      throw corrupt(file, at, 'a well-formed run of entries', `${payload.length} bytes`);
    try {
      log.checkAppend(entries);
    } catch (err) {
      const e = entries[0];
      throw corrupt(
        file,
        at,
        `entries from an index in [${log.firstIndex()}, ${log.lastIndex() + 1}] with terms >= their predecessor's`,
        `entry ${e?.index} term ${e?.term} (${(err as Error).message})`,
      );
    }
    log.append(entries);
  } else if (type === RecordType.HardState) {
    const hs = decodeHardState(payload);
    if (hs === null) throw corrupt(file, at, 'a well-formed hard state', `${payload.length} bytes`);
    st.hardState = hs;
  } else if (type === RecordType.Base) {
    const pos = decodePosition(payload);
    if (pos === null)
      throw corrupt(file, at, 'a well-formed base position', `${payload.length} bytes`);
    if (pos.index > st.base.index) {
      st.base = pos;
      st.baseAt = { file, offset: at };
    }
  } else {
    throw corrupt(file, at, 'a record type in 2..4', `type ${type}`);
  }
}

/**
 * A last segment whose head is torn: removable only if a crash while writing the head could
 * have left it, which it cannot if the file is longer than the head. Such a file (zeroed, or
 * cut by hand) may have held entries and the hard state, and is refused rather than removed.
 */
function tornHead(
  path: string,
  buf: Buffer,
  what: string,
): { validBytes: number; header: null; fileBytes: number } {
  if (buf.length > SEGMENT_HEAD_BYTES)
    throw corrupt(
      path,
      0,
      `a segment's ${what} records`,
      `none that are whole in a file of ${buf.length} bytes, longer than a segment's head ` +
        `(${SEGMENT_HEAD_BYTES} bytes, written and made durable before anything else): no ` +
        'crash while creating it leaves that',
    );
  return { validBytes: 0, header: null, fileBytes: buf.length };
}

/** Replays one segment; returns the byte length of its valid prefix (< file length when torn). */
async function replaySegment(
  fs: StorageFs,
  st: ReplayState,
  seg: { seq: number; path: string },
  isLast: boolean,
  maxRecordBytes: number,
): Promise<{ validBytes: number; header: SegmentHeader | null; fileBytes: number }> {
  const buf = await fs.readFile(seg.path);
  const first = readRecord(buf, 0, maxRecordBytes);
  if (first.kind !== 'ok' || first.type !== RecordType.SegmentHeader) {
    if (isLast && isTornTail(buf, 0, first)) return tornHead(seg.path, buf, 'header');
    throw corrupt(
      seg.path,
      0,
      'a segment header record',
      first.kind === 'ok' ? `record type ${first.type}` : first.expected,
    );
  }
  const header = decodeSegmentHeader(first.payload, seg.path);
  if (header.seq !== seg.seq)
    throw corrupt(seg.path, 0, `sequence ${seg.seq} (from the file name)`, `${header.seq}`);
  const second = readRecord(buf, first.end, maxRecordBytes);
  const opensWithBase =
    second.kind === 'ok' && second.type === RecordType.Base ? decodePosition(second.payload) : null;
  if (isLast && headTorn(buf, first.end, maxRecordBytes))
    return tornHead(seg.path, buf, 'base and hard state');
  applyHeader(st, header, opensWithBase, seg.path);
  let at = first.end;
  while (at < buf.length) {
    const r = readRecord(buf, at, maxRecordBytes);
    if (r.kind !== 'ok') {
      if (isLast && isTornTail(buf, at, r))
        return { validBytes: at, header, fileBytes: buf.length };
      throw corrupt(seg.path, at, r.expected, r.kind === 'bad' ? r.seen : 'end of file');
    }
    applyRecord(st, r.type, r.payload, seg.path, at);
    at = r.end;
  }
  return { validBytes: at, header, fileBytes: buf.length };
}

export interface RecoverInput {
  readonly fs: StorageFs;
  readonly segments: readonly { seq: number; path: string }[];
  readonly snapshot: Position | null;
  readonly maxRecordBytes: number;
  /** The directory holding the snapshot files (named in errors). */
  readonly snapshotDir: string;
  /** WalOptions.snapshotsCoverCompaction. */
  readonly snapshotsCoverCompaction: boolean;
  /** Cuts a torn tail off the last segment durably (or removes a segment with no valid header). */
  readonly truncate: (path: string, sizeBytes: number) => Promise<void>;
}

export async function recoverWal(input: RecoverInput): Promise<Recovered> {
  checkSequence(input.segments);
  const st: ReplayState = {
    log: null,
    hardState: ZERO_HS,
    base: { index: 0, term: 0 },
    baseAt: null,
  };
  const segments: SegmentInfo[] = [];
  const repairs: WalRepair[] = [];
  for (const [k, seg] of input.segments.entries()) {
    const isLast = k === input.segments.length - 1;
    const r = await replaySegment(input.fs, st, seg, isLast, input.maxRecordBytes);
    if (r.header === null) {
      // A crash right after creating a segment leaves it empty or with a torn header: it holds
      // nothing, and left in place it would collide with the next segment of that number.
      await input.fs.rm(seg.path);
      repairs.push({ kind: 'segment-removed', file: seg.path, droppedBytes: r.fileBytes });
    } else if (r.validBytes < r.fileBytes) {
      await input.truncate(seg.path, r.validBytes);
      repairs.push({
        kind: 'tail-cut',
        file: seg.path,
        offset: r.validBytes,
        droppedBytes: r.fileBytes - r.validBytes,
      });
    }
    if (r.header !== null)
      segments.push({ seq: seg.seq, path: seg.path, prev: r.header.prev, sizeBytes: r.validBytes });
  }
  if (input.snapshotsCoverCompaction)
    checkSnapshotCoversBase(st, input.snapshot, input.snapshotDir);
  const { log, resetTo } = settleBase(st, input.snapshot, segments[0]?.path ?? '(no segment)');
  return { log, hardState: st.hardState, segments, resetTo, repairs };
}

/**
 * The log is compacted only after a snapshot through that index is durable, so a Base record
 * past the newest snapshot file means the file was lost (deleted by hand, or a restore that
 * forgot it): the entries before the base exist nowhere, and starting would serve a state
 * machine missing them.
 */
function checkSnapshotCoversBase(
  st: ReplayState,
  snapshot: Position | null,
  snapshotDir: string,
): void {
  const covered = snapshot?.index ?? 0;
  if (st.base.index <= covered || st.baseAt === null) return;
  const expected = `a snapshot file through index ${st.base.index} or later (${snapshotFileName(st.base.index)}) in ${snapshotDir}`;
  throw new StorageError(
    'STORAGE_CORRUPT',
    `The log was compacted through index ${st.base.index} (term ${st.base.term}) by the record at offset ${st.baseAt.offset} of ${st.baseAt.file}, but ${snapshot === null ? 'there is no snapshot file' : `the newest snapshot file ends at index ${covered}`}: expected ${expected}. Entries ${covered + 1}..${st.base.index} exist nowhere; restore the snapshot file or wipe this data directory so the node recovers from its peers`,
    { file: st.baseAt.file, offset: st.baseAt.offset, expected },
  );
}

function checkSequence(segments: readonly { seq: number; path: string }[]): void {
  for (let k = 1; k < segments.length; k++) {
    const prev = segments[k - 1];
    const cur = segments[k];
    if (prev !== undefined && cur !== undefined && cur.seq !== prev.seq + 1)
      throw new StorageError(
        'STORAGE_CORRUPT',
        `WAL segment ${prev.seq + 1} is missing: found ${prev.path} then ${cur.path}`,
        { file: cur.path, offset: 0, expected: `segment ${prev.seq + 1}` },
      );
  }
}

/** Applies the compaction point (latest Base record or snapshot) to the replayed log. */
function settleBase(
  st: ReplayState,
  snapshot: Position | null,
  file: string,
): { log: LogIndex; resetTo: Position | null } {
  const base = snapshot !== null && snapshot.index >= st.base.index ? snapshot : st.base;
  const log = st.log ?? new LogIndex(base);
  const anchor = log.base().index;
  if (anchor > base.index)
    throw corrupt(
      file,
      0,
      `the log to start at or before index ${base.index + 1} (the compaction point)`,
      `a first segment starting after index ${anchor}: entries ${base.index + 1}..${anchor} are missing`,
    );
  if (base.index === anchor) return { log, resetTo: null };
  if (log.term(base.index) === base.term) {
    log.compact(base.index);
    return { log, resetTo: null };
  }
  // Only a snapshot can be ahead of the WAL: it was made durable and the process died before
  // the WAL recorded it. The log is replaced by the snapshot, as it would have been then.
  log.reset(base.index, base.term);
  return { log, resetTo: base };
}
