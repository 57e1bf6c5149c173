// While a Ready's write is in flight, an acknowledgement may commit entries that are durable
// here already: takeCommitted hands them out to apply at once (the runtime answers their
// proposals before that write ends), never one the outstanding Ready is still writing, never a
// configuration change ahead of advance, and nothing while a snapshot is pending.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RaftNode, createRng, type Entry, type Ready } from '../../src/raft/index.js';

const enc = new TextEncoder();

/** Node 1 leading voters 1–3 in term 1, its no-op committed and applied. */
function leader(): RaftNode {
  const node = new RaftNode({
    id: 1,
    voters: [1, 2, 3],
    rng: createRng(7),
    electionTicks: 10,
    heartbeatTicks: 1,
    preVote: false,
    initial: {
      hardState: { term: 0, vote: 0, commit: 0 },
      snapshot: null,
      entries: [],
      applied: 0,
    },
  });
  node.campaign();
  drain(node);
  node.step({ type: 'vote-resp', from: 2, to: 1, term: 1, granted: true });
  drain(node);
  ack(node, 1);
  drain(node);
  assert.equal(node.status().role, 'leader');
  return node;
}

function ack(node: RaftNode, index: number, from = 2): void {
  node.step({
    type: 'append-resp',
    from,
    to: 1,
    term: 1,
    success: true,
    index,
    hintIndex: 0,
    hintTerm: 0,
    lost: false,
    catchingUp: false,
  });
}

/** Hands every Ready back as written and applied. */
function drain(node: RaftNode): void {
  for (let i = 0; i < 100 && node.hasReady(); i++) node.advance(node.ready());
  assert.equal(node.hasReady(), false, 'Readies kept coming');
}

function propose(node: RaftNode, text: string): number {
  const r = node.propose(enc.encode(text));
  assert.ok(r.ok, `proposal refused: ${r.ok ? '' : r.error.message}`);
  return r.value.index;
}

const indexes = (es: readonly Entry[]): number[] => es.map((e) => e.index);

/** Proposes `n` entries and takes the Ready that writes them, leaving it outstanding. */
function writing(node: RaftNode, n: number): { rd: Ready; first: number } {
  let first = 0;
  for (let i = 0; i < n; i++) {
    const index = propose(node, `w${i}`);
    if (i === 0) first = index;
  }
  const rd = node.ready();
  assert.equal(rd.entries.length, n, 'the Ready writes the proposals');
  return { rd, first };
}

void test('entries committed during a write are handed out, not the ones being written', () => {
  const node = leader();
  // Two entries written and advanced (durable here), not yet committed.
  const a = propose(node, 'a');
  const b = propose(node, 'b');
  drain(node);
  assert.equal(
    node.takeCommitted().length,
    0,
    'no Ready is outstanding: the next one carries them',
  );
  // The next write is in flight when node 2 acknowledges a and b.
  const { rd, first } = writing(node, 2);
  assert.deepEqual(rd.committedEntries, [], 'nothing committed yet');
  ack(node, b);
  const taken = node.takeCommitted();
  assert.deepEqual(indexes(taken), [a, b], 'the newly committed, durable entries');
  assert.deepEqual(node.takeCommitted(), [], 'each entry is handed out once');
  // Node 2 acknowledges the entries in flight too: committed, but not durable here yet.
  ack(node, first + 1);
  assert.deepEqual(node.takeCommitted(), [], 'an entry still being written here');
  node.advance(rd);
  // Now durable: the next Ready applies them, after what was taken.
  const next = node.ready();
  assert.deepEqual(indexes(next.committedEntries), [first, first + 1]);
  node.advance(next);
  drain(node);
  assert.equal(node.status().applied, first + 1);
});

void test('the outstanding Ready’s own committed entries count as applied once taking starts', () => {
  const node = leader();
  const a = propose(node, 'a');
  const b = propose(node, 'b');
  drain(node);
  ack(node, a);
  // This Ready applies a (already durable) and writes c; b commits while c is written.
  const c = propose(node, 'c');
  const rd = node.ready();
  assert.deepEqual(indexes(rd.committedEntries), [a]);
  assert.deepEqual(indexes(rd.entries), [c]);
  ack(node, b);
  assert.deepEqual(indexes(node.takeCommitted()), [b]);
  node.advance(rd);
  assert.equal(node.status().applied, b, 'advance keeps what was taken');
  ack(node, c);
  const next = node.ready();
  assert.deepEqual(indexes(next.committedEntries), [c]);
  node.advance(next);
  drain(node);
});

void test('a configuration change is never taken: it takes effect in advance, in log order', () => {
  const node = leader();
  const a = propose(node, 'a');
  const conf = node.proposeConfChange({ changes: [{ kind: 'add-learner', node: 4 }] });
  assert.ok(conf.ok);
  const b = propose(node, 'b');
  drain(node);
  const { rd } = writing(node, 1);
  ack(node, b);
  assert.deepEqual(indexes(node.takeCommitted()), [a], 'stops before the change');
  assert.deepEqual(node.takeCommitted(), [], 'and stays stopped there');
  node.advance(rd);
  const next = node.ready();
  assert.equal(next.committedEntries[0]?.type, 'conf-change', 'the next Ready applies it');
  assert.deepEqual(indexes(next.committedEntries), [a + 1, b], 'then what follows it');
  node.advance(next);
  drain(node);
  assert.deepEqual(node.confState().learners, [4]);
});

void test('an outstanding Ready that applies a configuration change blocks taking', () => {
  const node = leader();
  const conf = node.proposeConfChange({ changes: [{ kind: 'add-learner', node: 4 }] });
  assert.ok(conf.ok);
  const b = propose(node, 'b');
  drain(node);
  ack(node, conf.value.index);
  propose(node, 'c');
  const rd = node.ready();
  assert.equal(rd.committedEntries.at(-1)?.type, 'conf-change');
  ack(node, b);
  assert.deepEqual(node.takeCommitted(), [], 'the change must take effect first');
  node.advance(rd);
  const next = node.ready();
  assert.deepEqual(indexes(next.committedEntries), [b]);
  node.advance(next);
  drain(node);
});
