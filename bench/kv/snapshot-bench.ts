// How long a key-value snapshot blocks the event loop. A node's heartbeats, votes and client
// requests all wait while the event loop is busy, so a block longer than the election timeout
// (150 ms by default) can cost a leader its leadership. For each store size it measures, in
// one run: encoding the whole state in one go (format 1, what earlier releases did), copying
// the store's state at once (what a snapshot's capture did until it became copy-on-write), and
// the sliced, copy-on-write snapshot gathered into one buffer (what nodes did until it was
// written as encoded, and what in-memory and SQLite storage still do), and the same written to
// a snapshot file as it is encoded (what nodes on the WAL do now, fsync included), reporting
// total time and the longest block; and how long a fresh machine takes to restore it (what a
// follower does with a snapshot it received). With --past every key is written twice, so each
// has an older version kept too (the overload benchmark's shape).
//
//   node dist/bench/kv/snapshot-bench.js [--keys 10000,30000,100000] [--value-bytes 256] [--reps 3] [--past]

import { Packr } from 'msgpackr';
import { KvStateMachine } from '../../src/kv/machine.js';
import { KvStore } from '../../src/kv/kv-store.js';
import { SessionMachine } from '../../src/host/sessions.js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chunkStream } from '../../src/host/contracts.js';
import { collectSnapshot, framedSnapshot } from '../../src/host/snapshot-stream.js';
import { nodeFs } from '../../src/storage/fs.js';
import { Syncer } from '../../src/storage/fsutil.js';
import { writeSnapshotFileFrom } from '../../src/storage/snapshot-file.js';
import { encodeWrite } from '../../src/server/kv-service.js';
import { benchArgs } from '../args.js';

const { values } = benchArgs({
  options: {
    keys: { type: 'string', default: '10000,30000,100000' },
    'value-bytes': { type: 'string', default: '256' },
    reps: { type: 'string', default: '3' },
    past: { type: 'boolean', default: false },
  },
});
const sizes = values.keys.split(',').map(Number);
const valueBytes = Number(values['value-bytes']);
const reps = Number(values.reps);
for (const n of [...sizes, valueBytes, reps]) {
  if (!Number.isSafeInteger(n) || n < 1 || n > 10_000_000) throw new Error(`bad number ${n}`);
}

const enc = new TextEncoder();
const packr = new Packr({ useRecords: false, moreTypes: false });

let index = 0;
function fill(sm: SessionMachine, store: KvStore, from: number, to: number): void {
  const value = new Uint8Array(valueBytes).fill(0x61);
  for (let pass = 0; pass < (values.past ? 2 : 1); pass++)
    for (let i = from; i <= to; i++) write(sm, store, i, value);
}

function write(sm: SessionMachine, store: KvStore, i: number, value: Uint8Array): void {
  index++;
  const op = { kind: 'put' as const, key: enc.encode(`key-${i}`), value, prevKv: false };
  store.apply({ compare: [], success: [op], failure: [] });
  const data = encodeWrite(
    { compare: [], success: [op], failure: [] },
    { clientId: `client-${index % 1000}`, seq: Math.floor(index / 1000) + 1 },
    index,
    Infinity,
  );
  sm.apply([{ term: 1, index, timeMs: 0, payload: data }]);
}

/**
 * Runs `work` while a ticker re-arms itself with setImmediate, as a node's I/O callbacks would
 * run; the longest gap between two ticks is the longest the event loop was blocked.
 */
async function measure(
  work: () => Promise<unknown>,
): Promise<{ totalMs: number; maxBlockMs: number }> {
  let last = performance.now();
  let maxBlockMs = 0;
  let ticking = true;
  const tick = (): void => {
    const now = performance.now();
    maxBlockMs = Math.max(maxBlockMs, now - last);
    last = now;
    if (ticking) setImmediate(tick);
  };
  setImmediate(tick);
  const start = performance.now();
  last = start;
  await work();
  const totalMs = performance.now() - start;
  await new Promise((r) => setImmediate(r));
  ticking = false;
  maxBlockMs = Math.max(maxBlockMs, performance.now() - last);
  return { totalMs, maxBlockMs };
}

const kv = new KvStateMachine({ maxKeyBytes: 1024, maxValueBytes: 1 << 20 });
const sm = new SessionMachine(kv);
// The same keys in a bare store: copying its state at once is what a capture used to cost.
const store = new KvStore();
let have = 0;
console.log(
  `value ${valueBytes} B, ${values.past ? 'every key with one past version, ' : ''}best of ${reps} runs`,
);
console.log(
  'keys      bytes     | one go: total, longest block | copy at once | sliced: total, longest block | written as encoded: total, longest block | restore',
);
const dir = await mkdtemp(join(tmpdir(), 'snapshot-bench-'));
const syncer = new Syncer(nodeFs, undefined);
for (const n of sizes) {
  fill(sm, store, have + 1, n);
  have = Math.max(have, n);
  let copyMs = Infinity;
  let oneGo = { totalMs: Infinity, maxBlockMs: Infinity };
  let sliced = { totalMs: Infinity, maxBlockMs: Infinity };
  let streamed = { totalMs: Infinity, maxBlockMs: Infinity };
  let restoreMs = Infinity;
  let bytes = 0;
  // The same records in format 1's layout, for the one-go comparison (built outside the timing).
  const everything = { key: new Uint8Array([0]), rangeEnd: new Uint8Array([0]) };
  const kvs = kv.range({ range: everything, limit: 0, countOnly: false }).kvs;
  const v1 = { v: 1, kv: { revision: kv.revision(), kvs }, sessions: { clockMs: 0, sessions: [] } };
  for (let r = 0; r < reps; r++) {
    const a = await measure(() => {
      packr.pack(v1);
      return Promise.resolve();
    });
    if (a.totalMs < oneGo.totalMs) oneGo = a;
    const t0 = performance.now();
    store.snapshotState();
    copyMs = Math.min(copyMs, performance.now() - t0);
    const b = await measure(async () => {
      // As the runtime reads it: one chunk per turn of the event loop.
      bytes = (await collectSnapshot(sm.snapshot(), () => new Promise((r) => setImmediate(r))))
        .length;
    });
    if (b.maxBlockMs < sliced.maxBlockMs) sliced = b;
    const c = await measure(async () => {
      const turn = (): Promise<void> => new Promise((r) => setImmediate(r));
      const meta = { index: n, term: 1, voters: [1, 2, 3] };
      await writeSnapshotFileFrom(syncer, dir, meta, framedSnapshot(sm.snapshot(), turn), 2 ** 40);
    });
    if (c.maxBlockMs < streamed.maxBlockMs) streamed = c;
    // What a follower that received the snapshot does with it: the chunks into a fresh machine.
    const chunks: Uint8Array[] = [];
    for await (const chunk of sm.snapshot()) chunks.push(chunk);
    const fresh = new SessionMachine(
      new KvStateMachine({ maxKeyBytes: 1024, maxValueBytes: 1 << 20 }),
    );
    const t1 = performance.now();
    await fresh.restore(chunkStream(() => chunks[Symbol.iterator]()));
    restoreMs = Math.min(restoreMs, performance.now() - t1);
  }
  console.log(
    `${String(n).padEnd(9)} ${(bytes / 1e6).toFixed(1).padStart(5)} MB  | ` +
      `${oneGo.totalMs.toFixed(0).padStart(5)} ms, ${oneGo.maxBlockMs.toFixed(0).padStart(5)} ms         | ` +
      `${copyMs.toFixed(0).padStart(6)} ms    | ` +
      `${sliced.totalMs.toFixed(0).padStart(5)} ms, ${sliced.maxBlockMs.toFixed(0).padStart(4)} ms    | ` +
      `${streamed.totalMs.toFixed(0).padStart(5)} ms, ${streamed.maxBlockMs.toFixed(0).padStart(4)} ms    | ` +
      `${restoreMs.toFixed(0).padStart(5)} ms`,
  );
}
await rm(dir, { recursive: true, force: true });
