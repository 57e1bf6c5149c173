// Swarm slice of impatient clients: each attempt waits one election timeout, not three, before
// the client tries another node. A write stuck at a leader that was cut off is then sent again
// to a new leader while its first copy may still commit, and the client's next operations go
// to the new leader sooner: about five times as many retries that the session table must answer
// without applying them twice (seeds 0 to 149 alone, 0 to 59 with ranges; about 20 s).

import { test } from 'node:test';
import { runSwarmSlice } from './swarm.js';

void test('impatient clients: every retry applies once and every read is linearizable, seeds 0..149', async () => {
  await runSwarmSlice(0, 150, { impatient: true });
});

void test('impatient clients with ranges, seeds 0..59', async () => {
  await runSwarmSlice(0, 60, { ranges: true, impatient: true });
});
