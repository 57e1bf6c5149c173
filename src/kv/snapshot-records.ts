// The key-value snapshot's record chunks (format 4), written and read by hand.
//
// A chunk is a msgpack array of records, each a map of `key`, `value` (bin), `createRevision`,
// `modRevision`, `version` and, when the version has one, `lease`; a history chunk is an array
// of `{ key, versions }`, each version such a record or a tombstone `{ modRevision, deleted }`.
// msgpackr made these chunks from a fresh object and two fresh byte arrays per record, about
// 2 µs a record and most of a snapshot's time (BENCHMARKS.md, "Snapshot records written by
// hand"). This writes the very bytes msgpackr writes for them (a map always with a 16-bit
// length, integers in their shortest form, float64 past 32 bits), straight from the store's
// latin1 strings, so a replica of an earlier release reads them as before and every replica's
// snapshot of one state is still the same bytes; the tests hold the two encoders to byte
// equality. Reading takes the same layout straight back to strings and answers null for
// anything else, which the caller then decodes with msgpackr as before: bytes this does not
// recognise are never misread, only read the slow way.

import assert from 'node:assert/strict';
import { SHORT } from '../host/latin1.js';
import { isTombstone, type Version } from './history.js';
import type { StoredKv } from './key-value.js';

const MAP16 = 0xde;

/** A field name as msgpackr writes it: a fixstr. */
function name(s: string): Uint8Array {
  return Uint8Array.from([0xa0 | s.length, ...Buffer.from(s, 'latin1')]);
}

const KEY = name('key');
const VALUE = name('value');
const CREATE = name('createRevision');
const MOD = name('modRevision');
const VERSION = name('version');
const LEASE = name('lease');
const VERSIONS = name('versions');
const DELETED = name('deleted');

/** Whether msgpackr would write `n` as an unsigned integer or a float64 of one (all we write). */
function isWritableUint(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 0;
}

function uintBytes(n: number): number {
  if (n > 0xffffffff) return 9;
  return n < 0x80 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : 5;
}

function binBytes(n: number): number {
  return n + (n < 0x100 ? 2 : n < 0x10000 ? 3 : 5);
}

function arrayBytes(n: number): number {
  return n < 0x10 ? 1 : n < 0x10000 ? 3 : 5;
}

/** Bytes of one record, or -1 when a field is outside what this writes (msgpackr does it). */
function encodedRecordBytes(r: StoredKv): number {
  const { createRevision: c, modRevision: m, version: v, lease } = r;
  if (
    !isWritableUint(c) ||
    !isWritableUint(m) ||
    !isWritableUint(v) ||
    (lease !== undefined && !isWritableUint(lease))
  )
    return -1;
  return (
    3 +
    KEY.length +
    binBytes(r.key.length) +
    VALUE.length +
    binBytes(r.value.length) +
    CREATE.length +
    uintBytes(c) +
    MOD.length +
    uintBytes(m) +
    VERSION.length +
    uintBytes(v) +
    (lease === undefined ? 0 : LEASE.length + uintBytes(lease))
  );
}

function tombstoneBytes(modRevision: number): number {
  return isWritableUint(modRevision)
    ? 3 + MOD.length + uintBytes(modRevision) + DELETED.length + 1
    : -1;
}

/** msgpack's tags for a length or an integer of 1, 2 and 4 bytes (arrays have no 1-byte form). */
const ARRAY_TAGS = [-1, 0xdc, 0xdd] as const;
const UINT_TAGS = [0xcc, 0xcd, 0xce] as const;
const BIN_TAGS = [0xc4, 0xc5, 0xc6] as const;

class Writer {
  readonly buf: Buffer;
  private at = 0;

  constructor(size: number) {
    this.buf = Buffer.allocUnsafe(size);
  }

  get position(): number {
    return this.at;
  }

  /** A few constant bytes (a field name): a loop, cheaper than set() at this size. */
  bytes(b: Uint8Array): void {
    for (let i = 0; i < b.length; i++) this.buf[this.at + i] = b[i] as number;
    this.at += b.length;
  }

  byte(b: number): void {
    this.buf[this.at++] = b;
  }

  map(n: number): void {
    this.buf[this.at] = MAP16;
    this.buf[this.at + 1] = 0;
    this.buf[this.at + 2] = n;
    this.at += 3;
  }

  /**
   * `n` (at most 32 bits) after the tag of the narrowest of 1, 2 and 4 bytes that holds it,
   * from `tags` (-1 for a width that has none).
   */
  private sized(n: number, tags: readonly [number, number, number]): void {
    const b = this.buf;
    if (n < 0x100 && tags[0] >= 0) {
      b[this.at] = tags[0];
      b[this.at + 1] = n;
      this.at += 2;
    } else if (n < 0x10000) {
      b[this.at] = tags[1];
      b.writeUInt16BE(n, this.at + 1);
      this.at += 3;
    } else {
      b[this.at] = tags[2];
      b.writeUInt32BE(n, this.at + 1);
      this.at += 5;
    }
  }

  array(n: number): void {
    if (n < 0x10) this.buf[this.at++] = 0x90 | n;
    else this.sized(n, ARRAY_TAGS);
  }

  uint(n: number): void {
    if (n < 0x80) this.buf[this.at++] = n;
    else if (n <= 0xffffffff) this.sized(n, UINT_TAGS);
    else {
      this.buf[this.at] = 0xcb;
      this.buf.writeDoubleBE(n, this.at + 1);
      this.at += 9;
    }
  }

  /** A latin1 string's bytes as a msgpack bin. */
  bin(s: string): void {
    const b = this.buf;
    const n = s.length;
    this.sized(n, BIN_TAGS);
    if (n <= SHORT) for (let i = 0; i < n; i++) b[this.at + i] = s.charCodeAt(i);
    else if (latin1Write !== undefined) latin1Write.call(b, s, this.at, n);
    else b.write(s, this.at, n, 'latin1');
    this.at += n;
  }

  record(r: StoredKv): void {
    this.map(r.lease === undefined ? 5 : 6);
    this.bytes(KEY);
    this.bin(r.key);
    this.bytes(VALUE);
    this.bin(r.value);
    this.bytes(CREATE);
    this.uint(r.createRevision);
    this.bytes(MOD);
    this.uint(r.modRevision);
    this.bytes(VERSION);
    this.uint(r.version);
    if (r.lease !== undefined) {
      this.bytes(LEASE);
      this.uint(r.lease);
    }
  }
}

/**
 * Buffer's own latin1 writer, which `write(s, offset, length, 'latin1')` reaches after checking
 * its arguments and looking the encoding up: that wrapper took five times the copy itself
 * here. Not in Node's typings; where it is missing, `write` does the same.
 */
const latin1Write = (
  Buffer.prototype as unknown as {
    latin1Write?: (this: Buffer, s: string, offset: number, length: number) => number;
  }
).latin1Write;

/**
 * The chunk of `records`, the bytes msgpackr writes for them as KeyValue objects; null when a
 * record holds a number this does not write (none the store makes: the caller then packs it).
 */
export function writeRecordChunk(records: readonly StoredKv[]): Uint8Array | null {
  let size = arrayBytes(records.length);
  for (const r of records) {
    const n = encodedRecordBytes(r);
    if (n < 0) return null;
    size += n;
  }
  const w = new Writer(size);
  w.array(records.length);
  for (const r of records) w.record(r);
  return finished(w, size);
}

/** The history chunk of `pasts` (each key with its older versions), as writeRecordChunk. */
export function writePastChunk(
  pasts: readonly (readonly [string, readonly Version[]])[],
): Uint8Array | null {
  let size = arrayBytes(pasts.length);
  for (const [key, versions] of pasts) {
    size += 3 + KEY.length + binBytes(key.length) + VERSIONS.length + arrayBytes(versions.length);
    for (const v of versions) {
      const n = isTombstone(v) ? tombstoneBytes(v.modRevision) : encodedRecordBytes(v);
      if (n < 0) return null;
      size += n;
    }
  }
  const w = new Writer(size);
  w.array(pasts.length);
  for (const [key, versions] of pasts) {
    w.map(2);
    w.bytes(KEY);
    w.bin(key);
    w.bytes(VERSIONS);
    w.array(versions.length);
    for (const v of versions) {
      if (!isTombstone(v)) {
        w.record(v);
        continue;
      }
      w.map(2);
      w.bytes(MOD);
      w.uint(v.modRevision);
      w.bytes(DELETED);
      w.byte(0xc3);
    }
  }
  return finished(w, size);
}

function finished(w: Writer, size: number): Uint8Array {
  assert.equal(w.position, size, 'a snapshot chunk is written to the bytes counted for it');
  return w.buf;
}

// ---------------------------------------------------------------------------------------------
// Reading.

/** Not this layout: the caller decodes the chunk with msgpackr instead. */
class Unrecognised extends Error {}

class Reader {
  private at = 0;
  private readonly buf: Buffer;

  constructor(bytes: Uint8Array) {
    this.buf = Buffer.isBuffer(bytes)
      ? bytes
      : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  get done(): boolean {
    return this.at === this.buf.length;
  }

  private need(n: number): void {
    if (this.at + n > this.buf.length) throw new Unrecognised();
  }

  peek(): number {
    this.need(1);
    return this.buf[this.at] as number;
  }

  expect(b: Uint8Array): void {
    this.need(b.length);
    for (let i = 0; i < b.length; i++) if (this.buf[this.at + i] !== b[i]) throw new Unrecognised();
    this.at += b.length;
  }

  expectByte(b: number): void {
    if (this.peek() !== b) throw new Unrecognised();
    this.at++;
  }

  /** A map's length, as msgpackr writes plain objects: always map 16. */
  map(): number {
    this.need(3);
    if (this.buf[this.at] !== MAP16) throw new Unrecognised();
    const n = this.buf.readUInt16BE(this.at + 1);
    this.at += 3;
    return n;
  }

  /**
   * The big-endian unsigned integer of 1, 2 or 4 bytes after a tag, for the tag of each width
   * in `tags` (-1 for a width that has none), or throws when the next byte is none of them.
   */
  private sized(tags: readonly [number, number, number]): number {
    const t = this.peek();
    const b = this.buf;
    let n: number;
    if (t === tags[0]) {
      this.need(2);
      n = b[this.at + 1] as number;
      this.at += 2;
    } else if (t === tags[1]) {
      this.need(3);
      n = b.readUInt16BE(this.at + 1);
      this.at += 3;
    } else if (t === tags[2]) {
      this.need(5);
      n = b.readUInt32BE(this.at + 1);
      this.at += 5;
    } else throw new Unrecognised();
    return n;
  }

  array(): number {
    const t = this.peek();
    if (t < 0x90 || t > 0x9f) return this.sized(ARRAY_TAGS);
    this.at++;
    return t & 0x0f;
  }

  /** A non-negative safe integer, in any of the forms msgpackr writes one. */
  uint(): number {
    const t = this.peek();
    if (t < 0x80) {
      this.at++;
      return t;
    }
    if (t !== 0xcb) return this.sized(UINT_TAGS);
    this.need(9);
    const n = this.buf.readDoubleBE(this.at + 1);
    this.at += 9;
    if (!isWritableUint(n)) throw new Unrecognised();
    return n;
  }

  /** A bin's bytes as a latin1 string (the store's form). */
  bin(): string {
    const b = this.buf;
    const n = this.sized(BIN_TAGS);
    this.need(n);
    const from = this.at;
    this.at += n;
    if (n > SHORT) return b.toString('latin1', from, from + n);
    let s = '';
    for (let i = from; i < from + n; i++) s += String.fromCharCode(b[i] as number);
    return s;
  }

  /** The rest of a record after its map header of `fields` fields. */
  record(fields: number): StoredKv {
    if (fields !== 5 && fields !== 6) throw new Unrecognised();
    this.expect(KEY);
    const key = this.bin();
    this.expect(VALUE);
    const value = this.bin();
    this.expect(CREATE);
    const createRevision = this.uint();
    this.expect(MOD);
    const modRevision = this.uint();
    this.expect(VERSION);
    const version = this.uint();
    if (fields === 5) return { key, value, createRevision, modRevision, version };
    this.expect(LEASE);
    return { key, value, createRevision, modRevision, version, lease: this.uint() };
  }
}

/**
 * The records of a chunk writeRecordChunk's layout holds (what every release writes), as the
 * store keeps them; null for any other bytes (the caller decodes those with msgpackr).
 */
export function readRecordChunk(bytes: Uint8Array): StoredKv[] | null {
  try {
    const r = new Reader(bytes);
    const n = r.array();
    const out: StoredKv[] = [];
    for (let i = 0; i < n; i++) out.push(r.record(r.map()));
    return r.done ? out : null;
  } catch (err) {
    if (err instanceof Unrecognised) return null;
    throw err;
  }
}

/** The pasts of a history chunk in writePastChunk's layout; null for any other bytes. */
export function readPastChunk(bytes: Uint8Array): [string, Version[]][] | null {
  try {
    const r = new Reader(bytes);
    const n = r.array();
    const out: [string, Version[]][] = [];
    for (let i = 0; i < n; i++) {
      if (r.map() !== 2) return null;
      r.expect(KEY);
      const key = r.bin();
      r.expect(VERSIONS);
      const count = r.array();
      const versions: Version[] = [];
      for (let j = 0; j < count; j++) {
        const fields = r.map();
        if (fields !== 2) {
          versions.push(r.record(fields));
          continue;
        }
        r.expect(MOD);
        const modRevision = r.uint();
        r.expect(DELETED);
        r.expectByte(0xc3);
        versions.push({ modRevision, deleted: true });
      }
      out.push([key, versions]);
    }
    return r.done ? out : null;
  } catch (err) {
    if (err instanceof Unrecognised) return null;
    throw err;
  }
}
