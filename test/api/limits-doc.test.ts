// docs/API.md states how many bytes one write may take in the log by default (a put of a key and
// a value at their limits with its session fields). The server derives that figure from the
// limits (maxWriteEnvelopeBytes) and names it in every TXN_TOO_LARGE message, so an operator
// reads both: they must agree.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { defaultLimits } from '../../src/base/limits.js';
import { maxWriteEnvelopeBytes } from '../../src/kv/machine.js';
import { repoRoot } from '../support/root.js';

/** The default entry size API.md states, or a message saying it found none. */
function statedEntryBytes(doc: string): number | string {
  const m = /with its session fields \(([\d,]+) bytes by default\)/.exec(doc.replace(/\s+/g, ' '));
  if (m === null) return 'API.md no longer states the default entry size';
  return Number((m[1] as string).replaceAll(',', ''));
}

void test('API.md states the default size of one write in the log as the server computes it', () => {
  const doc = readFileSync(join(repoRoot(), 'docs', 'API.md'), 'utf8');
  assert.equal(statedEntryBytes(doc), maxWriteEnvelopeBytes(defaultLimits));
});

void test('the check reads the figure a planted wrong doc states', () => {
  const planted = 'a value at their limits with its session fields\n(1,050,084 bytes by default);';
  assert.equal(statedEntryBytes(planted), 1_050_084);
  assert.notEqual(statedEntryBytes(planted), maxWriteEnvelopeBytes(defaultLimits));
  assert.match(String(statedEntryBytes('nothing here')), /no longer states/);
});
