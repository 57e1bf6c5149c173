// CPU time of the processes the evaluation measures: each cluster member's from
// /proc/<pid>/stat (user + system, in clock ticks of 10 ms), the load generator's own from
// process.cpuUsage() (µs). Shared by the write/read points and the queue scenario.

import { readdirSync, readFileSync } from 'node:fs';
import { parseProcStat } from '../ranges/throughput-model.js';

/** Clock ticks per second of /proc/<pid>/stat (USER_HZ: 100 on every Linux build in use). */
export const procTicksPerSec = 100;

/** Seconds of CPU (user + system) a process has used; null once it is gone (or not Linux). */
export function cpuSeconds(pid: number): number | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  const c = parseProcStat(text);
  return (c.userTicks + c.systemTicks) / procTicksPerSec;
}

/**
 * Context switches (voluntary and involuntary) of every thread of `pid` so far: the main
 * thread's, libuv's pool and V8's (a thread that ended meanwhile adds nothing); null once the
 * process is gone (or not Linux).
 */
export function threadSwitches(pid: number): number | null {
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return null;
  }
  let n = 0;
  for (const task of tasks) {
    try {
      const status = readFileSync(`/proc/${pid}/task/${task}/status`, 'utf8');
      for (const m of status.matchAll(/ctxt_switches:\s+(\d+)/g)) n += Number(m[1]);
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return n;
}

/** CPU per operation of one point, in µs; see `cpuPerOp` for how the window is taken. */
export interface CpuPerOp {
  /** The member that led when the point began (and still led when it ended). */
  readonly leaderId: number;
  readonly leader: number;
  /** The other members, in member id order. */
  readonly followers: readonly number[];
  /** Every member together. */
  readonly members: number;
  /** This process: the closed-loop clients (and the progress ticker). */
  readonly loadGenerator: number;
  /** One clock tick of /proc/<pid>/stat spread over the point's ops: the members' grain. */
  readonly resolutionUs: number;
}

/** One reading: each member's CPU seconds, this process's CPU µs, and when (ms). */
export interface CpuReading {
  readonly atMs: number;
  readonly memberSeconds: ReadonlyMap<number, number | null>;
  readonly selfUs: number;
}

export function readCpu(pids: ReadonlyMap<number, number | null>): CpuReading {
  const memberSeconds = new Map<number, number | null>();
  for (const [id, pid] of pids) memberSeconds.set(id, pid === null ? null : cpuSeconds(pid));
  const u = process.cpuUsage();
  return { atMs: performance.now(), memberSeconds, selfUs: u.user + u.system };
}

const round1 = (x: number): number => Math.round(x * 10) / 10;

/**
 * CPU per op between two readings. The readings are taken by timers at the edges of the
 * measured window, which may fire a little late on a busy machine; so the CPU rate over the
 * readings' own interval is divided by the op rate over the window (`ops` in `durationMs`)
 * rather than dividing the raw delta by `ops`. Null when a member could not be read (it
 * stopped) or the window saw no ops.
 */
export function cpuPerOp(
  a: CpuReading,
  b: CpuReading,
  o: { readonly leaderId: number; readonly ops: number; readonly durationMs: number },
): CpuPerOp | null {
  const spanMs = b.atMs - a.atMs;
  if (o.ops <= 0 || spanMs <= 0 || o.durationMs <= 0) return null;
  // µs of CPU per op = (CPU µs / span ms) / (ops / duration ms).
  const scale = o.durationMs / (spanMs * o.ops);
  const perMember = new Map<number, number>();
  for (const [id, before] of a.memberSeconds) {
    const after = b.memberSeconds.get(id);
    if (before === null || after === null || after === undefined) return null;
    perMember.set(id, (after - before) * 1e6 * scale);
  }
  const leader = perMember.get(o.leaderId);
  if (leader === undefined) return null;
  const followers = [...perMember]
    .filter(([id]) => id !== o.leaderId)
    .sort(([x], [y]) => x - y)
    .map(([, us]) => round1(us));
  let members = 0;
  for (const us of perMember.values()) members += us;
  return {
    leaderId: o.leaderId,
    leader: round1(leader),
    followers,
    members: round1(members),
    loadGenerator: round1((b.selfUs - a.selfUs) * scale),
    resolutionUs: round1((1e6 / procTicksPerSec) * scale),
  };
}
