// docs/API.md and docs/CLIENT.md list every error code exactly as src/base/errors.ts and the
// HTTP status table have them. REWRITE=1 regenerates both tables after an intended change.

import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  errorTableProblems,
  renderErrorTable,
  rewriteErrorTable,
  type ErrorTable,
} from '../../src/api/error-reference.js';
import { allErrorCodes } from '../../src/base/errors.js';
import { repoRoot } from '../support/root.js';

const docs: [string, ErrorTable][] = [
  ['API.md', 'node'],
  ['CLIENT.md', 'client'],
];

for (const [name, table] of docs) {
  void test(`docs/${name} lists every ${table} error code as the code has it`, () => {
    const path = join(repoRoot(), 'docs', name);
    const doc = readFileSync(path, 'utf8');
    if (process.env['REWRITE'] === '1') {
      writeFileSync(path, rewriteErrorTable(doc, table));
      return;
    }
    assert.deepEqual(
      errorTableProblems(doc, table),
      [],
      `docs/${name} is out of date: rebuild, then run REWRITE=1 node --test dist/test/api/error-reference.test.js`,
    );
  });
}

void test('the two tables together hold every code once', () => {
  const rendered = renderErrorTable('node') + '\n' + renderErrorTable('client');
  for (const code of allErrorCodes) {
    const rows = rendered.split('\n').filter((l) => l.startsWith(`| \`${code}\` `));
    assert.equal(rows.length, 1, `${code} appears in ${rows.length} rows`);
  }
});

void test('an undocumented, a misdocumented or an invented code is caught', () => {
  const doc = rewriteErrorTable('<!-- error-codes:start -->\n<!-- error-codes:end -->\n', 'node');
  assert.deepEqual(errorTableProblems(doc, 'node'), []);
  const missing = doc
    .split('\n')
    .filter((l) => !l.startsWith('| `OVERLOADED` '))
    .join('\n');
  assert.deepEqual(errorTableProblems(missing, 'node'), ['`OVERLOADED` is not documented']);
  const wrongStatus = doc.replace(/^\| `TIMEOUT` (\s*)\| 504 /m, '| `TIMEOUT` $1| 503 ');
  assert.match(errorTableProblems(wrongStatus, 'node').join('\n'), /^`TIMEOUT` is documented as/);
  const invented = doc.replace(
    '<!-- error-codes:end -->',
    '| `NO_SUCH_CODE` | 400 | no | made up |\n<!-- error-codes:end -->',
  );
  assert.deepEqual(errorTableProblems(invented, 'node'), [
    '`NO_SUCH_CODE` is documented but is no such code',
  ]);
  assert.deepEqual(errorTableProblems('no markers here', 'node'), [
    'no <!-- error-codes:start --> ... <!-- error-codes:end --> markers',
  ]);
});
