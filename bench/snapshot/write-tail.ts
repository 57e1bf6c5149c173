// Write latency while snapshots are taken, with the snapshot's encoding paced at each given
// share of the time (the nodes' snapshotEncodePercent; 100: as fast as the event loop allows,
// as before pacing). Each round starts a fresh 3-member cluster per percentage, in turn, so the
// settings share the machine's spells; warms it with 64 clients, then runs closed-loop HTTP
// writers of 256-byte values to the leader at each client count (the evaluation's write
// points: every writer its own 1,000 keys, so the store grows and snapshots come at 10,000,
// 20,000, 30,000 and 50,000 entries on every member). For each point it prints the writes/s,
// p50, p99 and max latency and how many snapshots the members saved during it, then the median
// of the rounds per setting.
//
// Run: npm run build && node dist/bench/snapshot/write-tail.js [--percents 100,25]
//      [--rounds 4] [--clients 64,256] [--duration 8] [--json out.json]
// Bounded: every point lasts --duration seconds, and each cluster's processes are stopped by
// PID when its round ends (the process group kills them if this script is interrupted).

import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { benchArgs, benchRefuse } from '../args.js';
import { FlotillaCluster } from '../eval/clusters.js';
import { ProcessGroup } from '../eval/procs.js';
import { warmCluster, writePoint, type Progress } from '../eval/scenarios.js';
import { median } from '../stats.js';

const { values } = benchArgs({
  options: {
    percents: { type: 'string', default: '100,25' },
    rounds: { type: 'string', default: '4' },
    clients: { type: 'string', default: '64,256' },
    duration: { type: 'string', default: '8' },
    json: { type: 'string' },
  },
});

function ints(name: 'percents' | 'clients', min: number, max: number): number[] {
  const list = (values[name] ?? '').split(',').map(Number);
  if (list.length === 0 || !list.every((n) => Number.isInteger(n) && n >= min && n <= max))
    benchRefuse(`--${name} must be a list of integers ${min}..${max}, got "${values[name]}"`);
  return list;
}

function int(name: 'rounds' | 'duration', min: number, max: number): number {
  const n = Number(values[name]);
  if (!Number.isInteger(n) || n < min || n > max)
    benchRefuse(`--${name} must be an integer ${min}..${max}, got "${values[name]}"`);
  return n;
}

const percents = ints('percents', 1, 100);
const clientCounts = ints('clients', 1, 1024);
const rounds = int('rounds', 1, 50);
const durationMs = int('duration', 1, 600) * 1000;

interface Point {
  readonly percent: number;
  readonly round: number;
  readonly clients: number;
  readonly opsPerSec: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
  readonly snapshotsSaved: number;
}

const quiet: Progress = { tick: () => undefined, done: () => undefined };

/** Times (ms since the epoch) at which the members logged a saved snapshot. */
function snapshotTimes(dir: string): number[] {
  const times: number[] = [];
  for (const f of readdirSync(dir).filter((n) => n.endsWith('.log')))
    for (const line of readFileSync(join(dir, f), 'utf8').split('\n')) {
      if (!line.includes('"snapshot saved"')) continue;
      const t = (JSON.parse(line) as { time?: unknown }).time;
      if (typeof t === 'number') times.push(t);
    }
  return times;
}

async function round(percent: number, r: number, base: string): Promise<Point[]> {
  const dir = join(base, `p${percent}-r${r}`);
  const procs = new ProcessGroup();
  const cluster = new FlotillaCluster({
    size: 3,
    dir,
    procs,
    logLevel: 'info',
    env: { FLOTILLA_SNAPSHOT_ENCODE_PERCENT: String(percent) },
  });
  const spans: { from: number; to: number }[] = [];
  const points: Point[] = [];
  try {
    await cluster.start();
    await warmCluster(cluster, 64, 1_500, quiet);
    for (const clients of clientCounts) {
      const from = Date.now();
      const res = await writePoint(
        cluster,
        clients,
        256,
        { warmupMs: 500, durationMs },
        quiet,
        `${clients} clients`,
      );
      const l = res.latencyMs;
      spans.push({ from, to: Date.now() });
      points.push({
        percent,
        round: r,
        clients,
        opsPerSec: res.throughputOpsPerSec,
        p50: l.p50,
        p99: l.p99,
        max: l.max,
        snapshotsSaved: 0,
      });
    }
  } finally {
    await cluster.stop();
    await procs.stopAll();
  }
  const saved = snapshotTimes(dir);
  rmSync(dir, { recursive: true, force: true });
  return points.map((p, k) => {
    const s = spans[k] as { from: number; to: number };
    return { ...p, snapshotsSaved: saved.filter((t) => t >= s.from && t <= s.to).length };
  });
}

/** The median, to three decimals. */
function median3(xs: readonly number[]): number {
  return Math.round(median(xs) * 1000) / 1000;
}

const base = mkdtempSync(join(tmpdir(), 'flotilla-write-tail-'));
const all: Point[] = [];
try {
  for (let r = 1; r <= rounds; r++)
    for (const percent of percents) {
      for (const p of await round(percent, r, base)) {
        all.push(p);
        process.stdout.write(
          `round ${r}, encode ${percent} %, ${p.clients} clients: ${p.opsPerSec} writes/s, ` +
            `p50 ${p.p50} ms, p99 ${p.p99} ms, max ${p.max} ms, ${p.snapshotsSaved} snapshots saved\n`,
        );
      }
    }
} finally {
  rmSync(base, { recursive: true, force: true });
}
process.stdout.write(`median of ${rounds} round(s):\n`);
for (const clients of clientCounts)
  for (const percent of percents) {
    const ps = all.filter((p) => p.clients === clients && p.percent === percent);
    process.stdout.write(
      `encode ${percent} %, ${clients} clients: ${median3(ps.map((p) => p.opsPerSec))} writes/s, ` +
        `p99 ${median3(ps.map((p) => p.p99))} ms, max ${median3(ps.map((p) => p.max))} ms\n`,
    );
  }
if (values.json !== undefined)
  writeFileSync(values.json, `${JSON.stringify({ durationMs, points: all }, null, 2)}\n`);
