// Snapshot files: `snap-<index>.snap`, written to a temporary name, fsynced, renamed and the
// directory fsynced (so a crash leaves either the old snapshot or the new one, never half of
// one), with one CRC32C over the whole file. Layout:
//
//   magic "FLOTSNP\n" | u32 version | u64 index | u64 term | u32 voterCount | u64 voter...
//   | u64 dataBytes | data | u32 crc32c(everything before)

import { crc32c } from '@node-rs/crc32';
import { join } from 'node:path';
import type { SnapshotMeta } from '../raft/index.js';
import { asBuffer, readU64, writeU64 } from './codec.js';
import { StorageError, corrupt } from './errors.js';
import type { StorageFs } from './fs.js';
import type { Syncer } from './fsutil.js';
import { writeFileAtomic } from './fsutil.js';
import type { StoredSnapshot } from './types.js';

export const SNAPSHOT_FORMAT_VERSION = 1;
const MAGIC = Buffer.from('FLOTSNP\n', 'latin1');
const NAME = /^snap-([0-9]{20})\.snap$/;

export function snapshotFileName(index: number): string {
  return `snap-${String(index).padStart(20, '0')}.snap`;
}

function encodeHead(meta: SnapshotMeta, dataBytes: number): Buffer {
  const head = Buffer.allocUnsafe(8 + 4 + 16 + 4 + 8 * meta.voters.length + 8);
  MAGIC.copy(head, 0);
  head.writeUInt32LE(SNAPSHOT_FORMAT_VERSION, 8);
  writeU64(head, 12, meta.index);
  writeU64(head, 20, meta.term);
  head.writeUInt32LE(meta.voters.length, 28);
  meta.voters.forEach((v, k) => writeU64(head, 32 + 8 * k, v));
  writeU64(head, 32 + 8 * meta.voters.length, dataBytes);
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
  if (version !== SNAPSHOT_FORMAT_VERSION)
    throw new StorageError(
      'STORAGE_VERSION',
      `${path} has snapshot format version ${version}; this build reads ${SNAPSHOT_FORMAT_VERSION}`,
      { file: path, offset: 8 },
    );
  const voterCount = buf.readUInt32LE(28);
  const dataAt = 32 + 8 * voterCount + 8;
  if (voterCount > 1024 || dataAt > crcAt) throw fail(28, 'at most 1024 voters', `${voterCount}`);
  const dataBytes = readU64(buf, dataAt - 8);
  if (dataAt + dataBytes !== crcAt)
    throw fail(dataAt - 8, `${crcAt - dataAt} data bytes`, `${dataBytes}`);
  const voters: number[] = [];
  for (let k = 0; k < voterCount; k++) voters.push(readU64(buf, 32 + 8 * k));
  const meta = { index: readU64(buf, 12), term: readU64(buf, 20), voters };
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
