// npm run chaos -- --time 60 --nemesis kill,pause,partition --seed 7
// npm run chaos -- --seeds 50 --time 60 --out chaos-results
// npm run chaos -- --seeds 3 --time 60 --nemesis kill,pause,partition,membership
// npm run chaos -- --seeds 20 --time 60 --ranges 8 --nemesis kill,pause,partition,wipe,split
// npm run chaos -- --nodes 4 --ranges 4 --nemesis kill,pause,partition,split,move,drain --placement-every 500
// npm run chaos -- --ranges 8 --workload register --nemesis kill,pause,partition,split --quiesce --clients 4 --think 1500..4500
//
// Runs seeded fault-injection runs against real local clusters and prints, per run, the
// operations that succeeded, failed and ended unknown, the faults injected and the verdict.
// Exits 1 if any run found an anomaly, 2 if a run could not be judged (checker budget), 0
// otherwise. With --expect-anomaly (for the planted-bug modes) the exit code is inverted:
// 0 only when every run found an anomaly.
//
// A first SIGINT/SIGTERM ends the seed in progress as if its time were up: the load stops,
// the faults heal, and that seed's history and verdict are checked and written; no later
// seed starts, and the command exits 4 (1 if a run found an anomaly). A second signal stops
// the nodes and exits 130 at once, writing nothing more (exit.ts).

import { Command, InvalidArgumentError } from 'commander';
import { int, listOf } from '../support/cli-options.js';
import { defaultChaosOptions, formatReport, runChaos, type ChaosReport } from './run.js';
import { NEMESES, type NemesisKind } from './nemesis.js';
import { WORKLOADS, type WorkloadKind } from './workload.js';
import { ChaosCluster, type UnsafeMode } from './cluster.js';
import { defaultQueueWorkload } from './workload-queue.js';
import { EXIT, exitStatus } from './exit.js';

const UNSAFE: readonly UnsafeMode[] = ['none', 'local-reads', 'early-ack', 'stale-tokens'];

/** `--think 1000..3000`: the register clients' think time, [min, max) ms. */
function thinkRange(v: string): readonly [number, number] {
  const m = /^(\d{1,6})\.\.(\d{1,6})$/.exec(v);
  const lo = Number(m?.[1]);
  const hi = Number(m?.[2]);
  if (m === null || lo > hi)
    throw new InvalidArgumentError(
      `--think must be min..max ms with min <= max, got ${JSON.stringify(v)}`,
    );
  return [lo, hi];
}

const program = new Command()
  .name('chaos')
  .description('Fault injection against real Flotilla clusters, checked for linearizability')
  .option('--seed <n>', 'first seed', int('--seed', 0, 2 ** 31 - 1), 1)
  .option('--seeds <n>', 'number of runs (seeds seed, seed+1, ...)', int('--seeds', 1, 10_000), 1)
  .option('--time <s>', 'seconds of load and faults per run', int('--time', 1, 3_600), 60)
  .option('--nodes <n>', 'cluster size', int('--nodes', 3, 7), 3)
  .option(
    '--nemesis <list>',
    `faults: ${NEMESES.join(',')} or none (default: all but membership, split, move and drain)`,
    listOf('--nemesis', NEMESES),
    NEMESES.filter((k) => !['membership', 'split', 'move', 'drain'].includes(k)),
  )
  .option(
    '--workload <list>',
    `workloads: ${WORKLOADS.join(',')}`,
    listOf('--workload', WORKLOADS),
    [...WORKLOADS],
  )
  .option('--clients <n>', 'register clients', int('--clients', 1, 200), 12)
  .option(
    '--keys <n>',
    'register keys (default 5, or 3 per range with --ranges)',
    int('--keys', 1, 1_000),
  )
  .option(
    '--ranges <n>',
    'split the register keys over n ranges before the workloads start',
    int('--ranges', 1, 64),
    1,
  )
  .option(
    '--splits <n>',
    'at most n splits by the split nemesis',
    int('--splits', 0, 64),
    defaultChaosOptions.splitsMax,
  )
  .option(
    '--placement-every <ms>',
    "the nodes' placementEveryMs: how often the placement loop looks (default: the nodes' own)",
    int('--placement-every', 100, 3_600_000),
  )
  .option(
    '--producers <n>',
    'queue producers, one queue each',
    int('--producers', 1, 50),
    defaultQueueWorkload.producers,
  )
  .option('--workers <n>', 'queue workers', int('--workers', 1, 100), defaultQueueWorkload.workers)
  .option('--quiesce', 'start every node with quiesce: on (idle groups stop their heartbeats)')
  .option(
    '--think <ms>',
    'register clients think min..max ms between operations (default 0..30); long means sparse writes',
    thinkRange,
  )
  .option('--storage <kind>', 'wal or sqlite', 'wal')
  .option(
    '--unsafe <mode>',
    `run the nodes with a planted bug: ${UNSAFE.join(', ')}`,
    (v: string) => {
      if (!(UNSAFE as readonly string[]).includes(v))
        throw new InvalidArgumentError(`--unsafe must be one of ${UNSAFE.join(', ')}`);
      return v as UnsafeMode;
    },
    'none',
  )
  .option('--expect-anomaly', 'succeed only if every run finds an anomaly (planted bugs)')
  .option(
    '--out <dir>',
    "write each run's history and summary under this directory",
    'chaos-results',
  )
  .action(async (o: Record<string, unknown>) => {
    const storage = o['storage'];
    if (storage !== 'wal' && storage !== 'sqlite')
      throw new InvalidArgumentError('--storage must be wal or sqlite');
    const workloads = o['workload'] as WorkloadKind[];
    if (workloads.length === 0) throw new InvalidArgumentError('--workload needs at least one');
    const ranges = o['ranges'] as number;
    const keys = (o['keys'] as number | undefined) ?? Math.max(5, 3 * ranges);
    if (keys < ranges)
      throw new InvalidArgumentError(`--keys ${keys} cannot be spread over --ranges ${ranges}`);
    const reports: ChaosReport[] = [];
    const first = o['seed'] as number;
    const seeds = o['seeds'] as number;
    for (let seed = first; seed < first + seeds && !interrupt.signal.aborted; seed++) {
      running = seed;
      const report = await runChaos({
        ...defaultChaosOptions,
        seed,
        timeSec: o['time'] as number,
        nodes: o['nodes'] as number,
        nemeses: o['nemesis'] as NemesisKind[],
        workloads,
        registerClients: o['clients'] as number,
        registerKeys: keys,
        ranges,
        splitsMax: o['splits'] as number,
        placementEveryMs: (o['placementEvery'] as number | undefined) ?? null,
        quiesce: o['quiesce'] === true,
        registerThinkMs:
          (o['think'] as readonly [number, number] | undefined) ??
          defaultChaosOptions.registerThinkMs,
        queue: {
          ...defaultQueueWorkload,
          producers: o['producers'] as number,
          workers: o['workers'] as number,
        },
        storage,
        unsafeMode: o['unsafe'] as UnsafeMode,
        outDir: o['out'] as string,
        signal: interrupt.signal,
        log: (line) => process.stderr.write(`[seed ${seed}] ${line}\n`),
      });
      running = null;
      reports.push(report);
      process.stdout.write(formatReport(report) + '\n');
    }
    const by = (v: string): number => reports.filter((r) => r.verdict === v).length;
    const interrupted = interrupt.signal.aborted;
    const notRun = seeds - reports.length;
    process.stdout.write(
      `\n${reports.length} runs${interrupted ? ` (interrupted${notRun > 0 ? `, ${notRun} of ${seeds} seeds not run` : ''})` : ''}: ` +
        `${by('ok')} ok, ${by('anomaly')} with anomalies, ${by('unknown')} unknown. ` +
        `Histories under ${String(o['out'])}/\n`,
    );
    process.exitCode = exitStatus(
      reports.map((r) => r.verdict),
      { expectAnomaly: o['expectAnomaly'] === true, interrupted },
    );
  });

/** Aborted by a first signal: the seed in progress ends early and is written (run.ts). */
const interrupt = new AbortController();
/** The seed in progress, for the message a signal prints. */
let running: number | null = null;

// Ctrl-C or a CI timeout. The first finishes the seed in progress with what it recorded; a
// second ends the nodes this run started and leaves at once.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (!interrupt.signal.aborted) {
      interrupt.abort();
      const again = signal === 'SIGINT' ? 'Ctrl-C' : 'signal';
      process.stderr.write(
        running === null
          ? `chaos: ${signal}: interrupted, no further seed starts\n`
          : `chaos: ${signal}: interrupted: finishing seed ${running} (heal, check, write its history), ${again} again to stop now\n`,
      );
      return;
    }
    process.stderr.write(`chaos: ${signal} again, stopping the cluster now\n`);
    void ChaosCluster.stopAll().finally(() => process.exit(EXIT.stopped));
  });
}

program.parseAsync().catch((err: unknown) => {
  process.stderr.write(`chaos: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = EXIT.error;
});
