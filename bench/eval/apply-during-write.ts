// How often a member applies entries while its own write is in flight (DESIGN.md, "Applying
// during a write"): a 3-member cluster (WAL, fsync on) takes 256-byte puts over HTTP at the
// leader from N closed-loop clients, and each member's `flotilla_applied_entries_total` and
// `flotilla_applied_during_write_entries_total` are read before and after each point.
// docs/BENCHMARKS.md, "Applying during a write", records a run.
//
//   node dist/bench/eval/apply-during-write.js [--clients 1,64,256] [--seconds 5] [--dir <path>]

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { benchArgs } from '../args.js';
import { FlotillaCluster } from './clusters.js';
import { ProcessGroup } from './procs.js';
import { parsePrometheus, sumBy } from './prom.js';
import { writePoint, type Progress } from './scenarios.js';

const APPLIED = 'flotilla_applied_entries_total';
const DURING_WRITE = 'flotilla_applied_during_write_entries_total';

interface Counts {
  readonly applied: number;
  readonly duringWrite: number;
}

async function countsOf(url: string): Promise<Counts> {
  const res = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(5_000) });
  if (!res.ok) throw new Error(`GET ${url}/metrics answered ${res.status}`);
  const samples = parsePrometheus(await res.text());
  const applied = sumBy(samples, APPLIED).get('');
  const duringWrite = sumBy(samples, DURING_WRITE).get('');
  if (applied === undefined || duringWrite === undefined)
    throw new Error(`${url}/metrics has no ${applied === undefined ? APPLIED : DURING_WRITE}`);
  return { applied, duringWrite };
}

function percent(part: number, whole: number): string {
  return whole === 0 ? '-' : `${((100 * part) / whole).toFixed(1)} %`;
}

async function main(): Promise<void> {
  const { values } = benchArgs({
    options: {
      clients: { type: 'string', default: '1,64,256' },
      seconds: { type: 'string', default: '5' },
      dir: { type: 'string' },
    },
  });
  const clients = values.clients.split(',').map((s) => Number.parseInt(s, 10));
  const seconds = Number(values.seconds);
  if (clients.some((n) => !(Number.isInteger(n) && n >= 1 && n <= 4096)))
    throw new Error(`--clients takes numbers in 1..4096, got ${values.clients}`);
  if (!(seconds > 0 && seconds <= 600)) throw new Error('--seconds takes 0..600');
  const dir = values.dir ?? (await mkdtemp(join(tmpdir(), 'flotilla-apply-during-write-')));
  const procs = new ProcessGroup();
  const cluster = new FlotillaCluster({ size: 3, dir, procs });
  const progress: Progress = {
    tick: () => undefined,
    done: (label, summary) => console.log(`${label}: ${summary}`),
  };
  try {
    await cluster.start();
    console.log('| clients | writes/s | member | applied | during a write | share |');
    console.log('| ---: | ---: | --- | ---: | ---: | ---: |');
    for (const n of clients) {
      const leader = await cluster.waitForLeader();
      const urls = cluster.ids.map((id) => cluster.clientUrl(id));
      const before = await Promise.all(urls.map(countsOf));
      const t = { warmupMs: 500, durationMs: seconds * 1000 };
      const r = await writePoint(cluster, n, 256, t, progress, `${n} clients`);
      const after = await Promise.all(urls.map(countsOf));
      cluster.ids.forEach((id, i) => {
        const b = before[i] as Counts;
        const a = after[i] as Counts;
        const applied = a.applied - b.applied;
        const during = a.duringWrite - b.duringWrite;
        const who = id === leader ? `${id} (leader)` : String(id);
        console.log(
          `| ${n} | ${Math.round(r.throughputOpsPerSec)} | ${who} | ${applied} | ${during} | ${percent(during, applied)} |`,
        );
      });
    }
  } finally {
    await cluster.stop();
    if (values.dir === undefined) await rm(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : String(err));
  process.exitCode = 1;
});
