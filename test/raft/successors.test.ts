// Whom a leader hands leadership to when it must go (shutdown, removal, a transfer that names
// no target): a voter it heard from lately before a silent one, however much of the log the
// silent one holds, since a voter that crashed or is cut off never campaigns.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { successors, type ProgressStatus, type Status } from '../../src/raft/index.js';
import { handOffTarget } from '../../src/server/range-replicas.js';

function progress(match: number, heardRecently: boolean, catchingUp = false): ProgressStatus {
  return { match, next: match + 1, state: 'replicate', learner: false, catchingUp, heardRecently };
}

/** Leader 1's status: voters 1–5, a learner 6. */
function leaderStatus(progressOf: Record<number, ProgressStatus>): Status {
  const voters = [1, 2, 3, 4, 5];
  return {
    id: 1,
    role: 'leader',
    voters,
    learners: [6],
    conf: { voters, outgoing: [], learners: [6], learnersNext: [], autoLeave: false },
    progress: { 1: progress(20, true), ...progressOf, 6: progress(20, true) },
  } as unknown as Status;
}

void test('heard from lately ranks first, then the most caught up, then the lower id', () => {
  const s = leaderStatus({
    2: progress(20, false),
    3: progress(18, true),
    4: progress(19, true),
    5: progress(19, true, true),
  });
  assert.deepEqual(successors(s), [4, 3, 2, 5]);
  assert.deepEqual(
    successors(leaderStatus({ 2: progress(7, true), 3: progress(7, true), 4: progress(7, true) })),
    [2, 3, 4, 5],
    'ties by id; a voter with no progress last',
  );
});

void test("a removed range leader's hand-off skips the voter just promoted unless it is the only one", () => {
  const s = leaderStatus({
    2: progress(20, false),
    3: progress(20, true),
    4: progress(20, true),
    5: progress(20, true),
  });
  assert.equal(handOffTarget(s, 1, 3), 4);
  assert.equal(handOffTarget(s, 1, undefined), 3);
  const two = { ...s, conf: { ...s.conf, voters: [1, 3] } } as Status;
  assert.equal(handOffTarget(two, 1, 3), 3);
  assert.equal(handOffTarget({ ...s, conf: { ...s.conf, voters: [1] } }, 1, 3), undefined);
});
