// Swarm slice of move seeds that also lose disks: replicas move while nodes' data directories
// are wiped, on five nodes with the meta group, whose map tells a wiped node the ranges a move
// gave it (seeds 0 to 39; about 15 s on the shared machine).

import { test } from 'node:test';
import { runSwarmSlice } from './swarm.js';

void test('replicas moved while disks are lost keep every property, and every wiped node recovers, seeds 0..39', async () => {
  await runSwarmSlice(0, 40, { ranges: true, moves: true, meta: true, wipeEveryMs: 1000 });
});
