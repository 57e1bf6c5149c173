// A restarting node rebuilds its configuration from the snapshot and the log's membership
// changes up to the commit index it stored, before its first Ready: it never starts with the
// member list it was first given when the log says otherwise. A caller that replays the log
// from the snapshot (the runtime does) applies those changes again, and they are skipped.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  RaftNode,
  createRng,
  encodeConfChange,
  type Entry,
  type RaftEvent,
} from '../../src/raft/index.js';

const entries: Entry[] = [
  { term: 1, index: 1, type: 'noop', data: new Uint8Array(0) },
  {
    term: 1,
    index: 2,
    type: 'conf-change',
    data: encodeConfChange({ changes: [{ kind: 'add-voter', node: 4 }] }),
  },
  { term: 1, index: 3, type: 'normal', data: new Uint8Array([7]) },
];

function restart(commit: number, events: RaftEvent[]): RaftNode {
  return new RaftNode({
    id: 1,
    voters: [1, 2, 3],
    rng: createRng(1),
    initial: { hardState: { term: 1, vote: 1, commit }, snapshot: null, entries, applied: 0 },
    onEvent: (e) => events.push(e),
  });
}

void test('committed changes are in force at once; replaying them changes nothing', () => {
  const events: RaftEvent[] = [];
  const node = restart(3, events);
  assert.deepEqual(node.confState().voters, [1, 2, 3, 4]);
  assert.deepEqual(node.confStateAt(1).voters, [1, 2, 3]);
  assert.deepEqual(node.confStateAt(2).voters, [1, 2, 3, 4]);
  const rd = node.ready();
  assert.deepEqual(
    rd.committedEntries.map((e) => e.index),
    [1, 2, 3],
  );
  node.advance(rd);
  assert.deepEqual(node.confState().voters, [1, 2, 3, 4]);
  assert.equal(events.filter((e) => e.kind === 'conf-applied').length, 0);
});

void test('a change past the stored commit index waits until it is committed and applied', () => {
  const events: RaftEvent[] = [];
  const node = restart(1, events);
  assert.deepEqual(node.confState().voters, [1, 2, 3]);
  // The leader says entry 3 is committed: the change takes effect when applied.
  node.step({ type: 'heartbeat', from: 2, to: 1, term: 2, commit: 3, seq: 0 });
  const rd = node.ready();
  assert.deepEqual(node.confState().voters, [1, 2, 3]);
  node.advance(rd);
  assert.deepEqual(node.confState().voters, [1, 2, 3, 4]);
  assert.equal(events.filter((e) => e.kind === 'conf-applied').length, 1);
});

/** Node 1 restarted on `entries` with the stored commit and the applied index given. */
function restartApplied(commit: number, applied: number): RaftNode {
  return new RaftNode({
    id: 1,
    voters: [1, 2, 3],
    rng: createRng(1),
    initial: { hardState: { term: 1, vote: 1, commit }, snapshot: null, entries, applied },
  });
}

void test('an applied index above the stored commit counts as committed: nothing is handed out twice', () => {
  // A durable state machine applied entry 3 before the hard state saying so was written (the
  // commit index is written lazily): entries up to 3 were committed, and applied once.
  const node = restartApplied(1, 3);
  assert.equal(node.status().commit, 3);
  assert.equal(node.status().applied, 3);
  // Its membership change is in force: it was committed.
  assert.deepEqual(node.confState().voters, [1, 2, 3, 4]);
  for (let i = 0; i < 10 && node.hasReady(); i++) {
    const rd = node.ready();
    assert.deepEqual(rd.committedEntries, [], 'entries handed out again');
    node.advance(rd);
  }
  // Applied below the stored commit: the rest is handed out, once.
  const behind = restartApplied(3, 2);
  const rd = behind.ready();
  assert.deepEqual(
    rd.committedEntries.map((e) => e.index),
    [3],
  );
});

void test('an applied index past the last entry held is refused, naming it', () => {
  assert.throws(() => restartApplied(3, 4), {
    name: 'AssertionError',
    message: /applied index 4 is past the last entry held \(3\)/,
  });
});

void test('a stored commit index past the last entry held is refused, naming it', () => {
  // Before, it was lowered to the log's end without a word, and the next Ready wrote the
  // lowered commit over the stored one: a log that lost committed entries went unnoticed.
  assert.throws(
    () =>
      new RaftNode({
        id: 1,
        voters: [1],
        rng: createRng(1),
        initial: {
          hardState: { term: 1, vote: 1, commit: 5 },
          snapshot: null,
          entries: [],
          applied: 0,
        },
      }),
    {
      name: 'AssertionError',
      message: /commit index 5 is past the last entry held \(0\); the log lost committed entries/,
    },
  );
});

void test('restarted with the membership of today instead of the initial voters: the error says so', () => {
  assert.throws(
    () =>
      new RaftNode({
        id: 1,
        voters: [1, 2, 3, 4],
        rng: createRng(1),
        initial: {
          hardState: { term: 1, vote: 1, commit: 3 },
          snapshot: null,
          entries,
          applied: 0,
        },
      }),
    { name: 'AssertionError', message: /must be given the initial voters \(RaftConfig\.voters\)/ },
  );
});
