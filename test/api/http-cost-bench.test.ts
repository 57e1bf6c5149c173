// The HTTP cost benchmark runs and prints figures (a short run; the figures are
// docs/BENCHMARKS.md's business, not a test's).

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { promisify } from 'node:util';

const script = fileURLToPath(new URL('../../bench/api/http-cost-bench.js', import.meta.url));

void test('http-cost-bench: one short round prints requests/s and the server CPU per request', async () => {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [script, '--clients', '4', '--seconds', '1', '--rounds', '1'],
    { timeout: 60_000 },
  );
  const m = /^4 clients: ([\d,]+) requests\/s, server CPU ([\d.]+) µs per request$/m.exec(stdout);
  assert.ok(m !== null, `unexpected output: ${stdout}`);
  assert.ok(Number((m[1] as string).replace(/,/g, '')) > 0, stdout);
  assert.ok(Number(m[2]) > 0 && Number.isFinite(Number(m[2])), stdout);
});

void test('http-cost-bench: a bad option is refused, naming it', async () => {
  await assert.rejects(
    promisify(execFile)(process.execPath, [script, '--clients', '0'], { timeout: 30_000 }),
    (err: Error & { stderr?: string }) =>
      /--clients must be an integer 1\.\.4096/.test(err.stderr ?? ''),
  );
});
