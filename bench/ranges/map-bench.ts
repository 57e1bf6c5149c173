// The range map and the meta group's machine in process, without Raft, as the map grows: what
// a recorded change costs (the map is immutable, so each change copies the descriptor list),
// what a lookup costs, the snapshot's size and the time to encode and restore it, and the time
// of the placement plans (a node added and one drained; every leader on one node).
//
//   node dist/bench/ranges/map-bench.js [--sizes 1000,10000,100000] [--reps 200]
//
// For each size, a map of that many ranges (keys `k` and 8 digits, three replicas each over
// five nodes) is made directly, and the meta machine restored from a snapshot of it. Changes
// are timed one by one, each on the same map (its result dropped), so every one costs what a
// change at that size costs; the median and the 99th percentile are printed. Bounded: a few
// seconds per size.

import { Packr } from 'msgpackr';
import { chunkStream, type Command } from '../../src/host/contracts.js';
import { MetaStateMachine, META_SNAPSHOT_FORMAT } from '../../src/ranges/meta-machine.js';
import { leaderPlan, rebalancePlan } from '../../src/ranges/placement.js';
import { RangeMap } from '../../src/ranges/range-map.js';
import type { RangeDescriptor, RangeId } from '../../src/ranges/types.js';
import { benchArgs } from '../args.js';

const { values } = benchArgs({
  options: {
    sizes: { type: 'string', default: '1000,10000,100000' },
    reps: { type: 'string', default: '200' },
  },
});
const sizes = values.sizes.split(',').map(Number);
const reps = Number(values.reps);
for (const n of [...sizes, reps])
  if (!Number.isSafeInteger(n) || n < 2 || n > 1_000_000) throw new Error(`bad size or reps ${n}`);

const text = new TextEncoder();
const keyOf = (i: number): Uint8Array => text.encode(`k${String(i).padStart(8, '0')}`);

/** A seeded source of numbers below `n` (a linear congruential generator: fixed scenario). */
function seeded(seed: number): (n: number) => number {
  let s = seed >>> 0;
  return (n) => {
    s = (Math.imul(s, 1_664_525) + 1_013_904_223) >>> 0;
    return s % n;
  };
}

function mapOf(n: number): RangeMap {
  const list: RangeDescriptor[] = [];
  for (let i = 0; i < n; i++) {
    const replicas = [1 + (i % 5), 1 + ((i + 1) % 5), 1 + ((i + 2) % 5)].sort((a, b) => a - b);
    list.push({
      id: i === 0 ? 0 : i + 2,
      start: i === 0 ? new Uint8Array(0) : keyOf(i),
      end: i === n - 1 ? null : keyOf(i + 1),
      generation: 1,
      replicas,
    });
  }
  return RangeMap.fromDescriptors(1, list);
}

/** Median and 99th percentile of `times` (ms), in microseconds. */
function summary(times: number[]): string {
  times.sort((a, b) => a - b);
  const at = (q: number) =>
    (times[Math.min(times.length - 1, Math.floor(q * times.length))] ?? 0) * 1_000;
  return `median ${at(0.5).toFixed(1)} us, p99 ${at(0.99).toFixed(1)} us`;
}

function timeEach(count: number, f: (i: number) => void): number[] {
  const times: number[] = [];
  for (let i = 0; i < count; i++) {
    const t = performance.now();
    f(i);
    times.push(performance.now() - t);
  }
  return times;
}

async function drain(stream: AsyncIterable<Uint8Array>): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for await (const c of stream) out.push(c);
  return out;
}

/** The meta machine's snapshot of `map`, in its format, to restore a machine holding it. */
function snapshotOf(map: RangeMap): Uint8Array[] {
  const packr = new Packr({ useRecords: false, moreTypes: false });
  const list = map.ranges();
  const chunks = [
    packr.pack({
      v: META_SNAPSHOT_FORMAT,
      version: map.version,
      nextRange: list.length + 3,
      ranges: list.length,
    }),
  ];
  for (let i = 0; i < list.length; i += 1_024)
    chunks.push(
      packr.pack(
        list.slice(i, i + 1_024).map((d) => [d.id, d.start, d.end, d.generation, [...d.replicas]]),
      ),
    );
  return chunks;
}

async function run(n: number): Promise<void> {
  const map = mapOf(n);
  const pick = seeded(n);
  const split = timeEach(reps, () => {
    const d = map.ranges()[pick(n - 1)] as RangeDescriptor;
    const at = new Uint8Array([...d.start, 0x6d]);
    const g = d.generation + 1;
    const c = map.recordSplit(
      { ...d, end: at, generation: g },
      { ...d, id: n + 10, start: at, generation: g },
    );
    if (c.outcome !== 'applied') throw new Error(`split not applied: ${JSON.stringify(c)}`);
  });
  const lookups = 100_000;
  const probes = Array.from({ length: lookups }, () => keyOf(pick(n)));
  let t = performance.now();
  let found = 0;
  for (const k of probes) if (map.lookup(k) !== undefined) found++;
  const lookupNs = ((performance.now() - t) * 1e6) / lookups;
  if (found !== lookups) throw new Error(`${lookups - found} keys found no range`);

  const m = new MetaStateMachine();
  await m.restore(chunkStream(() => snapshotOf(map)[Symbol.iterator]()));
  let index = 0;
  const applyReplicas = timeEach(reps, (i) => {
    const d = m.map()?.ranges()[pick(n)] as RangeDescriptor;
    const range = { ...d, generation: d.generation + 1, replicas: [1 + (i % 3), 4, 5] };
    const payload = MetaStateMachine.encode({ op: 'recordReplicas', range });
    const cmd: Command = { index: ++index, term: 1, timeMs: 0, payload };
    const [r] = m.apply([cmd]);
    if ((r as { outcome?: string }).outcome !== 'applied') throw new Error(JSON.stringify(r));
  });
  t = performance.now();
  const chunks = await drain(m.snapshot());
  const encodeMs = performance.now() - t;
  const bytes = chunks.reduce((s, c) => s + c.length, 0);
  t = performance.now();
  await new MetaStateMachine().restore(chunkStream(() => chunks[Symbol.iterator]()));
  const restoreMs = performance.now() - t;

  t = performance.now();
  const moves = rebalancePlan(map, [2, 3, 4, 5, 6], 3);
  const rebalanceMs = performance.now() - t;
  const leaders = new Map<RangeId, number>(
    map.ranges().map((d) => [d.id, d.replicas[0] as number]),
  );
  t = performance.now();
  const transfers = leaderPlan(map, leaders);
  const leaderMs = performance.now() - t;

  console.log(`ranges ${n}`);
  console.log(`  recordSplit on the map:              ${summary(split)}`);
  console.log(`  recordReplicas through the machine:  ${summary(applyReplicas)}`);
  console.log(`  lookup:                              ${lookupNs.toFixed(0)} ns`);
  console.log(
    `  snapshot: ${(bytes / 1024).toFixed(0)} KiB in ${chunks.length} chunks, ` +
      `encoded in ${encodeMs.toFixed(1)} ms, restored in ${restoreMs.toFixed(1)} ms`,
  );
  console.log(
    `  rebalance (node 1 drained, 6 added): ${moves.length} moves in ${rebalanceMs.toFixed(1)} ms`,
  );
  console.log(
    `  leaders (node 1 leading 3 in 5):     ${transfers.length} transfers in ${leaderMs.toFixed(1)} ms`,
  );
}

for (const n of sizes) await run(n);
