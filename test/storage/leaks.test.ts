// Long-lived objects must not leak: after open, use and close, the process holds the same file
// descriptors and active handles (workers, timers) as before.

import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { openSqliteStorage } from '../../src/storage/sqlite.js';
import type { RaftStorage } from '../../src/storage/types.js';
import { openWalStorage } from '../../src/storage/wal.js';
import { ents, tempDir } from './helpers.js';

async function openFds(): Promise<number> {
  return (await readdir('/proc/self/fd')).length;
}

function handles(): string[] {
  return process
    .getActiveResourcesInfo()
    .filter((r) => r !== 'TTYWrap' && r !== 'FSReqCallback')
    .sort();
}

async function cycle(open: () => Promise<RaftStorage>): Promise<void> {
  const s = await open();
  await s.persist(ents(s.log.lastIndex() + 1, s.log.lastIndex() + 50, 1), {
    term: 1,
    vote: 0,
    commit: 0,
  });
  await s.saveSnapshot(
    { index: s.log.lastIndex() - 10, term: 1, voters: [1] },
    new Uint8Array(100),
  );
  await s.loadSnapshot();
  await s.close();
}

void describe('storage leaks nothing', () => {
  for (const [name, open] of [
    ['WAL', (dir: string) => openWalStorage(dir, { segmentBytes: 4096 })],
    ['SQLite', (dir: string) => openSqliteStorage(dir)],
  ] as const) {
    void it(`${name}: file descriptors and handles return to where they were`, async () => {
      const { dir, cleanup } = await tempDir();
      try {
        await cycle(() => open(dir));
        const fdsBefore = await openFds();
        const handlesBefore = handles();
        for (let k = 0; k < 5; k++) await cycle(() => open(dir));
        await new Promise((r) => setImmediate(r));
        assert.equal(await openFds(), fdsBefore);
        assert.deepEqual(handles(), handlesBefore);
      } finally {
        await cleanup();
      }
    });
  }

  void it('notices a store left open (planted leak)', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const fdsBefore = await openFds();
      const leaked = await openWalStorage(dir);
      assert.notEqual(await openFds(), fdsBefore, 'an open WAL holds a segment descriptor');
      await leaked.close();
      assert.equal(await openFds(), fdsBefore);
    } finally {
      await cleanup();
    }
  });
});
