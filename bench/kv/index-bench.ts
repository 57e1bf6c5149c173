// New keys per second into the key-value store's ordered index as it grows: the chunked index
// (src/kv/sorted-keys.ts) against one flat sorted array with a splice per insert (the index
// the store used before), in the same run, on the same random keys.
//
//   node dist/bench/kv/index-bench.js [--sizes 10000,100000,1000000] [--probe 20000]

import { Xoshiro128 } from '../../src/raft/index.js';
import { SortedKeys, lowerBound } from '../../src/kv/sorted-keys.js';
import { benchArgs } from '../args.js';

const { values } = benchArgs({
  options: {
    sizes: { type: 'string', default: '10000,100000,1000000' },
    probe: { type: 'string', default: '20000' },
  },
});
const sizes = values.sizes.split(',').map(Number);
const probe = Number(values.probe);
for (const n of [...sizes, probe]) {
  if (!Number.isSafeInteger(n) || n < 1 || n > 10_000_000) throw new Error(`bad number ${n}`);
}

const rng = new Xoshiro128(7);
const randomKey = (): string =>
  `key-${rng.nextU32().toString(16).padStart(8, '0')}-${rng.int(1e6)}`;

function rate(keys: readonly string[], insert: (k: string) => void): number {
  const start = performance.now();
  for (const k of keys) insert(k);
  return keys.length / ((performance.now() - start) / 1000);
}

console.log(`new keys/s measured over ${probe} random inserts once the index holds N keys`);
console.log('N          chunked        flat array     ratio');
for (const n of sizes) {
  const base = new Set<string>();
  while (base.size < n) base.add(randomKey());
  const sorted = [...base].sort();
  const fresh: string[] = [];
  while (fresh.length < probe) {
    const k = randomKey();
    if (!base.has(k)) {
      base.add(k);
      fresh.push(k);
    }
  }
  const chunked = SortedKeys.fromSorted(sorted);
  const flat = sorted.slice();
  const c = rate(fresh, (k) => chunked.insert(k));
  const f = rate(fresh, (k) => flat.splice(lowerBound(flat, k), 0, k));
  console.log(
    `${String(n).padEnd(10)} ${Math.round(c).toLocaleString('en').padStart(12)}   ` +
      `${Math.round(f).toLocaleString('en').padStart(12)}   ${(c / f).toFixed(1)}x`,
  );
}
