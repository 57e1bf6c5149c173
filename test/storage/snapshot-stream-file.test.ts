// A snapshot written to its file as it is encoded (writeSnapshotFileFrom, WalStorage's
// saveSnapshotFrom) is byte for byte the file a whole buffer makes, with its CRC joined from
// the header's and the data's (crc32cCombine); a snapshot over the limit, or a source that
// fails, leaves no file and the store writable.

import { crc32c } from '@node-rs/crc32';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { SnapshotMeta } from '../../src/raft/types.js';
import { crc32cCombine } from '../../src/storage/crc-combine.js';
import { nodeFs, type StorageFile, type StorageFs } from '../../src/storage/fs.js';
import { Syncer } from '../../src/storage/fsutil.js';
import {
  SNAPSHOT_SYNC_BYTES,
  SnapshotSourceError,
  readSnapshotFile,
  snapshotFileName,
  SnapshotChunkReader,
  writeSnapshotFile,
  writeSnapshotFileFrom,
} from '../../src/storage/snapshot-file.js';
import { openWalStorage } from '../../src/storage/wal.js';
import { ents, rejectsCode, tempDir } from './helpers.js';

/** `length` bytes of the data from `offset`, through a reader opened for this one read. */
async function readRange(
  dir: string,
  meta: SnapshotMeta,
  dataBytes: number,
  offset: number,
  length: number,
): Promise<Uint8Array> {
  const reader = await SnapshotChunkReader.open(nodeFs, dir, meta, dataBytes);
  try {
    return await reader.read(offset, length);
  } finally {
    await reader.close();
  }
}

/** `data` in pieces of the given sizes, as an async source; counts the pieces read. */
function source(
  data: Uint8Array,
  sizes: readonly number[],
): AsyncIterable<Uint8Array> & {
  read: number;
} {
  const s = {
    read: 0,
    async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array> {
      let at = 0;
      for (let k = 0; at < data.length; k++) {
        const n = sizes[k % sizes.length] as number;
        await Promise.resolve();
        s.read++;
        yield data.subarray(at, at + n);
        at += n;
      }
    },
  };
  return s;
}

void describe('CRC-32C of joined bytes', () => {
  void it('equals the CRC of the concatenation, for any split', () => {
    for (let t = 0; t < 500; t++) {
      const a = randomBytes(t % 97);
      const b = randomBytes(t < 10 ? t : (t * 7919) % 20_000);
      assert.equal(
        crc32cCombine(crc32c(a), crc32c(b), b.length),
        crc32c(Buffer.concat([a, b])),
        `${a.length} + ${b.length} bytes`,
      );
    }
  });

  void it('refuses a length that is not a non-negative integer', () => {
    assert.throws(() => crc32cCombine(1, 2, -1), RangeError);
    assert.throws(() => crc32cCombine(1, 2, 1.5), RangeError);
  });
});

void describe('a snapshot file written as it is encoded', () => {
  const syncer = new Syncer(nodeFs, undefined);
  const data = randomBytes(3 * (1 << 20) + 12_345);
  const metas: SnapshotMeta[] = [
    { index: 7, term: 2, voters: [1, 2, 3] },
    { index: 9, term: 3, voters: [1, 2, 4], learners: [6], outgoing: [1, 2, 3], autoLeave: true },
  ];

  void it('is byte for byte the file a whole buffer makes, for versions 1 and 2', async () => {
    const whole = await tempDir();
    const streamed = await tempDir();
    try {
      for (const meta of metas) {
        const a = await writeSnapshotFile(syncer, whole.dir, meta, data);
        const bytes = await writeSnapshotFileFrom(
          syncer,
          streamed.dir,
          meta,
          source(data, [1, 70_000, 4, 300_000]),
          1 << 30,
        );
        assert.equal(bytes, data.length);
        const b = a.replace(whole.dir, streamed.dir);
        assert.deepEqual(await readFile(b), await readFile(a));
        const back = await readSnapshotFile(nodeFs, b);
        assert.deepEqual(back.meta, meta);
      }
      assert.deepEqual(
        (await readdir(streamed.dir)).filter((f) => f.endsWith('.tmp')),
        [],
        'no temporary file left',
      );
    } finally {
      await whole.cleanup();
      await streamed.cleanup();
    }
  });

  void it('is synced every SNAPSHOT_SYNC_BYTES as it is written, not only at the end', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      // Each sync with how much of the temporary file was written when it ran.
      const syncs: number[] = [];
      let written = 0;
      const counting = new Syncer(nodeFs, async (path, sync) => {
        if (path.endsWith('.tmp')) syncs.push(written);
        await sync();
      });
      const big = randomBytes(2 * SNAPSHOT_SYNC_BYTES + (3 << 20) + 777);
      const src = source(big, [300_000]);
      const watched = {
        async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array> {
          for await (const piece of src) {
            yield piece;
            written += piece.length;
          }
        },
      };
      const meta = metas[0] as SnapshotMeta;
      await writeSnapshotFileFrom(counting, dir, meta, watched, 1 << 30);
      assert.equal(syncs.length, 3, `syncs after ${syncs.join(', ')} bytes`);
      // Two on the way, each once a vectored write (1 MiB) took the file past the mark (the
      // count here lags by the piece being written); then the last, of the whole.
      const near = (bytes: number): boolean =>
        bytes >= SNAPSHOT_SYNC_BYTES - 400_000 && bytes <= SNAPSHOT_SYNC_BYTES + 1_400_000;
      const [first, second] = syncs as [number, number];
      assert.ok(near(first) && near(second - first), `syncs after ${syncs.join(', ')} bytes`);
      assert.equal(syncs[2], big.length);
      const back = await readSnapshotFile(nodeFs, join(dir, snapshotFileName(meta.index)));
      assert.deepEqual(Buffer.from(back.data), big);
    } finally {
      await cleanup();
    }
  });

  void it('refuses more than the limit, stops reading, and leaves no file', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const src = source(data, [1 << 20]);
      const err = await rejectsCode(
        () => writeSnapshotFileFrom(syncer, dir, metas[0] as SnapshotMeta, src, 2 << 20),
        'STORAGE_LIMIT',
      );
      assert.match(err.message, /exceeds the limit of 2097152 bytes \(3145728 bytes so far\)/);
      assert.equal(src.read, 3, 'read no piece past the one over the limit');
      assert.deepEqual(await readdir(dir), []);
    } finally {
      await cleanup();
    }
  });

  void it('passes on a failing source as SnapshotSourceError and leaves no file', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const failing = {
        async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array> {
          yield data.subarray(0, 100);
          await Promise.resolve();
          throw new Error('capture lost track');
        },
      };
      await assert.rejects(
        writeSnapshotFileFrom(syncer, dir, metas[0] as SnapshotMeta, failing, 1 << 30),
        (err: unknown) =>
          err instanceof SnapshotSourceError && /capture lost track/.test(err.message),
      );
      assert.deepEqual(await readdir(dir), []);
    } finally {
      await cleanup();
    }
  });
});

void describe('WalStorage.saveSnapshotFrom', () => {
  const meta = (index: number): SnapshotMeta => ({ index, term: 1, voters: [1] });

  void it('saves what loadSnapshot reads back, and drains a source it does not need', async () => {
    const { dir, cleanup } = await tempDir();
    const wal = await openWalStorage(dir, { maxSnapshotBytes: 8 << 20 });
    try {
      await wal.persist(ents(1, 20, 1), { term: 1, vote: 1, commit: 20 });
      const data = randomBytes(1 << 20);
      assert.equal(await wal.saveSnapshotFrom(meta(10), source(data, [65_536])), data.length);
      const back = await wal.loadSnapshot();
      assert.deepEqual(back?.meta, meta(10));
      assert.deepEqual(Buffer.from(back?.data ?? []), data);
      // Older than the one held: nothing written, but the source is read to its end.
      const stale = source(data, [65_536]);
      assert.equal(await wal.saveSnapshotFrom(meta(5), stale), null);
      assert.equal(stale.read, 16);
      assert.equal((await wal.loadSnapshot())?.meta.index, 10);
    } finally {
      await wal.close();
      await cleanup();
    }
  });

  void it('stays writable after a snapshot over the limit or a failing source', async () => {
    const { dir, cleanup } = await tempDir();
    const wal = await openWalStorage(dir, { maxSnapshotBytes: 1 << 20 });
    try {
      await wal.persist(ents(1, 20, 1), { term: 1, vote: 1, commit: 20 });
      await rejectsCode(
        () => wal.saveSnapshotFrom(meta(10), source(randomBytes(2 << 20), [65_536])),
        'STORAGE_LIMIT',
      );
      const failing = {
        async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array> {
          await Promise.resolve();
          throw new Error('encoder failed');
        },
      };
      await assert.rejects(wal.saveSnapshotFrom(meta(10), failing), SnapshotSourceError);
      await wal.persist(ents(21, 25, 1), { term: 1, vote: 1, commit: 25 });
      const data = randomBytes(1000);
      assert.equal(await wal.saveSnapshotFrom(meta(20), source(data, [300])), 1000);
      assert.equal((await wal.loadSnapshot())?.meta.index, 20);
    } finally {
      await wal.close();
      await cleanup();
    }
  });
});

void describe('a chunk of a snapshot read from its file', () => {
  const syncer = new Syncer(nodeFs, undefined);
  const data = randomBytes(200_000);
  const meta: SnapshotMeta = { index: 12, term: 4, voters: [1, 2], learners: [3] };

  void it('is the bytes at its offset, without reading the rest', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      await writeSnapshotFile(syncer, dir, meta, data);
      for (const [offset, length] of [
        [0, 1],
        [0, data.length],
        [65_536, 65_536],
        [data.length - 7, 7],
        [data.length, 0],
      ] as const) {
        const got = await readRange(dir, meta, data.length, offset, length);
        assert.deepEqual(Buffer.from(got), data.subarray(offset, offset + length), `${offset}`);
      }
      await assert.rejects(readRange(dir, meta, data.length, data.length - 1, 2), RangeError);
    } finally {
      await cleanup();
    }
  });

  void it('refuses a file whose header is not the snapshot asked for', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      await writeSnapshotFile(syncer, dir, meta, data);
      const err = await rejectsCode(
        () => readRange(dir, { ...meta, term: 5 }, data.length, 0, 10),
        'STORAGE_CORRUPT',
      );
      assert.match(err.message, /the header of snapshot 12 \(term 5\)/);
      await rejectsCode(() => readRange(dir, meta, data.length + 1, 0, 10), 'STORAGE_CORRUPT');
    } finally {
      await cleanup();
    }
  });

  void it('comes from WalStorage for the snapshot it holds, and null for any other', async () => {
    const { dir, cleanup } = await tempDir();
    const wal = await openWalStorage(dir, {});
    try {
      await wal.persist(ents(1, 20, 1), { term: 1, vote: 1, commit: 20 });
      const m = { index: 10, term: 1, voters: [1] };
      await wal.saveSnapshot(m, data);
      const got = await wal.readSnapshotRange(m, data.length, 1000, 5000);
      assert.deepEqual(Buffer.from(got ?? []), data.subarray(1000, 6000));
      assert.equal(await wal.readSnapshotRange({ ...m, index: 9 }, data.length, 0, 10), null);
      await wal.saveSnapshot({ ...m, index: 15 }, data);
      assert.equal(await wal.readSnapshotRange(m, data.length, 0, 10), null, 'replaced');
    } finally {
      await wal.close();
      await cleanup();
    }
  });

  void it('keeps the file open from chunk to chunk, and closes it when replaced', async () => {
    const { dir, cleanup } = await tempDir();
    // Counts the snapshot files opened and closed under the WAL.
    const files = { opened: 0, closed: 0 };
    const fs: StorageFs = {
      ...nodeFs,
      open: async (path, o) => {
        const fh = await nodeFs.open(path, o);
        if (!path.endsWith('.snap')) return fh;
        files.opened++;
        const counted: StorageFile = {
          write: (...a) => fh.write(...a),
          read: (...a) => fh.read(...a),
          writev: (...a) => fh.writev(...a),
          datasync: () => fh.datasync(),
          sync: () => fh.sync(),
          truncate: (n) => fh.truncate(n),
          close: async () => {
            files.closed++;
            await fh.close();
          },
        };
        return counted;
      },
    };
    const wal = await openWalStorage(dir, { fs });
    try {
      await wal.persist(ents(1, 20, 1), { term: 1, vote: 1, commit: 20 });
      const m = { index: 10, term: 1, voters: [1] };
      await wal.saveSnapshot(m, data);
      const before = { ...files };
      // Every chunk, several at once as to several followers, with room for a checksum.
      const size = 7_000;
      const reads = [];
      for (let at = 0; at < data.length; at += size) {
        const length = Math.min(size, data.length - at);
        reads.push(
          wal.readSnapshotRange(m, data.length, at, length, 4).then((got) => {
            assert.ok(got !== null);
            assert.equal(got.length, length + 4);
            assert.deepEqual(Buffer.from(got.subarray(0, length)), data.subarray(at, at + length));
          }),
        );
      }
      await Promise.all(reads);
      assert.equal(files.opened - before.opened, 1, 'the file was opened again for a chunk');
      assert.equal(files.closed - before.closed, 0);
      // A newer snapshot: the old file is closed, chunks in flight end as null or as the bytes.
      const racing = wal.readSnapshotRange(m, data.length, 0, 100);
      await wal.saveSnapshot({ ...m, index: 15 }, data);
      const raced = await racing;
      assert.ok(raced === null || Buffer.from(raced).equals(data.subarray(0, 100)));
      assert.equal(await wal.readSnapshotRange(m, data.length, 0, 10), null);
      const m15 = { ...m, index: 15 };
      assert.deepEqual(
        Buffer.from((await wal.readSnapshotRange(m15, data.length, 5, 10)) ?? []),
        data.subarray(5, 15),
      );
    } finally {
      await wal.close();
      await cleanup();
    }
    assert.equal(files.closed, files.opened, `${JSON.stringify(files)}: a file left open`);
  });
});
