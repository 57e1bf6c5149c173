// The scale scenario: does a store with many keys serve as fast as an empty one, what does a
// key cost in memory, and how long does a new follower take to catch up from a snapshot?
//
// For each system, on a fresh 3-member cluster:
//   1. baseline: puts (overwriting keys of a small key set) and linearizable gets of it, at
//      `scaleClients` closed-loop clients;
//   2. preload `scaleKeys` keys of 256-byte values, in transactions of 128 puts (both systems'
//      default limit), and read every member's resident memory (/proc/<pid>/status) before
//      and after: the difference over the keys is the memory per key;
//   3. the same puts and gets, now over the whole key set;
//   4. Flotilla only: a follower is killed, its data directory wiped, and it is started again;
//      the time until it has applied the leader's commit index is the catch-up time, and its
//      first log index says whether it came by snapshot. (etcd does not let a wiped member
//      rejoin under its old identity without a membership change, so it is not measured.)

import { readFileSync } from 'node:fs';
import { Pool } from 'undici';
import type { BenchCluster } from './clusters.js';
import { EvalError } from './errors.js';
import { runClosedLoop, type LoadResult } from './loadgen.js';
import { b64, getOp, putOp, randomValueB64 } from './protocol.js';
import type { Progress, Timing } from './scenarios.js';
import { sleep } from './procs.js';

export interface ScaleLoad {
  readonly puts: LoadResult;
  readonly gets: LoadResult;
}

export interface ScaleResult {
  readonly keys: number;
  readonly valueBytes: number;
  readonly clients: number;
  readonly empty: ScaleLoad;
  readonly loaded: ScaleLoad;
  /** Loaded over empty throughput, puts and gets. */
  readonly ratio: { readonly puts: number; readonly gets: number };
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
  const puts = await runClosedLoop({
    urls,
    clients,
    warmupMs: t.warmupMs,
    durationMs: t.durationMs,
    next: (client, n) => putOp(c.system, key(pick(client, n)), values[n % values.length] as string),
    onTick: (e, total, ops) => p.tick(`${label}, puts`, e, total, ops),
  });
  p.done(`${label}, puts`, `${puts.throughputOpsPerSec.toLocaleString('en')} ops/s`);
  const gets = await runClosedLoop({
    urls,
    clients,
    warmupMs: t.warmupMs,
    durationMs: t.durationMs,
    next: (client, n) => getOp(c.system, key(pick(client, n))),
    onTick: (e, total, ops) => p.tick(`${label}, gets`, e, total, ops),
  });
  p.done(`${label}, gets`, `${gets.throughputOpsPerSec.toLocaleString('en')} ops/s`);
  return { puts, gets };
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
  return {
    keys,
    valueBytes: VALUE_BYTES,
    clients,
    empty,
    loaded,
    ratio: { puts: ratio(loaded.puts, empty.puts), gets: ratio(loaded.gets, empty.gets) },
    preloadSeconds,
    rssMiB: { before, after },
    bytesPerKey,
    catchUp: catchUpResult,
  };
}
