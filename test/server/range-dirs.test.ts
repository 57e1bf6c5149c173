// The record of the ranges a node gave up or is being prepared for (src/server/range-dirs.ts):
// it survives a restart (a retired range must never come back), a prepare takes a range off
// the retired list, the directories held are listed, and a damaged file is refused rather than
// read as "nothing retired".

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'node:test';
import { groupDir } from '../../src/server/data-dir.js';
import { RETIRED_RANGES_FILE, RangeDirs } from '../../src/server/range-dirs.js';

void test('retired and prepared ranges survive a reopen; held directories are listed', () => {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-range-dirs-'));
  try {
    for (const g of [0, 1, 2, 3, 7]) mkdirSync(groupDir(dir, g));
    const a = new RangeDirs(dir);
    assert.deepEqual(a.held(), [3, 7], 'ranges 0-2 are never listed');
    a.retire(3);
    a.prepare(7, 4);
    a.remove(3);
    const b = new RangeDirs(dir);
    assert.equal(b.isRetired(3), true);
    assert.equal(b.preparedAt(7), 4);
    assert.deepEqual(b.held(), [7]);
    b.prepare(3, 9);
    b.added(7);
    const c = new RangeDirs(dir);
    assert.equal(c.isRetired(3), false, 'prepared again: no longer retired');
    assert.equal(c.preparedAt(3), 9);
    assert.equal(c.preparedAt(7), undefined);
    assert.throws(() => c.remove(2), /never deleted/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

void test('a damaged record is refused', () => {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-range-dirs-'));
  try {
    for (const [text, why] of [
      ['{', /not valid JSON/],
      ['{"retired": [1]}', /"retired" must be a list of range ids/],
      ['{"retired": [], "preparing": [[5]]}', /"preparing" must be a list/],
    ] as const) {
      writeFileSync(join(dir, RETIRED_RANGES_FILE), text);
      assert.throws(() => new RangeDirs(dir), why);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
