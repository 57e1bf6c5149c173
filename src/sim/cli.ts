#!/usr/bin/env node
// Runs the simulator over a range of seeds:
//   node dist/src/sim/cli.js --seeds 1000 [--start 0] [--nodes 3|5|7]
//   node dist/src/sim/cli.js --seed 1234 --verbose
//   node dist/src/sim/cli.js --seeds 1000 --wipe-every 400   (every seed loses disks)
//   node dist/src/sim/cli.js --seeds 1000 --ranges           (ranges, splits under faults)
//   node dist/src/sim/cli.js --seeds 1000 --ranges --moves   (and replica moves, 5 nodes)
//   node dist/src/sim/cli.js --seeds 1000 --ranges --meta    (and the meta group's range map)
//   node dist/src/sim/cli.js --seeds 1000 --quiesce          (idle groups quiesce and wake)
// Exit code 1 when any seed finds a violation, 2 on bad options, 0 for --help.

import { Command, CommanderError, InvalidArgumentError } from 'commander';
import {
  SimError,
  describeProfile,
  runSeed,
  type ClusterSize,
  type SimOptions,
  type SimResult,
  type SimStats,
} from './index.js';

const MAX_SEEDS = 10_000_000;

function intOption(name: string, lo: number, hi: number): (v: string) => number {
  return (v: string) => {
    const n = Number(v);
    if (!/^\d+$/.test(v) || !Number.isSafeInteger(n) || n < lo || n > hi) {
      throw new InvalidArgumentError(
        `${name} must be an integer in [${lo}, ${hi}], got ${JSON.stringify(v)}`,
      );
    }
    return n;
  };
}

function nodesOption(v: string): ClusterSize {
  if (v === '3' || v === '5' || v === '7') return Number(v) as ClusterSize;
  throw new InvalidArgumentError(`--nodes must be 3, 5 or 7, got ${JSON.stringify(v)}`);
}

interface CliOptions {
  seeds?: number;
  start: number;
  seed?: number;
  nodes?: ClusterSize;
  verbose?: boolean;
  wipeEvery?: number;
  membershipEvery?: number;
  ranges?: boolean;
  moves?: boolean;
  concurrentMoves?: number;
  meta?: boolean;
  quiesce?: boolean;
  impatient?: boolean;
}

function report(r: SimResult): void {
  console.log(`seed ${r.seed} FAILED: ${describeProfile(r.profile)}`);
  for (const v of r.violations) console.log(`  [${v.kind}] at ${v.timeMs}ms: ${v.message}`);
  console.log(`  replay: ${r.replay}`);
}

async function main(argv: readonly string[]): Promise<number> {
  const program = new Command()
    .name('flotilla-sim')
    .description('Deterministic Raft cluster simulator: runs seeds and checks safety and liveness')
    .option(
      '--seeds <n>',
      'number of seeds to run (default: 100)',
      intOption('--seeds', 1, MAX_SEEDS),
    )
    .option('--start <s>', 'first seed of the range', intOption('--start', 0, 0xffffffff), 0)
    .option('--seed <s>', 'run this one seed', intOption('--seed', 0, 0xffffffff))
    .option('--nodes <n>', 'cluster size (3, 5 or 7) instead of the drawn one', nodesOption)
    .option(
      '--wipe-every <ms>',
      "wipe a node's data directory about every <ms> of virtual time in every seed",
      intOption('--wipe-every', 1, 1_000_000),
    )
    .option(
      '--membership-every <ms>',
      'ask the leader for a membership change about every <ms> of virtual time, without wipes (as test/sim/membership.test.ts; use --nodes 5 or 7)',
      intOption('--membership-every', 1, 1_000_000),
    )
    .option('--ranges', 'run the key-value store as ranges that clients split under the faults')
    .option(
      '--moves',
      "with --ranges: move ranges' replicas under the faults (5 nodes unless --nodes)",
    )
    .option(
      '--concurrent-moves <n>',
      'with --moves: up to <n> moves under way at once, each on a range of its own (default 1)',
      intOption('--concurrent-moves', 1, 8),
    )
    .option(
      '--meta',
      'with --ranges: run the meta group; splits are recorded and routed by its map',
    )
    .option(
      '--quiesce',
      'idle groups quiesce (RaftConfig.quiesce); with --ranges, every range and meta too',
    )
    .option(
      '--impatient',
      'clients try another node after one election timeout without an answer (default three)',
    )
    .option('--verbose', 'print every event')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
  try {
    program.parse(argv, { from: 'user' });
  } catch (err) {
    // --help is thrown as well under exitOverride; it is a success, not a bad option.
    return err instanceof CommanderError && err.code === 'commander.helpDisplayed' ? 0 : 2;
  }
  const o = program.opts<CliOptions>();
  if (o.moves === true && o.ranges !== true) {
    console.error('--moves needs --ranges');
    return 2;
  }
  if (o.concurrentMoves !== undefined && o.moves !== true) {
    console.error('--concurrent-moves needs --moves');
    return 2;
  }
  if (o.meta === true && o.ranges !== true) {
    console.error('--meta needs --ranges');
    return 2;
  }
  if (o.moves === true && o.nodes === 3) {
    console.error('--moves needs 5 or 7 nodes (three replicas and room to move), got --nodes 3');
    return 2;
  }
  // --seed is one seed; --seeds and --start describe a range. Both at once ran the one seed
  // and dropped the range without a word.
  if (
    o.seed !== undefined &&
    (o.seeds !== undefined || program.getOptionValueSource('start') === 'cli')
  ) {
    console.error('--seed runs one seed: give it alone, or --seeds with --start for a range');
    return 2;
  }
  const first = o.seed ?? o.start;
  const count = o.seed !== undefined ? 1 : (o.seeds ?? 100);
  if (first + count - 1 > 0xffffffff) {
    console.error(`seed range ${first}..${first + count - 1} goes past 2^32-1`);
    return 2;
  }
  return runRange(first, count, o);
}

/** What one seed of the range runs with, from the command line. */
function seedOptions(seed: number, o: CliOptions): SimOptions {
  return {
    seed,
    ...(o.nodes !== undefined ? { nodes: o.nodes } : {}),
    ...(o.wipeEvery !== undefined ||
    o.membershipEvery !== undefined ||
    o.quiesce === true ||
    o.impatient === true
      ? {
          profile: {
            ...(o.wipeEvery !== undefined ? { wipeEveryMs: o.wipeEvery } : {}),
            ...(o.membershipEvery !== undefined
              ? { membershipEveryMs: o.membershipEvery, wipeEveryMs: 0 }
              : {}),
            ...(o.quiesce === true ? { quiesce: true } : {}),
            ...(o.impatient === true ? { attemptTimeoutElections: 1 } : {}),
          },
        }
      : {}),
    ...(o.ranges === true ? { ranges: true } : {}),
    ...(o.moves === true ? { moves: true } : {}),
    ...(o.concurrentMoves !== undefined ? { concurrentMoves: o.concurrentMoves } : {}),
    ...(o.meta === true ? { meta: true } : {}),
    ...(o.verbose === true ? { log: (line: string) => console.log(line) } : {}),
  };
}

async function runRange(first: number, count: number, o: CliOptions): Promise<number> {
  const began = process.hrtime.bigint();
  let failed = 0;
  let events = 0;
  const totals = new Map<keyof SimStats, number>();
  let lastProgress = began;
  for (let i = 0; i < count; i++) {
    const seed = first + i;
    let r: SimResult;
    try {
      r = await runSeed(seedOptions(seed, o));
    } catch (err) {
      // Options the simulator cannot combine (found as the first seed's profile is drawn).
      if (!(err instanceof SimError) || err.code !== 'INVALID_OPTION') throw err;
      console.error(err.message);
      return 2;
    }
    events += r.stats.events;
    for (const k of Object.keys(r.stats) as (keyof SimStats)[])
      totals.set(k, (totals.get(k) ?? 0) + r.stats[k]);
    if (o.verbose === true) {
      console.log(`seed ${seed}: ${describeProfile(r.profile)}`);
      console.log(`  stats ${JSON.stringify(r.stats)}`);
    }
    if (!r.ok) {
      failed++;
      report(r);
    }
    const now = process.hrtime.bigint();
    if (now - lastProgress > 5_000_000_000n) {
      lastProgress = now;
      console.log(`... ${i + 1}/${count} seeds, ${failed} failed`);
    }
  }
  const secs = Number(process.hrtime.bigint() - began) / 1e9;
  console.log(
    `${count} seeds (${first}..${first + count - 1}), ${failed} failed, ${events} events in ${secs.toFixed(1)}s (${(count / secs).toFixed(1)} seeds/s)`,
  );
  const t = (k: keyof SimStats): number => totals.get(k) ?? 0;
  console.log(
    `  writes answered ${t('writesDone')} (retried attempts ${t('retries')}, retries deduplicated by a session ${t('deduped')}), reads ok ${t('readsOk')} failed ${t('readsFailed')}, elections ${t('elections')}, crashes ${t('crashes')}, wipes ${t('wipes')}, snapshots ${t('snapshots')}, splits ${t('splits')} (re-routed on WRONG_RANGE ${t('wrongRange')}), split attempts held back while a move was half-way ${t('splitsRefused')}, moves ${t('moves')} (${t('moveSteps')} steps, ${t('movesAbandoned')} abandoned, ${t('movesBeside')} begun beside another), splits recorded in the meta map by their request ${t('splitsRecorded')}, map repair: stray learners removed ${t('straysRemoved')}, unrecorded voters recorded ${t('votersRecorded')} (marked by a learner's removal ${t('marksRecorded')}), installed from a leader ${t('snapshotInstalls')} in ${t('snapshotChunks')} chunks (${t('snapshotResumes')} transfers resumed past byte 0), quiesced ${t('quiesces')} woke ${t('wakes')} (for a silent peer ${t('silenceWakes')}, for a peer heard again ${t('comebackWakes')}), replica states compared at the end ${t('imagesCompared')}`,
  );
  return failed > 0 ? 1 : 0;
}

process.exitCode = await main(process.argv.slice(2));
