// Membership churn in the simulator (src/sim/membership.ts): with the leader asked for random
// changes (promotions, demotions, joint swaps, learners added and removed) under crashes,
// partitions and drops, no seed breaks a safety property, every node's configuration is one
// its committed log holds, and the cluster recovers in the liveness phase. Two planted cores
// must be caught: one that applies a two-voter change in one step, one that counts learners'
// acknowledgements toward commit.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runSeed, type Profile } from '../../src/sim/index.js';
import {
  ChangesVotersInOneStep,
  CountsLearnersTowardCommit,
  SAFETY_KINDS,
  findCaught,
  type PlantedBug,
} from './planted.js';

// Five or seven nodes: churn keeps three voters, so a three-node cluster sees no change. No
// wipes: a node that lost its data counts in no quorum until it caught up, and a swap while
// one recovers can leave a half of a joint configuration without its majority.
const CHURN: Partial<Profile> = { membershipEveryMs: 60, wipeEveryMs: 0 };
const seedNodes = (seed: number): 5 | 7 => (seed % 2 === 0 ? 5 : 7);
const SEEDS = Number(process.env['MEMBERSHIP_SEEDS'] ?? '24');
const SEED_BOUND = 400;

void test(`${SEEDS} seeds of membership churn break nothing and recover`, async () => {
  let changes = 0;
  for (let seed = 0; seed < SEEDS; seed++) {
    const r = await runSeed({ seed, profile: { ...CHURN, nodes: seedNodes(seed) } });
    assert.deepEqual(r.violations, [], `seed ${seed}: ${r.replay} (membershipEveryMs 60)`);
    changes += r.stats.confChanges;
  }
  assert.ok(changes >= SEEDS, `only ${changes} membership changes asked in ${SEEDS} seeds`);
});

async function assertCaught(bug: PlantedBug): Promise<string> {
  const caught = await findCaught(bug, 0, SEED_BOUND);
  assert.ok(caught !== null, `no violation in ${SEED_BOUND} seeds`);
  const control = await runSeed({ seed: caught.seed, profile: bug.profile });
  const broken = control.violations.filter((v) => SAFETY_KINDS.has(v.kind));
  assert.deepEqual(broken, [], `the correct core also fails seed ${caught.seed}`);
  return caught.violations.map((v) => `${v.kind}: ${v.message}`).join('\n');
}

void test('the simulator catches a core that changes two voters in one step', async () => {
  const found = await assertCaught({
    name: 'changes two voters in one step',
    plant: { createNode: (c) => new ChangesVotersInOneStep(c) },
    profile: { ...CHURN, nodes: 5 },
  });
  assert.match(found, /configuration/);
});

void test("the simulator catches a core that counts a learner's ack toward commit", async () => {
  await assertCaught({
    name: "counts a learner's ack toward commit",
    plant: { createNode: (c) => new CountsLearnersTowardCommit(c) },
    profile: {
      ...CHURN,
      nodes: 5,
      preVote: false,
      checkQuorum: false,
      partitionEveryMs: 150,
      partitionForMs: 300,
      oneWay: false,
      crashEveryMs: 200,
      restartAfterMs: 100,
      clients: 4,
      thinkMs: 0,
      readRatio: 0,
    },
  });
});
