// Swarm slice of meta seeds: every node runs the meta group beside its ranges, splits are
// recorded in its map and moves' replicas too, the map repair runs, and clients route by the
// map, all under the seed's faults (seeds 0 to 59 with ranges, 0 to 29 with moves as well).

import { test } from 'node:test';
import { runSwarmSlice } from './swarm.js';

void test('the meta map tiles, keeps its generations and agrees with the ranges once settled, seeds 0..59', async () => {
  await runSwarmSlice(0, 60, { ranges: true, meta: true });
});

void test('the meta map follows replica moves too, seeds 0..29', async () => {
  await runSwarmSlice(0, 30, { ranges: true, moves: true, meta: true });
});
