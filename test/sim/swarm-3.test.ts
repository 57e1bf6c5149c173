// Swarm slice 3: seeds 1650 to 2089 (four slices give the 1,760 seeds npm test runs; the 110 after each slice's end were dropped for CI time and run with `npm run sim`).

import { test } from 'node:test';
import { runSwarmSlice } from './swarm.js';

void test('simulated clusters keep every safety and liveness property, seeds 1650..2089', async () => {
  await runSwarmSlice(1650, 440);
});
