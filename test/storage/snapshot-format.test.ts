// Snapshot file formats: version 1 (voters only), which every earlier build wrote and which is
// still written when it says everything, and version 2 (the whole configuration). A file of a
// version this build does not know is refused with STORAGE_VERSION, not misread.

import { crc32c } from '@node-rs/crc32';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { SnapshotMeta } from '../../src/raft/types.js';
import { decodeConfJson, encodeConfJson, writeU64 } from '../../src/storage/codec.js';
import { nodeFs } from '../../src/storage/fs.js';
import { Syncer } from '../../src/storage/fsutil.js';
import { readSnapshotFile, writeSnapshotFile } from '../../src/storage/snapshot-file.js';
import { rejectsCode, tempDir } from './helpers.js';

/** A version-1 file laid out by hand, as builds before membership changes wrote it. */
function versionOneFile(meta: SnapshotMeta, data: Uint8Array): Buffer {
  const head = Buffer.alloc(32 + 8 * meta.voters.length + 8);
  head.write('FLOTSNP\n', 0, 'latin1');
  head.writeUInt32LE(1, 8);
  writeU64(head, 12, meta.index);
  writeU64(head, 20, meta.term);
  head.writeUInt32LE(meta.voters.length, 28);
  meta.voters.forEach((v, k) => writeU64(head, 32 + 8 * k, v));
  writeU64(head, 32 + 8 * meta.voters.length, data.length);
  const body = Buffer.concat([head, data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32LE(crc32c(body), 0);
  return Buffer.concat([body, crc]);
}

/** Rewrites the version field and the file's CRC. */
function withVersion(file: Buffer, version: number): Buffer {
  const out = Buffer.from(file);
  out.writeUInt32LE(version, 8);
  out.writeUInt32LE(crc32c(out.subarray(0, out.length - 4)), out.length - 4);
  return out;
}

void describe('snapshot file formats', () => {
  const syncer = new Syncer(nodeFs, undefined);
  const data = new Uint8Array([1, 2, 3, 4]);

  void it('reads a version-1 file written by an earlier build', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const meta = { index: 7, term: 2, voters: [1, 2, 3] };
      const path = join(dir, 'snap-00000000000000000007.snap');
      await writeFile(path, versionOneFile(meta, data));
      const back = await readSnapshotFile(nodeFs, path);
      assert.deepEqual(back.meta, meta);
      assert.deepEqual([...back.data], [...data]);
    } finally {
      await cleanup();
    }
  });

  void it('writes a simple configuration as version 1, byte for byte', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const meta = { index: 7, term: 2, voters: [1, 2, 3] };
      const path = await writeSnapshotFile(syncer, dir, meta, data);
      assert.deepEqual(await readFile(path), versionOneFile(meta, data));
    } finally {
      await cleanup();
    }
  });

  void it('writes any other configuration as version 2 and reads it back whole', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const metas: SnapshotMeta[] = [
        { index: 9, term: 3, voters: [1, 2, 4], learners: [5] },
        {
          index: 9,
          term: 3,
          voters: [1, 2, 4],
          learners: [6],
          outgoing: [1, 2, 3],
          learnersNext: [3],
          autoLeave: true,
        },
      ];
      for (const meta of metas) {
        const path = await writeSnapshotFile(syncer, dir, meta, data);
        assert.equal((await readFile(path)).readUInt32LE(8), 2);
        const back = await readSnapshotFile(nodeFs, path);
        assert.deepEqual(back.meta, meta);
        assert.deepEqual([...back.data], [...data]);
      }
    } finally {
      await cleanup();
    }
  });

  void it('refuses a version it does not know, naming it', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const path = join(dir, 'snap-00000000000000000007.snap');
      await writeFile(
        path,
        withVersion(versionOneFile({ index: 7, term: 2, voters: [1] }, data), 3),
      );
      const err = await rejectsCode(() => readSnapshotFile(nodeFs, path), 'STORAGE_VERSION');
      assert.match(err.message, /snapshot format version 3; this build reads versions 1 to 2/);
    } finally {
      await cleanup();
    }
  });

  void it('refuses a version-2 file whose lists run past its end', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const meta = { index: 9, term: 3, voters: [1], learners: [5] };
      const path = await writeSnapshotFile(syncer, dir, meta, data);
      const bytes = await readFile(path);
      // The learner count follows the one voter: claim 1,000 learners.
      bytes.writeUInt32LE(1000, 28 + 4 + 8);
      bytes.writeUInt32LE(crc32c(bytes.subarray(0, bytes.length - 4)), bytes.length - 4);
      await writeFile(path, bytes);
      const err = await rejectsCode(() => readSnapshotFile(nodeFs, path), 'STORAGE_CORRUPT');
      assert.match(err.message, /at most 1024 node ids/);
    } finally {
      await cleanup();
    }
  });
});

void describe('snapshot configuration in SQLite (JSON)', () => {
  void it('writes a simple configuration as the bare voter array earlier builds wrote', () => {
    assert.equal(encodeConfJson({ index: 1, term: 1, voters: [1, 2] }), '[1,2]');
    assert.deepEqual(decodeConfJson('[1,2]'), { voters: [1, 2] });
  });

  void it('round-trips the whole configuration and refuses malformed text', () => {
    const meta = { index: 1, term: 1, voters: [1], learners: [2], outgoing: [1, 3] };
    const text = encodeConfJson(meta);
    assert.deepEqual(decodeConfJson(text), { voters: [1], learners: [2], outgoing: [1, 3] });
    for (const bad of ['{', '[0]', '{"voters":[1],"extra":1}', '{"voters":[1],"autoLeave":1}'])
      assert.equal(decodeConfJson(bad), null, bad);
  });
});
