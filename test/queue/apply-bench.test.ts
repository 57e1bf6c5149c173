// The per-member apply benchmark (bench/queue/apply.ts) runs in its smoke mode and prints its
// figures: the script works and its replicas agree with the log's maker. No timing is asserted.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { repoRoot } from '../support/root.js';

const script = (): string => join(repoRoot(), 'dist', 'bench', 'queue', 'apply.js');

void test('the queue apply bench runs --quick and prints its figures', () => {
  const r = spawnSync(process.execPath, ['--expose-gc', script(), '--quick'], {
    encoding: 'utf8',
    timeout: 120_000,
  });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^Queue apply per member: 2,000 jobs/m);
  assert.match(r.stdout, /^apply: [\d.]+ us per job \(best round\), cpu [\d.]+ us per job/m);
  assert.match(r.stdout, /about \d+ bytes allocated per job/);
  assert.match(r.stdout, /^leader only: [\d.]+ us per job/m);
});

void test('the queue apply bench --json gives every figure and the digests builds compare', () => {
  const r = spawnSync(process.execPath, [script(), '--quick', '--json', '--batch', '5'], {
    encoding: 'utf8',
    timeout: 120_000,
  });
  assert.equal(r.status, 0, r.stderr);
  const s = JSON.parse(r.stdout) as Record<string, unknown>;
  assert.equal(s['jobs'], 2_000);
  assert.equal(s['batch'], 5);
  // Two entries a job, and a claim for each of the 32 workers before the first.
  assert.equal(s['entries'], 2 * 2_000 + 2 * 32);
  for (const k of ['applyUsPerJob', 'cpuUsPerJob', 'leaderEncodeUsPerJob'])
    assert.ok(typeof s[k] === 'number' && s[k] > 0, `${k}: ${String(s[k])}`);
  assert.match(String(s['resultsDigest']), /^[0-9a-f]{64}$/);
  assert.match(String(s['stateDigest']), /^[0-9a-f]{64}$/);
});

void test('the queue apply bench refuses a bad count in one line', () => {
  const r = spawnSync(process.execPath, [script(), '--workers', '0'], {
    encoding: 'utf8',
    timeout: 30_000,
  });
  assert.equal(r.status, 2, r.stdout);
  assert.match(r.stderr, /--workers must be an integer from 1 to 1000, got "0"/);
});
