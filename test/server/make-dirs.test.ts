// makeDirs (src/server/make-dirs.ts): a directory and its missing parents, one level at a time.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { makeDirs } from '../../src/server/make-dirs.js';

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
