// What a range split costs on the apply path, where it blocks the event loop (every replica
// applies it). For each store size it fills a range (behind the session layer, with 1,000
// client sessions), splits it in the middle and reports: the apply of the split command (the
// right half's keys and pasts moved out of the store, the session table and the store
// captured), the same with a snapshot of the range being read at the time (its capture then
// keeps what the split moves), and encoding the right half's seed afterwards (chunk by chunk,
// off the apply path) with its size. With --past every key is written twice, so each has an
// older version kept too.
//
//   node dist/bench/ranges/split-bench.js [--keys 10000,100000,256000] [--value-bytes 100] [--reps 3] [--past]

import { encodeEnvelope } from '../../src/host/envelope.js';
import { SessionMachine } from '../../src/host/sessions.js';
import { collectSnapshot } from '../../src/host/snapshot-stream.js';
import { RangeMachine, type SplitApplied } from '../../src/ranges/range-machine.js';
import { benchArgs } from '../args.js';

const { values } = benchArgs({
  options: {
    keys: { type: 'string', default: '10000,100000,256000' },
    'value-bytes': { type: 'string', default: '100' },
    reps: { type: 'string', default: '3' },
    past: { type: 'boolean', default: false },
  },
});
const sizes = values.keys.split(',').map(Number);
const valueBytes = Number(values['value-bytes']);
const reps = Number(values.reps);
for (const n of [...sizes, valueBytes, reps])
  if (!Number.isSafeInteger(n) || n < 1 || n > 10_000_000) throw new Error(`bad number ${n}`);

const enc = new TextEncoder();
const limits = { maxKeyBytes: 1024, maxValueBytes: 1 << 20 };
const key = (i: number): Uint8Array => enc.encode(`key-${String(i).padStart(8, '0')}`);
const nextTurn = (): Promise<void> => new Promise((r) => setImmediate(r));

function filled(n: number): { sm: SessionMachine; rm: RangeMachine; index: number } {
  const rm = new RangeMachine({ limits });
  const sm = new SessionMachine(rm);
  const value = new Uint8Array(valueBytes).fill(0x61);
  let index = 0;
  for (let pass = 0; pass < (values.past ? 2 : 1); pass++)
    for (let i = 0; i < n; i++) {
      index++;
      const payload = RangeMachine.encode({
        compare: [],
        success: [{ kind: 'put', key: key(i), value, prevKv: false }],
        failure: [],
      });
      const data = encodeEnvelope({
        client: `client-${index % 1000}`,
        seq: Math.floor(index / 1000) + 1,
        timeMs: 0,
        payload,
      });
      sm.apply([{ index, term: 1, timeMs: 0, payload: data }]);
    }
  return { sm, rm, index };
}

/** Applies the split at the middle key; answers its apply time and the seed. */
function split(n: number, reading: boolean): { ms: number; seed: SplitApplied } {
  const { sm, rm, index } = filled(n);
  let seed: SplitApplied | null = null;
  rm.onSplit((s) => {
    seed = s;
    return Promise.resolve();
  });
  // A snapshot captured before the split and not read yet: the split must keep its keys.
  if (reading) void sm.snapshot();
  const payload = encodeEnvelope({
    client: '',
    seq: 0,
    timeMs: 0,
    payload: RangeMachine.encode({
      split: { key: key(Math.floor(n / 2)), id: 3, generation: 0, replicas: [1, 2, 3] },
    }),
  });
  const started = process.hrtime.bigint();
  const [r] = sm.apply([{ index: index + 1, term: 1, timeMs: 0, payload }]) as [{ kind: string }];
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  if (r.kind !== 'split' || seed === null) throw new Error(`split refused: ${JSON.stringify(r)}`);
  return { ms, seed };
}

const median = (xs: number[]): number =>
  [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

console.log(
  `range split, ${valueBytes}-byte values${values.past ? ', one past version per key' : ''}, median of ${reps}`,
);
console.log('keys      apply ms   apply ms (snapshot being read)   seed encode ms   seed MB');
for (const n of sizes) {
  const plain: number[] = [];
  const reading: number[] = [];
  const encode: number[] = [];
  let bytes = 0;
  for (let r = 0; r < reps; r++) {
    const s = split(n, false);
    plain.push(s.ms);
    const t = process.hrtime.bigint();
    bytes = (await collectSnapshot(s.seed.seed, nextTurn)).length;
    encode.push(Number(process.hrtime.bigint() - t) / 1e6);
    reading.push(split(n, true).ms);
  }
  console.log(
    `${String(n).padEnd(9)} ${median(plain).toFixed(1).padStart(8)}   ${median(reading).toFixed(1).padStart(30)}   ${median(encode).toFixed(1).padStart(14)}   ${(bytes / 1e6).toFixed(1).padStart(7)}`,
  );
}
