// The large-values memory benchmark (bench/kv/large-values.ts) runs in a short mode: a real
// 3-member cluster, one small round, one line of figures per reading, and nothing left behind.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { repoRoot } from '../support/root.js';

const script = join(repoRoot(), 'dist', 'bench', 'kv', 'large-values.js');

void test('the large-values benchmark reports each member before and after a round', () => {
  const r = spawnSync(
    process.execPath,
    [script, '--keys', '12', '--value-kib', '64', '--rounds', '1', '--clients', '4'],
    { encoding: 'utf8', timeout: 60_000 },
  );
  assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
  const lines = r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.deepEqual(
    lines.map((l) => l['label']),
    ['empty', 'after round 1'],
  );
  const after = lines[1] as Record<string, { rssMiB: number; logLast: number }>;
  const members = Object.keys(after).filter((k) => k !== 'label');
  assert.equal(members.length, 3, JSON.stringify(after));
  assert.equal(members.filter((k) => k.endsWith('(leader)')).length, 1);
  for (const m of members) {
    const f = after[m] as { rssMiB: number; logLast: number };
    assert.ok(f.rssMiB > 0 && f.logLast >= 12, `${m}: ${JSON.stringify(f)}`);
  }
  assert.match(r.stderr, /round 1: 12 puts in/);
});

void test('the large-values benchmark refuses a bad option in one line', () => {
  const r = spawnSync(process.execPath, [script, '--value-kib', '2048'], {
    encoding: 'utf8',
    timeout: 30_000,
  });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /^bad --value-kib 2048: an integer in 1\.\.1024/);
  assert.doesNotMatch(r.stderr, /\n\s+at /, r.stderr);
});
