// The simulated disk's own promises (src/sim/sim-fs.ts): what a crash keeps and loses, torn
// writes, ordered metadata, fsyncgate, dead processes, the lock, determinism from a seed, and
// the synchronous calls the range record makes.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createRng } from '../../src/raft/index.js';
import type { SimError } from '../../src/sim/errors.js';
import { SimDisk, simIoError } from '../../src/sim/sim-fs.js';
import type { SimDiskOptions, SimIo, SimFsError } from '../../src/sim/sim-fs.js';
import type { StorageError } from '../../src/storage/errors.js';
import { RangeDirs } from '../../src/server/range-dirs.js';

const bytes = (...xs: number[]): Buffer => Buffer.from(xs);

function disk(seed: number, opts: Omit<SimDiskOptions, 'rng'> = {}): SimDisk {
  return new SimDisk({ rng: createRng(seed), ...opts });
}

/** Lets queued reactions run: a bounded number of microtask turns, no timers. */
async function turns(n = 64): Promise<void> {
  for (let k = 0; k < n; k++) await Promise.resolve();
}

/** Whether `p` settled within the turns given. */
async function settles(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  p.then(
    () => (done = true),
    () => (done = true),
  );
  await turns();
  return done;
}

/** A file at `path` with `data` written, synced and its directory synced. */
async function durableFile(d: SimDisk, path: string, data: Buffer): Promise<void> {
  const fs = d.mount();
  await fs.mkdirp('/d');
  const f = await fs.open(path, { create: 'truncate' });
  await f.write(data, 0, data.length, 0);
  await f.sync();
  await f.close();
  await fs.syncDir('/d');
}

void describe('simulated disk', () => {
  void it('keeps synced data and loses unsynced data at a crash', async () => {
    const d = disk(1, { tornWriteProbability: 0 });
    await durableFile(d, '/d/f', bytes(1, 2, 3));
    const fs = d.mount();
    const f = await fs.open('/d/f', { create: 'no' });
    await f.write(bytes(9, 9), 0, 2, 3);
    assert.deepEqual([...(await fs.readFile('/d/f'))], [1, 2, 3, 9, 9], 'reads see the cache');
    assert.deepEqual([...(d.contents('/d/f', 'durable') ?? [])], [1, 2, 3]);
    d.crash();
    assert.deepEqual([...(await d.mount().readFile('/d/f'))], [1, 2, 3]);
    assert.equal(d.stats.lostPendingOps, 1);
  });

  void it('makes an O_DSYNC write durable when it returns', async () => {
    const d = disk(2, { tornWriteProbability: 0 });
    await durableFile(d, '/d/f', bytes());
    const f = await d.mount().open('/d/f', { create: 'no', dsync: true });
    await f.writev([bytes(4, 5), bytes(6)], 0);
    d.crash();
    assert.deepEqual([...(await d.mount().readFile('/d/f'))], [4, 5, 6]);
  });

  void it('loses a truncation that was not synced', async () => {
    const d = disk(3);
    await durableFile(d, '/d/f', bytes(1, 2, 3, 4));
    const f = await d.mount().open('/d/f', { create: 'no' });
    await f.truncate(1);
    d.crash();
    assert.deepEqual([...(await d.mount().readFile('/d/f'))], [1, 2, 3, 4]);
  });

  void it('keeps a creation only once its directory is synced, and metadata in order', async () => {
    let kept = 0;
    for (let seed = 1; seed <= 60; seed++) {
      const d = disk(seed);
      const fs = d.mount();
      await fs.mkdirp('/d');
      await fs.syncDir('/d');
      for (const name of ['a', 'b', 'c'])
        await (await fs.open(`/d/${name}`, { create: 'exclusive' })).close();
      d.crash();
      const names = await d.mount().readdir('/d');
      // Ordered metadata: what survives is a prefix of the operations.
      assert.deepEqual(
        names,
        ['a', 'b', 'c'].slice(0, names.length),
        `seed ${seed}: ${names.join()}`,
      );
      kept += names.length;
    }
    assert.ok(kept > 0 && kept < 180, `some but not all creations survive unsynced: ${kept}`);
    const d = disk(7);
    const fs = d.mount();
    await fs.mkdirp('/d');
    await (await fs.open('/d/a', { create: 'exclusive' })).close();
    await fs.syncDir('/d');
    d.crash();
    assert.deepEqual(await d.mount().readdir('/d'), ['a']);
  });

  void it('makes a rename atomic: after a crash the file is under one name, whole', async () => {
    const seen = new Set<string>();
    for (let seed = 1; seed <= 40; seed++) {
      const d = disk(seed);
      await durableFile(d, '/d/old', bytes(7, 7, 7));
      await durableFile(d, '/d/new', bytes(1));
      await d.mount().rename('/d/old', '/d/new');
      d.crash();
      const names = (await d.mount().readdir('/d')).join();
      const content = [...(d.contents('/d/new') ?? [])].join();
      assert.ok(
        (names === 'new,old' && content === '1') || (names === 'new' && content === '7,7,7'),
        `seed ${seed}: ${names} holding ${content}`,
      );
      seen.add(names);
    }
    assert.equal(seen.size, 2, 'both outcomes occur when the rename is not synced');
  });

  void it('tears an unsynced write on a sector boundary, then cuts, zeroes or garbles the rest', async () => {
    const shapes = new Set<string>();
    const write = Buffer.alloc(2000, 0xaa);
    for (let seed = 1; seed <= 200; seed++) {
      const d = disk(seed, {
        tornWriteProbability: 1,
        tornZerosProbability: 0.3,
        tornGarbageProbability: 0.3,
      });
      await durableFile(d, '/d/f', Buffer.alloc(100, 0x11));
      const f = await d.mount().open('/d/f', { create: 'no' });
      await f.write(write, 0, write.length, 100);
      d.crash();
      const got = d.contents('/d/f') ?? new Uint8Array(0);
      assert.ok(
        got.subarray(0, 100).every((b) => b === 0x11),
        'synced bytes are intact',
      );
      let cut = 100;
      while (cut < got.length && got[cut] === 0xaa) cut++;
      assert.ok(cut === 100 || cut % 512 === 0 || cut === 2100, `seed ${seed}: cut at ${cut}`);
      const rest = got.subarray(cut);
      if (rest.length === 0) shapes.add(cut === 2100 ? 'whole' : 'cut');
      else if (rest.every((b) => b === 0)) {
        assert.equal(got.length, 2100, 'zeros run to the end of the write');
        shapes.add('zeros');
      } else {
        assert.ok(rest.length <= 512 && cut + rest.length <= 2100, `garbage of ${rest.length}`);
        shapes.add('garbage');
      }
    }
    assert.deepEqual([...shapes].sort(), ['cut', 'garbage', 'whole', 'zeros']);
  });

  void it('with 1-byte sectors, tears at any byte', async () => {
    const cuts = new Set<number>();
    for (let seed = 1; seed <= 100; seed++) {
      const d = disk(seed, { tornWriteProbability: 1, sectorBytes: 1 });
      await durableFile(d, '/d/f', bytes());
      const f = await d.mount().open('/d/f', { create: 'no' });
      await f.write(Buffer.alloc(50, 1), 0, 50, 0);
      d.crash();
      cuts.add(d.contents('/d/f')?.length ?? -1);
    }
    assert.ok(cuts.size > 20, `cut lengths seen: ${[...cuts].join()}`);
  });

  void it('loses a sync that was pending at the crash, and its process never hears back', async () => {
    const parked: (() => void)[] = [];
    let parking = false;
    const d = disk(4, {
      tornWriteProbability: 0,
      schedule: (io: SimIo) => {
        if (!parking || io.kind !== 'datasync') return Promise.resolve();
        return new Promise<void>((resolve) => parked.push(resolve));
      },
    });
    await durableFile(d, '/d/f', bytes());
    const fs = d.mount();
    const f = await fs.open('/d/f', { create: 'no' });
    await f.write(bytes(1, 2), 0, 2, 0);
    parking = true;
    const sync = f.datasync();
    assert.equal(parked.length, 1, 'the sync waits for the simulator');
    d.crash();
    for (const resolve of parked) resolve();
    assert.equal(await settles(sync), false, 'a dead process is never answered');
    assert.equal(await settles(fs.rm('/d/f')), false);
    assert.deepEqual([...(d.contents('/d/f') ?? [])], [], 'the write was lost, the rm never ran');
  });

  void it('drops the writes of a failed sync for good (fsyncgate)', async () => {
    let failNext = false;
    const d = disk(5, {
      tornWriteProbability: 0,
      schedule: (io) => {
        if (!failNext || io.kind !== 'datasync') return Promise.resolve();
        failNext = false;
        return Promise.reject(simIoError('EIO', io));
      },
    });
    await durableFile(d, '/d/f', bytes());
    const f = await d.mount().open('/d/f', { create: 'no' });
    await f.write(bytes(1), 0, 1, 0);
    failNext = true;
    await assert.rejects(f.datasync(), (err: SimFsError) => err.code === 'EIO');
    await f.write(bytes(2), 0, 1, 1);
    await f.datasync();
    assert.deepEqual([...(d.contents('/d/f') ?? [])], [1, 2], 'reads still see the lost write');
    d.crash();
    assert.deepEqual([...(d.contents('/d/f') ?? [])], [0, 2], 'but it never reached the disk');
  });

  void it('holds a lock per process and frees it when the process dies', async () => {
    const d = disk(6);
    const a = d.mount();
    await a.mkdirp('/d');
    const lock = await a.lock('/d/LOCK');
    await assert.rejects(a.lock('/d/LOCK'), (e: StorageError) => e.code === 'STORAGE_LOCKED');
    await assert.rejects(
      d.mount().lock('/d/LOCK'),
      (e: StorageError) => e.code === 'STORAGE_LOCKED',
    );
    await lock.release();
    await (await d.mount().lock('/d/LOCK')).release();
    await a.lock('/d/LOCK');
    d.crash();
    await d.mount().lock('/d/LOCK');
  });

  void it('answers bad calls with Node-style errors', async () => {
    const d = disk(7);
    const fs = d.mount();
    await fs.mkdirp('/d/e');
    await assert.rejects(fs.open('/d/x', { create: 'no' }), (e: SimFsError) => e.code === 'ENOENT');
    await (await fs.open('/d/x', { create: 'exclusive' })).close();
    await assert.rejects(
      fs.open('/d/x', { create: 'exclusive' }),
      (e: SimFsError) => e.code === 'EEXIST',
    );
    await assert.rejects(fs.readFile('/d/e'), (e: SimFsError) => e.code === 'EISDIR');
    await assert.rejects(fs.readdir('/nope'), (e: SimFsError) => e.code === 'ENOENT');
    await assert.rejects(fs.rename('/d/y', '/d/z'), (e: SimFsError) => e.code === 'ENOENT');
    const f = await fs.open('/d/x', { create: 'no' });
    await f.close();
    await assert.rejects(f.sync(), (e: SimFsError) => e.code === 'EBADF');
    await fs.rm('/d/missing');
    assert.deepEqual(await fs.readdir('/d'), ['e', 'x']);
    const invalid = (e: SimError): boolean => e.code === 'INVALID_OPTION';
    assert.throws(() => disk(1, { tornWriteProbability: 2 }), invalid);
    assert.throws(() => disk(1, { sectorBytes: 0 }), invalid);
    assert.throws(
      () => disk(1, { tornZerosProbability: 0.6, tornGarbageProbability: 0.6 }),
      invalid,
    );
  });

  void it('writes short when asked, and writev reports what it wrote', async () => {
    const d = disk(8, { shortWriteProbability: 1 });
    const fs = d.mount();
    await fs.mkdirp('/d');
    const f = await fs.open('/d/f', { create: 'exclusive' });
    const { bytesWritten } = await f.writev([Buffer.alloc(10, 1), Buffer.alloc(10, 2)], 0);
    assert.ok(bytesWritten >= 1 && bytesWritten < 20, `wrote ${bytesWritten}`);
    assert.equal((await fs.readFile('/d/f')).length, bytesWritten);
    assert.equal(d.stats.shortWrites, 1);
  });

  void it('replays exactly from a seed', async () => {
    const run = async (seed: number): Promise<string> => {
      const d = disk(seed, { tornZerosProbability: 0.5, sectorBytes: 16 });
      const fs = d.mount();
      await fs.mkdirp('/d');
      for (let k = 0; k < 5; k++) {
        const f = await fs.open(`/d/f${k}`, { create: 'exclusive' });
        await f.write(Buffer.alloc(100 + k, k + 1), 0, 100 + k, 0);
        if (k % 2 === 0) await f.sync();
      }
      await fs.syncDir('/d');
      await fs.rename('/d/f0', '/d/g');
      d.crash();
      return JSON.stringify(d.files().map((p) => [p, [...(d.contents(p) ?? [])].join('')]));
    };
    assert.equal(await run(11), await run(11));
    const outcomes = new Set<string>();
    for (let seed = 1; seed <= 10; seed++) outcomes.add(await run(seed));
    assert.ok(outcomes.size > 1, 'different seeds crash differently');
  });

  void it('serves synchronous calls (the range record) with the same durability', () => {
    const d = disk(12, { tornWriteProbability: 0 });
    d.mkdirp('/data/group-3');
    const sync = d.mount().dirsFs();
    sync.writeSynced('/data/group-3/wal-0000000000000001.seg', 'x');
    sync.syncDir('/data/group-3');
    // The product's record of ranges (range-dirs.ts), over this disk.
    const dirs = new RangeDirs('/data', sync);
    dirs.hold(3);
    dirs.retire(3);
    assert.ok(d.files('durable').includes('/data/retired-ranges.json'), 'synced, renamed, synced');
    dirs.remove(3);
    assert.equal(sync.readText('/data/group-3/wal-0000000000000001.seg'), null);
    assert.ok(
      d.files('durable').includes('/data/group-3/wal-0000000000000001.seg'),
      'a removal is durable only once its directory is synced',
    );
    d.crash();
    const again = new RangeDirs('/data', d.mount().dirsFs());
    assert.equal(again.isRetired(3), true, 'the retirement survived the crash');
    // What a process that died calls changes nothing.
    sync.writeSynced('/data/late', 'x');
    sync.removeTree('/data');
    assert.deepEqual(d.files(), d.files('durable'));
    assert.ok(d.files().includes('/data/retired-ranges.json'));
    assert.equal(d.files().includes('/data/late'), false);
  });
});
