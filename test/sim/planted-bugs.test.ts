// The simulator must be able to fail: a core with one Raft rule broken is caught within a
// bounded number of seeds, and the same seeds on the correct core break no safety property.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runSeed } from '../../src/sim/index.js';
import { findCaught, PLANTED_BUGS, SAFETY_KINDS } from './planted.js';

const SEED_BOUND = 400;

for (const bug of PLANTED_BUGS) {
  void test(`the simulator catches a core whose ${bug.name}`, () => {
    const caught = findCaught(bug, 0, SEED_BOUND);
    assert.ok(caught !== null, `no violation in ${SEED_BOUND} seeds`);
    const control = runSeed({ seed: caught.seed, profile: bug.profile });
    const broken = control.violations.filter((v) => SAFETY_KINDS.has(v.kind));
    assert.deepEqual(broken, [], `the correct core also fails seed ${caught.seed}`);
  });
}
