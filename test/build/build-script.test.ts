// scripts/build.mjs --if-stale, which `npm start` runs: it compiles when a source changed
// (edited, added or removed) or the last build failed, and otherwise does nothing. Run on a
// small tree of its own so the repository's dist/ is never touched.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { repoRoot } from '../support/root.js';

const root = repoRoot();
const tree = mkdtempSync(join(tmpdir(), 'flotilla-build-'));
after(() => rmSync(tree, { recursive: true, force: true }));

function setUpTree(): void {
  mkdirSync(join(tree, 'scripts'));
  mkdirSync(join(tree, 'src'));
  copyFileSync(join(root, 'scripts', 'build.mjs'), join(tree, 'scripts', 'build.mjs'));
  symlinkSync(join(root, 'node_modules'), join(tree, 'node_modules'));
  writeFileSync(join(tree, 'package.json'), '{ "type": "module" }\n');
  writeFileSync(
    join(tree, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        target: 'ES2022',
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        outDir: 'dist',
        rootDir: '.',
        strict: true,
        skipLibCheck: true,
        types: [],
      },
      include: ['src'],
    }),
  );
  writeFileSync(join(tree, 'src', 'a.ts'), 'export const a: number = 1;\n');
}

/** One run of the stale build; whether it compiled and its exit code. */
function buildIfStale(): { compiled: boolean; status: number | null; stderr: string } {
  const r = spawnSync(process.execPath, [join(tree, 'scripts', 'build.mjs'), '--if-stale'], {
    encoding: 'utf8',
    timeout: 120_000, // tsc on a loaded 2-core machine
  });
  return { compiled: /compiling TypeScript/.test(r.stderr), status: r.status, stderr: r.stderr };
}

/**
 * As if `path` were edited a minute after the last build: the stamp is dated a minute back
 * and the file now (file systems with coarse times would hide an edit made right away).
 */
function editedAfterBuild(path: string): void {
  const earlier = new Date(Date.now() - 60_000);
  utimesSync(join(tree, 'dist', '.build-stamp'), earlier, earlier);
  const now = new Date();
  utimesSync(path, now, now);
}

void test('build --if-stale compiles only when a source changed or the last build failed', () => {
  setUpTree();
  const first = buildIfStale();
  assert.deepEqual([first.compiled, first.status], [true, 0], first.stderr);
  assert.ok(existsSync(join(tree, 'dist', 'src', 'a.js')));

  const again = buildIfStale();
  assert.deepEqual([again.compiled, again.status], [false, 0], 'up to date: nothing to do');

  editedAfterBuild(join(tree, 'src', 'a.ts'));
  assert.equal(buildIfStale().compiled, true, 'an edited source');
  assert.equal(buildIfStale().compiled, false);

  writeFileSync(join(tree, 'src', 'b.ts'), 'export const b: number = 2;\n');
  editedAfterBuild(join(tree, 'src'));
  const added = buildIfStale();
  assert.equal(added.compiled, true, 'a source added (its directory changed)');
  assert.ok(existsSync(join(tree, 'dist', 'src', 'b.js')));

  writeFileSync(join(tree, 'src', 'b.ts'), 'export const b: number = "two";\n');
  editedAfterBuild(join(tree, 'src', 'b.ts'));
  const broken = buildIfStale();
  assert.equal(broken.compiled, true);
  assert.notEqual(broken.status, 0, 'a type error fails the build');
  assert.equal(buildIfStale().compiled, true, 'a failed build leaves the tree stale');
});
