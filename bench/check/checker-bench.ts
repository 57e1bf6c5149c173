// Linearizability checker benchmark: histories recorded from a real sequential execution over
// 10 keys by 10 clients (each operation's interval stretched up to 50 ms either side of its
// instant, instants 10 ms apart, so about ten operations overlap at any time), checked whole.
// Prints operations checked per second for 1k, 10k and 100k operations, first with every
// outcome known, then with 1% of operations 'unknown' (client gave up; half took effect), the
// case that makes the search backtrack. Each check has a 60 s budget, so the run is bounded.
// Run: npm run build && node dist/bench/check/checker-bench.js

import { checkHistory, syntheticRegisterHistory } from '../../src/check/index.js';
import { benchArgs } from '../args.js';

// No options: --help says so, and any option is refused rather than ignored.
benchArgs({ options: {} });

const sizes = [1_000, 10_000, 100_000];
const scenarios = [
  { name: 'all outcomes known', unknownRate: 0 },
  { name: '1% unknown', unknownRate: 0.01 },
];

function run(ops: number, unknownRate: number): void {
  const history = syntheticRegisterHistory({ seed: 42, ops, keys: 10, clients: 10, unknownRate });
  const startMs = performance.now();
  const result = checkHistory(history, { timeBudgetMs: 60_000 });
  const elapsedMs = performance.now() - startMs;
  const steps = result.perKey.reduce((sum, k) => sum + k.steps, 0);
  const opsPerSec = Math.round(ops / (elapsedMs / 1000));
  console.log(
    `${String(ops).padStart(7)} ops  ${elapsedMs.toFixed(0).padStart(7)} ms  ` +
      `${String(opsPerSec).padStart(9)} ops/s  ${String(steps).padStart(9)} steps  ` +
      `verdict ${result.verdict}`,
  );
}

for (const scenario of scenarios) {
  console.log(`-- ${scenario.name}`);
  for (const ops of sizes) run(ops, scenario.unknownRate);
}
