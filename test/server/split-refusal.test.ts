// When a range may split (src/server/range-replicas.ts, splitRefusal): a split names the
// range's voters as the new range's replicas, so it is held back while a change of the range's
// replicas is half-way (a learner, a joint configuration, voters not yet recorded). Walking a
// move step by step shows the split refused at every state between its start and its record,
// and allowed at both ends; a planted rule that forgets the recorded replicas is caught by the
// same walk.

import assert from 'node:assert/strict';
import test from 'node:test';
import { simpleConf, type ConfState } from '../../src/raft/index.js';
import { FIRST_RANGE, type RangeDescriptor } from '../../src/ranges/types.js';
import {
  nextReplicaStep,
  splitRefusal,
  type ReplicaChange,
} from '../../src/server/range-replicas.js';

const desc = (id: number, replicas: number[], generation = 1): RangeDescriptor => ({
  id,
  start: new Uint8Array([0x6d]),
  end: null,
  generation,
  replicas,
});

const conf = (voters: number[], learners: number[] = []): ConfState => ({
  ...simpleConf(voters),
  learners,
});

type Rule = (c: ConfState, d: RangeDescriptor) => string | null;

/**
 * The states a move of range 5 from [1, 2, 3] passes through (its steps applied as the range
 * would), each with whether `rule` lets it split there; the steps are the product's.
 */
function alongMove(rule: Rule, change: ReplicaChange): { step: string; splits: boolean }[] {
  let c = conf([1, 2, 3]);
  let d = desc(5, [1, 2, 3]);
  const seen = [{ step: 'start', splits: rule(c, d) === null }];
  for (let i = 0; i < 20; i++) {
    const step = nextReplicaStep(c, d, change, 2);
    if (step.kind === 'done') return seen;
    const drop = (ids: readonly number[], n: number) => ids.filter((x) => x !== n);
    if (step.kind === 'add-learner') c = conf([...c.voters], [...c.learners, step.node]);
    else if (step.kind === 'promote')
      c = conf([...c.voters, step.node], drop(c.learners, step.node));
    else if (step.kind === 'remove') c = conf(drop(c.voters, step.node), [...c.learners]);
    else if (step.kind === 'record')
      d = { ...d, generation: d.generation + 1, replicas: [...step.voters] };
    else throw new Error(`unexpected step ${step.kind} in the walk`);
    seen.push({ step: step.kind, splits: rule(c, d) === null });
  }
  throw new Error('the move did not end in 20 steps');
}

const moveVerdicts = [
  { step: 'start', splits: true },
  { step: 'add-learner', splits: false },
  { step: 'promote', splits: false },
  { step: 'remove', splits: false },
  { step: 'record', splits: true },
];

void test('a move holds splits back from its first step until its voters are recorded', () => {
  assert.deepEqual(alongMove(splitRefusal, { add: 4, remove: 1 }), moveVerdicts);
  assert.deepEqual(alongMove(splitRefusal, { add: 4 }), [
    { step: 'start', splits: true },
    { step: 'add-learner', splits: false },
    { step: 'promote', splits: false },
    { step: 'record', splits: true },
  ]);
});

void test('planted: a rule that looks only at learners and joint configurations is caught', () => {
  const planted: Rule = (c, d) =>
    c.learners.length > 0 || c.outgoing.length > 0 ? `range ${d.id} is changing` : null;
  const got = alongMove(planted, { add: 4, remove: 1 });
  assert.notDeepEqual(got, moveVerdicts);
  // Right after the promote the leaving voter is still a voter: the split would name it.
  assert.deepEqual(got[2], { step: 'promote', splits: true });
});

void test('the refusal names the voters, learners and recorded replicas', () => {
  const why = splitRefusal(conf([1, 2, 3], [4]), desc(5, [1, 2, 3]));
  assert.equal(
    why,
    'Cannot split range 5: it has learners, a change of its replicas is under way (voters [1, 2, 3], learners [4], outgoing voters []; recorded replicas [1, 2, 3]); retry once the change finished',
  );
  const behind = splitRefusal(conf([2, 3, 4]), desc(5, [1, 2, 3]));
  assert.match(behind ?? '', /voters are not the replicas it recorded.*voters \[2, 3, 4\]/);
  // Voters in any order are the same set.
  assert.equal(splitRefusal(conf([3, 1, 2]), desc(5, [1, 2, 3])), null);
});

void test('range 0 follows the membership: only a joint configuration refuses it', () => {
  // Range 0 records no replicas, and a member joining is its learner until it caught up.
  assert.equal(splitRefusal(conf([1, 2, 3]), desc(FIRST_RANGE, [])), null);
  assert.equal(splitRefusal(conf([1, 2, 3], [4]), desc(FIRST_RANGE, [])), null);
  const joint: ConfState = { ...conf([1, 2, 4]), outgoing: [1, 2, 3], autoLeave: true };
  assert.match(splitRefusal(joint, desc(FIRST_RANGE, [])) ?? '', /configuration is joint/);
  assert.match(splitRefusal(joint, desc(5, [1, 2, 3])) ?? '', /configuration is joint/);
});
