import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { openSqliteStorage } from '../../src/storage/sqlite.js';
import { runContract } from './contract.js';
import { ents, rejectsCode, tempDir } from './helpers.js';

runContract('SQLite', async () => {
  const { dir, cleanup } = await tempDir();
  return { open: () => openSqliteStorage(dir), cleanup };
});

void describe('SQLite store', () => {
  void it('refuses an entry whose checksum does not match, and a gap in the log', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const s = await openSqliteStorage(dir);
      await s.persist(ents(1, 5, 1), null);
      await s.close();
      const db = new Database(join(dir, 'raft.sqlite'));
      db.prepare('UPDATE entries SET data = ? WHERE idx = 3').run(Buffer.from('tampered'));
      db.close();
      const bad = await rejectsCode(() => openSqliteStorage(dir), 'STORAGE_CORRUPT');
      assert.match(bad.message, /crc/);
      const db2 = new Database(join(dir, 'raft.sqlite'));
      db2.prepare('DELETE FROM entries WHERE idx = 3').run();
      db2.close();
      const gap = await rejectsCode(() => openSqliteStorage(dir), 'STORAGE_CORRUPT');
      assert.match(gap.message, /expected entry 3/);
    } finally {
      await cleanup();
    }
  });

  void it('accepts a file path and keeps the event loop free during commits', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const s = await openSqliteStorage(join(dir, 'node.db'));
      let ticks = 0;
      const timer = setInterval(() => ticks++, 1);
      for (let i = 1; i <= 100; i += 10)
        await s.persist(ents(i, i + 9, 1), { term: 1, vote: 0, commit: i });
      clearInterval(timer);
      assert.ok(ticks > 0, 'timers ran while commits were in flight');
      assert.equal(s.log.lastIndex(), 100);
      await s.close();
    } finally {
      await cleanup();
    }
  });
});
