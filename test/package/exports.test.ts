// The package's public entry points resolve by name, as a program depending on Flotilla
// imports them (a package may import itself through its `exports` map), and work together:
// a node embedded through `flotilla/server` serves a client from `flotilla/client`.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type * as Client from '../../src/client/index.js';
import type * as Raft from '../../src/raft/index.js';
import type * as Server from '../../src/server/index.js';
import { freePorts } from '../e2e/harness.js';

// Through a variable, so the compiler does not resolve the names against dist/ (which the
// build is producing); at run time they resolve through package.json's `exports`.
const entry = (name: string): string => `flotilla/${name}`;

void test('flotilla/client, flotilla/server and flotilla/raft resolve by name and work together', async () => {
  const raft = (await import(entry('raft'))) as typeof Raft;
  const server = (await import(entry('server'))) as typeof Server;
  const client = (await import(entry('client'))) as typeof Client;
  assert.equal(typeof raft.RaftNode, 'function');

  const [peer, http] = (await freePorts(2)) as [number, number];
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-exports-'));
  const config = server.resolveNodeConfig({
    id: 1,
    dataDir: dir,
    initialCluster: `1=127.0.0.1:${peer}@http://127.0.0.1:${http}`,
    logLevel: 'silent',
  });
  const node = await server.FlotillaNode.start(config);
  const c = new client.FlotillaClient({ endpoints: [`http://127.0.0.1:${http}`] });
  try {
    await c.put('greeting', 'hello');
    assert.equal((await c.get('greeting'))?.value, 'hello');
    const refused = await c.put('', 'x').then(
      () => null,
      (e: unknown) => e,
    );
    assert.ok(refused instanceof client.FlotillaError, String(refused));
    assert.equal(refused.code, 'KEY_EMPTY');
    assert.equal(refused.indefinite, false);
    // Start-up's errors are exported, so that a program can tell them by class as by code.
    const [peer2, http2] = (await freePorts(2)) as [number, number];
    const again = (o: object) =>
      server.FlotillaNode.start(
        server.resolveNodeConfig({
          id: 1,
          dataDir: dir,
          initialCluster: `1=127.0.0.1:${peer2}@http://127.0.0.1:${http2}`,
          logLevel: 'silent',
          ...o,
        }),
      );
    await assert.rejects(
      again({}),
      (e: unknown) => e instanceof server.StorageError && e.code === 'STORAGE_LOCKED',
    );
    await node.close();
    await assert.rejects(
      again({ storage: 'sqlite' }),
      (e: unknown) => e instanceof server.DataDirError && e.code === 'DATA_DIR_MISMATCH',
    );
  } finally {
    await c.close();
    await node.close();
    rmSync(dir, { recursive: true, force: true });
  }
  assert.throws(() => server.resolveNodeConfig({}), server.ConfigError);
});
