// The write-tail benchmark runs on real clusters and prints its figures (a short run; the
// figures are docs/BENCHMARKS.md's business, not a test's), and refuses a bad option.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { promisify } from 'node:util';

const script = fileURLToPath(new URL('../../bench/snapshot/write-tail.js', import.meta.url));

void test('write-tail: one short round per setting prints each point and the medians', async () => {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [script, '--percents', '100,25', '--rounds', '1', '--clients', '4', '--duration', '1'],
    { timeout: 120_000 },
  );
  for (const percent of [100, 25]) {
    const point = new RegExp(
      `^round 1, encode ${percent} %, 4 clients: (\\d+) writes/s, p50 [\\d.]+ ms, p99 ([\\d.]+) ms, max [\\d.]+ ms, \\d+ snapshots saved$`,
      'm',
    ).exec(stdout);
    assert.ok(point !== null, `no point for ${percent} %: ${stdout}`);
    assert.ok(Number(point[1]) > 0 && Number(point[2]) > 0, stdout);
    assert.match(stdout, new RegExp(`^encode ${percent} %, 4 clients: \\d+ writes/s, p99 `, 'm'));
  }
});

void test('write-tail: a bad option is refused, naming it', async () => {
  await assert.rejects(
    promisify(execFile)(process.execPath, [script, '--percents', '0,25'], { timeout: 30_000 }),
    (err: Error & { stderr?: string; code?: number }) =>
      /--percents must be a list of integers 1\.\.100, got "0,25"/.test(err.stderr ?? '') &&
      err.code === 2,
  );
});
