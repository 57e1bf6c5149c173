// A backup from a stopped member's data directory (`flotilla snapshot save --data-dir`), the way
// out when no cluster can serve one: here the leader of three is the survivor, its followers
// gone, as when a majority lost its data. What it saves starts a new cluster with every write
// the survivor knew committed; the write it appended but never saw committed is left out by
// default and applied when asked. Refused before anything is written: a member still running,
// a member recovering lost data, a directory that is not a member's, a file that cannot be
// written there.

import assert from 'node:assert/strict';
import {
  cpSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { FlotillaClient } from '../../src/client/index.js';
import { checkWritable } from '../../src/cli/snapshot.js';
import { resolveNodeConfig } from '../../src/server/config.js';
import { readIdentity, writeIdentity } from '../../src/server/data-dir.js';
import { FlotillaNode } from '../../src/server/node.js';
import { saveFromDataDir, type OfflineSaveReport } from '../../src/server/offline-backup.js';
import { restoreBackup, verifyBackupFile } from '../../src/server/restore.js';
import { freePorts } from '../e2e/harness.js';
import { missingWrites } from '../support/backups.js';
import { TestNodes } from './nodes.js';
import { until } from '../support/until.js';

const dir = mkdtempSync(join(tmpdir(), 'flotilla-offline-backup-'));
const acked = new Map<string, string>();
const bigValues = { maxValueBytes: 3 * 1024 * 1024, maxBodyBytes: 5 * 1024 * 1024 };
const big = 'b'.repeat(1_500_000);
/** The last claim's fencing token on the old cluster (a log index of its queue group). */
let lastToken = 0;
let survivor = '';
let lockedBy: unknown = null;

before(async () => {
  // A long election timeout: the leader, its followers gone, goes on leading (check-quorum
  // steps it down only after one) while it appends the write it cannot commit.
  const nodes = await TestNodes.start({
    nodes: 3,
    // Values above the default limit (1 MiB): the save replays under the node's own limits.
    config: { snapshotEveryEntries: 50, electionTicks: 300, ...bigValues },
  });
  const leader = await nodes.waitForLeader(20_000);
  const c = new FlotillaClient({ endpoints: [nodes.url(leader)], deadlineMs: 20_000 });
  try {
    for (let b = 0; b < 4; b++) {
      const ops = Array.from({ length: 50 }, (_, i) => ({
        put: { key: `k/${String(b * 50 + i).padStart(4, '0')}`, value: `v${b * 50 + i}` },
      }));
      await c.txn([], ops);
      for (const o of ops) acked.set(o.put.key, o.put.value);
    }
    await c.put('big', big);
    await c.queue('q').add('job', { n: 1 }, { id: 'job-1' });
    await c.queue('fence').add('f', null, { id: 'f-1' });
    const claimed = await c.queue('fence').claim({ leaseMs: 60_000 });
    lastToken = claimed.jobs[0]?.token ?? 0;
    assert.ok(lastToken > 0, JSON.stringify(claimed));
    // The queue group may be led by another member: the survivor learns of the add's commit
    // from that leader's next message. What it saves is what it knew committed.
    const queueLeader = await nodes.waitForQueueLeader();
    const added = nodes.node(queueLeader).queueService.runtime.status().commit;
    await until(
      () =>
        `the survivor's queue commit index to reach ${added} (at ${nodes.node(leader).queueService.runtime.status().commit})`,
      () => nodes.node(leader).queueService.runtime.status().commit >= added,
      10_000,
    );
    // A running member's storage is locked: the save is refused.
    lockedBy = await saveFromDataDir(
      { dataDir: nodes.dataDir(leader), file: join(dir, 'locked.flbk') },
      checkWritable,
    ).catch((err: unknown) => err);
    // The followers go; the leader appends a write it can no longer commit.
    await Promise.all([1, 2, 3].filter((id) => id !== leader).map((id) => nodes.node(id).close()));
    const late = new FlotillaClient({ endpoints: [nodes.url(leader)], deadlineMs: 1_000 });
    try {
      await assert.rejects(late.put('late', 'never committed'), { indefinite: true });
    } finally {
      await late.close();
    }
  } finally {
    await c.close();
    await nodes.stop();
  }
  survivor = join(dir, 'survivor');
  cpSync(nodes.dataDir(leader), survivor, { recursive: true });
  await nodes.close();
});

after(() => rmSync(dir, { recursive: true, force: true }));

async function save(name: string, uncommitted = false): Promise<OfflineSaveReport> {
  return saveFromDataDir({ dataDir: survivor, file: join(dir, name), uncommitted }, checkWritable);
}

/** Restores `file` as the one member of a new cluster, starts it, and runs `check` on it. */
async function withRestored(
  file: string,
  name: string,
  check: (client: FlotillaClient) => Promise<void>,
): Promise<void> {
  const [peer, port] = (await freePorts(2)) as [number, number];
  const dataDir = join(dir, name);
  await restoreBackup({ file, dataDir, id: 1, members: [1], clusterId: 'new', storage: 'wal' });
  const node = await FlotillaNode.start(
    resolveNodeConfig({
      id: 1,
      dataDir,
      initialCluster: `1=127.0.0.1:${peer}@http://127.0.0.1:${port}`,
      clusterId: 'new',
      logLevel: 'silent',
      ...bigValues,
    }),
  );
  const client = new FlotillaClient({
    endpoints: [`http://127.0.0.1:${port}`],
    deadlineMs: 20_000,
  });
  try {
    await check(client);
  } finally {
    await client.close();
    await node.close();
  }
}

void test('a running member is refused: its storage is locked', () => {
  assert.equal((lockedBy as { code?: string } | null)?.code, 'STORAGE_LOCKED', String(lockedBy));
  assert.ok(!readdirSync(dir).some((n) => n.startsWith('locked')), readdirSync(dir).join(','));
});

void test("a stopped member's directory saves what it knew committed, and starts a new cluster", async () => {
  const r = await save('committed.flbk');
  assert.equal(r.clusterId, 'flotilla');
  assert.equal(
    statSync(join(dir, 'committed.flbk')).mode & 0o777,
    0o600,
    'readable by its owner only',
  );
  assert.deepEqual(
    r.groups.map((g) => g.group),
    [0, 1],
  );
  const kv = r.groups[0];
  assert.ok(kv !== undefined && kv.stateIndex > 0 && kv.term > 0, JSON.stringify(r));
  // The put it appended alone is past its commit index: counted, not applied; the backup is
  // recorded at the last entry held, past the state's.
  assert.ok(kv.uncommitted >= 1 && !kv.uncommittedApplied, JSON.stringify(kv));
  assert.equal(kv.index, kv.stateIndex + kv.uncommitted, JSON.stringify(kv));
  assert.equal((await verifyBackupFile(r.file)).sha256, r.sha256);
  // The member's directory is as it was: nothing written there.
  assert.equal(readIdentity(survivor)?.recovery, 'none');
  await withRestored(r.file, 'restored', async (client) => {
    assert.deepEqual(await missingWrites(acked, client, 'k/'), []);
    assert.equal(await client.get('late'), null);
    // A value above the default limit, accepted under the node's: replayed under the same.
    assert.equal((await client.get('big'))?.value.length, big.length);
    assert.equal((await client.queue('q').get('job-1')).job?.name, 'job');
    // The claim's lease outlives the restore: the job comes back to a new claim only after it
    // expires, so its token here is checked through a new job. Every token the new cluster
    // hands out is above every one the old one did.
    await client.queue('fence').add('g', null, { id: 'g-1' });
    const fresh = await client.queue('fence').claim({ max: 5 });
    const tokens = fresh.jobs.map((j) => j.token);
    assert.ok(
      tokens.length > 0 && tokens.every((t) => t > lastToken),
      `${tokens.join(',')} vs ${lastToken}`,
    );
    await client.put('after', 'restore');
    assert.equal((await client.get('after'))?.value, 'restore');
  });
});

void test('with uncommitted, the entries past the commit index are applied too', async () => {
  const r = await save('all.flbk', true);
  const kv = r.groups[0];
  assert.ok(kv !== undefined && kv.uncommittedApplied && kv.uncommitted >= 1, JSON.stringify(r));
  await withRestored(r.file, 'restored-all', async (client) => {
    assert.deepEqual(await missingWrites(acked, client, 'k/'), []);
    assert.equal((await client.get('late'))?.value, 'never committed');
  });
});

void test("a damaged directory is refused naming the member's own file, not the copy read", async () => {
  // The groups are read from a copy in TMPDIR: before, the fault named the copy's file
  // (/tmp/flotilla-copy-.../group-0/...), gone once the save ended (an operator's pass).
  const damaged = join(dir, 'damaged');
  cpSync(survivor, damaged, { recursive: true });
  const group0 = join(damaged, 'group-0');
  const segments = readdirSync(group0)
    .filter((n) => /^wal-[0-9a-f]{16}\.seg$/.test(n))
    .sort();
  const first = join(group0, segments[0] as string);
  const bytes = readFileSync(first);
  assert.ok(bytes.length > 200, `${first}: ${bytes.length} bytes`);
  // A byte in the middle of the first record after the header: damage, not a torn tail.
  const at = Math.min(120, bytes.length - 80);
  bytes[at] = (bytes[at] as number) ^ 0xff;
  writeFileSync(first, bytes);
  const err = await saveFromDataDir(
    { dataDir: damaged, file: join(dir, 'damaged.flbk') },
    checkWritable,
  ).catch((e: unknown) => e as Error & { code?: string; file?: string });
  assert.ok(err instanceof Error, 'the save failed');
  assert.match(err.message, new RegExp(damaged.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
  assert.doesNotMatch(err.message, /flotilla-copy-/, err.message);
  if (typeof err.file === 'string') assert.ok(err.file.startsWith(damaged), err.file);
});

void test('refused before anything is written: recovering, not a member, unwritable', async () => {
  const recovering = join(dir, 'recovering');
  cpSync(survivor, recovering, { recursive: true });
  const id = readIdentity(recovering);
  assert.ok(id !== null);
  const { format: _format, ...rest } = id;
  writeIdentity(recovering, { ...rest, recovery: 'recovering' });
  const removed = join(dir, 'removed');
  cpSync(survivor, removed, { recursive: true });
  writeIdentity(removed, { ...rest, removed: true });
  const empty = join(dir, 'empty');
  mkdirSync(empty);
  const before = readdirSync(dir).sort();
  const attempt = (dataDir: string, file: string) =>
    saveFromDataDir({ dataDir, file: join(dir, file) }, checkWritable);
  await assert.rejects(attempt(recovering, 'r.flbk'), {
    code: 'DATA_DIR_INVALID',
    message: /lost its data and had not caught up/,
  });
  await assert.rejects(attempt(removed, 'x.flbk'), {
    code: 'DATA_DIR_REMOVED',
    message: /was removed from its cluster/,
  });
  await assert.rejects(attempt(empty, 'e.flbk'), {
    code: 'DATA_DIR_INVALID',
    message: /holds no member's identity file/,
  });
  await assert.rejects(attempt(join(dir, 'nope'), 'n.flbk'), {
    code: 'DATA_DIR_INVALID',
    message: /nope does not exist/,
  });
  // The groups are copied into TMPDIR first: a TMPDIR that cannot take them is named.
  const tmp = process.env['TMPDIR'];
  process.env['TMPDIR'] = join(dir, 'no-such-tmp');
  try {
    await assert.rejects(attempt(survivor, 't.flbk'), {
      code: 'BACKUP_UNWRITABLE',
      message:
        /Cannot copy the member's groups into the temporary directory .*no-such-tmp \(TMPDIR/,
    });
  } finally {
    if (tmp === undefined) delete process.env['TMPDIR'];
    else process.env['TMPDIR'] = tmp;
  }
  await assert.rejects(attempt(survivor, 'no-such-dir/x.flbk'), {
    code: 'BACKUP_UNWRITABLE',
    message: /does not exist/,
  });
  assert.deepEqual(readdirSync(dir).sort(), before);
});
