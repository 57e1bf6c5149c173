// The wake-up cost benchmark runs and prints its figures (a short run without clusters; the
// figures are docs/BENCHMARKS.md's business, not a test's), and refuses a bad option.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { promisify } from 'node:util';

const script = fileURLToPath(new URL('../../bench/machine/wakeups.js', import.meta.url));

void test('wakeups: a one-second run prints the CPU of a timer, a round trip, a pool trip and a system call', async () => {
  const { stdout } = await promisify(execFile)(process.execPath, [script, '--seconds', '1'], {
    timeout: 60_000,
  });
  const figures = [
    /^timer: ([\d.]+) µs of CPU per wake-up \((\d+) wake-ups\)$/m,
    /^ping-pong: ([\d.]+) µs of CPU per round trip, both processes \((\d+) round trips, p50 [\d.]+ µs\)$/m,
    /^thread pool: ([\d.]+) µs of CPU per trip \((\d+) trips\)$/m,
  ];
  for (const re of figures) {
    const m = re.exec(stdout);
    assert.ok(m !== null, `no ${String(re)} in:\n${stdout}`);
    assert.ok(Number(m[1]) > 0 && Number(m[2]) > 0, `a figure of zero in:\n${stdout}`);
  }
  assert.match(stdout, /^system call: [\d.]+ µs per fstat$/m);
  assert.doesNotMatch(stdout, /idle/, 'no cluster without --clusters');
});

void test('wakeups: a bad option is refused, naming it', async () => {
  await assert.rejects(
    promisify(execFile)(process.execPath, [script, '--seconds', '0'], { timeout: 30_000 }),
    (err: Error & { stderr?: string; code?: number }) =>
      /--seconds must be an integer 1\.\.600/.test(err.stderr ?? '') && err.code === 2,
  );
});
