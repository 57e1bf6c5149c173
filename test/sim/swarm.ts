// Shared body of the swarm test files: each runs one slice of the seed space, so node --test
// runs the slices in parallel processes.

import assert from 'node:assert/strict';
import { runSeed } from '../../src/sim/index.js';

/** Runs seeds [start, start+count) with everything drawn from each seed. */
export async function runSwarmSlice(start: number, count: number): Promise<void> {
  const failures: string[] = [];
  let events = 0;
  for (let seed = start; seed < start + count; seed++) {
    const r = await runSeed({ seed });
    events += r.stats.events;
    if (!r.ok) {
      const v = r.violations[0];
      failures.push(`seed ${seed} [${v?.kind}] ${v?.message.slice(0, 300)} -- replay: ${r.replay}`);
    }
  }
  // Guards against a simulator that silently does nothing.
  assert.ok(events > count * 500, `only ${events} events over ${count} seeds`);
  assert.deepEqual(failures, []);
}
