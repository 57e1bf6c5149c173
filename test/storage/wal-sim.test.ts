// The real WAL on the simulated disk, in scenarios arranged step by step: operations are held
// at the disk until the test lets them through, so a crash lands exactly where it must.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createRng } from '../../src/raft/index.js';
import { SimDisk, simIoError } from '../../src/sim/sim-fs.js';
import type { SimIo } from '../../src/sim/sim-fs.js';
import { openWalStorage } from '../../src/storage/wal.js';
import { ents, plain, rejectsCode } from './helpers.js';

const DIR = '/n1';

/** A disk whose operations matching `hold` wait until released. */
class HeldDisk {
  readonly disk: SimDisk;
  readonly held: { io: SimIo; release: () => void; fail: (err: Error) => void }[] = [];
  hold: (io: SimIo) => boolean = () => false;

  constructor(seed: number) {
    this.disk = new SimDisk({
      rng: createRng(seed),
      tornWriteProbability: 0,
      schedule: (io) => {
        if (!this.hold(io)) return Promise.resolve();
        return new Promise<void>((release, fail) => this.held.push({ io, release, fail }));
      },
    });
  }

  /** Waits (a bounded number of microtask turns) until an operation matching `what` is held. */
  async waitHeld(what: (io: SimIo) => boolean, label: string): Promise<void> {
    for (let k = 0; k < 10_000; k++) {
      if (this.held.some((h) => what(h.io))) return;
      await Promise.resolve();
    }
    const seen = this.held.map((h) => `${h.io.kind} ${h.io.path}`).join(', ');
    throw new Error(`no ${label} was held; held: ${seen || 'nothing'}`);
  }

  releaseAll(): void {
    for (const h of this.held.splice(0)) h.release();
  }
}

async function turns(n = 256): Promise<void> {
  for (let k = 0; k < n; k++) await Promise.resolve();
}

void describe('WAL on the simulated disk, arranged crashes', () => {
  void it('compaction never deletes the segments before one whose head is not yet durable', async () => {
    // Found by the simulated-crash property test: rotation listed the new segment before its
    // head (with the hard state) was durable, so a snapshot finishing meanwhile deleted every
    // older segment, and a crash then lost the node's term, vote and acknowledged entries.
    const h = new HeldDisk(1);
    const s = await openWalStorage(DIR, { fs: h.disk.mount(), segmentBytes: 4096 });
    await s.persist(ents(1, 40, 2, 100), { term: 2, vote: 1, commit: 5 });
    await s.persist(ents(41, 41, 2, 100), null); // rotates: the second segment's prev is 40
    h.hold = (io) => io.kind === 'readdir' || (io.kind === 'write' && io.path.endsWith('3.seg'));
    const snapshot = s.saveSnapshot({ index: 5, term: 2, voters: [1] }, new Uint8Array(8));
    await h.waitHeld((io) => io.kind === 'readdir', 'listing of old snapshots');
    // A replacement from 6 reaches behind the second segment: a third opens with prev 5.
    const replace = s.persist(ents(6, 6, 3, 100), { term: 3, vote: 1, commit: 5 });
    await h.waitHeld((io) => io.path.endsWith('3.seg'), 'head of the third segment');
    for (const held of h.held.filter((x) => x.io.kind === 'readdir')) held.release();
    await turns();
    h.disk.crash();
    void snapshot;
    void replace;
    h.hold = () => false;
    h.releaseAll();
    const again = await openWalStorage(DIR, { fs: h.disk.mount(), segmentBytes: 4096 });
    assert.deepEqual(again.stable.load(), { term: 2, vote: 1, commit: 5 });
    assert.equal(again.log.lastIndex(), 41);
    assert.deepEqual(
      plain(again.log.entries(again.log.firstIndex(), 42)),
      plain(ents(again.log.firstIndex(), 41, 2, 100)),
    );
    await again.close();
  });

  void it('stops on an fsync that fails with EIO and keeps what was acknowledged', async () => {
    let failing = false;
    const disk = new SimDisk({
      rng: createRng(2),
      schedule: (io) =>
        failing && io.kind === 'datasync'
          ? Promise.reject(simIoError('EIO', io))
          : Promise.resolve(),
    });
    const s = await openWalStorage(DIR, { fs: disk.mount(), syncMode: 'fdatasync' });
    await s.persist(ents(1, 3, 1), { term: 1, vote: 1, commit: 0 });
    failing = true;
    const err = await rejectsCode(() => s.persist(ents(4, 4, 1), null), 'STORAGE_FSYNC_FAILED');
    assert.match(err.message, /EIO/);
    failing = false;
    await rejectsCode(() => s.persist(ents(5, 5, 1), null), 'STORAGE_FSYNC_FAILED');
    disk.crash();
    const again = await openWalStorage(DIR, { fs: disk.mount() });
    assert.deepEqual(plain(again.initialState().entries), plain(ents(1, 3, 1)));
    assert.deepEqual(again.stable.load(), { term: 1, vote: 1, commit: 0 });
    await again.close();
  });
});
