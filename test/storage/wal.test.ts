// WAL behaviour beyond the shared contract: segments, compaction that deletes files, deep
// suffix replacement across segments, the directory lock, and fsync failure.

import assert from 'node:assert/strict';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { Entry } from '../../src/raft/index.js';
import {
  RecordType,
  decodeEntries,
  decodeSegmentHeader,
  readRecord,
} from '../../src/storage/records.js';
import type { Position } from '../../src/storage/records.js';
import { openWalStorage } from '../../src/storage/wal.js';
import { ents, plain, rejectsCode, tempDir } from './helpers.js';

async function count(dir: string, suffix: string): Promise<number> {
  return (await readdir(dir)).filter((n) => n.endsWith(suffix)).length;
}

void describe('WAL', () => {
  void it('rotates segments and deletes whole segments behind a snapshot', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      let s = await openWalStorage(dir, { segmentBytes: 4096 });
      for (let i = 1; i <= 1000; i += 10)
        await s.persist(ents(i, i + 9, 1, 100), { term: 1, vote: 1, commit: i });
      const before = await count(dir, '.seg');
      assert.ok(before > 20, `expected many segments, got ${before}`);
      await s.saveSnapshot({ index: 900, term: 1, voters: [1] }, new Uint8Array(10));
      await s.saveSnapshot({ index: 950, term: 1, voters: [1] }, new Uint8Array(10));
      const after = await count(dir, '.seg');
      assert.ok(after <= 5, `expected the old segments gone, ${after} of ${before} remain`);
      assert.equal(await count(dir, '.snap'), 1, 'the older snapshot is removed');
      await s.close();
      s = await openWalStorage(dir, { segmentBytes: 4096 });
      assert.equal(s.log.firstIndex(), 951);
      assert.deepEqual(plain(s.initialState().entries), plain(ents(951, 1000, 1, 100)));
      assert.deepEqual(s.stable.load(), { term: 1, vote: 1, commit: 991 });
      await s.close();
    } finally {
      await cleanup();
    }
  });

  void it('replaces a suffix that reaches back across segments, and compacts after it', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      let s = await openWalStorage(dir, { segmentBytes: 4096 });
      for (let i = 1; i <= 300; i += 5) await s.persist(ents(i, i + 4, 1, 64), null);
      await s.persist(ents(50, 60, 2, 64), { term: 2, vote: 3, commit: 40 });
      s = await reopenAfter(s, dir);
      assert.equal(s.log.lastIndex(), 60);
      assert.deepEqual(
        plain(s.log.entries(45, 61)),
        plain([...ents(45, 49, 1, 64), ...ents(50, 60, 2, 64)]),
      );
      await s.saveSnapshot({ index: 55, term: 2, voters: [1] }, new Uint8Array(1));
      await s.persist(ents(61, 70, 2, 64), null);
      s = await reopenAfter(s, dir);
      assert.deepEqual(plain(s.initialState().entries), plain(ents(56, 70, 2, 64)));
      assert.deepEqual(s.stable.load(), { term: 2, vote: 3, commit: 40 });
      await s.close();
    } finally {
      await cleanup();
    }
  });

  void it('keeps every entry of a segment after its prev when a replacement meets a full segment', async () => {
    // Found by the simulated-crash property test: a suffix replacement handled in the flush
    // that rotates a full segment went into a new segment whose prev was the old last index,
    // above the replacement. Once compaction deleted the segment before it (a crash between
    // two deletions, or one deletion), recovery refused the directory as corrupt.
    const { dir, cleanup } = await tempDir();
    try {
      const s = await openWalStorage(dir, { segmentBytes: 4096 });
      await s.persist(ents(1, 40, 1, 100), { term: 1, vote: 1, commit: 3 });
      assert.equal(await count(dir, '.seg'), 1, 'the first segment is full but not yet rotated');
      await s.persist(ents(4, 5, 2, 100), { term: 2, vote: 1, commit: 3 });
      await s.close();
      assert.equal(await count(dir, '.seg'), 2);
      for (const seg of await segments(dir)) {
        for (const e of seg.entries)
          assert.ok(
            e.index > seg.prev.index,
            `${seg.file} holds entry ${e.index} at or below its prev ${seg.prev.index}`,
          );
      }
      const again = await openWalStorage(dir, { segmentBytes: 4096 });
      assert.deepEqual(
        plain(again.initialState().entries),
        plain([...ents(1, 3, 1, 100), ...ents(4, 5, 2, 100)]),
      );
      await again.close();
    } finally {
      await cleanup();
    }
  });

  void it('recovers a compaction cut short between two segment deletions after a deep replacement', async () => {
    // Found by the simulated-crash property test. Compaction deletes, oldest first, every
    // segment before the newest one whose prev is at or below the compaction point. After a
    // deep suffix replacement that newest segment's prev can lie below the prev of a segment
    // before it, so a crash between two deletions left a first segment anchoring the log past
    // the next one's prev, and recovery refused the directory as corrupt.
    const { dir, cleanup } = await tempDir();
    try {
      const s = await openWalStorage(dir, { segmentBytes: 4096 });
      await s.persist(ents(1, 40, 1, 100), { term: 1, vote: 1, commit: 1 });
      await s.persist(ents(41, 41, 1, 100), null);
      await s.persist(ents(2, 3, 2, 100), { term: 2, vote: 1, commit: 1 });
      const segs = (await readdir(dir)).filter((n) => n.endsWith('.seg')).sort();
      assert.equal(segs.length, 3, 'a size rotation, then a deep replacement rotation');
      const second = join(dir, segs[1] as string);
      const secondBytes = await readFile(second);
      await s.saveSnapshot({ index: 1, term: 1, voters: [1] }, new Uint8Array(4));
      await s.close();
      assert.deepEqual(await count(dir, '.seg'), 1, 'compaction deleted the first two');
      // The state a crash after the first deletion leaves: the second segment is still there.
      await writeFile(second, secondBytes);
      const again = await openWalStorage(dir, { segmentBytes: 4096 });
      assert.equal(again.log.firstIndex(), 2);
      assert.deepEqual(plain(again.initialState().entries), plain(ents(2, 3, 2, 100)));
      assert.deepEqual(again.stable.load(), { term: 2, vote: 1, commit: 1 });
      await again.persist(ents(4, 4, 2, 100), null);
      await again.close();
      const third = await openWalStorage(dir, { segmentBytes: 4096 });
      assert.deepEqual(plain(third.initialState().entries), plain(ents(2, 4, 2, 100)));
      await third.close();
    } finally {
      await cleanup();
    }
  });

  void it('takes over a lock left by a dead process but not one held by a live one', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      let s = await openWalStorage(dir);
      await s.close();
      await writeFile(join(dir, 'LOCK'), '999999999\n');
      s = await openWalStorage(dir);
      await s.close();
      await writeFile(join(dir, 'LOCK'), `${process.ppid}\n`);
      const err = await rejectsCode(() => openWalStorage(dir), 'STORAGE_LOCKED');
      assert.match(err.message, new RegExp(`live process ${process.ppid}`));
    } finally {
      await cleanup();
    }
  });

  void it('stops accepting writes after an fsync fails, and never reports the failed write as durable', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      let failing = false;
      let syncs = 0;
      const s = await openWalStorage(dir, {
        syncHook: async (_path, sync) => {
          syncs++;
          if (failing) throw new Error('EIO (injected)');
          await sync();
        },
      });
      await s.persist(ents(1, 3, 1), { term: 1, vote: 1, commit: 0 });
      assert.ok(syncs > 0, 'the hook sees the real syncs');
      failing = true;
      const first = await rejectsCode(() => s.persist(ents(4, 4, 1), null), 'STORAGE_FSYNC_FAILED');
      assert.match(first.message, /EIO \(injected\)/);
      failing = false;
      await rejectsCode(() => s.persist(ents(5, 5, 1), null), 'STORAGE_FSYNC_FAILED');
      await rejectsCode(
        () => s.stable.save({ term: 2, vote: 0, commit: 0 }),
        'STORAGE_FSYNC_FAILED',
      );
      await rejectsCode(
        () => s.saveSnapshot({ index: 3, term: 1, voters: [] }, new Uint8Array(1)),
        'STORAGE_FSYNC_FAILED',
      );
      await s.close();
      const again = await openWalStorage(dir);
      assert.ok(again.log.lastIndex() >= 3, 'what was acknowledged survives');
      await again.close();
    } finally {
      await cleanup();
    }
  });

  void it('fails every caller sharing a group commit whose fsync failed', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      let failing = false;
      const s = await openWalStorage(dir, {
        syncHook: async (_p, sync) => {
          if (failing) throw new Error('EIO (injected)');
          await sync();
        },
      });
      failing = true;
      const results = await Promise.allSettled(
        [1, 2, 3, 4].map((i) => s.persist(ents(i, i, 1), null)),
      );
      assert.deepEqual(
        results.map((r) => r.status),
        ['rejected', 'rejected', 'rejected', 'rejected'],
      );
      await s.close();
    } finally {
      await cleanup();
    }
  });
});

/** Every segment's prev and the entries its records hold (later records replace earlier ones). */
async function segments(
  dir: string,
): Promise<{ file: string; prev: Position; entries: Entry[] }[]> {
  const out: { file: string; prev: Position; entries: Entry[] }[] = [];
  for (const name of (await readdir(dir)).filter((n) => n.endsWith('.seg')).sort()) {
    const buf = await readFile(join(dir, name));
    let at = 0;
    let prev: Position | null = null;
    const entries: Entry[] = [];
    while (at < buf.length) {
      const r = readRecord(buf, at, 1 << 24);
      assert.equal(r.kind, 'ok', `${name} at ${at}`);
      if (r.kind !== 'ok') break;
      if (r.type === RecordType.SegmentHeader) prev = decodeSegmentHeader(r.payload, name).prev;
      if (r.type === RecordType.Entries) entries.push(...(decodeEntries(r.payload) ?? []));
      at = r.end;
    }
    assert.ok(prev !== null, `${name} has a segment header`);
    out.push({ file: name, prev, entries });
  }
  return out;
}

async function reopenAfter(
  s: { close(): Promise<void> },
  dir: string,
): Promise<Awaited<ReturnType<typeof openWalStorage>>> {
  await s.close();
  return openWalStorage(dir, { segmentBytes: 4096 });
}
