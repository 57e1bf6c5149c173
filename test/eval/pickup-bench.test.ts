// The pickup benchmark runs on a real cluster and prints its figures (a short run; the figures
// are docs/BENCHMARKS.md's business, not a test's), and refuses a bad option.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { promisify } from 'node:util';

const script = fileURLToPath(new URL('../../bench/queue/pickup.js', import.meta.url));

void test('pickup: three jobs to an idle worker print the add and pickup percentiles', async () => {
  const { stdout } = await promisify(execFile)(process.execPath, [script, '--jobs', '3'], {
    timeout: 120_000,
  });
  const m =
    /^3 jobs, one at a time to one idle worker, ms: add p50 ([\d.]+) p90 [\d.]+ p99 [\d.]+; pickup p50 ([\d.]+) p90 [\d.]+ p99 [\d.]+$/m.exec(
      stdout,
    );
  assert.ok(m !== null, `unexpected output: ${stdout}`);
  assert.ok(Number(m[1]) > 0 && Number(m[2]) > 0, stdout);
});

void test('pickup: a bad option is refused, naming it', async () => {
  await assert.rejects(
    promisify(execFile)(process.execPath, [script, '--jobs', '0'], { timeout: 30_000 }),
    (err: Error & { stderr?: string; code?: number }) =>
      /--jobs must be an integer 1\.\.100000/.test(err.stderr ?? '') && err.code === 2,
  );
});
