// What `npm pack` puts in the package a dependent installs: what the entry points, the
// `flotilla` command and the dashboard need at run time, and the docs; not the sources,
// tests, benchmarks or their compiled copies (before, 2,483 files and 4.7 MB, most of them
// tests). A file the list misses would make an installed package fail where the repository
// works, so the needed ones are named.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { repoRoot } from '../support/root.js';

/** The paths `npm pack` would include, without building or writing a tarball. */
function packed(): string[] {
  const r = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {
    cwd: repoRoot(),
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.equal(r.status, 0, `npm pack failed: ${r.stderr}`);
  const [pack] = JSON.parse(r.stdout) as [{ files: { path: string }[] }];
  return pack.files.map((f) => f.path);
}

/** What the package's files miss of `needed`, and hold of `excluded` (path prefixes). */
export function packProblems(
  files: readonly string[],
  needed: readonly string[],
  excluded: readonly string[],
): string[] {
  const have = new Set(files);
  return [
    ...needed.filter((f) => !have.has(f)).map((f) => `missing ${f}`),
    ...excluded
      .filter((prefix) => files.some((f) => f.startsWith(prefix)))
      .map((prefix) => `holds ${prefix}`),
  ];
}

const needed = [
  'package.json',
  'README.md',
  'LICENSE',
  'dist/src/raft/index.js',
  'dist/src/raft/index.d.ts',
  'dist/src/server/index.js',
  'dist/src/server/index.d.ts',
  'dist/src/client/index.js',
  'dist/src/client/index.d.ts',
  'dist/src/cli/main.js',
  // Loaded by URL at run time, not imported: a Worker's script and the page a node serves.
  'dist/src/storage/sqlite-worker.js',
  'dist/src/transport/liveness-thread.js',
  'dashboard/index.html',
  'dashboard/app.js',
  'docs/CLIENT.md',
];
const excluded = ['src/', 'test/', 'bench/', 'dist/test/', 'dist/bench/', 'dist/examples/'];

void test('the package holds what runs and its docs, and no sources, tests or benchmarks', () => {
  assert.deepEqual(packProblems(packed(), needed, excluded), []);
});

void test('the check catches a package that misses a needed file or holds a test', () => {
  // Planted: the list a package.json without "files" gave (the worker script dropped too).
  const planted = ['package.json', 'dist/src/raft/index.js', 'dist/test/raft/x.test.js'];
  const problems = packProblems(planted, needed, excluded);
  assert.ok(problems.includes('missing dist/src/storage/sqlite-worker.js'), problems.join('; '));
  assert.ok(problems.includes('holds dist/test/'), problems.join('; '));
});
