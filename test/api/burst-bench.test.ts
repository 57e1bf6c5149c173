// The burst benchmark runs against a real cluster and prints a line per round (a small burst;
// the figures are docs/BENCHMARKS.md's business, not a test's).

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { promisify } from 'node:util';

const script = fileURLToPath(new URL('../../bench/api/burst-bench.js', import.meta.url));

void test('burst-bench: a burst of clients writing once each is reported per round', async () => {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [script, '--clients', '40', '--rounds', '1'],
    { timeout: 120_000 },
  );
  const m =
    /^round 1: 40 clients, one write each: (\d+) acknowledged in (\d+) ms; gave up: (.+); longest Retry-After given up on: (\d+) ms; refused OVERLOADED by the nodes: node 1 (\d+), node 2 (\d+), node 3 (\d+)$/m.exec(
      stdout,
    );
  assert.ok(m !== null, `unexpected output: ${stdout}`);
  // 40 writes are well within what a node admits at once: none refused, none given up.
  assert.equal(m[1], '40', stdout);
  assert.equal(m[3], 'none', stdout);
  assert.deepEqual([m[5], m[6], m[7]], ['0', '0', '0'], stdout);
});

void test('burst-bench: a bad option is refused, naming it', async () => {
  await assert.rejects(
    promisify(execFile)(process.execPath, [script, '--clients', '0'], { timeout: 30_000 }),
    (err: Error & { stderr?: string }) =>
      /--clients must be an integer 1\.\.4096/.test(err.stderr ?? ''),
  );
});
