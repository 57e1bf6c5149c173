// Two builds of Flotilla side by side on the evaluation's own write points: each round starts a
// fresh 3-member cluster of each build in turn (the order alternating), warms it as the
// evaluation does, then measures 256 binary-protocol writers over 4 connections and 256 HTTP
// writers. The machine's speed moves by more than most changes do, so only figures measured
// this way, build against build in one run, say whether a change helped.
//
// Each build is a checkout built with `node scripts/build.mjs` (its `dist/` beside its own
// `node_modules`, or a link to one). A build runs its own benchmark code, so a change to the
// load generator shows as well as a change to the server.
//
//   node dist/bench/eval/compare-builds.js --before ../old --after . [--rounds 3] [--duration 10]
//     [--warmup 15] [--out compare.json]

import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { benchArgs, benchCount, benchRefuse } from '../args.js';
import type { FlotillaCluster } from './clusters.js';
import type { ProcessGroup } from './procs.js';
import type * as Scenarios from './scenarios.js';

const { values } = benchArgs({
  options: {
    before: { type: 'string' },
    after: { type: 'string' },
    rounds: { type: 'string', default: '3' },
    duration: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '15' },
    out: { type: 'string' },
  },
});

const rounds = benchCount('rounds', values.rounds, 20);
const durationMs = benchCount('duration', values.duration, 600) * 1000;
const warmupMs = benchCount('warmup', values.warmup, 600) * 1000;
const builds: Record<string, string> = {};
for (const name of ['before', 'after'] as const) {
  const dir = values[name];
  if (dir === undefined) benchRefuse(`--${name} is required: the directory of a built checkout`);
  const entry = join(resolve(dir), 'dist', 'bench', 'eval', 'scenarios.js');
  if (!existsSync(entry)) benchRefuse(`--${name} ${dir} has no ${entry}: build it first`);
  builds[name] = join(resolve(dir), 'dist', 'bench', 'eval');
}

interface Modules {
  readonly clusters: { FlotillaCluster: typeof FlotillaCluster };
  readonly procs: { ProcessGroup: typeof ProcessGroup };
  readonly scenarios: typeof Scenarios;
}

async function load(dir: string): Promise<Modules> {
  const at = (f: string): string => pathToFileURL(join(dir, f)).href;
  return {
    clusters: (await import(at('clusters.js'))) as Modules['clusters'],
    procs: (await import(at('procs.js'))) as Modules['procs'],
    scenarios: (await import(at('scenarios.js'))) as Modules['scenarios'],
  };
}

type Point = Awaited<ReturnType<typeof Scenarios.writePoint>>;

function line(p: Point): string {
  const c = p.cpuPerOpUs;
  const cpu =
    c === null || c === undefined
      ? 'CPU not measured'
      : `members ${c.members} µs/write (leader ${c.leader}, followers ${c.followers.join('/')}), ` +
        `over the load generator's ${(c.members / c.loadGenerator).toFixed(2)}`;
  return `${p.throughputOpsPerSec} writes/s, p99 ${p.latencyMs.p99} ms, ${cpu}`;
}

const results: { round: number; build: string; binary: Point; http: Point }[] = [];
const quiet = { tick(): void {}, done(): void {} };
const work = mkdtempSync(join(tmpdir(), 'flotilla-compare-'));
try {
  for (let round = 1; round <= rounds; round++) {
    const order = round % 2 === 1 ? ['before', 'after'] : ['after', 'before'];
    for (const build of order) {
      const m = await load(builds[build] as string);
      const procs = new m.procs.ProcessGroup();
      const dir = join(work, `${build}-${round}`);
      const c = new m.clusters.FlotillaCluster({ size: 3, dir, procs });
      console.log(`round ${round}/${rounds}, ${build}: starting, warming for ${warmupMs / 1000} s`);
      try {
        await c.start();
        await m.scenarios.warmCluster(c, 64, warmupMs, quiet);
        const t = { warmupMs: 1_000, durationMs };
        const binary = await m.scenarios.binaryWritePoint(c, 256, 4, 256, t, quiet, 'binary');
        const http = await m.scenarios.writePoint(c, 256, 256, t, quiet, 'http');
        console.log(`  binary, 256 writers: ${line(binary)}`);
        console.log(`  HTTP, 256 writers:   ${line(http)}`);
        results.push({ round, build, binary, http });
      } finally {
        await c.stop();
        await procs.stopAll();
        rmSync(dir, { recursive: true, force: true });
      }
    }
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
if (values.out !== undefined) {
  const run = { startedAt: new Date().toISOString(), builds, rounds, durationMs, warmupMs };
  writeFileSync(values.out, JSON.stringify({ ...run, results }, null, 2) + '\n');
  console.log(`results in ${values.out}`);
}
