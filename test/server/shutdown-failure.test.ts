// A node whose storage fails to close must still shut down. A data directory whose disk went
// read-only refuses even the removal of a group's LOCK file on the way out; the node used to
// stop there, before closing its HTTP server, so the process never exited and went on answering
// /healthz. Here the LOCK is replaced by a non-empty directory, which its removal refuses just
// as a read-only file system does, without needing root or a mount.

import assert from 'node:assert/strict';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, test } from 'node:test';
import { TestNodes } from './nodes.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

void test('a node whose storage fails to close still closes its servers, then reports the failure', async () => {
  const nodes = await TestNodes.start({ nodes: 1 });
  cleanups.push(() => nodes.close());
  await nodes.waitForLeader();
  const url = nodes.url(1);
  assert.equal((await fetch(`${url}/healthz`)).status, 200);

  const lock = join(nodes.dataDir(1), 'group-0', 'LOCK');
  rmSync(lock);
  mkdirSync(lock);
  writeFileSync(join(lock, 'x'), 'keeps the directory from being removed');

  const node = nodes.node(1);
  await assert.rejects(node.close(), (err: unknown) => {
    assert.match(String(err), /LOCK/);
    return true;
  });
  // The servers are closed all the same: the kept-alive connection of the first request is
  // closed, and a new one is refused.
  await assert.rejects(fetch(`${url}/healthz`));
  await assert.rejects(fetch(`${url}/healthz`), (err: unknown) => {
    assert.match(String((err as { cause?: unknown }).cause), /ECONNREFUSED/);
    return true;
  });
  // And the node counts as stopped, so the process holding it can end.
  const settled = await Promise.race([
    node.stopped.then(() => 'stopped'),
    new Promise<string>((r) => setTimeout(() => r('still running'), 2_000).unref()),
  ]);
  assert.equal(settled, 'stopped');
  rmSync(lock, { recursive: true });
});
