// Benchmarks that start node processes on data directories under the temp directory: Ctrl-C
// must end the processes and remove the directories (idle-groups: three per point; the
// snapshot transfer bench: a five-node cluster).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
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

/**
 * Runs bench `script` with TMPDIR set to a directory of its own until `nodes` node processes
 * run on it, sends SIGINT, and checks it exits 130 within `exitMs` leaving no process and
 * nothing in that directory. `whileRunning` looks at the directory before the signal.
 */
async function interruptMidRun(
  t: TestContext,
  o: {
    script: string;
    args: string[];
    nodes: number;
    exitMs: number;
    whileRunning?: (tmp: string) => void;
  },
): Promise<void> {
  const tmp = mkdtempSync(join(tmpdir(), 'bench-sigint-'));
  t.after(() => rmSync(tmp, { recursive: true, force: true }));
  const child = spawn(process.execPath, [join(repoRoot(), 'dist', 'bench', o.script), ...o.args], {
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
    () => child.exitCode === null && pidsMentioning(tmp).length === o.nodes,
    60_000,
    () => `${o.nodes} node processes; saw ${pidsMentioning(tmp).length}, output:\n${out}`,
  );
  o.whileRunning?.(tmp);
  child.kill('SIGINT');
  const code = await Promise.race([
    exited,
    new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error(`no exit after SIGINT:\n${out}`)), o.exitMs).unref(),
    ),
  ]);
  assert.equal(code, 130, out);
  assert.deepEqual(pidsMentioning(tmp), [], `node processes left running:\n${out}`);
  assert.deepEqual(readdirSync(tmp), [], `left under TMPDIR:\n${out}`);
}

void test('SIGINT mid-run ends the node processes and removes their data directory', (t) =>
  interruptMidRun(t, {
    script: 'host/idle-groups.js',
    args: ['--groups', '1', '--window-ms', '60000'],
    nodes: 3,
    exitMs: 15_000,
    // Running: three node processes on one data directory under TMPDIR.
    whileRunning: (tmp) => assert.equal(readdirSync(tmp).length, 1, readdirSync(tmp).join(', ')),
  }));

void test('SIGINT mid-run of the snapshot transfer bench stops its cluster and removes its directory', (t) =>
  interruptMidRun(t, {
    script: 'snapshot/snapshot-transfer-bench.js',
    args: ['--mb', '20'],
    nodes: 4,
    exitMs: 20_000,
  }));
