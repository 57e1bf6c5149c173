// A group that begins with state (a range, from its split's seed) has copies that may hold
// nothing of it: replicas that missed the split. With RaftConfig.waitsForState they vote but
// never campaign while their log is empty, so two of them cannot elect one another with nothing
// beside the copy that holds the seed; that copy leads, and catches them up by a snapshot.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RaftNode, createRng, type Message } from '../../src/raft/index.js';

const voters = [1, 2, 3];

/** Node 1 holds the seed (a snapshot at 5 in term 1); nodes 2 and 3 hold nothing. */
function group(waitsForState: boolean): Map<number, RaftNode> {
  const nodes = new Map<number, RaftNode>();
  nodes.set(
    1,
    new RaftNode({
      id: 1,
      voters,
      rng: createRng(1),
      waitsForState,
      initial: {
        hardState: { term: 1, vote: 0, commit: 5 },
        snapshot: { index: 5, term: 1, voters, learners: [] },
        entries: [],
        applied: 5,
      },
    }),
  );
  for (const id of [2, 3])
    nodes.set(id, new RaftNode({ id, voters, rng: createRng(id), waitsForState }));
  return nodes;
}

/** Runs every node's Ready loop, delivering messages, with node 1 cut off, for `ticks` ticks. */
function run(nodes: Map<number, RaftNode>, ticks: number, cut: number | null): void {
  let network: Message[] = [];
  for (let t = 0; t < ticks; t++) {
    for (const [id, n] of nodes) if (id !== cut) n.tick();
    for (let round = 0; round < 20; round++) {
      for (const [id, n] of nodes) {
        if (id === cut || !n.hasReady()) continue;
        const rd = n.ready();
        network.push(...rd.messages, ...rd.messagesAfterPersist);
        n.advance(rd);
      }
      const now = network;
      network = [];
      for (const m of now) if (m.to !== cut && m.from !== cut) nodes.get(m.to)?.step(m);
    }
  }
}

void test('copies holding nothing of a group that began with state never elect one of themselves', () => {
  const nodes = group(true);
  run(nodes, 200, 1);
  for (const id of [2, 3]) {
    const st = (nodes.get(id) as RaftNode).status();
    assert.equal(st.role, 'follower', `node ${id}`);
    assert.equal(st.term, 0, `node ${id} moved no term`);
  }
  // The copy holding the seed comes back: it leads, with their votes.
  run(nodes, 100, null);
  const roles = [1, 2, 3].map((id) => (nodes.get(id) as RaftNode).status().role);
  assert.deepEqual(roles, ['leader', 'follower', 'follower']);
});

void test('without it, the two empty copies elect one of themselves (the bug it prevents)', () => {
  const nodes = group(false);
  run(nodes, 200, 1);
  const roles = [2, 3].map((id) => (nodes.get(id) as RaftNode).status().role);
  assert.ok(roles.includes('leader'), roles.join(', '));
});
