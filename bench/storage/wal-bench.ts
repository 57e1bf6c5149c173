// Storage benchmark: the raw disk anchors (4 KiB append + fdatasync rate, sequential write +
// fdatasync bandwidth) and, on the same disk in the same run, the WAL's and SQLite's synced
// appends per second with 256-byte entries at batch sizes 1, 16, 256 and 4096.
//
//   node dist/bench/storage/wal-bench.js [--dir <path>] [--seconds <per measurement>] [--reps <n>]
//
// Goals (issue 3): WAL batch 1 >= 90% of the raw fdatasync rate; WAL large batches >= 70% of
// the raw sequential bandwidth. Each figure is the best of --reps runs, interleaved so that
// drift in the disk's speed hits every contender alike.

import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Entry } from '../../src/raft/index.js';
import { openSqliteStorage, openWalStorage } from '../../src/storage/index.js';
import type { RaftStorage } from '../../src/storage/index.js';
import { benchArgs } from '../args.js';

const ENTRY_BYTES = 256;
const RECORD_OVERHEAD_BYTES = 21; // WAL entry fields (record headers amortised over ~1 MiB)
const BATCHES = [1, 16, 256, 4096] as const;
/** Extra rows: the same batch sizes with callers overlapping (encode one batch while the last syncs). */
const PIPELINED: readonly { batch: number; inflight: number }[] = [
  { batch: 1, inflight: 16 },
  { batch: 4096, inflight: 2 },
];
const COMPACT_EVERY_BYTES = 64 * 1024 * 1024;

interface Figure {
  readonly opsPerSec: number;
  readonly entriesPerSec: number;
  readonly mbPerSec: number;
}

function mb(bytes: number, seconds: number): number {
  return bytes / seconds / 1e6;
}

async function rawAppends(dir: string, chunkBytes: number, seconds: number): Promise<Figure> {
  const path = join(dir, `raw-${chunkBytes}.dat`);
  const fh = await open(path, 'w');
  const chunk = Buffer.alloc(chunkBytes, 0x5a);
  let ops = 0;
  let position = 0;
  const start = performance.now();
  const deadline = start + seconds * 1000;
  try {
    while (performance.now() < deadline) {
      await fh.write(chunk, 0, chunkBytes, position);
      await fh.datasync();
      position += chunkBytes;
      ops++;
    }
  } finally {
    await fh.close();
    await rm(path, { force: true });
  }
  const secs = (performance.now() - start) / 1000;
  return { opsPerSec: ops / secs, entriesPerSec: ops / secs, mbPerSec: mb(position, secs) };
}

function makeBatch(first: number, n: number, payload: Uint8Array): Entry[] {
  const out: Entry[] = new Array<Entry>(n);
  for (let k = 0; k < n; k++) out[k] = { index: first + k, term: 1, type: 'normal', data: payload };
  return out;
}

/** `inflight` callers each persist a batch and wait for it; their calls overlap (group commit). */
async function storeAppends(
  open: () => Promise<RaftStorage>,
  batch: number,
  seconds: number,
  onDiskPerEntryBytes: number,
  inflight = 1,
): Promise<Figure> {
  const s = await open();
  const payload = new Uint8Array(ENTRY_BYTES).fill(0xa5);
  let next = 1;
  let ops = 0;
  let sinceCompactBytes = 0;
  const start = performance.now();
  const deadline = start + seconds * 1000;
  const caller = async (): Promise<void> => {
    while (performance.now() < deadline) {
      const first = next;
      next += batch;
      await s.persist(makeBatch(first, batch, payload), null);
      ops++;
      sinceCompactBytes += batch * ENTRY_BYTES;
      if (sinceCompactBytes >= COMPACT_EVERY_BYTES) {
        sinceCompactBytes = 0;
        await s.log.compact(first - 1);
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: inflight }, caller));
  } finally {
    await s.close();
  }
  const secs = (performance.now() - start) / 1000;
  const entries = next - 1;
  return {
    opsPerSec: ops / secs,
    entriesPerSec: entries / secs,
    mbPerSec: mb(entries * onDiskPerEntryBytes, secs),
  };
}

function best(a: Figure | undefined, b: Figure): Figure {
  return a === undefined || b.entriesPerSec > a.entriesPerSec ? b : a;
}

interface Results {
  raw4k?: Figure;
  rawLarge?: Figure;
  wal: Map<string, Figure>;
  sqlite: Map<string, Figure>;
}

async function runOnce(dir: string, seconds: number, rep: number, r: Results): Promise<void> {
  r.raw4k = best(r.raw4k, await rawAppends(dir, 4096, seconds));
  const largeChunkBytes = 4096 * (ENTRY_BYTES + RECORD_OVERHEAD_BYTES);
  r.rawLarge = best(r.rawLarge, await rawAppends(dir, largeChunkBytes, seconds));
  const runs = [...BATCHES.map((batch) => ({ batch, inflight: 1 })), ...PIPELINED];
  for (const { batch, inflight } of runs) {
    const key = `${batch}x${inflight}`;
    const walDir = join(dir, `wal-${rep}-${key}`);
    const wal = await storeAppends(
      () => openWalStorage(walDir),
      batch,
      seconds,
      ENTRY_BYTES + RECORD_OVERHEAD_BYTES,
      inflight,
    );
    r.wal.set(key, best(r.wal.get(key), wal));
    await rm(walDir, { recursive: true, force: true });
    const sqlDir = join(dir, `sqlite-${rep}-${key}`);
    const sql = await storeAppends(
      () => openSqliteStorage(sqlDir),
      batch,
      seconds,
      ENTRY_BYTES,
      inflight,
    );
    r.sqlite.set(key, best(r.sqlite.get(key), sql));
    await rm(sqlDir, { recursive: true, force: true });
  }
}

const fmt = (n: number, digits = 0): string =>
  n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
const pct = (a: number, b: number): string => `${fmt((100 * a) / b, 0)}%`;

function report(r: Results): void {
  const raw4k = r.raw4k;
  const rawLarge = r.rawLarge;
  if (raw4k === undefined || rawLarge === undefined) throw new Error('no raw figures');
  console.log(`| measurement | WAL | SQLite | raw anchor |`);
  console.log(`|---|---|---|---|`);
  console.log(`| 4 KiB append + fdatasync (Node fs) | | | ${fmt(raw4k.opsPerSec)} syncs/s |`);
  console.log(
    `| sequential write + fdatasync, ${fmt((4096 * (ENTRY_BYTES + RECORD_OVERHEAD_BYTES)) / 1e6, 2)} MB chunks | | | ${fmt(rawLarge.mbPerSec, 1)} MB/s |`,
  );
  for (const { batch, inflight } of [
    ...BATCHES.map((batch) => ({ batch, inflight: 1 })),
    ...PIPELINED,
  ]) {
    const w = r.wal.get(`${batch}x${inflight}`);
    const q = r.sqlite.get(`${batch}x${inflight}`);
    if (w === undefined || q === undefined) continue;
    const label =
      inflight === 1 ? `batch ${batch}` : `batch ${batch}, ${inflight} callers in flight`;
    console.log(
      `| ${label}: entries/s (calls/s), MB/s | ${fmt(w.entriesPerSec)} (${fmt(w.opsPerSec)}), ${fmt(w.mbPerSec, 1)} | ${fmt(q.entriesPerSec)} (${fmt(q.opsPerSec)}), ${fmt(q.mbPerSec, 1)} | |`,
    );
  }
  const w1 = r.wal.get('1x1');
  const wBig = r.wal.get('4096x1');
  const wPipe = r.wal.get('4096x2');
  const q1 = r.sqlite.get('1x1');
  const qBig = r.sqlite.get('4096x1');
  const qPipe = r.sqlite.get('4096x2');
  if (
    w1 === undefined ||
    wBig === undefined ||
    q1 === undefined ||
    qBig === undefined ||
    wPipe === undefined ||
    qPipe === undefined
  )
    return;
  console.log('');
  console.log(`| goal | WAL | SQLite | target |`);
  console.log(`|---|---|---|---|`);
  console.log(
    `| batch 1 calls/s (one sync each) vs raw 4 KiB fdatasync rate | ${pct(w1.opsPerSec, raw4k.opsPerSec)} | ${pct(q1.opsPerSec, raw4k.opsPerSec)} | >= 90% |`,
  );
  console.log(
    `| batch 4096 MB/s written vs raw sequential MB/s | ${pct(wBig.mbPerSec, rawLarge.mbPerSec)} | ${pct(qBig.mbPerSec, rawLarge.mbPerSec)} | >= 70% |`,
  );
  console.log(
    `| same, 2 callers in flight | ${pct(wPipe.mbPerSec, rawLarge.mbPerSec)} | ${pct(qPipe.mbPerSec, rawLarge.mbPerSec)} | >= 70% |`,
  );
}

async function main(): Promise<void> {
  const { values } = benchArgs({
    options: {
      dir: { type: 'string' },
      seconds: { type: 'string', default: '2' },
      reps: { type: 'string', default: '2' },
    },
  });
  const seconds = Number(values.seconds);
  const reps = Number(values.reps);
  if (!(seconds > 0 && seconds <= 60) || !(Number.isInteger(reps) && reps >= 1 && reps <= 10))
    throw new Error(
      `--seconds must be in (0, 60] and --reps in 1..10, got ${values.seconds} and ${values.reps}`,
    );
  const dir = await mkdtemp(join(values.dir ?? tmpdir(), 'flotilla-wal-bench-'));
  const r: Results = { wal: new Map(), sqlite: new Map() };
  console.log(
    `storage benchmark in ${dir}: ${reps} reps x ${seconds} s per measurement, ${ENTRY_BYTES}-byte entries, Node ${process.version}\n`,
  );
  try {
    for (let rep = 0; rep < reps; rep++) await runOnce(dir, seconds, rep, r);
    report(r);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
