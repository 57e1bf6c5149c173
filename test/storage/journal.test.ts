// The node journal (src/storage/journal.ts) with several groups on the simulated disk: their
// appends share one journal sync, a crash that loses every unsynced segment write is repaired
// by the replay, a released directory is not written again by a later replay, and a damaged
// journal refuses to start. The crash property over many scenarios is journal-sim-crash.test.ts.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Entry } from '../../src/raft/index.js';
import { createRng } from '../../src/raft/index.js';
import { SimDisk } from '../../src/sim/sim-fs.js';
import type { StorageFs } from '../../src/storage/fs.js';
import { openNodeJournal, replayJournal } from '../../src/storage/journal.js';
import { openWalStorage } from '../../src/storage/wal.js';

const ROOT = '/node';

function entries(from: number, n: number, tag: number): Entry[] {
  return Array.from({ length: n }, (_, k) => ({
    index: from + k,
    term: 1,
    type: 'normal' as const,
    data: new Uint8Array([tag, from + k]),
  }));
}

function tags(s: { initialState(): { entries: readonly Entry[] } }): number[] {
  return s.initialState().entries.map((e) => e.data[0] ?? -1);
}

/** Counts syncs by path, through the sync hook. */
function counting(): {
  hook: (p: string, s: () => Promise<void>) => Promise<void>;
  by: Map<string, number>;
} {
  const by = new Map<string, number>();
  return {
    by,
    hook: async (path, sync) => {
      by.set(path, (by.get(path) ?? 0) + 1);
      await sync();
    },
  };
}

async function openGroups(fs: StorageFs, n: number, hook?: ReturnType<typeof counting>['hook']) {
  const journal = await openNodeJournal(ROOT, { fs, ...(hook ? { syncHook: hook } : {}) });
  const groups = [];
  for (let g = 0; g < n; g++)
    groups.push(await openWalStorage(`${ROOT}/group-${g}`, { fs, journal, segmentBytes: 4096 }));
  return { journal, groups };
}

void describe('node journal', () => {
  void it('gives the appends of several groups made together one journal sync and none of their own', async () => {
    const disk = new SimDisk({ rng: createRng(1) });
    const c = counting();
    const { journal, groups } = await openGroups(disk.mount(), 8, c.hook);
    c.by.clear();
    await Promise.all(
      groups.map((g, k) => g.persist(entries(1, 3, k), { term: 1, vote: 1, commit: 0 })),
    );
    const journalSyncs = [...c.by].filter(([p]) => p.includes('journal-'));
    const segmentSyncs = [...c.by].filter(([p]) => p.endsWith('.seg'));
    // The first append's flush starts at once; the other seven gather behind it (group
    // commit): two journal syncs, where eight logs of their own would have made eight.
    assert.deepEqual(
      journalSyncs.map(([, n]) => n),
      [2],
      `syncs: ${JSON.stringify([...c.by])}`,
    );
    assert.deepEqual(segmentSyncs, []);
    for (const g of groups) await g.close();
    await journal.close();
    assert.deepEqual(
      disk.files().filter((f) => f.includes('journal-')),
      [],
      'a clean stop leaves no journal',
    );
  });

  void it('rebuilds every group from the journal after a crash that lost their unsynced writes', async () => {
    const disk = new SimDisk({ rng: createRng(2), tornWriteProbability: 0 });
    const { groups } = await openGroups(disk.mount(), 3);
    for (let round = 0; round < 5; round++)
      await Promise.all(groups.map((g, k) => g.persist(entries(1 + round * 4, 4, k), null)));
    disk.crash();
    const fs = disk.mount();
    const report = await replayJournal(ROOT, { fs });
    assert.ok(report.writesRedone >= 15, JSON.stringify(report));
    for (let k = 0; k < 3; k++) {
      const g = await openWalStorage(`${ROOT}/group-${k}`, { fs, segmentBytes: 4096 });
      assert.equal(g.initialState().entries.length, 20, `group ${k}`);
      assert.deepEqual(new Set(tags(g)), new Set([k]));
      await g.close();
    }
  });

  void it('does not replay a released directory into the new files made there', async () => {
    for (const release of [true, false]) {
      const disk = new SimDisk({ rng: createRng(3), tornWriteProbability: 0 });
      const fs = disk.mount();
      const journal = await openNodeJournal(ROOT, { fs });
      // The planted bug: a journal that forgets to record the release.
      const forgetful = Object.create(journal) as typeof journal;
      forgetful.release = () => Promise.resolve();
      const a = await openWalStorage(`${ROOT}/group-0`, {
        fs,
        segmentBytes: 4096,
        journal: release ? journal : forgetful,
      });
      const b = await openWalStorage(`${ROOT}/group-1`, { fs, segmentBytes: 4096, journal });
      await a.persist(entries(1, 6, 7), { term: 1, vote: 1, commit: 0 });
      await b.persist(entries(1, 1, 1), null);
      await a.close();
      // The replica is removed and made again: new files under the same names.
      for (const f of disk.files().filter((p) => p.startsWith(`${ROOT}/group-0/`))) await fs.rm(f);
      await fs.syncDir(`${ROOT}/group-0`);
      const again = await openWalStorage(`${ROOT}/group-0`, { fs, segmentBytes: 4096, journal });
      await again.persist(entries(1, 2, 9), { term: 2, vote: 2, commit: 0 });
      disk.crash();
      const fs2 = disk.mount();
      await replayJournal(ROOT, { fs: fs2 });
      const opened = await openWalStorage(`${ROOT}/group-0`, { fs: fs2, segmentBytes: 4096 }).then(
        (g) => tags(g),
        (err: Error) => err.message,
      );
      if (release) assert.deepEqual(opened, [9, 9]);
      // Without the release the old incarnation's bytes are written over the new files: the
      // check above would see them (so it can fail).
      else assert.notDeepEqual(opened, [9, 9]);
    }
  });
});
