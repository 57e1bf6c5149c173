#!/usr/bin/env node
// `flotilla bench` / `npm run bench`: the evaluation against etcd. Starts the clusters it needs,
// runs the scenarios, writes results.json, report.html and one SVG per chart.
//
//   node dist/bench/eval/main.js [--quick] [--out DIR] [--docs DIR] [--systems flotilla,etcd]
//        [--scenarios writes,failover,reads,payload,sizes,profile,queue] [--failover-trials N]
//        [--rounds N]
//   node dist/bench/eval/main.js --report-from results.json --out DIR   (re-render only)

import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import type { SystemName } from './clusters.js';
import { EvalError } from './errors.js';
import { fullPlan, parseScenarios, quickPlan, scenarioNames, type Plan } from './plan.js';
import { calibrationNote, goalsByRoundMarkdown, renderCharts, renderHtml } from './report.js';
import { runEvaluation, type EvalResults } from './run.js';
import type { Progress } from './scenarios.js';
import { queueSystems as queueSystemNames } from './queue-load.js';
import { queueMarkdown, queueRoundsMarkdown } from './queue-report.js';

/** Every system a run can measure: etcd has no queue, BullMQ on Redis only a queue. */
const allSystems: readonly string[] = ['flotilla', 'etcd', 'bullmq-always', 'bullmq-default'];

function etcdOnPath(): boolean {
  try {
    execFileSync('etcd', ['--version'], { stdio: 'ignore', timeout: 5_000 });
    return true;
  } catch {
    return false;
  }
}

/** Progress lines; on a terminal the running point redraws in place as a bar. */
export function consoleProgress(stream: NodeJS.WriteStream = process.stderr): Progress & {
  line(s: string): void;
} {
  const tty = stream.isTTY;
  let last = 0;
  return {
    tick(label, elapsed, total, ops) {
      const now = Date.now();
      if (!tty && now - last < 5_000) return;
      last = now;
      const f = Math.min(1, elapsed / Math.max(total, 1));
      const bar = '#'.repeat(Math.round(f * 20)).padEnd(20, '.');
      const o = ops > 0 ? `  ${ops.toLocaleString('en-US')} ops` : '';
      stream.write(`${tty ? '\r\x1b[K' : ''}[${bar}] ${label}${o}${tty ? '' : '\n'}`);
    },
    done(label, s) {
      stream.write(`${tty ? '\r\x1b[K' : ''}✓ ${label}: ${s}\n`);
    },
    line(s) {
      stream.write(`${tty ? '\r\x1b[K' : ''}${s}\n`);
    },
  };
}

function positive(name: string, max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1 || n > max)
      throw new InvalidArgumentError(`${name} must be an integer 1..${max}, got "${v}"`);
    return n;
  };
}

function intList(name: string, spec: string, max: number): number[] {
  return spec.split(',').map((x) => {
    const n = Number(x.trim());
    if (!Number.isInteger(n) || n < 1 || n > max)
      throw new EvalError('EVAL_BAD_OPTION', `${name} takes integers 1..${max}, got "${x}"`);
    return n;
  });
}

interface CliOptions {
  quick?: boolean;
  out: string;
  docs?: string;
  systems: string;
  scenarios: string;
  failoverTrials?: number;
  duration?: number;
  overloadDuration?: number;
  profileClients?: number;
  profileDuration?: number;
  overloadClients?: string;
  overloadNodes?: string;
  overloadBurners?: number;
  queueDuration?: number;
  queueRounds?: number;
  queueWorkers?: string;
  queueProfile?: boolean;
  rounds?: number;
  reportFrom?: string;
  keepData?: boolean;
}

export function writeOutputs(results: EvalResults, out: string, docs?: string): void {
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'results.json'), JSON.stringify(results, null, 2) + '\n');
  writeFileSync(join(out, 'report.html'), renderHtml(results));
  const charts = renderCharts(results);
  for (const dir of docs === undefined ? [out] : [out, docs]) {
    mkdirSync(dir, { recursive: true });
    for (const [name, svg] of charts) writeFileSync(join(dir, `${name}.svg`), svg);
  }
}

/**
 * Reads a results.json for --report-from: a missing file, bad JSON or a file of another shape
 * is a bad option, said in one line, not a stack trace from the renderer.
 */
export function readResults(file: string): EvalResults {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code ?? String(err);
    throw new EvalError('EVAL_BAD_OPTION', `--report-from: cannot read ${file}: ${why}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new EvalError(
      'EVAL_BAD_OPTION',
      `--report-from: ${file} is not JSON: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  const r = parsed as Partial<Record<keyof EvalResults, unknown>> | null;
  const isObject = (v: unknown): boolean =>
    typeof v === 'object' && v !== null && !Array.isArray(v);
  const missing = [
    ...(isObject(r?.machine) ? [] : ['machine']),
    ...(isObject(r?.plan) ? [] : ['plan']),
    ...(isObject(r?.systems) ? [] : ['systems']),
    ...(isObject(r?.settings) ? [] : ['settings']),
    ...(Array.isArray(r?.failures) ? [] : ['failures']),
  ];
  if (!isObject(parsed) || missing.length > 0)
    throw new EvalError(
      'EVAL_BAD_OPTION',
      `--report-from: ${file} is not a results.json of this bench (no ${missing.join(', ')})`,
    );
  return parsed as EvalResults;
}

async function run(o: CliOptions): Promise<void> {
  const out = resolve(o.out);
  const progress = consoleProgress();
  if (o.reportFrom !== undefined) {
    const results = readResults(o.reportFrom);
    writeOutputs(results, out, o.docs);
    progress.line(`report written to ${join(out, 'report.html')}`);
    return;
  }
  const names = o.systems.split(',').map((s) => s.trim());
  for (const s of names)
    if (!allSystems.includes(s))
      throw new EvalError('EVAL_BAD_OPTION', `--systems takes ${allSystems.join(',')}; got "${s}"`);
  const queueSystems = queueSystemNames.filter((s) => names.includes(s));
  let systems = names.filter((s) => s === 'flotilla' || s === 'etcd') as SystemName[];
  if (systems.includes('etcd') && !etcdOnPath()) {
    progress.line('etcd is not on the PATH: measuring Flotilla only (apt-get install etcd-server)');
    systems = systems.filter((s) => s !== 'etcd');
  }
  const base: Plan = o.quick === true ? quickPlan : fullPlan;
  const plan: Plan = {
    ...base,
    ...(o.failoverTrials === undefined ? {} : { failoverTrials: o.failoverTrials }),
    ...(o.duration === undefined ? {} : { durationMs: o.duration * 1000 }),
    ...(o.rounds === undefined ? {} : { kvRounds: o.rounds }),
    ...(o.overloadDuration === undefined ? {} : { overloadMs: o.overloadDuration * 1000 }),
    ...(o.profileClients === undefined ? {} : { profileClients: o.profileClients }),
    ...(o.profileDuration === undefined ? {} : { profileMs: o.profileDuration * 1000 }),
    ...(o.overloadClients === undefined
      ? {}
      : { overloadClients: intList('--overload-clients', o.overloadClients, 4096) }),
    ...(o.overloadBurners === undefined ? {} : { overloadBurners: o.overloadBurners }),
    ...(o.queueDuration === undefined ? {} : { queueMs: o.queueDuration * 1000 }),
    ...(o.queueRounds === undefined ? {} : { queueRounds: o.queueRounds }),
    ...(o.queueWorkers === undefined
      ? {}
      : { queueWorkers: intList('--queue-workers', o.queueWorkers, 1024) }),
    ...(o.overloadNodes === undefined
      ? {}
      : { overloadNodes: intList('--overload-nodes', o.overloadNodes, 9) }),
  };
  const results = await runEvaluation({
    plan,
    quick: o.quick === true,
    systems,
    queueSystems,
    queueProfile: o.queueProfile === true,
    scenarios: parseScenarios(o.scenarios),
    progress,
    keepData: o.keepData === true,
  });
  writeOutputs(results, out, o.docs);
  const byRound = goalsByRoundMarkdown(results);
  if (byRound !== '') progress.line(`goals, round by round:\n${byRound}`);
  else {
    const speed = calibrationNote(results);
    if (speed !== '') progress.line(`machine calibration (ms of CPU, before→after): ${speed}`);
  }
  if (results.queue !== undefined) {
    progress.line(queueMarkdown(results.queue));
    const rounds = queueRoundsMarkdown(results.queue);
    if (rounds !== '') progress.line(rounds);
  }
  for (const e of results.queue?.profile?.byArea ?? [])
    progress.line(`queue leader CPU: ${e.name} ${e.selfPercent}%`);
  progress.line(`results: ${join(out, 'results.json')}\nreport:  ${join(out, 'report.html')}`);
}

export function buildBenchCommand(): Command {
  return new Command('bench')
    .description('evaluation against etcd: throughput, latency, reads, payloads, failover')
    .option(
      '--quick',
      'short durations and fewer points (minutes, not half an hour; each cluster is warmed for 20 s first)',
    )
    .option('--out <dir>', 'where results.json, report.html and charts go', 'bench-results')
    .option('--docs <dir>', 'also write the chart SVGs here (e.g. docs/bench)')
    .option('--systems <list>', allSystems.join(','), allSystems.join(','))
    .option('--scenarios <list>', scenarioNames.join(','), scenarioNames.join(','))
    .option('--failover-trials <n>', 'leader kills per system', positive('--failover-trials', 5000))
    .option('--duration <s>', 'measured seconds per load point', positive('--duration', 600))
    .option(
      '--rounds <n>',
      'times the key-value scenarios run, the systems taking turns in alternating order, each round on fresh clusters; a goal is met when met in more than half of the rounds (default 1)',
      positive('--rounds', 20),
    )
    .option(
      '--overload-duration <s>',
      'measured seconds per overload point (default 60; 10 with --quick)',
      positive('--overload-duration', 3600),
    )
    .option('--overload-clients <list>', 'closed-loop writers per overload point (256,1024,3000)')
    .option('--overload-nodes <list>', 'cluster sizes of the overload scenario (3,5)')
    .option(
      '--overload-burners <n>',
      'CPU-bound processes beside the overload clusters (2)',
      positive('--overload-burners', 16),
    )
    .option(
      '--queue-duration <s>',
      'measured seconds per queue point (default 25; 5 with --quick)',
      positive('--queue-duration', 600),
    )
    .option(
      '--queue-rounds <n>',
      'times each queue point is measured, systems taking turns (default 2; 1 with --quick)',
      positive('--queue-rounds', 20),
    )
    .option('--queue-workers <list>', 'worker concurrency of each queue point (1,8,32)')
    .option(
      '--profile-clients <n>',
      "closed-loop writers while the profile scenario samples the leader's CPU (256)",
      positive('--profile-clients', 4096),
    )
    .option(
      '--profile-duration <s>',
      'sampled seconds of the profile scenario (default 10; 4 with --quick)',
      positive('--profile-duration', 600),
    )
    .option('--queue-profile', "run Flotilla's members under --cpu-prof in the queue scenario")
    .option('--report-from <file>', 're-render the report from a results.json, run nothing')
    .option('--keep-data', 'keep the data directories and member logs')
    .action(run);
}

export async function main(argv: readonly string[]): Promise<void> {
  try {
    await buildBenchCommand().parseAsync([...argv]);
  } catch (err) {
    if (err instanceof EvalError) {
      process.stderr.write(`bench: ${err.code}: ${err.message}\n`);
      process.exitCode = 1;
    } else throw err;
  }
}

if (
  process.argv[1] !== undefined &&
  resolve(process.argv[1]) === resolve(new URL(import.meta.url).pathname)
)
  await main(process.argv);
