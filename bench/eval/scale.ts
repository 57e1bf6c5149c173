// The scale scenario: does a store with many keys serve as fast as an empty one, what does a
// key cost in memory, and how long does a new follower take to catch up from a snapshot?
//
// For each system, on a fresh 3-member cluster:
//   1. baseline: puts (overwriting keys of a small key set) and linearizable gets of it, at
//      `scaleClients` closed-loop clients;
//   2. preload `scaleKeys` keys of 256-byte values, in transactions of 128 puts (both systems'
//      default limit), and read every member's resident memory (/proc/<pid>/status) before
//      and after: the difference over the keys is the memory per key;
//   3. Flotilla only: puts, not measured, until every member saved the snapshot of the loaded
//      store that the preload made due (settle below), their throughput recorded per 5 s: what
//      the store does while it snapshots, which at a million keys takes seconds and comes again
//      only once the log holds half the state's bytes;
//   4. the same puts and gets as in 1, now over the whole key set: besides each point's
//      throughput, the median of its half-second rates and, for Flotilla, the snapshots the
//      members saved during it;
//   5. Flotilla only: a follower is killed, its data directory wiped, and it is started again;
//      the time until it has applied the leader's commit index is the catch-up time, and its
//      first log index says whether it came by snapshot. (etcd does not let a wiped member
//      rejoin under its old identity without a membership change, so it is not measured.)

import { readFileSync } from 'node:fs';
import { Pool } from 'undici';
import type { BenchCluster } from './clusters.js';
import { EvalError } from './errors.js';
import { runClosedLoop, type LoadOptions, type LoadResult } from './loadgen.js';
import { b64, getOp, putOp, randomValueB64 } from './protocol.js';
import type { Progress, Timing } from './scenarios.js';
import { sleep } from './procs.js';
import { median } from '../stats.js';

export interface ScaleLoad {
  readonly puts: LoadResult;
  readonly gets: LoadResult;
  /** Operations per second in each half second of the measured window, puts and gets. */
  readonly rates: { readonly puts: readonly number[]; readonly gets: readonly number[] };
  /** Flotilla: snapshots saved by all members during the puts and during the gets. */
  readonly snapshotsSaved: { readonly puts: number; readonly gets: number } | null;
}

export interface ScaleResult {
  readonly keys: number;
  readonly valueBytes: number;
  readonly clients: number;
  readonly empty: ScaleLoad;
  readonly loaded: ScaleLoad;
  /** Loaded over empty throughput, puts and gets. */
  readonly ratio: { readonly puts: number; readonly gets: number };
  /** The same from the median half-second rates. */
  readonly medianRatio: { readonly puts: number; readonly gets: number };
  /**
   * Flotilla: the puts run after the preload, not measured, until the members had saved a
   * snapshot of the loaded store (or SETTLE_MAX_MS passed): the throughput of each 5 s of them
   * and the snapshots saved meanwhile. The loaded points are measured after it, between
   * snapshots; null for etcd, whose snapshots copy nothing.
   */
  readonly settle: {
    readonly opsPerSec: readonly number[];
    readonly snapshotsSaved: number;
  } | null;
  readonly preloadSeconds: number;
  /** Resident memory of each member before and after the preload, MiB. */
  readonly rssMiB: { readonly before: number[]; readonly after: number[] };
  /** Resident memory added per key, bytes: the mean over the members of (after - before) / keys. */
  readonly bytesPerKey: number;
  readonly catchUp: {
    readonly seconds: number;
    readonly appliedIndex: number;
    readonly bySnapshot: boolean;
    /**
     * The caught-up follower's resident memory then and its peak since it started (VmHWM),
     * MiB: what installing the snapshot cost it at most.
     */
    readonly rssMiB: number;
    readonly peakRssMiB: number;
  } | null;
}

const VALUE_BYTES = 256;
const BATCH = 128;
const SMALL_KEYS = 1_000;

function key(i: number): string {
  return b64(`scale/${i.toString().padStart(8, '0')}`);
}

function txnBody(c: BenchCluster, from: number, to: number, values: readonly string[]): string {
  const ops: string[] = [];
  for (let i = from; i < to; i++) {
    const k = key(i);
    const v = values[i % values.length] as string;
    ops.push(
      c.system === 'etcd'
        ? `{"requestPut":{"key":"${k}","value":"${v}"}}`
        : `{"put":{"key":"${k}","value":"${v}"}}`,
    );
  }
  return c.system === 'etcd'
    ? `{"success":[${ops.join(',')}]}`
    : `{"compare":[],"success":[${ops.join(',')}],"encoding":"base64"}`;
}

/** Puts keys [0, count) in transactions of 128, 16 in flight, through the leader. */
async function preload(
  c: BenchCluster,
  count: number,
  values: readonly string[],
  p: Progress,
  label: string,
): Promise<void> {
  const leader = await c.waitForLeader();
  const pool = new Pool(c.clientUrl(leader), { connections: 16 });
  const path = c.system === 'etcd' ? '/v3/kv/txn' : '/v1/kv/txn';
  const batches = Math.ceil(count / BATCH);
  let next = 0;
  let done = 0;
  const t0 = performance.now();
  const ticker = setInterval(
    () =>
      p.tick(
        label,
        performance.now() - t0,
        (performance.now() - t0) * (batches / Math.max(1, done)),
        done * BATCH,
      ),
    500,
  );
  const worker = async (): Promise<void> => {
    for (let b = next++; b < batches; b = next++) {
      const body = txnBody(c, b * BATCH, Math.min(count, (b + 1) * BATCH), values);
      for (let attempt = 0; ; attempt++) {
        const res = await pool.request({
          method: 'POST',
          path,
          headers: { 'content-type': 'application/json' },
          body,
          headersTimeout: 30_000,
          bodyTimeout: 30_000,
        });
        const text = await res.body.text();
        if (res.statusCode === 200) break;
        // Overload answers say nothing was done: wait and send the same batch again.
        if (attempt >= 20 || (res.statusCode !== 429 && res.statusCode !== 503))
          throw new EvalError(
            'EVAL_SCENARIO',
            `${label}: batch ${b} failed with HTTP ${res.statusCode}: ${text.slice(0, 200)}`,
          );
        await sleep(200);
      }
      done++;
    }
  };
  try {
    await Promise.all(Array.from({ length: 16 }, worker));
  } finally {
    clearInterval(ticker);
    await pool.close();
  }
}

/** Snapshots saved so far by all of a Flotilla cluster's members (their /metrics). */
async function snapshotsSaved(c: BenchCluster): Promise<number> {
  let total = 0;
  for (const id of c.ids) {
    const res = await fetch(`${c.clientUrl(id)}/metrics`, { signal: AbortSignal.timeout(5_000) });
    const m = /^flotilla_snapshots_total\{[^}]*kind="saved"[^}]*\} (\d+)/m.exec(await res.text());
    total += m === null ? 0 : Number(m[1]);
  }
  return total;
}

/**
 * One closed-loop point, with the rate of each half second of its measured window (from the
 * load generator's ticks, which come every 500 ms with the operations counted so far).
 */
async function timedPoint(
  o: Omit<LoadOptions, 'onTick'>,
  p: Progress,
  label: string,
): Promise<{ result: LoadResult; rates: number[] }> {
  const ticks: { ms: number; ops: number }[] = [];
  const result = await runClosedLoop({
    ...o,
    onTick: (e, total, ops) => {
      ticks.push({ ms: e, ops });
      p.tick(label, e, total, ops);
    },
  });
  const rates: number[] = [];
  for (let i = 1; i < ticks.length; i++) {
    const [a, b] = [ticks[i - 1], ticks[i]] as [
      { ms: number; ops: number },
      { ms: number; ops: number },
    ];
    if (a.ms >= o.warmupMs && b.ms <= o.warmupMs + o.durationMs && b.ms > a.ms)
      rates.push(Math.round(((b.ops - a.ops) * 1000) / (b.ms - a.ms)));
  }
  const errors = Object.entries(result.errorsByCode ?? result.errorsByStatus)
    .map(([what, n]) => `${n} × ${what}`)
    .join(', ');
  p.done(
    label,
    `${result.throughputOpsPerSec.toLocaleString('en')} ops/s (median of half seconds ${median(rates).toLocaleString('en')})` +
      (errors === '' ? '' : `; errors: ${errors}`),
  );
  return { result, rates };
}

async function load(
  c: BenchCluster,
  keys: number,
  clients: number,
  values: readonly string[],
  t: Timing,
  p: Progress,
  label: string,
): Promise<ScaleLoad> {
  const leader = await c.waitForLeader();
  const urls = [c.clientUrl(leader)];
  // A different pseudo-random key for each request, over the whole key set.
  const pick = (client: number, n: number): number =>
    Math.floor(((client * 2_654_435_761 + n * 40_503) >>> 0) % keys);
  const saved = async (): Promise<number> => (c.system === 'flotilla' ? snapshotsSaved(c) : 0);
  const s0 = await saved();
  // One measured point over the key set: the same clients and timing, `next`'s requests.
  const point = (next: LoadOptions['next'], what: string) =>
    timedPoint(
      { urls, clients, warmupMs: t.warmupMs, durationMs: t.durationMs, next },
      p,
      `${label}, ${what}`,
    );
  const puts = await point(
    (client, n) => putOp(c.system, key(pick(client, n)), values[n % values.length] as string),
    'puts',
  );
  const s1 = await saved();
  const gets = await point((client, n) => getOp(c.system, key(pick(client, n))), 'gets');
  const s2 = await saved();
  return {
    puts: puts.result,
    gets: gets.result,
    rates: { puts: puts.rates, gets: gets.rates },
    snapshotsSaved: c.system === 'flotilla' ? { puts: s1 - s0, gets: s2 - s1 } : null,
  };
}

const SETTLE_CHUNK_MS = 5_000;
const SETTLE_MAX_MS = 120_000;

/**
 * After the preload a snapshot of the loaded store comes due at the next multiple of
 * snapshotEveryEntries (the log since the last one holds more than half the state's bytes), and
 * each member takes seconds to encode and write it. Puts, not measured, run in 5 s chunks until
 * every member saved one (or two minutes passed: none was due), so that the loaded points
 * measure the store between snapshots; the chunks' throughput is the store while it snapshots.
 */
async function settle(
  c: BenchCluster,
  keys: number,
  clients: number,
  values: readonly string[],
  p: Progress,
  tag: string,
): Promise<NonNullable<ScaleResult['settle']>> {
  const leader = await c.waitForLeader();
  const pick = (client: number, n: number): number =>
    Math.floor(((client * 2_654_435_761 + n * 7_919 + 13) >>> 0) % keys);
  const s0 = await snapshotsSaved(c);
  const opsPerSec: number[] = [];
  const label = `${tag}: puts until every member saved a snapshot of the loaded store`;
  for (let ms = 0; ms < SETTLE_MAX_MS; ms += SETTLE_CHUNK_MS) {
    const r = await runClosedLoop({
      urls: [c.clientUrl(leader)],
      clients,
      warmupMs: 0,
      durationMs: SETTLE_CHUNK_MS,
      next: (client, n) =>
        putOp(c.system, key(pick(client, n + ms)), values[n % values.length] as string),
      onTick: (e, _total, ops) => p.tick(label, ms + e, SETTLE_MAX_MS, ops),
    });
    opsPerSec.push(Math.round(r.throughputOpsPerSec));
    if ((await snapshotsSaved(c)) - s0 >= c.ids.length) break;
  }
  const snapshots = (await snapshotsSaved(c)) - s0;
  p.done(label, `${snapshots} saved; puts/s per 5 s: ${opsPerSec.join(', ')}`);
  return { opsPerSec, snapshotsSaved: snapshots };
}

/** A process's resident memory (VmRSS), or its peak (VmHWM), in MiB; 0 when it is gone. */
function rssMiB(pid: number | null, field: 'VmRSS' | 'VmHWM' = 'VmRSS'): number {
  if (pid === null) return 0;
  try {
    const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(
      readFileSync(`/proc/${pid}/status`, 'utf8'),
    );
    return m === null ? 0 : Math.round((Number(m[1]) / 1024) * 10) / 10;
  } catch {
    return 0; // the process is gone: nothing to measure
  }
}

interface FlotillaStatus {
  readonly commit: number;
  readonly applied: number;
  readonly firstIndex: number;
  readonly recovering: boolean;
}

async function status(c: BenchCluster, id: number): Promise<FlotillaStatus | null> {
  try {
    const res = await fetch(`${c.clientUrl(id)}/v1/status`, { signal: AbortSignal.timeout(2_000) });
    return res.ok ? ((await res.json()) as FlotillaStatus) : null;
  } catch {
    return null; // not up yet
  }
}

/** Kills a follower, wipes its data, restarts it, and times its catch-up to the leader. */
async function catchUp(
  c: BenchCluster,
  p: Progress,
  label: string,
): Promise<ScaleResult['catchUp']> {
  const leader = await c.waitForLeader();
  const follower = c.ids.find((id) => id !== leader) as number;
  await c.killMember(follower);
  c.wipeMember(follower);
  const target = (await status(c, leader))?.commit ?? 0;
  const t0 = performance.now();
  c.startMember(follower);
  const deadline = t0 + 300_000;
  for (;;) {
    const s = await status(c, follower);
    if (s !== null && !s.recovering && s.applied >= target) {
      const seconds = Math.round((performance.now() - t0) / 10) / 100;
      const pid = c.pid(follower);
      const [rss, peak] = [rssMiB(pid), rssMiB(pid, 'VmHWM')];
      p.done(
        label,
        `${seconds} s to apply index ${target} (first log index ${s.firstIndex}; ${rss} MiB resident, peak ${peak})`,
      );
      return {
        seconds,
        appliedIndex: s.applied,
        bySnapshot: s.firstIndex > 1,
        rssMiB: rss,
        peakRssMiB: peak,
      };
    }
    if (performance.now() > deadline)
      throw new EvalError(
        'EVAL_SCENARIO',
        `${label}: the wiped follower did not catch up to ${target} within 300 s (last: ${JSON.stringify(s)})`,
      );
    p.tick(label, performance.now() - t0, 300_000, s?.applied ?? 0);
    await sleep(100);
  }
}

export async function scalePoint(
  c: BenchCluster,
  keys: number,
  clients: number,
  t: Timing,
  p: Progress,
): Promise<ScaleResult> {
  const values = Array.from({ length: 8 }, (_, i) => randomValueB64(VALUE_BYTES, i + 11));
  const tag = `${c.system} scale`;
  await preload(c, SMALL_KEYS, values, p, `${tag}: ${SMALL_KEYS} keys`);
  const empty = await load(c, SMALL_KEYS, clients, values, t, p, `${tag}, ${SMALL_KEYS} keys`);
  const before = c.ids.map((id) => rssMiB(c.pid(id)));
  const t0 = performance.now();
  await preload(c, keys, values, p, `${tag}: preloading ${keys.toLocaleString('en')} keys`);
  const preloadSeconds = Math.round((performance.now() - t0) / 100) / 10;
  p.done(`${tag}: preloaded`, `${keys.toLocaleString('en')} keys in ${preloadSeconds} s`);
  const after = c.ids.map((id) => rssMiB(c.pid(id)));
  const settled = c.system === 'flotilla' ? await settle(c, keys, clients, values, p, tag) : null;
  const loaded = await load(
    c,
    keys,
    clients,
    values,
    t,
    p,
    `${tag}, ${keys.toLocaleString('en')} keys`,
  );
  const perMember = after.map((a, i) => ((a - (before[i] as number)) * 1024 * 1024) / keys);
  const bytesPerKey = Math.round(perMember.reduce((x, y) => x + y, 0) / perMember.length);
  const catchUpResult =
    c.system === 'flotilla' ? await catchUp(c, p, `${tag}: wiped follower catching up`) : null;
  const ratio = (x: LoadResult, y: LoadResult) =>
    Math.round((x.throughputOpsPerSec / Math.max(1, y.throughputOpsPerSec)) * 100) / 100;
  const medianRatio = (x: readonly number[], y: readonly number[]) =>
    Math.round((median(x) / Math.max(1, median(y))) * 100) / 100;
  return {
    keys,
    valueBytes: VALUE_BYTES,
    clients,
    empty,
    loaded,
    ratio: { puts: ratio(loaded.puts, empty.puts), gets: ratio(loaded.gets, empty.gets) },
    medianRatio: {
      puts: medianRatio(loaded.rates.puts, empty.rates.puts),
      gets: medianRatio(loaded.rates.gets, empty.rates.gets),
    },
    preloadSeconds,
    settle: settled,
    rssMiB: { before, after },
    bytesPerKey,
    catchUp: catchUpResult,
  };
}
