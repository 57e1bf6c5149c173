// docs/CLIENT.md's example of the Raft core (between its raft-example markers) is a whole
// program: this runs it as a program depending on the package would, importing
// `flotilla/raft` by name, so the example cannot drift from the core it documents.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { repoRoot } from '../support/root.js';

const root = repoRoot();

/** The program between the markers of docs/CLIENT.md. */
function docExample(): string {
  const doc = readFileSync(join(root, 'docs', 'CLIENT.md'), 'utf8');
  const m = /<!-- raft-example:start -->\s*```js\n([\s\S]*?)\n```\s*<!-- raft-example:end -->/.exec(
    doc,
  );
  assert.ok(m?.[1] !== undefined, 'docs/CLIENT.md has no raft-example block');
  return m[1];
}

/**
 * Runs `program` from a file inside the package (gitignored .tmp/), where `flotilla/raft`
 * resolves through package.json's `exports` as it does in a dependent's node_modules.
 */
function run(program: string): { status: number | null; stdout: string; stderr: string } {
  const dir = join(root, '.tmp');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `raft-example-${process.pid}.mjs`);
  writeFileSync(file, program);
  try {
    const r = spawnSync(process.execPath, [file], { encoding: 'utf8', timeout: 30_000 });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  } finally {
    rmSync(file, { force: true });
  }
}

void test("CLIENT.md's flotilla/raft example runs: three nodes agree on the counter and serve a read", () => {
  const r = run(docExample());
  assert.equal(r.status, 0, `the example failed:\n${r.stderr}`);
  assert.equal(r.stdout, '[ 15, 15, 15 ]\nread 15 at index 6\n', r.stdout);
});

void test('the runner catches an example that breaks the Ready contract', () => {
  // Planted: the votes and append acknowledgements are never sent, so no leader is elected.
  const example = docExample();
  const planted = example.replace('network.push(...rd.messagesAfterPersist);', '');
  assert.notEqual(planted, example, 'the plant found nothing to remove');
  const r = run(planted);
  assert.notEqual(r.status, 0, `the broken example passed:\n${r.stdout}`);
  assert.match(r.stderr, /no leader elected/);
});
