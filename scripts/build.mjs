#!/usr/bin/env node
// Compiles the TypeScript tree (src, test, bench, examples) into dist/ with tsc.
//
//   node scripts/build.mjs              build now (npm run build, and `prepare` on npm ci)
//   node scripts/build.mjs --if-stale   build only if a source changed since the last build
//
// The stale check compares modification times: every .ts file under src/, test/, bench/ and
// examples/, the directories themselves (a file added, removed or renamed changes its
// directory's time), tsconfig.json and package.json, against dist/.build-stamp. The stamp is
// written only after a successful build and dated when that build started, so an edit made
// during a build is seen by the next check. It takes tens of milliseconds where
// `tsc --incremental` with nothing to do takes over a second.
//
// Plain JavaScript on purpose: it must run before anything is compiled.

import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const stamp = join(root, 'dist', '.build-stamp');
const sourceDirs = ['src', 'test', 'bench', 'examples'];
const sourceFiles = ['tsconfig.json', 'package.json'];

/** The newest modification time (ms) among the build's inputs. */
function newestInput() {
  let newest = 0;
  const see = (path) => {
    newest = Math.max(newest, statSync(path).mtimeMs);
  };
  for (const f of sourceFiles) see(join(root, f));
  // An explicit stack rather than recursion; the tree is a few hundred entries.
  const stack = sourceDirs.map((d) => join(root, d)).filter((d) => existsSync(d));
  while (stack.length > 0) {
    const dir = stack.pop();
    see(dir);
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, e.name);
      if (e.isDirectory()) stack.push(path);
      else if (e.isFile() && e.name.endsWith('.ts')) see(path);
    }
  }
  return newest;
}

function isStale() {
  if (!existsSync(stamp)) return 'no previous build';
  const built = statSync(stamp).mtimeMs;
  return newestInput() > built ? 'sources changed since the last build' : null;
}

function build(reason) {
  let tsc;
  try {
    tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  } catch {
    // `npm ci --omit=dev` installs no compiler, and has nothing to build with.
    process.stderr.write(
      'build: typescript is not installed (dev dependencies omitted?); skipped\n',
    );
    return 0;
  }
  if (reason !== null) process.stderr.write(`build: compiling TypeScript (${reason})...\n`);
  const started = new Date();
  const r = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.json')], {
    stdio: 'inherit',
  });
  if (r.status !== 0) return r.status ?? 1;
  writeFileSync(stamp, `${started.toISOString()}\n`);
  utimesSync(stamp, started, started);
  return 0;
}

const ifStale = process.argv.includes('--if-stale');
const reason = ifStale ? isStale() : null;
process.exitCode = ifStale && reason === null ? 0 : build(reason);
