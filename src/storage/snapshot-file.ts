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
    const flush = async (): Promise<void> => {
      const bufs = pending;
      pending = [];
      pendingBytes = 0;
      try {
        position += await writevFully(fh, bufs, position);
      } catch (err) {
        throw ioFailure('STORAGE_WRITE_FAILED', `writing ${path}.tmp`, err);
      }
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
      if (pendingBytes >= STREAM_WRITE_BYTES) await flush();
    }
    if (pendingBytes > 0) await flush();
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
 * `length` bytes of the data of the snapshot file for `meta` (of `dataBytes` bytes), from
 * `offset`, without reading the rest: a chunk to send to a follower. The file's header must be
 * the one `meta` and `dataBytes` make (STORAGE_CORRUPT otherwise). The file's CRC is not
 * checked here: the chunk travels with its own checksum and the whole is checked against its
 * id, so bytes the disk changed are refused by the follower.
 */
export async function readSnapshotFileRange(
  fs: StorageFs,
  dir: string,
  meta: SnapshotMeta,
  dataBytes: number,
  offset: number,
  length: number,
): Promise<Uint8Array> {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0)
    throw new RangeError(`bad range ${offset}+${length}`);
  if (offset + length > dataBytes)
    throw new RangeError(`range ${offset}+${length} runs past the ${dataBytes} bytes of data`);
  const head = encodeHead(meta, dataBytes);
  const path = join(dir, snapshotFileName(meta.index));
  const fh = await fs.open(path, { create: 'no' });
  try {
    const seen = await readFully(fh, head.length, 0);
    if (seen.length !== head.length || !seen.equals(head))
      throw corrupt(path, 0, `the header of snapshot ${meta.index} (term ${meta.term})`, 'another');
    const out = await readFully(fh, length, head.length + offset);
    if (out.length !== length)
      throw corrupt(path, head.length + offset, `${length} bytes`, `${out.length}`);
    return out;
  } finally {
    await fh.close();
  }
}

/** Up to `length` bytes at `position`; fewer only at the end of the file. */
async function readFully(fh: StorageFile, length: number, position: number): Promise<Buffer> {
  const out = Buffer.allocUnsafe(length);
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
  const fail = (offset: number, expected: string, seen: string): StorageError =>
    corrupt(path, offset, expected, seen);
  if (buf.length < 44 || !buf.subarray(0, 8).equals(MAGIC))
    throw fail(0, 'the snapshot magic', `${buf.length} bytes`);
  const crcAt = buf.length - 4;
  const stored = buf.readUInt32LE(crcAt);
  const actual = crc32c(buf.subarray(0, crcAt));
  if (stored !== actual)
    throw fail(crcAt, `file crc ${stored.toString(16)}`, `crc ${actual.toString(16)}`);
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
  return { meta, data: new Uint8Array(buf.buffer, buf.byteOffset + dataAt, dataBytes) };
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
