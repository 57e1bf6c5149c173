// Histories round-trip through JSONL files, and a damaged file is refused with its line number.

import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { CheckError, parseHistory, readHistory, writeHistory } from '../../src/check/index.js';
import { cas, r, unknown, w } from './ops.js';

void test('writeHistory writes one JSON object per line and readHistory reads it back', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'flotilla-check-'));
  try {
    const history = [
      w(1, 0, 1, 'a'),
      unknown(w(2, 2, null, null)),
      r(3, 4, 5, 'a'),
      cas(1, [6, 7], ['a', 'b'], true),
    ];
    const path = join(dir, 'history.jsonl');
    await writeHistory(path, history);
    const text = await readFile(path, 'utf8');
    assert.equal(text.split('\n').filter((l) => l !== '').length, history.length);
    assert.deepEqual(await readHistory(path), history);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

void test('parseHistory names the broken line and validates what it parsed', () => {
  const good = JSON.stringify(w(1, 0, 1, 'a'));
  assert.throws(
    () => parseHistory(`${good}\n\n{"client": 1,`),
    (err: unknown) =>
      err instanceof CheckError && err.code === 'INVALID_JSON' && /^Line 3:/.test(err.message),
  );
  assert.throws(
    () => parseHistory(`${good}\n{"client": 1}`),
    (err: unknown) => err instanceof CheckError && err.code === 'INVALID_OPERATION',
  );
  assert.deepEqual(parseHistory(`${good}\n`), [w(1, 0, 1, 'a')]);
});
