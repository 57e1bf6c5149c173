// Swarm slice of range seeds: every node runs its key-value store as ranges, which clients
// split under the seed's faults (seeds 0 to 399, about the CPU of one plain slice of 550).

import { test } from 'node:test';
import { runSwarmSlice } from './swarm.js';

void test('ranges split under faults keep every property per group and the range map, seeds 0..399', async () => {
  await runSwarmSlice(0, 400, { ranges: true });
});
