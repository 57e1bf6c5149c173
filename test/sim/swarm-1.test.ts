// Swarm slice 1: seeds 550 to 1099 (four slices give the 2,200 seeds npm test runs).

import { test } from 'node:test';
import { runSwarmSlice } from './swarm.js';

void test('simulated clusters keep every safety and liveness property, seeds 550..1099', async () => {
  await runSwarmSlice(550, 550);
});
