// Damage tests: a torn tail must be cut and the node must start; anything damaged before the
// tail (a flipped bit, a missing segment, a bad snapshot) must refuse to start with an error
// naming the file and offset.

import { crc32c } from '@node-rs/crc32';
import assert from 'node:assert/strict';
import { readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { openWalStorage } from '../../src/storage/wal.js';
import { SEGMENT_HEAD_BYTES } from '../../src/storage/records.js';
import { segmentFileName } from '../../src/storage/wal-writer.js';
import { ents, plain, rejectsCode, tempDir } from './helpers.js';

const RECORD_BYTES = 13 + 4 + 21 + 8; // header, entry count, entry fields, 8-byte payload

async function cleanupDir(dir: string): Promise<void> {
  for (const n of await readdir(dir)) await rm(join(dir, n), { recursive: true, force: true });
}

async function segmentFiles(dir: string): Promise<string[]> {
  return (await readdir(dir))
    .filter((n) => n.endsWith('.seg'))
    .sort()
    .map((n) => join(dir, n));
}

/** A WAL with entries 1..n, each written by its own persist (one record each). */
async function walWith(dir: string, n: number, segmentBytes?: number): Promise<void> {
  const s = await openWalStorage(dir, segmentBytes === undefined ? {} : { segmentBytes });
  for (let i = 1; i <= n; i++) await s.persist(ents(i, i, 1), null);
  await s.close();
}

void describe('WAL damage', () => {
  void it('removes a segment left empty by a crash while it was being created', async () => {
    // Found by the SIGKILL crash test: the empty file survived recovery, and the next
    // rotation failed with EEXIST trying to create a segment of the same number.
    const { dir, cleanup } = await tempDir();
    try {
      await walWith(dir, 3, 4096);
      const segs = await segmentFiles(dir);
      const lastName = (segs[segs.length - 1] as string).split('/').pop() as string;
      const seq = parseInt(lastName.replace(/^wal-|\.seg$/g, ''), 16);
      const orphan = join(dir, segmentFileName(seq + 1));
      for (const content of [Buffer.alloc(0), Buffer.from([1, 2, 3])]) {
        await writeFile(orphan, content);
        const s = await openWalStorage(dir, { segmentBytes: 4096 });
        assert.equal(s.log.lastIndex(), 3);
        assert.ok(!(await segmentFiles(dir)).includes(orphan), 'the orphan segment was removed');
        // Enough to rotate into a segment of the orphan's number.
        await s.persist(ents(4, 4, 1, 5000), null);
        assert.equal(s.log.lastIndex(), 4);
        await s.close();
        await walWith(dir, 0, 4096);
        const t = await openWalStorage(dir, { segmentBytes: 4096 });
        assert.equal(t.log.lastIndex(), 4);
        await t.close();
        await rm(orphan, { force: true });
        // Reset for the next content: rebuild a 3-entry log.
        await cleanupDir(dir);
        await walWith(dir, 3, 4096);
      }
    } finally {
      await cleanup();
    }
  });

  void it('refuses a last segment without a head that is longer than a head', async () => {
    // A crash while a segment's head is written leaves at most the head's bytes; a longer file
    // zeroed or cut by hand held entries and the hard state (a vote), and removing it as a
    // torn create started the group empty, with no vote, as if nothing had happened.
    const { dir, cleanup } = await tempDir();
    try {
      await walWith(dir, 5);
      const [seg] = await segmentFiles(dir);
      assert.ok(seg !== undefined);
      const whole = await readFile(seg);
      assert.ok(whole.length > SEGMENT_HEAD_BYTES);
      const header = whole.subarray(0, 13 + 36);
      for (const [what, content] of [
        ['zeroed', Buffer.alloc(whole.length)],
        ['zeroed past the head', Buffer.alloc(SEGMENT_HEAD_BYTES + 1)],
        [
          'its header alone, then zeros',
          Buffer.concat([header, Buffer.alloc(whole.length - header.length)]),
        ],
      ] as const) {
        await writeFile(seg, content);
        const err = await rejectsCode(() => openWalStorage(dir), 'STORAGE_CORRUPT');
        assert.equal(err.file, seg, what);
        assert.match(err.message, /longer than a segment's head/, what);
        assert.equal(
          (await readFile(seg)).length,
          content.length,
          `${what}: nothing removed or cut`,
        );
      }
      // As long as a head, zeros are what a crash during its write can leave: removed.
      await writeFile(seg, Buffer.alloc(SEGMENT_HEAD_BYTES));
      const s = await openWalStorage(dir);
      await s.close();
      assert.deepEqual(s.recovery.repairs, [
        { kind: 'segment-removed', file: seg, droppedBytes: SEGMENT_HEAD_BYTES },
      ]);
    } finally {
      await cleanup();
    }
  });

  void it('recovers from a cut at every offset of the last record', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      await walWith(dir, 5);
      const [seg] = await segmentFiles(dir);
      assert.ok(seg !== undefined);
      const whole = await readFile(seg);
      const lastStart = whole.length - RECORD_BYTES;
      for (let cut = lastStart; cut < whole.length; cut++) {
        await writeFile(seg, whole.subarray(0, cut));
        const s = await openWalStorage(dir);
        assert.equal(s.log.lastIndex(), 4, `cut at ${cut}`);
        assert.deepEqual(plain(s.log.entries(1, 5)), plain(ents(1, 4, 1)));
        await s.close();
        assert.equal((await stat(seg)).size, lastStart, 'the torn tail was removed from the file');
      }
      const s = await openWalStorage(dir);
      await s.persist(ents(5, 6, 1), null);
      await s.close();
      const again = await openWalStorage(dir);
      assert.equal(again.log.lastIndex(), 6);
      await again.close();
    } finally {
      await cleanup();
    }
  });

  void it('recovers from a zero-filled tail and from a torn new segment header', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      await walWith(dir, 3);
      const [seg] = await segmentFiles(dir);
      assert.ok(seg !== undefined);
      const whole = await readFile(seg);
      await writeFile(seg, Buffer.concat([whole, Buffer.alloc(4096)]));
      let s = await openWalStorage(dir);
      assert.equal(s.log.lastIndex(), 3);
      await s.close();
      assert.equal((await stat(seg)).size, whole.length);
      // A crash while a new segment's header was being written (rotation syncs the old one first).
      await writeFile(join(dir, 'wal-0000000000000002.seg'), Buffer.from([40, 0, 0]));
      s = await openWalStorage(dir);
      assert.equal(s.log.lastIndex(), 3);
      await s.close();
      assert.deepEqual(await segmentFiles(dir), [seg]);
    } finally {
      await cleanup();
    }
  });

  void it('recovers from a crash while the head of a segment opened by a snapshot install was written', async () => {
    // Found by the simulated-crash property test: a short O_DSYNC write (or a tear) made the
    // new segment's header durable without the base record after it, and since that segment
    // does not continue the log, recovery refused the directory as corrupt.
    const { dir, cleanup } = await tempDir();
    try {
      let s = await openWalStorage(dir);
      await s.persist(ents(1, 5, 1), { term: 2, vote: 1, commit: 5 });
      const [first] = await segmentFiles(dir);
      assert.ok(first !== undefined);
      const firstBytes = await readFile(first);
      await s.saveSnapshot({ index: 10, term: 2, voters: [1] }, new Uint8Array([7]));
      await s.close();
      const [reset] = await segmentFiles(dir);
      assert.ok(reset !== undefined && reset !== first, 'the install opened a segment');
      const head = await readFile(reset);
      const headerEnd = 13 + 44; // the segment header record
      for (let cut = headerEnd; cut < head.length; cut++) {
        // What a crash during the new segment's head leaves: the snapshot file durable, the
        // old segment not yet deleted, the new one torn.
        await writeFile(first, firstBytes);
        await writeFile(reset, head.subarray(0, cut));
        s = await openWalStorage(dir);
        assert.equal(s.log.lastIndex(), 10, `cut at ${cut}`);
        assert.equal(s.log.term(10), 2);
        assert.deepEqual(s.initialState().snapshot, { index: 10, term: 2, voters: [1] });
        assert.deepEqual(s.stable.load(), { term: 2, vote: 1, commit: 5 });
        await s.persist(ents(11, 11, 2), null);
        await s.close();
        s = await openWalStorage(dir);
        assert.deepEqual(plain(s.initialState().entries), plain(ents(11, 11, 2)), `cut at ${cut}`);
        assert.deepEqual(s.stable.load(), { term: 2, vote: 1, commit: 5 });
        await s.close();
        for (const f of await segmentFiles(dir)) await rm(f);
      }
    } finally {
      await cleanup();
    }
  });

  void it('keeps the hard state when a crash tore the head of a new segment and compaction followed', async () => {
    // Found by the simulated-crash property test. A new segment starts with its header, a base
    // record and the current hard state, so that compaction may delete the segments before it.
    // A crash inside that head (a short O_DSYNC write, say on a full disk, or a tear) left the
    // header and base record; recovery cut the torn hard state off and kept the segment, and
    // the next compaction deleted every record of the node's term and vote.
    const { dir, cleanup } = await tempDir();
    try {
      let s = await openWalStorage(dir, { segmentBytes: 4096 });
      await s.persist(ents(1, 40, 3, 100), { term: 3, vote: 2, commit: 40 });
      await s.persist(ents(41, 41, 3, 100), null);
      await s.close();
      const segs = await segmentFiles(dir);
      assert.equal(segs.length, 2, 'the second persist rotated');
      const second = segs[1] as string;
      const head = await readFile(second);
      const hardStateAt = 49 + 29; // after the segment header and base records
      for (const cut of [hardStateAt - 5, hardStateAt, hardStateAt + 20]) {
        await writeFile(second, head.subarray(0, cut));
        s = await openWalStorage(dir, { segmentBytes: 4096 });
        assert.deepEqual(s.stable.load(), { term: 3, vote: 2, commit: 40 }, `cut at ${cut}`);
        assert.equal(s.log.lastIndex(), 40, 'the torn segment held nothing acknowledged');
        await s.persist(ents(41, 45, 3, 100), null);
        await s.saveSnapshot({ index: 44, term: 3, voters: [1] }, new Uint8Array(1));
        await s.close();
        s = await openWalStorage(dir, { segmentBytes: 4096 });
        assert.deepEqual(s.stable.load(), { term: 3, vote: 2, commit: 40 }, `cut at ${cut}`);
        assert.deepEqual(plain(s.initialState().entries), plain(ents(45, 45, 3, 100)));
        await s.close();
        await cleanupDir(dir);
        s = await openWalStorage(dir, { segmentBytes: 4096 });
        await s.persist(ents(1, 40, 3, 100), { term: 3, vote: 2, commit: 40 });
        await s.persist(ents(41, 41, 3, 100), null);
        await s.close();
      }
    } finally {
      await cleanup();
    }
  });

  void it('reports each repair to the opener: the file, where it was cut, the bytes dropped', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      await walWith(dir, 3);
      const clean = await openWalStorage(dir);
      assert.deepEqual(
        clean.recovery,
        { repairs: [], resetTo: null },
        'a clean stop repairs nothing',
      );
      await clean.close();
      const [seg] = await segmentFiles(dir);
      assert.ok(seg !== undefined);
      const whole = await readFile(seg);
      await writeFile(seg, whole.subarray(0, whole.length - 5)); // the last record, torn
      const s = await openWalStorage(dir);
      await s.close();
      assert.deepEqual(s.recovery.repairs, [
        {
          kind: 'tail-cut',
          file: seg,
          offset: whole.length - RECORD_BYTES,
          droppedBytes: RECORD_BYTES - 5,
        },
      ]);
      const orphan = join(dir, 'wal-0000000000000002.seg');
      await writeFile(orphan, Buffer.from([40, 0, 0])); // a crash while creating a segment
      const t = await openWalStorage(dir);
      await t.close();
      assert.deepEqual(t.recovery.repairs, [
        { kind: 'segment-removed', file: orphan, droppedBytes: 3 },
      ]);
    } finally {
      await cleanup();
    }
  });

  void it('refuses to start when any bit of an earlier record is flipped', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      await walWith(dir, 4);
      const [seg] = await segmentFiles(dir);
      assert.ok(seg !== undefined);
      const whole = await readFile(seg);
      const secondStart = whole.length - 3 * RECORD_BYTES; // the record of entry 2
      for (let at = secondStart; at < secondStart + RECORD_BYTES; at++) {
        const bad = Buffer.from(whole);
        bad[at] = (bad[at] ?? 0) ^ (1 << (at % 8));
        await writeFile(seg, bad);
        const err = await rejectsCode(() => openWalStorage(dir), 'STORAGE_CORRUPT');
        assert.equal(err.file, seg);
        assert.equal(err.offset, secondStart, `flip at ${at}: ${err.message}`);
        assert.match(err.message, /expected/);
      }
      await writeFile(seg, whole);
      const s = await openWalStorage(dir);
      assert.equal(s.log.lastIndex(), 4, 'the lock was released after each refusal');
      await s.close();
    } finally {
      await cleanup();
    }
  });

  void it('refuses to start when a middle segment is missing', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      await walWith(dir, 400, 4096);
      const segs = await segmentFiles(dir);
      assert.ok(segs.length >= 3, `expected several segments, got ${segs.length}`);
      const middle = segs[1];
      assert.ok(middle !== undefined);
      await rm(middle);
      const err = await rejectsCode(() => openWalStorage(dir), 'STORAGE_CORRUPT');
      assert.match(err.message, /segment 2 is missing/);
    } finally {
      await cleanup();
    }
  });

  void it('refuses to start when the first segment is missing and nothing compacted it', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      await walWith(dir, 400, 4096);
      const [first] = await segmentFiles(dir);
      assert.ok(first !== undefined);
      await rm(first);
      const err = await rejectsCode(() => openWalStorage(dir), 'STORAGE_CORRUPT');
      assert.match(err.message, /missing/);
    } finally {
      await cleanup();
    }
  });

  void it('refuses a damaged snapshot file', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const s = await openWalStorage(dir);
      await s.persist(ents(1, 10, 1), null);
      await s.saveSnapshot({ index: 8, term: 1, voters: [1] }, new Uint8Array(1000).fill(7));
      await s.close();
      const snap = join(dir, (await readdir(dir)).find((n) => n.endsWith('.snap')) ?? '');
      const bytes = await readFile(snap);
      bytes[500] = (bytes[500] ?? 0) ^ 0x10;
      await writeFile(snap, bytes);
      const err = await rejectsCode(() => openWalStorage(dir), 'STORAGE_CORRUPT');
      assert.equal(err.file, snap);
    } finally {
      await cleanup();
    }
  });

  void it('refuses a log compacted past a snapshot file that is missing', async () => {
    // Found by a new user: deleting the snapshot file crashed start-up with an assertion
    // ("entry index 10039 does not follow 0") instead of naming the missing file.
    const { dir, cleanup } = await tempDir();
    try {
      const s = await openWalStorage(dir);
      await s.persist(ents(1, 10, 1), null);
      await s.saveSnapshot({ index: 8, term: 1, voters: [1] }, new Uint8Array(100).fill(7));
      await s.close();
      const snap = (await readdir(dir)).find((n) => n.endsWith('.snap'));
      assert.ok(snap !== undefined, 'a snapshot file was written');
      await rm(join(dir, snap));
      const plainLog = await openWalStorage(dir);
      assert.equal(plainLog.log.firstIndex(), 9, 'a plain log store may compact on its own');
      await plainLog.close();
      const err = await rejectsCode(
        () => openWalStorage(dir, { snapshotsCoverCompaction: true }),
        'STORAGE_CORRUPT',
      );
      assert.match(err.message, /compacted through index 8/);
      assert.match(err.message, /snap-0+8\.snap/);
      assert.ok(err.file?.endsWith('.seg'), `names the segment holding the record: ${err.file}`);
      assert.match(err.expected ?? '', /snapshot file through index 8/);
    } finally {
      await cleanup();
    }
  });

  void it('refuses a segment written by a newer format version', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      await walWith(dir, 2);
      const [seg] = await segmentFiles(dir);
      assert.ok(seg !== undefined);
      const bytes = await readFile(seg);
      bytes.writeUInt32LE(99, 13 + 8); // the version field of the segment header's payload
      const payloadEnd = 13 + bytes.readUInt32LE(0);
      bytes.writeUInt32LE(crc32c(bytes.subarray(13, payloadEnd), crc32c(bytes.subarray(0, 5))), 9);
      await writeFile(seg, bytes);
      const err = await rejectsCode(() => openWalStorage(dir), 'STORAGE_VERSION');
      assert.match(err.message, /version 99/);
    } finally {
      await cleanup();
    }
  });
});
