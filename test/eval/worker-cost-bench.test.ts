// The Worker's cost benchmark runs and prints its figures (a short run; the figures are
// docs/BENCHMARKS.md's business, not a test's), completes every job it hands out, and refuses a
// bad option.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { promisify } from 'node:util';

const script = fileURLToPath(new URL('../../bench/queue/worker-cost.js', import.meta.url));

void test('worker cost: two short rounds print the CPU per job', async () => {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [script, '--jobs', '2000', '--concurrency', '8', '--rounds', '2'],
    { timeout: 60_000 },
  );
  assert.match(stdout, /^Worker with 8 slots, 2000 jobs a round, in-process transport$/m);
  const rounds = [...stdout.matchAll(/^round (\d): ([\d.]+) µs of CPU per job, ([\d.]+) µs/gm)];
  assert.deepEqual(
    rounds.map((m) => m[1]),
    ['1', '2'],
    stdout,
  );
  for (const m of rounds) assert.ok(Number(m[2]) > 0 && Number(m[3]) > 0, stdout);
});

void test('worker cost: a bad option is refused, naming it', async () => {
  await assert.rejects(
    promisify(execFile)(process.execPath, [script, '--concurrency', '0'], { timeout: 30_000 }),
    (err: Error & { stderr?: string; code?: number }) =>
      /--concurrency must be an integer 1\.\.1024, got 0/.test(err.stderr ?? '') && err.code === 2,
  );
});
