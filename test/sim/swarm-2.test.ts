// Swarm slice 2: seeds 1100 to 1539 (four slices give the 1,760 seeds npm test runs; the 110 after each slice's end were dropped for CI time and run with `npm run sim`).

import { test } from 'node:test';
import { runSwarmSlice } from './swarm.js';

void test('simulated clusters keep every safety and liveness property, seeds 1100..1539', async () => {
  await runSwarmSlice(1100, 440);
});
