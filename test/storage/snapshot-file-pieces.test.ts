// A snapshot file read a few MB at a time (verifySnapshotFile, snapshotFileData; the WAL's
// openSnapshot, which a node restores from at start): verifying it so gives exactly what
// reading it whole does, the same metadata or the same error, whatever the damage, also at
// the edges of the pieces; its data comes back byte for byte in pieces of at most 4 MiB; and
// bytes changed after it was verified are caught when the last piece is read.

import { crc32c } from '@node-rs/crc32';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import type { SnapshotMeta } from '../../src/raft/types.js';
import { StorageError } from '../../src/storage/errors.js';
import { nodeFs } from '../../src/storage/fs.js';
import { Syncer } from '../../src/storage/fsutil.js';
import {
  readSnapshotFile,
  snapshotFileData,
  verifySnapshotFile,
  writeSnapshotFile,
} from '../../src/storage/snapshot-file.js';
import { openWalStorage } from '../../src/storage/wal.js';
import { ents, rejectsCode, tempDir } from './helpers.js';

const syncer = new Syncer(nodeFs, undefined);
const STEP = 4 << 20;

/** What reading a file gives: its metadata and data length, or its error's kind and text. */
type Outcome = { meta: SnapshotMeta; dataBytes: number } | { error: string };

async function whole(path: string): Promise<Outcome> {
  try {
    const s = await readSnapshotFile(nodeFs, path);
    return { meta: s.meta, dataBytes: s.data.length };
  } catch (err) {
    return { error: describeError(err) };
  }
}

async function inPieces(path: string): Promise<Outcome> {
  try {
    const h = await verifySnapshotFile(nodeFs, path);
    return { meta: h.meta, dataBytes: h.dataBytes };
  } catch (err) {
    return { error: describeError(err) };
  }
}

function describeError(err: unknown): string {
  return err instanceof StorageError ? `${err.code}: ${err.message}` : `other: ${String(err)}`;
}

async function collect(it: AsyncIterable<Uint8Array>): Promise<{ data: Buffer; sizes: number[] }> {
  const parts: Uint8Array[] = [];
  for await (const p of it) parts.push(Uint8Array.from(p));
  return { data: Buffer.concat(parts), sizes: parts.map((p) => p.length) };
}

void describe('a snapshot file read in pieces', () => {
  void it('is verified exactly as when read whole, whatever the damage', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const cases: [SnapshotMeta, number][] = [
        [{ index: 7, term: 2, voters: [1, 2, 3] }, 3_000],
        [{ index: 9, term: 3, voters: [1, 2], learners: [5], outgoing: [1, 2, 3] }, 1_000],
        // Past one piece, so that damage at the edges of the pieces is tried too.
        [{ index: 11, term: 4, voters: [1] }, STEP + 1_000],
      ];
      let tried = 0;
      for (const [meta, size] of cases) {
        const path = await writeSnapshotFile(syncer, dir, meta, randomBytes(size));
        const good = await readFile(path);
        const same = async (bytes: Buffer, what: string): Promise<void> => {
          await writeFile(path, bytes);
          assert.deepEqual(await inPieces(path), await whole(path), `${meta.index}: ${what}`);
          tried++;
        };
        assert.ok(!('error' in (await inPieces(path))), 'the good file was refused');
        await same(good, 'undamaged');
        const edges = [0, 7, 8, 11, 12, 27, 28, 40, 48, 60, 100, STEP - 4, STEP - 1, STEP];
        const flips = [...edges, good.length - 5, good.length - 4, good.length - 1];
        for (const at of flips.filter((a) => a >= 0 && a < good.length)) {
          const bad = Buffer.from(good);
          bad[at] = (bad[at] as number) ^ 0x41;
          await same(bad, `byte ${at} flipped`);
        }
        const cuts = [0, 3, 4, 43, 44, 50, STEP - 2, STEP, STEP + 3, good.length - 1];
        for (const n of cuts.filter((c) => c < good.length))
          await same(good.subarray(0, n), `cut to ${n} bytes`);
        await same(Buffer.concat([good, Buffer.from([0])]), 'a byte appended');
        // Damage with a CRC that matches: an unknown version, lists past the end.
        for (const [at, value] of [
          [8, 3],
          [28, 1_000],
          [28, 1_025],
        ] as const) {
          const bad = Buffer.from(good);
          bad.writeUInt32LE(value, at);
          bad.writeUInt32LE(crc32c(bad.subarray(0, bad.length - 4)), bad.length - 4);
          await same(bad, `${value} written at ${at}, CRC rewritten`);
        }
      }
      assert.ok(tried > 60, `only ${tried} files tried`);
    } finally {
      await cleanup();
    }
  });

  void it('gives its data back in pieces, and catches bytes changed since it was verified', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const data = randomBytes(2 * STEP + 12_345);
      const meta = { index: 5, term: 1, voters: [1, 2, 3] };
      const path = await writeSnapshotFile(syncer, dir, meta, data);
      const head = await verifySnapshotFile(nodeFs, path);
      const back = await collect(snapshotFileData(nodeFs, head));
      assert.ok(back.data.equals(data), 'the data read in pieces differs');
      assert.deepEqual(back.sizes, [STEP, STEP, 12_345]);
      // Read twice: each iteration reads the file again.
      assert.ok((await collect(snapshotFileData(nodeFs, head))).data.equals(data));

      const bytes = await readFile(path);
      bytes.writeUInt8((bytes[head.dataAt + STEP + 7] as number) ^ 1, head.dataAt + STEP + 7);
      await writeFile(path, bytes);
      let pieces = 0;
      const err = await rejectsCode(async () => {
        for await (const p of snapshotFileData(nodeFs, head)) pieces += p.length > 0 ? 1 : 0;
      }, 'STORAGE_CORRUPT');
      assert.match(err.message, /file crc/);
      assert.equal(pieces, 3, 'the damage was reported before the last piece was read');
    } finally {
      await cleanup();
    }
  });

  void it('is what the WAL restores from at open, the same bytes loadSnapshot reads', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const data = randomBytes(STEP + 99);
      const meta = { index: 3, term: 1, voters: [1] };
      let wal = await openWalStorage(dir);
      await wal.persist(ents(1, 3, 1), { term: 1, vote: 1, commit: 3 });
      await wal.saveSnapshot(meta, data);
      // Saved since open: read again from its file.
      const saved = await wal.openSnapshot();
      assert.ok(saved !== null);
      assert.ok((await collect(saved.pieces())).data.equals(data));
      await wal.close();
      wal = await openWalStorage(dir);
      const opened = await wal.openSnapshot();
      assert.ok(opened !== null);
      assert.deepEqual(opened.meta, meta);
      assert.equal(opened.totalBytes, data.length);
      const back = await collect(opened.pieces());
      assert.ok(back.data.equals(data));
      assert.ok(Buffer.from((await wal.loadSnapshot())?.data ?? []).equals(data));
      await wal.close();
    } finally {
      await cleanup();
    }
  });
});
