// The identity file's format, read back: a newer release's file says so, other values name
// what this release reads; format 1 (0.1) says what to do.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import pino from 'pino';
import { resolveNodeConfig } from '../../src/server/config.js';
import {
  IDENTITY_FILE,
  groupDir,
  readIdentity,
  walFilesHoldData,
} from '../../src/server/data-dir.js';
import { resolveIdentity } from '../../src/server/node-setup.js';
import { openSqliteStorage, openWalStorage, sqliteHoldsData } from '../../src/storage/index.js';
import { freePorts } from '../e2e/harness.js';
import { ents } from '../storage/helpers.js';

void test('an identity file of another format is refused with what this release reads', () => {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-identity-'));
  try {
    const base = { clusterId: 'c', memberId: 1, members: [1], storage: 'wal', recovery: 'none' };
    for (const [format, message] of [
      [
        99,
        /format 99 was written by a newer release of Flotilla than this one, which reads format 2/,
      ],
      ['2', /format "2" is not one Flotilla writes \(this release reads 2\)/],
      [1, /format 1 was written by Flotilla 0\.1/],
    ] as const) {
      writeFileSync(join(dir, IDENTITY_FILE), JSON.stringify({ format, ...base }));
      assert.throws(
        () => readIdentity(dir),
        (err: Error & { code?: string }) =>
          err.code === 'DATA_DIR_INVALID' && message.test(err.message),
        String(format),
      );
    }
    writeFileSync(join(dir, IDENTITY_FILE), JSON.stringify({ format: 2, ...base }));
    assert.equal(readIdentity(dir)?.clusterId, 'c');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A config that would join through an address where nothing listens. */
async function joiningConfig(dir: string): Promise<ReturnType<typeof resolveNodeConfig>> {
  const [peer, client] = (await freePorts(2)) as [number, number];
  return resolveNodeConfig({
    id: 4,
    dataDir: dir,
    initialCluster: `4=127.0.0.1:${peer}@http://127.0.0.1:${client}`,
    // Nothing listens there: a join asked for would wait a minute, not fail at once.
    join: 'http://127.0.0.1:1',
  });
}

async function refusedBeforeJoin(dir: string): Promise<void> {
  await assert.rejects(
    resolveIdentity(await joiningConfig(dir), null, pino({ level: 'silent' })),
    (err: Error & { code?: string }) =>
      err.code === 'DATA_DIR_INVALID' &&
      /holds a Raft log but no flotilla-node\.json/.test(err.message),
  );
}

void test('a log without its identity file is refused before a join is asked for', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-identity-'));
  try {
    const kv = groupDir(dir, 0);
    // A first start that stopped before writing the file leaves segment heads only.
    await (await openWalStorage(kv)).close();
    assert.equal(walFilesHoldData(kv), false, 'a head alone holds nothing');
    const wal = await openWalStorage(kv);
    await wal.persist(ents(1, 1, 1), null);
    await wal.close();
    assert.equal(walFilesHoldData(kv), true);
    await refusedBeforeJoin(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

void test('a SQLite log without its identity file is refused before a join is asked for', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-identity-'));
  try {
    const queue = groupDir(dir, 1);
    assert.equal(await sqliteHoldsData(queue), false, 'no file holds nothing');
    // A first start that stopped early leaves the schema and no rows.
    await (await openSqliteStorage(queue)).close();
    assert.equal(await sqliteHoldsData(queue), false, 'an empty schema holds nothing');
    const voted = await openSqliteStorage(queue);
    await voted.persist([], { term: 2, vote: 1, commit: 0 });
    await voted.close();
    assert.equal(await sqliteHoldsData(queue), true, 'a term is something');
    rmSync(queue, { recursive: true, force: true });
    const db = await openSqliteStorage(queue);
    await db.persist(ents(1, 1, 1), null);
    await db.close();
    assert.equal(await sqliteHoldsData(queue), true, 'an entry is something');
    await refusedBeforeJoin(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
