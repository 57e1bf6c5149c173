// The delays benchmark runs on a real cluster and prints its figures (a short run; the figures
// are docs/BENCHMARKS.md's business, not a test's), and refuses a bad option.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { promisify } from 'node:util';

const script = fileURLToPath(new URL('../../bench/queue/delays.js', import.meta.url));

void test('delays: one round of a 100 ms delay and backoff prints the waits beyond them', async () => {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [script, '--rounds', '1', '--delays', '100'],
    { timeout: 120_000 },
  );
  const m =
    /^delay 100: delayMs p50 (-?[\d.]+) max -?[\d.]+; backoff p50 (-?[\d.]+) max -?[\d.]+$/m.exec(
      stdout,
    );
  assert.ok(m !== null, `unexpected output: ${stdout}`);
  // A wait is the delay asked for, less the add's own commit at most: never much below it.
  assert.ok(Number(m[1]) > -100 && Number(m[2]) > -100, stdout);
});

void test('delays: a bad option is refused, naming it', async () => {
  await assert.rejects(
    promisify(execFile)(process.execPath, [script, '--delays', '100,0'], { timeout: 30_000 }),
    (err: Error & { stderr?: string; code?: number }) =>
      /--delays must be integers 1\.\.10000 ms/.test(err.stderr ?? '') && err.code === 2,
  );
});
