// Swarm slice of seeds whose replicas move several at once, each on a range of its own, as the
// placement loop's drain moves run (placement-loop.ts), while nodes' data directories are
// wiped, on five nodes with the meta group: nodes prepare, take up and give up several ranges
// at once, and the map records several moves at once (seeds 0 to 39).

import { test } from 'node:test';
import { runSwarmSlice } from './swarm.js';

void test('replicas moved four at once while disks are lost keep every property, and every wiped node recovers, seeds 0..39', async () => {
  await runSwarmSlice(0, 40, {
    ranges: true,
    moves: true,
    meta: true,
    wipeEveryMs: 1000,
    concurrentMoves: 4,
  });
});
