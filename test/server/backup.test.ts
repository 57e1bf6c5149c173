// Backups in one process: a node's `GET /v1/snapshot` saved with `saveBackup`, restored with
// `restoreBackup` into the data directory of a new cluster's member, which starts with every
// key, job and session of the saved state and none of the old cluster's membership. Restore
// refuses what it must before writing anything: a damaged file, a non-empty directory, a member
// not in the new cluster, a state that does not load.

import assert from 'node:assert/strict';
import {
  existsSync,
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
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { FlotillaClient } from '../../src/client/index.js';
import { saveBackup } from '../../src/cli/snapshot.js';
import { BackupError } from '../../src/server/backup-format.js';
import { resolveNodeConfig } from '../../src/server/config.js';
import { readIdentity } from '../../src/server/data-dir.js';
import { FlotillaNode } from '../../src/server/node.js';
import { restoreBackup, verifyBackupFile } from '../../src/server/restore.js';
import { exitOf, runCli, startCli, stopAll } from '../cli/run.js';
import { freePorts } from '../e2e/harness.js';
import { dropLastKvChunk, missingWrites } from '../support/backups.js';
import { until } from '../support/until.js';
import { TestNodes } from './nodes.js';

const dir = mkdtempSync(join(tmpdir(), 'flotilla-backup-'));
const file = join(dir, 'backup.flbk');
const acked = new Map<string, string>();
/** More than one chunk of keys (1,024 records each), each key written once. */
const keys = 2_500;
let saved: Awaited<ReturnType<typeof saveBackup>>;

before(async () => {
  const nodes = await TestNodes.start({ nodes: 1, config: { snapshotEveryEntries: 20 } });
  const c = new FlotillaClient({ endpoints: [nodes.url(1)], deadlineMs: 20_000 });
  try {
    await nodes.waitForLeader();
    for (let b = 0; b < keys / 100; b++) {
      const ops = Array.from({ length: 100 }, (_, i) => ({
        put: { key: `k/${String(b * 100 + i).padStart(5, '0')}`, value: `v${b * 100 + i}` },
      }));
      await c.txn([], ops);
      for (const o of ops) acked.set(o.put.key, o.put.value);
    }
    await c.queue('q').add('job', { n: 1 }, { id: 'job-1' });
    // The old cluster's directory: a member added and removed (id 9 is then never usable there).
    await c.addMember(
      { id: 9, peer: '127.0.0.1:1', client: 'http://127.0.0.1:1' },
      { learner: true },
    );
    await c.removeMember(9);
    saved = await saveBackup([nodes.url(1)], file);
  } finally {
    await c.close();
    await nodes.stop();
  }
});

after(async () => {
  await stopAll();
  rmSync(dir, { recursive: true, force: true });
});

/** Restores `from` as member `id` of a one-member cluster and starts it; returns it and a client. */
async function startRestored(
  from: string,
  id: number,
  name: string,
): Promise<{ node: FlotillaNode; client: FlotillaClient }> {
  const [peer, client] = (await freePorts(2)) as [number, number];
  const spec = `${id}=127.0.0.1:${peer}@http://127.0.0.1:${client}`;
  const dataDir = join(dir, name);
  await restoreBackup({
    file: from,
    dataDir,
    id,
    members: [id],
    clusterId: 'restored',
    storage: 'wal',
  });
  const node = await FlotillaNode.start(
    resolveNodeConfig({
      id,
      dataDir,
      initialCluster: spec,
      clusterId: 'restored',
      logLevel: 'silent',
    }),
  );
  return {
    node,
    client: new FlotillaClient({ endpoints: [`http://127.0.0.1:${client}`], deadlineMs: 20_000 }),
  };
}

void test('save reports what it wrote: both groups, their indexes, the checksum', async () => {
  assert.equal(saved.groups.length, 2);
  assert.deepEqual(
    saved.groups.map((g) => g.group),
    [0, 1],
  );
  for (const g of saved.groups)
    assert.ok(g.index > 0 && g.term > 0 && g.chunks > 0, JSON.stringify(g));
  const checked = await verifyBackupFile(file);
  assert.equal(checked.sha256, saved.sha256);
  assert.equal(checked.bytes, saved.bytes);
  assert.equal(checked.header.clusterId, 'flotilla');
  // Nothing but the file is left beside it (the temporary file was renamed).
  assert.deepEqual(readdirSync(dir), ['backup.flbk']);
  // The whole store: readable by its owner only.
  assert.equal(statSync(file).mode & 0o777, 0o600);
});

void test('a restored member starts a new cluster with the saved state and takes writes', async () => {
  // Member 9 of the new cluster: an id the old cluster's directory lists as removed, which the
  // restore must not carry over.
  const { node, client } = await startRestored(file, 9, 'restored-9');
  try {
    // Like a data directory a node makes, the restored one is its owner's alone.
    assert.equal(statSync(join(dir, 'restored-9')).mode & 0o777, 0o700);
    assert.deepEqual(await missingWrites(acked, client, 'k/'), []);
    assert.equal((await client.queue('q').get('job-1')).job?.name, 'job');
    const members = await client.members();
    assert.deepEqual(
      members.members.map((m) => m.id),
      [9],
    );
    assert.deepEqual(members.removed, []);
    assert.ok(node.runtime.status().lastIndex > (saved.groups[0]?.index ?? 0));
    await client.put('after', 'restore');
    assert.equal((await client.get('after'))?.value, 'restore');
    const identity = readIdentity(join(dir, 'restored-9'));
    assert.equal(identity?.clusterId, 'restored');
    assert.deepEqual(identity?.members, [9]);
  } finally {
    await client.close();
    await node.close();
  }
});

/** Restore must fail with `code` and leave `target` as it was (absent, or as listed). */
async function refused(
  o: Partial<Parameters<typeof restoreBackup>[0]> & { dataDir: string },
  code: string,
): Promise<void> {
  const before = existsSync(o.dataDir) ? readdirSync(o.dataDir) : null;
  await assert.rejects(
    restoreBackup({ file, id: 1, members: [1, 2, 3], clusterId: 'x', storage: 'wal', ...o }),
    (e: unknown) => {
      assert.ok(e instanceof BackupError, String(e));
      assert.equal(e.code, code, e.message);
      assert.doesNotMatch(e.message, /restoring-/, 'the work directory is not the one named');
      return true;
    },
  );
  assert.deepEqual(existsSync(o.dataDir) ? readdirSync(o.dataDir) : null, before);
  assert.deepEqual(
    readdirSync(dir).filter((n) => n.includes('restoring')),
    [],
    'the work directory was removed',
  );
}

void test('restore refuses damage, a used directory and a stranger, and writes nothing', async () => {
  const bytes = readFileSync(file);
  const flipped = Buffer.from(bytes);
  const at = Math.floor(bytes.length / 2);
  flipped[at] = (flipped[at] as number) ^ 0x40;
  writeFileSync(join(dir, 'flipped.flbk'), flipped);
  await refused({ file: join(dir, 'flipped.flbk'), dataDir: join(dir, 'r1') }, 'BACKUP_CORRUPT');
  writeFileSync(join(dir, 'short.flbk'), bytes.subarray(0, bytes.length - 100));
  await refused({ file: join(dir, 'short.flbk'), dataDir: join(dir, 'r2') }, 'BACKUP_CORRUPT');
  writeFileSync(join(dir, 'other.flbk'), Buffer.from('{"not": "a backup"}'));
  await refused({ file: join(dir, 'other.flbk'), dataDir: join(dir, 'r3') }, 'BACKUP_UNSUPPORTED');
  mkdirSync(join(dir, 'used'));
  writeFileSync(join(dir, 'used', 'something'), 'x');
  await refused({ dataDir: join(dir, 'used') }, 'RESTORE_DIR_NOT_EMPTY');
  await refused({ dataDir: join(dir, 'r4'), id: 4 }, 'RESTORE_INVALID');
  // An empty directory is fine, and is where the data directory appears.
  mkdirSync(join(dir, 'empty'));
  await restoreBackup({
    file,
    dataDir: join(dir, 'empty'),
    id: 1,
    members: [1, 2, 3],
    clusterId: 'x',
    storage: 'sqlite',
  });
  assert.deepEqual(readdirSync(join(dir, 'empty')).sort(), [
    'flotilla-node.json',
    'group-0',
    'group-1',
    'group-2',
  ]);
});

void test('restore says what is wrong and what to do: a directory or a damaged file as the backup, a data directory it cannot create', async () => {
  // Both failed with a bare errno (EISDIR; ENOTDIR, EPERM or ENOENT naming the temporary work
  // directory) and no code of a backup's.
  mkdirSync(join(dir, 'a-directory'));
  await refused({ file: join(dir, 'a-directory'), dataDir: join(dir, 'r5') }, 'BACKUP_UNREADABLE');
  writeFileSync(join(dir, 'a-file'), 'x');
  await refused({ dataDir: join(dir, 'a-file', 'node1') }, 'RESTORE_DIR_UNWRITABLE');
  // A damaged file says what to do, and an empty one is not called truncated at byte 0.
  writeFileSync(join(dir, 'empty.flbk'), '');
  writeFileSync(join(dir, 'cut.flbk'), readFileSync(file).subarray(0, 1000));
  for (const [name, damage] of [
    ['cut.flbk', /truncated/],
    ['empty.flbk', /is empty \(0 bytes\)/],
  ] as const)
    await assert.rejects(
      restoreBackup({
        file: join(dir, name),
        dataDir: join(dir, 'r6'),
        id: 1,
        members: [1],
        clusterId: 'x',
        storage: 'wal',
      }),
      (e: unknown) => {
        assert.ok(e instanceof BackupError && e.code === 'BACKUP_CORRUPT', String(e));
        assert.match(e.message, damage);
        assert.match(e.message, /restore from another copy of the backup, or save a new one/);
        return true;
      },
    );
  // A directory no one may create a directory in, even root: /proc.
  if (process.platform === 'linux')
    await refused({ dataDir: '/proc/flotilla-restore-test' }, 'RESTORE_DIR_UNWRITABLE');
});

void test(
  'snapshot restore to a data directory two levels under /proc fails at once RESTORE_DIR_UNWRITABLE',
  { skip: process.platform !== 'linux' },
  async () => {
    // It hung: the restore made the parents with Node's recursive mkdir, which loops for ever
    // on /proc/a/b (mkdir says ENOENT for /proc/a, whose parent is there). In a process of its
    // own, so that a hang fails the bound and is ended by PID rather than holding this one.
    const r = await runCli(
      [
        'snapshot',
        'restore',
        file,
        '--data-dir',
        '/proc/flotilla-restore-test/node1',
        '--id',
        '1',
        '--initial-cluster',
        '1=127.0.0.1:1@http://127.0.0.1:2',
      ],
      20_000,
    );
    assert.equal(r.code, 1, `exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
    assert.match(
      r.stderr,
      /^flotilla: RESTORE_DIR_UNWRITABLE: Cannot create the data directory \/proc\/flotilla-restore-test\/node1: \/proc does not let this user create \/proc\/flotilla-restore-test \(ENOENT\); give --data-dir a path this user can create; nothing was written\n$/,
    );
  },
);

void test('planted: a backup missing its last chunk is refused, or (made consistent) caught by the check', async () => {
  // The last chunk dropped and the checksum sealed again: the file is sound, but the key-value
  // state counts a chunk it does not hold, and restore refuses to write a directory from it.
  const dropped = join(dir, 'dropped.flbk');
  await dropLastKvChunk(file, dropped, false);
  await refused({ file: dropped, dataDir: join(dir, 'r5') }, 'BACKUP_STATE_INVALID');
  // Made consistent (the store's header counts one chunk fewer), nothing in the file can tell:
  // the restored cluster starts, and the acknowledged-writes check finds the keys it lacks.
  const consistent = join(dir, 'consistent.flbk');
  await dropLastKvChunk(file, consistent, true);
  const { node, client } = await startRestored(consistent, 1, 'restored-planted');
  try {
    const missing = await missingWrites(acked, client, 'k/');
    // The last chunk holds the keys last in byte order: 2,500 = 2 × 1,024 + 452.
    assert.equal(missing.length, keys % 1024);
    assert.equal(missing[missing.length - 1], `k/${String(keys - 1).padStart(5, '0')}`);
  } finally {
    await client.close();
    await node.close();
  }
});

/** A server that answers the backup route with `body` and then `end`s or cuts the connection. */
async function fakeNode(body: Uint8Array, cut: boolean): Promise<{ url: string; server: Server }> {
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    res.write(body, () => {
      if (cut) res.destroy();
      else res.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

void test('save leaves nothing behind when the stream breaks off or arrives damaged', async () => {
  const bytes = readFileSync(file);
  const out = join(dir, 'save-fails');
  mkdirSync(out);
  const damaged = Buffer.from(bytes);
  damaged[bytes.length >> 1] = (damaged[bytes.length >> 1] as number) ^ 0x01;
  for (const [body, cut, code] of [
    [bytes.subarray(0, bytes.length >> 1), true, 'BACKUP_INCOMPLETE'],
    [bytes.subarray(0, bytes.length - 1), false, 'BACKUP_INCOMPLETE'],
    [damaged, false, 'BACKUP_CORRUPT'],
  ] as const) {
    const fake = await fakeNode(body, cut);
    try {
      await assert.rejects(saveBackup([fake.url], join(out, 'b.flbk')), (e: unknown) => {
        assert.ok(e instanceof BackupError, String(e));
        assert.equal(e.code, code, e.message);
        return true;
      });
    } finally {
      await new Promise((r) => fake.server.close(r));
    }
    assert.deepEqual(readdirSync(out), [], 'neither the file nor its temporary file is left');
  }
  // The whole file from the same fake is saved as it came.
  const fake = await fakeNode(bytes, false);
  try {
    const r = await saveBackup([fake.url], join(out, 'b.flbk'));
    assert.equal(r.sha256, saved.sha256);
    assert.deepEqual(readFileSync(join(out, 'b.flbk')), bytes);
  } finally {
    await new Promise((r) => fake.server.close(r));
  }
});

void test('save refuses a file it cannot write before asking any node, naming the path', async () => {
  // Before, the node streamed the backup and the first write failed as a bare ENOENT naming
  // the temporary file. The endpoint here answers nothing: the refusal must come before it.
  const [closed] = (await freePorts(1)) as [number];
  const endpoint = `http://127.0.0.1:${closed}`;
  const aFile = join(dir, 'not-a-dir');
  writeFileSync(aFile, 'x');
  mkdirSync(join(dir, 'a-dir'), { recursive: true });
  for (const [target, why] of [
    [join(dir, 'missing', 'b.flbk'), /directory .*missing does not exist/],
    [join(aFile, 'b.flbk'), /not-a-dir is not a directory/],
    [join(dir, 'a-dir'), /it is a directory/],
    // Writable by its mode bits for root, but no file can be created there: the node was asked
    // and the save failed as a bare ENOENT naming the temporary file.
    ...(process.platform === 'linux'
      ? ([['/proc/b.flbk', /cannot be created in \/proc|\/proc is not writable/]] as const)
      : []),
  ] as const) {
    await assert.rejects(saveBackup([endpoint], target), (e: unknown) => {
      assert.ok(e instanceof BackupError, String(e));
      assert.equal(e.code, 'BACKUP_UNWRITABLE', e.message);
      assert.ok(e.message.includes(target), e.message);
      assert.match(e.message, why);
      return true;
    });
  }
});

void test('save refuses options that cannot go together, or no endpoint, as usage errors', async () => {
  // Each was a failure (exit code 1): BAD_REQUEST for the first two, and for the last two
  // "CONNECTION: No endpoint served a backup: " followed by nothing, or by "Invalid URL".
  const target = join(dir, 'usage.flbk');
  for (const [args, says] of [
    [
      ['--data-dir', dir, '--endpoints', 'http://127.0.0.1:1'],
      /--data-dir .* or --endpoints .*not both/,
    ],
    [
      ['--include-uncommitted', '--endpoints', 'http://127.0.0.1:1'],
      /--include-uncommitted is for/,
    ],
    [['--endpoints', ''], /--endpoints lists no URL/],
    [['--endpoints', 'notaurl'], /"notaurl" is not an http:\/\/ or https:\/\/ URL/],
  ] as const) {
    const r = await runCli(['snapshot', 'save', target, ...args], 20_000);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, says);
  }
  assert.equal(existsSync(target), false);
});

void test('save from one endpoint that is down suggests naming several', async () => {
  // It said CONNECTION and the endpoint's error alone, though any member can serve a backup.
  const r = await runCli(
    ['snapshot', 'save', join(dir, 'down.flbk'), '--endpoints', 'http://127.0.0.1:1'],
    20_000,
  );
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /CONNECTION: No endpoint served a backup: http:\/\/127\.0\.0\.1:1: /);
  assert.match(r.stderr, /name several with --endpoints URL,URL,\.\.\./);
  assert.equal(existsSync(join(dir, 'down.flbk')), false);
});

void test('restore of an --id not in --initial-cluster is a usage error, before the file is read', async () => {
  // It was RESTORE_INVALID with exit code 1, though the command line contradicts itself.
  const target = join(dir, 'r-usage');
  const r = await runCli(
    [
      'snapshot',
      'restore',
      join(dir, 'no-such-file.flbk'),
      '--data-dir',
      target,
      '--id',
      '4',
      '--initial-cluster',
      '1=127.0.0.1:1@http://127.0.0.1:2,2=127.0.0.1:3@http://127.0.0.1:4',
    ],
    20_000,
  );
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /--id 4 is not in --initial-cluster \(1, 2\)/);
  assert.equal(existsSync(target), false);
});

void test('save from members that all know no leader says NO_LEADER and the way out', async () => {
  // It said CONNECTION and "retry", though every member answered and, with a majority that
  // lost its data, no leader can ever be elected.
  const servers: Server[] = [];
  const urls: string[] = [];
  for (let i = 0; i < 2; i++) {
    const s = createServer((_req: IncomingMessage, res: ServerResponse) => {
      res.writeHead(503, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          error: { code: 'NO_LEADER', message: 'waited for a leader in vain', indefinite: false },
        }),
      );
    });
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
    servers.push(s);
    urls.push(`http://127.0.0.1:${(s.address() as AddressInfo).port}`);
  }
  try {
    await assert.rejects(saveBackup(urls, join(dir, 'leaderless.flbk')), {
      code: 'NO_LEADER',
      message:
        /No member that answered knows a leader: .*flotilla snapshot save FILE --data-dir DIR/,
    });
  } finally {
    for (const s of servers) await new Promise((r) => s.close(r));
  }
});

/** A server that answers every request with `status` and an API error of `code`. */
async function refusingNode(
  status: number,
  code: string,
): Promise<{ url: string; server: Server }> {
  const server = createServer((_req: IncomingMessage, res: ServerResponse) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: { code, message: `refused ${code}`, indefinite: false } }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

void test('save asks the next member after one that timed out or could not reach its leader', async () => {
  // A 504 from the first endpoint ended the save, though the next member could serve it.
  const timedOut = await refusingNode(504, 'TIMEOUT');
  const cutOff = await refusingNode(502, 'FORWARD_FAILED');
  const good = await fakeNode(readFileSync(file), false);
  const out = join(dir, 'save-next');
  mkdirSync(out);
  try {
    const r = await saveBackup([timedOut.url, cutOff.url, good.url], join(out, 'b.flbk'));
    assert.equal(r.from, good.url);
    assert.equal(r.sha256, saved.sha256);
  } finally {
    for (const s of [timedOut, cutOff, good]) await new Promise((r) => s.server.close(r));
  }
});

void test('an online save stopped by a signal leaves no partial file', async () => {
  // The offline save removed its partial file on SIGINT; the online one left it behind.
  const bytes = readFileSync(file);
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    res.write(bytes.subarray(0, bytes.length >> 1)); // and then nothing, until the save stops
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const out = join(dir, 'save-signal');
  mkdirSync(out);
  try {
    for (const [signal, code] of [
      ['SIGINT', 130],
      ['SIGTERM', 143],
    ] as const) {
      const run = startCli(['snapshot', 'save', join(out, 'b.flbk'), '--endpoints', url]);
      await until(
        'the partial file written',
        () => readdirSync(out).some((f) => f.startsWith('b.flbk.part-')),
        20_000,
      );
      run.child.kill(signal);
      assert.equal(await exitOf(run, 20_000), code, run.out.stderr);
      assert.match(run.out.stderr, new RegExp(`stopped by ${signal}: nothing was saved`));
      assert.deepEqual(readdirSync(out), [], 'the partial file is removed');
    }
  } finally {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
});
