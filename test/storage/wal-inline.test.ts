// The WAL's writes on the calling thread (PersistOptions.inline): made before persist returns,
// durable and read back after a reopen like any other, finished after a short write, latched
// on failure, and never taken where they would not be durable as they return.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { HardState } from '../../src/raft/index.js';
import { nodeFs, type StorageFs } from '../../src/storage/fs.js';
import { openWalStorage } from '../../src/storage/wal.js';
import { INLINE_PAUSE_MS, INLINE_SLOW_WRITE_MS } from '../../src/storage/inline-writes.js';
import type { WalOptions } from '../../src/storage/types.js';
import { ents, plain, rejectsCode, tempDir } from './helpers.js';

/** nodeFs, counting its writes on the calling thread and the bytes each was given. */
function countingFs(
  writeNow: StorageFs['writevNow'] = (file, buffers, position) =>
    nodeFs.writevNow?.(file, buffers, position) ?? null,
): StorageFs & { readonly sizes: number[] } {
  const sizes: number[] = [];
  return {
    ...nodeFs,
    sizes,
    writevNow: (file, buffers, position) => {
      sizes.push(buffers.reduce((n, b) => n + b.length, 0));
      return writeNow === undefined ? null : writeNow(file, buffers, position);
    },
  };
}

const hs = (commit: number): HardState => ({ term: 1, vote: 1, commit });

/**
 * A clock that does not move: no write is ever slow, so a real write that takes over 10 ms on
 * a loaded machine does not pause the inline writes these tests count.
 */
const stopped = (): number => 0;

/** Persists entries 1..40 in batches of 4 (payloads of `bytes`), then reopens and checks all. */
async function roundTrip(given: WalOptions, inline: boolean, bytes = 32): Promise<void> {
  const opts = { nowMs: stopped, ...given };
  const { dir, cleanup } = await tempDir();
  try {
    let s = await openWalStorage(dir, opts);
    for (let i = 1; i <= 40; i += 4) await s.persist(ents(i, i + 3, 1, bytes), hs(i), { inline });
    await s.close();
    s = await openWalStorage(dir, opts);
    assert.deepEqual(plain(s.initialState().entries), plain(ents(1, 40, 1, bytes)));
    assert.deepEqual(s.stable.load(), hs(37));
    await s.close();
  } finally {
    await cleanup();
  }
}

void describe('WAL writes on the calling thread', () => {
  void it('are made before persist returns, and read back after a reopen', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const fs = countingFs();
      let s = await openWalStorage(dir, { fs, nowMs: stopped });
      for (let i = 1; i <= 40; i += 4) {
        const before = fs.sizes.length;
        const done = s.persist(ents(i, i + 3, 1, 32), hs(i), { inline: true });
        assert.equal(
          fs.sizes.length,
          before + 1,
          `batch ${i}: not written before persist returned`,
        );
        await done;
      }
      await s.close();
      s = await openWalStorage(dir);
      assert.deepEqual(plain(s.initialState().entries), plain(ents(1, 40, 1, 32)));
      assert.deepEqual(s.stable.load(), hs(37));
      await s.close();
    } finally {
      await cleanup();
    }
  });

  void it('are not taken unless asked, over the size limit, or when not durable as they return', async () => {
    const cases: { what: string; opts: (fs: StorageFs) => WalOptions; inline: boolean }[] = [
      { what: 'not asked', opts: (fs) => ({ fs }), inline: false },
      { what: 'over the limit', opts: (fs) => ({ fs, inlineWriteMaxBytes: 100 }), inline: true },
      { what: 'limit 0', opts: (fs) => ({ fs, inlineWriteMaxBytes: 0 }), inline: true },
      { what: 'fdatasync mode', opts: (fs) => ({ fs, syncMode: 'fdatasync' }), inline: true },
    ];
    for (const c of cases) {
      const fs = countingFs();
      await roundTrip(c.opts(fs), c.inline);
      assert.deepEqual(fs.sizes, [], `${c.what}: written on the calling thread`);
    }
    // Up to the limit, and not above it: 4 entries of 32 bytes encode to well under 4 KiB.
    const fs = countingFs();
    await roundTrip({ fs, inlineWriteMaxBytes: 4096 }, true);
    assert.equal(fs.sizes.length, 10);
    assert.ok(
      fs.sizes.every((n) => n <= 4096),
      `sizes ${fs.sizes.join(',')}`,
    );
  });

  void it('go the ordinary way when the file system cannot make them', async () => {
    const fs = countingFs(() => null);
    await roundTrip({ fs }, true);
    assert.equal(fs.sizes.length, 10, 'each write was offered to writevNow first');
  });

  void it('finish a short write', async () => {
    let shortened = 0;
    const fs = countingFs((file, buffers, position) => {
      const all = Buffer.concat(buffers);
      // The first ten attempts write 7 bytes each; the rest must follow at the right place.
      const part = all.length > 7 && shortened < 10 ? all.subarray(0, 7) : all;
      if (part !== all) shortened++;
      return nodeFs.writevNow?.(file, [part], position) ?? null;
    });
    await roundTrip({ fs }, true, 200);
    assert.equal(shortened, 10);
  });

  void it('latch a failure: the write and every later one are refused', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      let fail = false;
      const fs = countingFs((file, buffers, position) => {
        if (fail) throw Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO' });
        return nodeFs.writevNow?.(file, buffers, position) ?? null;
      });
      const s = await openWalStorage(dir, { fs, nowMs: stopped });
      await s.persist(ents(1, 4, 1, 32), hs(1), { inline: true });
      fail = true;
      await rejectsCode(
        () => s.persist(ents(5, 8, 1, 32), hs(5), { inline: true }),
        'STORAGE_WRITE_FAILED',
      );
      fail = false;
      await rejectsCode(() => s.persist(ents(5, 8, 1, 32), hs(5)), 'STORAGE_WRITE_FAILED');
      await s.close();
      const again = await openWalStorage(dir);
      assert.equal(again.log.lastIndex(), 4, 'only what was acknowledged, or a torn tail cut');
      await again.close();
    } finally {
      await cleanup();
    }
  });

  void it('pause for a second after a slow write, so a stalling disk does not block the thread', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      let clock = 1_000;
      let writeMs = 1;
      const fs = countingFs((file, buffers, position) => {
        clock += writeMs;
        return nodeFs.writevNow?.(file, buffers, position) ?? null;
      });
      const s = await openWalStorage(dir, { fs, nowMs: () => clock });
      let next = 1;
      /** Persists one batch inline; answers whether it was written on the calling thread. */
      const inlined = async (): Promise<boolean> => {
        const before = fs.sizes.length;
        await s.persist(ents(next, next + 1, 1, 16), hs(next), { inline: true });
        next += 2;
        return fs.sizes.length > before;
      };
      assert.equal(await inlined(), true, 'a fast disk');
      writeMs = INLINE_SLOW_WRITE_MS + 1;
      assert.equal(await inlined(), true, 'the write that finds the disk slow');
      writeMs = 1;
      assert.equal(await inlined(), false, 'just after the slow write');
      clock += INLINE_PAUSE_MS - 2;
      assert.equal(await inlined(), false, 'still within the pause');
      clock += 2;
      assert.equal(await inlined(), true, 'after the pause');
      writeMs = INLINE_SLOW_WRITE_MS;
      assert.equal(await inlined(), true, 'a write of exactly the limit is not slow');
      assert.equal(await inlined(), true);
      await s.close();
      const again = await openWalStorage(dir);
      assert.deepEqual(plain(again.initialState().entries), plain(ents(1, next - 1, 1, 16)));
      await again.close();
    } finally {
      await cleanup();
    }
  });

  void it('pause after a slow write through the thread pool too', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      let clock = 0;
      let writeMs = 1;
      // Files without a file descriptor: writevNow answers null, and every write goes through
      // the pool, whose writes take `writeMs` on this clock.
      const base = countingFs();
      const fs: StorageFs & { readonly sizes: number[] } = {
        ...base,
        open: async (path, o) => {
          const fh = await nodeFs.open(path, o);
          return {
            write: (d, off, len, pos) => fh.write(d, off, len, pos),
            read: (b, off, len, pos) => fh.read(b, off, len, pos),
            writev: async (bufs, pos) => {
              const r = await fh.writev(bufs, pos);
              clock += writeMs;
              return r;
            },
            datasync: () => fh.datasync(),
            sync: () => fh.sync(),
            truncate: (n) => fh.truncate(n),
            close: () => fh.close(),
          };
        },
      };
      const s = await openWalStorage(dir, { fs, nowMs: () => clock });
      const offered = async (i: number): Promise<boolean> => {
        const before = fs.sizes.length;
        await s.persist(ents(i, i, 1, 16), hs(i), { inline: true });
        return fs.sizes.length > before;
      };
      assert.equal(await offered(1), true, 'offered inline, written through the pool');
      writeMs = INLINE_SLOW_WRITE_MS + 1;
      assert.equal(await offered(2), true);
      writeMs = 1;
      assert.equal(await offered(3), false, 'paused by the slow write through the pool');
      clock += INLINE_PAUSE_MS;
      assert.equal(await offered(4), true, 'after the pause');
      await s.close();
    } finally {
      await cleanup();
    }
  });

  void it('carry on across segment rotations', async () => {
    const fs = countingFs();
    await roundTrip({ fs, segmentBytes: 4096 }, true, 500);
    assert.ok(fs.sizes.length >= 10, `inline writes: ${fs.sizes.length}`);
  });

  void it('refuse a limit that is not a non-negative integer', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      for (const bad of [-1, 1.5, Number.NaN])
        await rejectsCode(
          () => openWalStorage(dir, { inlineWriteMaxBytes: bad }),
          'STORAGE_INVALID_ARGUMENT',
        );
    } finally {
      await cleanup();
    }
  });
});
