// The watch and lock checkers catch what they exist for: planted gaps, repeats, reorderings,
// foreign revisions and altered events in a watcher's log; a stale holder's write after a
// newer holder's. And they pass what is right.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkLockWrites, checkWatchers, type WatchedRevision } from '../../src/check/index.js';

const history: WatchedRevision[] = [3, 5, 6, 9, 12].map((r) => ({
  revision: r,
  events: [`put k${r}`],
}));
const run = (...revs: number[]) => revs.map((r) => ({ revision: r, events: [`put k${r}`] }));

void test('a contiguous run of the history, from anywhere, is valid', () => {
  const r = checkWatchers(history, [
    { watcher: 'a', revisions: run(3, 5, 6, 9, 12) },
    { watcher: 'late', revisions: run(6, 9) },
    { watcher: 'idle', revisions: [] },
  ]);
  assert.deepEqual([r.valid, r.delivered, r.anomalies], [true, 7, []]);
});

void test('planted: a gap, a repeat, a reordering, a foreign revision, altered events', () => {
  const cases: [string, WatchedRevision[], RegExp][] = [
    ['gap', run(3, 5, 9), /missed revision\(s\) 6 before 9/],
    ['repeat', run(3, 5, 5, 6), /revision 5 after 5/],
    ['reorder', run(3, 6, 5), /revision 5 after 6/],
    ['foreign', run(3, 4, 5), /revision 4 is not in the history/],
    ['altered', [{ revision: 3, events: ['put other'] }], /revision 3 delivered/],
  ];
  for (const [name, revisions, message] of cases) {
    const r = checkWatchers(history, [{ watcher: name, revisions }]);
    assert.equal(r.valid, false, name);
    assert.match(r.anomalies.join('\n'), message, name);
  }
});

void test('lock writes: tokens never go down; a stale holder writing late is caught', () => {
  const ok = checkLockWrites([
    { revision: 2, token: 2 },
    { revision: 3, token: 2 },
    { revision: 7, token: 6 },
  ]);
  assert.deepEqual([ok.valid, ok.holders], [true, 2]);
  const bad = checkLockWrites([
    { revision: 2, token: 2 },
    { revision: 7, token: 6 },
    { revision: 8, token: 2 },
  ]);
  assert.equal(bad.valid, false);
  assert.match(bad.anomalies[0] ?? '', /revision 8: a write of holder 2 after holder 6/);
});
