// A leader's status says, per follower, whether it heard from it within the last election
// timeout (`heardRecently`): a follower that caught up and then went quiet keeps its match and
// its replicate state in the leader's progress, so only this says the progress is current. The
// promote step of a range's replica change relies on it (learnerCaughtUp, range-replicas.ts).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RaftNode, createRng } from '../../src/raft/index.js';

const electionTicks = 10;

/** Node 1 leading alone, with node 2 added as a learner. */
function leaderWithLearner(): RaftNode {
  const node = new RaftNode({
    id: 1,
    voters: [1],
    rng: createRng(1),
    electionTicks,
    heartbeatTicks: 1,
    initial: {
      hardState: { term: 0, vote: 0, commit: 0 },
      snapshot: null,
      entries: [],
      applied: 0,
    },
  });
  node.campaign();
  drain(node);
  const added = node.proposeConfChange({ changes: [{ kind: 'add-learner', node: 2 }] });
  assert.ok(added.ok, 'the learner was not proposed');
  drain(node);
  assert.deepEqual(node.confState().learners, [2]);
  return node;
}

/** Hands every Ready back as done (nothing is persisted or sent: one node, no peers). */
function drain(node: RaftNode): void {
  for (let i = 0; i < 100 && node.hasReady(); i++) node.advance(node.ready());
  assert.equal(node.hasReady(), false, 'Readies kept coming');
}

void test('the leader says a follower was heard lately only within an election timeout', () => {
  const node = leaderWithLearner();
  const term = node.status().term;
  assert.equal(node.status().progress[1]?.heardRecently, true, 'the leader itself');
  assert.equal(node.status().progress[2]?.heardRecently, false, 'not heard from yet');
  node.step({ type: 'heartbeat-resp', from: 2, to: 1, term, seq: 0, catchingUp: false });
  assert.equal(node.status().progress[2]?.heardRecently, true, 'an answer just arrived');
  // Quiet for an election timeout: still heard lately; one tick more and no longer.
  for (let t = 0; t < electionTicks; t++) node.tick();
  drain(node);
  assert.equal(node.status().progress[2]?.heardRecently, true, 'forgot within the timeout');
  node.tick();
  drain(node);
  assert.equal(node.status().progress[2]?.heardRecently, false, 'a quiet learner looks heard');
  node.step({ type: 'heartbeat-resp', from: 2, to: 1, term, seq: 0, catchingUp: false });
  assert.equal(node.status().progress[2]?.heardRecently, true, 'a new answer not seen');
});
