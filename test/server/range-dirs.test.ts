// The record of the ranges a node gave up or is being prepared for (src/server/range-dirs.ts):
// it survives a restart (a retired range must never come back), a prepare takes a range off
// the retired list, the directories held are listed, a range recorded held whose directory
// lost its files is named lost, a range is known never to have run here only at or above the
// id the record is whole from and with no trace in it (a retired range forgotten past the cap
// raises that id), and a damaged file is refused rather than read as "nothing retired".

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
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

/** Range `id`'s directory with a WAL segment in it, as a range whose storage opened. */
function opened(dir: string, id: number): void {
  mkdirSync(groupDir(dir, id), { recursive: true });
  writeFileSync(join(groupDir(dir, id), 'wal-0000000000000001.seg'), '');
}

void test('a range recorded held whose directory holds no storage file is lost', () => {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-range-dirs-'));
  try {
    for (const id of [3, 4, 5, 6]) opened(dir, id);
    const a = new RangeDirs(dir);
    for (const id of [3, 4, 5, 6]) a.hold(id);
    a.hold(0); // range 0 is a fixed group's: never recorded
    assert.deepEqual(a.lost(), []);
    // Range 3's directory moved aside, range 4's emptied, range 5 retired and range 6 being
    // prepared (both emptied on purpose).
    renameSync(groupDir(dir, 3), join(dir, 'aside-3'));
    rmSync(join(groupDir(dir, 4), 'wal-0000000000000001.seg'));
    a.retire(5);
    rmSync(groupDir(dir, 5), { recursive: true });
    a.prepare(6, 2);
    rmSync(groupDir(dir, 6), { recursive: true });
    const b = new RangeDirs(dir);
    assert.deepEqual(b.lost(), [3, 4], 'recorded across a reopen');
    // Settled once the node's recovery is durable: the lost are forgotten, a directory never
    // recorded (a file from a release without the record) is recorded.
    opened(dir, 8);
    b.settle();
    const c = new RangeDirs(dir);
    assert.deepEqual(c.lost(), []);
    rmSync(groupDir(dir, 8), { recursive: true });
    assert.deepEqual(c.lost(), [8], 'range 8 was recorded by settle');
    // A range removed on purpose is no longer recorded.
    opened(dir, 9);
    c.hold(9);
    c.remove(9);
    assert.deepEqual(new RangeDirs(dir).lost(), [8]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

void test('a range never ran here only as far as the record proves it', () => {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-range-dirs-'));
  try {
    const a = new RangeDirs(dir);
    assert.equal(a.neverRan(9), false, 'a record that does not say from where it is whole');
    a.setCompleteFrom(3);
    assert.equal(a.neverRan(9), true);
    opened(dir, 4);
    a.hold(4);
    a.retire(5);
    a.prepare(6, 2);
    opened(dir, 7); // a directory not recorded (a crash between its opening and its record)
    for (const id of [4, 5, 6, 7])
      assert.equal(a.neverRan(id), false, `range ${id}: held, retired, prepared or present`);
    const b = new RangeDirs(dir);
    assert.deepEqual(
      [4, 5, 6, 7, 8].map((id) => b.neverRan(id)),
      [false, false, false, false, true],
      'across a reopen',
    );
    // A node that lost data knows nothing until its map is read, then only the newer ranges.
    b.setCompleteFrom(null);
    assert.equal(new RangeDirs(dir).neverRan(8), false);
    b.setCompleteFrom(12);
    const c = new RangeDirs(dir);
    assert.deepEqual(
      [8, 11, 12, 13].map((id) => c.neverRan(id)),
      [false, false, true, true],
    );
    assert.equal(c.isRetired(5), true, 'the rest of the record kept');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

void test('a retired range forgotten past the cap raises the id the record is whole from', () => {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-range-dirs-'));
  try {
    const a = new RangeDirs(dir, undefined, 2);
    a.setCompleteFrom(3);
    a.retire(5);
    a.retire(4);
    assert.equal(a.neverRan(6), true);
    // Past the cap the oldest retired, 5, is forgotten: it ran here, so the record is whole
    // only above it, and 4, below, no longer proves anything either.
    a.retire(9);
    assert.equal(a.isRetired(5), false);
    assert.deepEqual(
      [4, 5, 6, 9, 10].map((id) => a.neverRan(id)),
      [false, false, true, false, true],
    );
    const b = new RangeDirs(dir, undefined, 2);
    assert.deepEqual(
      [3, 5, 6, 10].map((id) => b.neverRan(id)),
      [false, false, true, true],
      'across a reopen',
    );
    // A forgotten range below the id the record is whole from leaves it where it is.
    b.setCompleteFrom(12);
    b.retire(11);
    assert.equal(b.isRetired(4), false);
    assert.deepEqual(
      [11, 12].map((id) => new RangeDirs(dir, undefined, 2).neverRan(id)),
      [false, true],
    );
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
      ['{"retired": [], "held": [2]}', /"held" must be a list of range ids/],
      ['{"retired": [], "completeFrom": 2}', /"completeFrom" must be a range id/],
      ['{"retired": [], "completeFrom": "3"}', /"completeFrom" must be a range id/],
    ] as const) {
      writeFileSync(join(dir, RETIRED_RANGES_FILE), text);
      assert.throws(() => new RangeDirs(dir), why);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
