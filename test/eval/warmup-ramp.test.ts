// The warm-up ramp runs and prints one line per window with the throughput and the members'
// CPU per operation split by thread (a short run on a real 3-member cluster; the figures are
// docs/BENCHMARKS.md's business, not a test's).

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { promisify } from 'node:util';

const script = fileURLToPath(new URL('../../bench/eval/warmup-ramp.js', import.meta.url));

void test('warmup-ramp: a short run prints a line per window, CPU split by thread', async () => {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [script, '--seconds', '3', '--window', '1'],
    { timeout: 90_000 },
  );
  const lines = [
    ...stdout.matchAll(/^ +\d+ s +(\d+) ops\/s +(\d+) µs \((\d+) \/ (\d+) \/ (\d+)\)$/gm),
  ];
  assert.ok(lines.length >= 2, `expected a line per window:\n${stdout}`);
  for (const m of lines) {
    assert.ok(Number(m[1]) > 0, `no operations in a window:\n${stdout}`);
    const [total, main, v8, other] = [m[2], m[3], m[4], m[5]].map(Number) as [
      number,
      number,
      number,
      number,
    ];
    assert.ok(main > 0, `the event loop used no CPU:\n${stdout}`);
    // The parts are rounded apart from their total.
    assert.ok(Math.abs(main + v8 + other - total) <= 2, `the parts do not add up:\n${stdout}`);
  }
});

void test('warmup-ramp: a bad option is refused, naming it', async () => {
  await assert.rejects(
    promisify(execFile)(process.execPath, [script, '--load', 'deletes'], { timeout: 30_000 }),
    (err: Error & { stderr?: string }) => /--load must be writes or reads/.test(err.stderr ?? ''),
  );
});
