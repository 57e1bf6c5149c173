// Swarm slice 3: seeds 1650 to 2199 (four slices give the 2,200 seeds npm test runs).

import { test } from 'node:test';
import { runSwarmSlice } from './swarm.js';

void test('simulated clusters keep every safety and liveness property, seeds 1650..2199', async () => {
  await runSwarmSlice(1650, 550);
});
