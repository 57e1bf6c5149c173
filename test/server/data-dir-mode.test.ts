// A node's data directory holds every key and value, the keys of the certificates a node makes
// itself and its backups: prepareDataDir creates it for its owner alone (0700), as etcd does.
// The parents it creates on the way are left to the umask: they may be shared.

import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { othersMayRead, prepareDataDir, removeIfEmpty } from '../../src/server/startup.js';

void test('a data directory is created 0700; the parents made on the way follow the umask', (t) => {
  const root = mkdtempSync(join(tmpdir(), 'flotilla-mode-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const parent = join(root, 'a', 'b');
  const dataDir = join(parent, 'data');
  prepareDataDir(dataDir);
  assert.equal(statSync(dataDir).mode & 0o777, 0o700);
  const umask = process.umask();
  assert.equal(statSync(parent).mode & 0o777, 0o777 & ~umask);
  // An existing directory is used as it is; one open to others is pointed out (the node warns).
  prepareDataDir(parent);
  assert.equal(statSync(parent).mode & 0o777, 0o777 & ~umask);
  assert.equal(othersMayRead(dataDir), null);
  chmodSync(dataDir, 0o755);
  assert.equal(othersMayRead(dataDir), '0755');
  assert.equal(othersMayRead(join(root, 'missing')), null);
});

void test('a failed start takes back the data directory it created while it is empty, and only that', (t) => {
  const root = mkdtempSync(join(tmpdir(), 'flotilla-mode-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const dataDir = join(root, 'a', 'b', 'data');
  const created = prepareDataDir(dataDir);
  assert.deepEqual(created, [join(root, 'a'), join(root, 'a', 'b'), dataDir]);
  removeIfEmpty(created);
  assert.equal(existsSync(dataDir), false);
  // The parents stay: a node starting beside it may be creating its own directory there.
  assert.equal(existsSync(join(root, 'a', 'b')), true);
  // Once anything was written there, the directory and its parents stay.
  const again = prepareDataDir(dataDir);
  writeFileSync(join(dataDir, 'identity.json'), '{}');
  removeIfEmpty(again);
  assert.equal(existsSync(join(dataDir, 'identity.json')), true);
  // An existing directory was not created by this start: nothing to take back.
  assert.deepEqual(prepareDataDir(dataDir), []);
});
