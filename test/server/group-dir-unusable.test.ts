// A node whose data directory is usable but one of its groups' directories is not (permissions
// changed, an immutable attribute, a file system that went read-only in part) used to exit with
// the bare system error, `EACCES: EACCES: permission denied, open '.../group-0/LOCK'` or
// `EPERM: ...`: no stable code and no word of what to do. It is `DATA_DIR_UNUSABLE` naming the
// group, the path and the fix, and nothing in the directory changes.
//
// As root, permissions do not stop a write, so the directory is made immutable (`chattr +i`,
// which refuses root too); without root, it loses its write permission. Where neither works the
// test skips, saying why.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, test } from 'node:test';
import { FlotillaNode } from '../../src/server/node.js';
import { TestNodes } from './nodes.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Makes `dir` refuse new files to this process; returns the undo, or why it cannot. */
function forbidWrites(dir: string): { undo: () => void } | { skip: string } {
  if (process.getuid?.() !== 0) {
    chmodSync(dir, 0o555);
    return { undo: () => chmodSync(dir, 0o755) };
  }
  try {
    execFileSync('chattr', ['+i', dir], { stdio: 'pipe' });
  } catch (err) {
    return { skip: `root, and chattr +i is not available here: ${String(err)}` };
  }
  return { undo: () => execFileSync('chattr', ['-i', dir]) };
}

void test('a group directory the node may not write is refused DATA_DIR_UNUSABLE, naming it', async (t) => {
  const nodes = await TestNodes.start({ nodes: 1 });
  cleanups.push(() => nodes.close());
  await nodes.waitForLeader();
  await nodes.stop();
  const dir = join(nodes.dataDir(1), 'group-0');
  const before = readdirSync(dir).sort();
  const forbid = forbidWrites(dir);
  if ('skip' in forbid) {
    t.skip(forbid.skip);
    return;
  }
  cleanups.push(forbid.undo);

  await assert.rejects(FlotillaNode.start(nodes.config(1)), (err: unknown) => {
    const e = err as { code?: unknown; message?: unknown };
    assert.equal(e.code, 'DATA_DIR_UNUSABLE', String(err));
    assert.match(
      String(e.message),
      /Cannot open the storage of group 0 in .*group-0: E(PERM|ACCES)/,
    );
    assert.match(String(e.message), /make the directory and its files writable/);
    return true;
  });
  assert.deepEqual(readdirSync(dir).sort(), before);
});
