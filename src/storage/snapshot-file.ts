// Snapshot files: `snap-<index>.snap`, written to a temporary name, fsynced, renamed and the
// directory fsynced (so a crash leaves either the old snapshot or the new one, never half of
// one), with one CRC32C over the whole file. Layout, version 1:
//
//   magic "FLOTSNP\n" | u32 version | u64 index | u64 term | u32 voterCount | u64 voter...
//   | u64 dataBytes | data | u32 crc32c(everything before)
//
// Version 2 adds the rest of the configuration after the voters (SnapshotMeta):
//
//   ... | u32 voterCount | u64 voter... | u32 learnerCount | u64 learner...
//   | u32 outgoingCount | u64 outgoing... | u32 learnersNextCount | u64 learnerNext...
//   | u32 flags (bit 0: autoLeave) | u64 dataBytes | data | u32 crc32c
//
// A snapshot whose configuration version 1 can express (simple, no learners) is written as
// version 1, byte for byte what earlier builds wrote and can read; any other as version 2.

import { crc32c } from '@node-rs/crc32';
import { join } from 'node:path';
import type { SnapshotMeta } from '../raft/index.js';
import { asBuffer, readU64, writeU64 } from './codec.js';
import { StorageError, corrupt } from './errors.js';
import type { StorageFile, StorageFs } from './fs.js';
import type { Syncer } from './fsutil.js';
import { writeFileAtomic, writeFileAtomicWith, writeFully, writevFully } from './fsutil.js';
import { crc32cCombine } from './crc-combine.js';
import { ioFailure } from './errors.js';
import type { StoredSnapshot } from './types.js';

/** The newest format this build writes; it reads every version up to it. */
export const SNAPSHOT_FORMAT_VERSION = 2;
const MAGIC = Buffer.from('FLOTSNP\n', 'latin1');
const NAME = /^snap-([0-9]{20})\.snap$/;
/** Most ids in one list of the configuration. */
const MAX_IDS = 1024;

export function snapshotFileName(index: number): string {
  return `snap-${String(index).padStart(20, '0')}.snap`;
}

function formatOf(meta: SnapshotMeta): 1 | 2 {
  const simple =
    (meta.learners ?? []).length === 0 &&
    (meta.outgoing ?? []).length === 0 &&
    (meta.learnersNext ?? []).length === 0 &&
    meta.autoLeave !== true;
  return simple ? 1 : 2;
}

function encodeHead(meta: SnapshotMeta, dataBytes: number): Buffer {
  const version = formatOf(meta);
  const lists =
    version === 1
      ? [meta.voters]
      : [meta.voters, meta.learners ?? [], meta.outgoing ?? [], meta.learnersNext ?? []];
  let size = 28 + 8 + (version === 2 ? 4 : 0);
  for (const l of lists) size += 4 + 8 * l.length;
  const head = Buffer.allocUnsafe(size);
  MAGIC.copy(head, 0);
  head.writeUInt32LE(version, 8);
  writeU64(head, 12, meta.index);
  writeU64(head, 20, meta.term);
  let at = 28;
  for (const l of lists) {
    head.writeUInt32LE(l.length, at);
    l.forEach((v, k) => writeU64(head, at + 4 + 8 * k, v));
    at += 4 + 8 * l.length;
  }
  if (version === 2) {
    head.writeUInt32LE(meta.autoLeave === true ? 1 : 0, at);
    at += 4;
  }
  writeU64(head, at, dataBytes);
  return head;
}

export async function writeSnapshotFile(
  syncer: Syncer,
  dir: string,
  meta: SnapshotMeta,
  data: Uint8Array,
): Promise<string> {
  const head = encodeHead(meta, data.length);
  const trailer = Buffer.allocUnsafe(4);
  trailer.writeUInt32LE(crc32c(asBuffer(data), crc32c(head)), 0);
  const path = join(dir, snapshotFileName(meta.index));
  await writeFileAtomic(syncer, dir, path, [head, data, trailer]);
  return path;
}

/** The snapshot's source failed while it was written from it: nothing of it was kept. */
export class SnapshotSourceError extends Error {
  constructor(cause: unknown) {
    super(`Snapshot source failed: ${cause instanceof Error ? cause.message : String(cause)}`, {
      cause,
    });
    this.name = 'SnapshotSourceError';
  }
}

/** Pieces of streamed data gathered into one vectored write. */
const STREAM_WRITE_BYTES = 1 << 20;
/**
 * A streamed snapshot is synced each time this much more of it was written, not only at its
 * end: the log's fsyncs share the disk, and a single sync of a whole large snapshot (345 MB
 * at a million keys) can hold them up for as long as the disk takes to write all of it.
 */
export const SNAPSHOT_SYNC_BYTES = 8 << 20;

/**
 * The same file, byte for byte, written from `data`'s pieces as they come, so the snapshot is
 * never held whole in memory: the header is written last, once the data's length is known,
 * and the file's CRC joins the header's to the data's (crc32cCombine) rather than reading the
 * data back. More than `maxBytes` of data is refused (STORAGE_LIMIT) and leaves no file; so
 * does a source that throws, with its own error. Answers the data's length.
 */
export async function writeSnapshotFileFrom(
  syncer: Syncer,
  dir: string,
  meta: SnapshotMeta,
  data: AsyncIterable<Uint8Array>,
  maxBytes: number,
): Promise<number> {
  const headBytes = encodeHead(meta, 0).length;
  const path = join(dir, snapshotFileName(meta.index));
  let dataBytes = 0;
  await writeFileAtomicWith(syncer, dir, path, async (fh) => {
    let dataCrc = 0;
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    let position = headBytes;
    let syncedTo = 0;
    // The last flush is not synced on its own: the file's sync follows it.
    const flush = async (last: boolean): Promise<void> => {
      const bufs = pending;
      pending = [];
      pendingBytes = 0;
      try {
        position += await writevFully(fh, bufs, position);
      } catch (err) {
        throw ioFailure('STORAGE_WRITE_FAILED', `writing ${path}.tmp`, err);
      }
      if (last || position - syncedTo < SNAPSHOT_SYNC_BYTES) return;
      syncedTo = position;
      await syncer.datasync(fh, `${path}.tmp`);
    };
    const pieces = data[Symbol.asyncIterator]();
    for (;;) {
      let next: IteratorResult<Uint8Array>;
      try {
        next = await pieces.next();
      } catch (err) {
        throw new SnapshotSourceError(err);
      }
      if (next.done === true) break;
      const piece = next.value;
      dataBytes += piece.length;
      if (dataBytes > maxBytes) {
        await pieces.return?.();
        throw new StorageError(
          'STORAGE_LIMIT',
          `Snapshot exceeds the limit of ${maxBytes} bytes (${dataBytes} bytes so far)`,
        );
      }
      const b = asBuffer(piece);
      dataCrc = crc32c(b, dataCrc);
      pending.push(b);
      pendingBytes += b.length;
      if (pendingBytes >= STREAM_WRITE_BYTES) await flush(false);
    }
    if (pendingBytes > 0) await flush(true);
    const head = encodeHead(meta, dataBytes);
    const trailer = Buffer.allocUnsafe(4);
    trailer.writeUInt32LE(crc32cCombine(crc32c(head), dataCrc, dataBytes), 0);
    try {
      await writeFully(fh, head, 0);
      await writeFully(fh, trailer, headBytes + dataBytes);
    } catch (err) {
      throw ioFailure('STORAGE_WRITE_FAILED', `writing ${path}.tmp`, err);
    }
  });
  return dataBytes;
}

/**
 * A snapshot file kept open to read chunks of its data at their offsets (a leader sending it to
 * followers), its header checked once, at open, against the metadata and the data length the
 * chunks are asked for with (STORAGE_CORRUPT otherwise). The file's CRC is not checked: each
 * chunk travels with its own checksum and the whole is checked against its id, so bytes the
 * disk changed are refused by the follower.
 */
export class SnapshotChunkReader {
  private constructor(
    private readonly fh: StorageFile,
    private readonly path: string,
    private readonly dataAt: number,
    readonly dataBytes: number,
  ) {}

  static async open(
    fs: StorageFs,
    dir: string,
    meta: SnapshotMeta,
    dataBytes: number,
  ): Promise<SnapshotChunkReader> {
    const head = encodeHead(meta, dataBytes);
    const path = join(dir, snapshotFileName(meta.index));
    const fh = await fs.open(path, { create: 'no' });
    try {
      const seen = await readFully(fh, head.length, 0);
      if (seen.length !== head.length || !seen.equals(head))
        throw corrupt(
          path,
          0,
          `the header of snapshot ${meta.index} (term ${meta.term})`,
          'another',
        );
    } catch (err) {
      await fh.close();
      throw err;
    }
    return new SnapshotChunkReader(fh, path, head.length, dataBytes);
  }

  /**
   * `length` bytes of the data from `offset`, at the start of a new buffer `spare` bytes longer
   * than that (room for what the caller appends, such as a checksum, without a copy).
   */
  async read(offset: number, length: number, spare = 0): Promise<Uint8Array> {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0)
      throw new RangeError(`bad range ${offset}+${length}`);
    if (offset + length > this.dataBytes)
      throw new RangeError(
        `range ${offset}+${length} runs past the ${this.dataBytes} bytes of data`,
      );
    const out = Buffer.allocUnsafe(length + spare);
    const got = await readFully(this.fh, length, this.dataAt + offset, out);
    if (got.length !== length)
      throw corrupt(this.path, this.dataAt + offset, `${length} bytes`, `${got.length}`);
    return new Uint8Array(out.buffer, out.byteOffset, out.length);
  }

  /** Closes the file once the reads under way are done. */
  close(): Promise<void> {
    return this.fh.close();
  }
}

/**
 * Up to `length` bytes at `position`, into `into` if given (at least `length` long) or a new
 * buffer; fewer only at the end of the file.
 */
async function readFully(
  fh: StorageFile,
  length: number,
  position: number,
  into?: Buffer,
): Promise<Buffer> {
  const out = into ?? Buffer.allocUnsafe(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(out, done, length - done, position + done);
    if (bytesRead <= 0) break;
    done += bytesRead;
  }
  return out.subarray(0, done);
}

/** Reads and verifies a snapshot file; throws STORAGE_CORRUPT or STORAGE_VERSION. */
export async function readSnapshotFile(fs: StorageFs, path: string): Promise<StoredSnapshot> {
  const buf = await fs.readFile(path);
  const crcAt = buf.length - 4;
  const crc =
    buf.length < 4
      ? null
      : { stored: buf.readUInt32LE(crcAt), actual: crc32c(buf.subarray(0, crcAt)) };
  const head = parseSnapshotHead(path, buf, buf.length, crc);
  return {
    meta: head.meta,
    data: new Uint8Array(buf.buffer, buf.byteOffset + head.dataAt, head.dataBytes),
  };
}

/** Where a snapshot file's data lies, and the snapshot's metadata, from its header. */
export interface SnapshotFileHead {
  readonly path: string;
  readonly meta: SnapshotMeta;
  /** The offset of the data in the file, and its length. */
  readonly dataAt: number;
  readonly dataBytes: number;
}

/** Bytes of a snapshot file read at once when it is read in pieces. */
const FILE_STEP_BYTES = 4 << 20;
/** The longest header: four lists of MAX_IDS ids, the flags and the data length. */
const HEAD_MAX_BYTES = 28 + 4 * (4 + 8 * MAX_IDS) + 4 + 8;

/**
 * Verifies a snapshot file as readSnapshotFile does (the same checks, in the same order, the
 * same errors) while reading it a few MB at a time, and answers its header: a node opening its
 * data directory checks its snapshot without holding it whole.
 */
export async function verifySnapshotFile(fs: StorageFs, path: string): Promise<SnapshotFileHead> {
  const fh = await fs.open(path, { create: 'no' });
  let prefix: Buffer;
  let fileBytes = 0;
  let crc = 0;
  // The file's last 4 bytes (its CRC) are held back from the running CRC until the end.
  let tail = Buffer.alloc(0);
  try {
    prefix = await readFully(fh, HEAD_MAX_BYTES, 0);
    // One buffer for every piece after the prefix: nothing read is kept but the last 4 bytes.
    const step = Buffer.allocUnsafe(FILE_STEP_BYTES);
    for (let at = 0; ;) {
      const piece = at === 0 ? prefix : await readFully(fh, FILE_STEP_BYTES, at, step);
      if (piece.length === 0) break;
      at += piece.length;
      fileBytes += piece.length;
      if (piece.length >= 4) {
        crc = crc32c(piece.subarray(0, piece.length - 4), crc32c(tail, crc));
        tail = Buffer.from(piece.subarray(piece.length - 4));
      } else {
        const both = Buffer.concat([tail, piece]);
        const keep = Math.min(4, both.length);
        crc = crc32c(both.subarray(0, both.length - keep), crc);
        tail = Buffer.from(both.subarray(both.length - keep));
      }
    }
  } finally {
    await fh.close();
  }
  const stored = tail.length === 4 ? { stored: tail.readUInt32LE(0), actual: crc } : null;
  return { path, ...parseSnapshotHead(path, prefix, fileBytes, stored) };
}

/**
 * The data of the snapshot file `head` describes (verifySnapshotFile), a few MB at a time each
 * time it is iterated, so that it is restored without being held whole. The file's CRC is
 * checked again as its last piece is read: bytes changed since it was verified throw
 * STORAGE_CORRUPT then.
 */
export async function* snapshotFileData(
  fs: StorageFs,
  head: SnapshotFileHead,
): AsyncGenerator<Uint8Array, void, undefined> {
  const { path, dataAt, dataBytes } = head;
  const fh = await fs.open(path, { create: 'no' });
  try {
    let crc = crc32c(await readFully(fh, dataAt, 0));
    for (let at = 0; at < dataBytes;) {
      const piece = await readFully(fh, Math.min(FILE_STEP_BYTES, dataBytes - at), dataAt + at);
      if (piece.length === 0) throw corrupt(path, dataAt + at, `${dataBytes} data bytes`, `${at}`);
      crc = crc32c(piece, crc);
      at += piece.length;
      yield piece;
    }
    const end = await readFully(fh, 5, dataAt + dataBytes);
    if (end.length !== 4 || end.readUInt32LE(0) !== crc)
      throw corrupt(
        path,
        dataAt + dataBytes,
        `file crc ${crc.toString(16)} and the end of the file`,
        end.length === 4 ? `crc ${end.readUInt32LE(0).toString(16)}` : `${end.length} bytes`,
      );
  } finally {
    await fh.close();
  }
}

/**
 * Checks and reads a snapshot file's header from `buf` (the file, or at least its first
 * HEAD_MAX_BYTES), given the file's length and its stored and computed CRC (null: the file is
 * too short to hold one). The checks and their order are the format's: magic, CRC, version,
 * the configuration, the data length.
 */
function parseSnapshotHead(
  path: string,
  buf: Buffer,
  fileBytes: number,
  crc: { stored: number; actual: number } | null,
): { meta: SnapshotMeta; dataAt: number; dataBytes: number } {
  const fail = (offset: number, expected: string, seen: string): StorageError =>
    corrupt(path, offset, expected, seen);
  if (fileBytes < 44 || crc === null || !buf.subarray(0, 8).equals(MAGIC))
    throw fail(0, 'the snapshot magic', `${fileBytes} bytes`);
  const crcAt = fileBytes - 4;
  if (crc.stored !== crc.actual)
    throw fail(crcAt, `file crc ${crc.stored.toString(16)}`, `crc ${crc.actual.toString(16)}`);
  const version = buf.readUInt32LE(8);
  if (version !== 1 && version !== 2)
    throw new StorageError(
      'STORAGE_VERSION',
      `${path} has snapshot format version ${version}; this build reads versions 1 to ${SNAPSHOT_FORMAT_VERSION}`,
      { file: path, offset: 8 },
    );
  // The id lists: the voters, then (version 2) learners, outgoing voters, learners-next.
  const lists: number[][] = [];
  let at = 28;
  for (let n = 0; n < (version === 1 ? 1 : 4); n++) {
    if (at + 4 > crcAt) throw fail(at, 'an id count', 'the end of the file');
    const count = buf.readUInt32LE(at);
    if (count > MAX_IDS || at + 4 + 8 * count > crcAt)
      throw fail(at, `at most ${MAX_IDS} node ids`, `${count}`);
    const ids: number[] = [];
    for (let k = 0; k < count; k++) ids.push(readU64(buf, at + 4 + 8 * k));
    lists.push(ids);
    at += 4 + 8 * count;
  }
  let autoLeave = false;
  if (version === 2) {
    if (at + 4 > crcAt) throw fail(at, 'the flags', 'the end of the file');
    const flags = buf.readUInt32LE(at);
    if (flags > 1) throw fail(at, 'flags 0 or 1', `${flags}`);
    autoLeave = flags === 1;
    at += 4;
  }
  const dataAt = at + 8;
  if (dataAt > crcAt) throw fail(at, 'the data length', 'the end of the file');
  const dataBytes = readU64(buf, at);
  if (dataAt + dataBytes !== crcAt) throw fail(at, `${crcAt - dataAt} data bytes`, `${dataBytes}`);
  const [voters = [], learners = [], outgoing = [], learnersNext = []] = lists;
  const meta: SnapshotMeta = {
    index: readU64(buf, 12),
    term: readU64(buf, 20),
    voters,
    ...(learners.length > 0 ? { learners } : {}),
    ...(outgoing.length > 0 ? { outgoing } : {}),
    ...(learnersNext.length > 0 ? { learnersNext } : {}),
    ...(autoLeave ? { autoLeave: true } : {}),
  };
  return { meta, dataAt, dataBytes };
}

/** Snapshot file names in the directory, newest (highest index) first. */
export async function listSnapshotFiles(
  fs: StorageFs,
  dir: string,
): Promise<{ index: number; path: string }[]> {
  const names = await fs.readdir(dir);
  const found: { index: number; path: string }[] = [];
  for (const name of names) {
    const m = NAME.exec(name);
    if (m?.[1] !== undefined) found.push({ index: Number(m[1]), path: join(dir, name) });
  }
  return found.sort((a, b) => b.index - a.index);
}

/** Removes every snapshot file except the one at `keepIndex` (called once it is durable). */
export async function removeOlderSnapshots(
  fs: StorageFs,
  dir: string,
  keepIndex: number,
): Promise<void> {
  for (const f of await listSnapshotFiles(fs, dir)) if (f.index < keepIndex) await fs.rm(f.path);
}
