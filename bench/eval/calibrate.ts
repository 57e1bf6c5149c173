// How fast the machine is right now: a fixed piece of CPU-bound work (JSON, hashing, a Map)
// timed in this process, while none of the evaluation's clusters run. The machine is a virtual
// one shared with other tenants, and its speed moves: in one round the load generator's own CPU
// per request, the same code as in the other rounds, rose by half. Calibrating before and after
// each system's block of points flags a block at whose start or end the machine was slower, so
// that a ratio from it is read as such (BENCHMARKS.md, "Rounds").

import { createHash } from 'node:crypto';
import { median } from '../stats.js';

export interface Calibration {
  /** CPU time (user + system) of the fixed work, median of the repetitions, ms. */
  readonly cpuMs: number;
  /** Wall time of the same, ms: above cpuMs when something else held the core. */
  readonly wallMs: number;
}

const record = {
  key: 'k'.repeat(32),
  value: 'v'.repeat(256),
  seq: 12_345,
  list: Array.from({ length: 20 }, (_, i) => ({ i, s: `x${i}` })),
};
const block = Buffer.alloc(64 * 1024, 7);

/** The fixed work: about 20 ms of one core on this machine when it is quiet. */
function work(): number {
  let h = 0;
  for (let i = 0; i < 2_000; i++) h += (JSON.parse(JSON.stringify(record)) as typeof record).seq;
  for (let i = 0; i < 20; i++) h += createHash('sha256').update(block).digest()[0] ?? 0;
  const m = new Map<string, number>();
  for (let i = 0; i < 20_000; i++) m.set(`k${i}`, i);
  return h + m.size;
}

/**
 * Times the fixed work `reps` times and gives the medians. The first calls of a process run
 * it unoptimised: until V8 has compiled it, they are not timed (300 ms of it).
 */
export function calibrate(reps = 9): Calibration {
  let sink = 0;
  const warmUntil = performance.now() + 300;
  while (performance.now() < warmUntil) sink += work();
  const cpu: number[] = [];
  const wall: number[] = [];
  for (let i = 0; i < reps; i++) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    sink += work();
    const c = process.cpuUsage(c0);
    wall.push(performance.now() - t0);
    cpu.push((c.user + c.system) / 1000);
  }
  if (sink === -1) throw new Error('unreachable'); // keeps the work from being optimised away
  const round = (x: number): number => Math.round(x * 10) / 10;
  return { cpuMs: round(median(cpu)), wallMs: round(median(wall)) };
}
