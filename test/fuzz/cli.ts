// npm run fuzz -- --protocol http --seed 1 --inputs 1000000 --time 1800
// npm run fuzz -- --protocol all --inputs 20000
// npm run fuzz -- --protocol wire --seed 7 --replay 4711,4712
//
// Fuzzes the protocols a node speaks (the HTTP API, the binary client protocol, the peer
// protocol) against in-process nodes on 127.0.0.1, with generated inputs: random bytes and
// structured mutations of valid requests and frames. Prints progress, then per protocol the
// inputs per second, the outcomes by code, the heap, whether the node still serves, and every
// failure with the seed and index that regenerate its input. Exits 1 on any failure, 3 if
// the node crashed (naming the inputs in flight).

import { Command, InvalidArgumentError, Option } from 'commander';
import { int } from '../support/cli-options.js';
import { formatReport, runFuzz, type FuzzReport, type FuzzTarget } from './run.js';
import { PROTOCOLS, defaultConcurrency, startTarget, type Protocol } from './targets.js';

/** `all` or a comma-separated list of protocols. */
function protocolList(v: string): Protocol[] {
  if (v === 'all') return [...PROTOCOLS];
  const items = v.split(',').map((p) => p.trim());
  for (const p of items)
    if (!(PROTOCOLS as readonly string[]).includes(p))
      throw new InvalidArgumentError(
        `--protocol: unknown "${p}"; choose from ${PROTOCOLS.join(', ')}, all`,
      );
  return items as Protocol[];
}

/**
 * The target being started or fuzzed: closed (its nodes stopped, its data directories removed)
 * on Ctrl-C, also when the signal comes while it is still starting.
 */
let running: Promise<FuzzTarget> | null = null;

// Ctrl-C or a CI timeout: stop the nodes and remove their data directories before leaving.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    console.error(`fuzz: ${signal}, stopping the node`);
    const target = running;
    running = null;
    void (target === null ? Promise.resolve() : target.then((t) => t.close()))
      .catch((err: unknown) => console.error(err))
      .finally(() => process.exit(130));
  });
}

async function main(): Promise<number> {
  const program = new Command()
    .name('fuzz')
    .description('Fuzz the HTTP API, the binary client protocol and the peer protocol of a node')
    .addOption(
      new Option('--protocol <p>', `${PROTOCOLS.join(', ')} or all`)
        .default([...PROTOCOLS], 'all')
        .argParser(protocolList),
    )
    .option('--seed <n>', 'seed of the inputs', int('--seed', 0, 2 ** 32 - 1), 1)
    .option('--inputs <n>', 'inputs per protocol', int('--inputs', 1, 1e9), 10_000)
    .option('--time <s>', 'at most this many seconds per protocol', int('--time', 1, 86_400), 3_600)
    .option('--concurrency <n>', 'inputs in flight at once', int('--concurrency', 1, 1_024))
    .option(
      '--input-timeout <ms>',
      'an input unsettled this long is a hang',
      int('--input-timeout', 100, 600_000),
      20_000,
    )
    .option('--replay <indexes>', 'send only these inputs (comma-separated indexes)', (v: string) =>
      v.split(',').map((s) => int('--replay', 0, 1e9)(s.trim())),
    )
    .option(
      '--max-heap-growth <MiB>',
      'fail if the heap after the run (store emptied, full collection) grew more than this',
      int('--max-heap-growth', 1, 65_536),
      64,
    )
    .option(
      '--progress-every <s>',
      'seconds between progress lines',
      int('--progress-every', 1, 3_600),
      10,
    )
    .parse();
  const o = program.opts<{
    protocol: Protocol[];
    seed: number;
    inputs: number;
    time: number;
    concurrency?: number;
    inputTimeout: number;
    replay?: number[];
    progressEvery: number;
    maxHeapGrowth: number;
  }>();
  const protocols = o.protocol;
  const only = o.replay;
  const reports: FuzzReport[] = [];
  let heapOver = false;
  // The node runs in this process: an exception it throws out of its own code is a crash of
  // the node, reported with the inputs in flight that may have caused it.
  const inFlight = new Set<number>();
  let current = '';
  const crash = (err: unknown): void => {
    console.error(
      `CRASH of the node while fuzzing ${current} (seed ${o.seed}); inputs in flight: ` +
        `${[...inFlight].join(',')} (replay them with --concurrency 1 --replay <index>)`,
    );
    console.error(err);
    process.exit(3);
  };
  process.on('uncaughtException', crash);
  process.on('unhandledRejection', crash);
  for (const p of protocols) {
    current = p;
    running = startTarget(p);
    const target = await running;
    try {
      const report = await runFuzz(target, {
        seed: o.seed,
        inputs: o.inputs,
        timeMs: o.time * 1000,
        concurrency: o.concurrency ?? defaultConcurrency(p),
        inputTimeoutMs: o.inputTimeout,
        ...(only === undefined ? {} : { only }),
        inFlight,
        progress: (line) => console.log(line),
        progressEveryMs: o.progressEvery * 1000,
      });
      reports.push(report);
      console.log(formatReport(report));
      const grownMiB = (report.heapAfterBytes - report.heapBeforeBytes) / 2 ** 20;
      if (grownMiB > o.maxHeapGrowth) {
        console.log(
          `  HEAP grew ${grownMiB.toFixed(1)} MiB, over the bound of ${o.maxHeapGrowth} MiB`,
        );
        heapOver = true;
      }
    } finally {
      running = null;
      await target.close();
    }
  }
  return heapOver || reports.some((r) => r.failures.length > 0 || r.stillServes !== null) ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err);
    process.exit(2);
  },
);
