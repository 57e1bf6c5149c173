// Swarm slice 0: seeds 0 to 549 (four slices give the 2,200 seeds npm test runs).

import { test } from 'node:test';
import { runSwarmSlice } from './swarm.js';

void test('simulated clusters keep every safety and liveness property, seeds 0..549', async () => {
  await runSwarmSlice(0, 550);
});
