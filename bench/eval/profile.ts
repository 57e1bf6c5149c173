// A CPU profile of the Flotilla leader under write load: the members run with
// --cpu-prof (V8 writes the profile when the process exits, so the cluster is
// stopped with SIGTERM, a clean shutdown), and the leader's profile is summarised by self time
// per function and per source area.

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FlotillaCluster } from './clusters.js';
import { EvalError } from './errors.js';
import type { Plan } from './plan.js';
import type { ProcessGroup } from './procs.js';
import { summary, warmCluster, writePoint, type Progress } from './scenarios.js';

interface CpuProfileNode {
  readonly id: number;
  readonly callFrame: {
    readonly functionName: string;
    readonly url: string;
    readonly lineNumber: number;
  };
}

interface CpuProfile {
  readonly nodes: readonly CpuProfileNode[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
  readonly startTime: number;
  readonly endTime: number;
}

export interface ProfileEntry {
  readonly name: string;
  readonly selfMs: number;
  readonly selfPercent: number;
}

export interface ProfileSummary {
  readonly load: string;
  readonly totalMs: number;
  readonly topFunctions: readonly ProfileEntry[];
  readonly byArea: readonly ProfileEntry[];
}

/** Source area of a frame: a directory of ours, a package, Node's internals, or V8. */
export function areaOf(url: string, functionName: string): string {
  if (url === '') return functionName.startsWith('(') ? functionName : '(native)';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg !== null) return `dep: ${pkg[1]}`;
  const ours = /\/dist\/src\/([^/]+)\//.exec(url);
  if (ours !== null) return `flotilla: src/${ours[1]}`;
  if (url.startsWith('node:')) return `node: ${url.slice(5).split('/')[0]}`;
  return url;
}

/**
 * Self time by function and by area. With `fromUs` (the monotonic clock in µs, as V8 stamps a
 * profile and `process.hrtime` reads it in every process), samples taken before it are left
 * out: the warm-up's compiling is not the load's cost.
 */
export function summariseProfile(
  p: CpuProfile,
  top = 25,
  fromUs = -Infinity,
): Omit<ProfileSummary, 'load'> {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const fn = new Map<string, number>();
  const area = new Map<string, number>();
  let total = 0;
  let at = p.startTime;
  for (let i = 0; i < p.samples.length; i++) {
    const node = byId.get(p.samples[i] as number);
    at += p.timeDeltas[i] ?? 0;
    const dt = (p.timeDeltas[i] ?? 0) / 1000;
    if (node === undefined || at < fromUs) continue;
    total += dt;
    const f = node.callFrame;
    const file = f.url.replace(/^.*\/(dist|node_modules)\//, '$1/');
    const name = `${f.functionName || '(anonymous)'} ${file}:${f.lineNumber + 1}`;
    fn.set(name, (fn.get(name) ?? 0) + dt);
    const a = areaOf(f.url, f.functionName);
    area.set(a, (area.get(a) ?? 0) + dt);
  }
  const rank = (m: Map<string, number>, n: number): ProfileEntry[] =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([name, ms]) => ({
        name,
        selfMs: Math.round(ms),
        selfPercent: Math.round((ms / Math.max(total, 1e-9)) * 1000) / 10,
      }));
  return { totalMs: Math.round(total), topFunctions: rank(fn, top), byArea: rank(area, 15) };
}

export async function profileFlotillaLeader(
  plan: Plan,
  dir: string,
  procs: ProcessGroup,
  progress: Progress & { line(s: string): void },
): Promise<ProfileSummary> {
  const profDir = join(dir, 'cpu-profiles');
  const c = new FlotillaCluster({
    size: 3,
    dir: join(dir, 'profile'),
    procs,
    nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${profDir}`],
  });
  progress.line('starting flotilla with 3 members under --cpu-prof');
  let leaderPid: number | undefined;
  let load: string;
  // Where the profile's summary starts: after the warm-up (Plan.clusterWarmupMs).
  let fromUs = -Infinity;
  try {
    await c.start();
    leaderPid = c.pid(await c.waitForLeader()) ?? undefined;
    await warmCluster(c, plan.clusterWarmupClients ?? 64, plan.clusterWarmupMs ?? 0, progress);
    fromUs = Number(process.hrtime.bigint() / 1000n);
    const t = { warmupMs: 1_000, durationMs: plan.profileMs };
    const label = `flotilla writes ${plan.profileClients} clients (profiled)`;
    const r = await writePoint(c, plan.profileClients, 256, t, progress, label);
    load = `${plan.profileClients} clients writing 256 B for ${plan.profileMs / 1000} s: ${summary(r)}`;
  } finally {
    await c.stop();
  }
  return { load, ...readProfileOf(profDir, leaderPid, fromUs) };
}

/** The summary of the CPU profile `pid` wrote into `dir` (node --cpu-prof names it by pid). */
export function readProfileOf(
  dir: string,
  pid: number | undefined,
  fromUs = -Infinity,
): Omit<ProfileSummary, 'load'> {
  const file = readdirSync(dir).find((f) => f.includes(`.${pid}.`));
  if (file === undefined)
    throw new EvalError('EVAL_PROFILE', `no CPU profile of the leader (pid ${pid}) in ${dir}`);
  const p = JSON.parse(readFileSync(join(dir, file), 'utf8')) as CpuProfile;
  return summariseProfile(p, 25, fromUs);
}
