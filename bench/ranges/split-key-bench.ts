// What choosing an automatic split's key costs on the range leader's event loop
// (src/server/range-splitter.ts). For each store size it fills a range with keys in random
// order (so the index's chunks are split as a live store's are, half to full) and times:
// the key that halves it by count (KvStateMachine.middleKey, a walk over the chunks' lengths),
// and, for a split by load, the key that best halves 128 written keys of 64 bytes
// (loadSplitKey). Each figure is the median of many calls, in microseconds. For comparison
// it also times finding the middle key by walking the keys (a range read of the first half),
// which is what an index without chunk lengths would have to do.
//
//   node dist/bench/ranges/split-key-bench.js [--keys 10000,100000,256000,1000000] [--reps 201]

import { RangeMachine } from '../../src/ranges/range-machine.js';
import { loadSplitKey } from '../../src/server/range-splitter.js';
import { benchArgs } from '../args.js';

const { values } = benchArgs({
  options: {
    keys: { type: 'string', default: '10000,100000,256000,1000000' },
    reps: { type: 'string', default: '201' },
  },
});
const sizes = values.keys.split(',').map(Number);
const reps = Number(values.reps);
for (const n of [...sizes, reps])
  if (!Number.isSafeInteger(n) || n < 1 || n > 10_000_000) throw new Error(`bad number ${n}`);

const enc = new TextEncoder();
const limits = { maxKeyBytes: 1024, maxValueBytes: 1 << 20 };
const key = (i: number): Uint8Array => enc.encode(`key-${String(i).padStart(8, '0')}`);

/** A seeded generator (xorshift32): the same fill every run. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

function filled(n: number): RangeMachine {
  const rm = new RangeMachine({ limits });
  const order = Array.from({ length: n }, (_, i) => i);
  const random = rng(n);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j] as number, order[i] as number];
  }
  const value = enc.encode('v'.repeat(16));
  let index = 0;
  for (const i of order) {
    const payload = RangeMachine.encode({
      compare: [],
      success: [{ kind: 'put', key: key(i), value, prevKv: false }],
      failure: [],
    });
    rm.apply([{ index: ++index, term: 1, timeMs: 0, payload }]);
  }
  return rm;
}

/** Median microseconds of `fn` over `reps` calls. */
function medianUs(fn: () => unknown, times: number): number {
  const us: number[] = [];
  for (let r = 0; r < times; r++) {
    const t = process.hrtime.bigint();
    fn();
    us.push(Number(process.hrtime.bigint() - t) / 1_000);
  }
  us.sort((a, b) => a - b);
  return us[us.length >> 1] as number;
}

const written = Array.from({ length: 128 }, (_, i) =>
  enc.encode(`written-${String((i * 7919) % 1000).padStart(8, '0')}-`.padEnd(64, 'x')),
);

console.log('keys      middle key us   load split key us (128 keys)   middle by walking keys us');
for (const n of sizes) {
  const rm = filled(n);
  const kv = rm.kv;
  const mid = kv.middleKey();
  if (mid === null) throw new Error('no middle key');
  const middleUs = medianUs(() => kv.middleKey(), reps);
  const loadUs = medianUs(() => loadSplitKey(written), reps);
  // Walking: read the first half of the keys in order and take the one after it.
  const walkUs = medianUs(
    () =>
      kv.range({
        range: { key: new Uint8Array([0]), rangeEnd: new Uint8Array([0]) },
        limit: (n >> 1) + 1,
        countOnly: false,
        revision: 0,
      }),
    Math.min(reps, 11),
  );
  console.log(
    `${String(n).padEnd(9)} ${middleUs.toFixed(1).padStart(13)}   ${loadUs.toFixed(1).padStart(28)}   ${walkUs.toFixed(0).padStart(25)}`,
  );
}
