// No message speaks for a term before that term is on disk. A lone voter leads the moment it
// campaigns, so its first appends were handed out (in the Ready's `messages`, or by
// `takeMessages` during the write) before its new term was written. Crashed then, it came back
// at the old term, led the new one again, and wrote other entries at indexes a learner already
// held in that term: the learner kept the first and applied it as committed. Found by a review
// of the core; the last test replays that history.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  RaftNode,
  createRng,
  encodeConfChange,
  type Entry,
  type Message,
  type Ready,
} from '../../src/raft/index.js';

/** Voter 1 alone, with learner 2: the way a group grows from one member. */
const start: Entry[] = [
  { term: 1, index: 1, type: 'noop', data: new Uint8Array(0) },
  {
    term: 1,
    index: 2,
    type: 'conf-change',
    data: encodeConfChange({ changes: [{ kind: 'add-learner', node: 2 }] }),
  },
];

/** A node of the group, restarted from what it holds on disk. */
function boot(id: 1 | 2, disk: Disk): RaftNode {
  return new RaftNode({
    id,
    voters: [1],
    rng: createRng(id),
    initial: {
      hardState: disk.hard,
      snapshot: null,
      entries: disk.entries,
      applied: disk.applied,
    },
  });
}

interface Disk {
  hard: { term: number; vote: number; commit: number };
  entries: Entry[];
  applied: number;
}

/** Writes a Ready to `disk` (as a host does before `advance`), applying its committed entries. */
function persist(disk: Disk, rd: Ready): void {
  if (rd.hardState !== null) disk.hard = { ...rd.hardState };
  for (const e of rd.entries) {
    disk.entries = disk.entries.filter((x) => x.index < e.index);
    disk.entries.push(e);
  }
  const last = rd.committedEntries[rd.committedEntries.length - 1];
  if (last !== undefined) disk.applied = last.index;
}

const text = (e: Entry | undefined): string => new TextDecoder().decode(e?.data);

void test('a lone voter sends nothing of its new term until that term is written', () => {
  const disk: Disk = { hard: { term: 1, vote: 1, commit: 2 }, entries: [...start], applied: 2 };
  const n = boot(1, disk);
  n.advance(n.ready());
  n.campaign();
  assert.equal(n.status().role, 'leader', 'a lone voter leads at once');
  const rd = n.ready();
  assert.equal(rd.hardState?.term, 2);
  const early = (ms: readonly Message[]) => ms.filter((m) => m.term >= 2);
  assert.deepEqual(early(rd.messages), [], 'nothing of term 2 leaves before the write');
  assert.ok(
    rd.messagesAfterPersist.some((m) => m.type === 'append' && m.to === 2),
    'the append to the learner leaves after it',
  );
  n.propose(new TextEncoder().encode('a'));
  assert.deepEqual(early(n.takeMessages()), [], 'nor during the write');
  persist(disk, rd);
  n.advance(rd);
  // Once the term is durable, its messages leave at once again.
  for (let i = 0; i < 10; i++) n.tick();
  const next = n.ready();
  assert.ok(
    next.messages.some((m) => m.type === 'heartbeat' && m.to === 2 && m.term === 2),
    JSON.stringify(next.messages.map((m) => [m.type, m.to, m.term])),
  );
});

void test('a pre-vote still leaves at once: it moves no term', () => {
  const n = new RaftNode({ id: 1, voters: [1, 2, 3], rng: createRng(1) });
  n.campaign();
  const rd = n.ready();
  assert.ok(
    rd.messages.some((m) => m.type === 'pre-vote'),
    JSON.stringify(rd.messages.map((m) => m.type)),
  );
});

void test('a crash before the new term is written does not leave the learner another entry', () => {
  const d1: Disk = { hard: { term: 1, vote: 1, commit: 2 }, entries: [...start], applied: 2 };
  const d2: Disk = { hard: { term: 1, vote: 0, commit: 2 }, entries: [...start], applied: 2 };
  let leader = boot(1, d1);
  const learner = boot(2, d2);
  for (const n of [leader, learner]) n.advance(n.ready());
  const toLearner = (ms: readonly Message[]) => ms.filter((m) => m.to === 2);
  // Everything the learner gets, it takes, writes and answers; its answers reach the leader.
  const learnerTakes = (ms: readonly Message[]) => {
    for (const m of toLearner(ms)) learner.step(m);
    while (learner.hasReady()) {
      const rd = learner.ready();
      persist(d2, rd);
      learner.advance(rd);
      for (const m of [...rd.messages, ...rd.messagesAfterPersist]) leader.step(m);
    }
  };
  // Term 2: the leader's first write is in flight, 'a' is proposed, and whatever may leave does
  // (the learner's answer to the first append draws the append of 'a').
  leader.campaign();
  const first = leader.ready();
  leader.propose(new TextEncoder().encode('a'));
  learnerTakes(first.messages);
  learnerTakes(leader.takeMessages());
  // The leader crashes before its write ends: its disk holds term 1 and nothing more.
  leader = boot(1, d1);
  leader.advance(leader.ready());
  leader.campaign();
  const b = leader.propose(new TextEncoder().encode('b'));
  assert.ok(b.ok);
  for (let i = 0; i < 20 && (leader.hasReady() || learner.hasReady()); i++) {
    if (leader.hasReady()) {
      const rd = leader.ready();
      learnerTakes(rd.messages);
      persist(d1, rd);
      leader.advance(rd);
      learnerTakes(rd.messagesAfterPersist);
    }
    leader.tick();
  }
  const at = b.value.index;
  assert.equal(text(d1.entries.find((e) => e.index === at)), 'b');
  const held = d2.entries.find((e) => e.index === at);
  assert.ok(
    held === undefined || (text(held) === 'b' && held.term === b.value.term),
    `the learner holds ${JSON.stringify(text(held))} at ${at} in term ${held?.term}, the leader 'b' in term ${b.value.term}`,
  );
});
