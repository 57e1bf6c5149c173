// makeDirs (src/storage/make-dirs.ts): a directory and its missing parents, one level at a time.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { openNodeJournal, openSqliteStorage, openWalStorage } from '../../src/storage/index.js';
import { makeDirs } from '../../src/storage/make-dirs.js';

const dir = mkdtempSync(join(tmpdir(), 'flotilla-make-dirs-'));
after(() => rmSync(dir, { recursive: true, force: true }));

void test('makes the missing levels, parents first, with the mode given; again, nothing', () => {
  const target = join(dir, 'a', 'b', 'c');
  assert.deepEqual(makeDirs(target, { mode: 0o700 }), [
    join(dir, 'a'),
    join(dir, 'a', 'b'),
    target,
  ]);
  assert.equal(statSync(target).mode & 0o077, 0);
  assert.deepEqual(makeDirs(target), []);
});

void test('a file on the way fails ENOTDIR naming it', () => {
  const file = join(dir, 'plain-file');
  writeFileSync(file, '');
  assert.throws(
    () => makeDirs(join(file, 'x', 'y')),
    (e: NodeJS.ErrnoException) => e.code === 'ENOTDIR' && e.path === file,
  );
});

void test(
  'under /proc it fails at the first level it cannot make, naming it',
  {
    skip: process.platform !== 'linux',
  },
  () => {
    assert.throws(
      () => makeDirs('/proc/flotilla-make-dirs-test/a/b'),
      (e: NodeJS.ErrnoException) =>
        e.code === 'ENOENT' && e.path === '/proc/flotilla-make-dirs-test',
    );
  },
);

void test(
  'storage opened under /proc fails there too, rather than never returning',
  // A bound, so that a hang is reported as one.
  { skip: process.platform !== 'linux', timeout: 20_000 },
  async () => {
    // The WAL, its journal and SQLite make their directory with makeDirs: Node's recursive
    // mkdir spun for ever on these paths, and the open with it.
    const gone = (e: NodeJS.ErrnoException) =>
      e.code === 'ENOENT' && e.path === '/proc/flotilla-make-dirs-test';
    await assert.rejects(openWalStorage('/proc/flotilla-make-dirs-test/wal'), gone);
    await assert.rejects(openNodeJournal('/proc/flotilla-make-dirs-test/journal'), gone);
    await assert.rejects(openSqliteStorage('/proc/flotilla-make-dirs-test/db'), gone);
  },
);

void test('storage makes the missing parents of its directory, as before', async () => {
  const wal = await openWalStorage(join(dir, 'wal', 'group-1'));
  await wal.close();
  const db = await openSqliteStorage(join(dir, 'sqlite', 'group-2', 'raft.sqlite'));
  await db.close();
  assert.ok(statSync(join(dir, 'wal', 'group-1')).isDirectory());
  assert.ok(statSync(join(dir, 'sqlite', 'group-2')).isDirectory());
});
