// The log's tail on its way to disk (src/raft/log-unstable.ts, through RaftLog): what the
// caller reports written becomes durable only if the log still holds those entries.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AssertionError } from '../../src/raft/errors.js';
import { RaftLog } from '../../src/raft/log.js';
import type { Entry, SnapshotMeta } from '../../src/raft/types.js';

function entry(term: number, index: number): Entry {
  return { term, index, type: 'normal', data: new Uint8Array(1) };
}

function indexes(entries: readonly Entry[]): string[] {
  return entries.map((e) => `${e.term}/${e.index}`);
}

void test('entries replaced while being written are not durable in their new form', () => {
  const log = new RaftLog();
  for (let i = 1; i <= 3; i++) log.append(entry(1, i));
  assert.deepEqual(indexes(log.unstableEntries()), ['1/1', '1/2', '1/3']);
  log.acceptInProgress();
  assert.equal(log.hasUnstable(), false);
  // A new leader replaces 2 and 3 before the caller reports the write of 1..3.
  assert.equal(log.maybeAppend(1, 1, [entry(2, 2)]), 2);
  log.stableTo(3);
  assert.equal(log.persisted, 1, 'the write covered the old entry 2, not the new one');
  assert.deepEqual(indexes(log.unstableEntries()), ['2/2'], 'the new entry goes out again');
  log.acceptInProgress();
  log.stableTo(2);
  assert.equal(log.persisted, 2);
});

void test('a truncation before the hand-out does not hold back the next write', () => {
  const log = new RaftLog();
  for (let i = 1; i <= 3; i++) log.append(entry(1, i));
  assert.equal(log.maybeAppend(1, 1, [entry(2, 2), entry(2, 3)]), 3);
  log.acceptInProgress();
  log.stableTo(3);
  assert.equal(log.persisted, 3);
});

void test('entries being written when a snapshot replaced the log are not durable', () => {
  const log = new RaftLog();
  for (let i = 1; i <= 3; i++) log.append(entry(1, i));
  log.acceptInProgress();
  const meta: SnapshotMeta = { index: 10, term: 2, voters: [1, 2, 3] };
  log.resetToSnapshot(meta);
  log.stableTo(3);
  assert.equal(log.persisted, 0);
  assert.equal(log.unstableSnapshot(), meta);
  assert.equal(log.snapshotInProgress(), false, 'not handed out yet: it may still be replaced');
  log.acceptInProgress();
  assert.equal(log.snapshotInProgress(), true);
  log.snapshotStored(meta);
  assert.equal(log.persisted, 10);
  assert.equal(log.applied, 10);
  assert.equal(log.unstableSnapshot(), null);
  assert.equal(log.snapshotInProgress(), false);
});

void test('storing a snapshot other than the one handed out is a bug', () => {
  const log = new RaftLog();
  const meta: SnapshotMeta = { index: 5, term: 1, voters: [1] };
  log.resetToSnapshot(meta);
  log.acceptInProgress();
  assert.throws(() => log.snapshotStored({ ...meta }), AssertionError);
});
