// Disaster recovery end to end, with real processes and the `flotilla` command: a 3-node
// cluster under write load is saved (`snapshot save`, asking a follower), the file restored
// into the members of a new 3-node cluster (`snapshot restore`), which starts and holds every
// write acknowledged before the save started, the jobs queued then, and takes new writes.
// Planted: the same file with its last key-value chunk dropped and re-sealed (a save or restore
// that loses a chunk) starts a cluster in which the same check finds the lost keys.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { cliEntry, initialClusterSpec } from '../../src/cli/cluster.js';
import { dropLastKvChunk, missingWrites } from '../support/backups.js';
import { TestCluster } from './harness.js';

const clusters: TestCluster[] = [];
after(async () => {
  for (const c of clusters) await c.stop();
});

/** Runs `flotilla ARGS` to its end (bounded); returns its exit code and output. */
function cli(args: readonly string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cliEntry(), ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString('utf8')));
    child.stderr.on('data', (b: Buffer) => (err += b.toString('utf8')));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out, err });
    });
  });
}

/** Restores `file` into every member of `target` (a cluster not started yet). */
async function restoreInto(target: TestCluster, file: string, clusterId: string): Promise<void> {
  for (const m of target.members) {
    const r = await cli([
      'snapshot',
      'restore',
      file,
      '--data-dir',
      m.dataDir,
      '--id',
      String(m.id),
      '--initial-cluster',
      initialClusterSpec(target.members),
      '--cluster-id',
      clusterId,
    ]);
    assert.equal(r.code, 0, `restore of member ${m.id} failed: ${r.err}`);
  }
}

void test(
  'a backup saved under write load restores into a new cluster with every acknowledged write',
  { timeout: 180_000 },
  async () => {
    const source = await TestCluster.create({
      nodes: 3,
      extraArgs: ['--snapshot-every-entries', '500'],
    });
    clusters.push(source);
    await source.start();
    const client = source.client();
    const acked = new Map<string, string>();
    // A full chunk's worth (1,024 records) of keys that sort last and are all written before
    // the save: whatever the load adds, the store's last chunk holds only these (the plant).
    for (let b = 0; b < 11; b++) {
      const ops = Array.from({ length: 100 }, (_, i) => ({
        put: { key: `z/${String(b * 100 + i).padStart(5, '0')}`, value: `z${b * 100 + i}` },
      }));
      await client.txn([], ops);
      for (const o of ops) acked.set(o.put.key, o.put.value);
    }
    for (let i = 0; i < 5; i++) await client.queue('jobs').add('work', { i }, { id: `job-${i}` });
    // The load: writers that keep writing new keys until the save finished.
    let writing = true;
    let failed: unknown = null;
    const writers = Array.from({ length: 8 }, async (_, w) => {
      try {
        for (let seq = 0; writing; seq++) {
          const key = `w/${w}/${String(seq).padStart(6, '0')}`;
          const value = `${w}:${seq}`;
          await client.put(key, value);
          acked.set(key, value);
        }
      } catch (err) {
        failed ??= err;
      }
    });
    try {
      const deadline = Date.now() + 60_000;
      while (acked.size < 1_100 + 800 && failed === null) {
        if (Date.now() > deadline) assert.fail(`only ${acked.size} writes acknowledged in 60 s`);
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.equal(failed, null, `a writer failed: ${String(failed)}`);
      const beforeSave = new Map(acked);
      const leader = await source.waitForLeader();
      const follower = source.members.find((m) => m.id !== leader);
      assert.ok(follower !== undefined);
      const file = join(source.dir, 'cluster.flbk');
      const saved = await cli(['snapshot', 'save', file, '--endpoints', follower.client]);
      const sizeAfterSave = acked.size;
      assert.equal(saved.code, 0, `save failed: ${saved.err}`);
      const report = JSON.parse(saved.out) as { groups: { group: number; index: number }[] };
      assert.deepEqual(
        report.groups.map((g) => g.group),
        [0, 1],
      );
      writing = false;
      await Promise.all(writers);
      assert.equal(failed, null, `a writer failed: ${String(failed)}`);
      assert.ok(sizeAfterSave > beforeSave.size, 'writes went on while the save ran');

      const restored = await TestCluster.create({
        nodes: 3,
        extraArgs: ['--cluster-id', 'e2e-restored'],
      });
      clusters.push(restored);
      await restoreInto(restored, file, 'e2e-restored');
      await restored.start();
      const rc = restored.client();
      try {
        assert.deepEqual(await missingWrites(beforeSave, rc, ''), [], restored.dumpLogs());
        // Whatever the restored cluster holds was written, with the value written.
        const all = await rc.range('\u0000', { rangeEnd: '\u0000' });
        assert.equal(all.more, false);
        for (const kv of all.kvs) assert.equal(kv.value, acked.get(kv.key), kv.key);
        for (let i = 0; i < 5; i++)
          assert.equal((await rc.queue('jobs').get(`job-${i}`)).job?.name, 'work');
        await rc.put('after-restore', 'yes');
        assert.equal((await rc.get('after-restore'))?.value, 'yes');
        const members = await rc.members();
        assert.deepEqual(
          members.members.map((m) => m.id),
          [1, 2, 3],
        );
      } finally {
        await rc.close();
      }

      // The command refuses a used data directory and a damaged file, with its code.
      const used = restored.member(1);
      const again = await cli([
        'snapshot',
        'restore',
        file,
        '--data-dir',
        used.dataDir,
        '--id',
        '1',
        '--initial-cluster',
        initialClusterSpec(restored.members),
      ]);
      assert.equal(again.code, 1);
      assert.match(again.err, /RESTORE_DIR_NOT_EMPTY/);
      const damaged = join(source.dir, 'damaged.flbk');
      const bytes = readFileSync(file);
      bytes[bytes.length >> 1] = (bytes[bytes.length >> 1] as number) ^ 0xff;
      writeFileSync(damaged, bytes);
      const bad = await cli([
        'snapshot',
        'restore',
        damaged,
        '--data-dir',
        join(source.dir, 'never'),
        '--id',
        '1',
        '--initial-cluster',
        initialClusterSpec(restored.members),
      ]);
      assert.equal(bad.code, 1);
      assert.match(bad.err, /BACKUP_CORRUPT: Backup checksum does not match/);

      // Planted: the last key-value chunk lost, the file re-sealed and made consistent.
      const planted = join(source.dir, 'planted.flbk');
      await dropLastKvChunk(file, planted, true);
      const lossy = await TestCluster.create({ nodes: 1, extraArgs: ['--cluster-id', 'lossy'] });
      clusters.push(lossy);
      await restoreInto(lossy, planted, 'lossy');
      await lossy.start();
      const lc = lossy.client();
      try {
        const missing = await missingWrites(beforeSave, lc, '');
        assert.ok(missing.length > 0, 'the check finds the keys of the dropped chunk');
        assert.ok(
          missing.every((k) => k.startsWith('z/')),
          `only keys of the last chunk: ${missing.slice(0, 5).join(', ')}`,
        );
      } finally {
        await lc.close();
      }
    } finally {
      writing = false;
      await Promise.allSettled(writers);
      await client.close();
    }
  },
);
