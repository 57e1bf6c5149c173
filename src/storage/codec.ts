// Binary helpers shared by the WAL and snapshot files. Integers in files are little-endian;
// indices and terms are stored in 8 bytes (two u32 halves) because JavaScript numbers hold
// integers exactly up to 2^53, which is also the largest index we accept.

import type { EntryType, SnapshotMeta } from '../raft/index.js';

export function writeU64(buf: Buffer, offset: number, n: number): void {
  buf.writeUInt32LE(n >>> 0, offset);
  buf.writeUInt32LE(Math.floor(n / 0x1_0000_0000), offset + 4);
}

/** Returns -1 when the value is not a safe integer (a damaged field, never a valid index). */
export function readU64(buf: Buffer, offset: number): number {
  const lo = buf.readUInt32LE(offset);
  const hi = buf.readUInt32LE(offset + 4);
  if (hi > 0x1f_ffff) return -1;
  return hi * 0x1_0000_0000 + lo;
}

export function asBuffer(u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

export function hex(n: number, width: number): string {
  return n.toString(16).padStart(width, '0');
}

/**
 * An entry's type as stored (WAL records, SQLite rows, CRCs): 0 normal, 1 noop, 2 conf-change.
 * Codes 0 and 1 are those every earlier version wrote, so old data reads unchanged.
 */
export function entryTypeCode(type: EntryType): number {
  return type === 'noop' ? 1 : type === 'conf-change' ? 2 : 0;
}

/** The type stored as `code`, or null for a code no version writes. */
export function entryTypeOf(code: number): EntryType | null {
  return code === 0 ? 'normal' : code === 1 ? 'noop' : code === 2 ? 'conf-change' : null;
}

/**
 * A snapshot's configuration as SQLite stores it in its `voters` column: a JSON array of the
 * voters, as every earlier version wrote, when that says everything (a simple configuration
 * without learners); otherwise a JSON object with the other fields of SnapshotMeta.
 */
export function encodeConfJson(meta: SnapshotMeta): string {
  const { index: _index, term: _term, ...conf } = meta;
  return Object.keys(conf).length === 1 ? JSON.stringify(meta.voters) : JSON.stringify(conf);
}

/** Reads encodeConfJson's text back into the metadata's configuration; null if malformed. */
export function decodeConfJson(text: string): Omit<SnapshotMeta, 'index' | 'term'> | null {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return null;
  }
  if (Array.isArray(v)) return isIdList(v) ? { voters: v } : null;
  if (typeof v !== 'object' || v === null) return null;
  const o = v as Record<string, unknown>;
  const known = ['voters', 'learners', 'outgoing', 'learnersNext', 'autoLeave'];
  if (Object.keys(o).some((k) => !known.includes(k)) || !isIdList(o['voters'])) return null;
  const out: { -readonly [K in keyof Omit<SnapshotMeta, 'index' | 'term'>]: SnapshotMeta[K] } = {
    voters: o['voters'],
  };
  for (const k of ['learners', 'outgoing', 'learnersNext'] as const) {
    if (o[k] === undefined) continue;
    const ids = o[k];
    if (!isIdList(ids)) return null;
    out[k] = ids;
  }
  if (o['autoLeave'] !== undefined) {
    if (o['autoLeave'] !== true) return null;
    out.autoLeave = true;
  }
  return out;
}

function isIdList(v: unknown): v is number[] {
  return Array.isArray(v) && v.every((x) => Number.isSafeInteger(x) && (x as number) > 0);
}
