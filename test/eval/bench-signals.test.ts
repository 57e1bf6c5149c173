// Benchmarks that start node processes on data directories under the temp directory: Ctrl-C
// must end the processes and remove the directories (idle-groups: three per point; the
// snapshot transfer bench: a five-node cluster).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { repoRoot } from '../support/root.js';
import { pidsMentioning } from '../support/procs.js';

/** Polls `cond` every 50 ms for at most `ms`; fails with `what()` if it never holds. */
async function waitFor(cond: () => boolean, ms: number, what: () => string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    assert.ok(Date.now() < deadline, `not within ${ms} ms: ${what()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

void test('SIGINT mid-run ends the node processes and removes their data directory', async (t) => {
  const tmp = mkdtempSync(join(tmpdir(), 'idle-sigint-'));
  t.after(() => rmSync(tmp, { recursive: true, force: true }));
  const script = join(repoRoot(), 'dist', 'bench', 'host', 'idle-groups.js');
  const child = spawn(process.execPath, [script, '--groups', '1', '--window-ms', '60000'], {
    env: { ...process.env, TMPDIR: tmp },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let out = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString('utf8')));
  child.stderr.on('data', (b: Buffer) => (out += b.toString('utf8')));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  // Running: three node processes on a data directory under TMPDIR.
  await waitFor(
    () => child.exitCode === null && pidsMentioning(tmp).length === 3,
    60_000,
    () => `three node processes; saw ${pidsMentioning(tmp).length}, output:\n${out}`,
  );
  assert.equal(readdirSync(tmp).length, 1, readdirSync(tmp).join(', '));
  child.kill('SIGINT');
  const code = await Promise.race([
    exited,
    new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error(`no exit after SIGINT:\n${out}`)), 15_000).unref(),
    ),
  ]);
  assert.equal(code, 130, out);
  assert.deepEqual(pidsMentioning(tmp), [], `node processes left running:\n${out}`);
  assert.deepEqual(readdirSync(tmp), [], `left under TMPDIR:\n${out}`);
});

void test('SIGINT mid-run of the snapshot transfer bench stops its cluster and removes its directory', async (t) => {
  const tmp = mkdtempSync(join(tmpdir(), 'snap-sigint-'));
  t.after(() => rmSync(tmp, { recursive: true, force: true }));
  const script = join(repoRoot(), 'dist', 'bench', 'snapshot', 'snapshot-transfer-bench.js');
  const child = spawn(process.execPath, [script, '--mb', '20'], {
    env: { ...process.env, TMPDIR: tmp },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let out = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString('utf8')));
  child.stderr.on('data', (b: Buffer) => (out += b.toString('utf8')));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  await waitFor(
    () => child.exitCode === null && pidsMentioning(tmp).length === 4,
    60_000,
    () => `four node processes; saw ${pidsMentioning(tmp).length}, output:\n${out}`,
  );
  child.kill('SIGINT');
  const code = await Promise.race([
    exited,
    new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error(`no exit after SIGINT:\n${out}`)), 20_000).unref(),
    ),
  ]);
  assert.equal(code, 130, out);
  assert.deepEqual(pidsMentioning(tmp), [], `node processes left running:\n${out}`);
  assert.deepEqual(readdirSync(tmp), [], `left under TMPDIR:\n${out}`);
});
