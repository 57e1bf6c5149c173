// docs/CONFIG.md documents every configuration field and its environment variable exactly as
// the code reads them: its table must equal the one rendered from the code. REWRITE=1
// regenerates the table after an intended change.

import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { configFields, configFromEnv, envVarName } from '../../src/server/config.js';
import { configReferenceRows, renderConfigReference } from '../../src/server/config-reference.js';
import { repoRoot } from '../support/root.js';

const path = join(repoRoot(), 'docs', 'CONFIG.md');
const start = '<!-- config-reference:start -->';
const end = '<!-- config-reference:end -->';

/** The table's cells, row by row, whatever the padding. */
function cells(table: string): string[][] {
  return table
    .split('\n')
    .filter((l) => l.startsWith('|') && !/^\|[\s|-]+\|$/.test(l))
    .map((l) =>
      l
        .slice(1, -1)
        .split(/(?<!\\)\|/)
        .map((c) => c.trim()),
    );
}

void test('docs/CONFIG.md lists every config field and environment variable as the code has them', () => {
  const doc = readFileSync(path, 'utf8');
  const i = doc.indexOf(start);
  const j = doc.indexOf(end);
  assert.ok(i >= 0 && j > i, `${path} lacks the ${start} ... ${end} markers`);
  if (process.env['REWRITE'] === '1') {
    const table = renderConfigReference();
    writeFileSync(path, `${doc.slice(0, i + start.length)}\n\n${table}\n\n${doc.slice(j)}`);
    return;
  }
  const documented = cells(doc.slice(i + start.length, j));
  const expected = configReferenceRows().map((r) => r.map((c) => c.replace(/\|/g, '\\|')));
  assert.deepEqual(
    documented,
    expected,
    'docs/CONFIG.md is out of date: rebuild, then run REWRITE=1 node --test dist/test/server/config-reference.test.js',
  );
});

void test('each documented environment variable sets its field', () => {
  for (const field of configFields) {
    const name = envVarName(field);
    assert.match(name, /^FLOTILLA_[A-Z_]+$/);
    assert.deepEqual(configFromEnv({ [name]: 'x' }), { [field]: 'x' }, name);
  }
  assert.equal(envVarName('snapshotEveryEntries'), 'FLOTILLA_SNAPSHOT_EVERY_ENTRIES');
});
