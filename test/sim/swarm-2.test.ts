// Swarm slice 2: seeds 1100 to 1649 (four slices give the 2,200 seeds npm test runs).

import { test } from 'node:test';
import { runSwarmSlice } from './swarm.js';

void test('simulated clusters keep every safety and liveness property, seeds 1100..1649', async () => {
  await runSwarmSlice(1100, 550);
});
