// The election timeline's ring: what it keeps and leaves to the logs, its bound, reading on
// from a seq, and folding a cut-off node's repeated campaigns into one line.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { RuntimeEvent } from '../../src/host/runtime-options.js';
import type { RaftEvent } from '../../src/raft/index.js';
import { Timeline } from '../../src/server/timeline.js';

function raft(kind: RaftEvent['kind'], term: number, reason: string, peer = 0): RuntimeEvent {
  return { kind: 'raft', event: { kind, node: 1, term, peer, reason } };
}

function timeline(capacity = 16): { t: Timeline; clock: { now: number } } {
  const clock = { now: 1_000 };
  return { t: new Timeline(1, capacity, () => clock.now), clock };
}

void test('keeps elections, leader changes and step-downs with their reasons; leaves votes and I/O to the logs', () => {
  const { t, clock } = timeline();
  t.record(0, raft('become-pre-candidate', 1, 'election timeout'));
  t.record(0, raft('vote-granted', 1, 'log up to date', 2));
  t.record(0, raft('become-candidate', 2, 'election timeout'));
  t.record(0, { kind: 'persisted', entries: 3, durationMs: 1 });
  t.record(0, { kind: 'applied', entries: 3, duringWrite: false });
  clock.now = 1_200;
  t.record(0, raft('become-leader', 2, 'won election'));
  t.record(1, { kind: 'leader-changed', leader: 1, term: 2 });
  t.record(0, raft('step-down', 3, 'check-quorum: no contact with a majority'));
  const { entries, missed } = t.entriesAfter(0);
  assert.equal(missed, false);
  assert.deepEqual(
    entries.map((e) => [e.seq, e.group, e.kind, e.term, e.reason]),
    [
      [1, 0, 'become-pre-candidate', 1, 'election timeout'],
      [2, 0, 'become-candidate', 2, 'election timeout'],
      [3, 0, 'become-leader', 2, 'won election'],
      [4, 1, 'leader-changed', 2, 'leader is 1'],
      [5, 0, 'step-down', 3, 'check-quorum: no contact with a majority'],
    ],
  );
  assert.equal(entries[2]?.atMs, 1_200);
  assert.equal(entries[3]?.peer, 1);
  assert.ok(entries.every((e) => e.node === 1 && e.count === 1));
});

void test('holds at most its capacity, the newest; a reader resumes after a seq and is told what it missed', () => {
  const { t } = timeline(3);
  for (let term = 1; term <= 5; term++)
    t.record(0, raft('become-candidate', term, 'election timeout'));
  const all = t.entriesAfter(0);
  assert.deepEqual(
    all.entries.map((e) => e.term),
    [3, 4, 5],
  );
  assert.equal(all.missed, true, 'terms 1 and 2 were pushed out');
  assert.deepEqual(
    t.entriesAfter(4).entries.map((e) => e.seq),
    [5],
  );
  assert.equal(t.entriesAfter(4).missed, false);
  assert.deepEqual(t.entriesAfter(5).entries, []);
  assert.equal(t.lastSeq(), 5);
  assert.throws(() => new Timeline(1, 0, () => 0), RangeError);
});

void test('a cut-off node campaigning again and again takes two lines, counted, not the whole ring', () => {
  const { t, clock } = timeline(8);
  const before = t.version();
  t.record(0, raft('become-leader', 4, 'won election'));
  for (let i = 0; i < 50; i++) {
    clock.now += 150;
    t.record(0, raft('become-pre-candidate', 4, 'election timeout'));
    t.record(0, raft('become-follower', 4, 'lost pre-vote'));
  }
  const { entries } = t.entriesAfter(0);
  assert.deepEqual(
    entries.map((e) => [e.kind, e.count]),
    [
      ['become-leader', 1],
      ['become-pre-candidate', 50],
      ['become-follower', 50],
    ],
  );
  assert.equal(entries[1]?.atMs, 1_150, 'the first time stays');
  assert.equal(entries[1]?.lastMs, 1_000 + 50 * 150, 'the last time moves on');
  // The version moves with every fold, so a reader that only compares seqs would miss the
  // counts rising; the dashboard compares versions.
  assert.equal(t.version() - before, 101);
});

void test('folds only into recent lines of the same group, and only when term, peer and reason match', () => {
  const { t } = timeline();
  t.record(0, raft('become-candidate', 2, 'election timeout'));
  t.record(1, raft('become-candidate', 2, 'election timeout'));
  t.record(0, raft('become-candidate', 2, 'leadership transfer'));
  t.record(0, raft('become-candidate', 3, 'election timeout'));
  t.record(0, raft('become-follower', 3, 'MsgApp from 2', 2));
  t.record(0, raft('become-follower', 3, 'MsgApp from 3', 3));
  assert.equal(t.entriesAfter(0).entries.length, 6, 'nothing here is a repeat');
  // Four other lines of group 0 since the first: too far back to fold into.
  t.record(0, raft('become-candidate', 2, 'election timeout'));
  assert.equal(t.entriesAfter(0).entries.length, 7);
  // The line just recorded is the newest: a repeat folds into it.
  t.record(0, raft('become-candidate', 2, 'election timeout'));
  const last = t.entriesAfter(0).entries.at(-1);
  assert.equal(t.entriesAfter(0).entries.length, 7);
  assert.equal(last?.count, 2);
});

void test("a restarted node's versions do not meet its last run's, so a reader never keeps stale lines", () => {
  const clock = { now: 5_000 };
  const first = new Timeline(1, 8, () => clock.now);
  for (let term = 1; term <= 3; term++)
    first.record(0, raft('become-candidate', term, 'election timeout'));
  const seen = first.version();
  clock.now = 9_000;
  const restarted = new Timeline(1, 8, () => clock.now);
  for (let term = 4; term <= 20; term++) {
    assert.notEqual(restarted.version(), seen);
    restarted.record(0, raft('become-candidate', term, 'election timeout'));
  }
});
