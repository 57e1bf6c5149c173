// Memory of the key-value history under a write-heavy load, through the state machine as a
// node applies it: N overwrites of 256-byte values spread over K keys (every tenth write a
// delete), once with compaction keeping the last R revisions (the default policy, applied
// every 1,000 revisions as the leader's once-a-second check would at 1,000 writes/s) and once
// with none. Prints heap and array-buffer memory used (after a full GC when run with
// --expose-gc) every 10% of the run.
//
//   node --expose-gc dist/bench/kv/history-bench.js [writes=1000000] [keys=10000] [keep=10000]

import { KvStateMachine } from '../../src/kv/machine.js';
import { benchPositionals } from '../args.js';

// A word where a count belongs (`--help` did it) ran the benchmark with NaN writes.
const [writes, keys, keep] = benchPositionals(
  'node --expose-gc dist/bench/kv/history-bench.js [writes=1000000] [keys=10000] [keep=10000]',
  (args) => {
    if (args.length > 3) return `at most three counts, got ${args.length} arguments`;
    const counts = [1_000_000, 10_000, 10_000].map((d, i) => args[i] ?? String(d));
    const bad = counts.find((c) => !/^\d{1,9}$/.test(c) || Number(c) < 1);
    return bad === undefined ? counts.map(Number) : `not a count from 1 to 999999999: "${bad}"`;
  },
) as [number, number, number];
const gc = (globalThis as { gc?: () => void }).gc;

/** Heap plus array buffers (values live outside the JavaScript heap). */
function heapMiB(): number {
  gc?.();
  const m = process.memoryUsage();
  return (m.heapUsed + m.arrayBuffers) / 2 ** 20;
}

function run(compact: boolean, n: number): void {
  const m = new KvStateMachine({ maxKeyBytes: 1024, maxValueBytes: 1024 });
  const value = new Uint8Array(256).fill(7);
  const enc = new TextEncoder();
  const base = heapMiB();
  const started = performance.now();
  let index = 0;
  const apply = (payload: Uint8Array) => m.apply([{ index: ++index, term: 1, timeMs: 0, payload }]);
  for (let i = 1; i <= n; i++) {
    const key = enc.encode(`key/${(i * 7919) % keys}`);
    const op =
      i % 10 === 0
        ? { kind: 'delete' as const, range: { key, rangeEnd: null }, prevKv: false }
        : { kind: 'put' as const, key, value, prevKv: false };
    apply(KvStateMachine.encode({ compare: [], success: [op], failure: [] }));
    if (compact && i % 1_000 === 0 && m.revision() - keep > m.compacted())
      apply(KvStateMachine.encode({ compact: m.revision() - keep }));
    if (i % (n / 10) === 0)
      console.log(
        `${compact ? `keep ${keep}` : 'no compaction'}: ${i.toLocaleString('en')} writes, revision ${m.revision()}, ` +
          `history ${m.historySize().toLocaleString('en')} versions, memory +${(heapMiB() - base).toFixed(1)} MiB`,
      );
  }
  const secs = (performance.now() - started) / 1000;
  console.log(`  ${(n / secs).toFixed(0)} writes/s applied (${secs.toFixed(1)} s, GC included)`);
}

if (gc === undefined) console.log('(run with --expose-gc for heap figures after a full GC)');
console.log(
  `${writes.toLocaleString('en')} writes over ${keys.toLocaleString('en')} keys, 256-byte values`,
);
run(true, writes);
// Without compaction the history holds every write: a fifth of the run shows the slope.
run(false, Math.max(10, Math.floor(writes / 5)));
