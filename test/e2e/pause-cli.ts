// Prints how long service through the followers stops when the leader is paused (SIGSTOP):
//
//   npm run build && node dist/test/e2e/pause-cli.js --trials 5
//
// Each trial starts a fresh 3-node cluster of real processes, runs the scenario of pause.ts
// and prints, in milliseconds from SIGSTOP: when a follower first named a new leader, when the
// first write and the first read started after the pause succeeded through a follower, the
// longest client operation, and the slowest answer to a raw request sent in the first 100 ms.

import { parseArgs } from 'node:util';
import { TestCluster } from './harness.js';
import { defaultPauseTrial, pauseTrial, type PauseTrialResult } from './pause.js';

const { values } = parseArgs({
  options: {
    trials: { type: 'string', default: '5' },
    'pause-ms': { type: 'string', default: String(defaultPauseTrial.pauseMs) },
  },
});
const trials = Number(values.trials);
const pauseMs = Number(values['pause-ms']);
if (!Number.isInteger(trials) || trials < 1 || trials > 100)
  throw new Error(`--trials must be 1..100, got ${values.trials}`);
if (!Number.isInteger(pauseMs) || pauseMs < 500 || pauseMs > 60_000)
  throw new Error(`--pause-ms must be 500..60000, got ${values['pause-ms']}`);

const fmt = (ms: number | null): string => (ms === null ? '-' : String(Math.round(ms)));
const columns = [
  'trial',
  'elected',
  'first-write',
  'first-read',
  'longest-op',
  'slowest-probe',
  'ops-ok',
  'ops-failed',
];
const row = (cells: readonly string[]): string =>
  cells.map((c, i) => c.padStart((columns[i] as string).length)).join('  ');
console.log(`pause ${pauseMs} ms; times in ms from SIGSTOP ('-': not during the pause)`);
console.log(row(columns));
const resume: (number | null)[] = [];
for (let t = 1; t <= trials; t++) {
  const cluster = await TestCluster.create({ nodes: 3 });
  try {
    await cluster.start();
    const r: PauseTrialResult = await pauseTrial(cluster, { ...defaultPauseTrial, pauseMs });
    const slowest = Math.max(...r.probes.map((p) => p.answeredAfterMs ?? Infinity));
    console.log(
      row([
        String(t),
        fmt(r.electedMs),
        fmt(r.firstWriteMs),
        fmt(r.firstReadMs),
        fmt(r.longestOpMs),
        Number.isFinite(slowest) ? fmt(slowest) : 'never',
        String(r.opsOk),
        String(r.opsFailed),
      ]),
    );
    resume.push(
      r.firstWriteMs === null || r.firstReadMs === null
        ? null
        : Math.max(r.firstWriteMs, r.firstReadMs),
    );
  } finally {
    await cluster.stop();
  }
}
const resumed = resume.filter((x): x is number => x !== null).sort((a, b) => a - b);
console.log(
  `service resumed (a read and a write started after SIGSTOP both succeeded) in ` +
    `${resumed.length} of ${trials} trials` +
    (resumed.length === 0
      ? ''
      : `: min ${fmt(resumed[0] ?? null)}, median ${fmt(resumed[Math.floor(resumed.length / 2)] ?? null)}, max ${fmt(resumed.at(-1) ?? null)} ms`),
);
