// The replicate window after a rejection (Progress.window): one append in flight, then one
// more per acknowledgement that moves the match, up to the inflight capacity. Before, a
// rejection dropped the leader to probing and the next acknowledgement, stale or not, set a
// whole window of appends going again: over a network that reorders, hundreds of messages
// per entry for a follower catching up (simulator seed 56444, test/sim/regression.test.ts).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Progress } from '../../src/raft/progress.js';

/** Sends as the leader does: while not paused, one single-entry append after another. */
function sendAll(pr: Progress): number {
  let sent = 0;
  while (!pr.isPaused()) {
    pr.inflights.add(pr.next, 10);
    pr.next++;
    sent++;
  }
  return sent;
}

void test('after a rejection one append is in flight, and each acknowledgement adds one', () => {
  const pr = new Progress(1, 8, Number.POSITIVE_INFINITY);
  pr.maybeUpdate(4);
  pr.becomeReplicate();
  assert.equal(sendAll(pr), 8, 'a whole window while nothing was rejected');
  // The append after 6 overtook its predecessor and was rejected.
  assert.equal(pr.maybeDecrTo(6, 4), true);
  assert.equal(pr.window, 1);
  pr.becomeProbe();
  // A stale acknowledgement of 5 from the window in flight: replicating again, with two.
  assert.equal(pr.maybeUpdate(5), true);
  pr.becomeReplicate();
  assert.equal(sendAll(pr), 2);
  pr.maybeUpdate(6);
  pr.inflights.freeLE(6);
  assert.equal(sendAll(pr), 2, 'one freed, and the window grew by one');
  for (let i = 7; i < 20; i++) {
    pr.maybeUpdate(i);
    pr.inflights.freeLE(i);
  }
  assert.equal(pr.window, 8, 'never past the capacity');
  // A stale rejection (at or below the match) leaves the window alone.
  assert.equal(pr.maybeDecrTo(12, 12), false);
  assert.equal(pr.window, 8);
  // A follower that lost its log is caught up from nothing: slowly too.
  pr.resetAfterLoss(0);
  assert.equal(pr.window, 1);
});
