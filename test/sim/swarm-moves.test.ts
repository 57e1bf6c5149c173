// Swarm slice of move seeds: ranges split and their replicas move under the seed's faults, on
// five nodes (seeds 0 to 199; about 13 s on the shared machine).

import { test } from 'node:test';
import { runSwarmSlice } from './swarm.js';

void test('replicas moved under faults keep every property per group, the range map and the move checks, seeds 0..199', async () => {
  await runSwarmSlice(0, 200, { ranges: true, moves: true });
});
