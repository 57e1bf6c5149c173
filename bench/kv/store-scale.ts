// The key-value store alone (src/kv/kv-store.ts, no Raft, no I/O) as it grows: what it holds
// per key, what one full garbage collection of its heap costs, and how many overwrites and
// point reads a second it applies with a small store and with a large one, in the same run.
//
//   node dist/bench/kv/store-scale.js [--keys 1000000] [--small 1000] [--value 256] [--ops 200000]
//
// Each store is loaded in transactions of 128 puts whose keys and values are views into one
// buffer per transaction, as a decoded log entry hands them over. Then `--ops` overwrites of
// keys picked at random (one put per transaction, the history compacted every 10,000 puts to
// keep the last 10,000 revisions, as the leader's automatic compaction does by default), then
// `--ops` single-key reads. The memory figures are read after two full collections; the full
// collection's time is the mean of five. One store at a time, the small first.

import { runInNewContext } from 'node:vm';
import { setFlagsFromString } from 'node:v8';
import { Xoshiro128 } from '../../src/raft/index.js';
import { KvStore, type Op } from '../../src/kv/kv-store.js';
import { benchArgs } from '../args.js';

const { values } = benchArgs({
  options: {
    keys: { type: 'string', default: '1000000' },
    small: { type: 'string', default: '1000' },
    value: { type: 'string', default: '256' },
    ops: { type: 'string', default: '200000' },
  },
});
const sizes = { keys: Number(values.keys), small: Number(values.small) };
const valueBytes = Number(values.value);
const ops = Number(values.ops);
for (const [name, n, max] of [
  ['keys', sizes.keys, 5_000_000],
  ['small', sizes.small, 5_000_000],
  ['value', valueBytes, 65_536],
  ['ops', ops, 10_000_000],
] as const)
  if (!Number.isSafeInteger(n) || n < 1 || n > max) {
    process.stderr.write(
      `bad --${name} ${n}: an integer in 1..${max} (--help lists the options)\n`,
    );
    process.exit(2);
  }

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const keyOf = (i: number): string => `key-${String(i).padStart(10, '0')}`;
const BATCH = 128;

/** One transaction of puts whose keys and values are views into one buffer. */
function putTxn(first: number, count: number, fill: number) {
  const keyLen = keyOf(0).length;
  const buf = Buffer.alloc(count * (keyLen + valueBytes), fill);
  const success: Op[] = [];
  for (let j = 0; j < count; j++) {
    const at = j * (keyLen + valueBytes);
    buf.write(keyOf(first + j), at, 'latin1');
    success.push({
      kind: 'put',
      key: buf.subarray(at, at + keyLen),
      value: buf.subarray(at + keyLen, at + keyLen + valueBytes),
      prevKv: false,
    });
  }
  return { compare: [], success, failure: [] };
}

function measure(n: number) {
  gc();
  gc();
  const base = process.memoryUsage();
  const store = new KvStore();
  const loadStart = performance.now();
  for (let i = 0; i < n; i += BATCH) store.apply(putTxn(i, Math.min(BATCH, n - i), 1));
  const loadS = (performance.now() - loadStart) / 1000;
  gc();
  gc();
  const mem = process.memoryUsage();
  const gcStart = performance.now();
  for (let i = 0; i < 5; i++) gc();
  const fullGcMs = (performance.now() - gcStart) / 5;

  const rng = new Xoshiro128(11);
  const picks = Array.from({ length: ops }, () => rng.int(n));
  const txns = picks.map((i) => putTxn(i, 1, 2));
  const putStart = performance.now();
  for (let j = 0; j < ops; j++) {
    store.apply(txns[j] as ReturnType<typeof putTxn>);
    if (j % 10_000 === 9_999) store.compact(store.revision() - 10_000);
  }
  const putsPerS = ops / ((performance.now() - putStart) / 1000);
  const reads = picks.map((i) => ({ key: Buffer.from(keyOf(i), 'latin1'), rangeEnd: null }));
  const getStart = performance.now();
  let found = 0;
  for (const range of reads) found += store.range(range, 0, false).kvs.length;
  const getsPerS = ops / ((performance.now() - getStart) / 1000);
  if (found !== ops) throw new Error(`read ${found} of ${ops} keys`);
  if (store.size() !== n) throw new Error(`the store holds ${store.size()} keys, not ${n}`);
  return {
    keys: n,
    loadPerS: n / loadS,
    heapPerKey: (mem.heapUsed - base.heapUsed) / n,
    externalPerKey: (mem.external - base.external) / n,
    rssPerKey: (mem.rss - base.rss) / n,
    fullGcMs,
    putsPerS,
    getsPerS,
  };
}

const fmt = (x: number): string => Math.round(x).toLocaleString('en');
console.log(
  `value ${valueBytes} B; ${fmt(ops)} overwrites then ${fmt(ops)} reads of random keys per store`,
);
console.log(
  'keys        load/s     heap B/key  external B/key  rss B/key  full GC ms  puts/s     gets/s',
);
const rows = [measure(sizes.small), measure(sizes.keys)];
for (const r of rows)
  console.log(
    [
      fmt(r.keys).padEnd(11),
      fmt(r.loadPerS).padStart(9),
      fmt(r.heapPerKey).padStart(11),
      fmt(r.externalPerKey).padStart(15),
      fmt(r.rssPerKey).padStart(10),
      r.fullGcMs.toFixed(1).padStart(11),
      fmt(r.putsPerS).padStart(10),
      fmt(r.getsPerS).padStart(10),
    ].join(' '),
  );
const [small, large] = rows as [(typeof rows)[0], (typeof rows)[0]];
console.log(
  `large over small: puts ${(large.putsPerS / small.putsPerS).toFixed(2)}, ` +
    `gets ${(large.getsPerS / small.getsPerS).toFixed(2)}`,
);
