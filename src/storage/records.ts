// The WAL's record format. Every record is
//
//   u32 length | u8 type | u32 headerCrc | u32 bodyCrc | payload[length]
//
// headerCrc = CRC32C(length, type) lets recovery trust the length before reading the body, so a
// bit flip in a length field is reported as corruption instead of looking like a torn tail.
// bodyCrc = CRC32C(length, type, payload). Records are verified after encoding (before they are
// written) and again when read back (TigerBeetle's "check before writing and after reading").

import { crc32c } from '@node-rs/crc32';
import type { Entry, HardState } from '../raft/index.js';
import { entryTypeCode, entryTypeOf, readU64, writeU64 } from './codec.js';
import { StorageError } from './errors.js';

export const RECORD_HEADER_BYTES = 13;
export const WAL_FORMAT_VERSION = 1;
const WAL_MAGIC = Buffer.from('FLOTWAL\n', 'latin1');

export const RecordType = {
  /** First record of every segment: magic, format version, sequence, the entry before its first. */
  SegmentHeader: 1,
  /**
   * A run of contiguous entries: u32 count, then per entry term, index, type (0 normal, 1 noop,
   * 2 conf-change), data length, data.
   */
  Entries: 2,
  HardState: 3,
  /** The log is compacted through (index, term): a snapshot or LogStore.compact. */
  Base: 4,
} as const;
export type RecordType = (typeof RecordType)[keyof typeof RecordType];

const ENTRY_FIXED_BYTES = 21; // term u64, index u64, entry type u8, data length u32
const ENTRIES_COUNT_BYTES = 4;
const HARD_STATE_BYTES = 24;
const POSITION_BYTES = 16;
const SEGMENT_HEADER_BYTES = 8 + 4 + 8 + POSITION_BYTES;
/**
 * A segment's head, written in one write and made durable before anything else goes into the
 * segment: its header, base and hard state records. A crash while it is written leaves a file
 * no longer than this.
 */
export const SEGMENT_HEAD_BYTES =
  3 * RECORD_HEADER_BYTES + SEGMENT_HEADER_BYTES + POSITION_BYTES + HARD_STATE_BYTES;

export interface Position {
  readonly index: number;
  readonly term: number;
}

export interface SegmentHeader {
  readonly version: number;
  readonly seq: number;
  /** The log position just before the first entry this segment was opened to hold. */
  readonly prev: Position;
}

function sealRecord(buf: Buffer, at: number, type: RecordType, payloadBytes: number): number {
  buf.writeUInt32LE(payloadBytes, at);
  buf.writeUInt8(type, at + 4);
  const headerCrc = crc32c(buf.subarray(at, at + 5));
  buf.writeUInt32LE(headerCrc, at + 5);
  const end = at + RECORD_HEADER_BYTES + payloadBytes;
  const bodyCrc = crc32c(buf.subarray(at + RECORD_HEADER_BYTES, end), headerCrc);
  buf.writeUInt32LE(bodyCrc, at + 9);
  return end;
}

/**
 * Seals a record of `type` whose payload of `payloadBytes` was written at RECORD_HEADER_BYTES
 * in `buf` (the node journal's records, journal.ts, share this framing).
 */
export function sealPayload(buf: Buffer, type: number, payloadBytes: number): void {
  sealRecord(buf, 0, type as RecordType, payloadBytes);
}

/** Entries go into records of at most this payload (one larger entry gets a record of its own). */
export const ENTRIES_RECORD_TARGET_BYTES = 1 << 20;

/** Bytes `encodeEntries` will produce for these entries. */
export function entriesEncodedBytes(entries: readonly Entry[]): number {
  let total = 0;
  let payload = -1; // -1: no record open
  for (const e of entries) {
    const size = ENTRY_FIXED_BYTES + e.data.length;
    if (payload < 0 || payload + size > ENTRIES_RECORD_TARGET_BYTES) {
      if (payload >= 0) total += RECORD_HEADER_BYTES + payload;
      payload = ENTRIES_COUNT_BYTES;
    }
    payload += size;
  }
  return total + (payload < 0 ? 0 : RECORD_HEADER_BYTES + payload);
}

/**
 * Encodes entries into `buf` from `at` as Entries records of up to ~1 MiB: one CRC per record
 * rather than per entry keeps large batches near the disk's bandwidth. Returns the end offset.
 */
export function encodeEntries(buf: Buffer, at: number, entries: readonly Entry[]): number {
  let recordAt = at;
  let off = at;
  let count = 0;
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const seal = (): void => {
    if (count === 0) return;
    buf.writeUInt32LE(count, recordAt + RECORD_HEADER_BYTES);
    off = sealRecord(buf, recordAt, RecordType.Entries, off - recordAt - RECORD_HEADER_BYTES);
  };
  for (const e of entries) {
    const size = ENTRY_FIXED_BYTES + e.data.length;
    if (count === 0 || off - recordAt - RECORD_HEADER_BYTES + size > ENTRIES_RECORD_TARGET_BYTES) {
      seal();
      recordAt = off;
      off = recordAt + RECORD_HEADER_BYTES + ENTRIES_COUNT_BYTES;
      count = 0;
    }
    // DataView setters are inlined by V8; Buffer's checked writers cost ~3x more per entry.
    view.setUint32(off, e.term >>> 0, true);
    view.setUint32(off + 4, Math.floor(e.term / 0x1_0000_0000), true);
    view.setUint32(off + 8, e.index >>> 0, true);
    view.setUint32(off + 12, Math.floor(e.index / 0x1_0000_0000), true);
    view.setUint8(off + 16, entryTypeCode(e.type));
    view.setUint32(off + 17, e.data.length, true);
    buf.set(e.data, off + ENTRY_FIXED_BYTES);
    off += size;
    count++;
  }
  seal();
  return off;
}

export function encodeHardState(hs: HardState): Buffer {
  const buf = Buffer.allocUnsafe(RECORD_HEADER_BYTES + HARD_STATE_BYTES);
  const p = RECORD_HEADER_BYTES;
  writeU64(buf, p, hs.term);
  writeU64(buf, p + 8, hs.vote);
  writeU64(buf, p + 16, hs.commit);
  sealRecord(buf, 0, RecordType.HardState, HARD_STATE_BYTES);
  return buf;
}

export function encodeBase(pos: Position): Buffer {
  const buf = Buffer.allocUnsafe(RECORD_HEADER_BYTES + POSITION_BYTES);
  writeU64(buf, RECORD_HEADER_BYTES, pos.index);
  writeU64(buf, RECORD_HEADER_BYTES + 8, pos.term);
  sealRecord(buf, 0, RecordType.Base, POSITION_BYTES);
  return buf;
}

export function encodeSegmentHeader(seq: number, prev: Position): Buffer {
  const buf = Buffer.allocUnsafe(RECORD_HEADER_BYTES + SEGMENT_HEADER_BYTES);
  const p = RECORD_HEADER_BYTES;
  WAL_MAGIC.copy(buf, p);
  buf.writeUInt32LE(WAL_FORMAT_VERSION, p + 8);
  writeU64(buf, p + 12, seq);
  writeU64(buf, p + 20, prev.index);
  writeU64(buf, p + 28, prev.term);
  sealRecord(buf, 0, RecordType.SegmentHeader, SEGMENT_HEADER_BYTES);
  return buf;
}

/** The outcome of reading one record at an offset. */
export type ReadResult =
  | { readonly kind: 'ok'; readonly type: number; readonly payload: Buffer; readonly end: number }
  /** The file ends inside the record (or inside its header). */
  | { readonly kind: 'short'; readonly expected: string }
  /** The record is complete but fails a check. `end` is where it claims to end, if trusted. */
  | {
      readonly kind: 'bad';
      readonly expected: string;
      readonly seen: string;
      readonly end: number | null;
    };

export function readRecord(buf: Buffer, at: number, maxPayloadBytes: number): ReadResult {
  if (buf.length - at < RECORD_HEADER_BYTES)
    return { kind: 'short', expected: `a ${RECORD_HEADER_BYTES}-byte record header` };
  const length = buf.readUInt32LE(at);
  const type = buf.readUInt8(at + 4);
  const headerCrc = buf.readUInt32LE(at + 5);
  const actualHeaderCrc = crc32c(buf.subarray(at, at + 5));
  if (headerCrc !== actualHeaderCrc)
    return {
      kind: 'bad',
      expected: `record header crc ${headerCrc.toString(16)}`,
      seen: `crc ${actualHeaderCrc.toString(16)} (length ${length}, type ${type})`,
      end: null,
    };
  if (length > maxPayloadBytes)
    return { kind: 'bad', expected: `length <= ${maxPayloadBytes}`, seen: `${length}`, end: null };
  const end = at + RECORD_HEADER_BYTES + length;
  if (end > buf.length) return { kind: 'short', expected: `${length} payload bytes` };
  const bodyCrc = buf.readUInt32LE(at + 9);
  const actualBodyCrc = crc32c(buf.subarray(at + RECORD_HEADER_BYTES, end), actualHeaderCrc);
  if (bodyCrc !== actualBodyCrc)
    return {
      kind: 'bad',
      expected: `record crc ${bodyCrc.toString(16)}`,
      seen: `crc ${actualBodyCrc.toString(16)}`,
      end,
    };
  return { kind: 'ok', type, payload: buf.subarray(at + RECORD_HEADER_BYTES, end), end };
}

/** Throws STORAGE_CORRUPT/STORAGE_VERSION unless the payload is a valid segment header. */
export function decodeSegmentHeader(payload: Buffer, file: string): SegmentHeader {
  const at = (what: string, seen: string): StorageError =>
    new StorageError(
      'STORAGE_CORRUPT',
      `Corrupt segment header in ${file} at offset 0: expected ${what}, found ${seen}`,
      {
        file,
        offset: 0,
        expected: what,
      },
    );
  if (payload.length !== SEGMENT_HEADER_BYTES || !payload.subarray(0, 8).equals(WAL_MAGIC))
    throw at('the WAL magic', JSON.stringify(payload.subarray(0, 8).toString('latin1')));
  const version = payload.readUInt32LE(8);
  if (version !== WAL_FORMAT_VERSION)
    throw new StorageError(
      'STORAGE_VERSION',
      `${file} has WAL format version ${version}; this build reads version ${WAL_FORMAT_VERSION}`,
      { file, offset: 0, expected: `version ${WAL_FORMAT_VERSION}` },
    );
  const seq = readU64(payload, 12);
  const prev = { index: readU64(payload, 20), term: readU64(payload, 28) };
  if (seq < 1 || prev.index < 0 || prev.term < 0) throw at('valid sequence and position', `${seq}`);
  return { version, seq, prev };
}

/** Returns null when the payload is malformed (the caller names the file and offset). */
export function decodeEntries(payload: Buffer): Entry[] | null {
  if (payload.length < ENTRIES_COUNT_BYTES) return null;
  const count = payload.readUInt32LE(0);
  const out: Entry[] = [];
  let at = ENTRIES_COUNT_BYTES;
  for (let k = 0; k < count; k++) {
    if (at + ENTRY_FIXED_BYTES > payload.length) return null;
    const term = readU64(payload, at);
    const index = readU64(payload, at + 8);
    const kind = payload.readUInt8(at + 16);
    const dataBytes = payload.readUInt32LE(at + 17);
    const end = at + ENTRY_FIXED_BYTES + dataBytes;
    const type = entryTypeOf(kind);
    if (term < 1 || index < 1 || type === null || end > payload.length) return null;
    // Copy: a view into the segment buffer would keep the whole segment alive in memory.
    const data = new Uint8Array(payload.subarray(at + ENTRY_FIXED_BYTES, end));
    out.push({ term, index, type, data });
    at = end;
  }
  return at === payload.length && count > 0 ? out : null;
}

/** The index of the first entry in an Entries payload (-1 if too short): a cheap read-back check. */
export function firstIndexOfEntries(payload: Buffer): number {
  return payload.length < ENTRIES_COUNT_BYTES + 16 ? -1 : readU64(payload, ENTRIES_COUNT_BYTES + 8);
}

export function decodeHardState(payload: Buffer): HardState | null {
  if (payload.length !== HARD_STATE_BYTES) return null;
  const hs = { term: readU64(payload, 0), vote: readU64(payload, 8), commit: readU64(payload, 16) };
  return hs.term < 0 || hs.vote < 0 || hs.commit < 0 ? null : hs;
}

export function decodePosition(payload: Buffer): Position | null {
  if (payload.length !== POSITION_BYTES) return null;
  const pos = { index: readU64(payload, 0), term: readU64(payload, 8) };
  return pos.index < 0 || pos.term < 0 ? null : pos;
}
