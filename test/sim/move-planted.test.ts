// The simulator's move checks must be able to fail: replica moves with one rule broken are
// caught within a bounded number of move seeds, and the same seed with the product's rules
// breaks nothing. The step function removes the old replica before the new one votes (the
// voters go n → n-1: `range-replicas`); a node giving a range up records it retired but leaves
// its group running (`retired-serving`).

import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { nextReplicaStep } from '../../src/server/range-replicas.js';
import {
  runSeed,
  type ReplicaStepFn,
  type RetirePlant,
  type SimOptions,
  type SimResult,
} from '../../src/sim/index.js';
import { SAFETY_KINDS } from './planted.js';

const SEED_BOUND = 60;

/** Removes the replica to go first, while the new one is not yet a voter. */
const removesFirst: ReplicaStepFn = (c, d, change, self) => {
  const { add, remove } = change;
  if (
    c.outgoing.length === 0 &&
    add !== undefined &&
    remove !== undefined &&
    remove !== self &&
    c.voters.includes(remove) &&
    !c.voters.includes(add)
  )
    return { kind: 'remove', node: remove };
  return nextReplicaStep(c, d, change, self);
};

/** Records the range given up, but neither stops its group nor deletes its directory. */
const keepsServing: RetirePlant = (id, _groups, dirs) => {
  dirs.retire(id);
  return Promise.resolve();
};

function note(t: TestContext, r: SimResult): void {
  const v = r.violations[0];
  t.diagnostic(`seed ${r.seed}: [${v?.kind}] ${v?.message.slice(0, 200)}`);
}

async function caughtBy(
  planted: Pick<SimOptions, 'replicaStep' | 'plantRetire'>,
  kind: string,
): Promise<SimResult> {
  for (let seed = 0; seed < SEED_BOUND; seed++) {
    const r = await runSeed({ seed, ranges: true, moves: true, ...planted });
    if (r.violations.some((v) => v.kind === kind)) {
      const control = await runSeed({ seed, ranges: true, moves: true });
      const broken = control.violations.filter((v) => SAFETY_KINDS.has(v.kind));
      assert.deepEqual(broken, [], `correct moves also fail seed ${seed}`);
      assert.ok(control.stats.moveSteps > 0, `seed ${seed} took no move step`);
      return r;
    }
  }
  return assert.fail(`no seed below ${SEED_BOUND} caught the planted bug as ${kind}`);
}

void test('a step function that removes before it adds is caught as range-replicas', async (t) => {
  note(t, await caughtBy({ replicaStep: removesFirst }, 'range-replicas'));
});

void test('a retired range left running is caught as retired-serving', async (t) => {
  note(t, await caughtBy({ plantRetire: keepsServing }, 'retired-serving'));
});

void test('correct moves: seeds move replicas and break nothing', async () => {
  let moves = 0;
  for (let seed = 0; seed < 10; seed++) {
    const r = await runSeed({ seed, ranges: true, moves: true });
    assert.deepEqual(r.violations, [], `seed ${seed}: ${r.replay}`);
    moves += r.stats.moves;
  }
  assert.ok(moves >= 5, `only ${moves} moves over 10 seeds`);
});

// A split proposed while a move of its range is under way names the leader's voters, old and
// new; the replicas removed next may never apply the split, and the new range is left without
// a quorum that runs it (found by seed 371; not fixed yet, docs/DESIGN.md "Ranges in a node"
// says so). Marked todo: it runs and reports until the defect is fixed.
void test(
  'seed 371: a split during a move leaves the new range a quorum that runs it',
  { todo: 'a split during a move can name replicas that never apply it' },
  async () => {
    const r = await runSeed({ seed: 371, ranges: true, moves: true });
    assert.deepEqual(r.violations, [], r.replay);
  },
);

// Seed 800: node 5, removed from range 3, was prepared for it again and, on empty storage,
// granted its vote at once; node 3, lacking committed entry 15, was elected. A prepared copy
// now starts recovering (range-groups.ts), and the simulated node passes on what RangeGroups
// sets of the core (it used to drop it).
void test('seed 800: a replica re-added to a range does not vote before it caught up', async () => {
  const r = await runSeed({ seed: 800, ranges: true, moves: true });
  assert.deepEqual(r.violations, [], r.replay);
  assert.ok(r.stats.moveSteps > 0, JSON.stringify(r.stats));
});
