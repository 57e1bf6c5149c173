// Watch and lease scenarios, the same for both systems through their JSON APIs (Flotilla's
// /v1/watch and /v1/lease/*, etcd's gateway /v3/watch and /v3/lease/*).
//
// watch:  `watchers` streaming watches of one prefix, spread over the members, while closed-loop
//         writers put to keys under it; every put's value is the time it was sent, so each
//         event received gives a delivery latency (put sent → event received, which includes
//         the put's own commit). Reported: writes/s, events delivered/s (every watcher gets
//         every event: writes × watchers), and the latency of a sample of watchers' events.
// leases: `leases` leases granted, then closed-loop clients keep them alive in turn; reported
//         as keep-alives/s and their latency (the load generator's figures).

import { Worker } from 'node:worker_threads';
import * as hdr from 'hdr-histogram-js';
import { Pool } from 'undici';
import type { BenchCluster } from './clusters.js';
import { EvalError } from './errors.js';
import { runClosedLoop, type LoadResult } from './loadgen.js';
import { b64, type HttpOp } from './protocol.js';
import type { Progress, Timing } from './scenarios.js';
import { WATCH_PREFIX, now, type WatchersOptions, type WatchersResult } from './watchers.js';

export interface WatchPoint {
  readonly protocol: 'http' | 'binary';
  readonly watchers: number;
  readonly writers: number;
  readonly writes: LoadResult;
  readonly eventsDelivered: number;
  readonly eventsPerSec: number;
  /** Events a watcher should have received that never arrived by the end (0 if all kept up). */
  readonly eventsMissing: number;
  readonly deliveryMs: { readonly p50: number; readonly p99: number; readonly max: number };
}

export interface LeasePoint {
  readonly leases: number;
  readonly grantPerSec: number;
  readonly keepAlive: LoadResult;
}

/** Worker threads sharing the watches: the parsing of the fan-out is the client's bottleneck. */
const WATCH_THREADS = 4;
/** Watches whose events' latencies are recorded, over all threads. */
const SAMPLED = 100;

interface Group {
  readonly worker: Worker;
  ask<T>(msg: object, key: string): Promise<T>;
}

function startGroup(o: WatchersOptions): Group {
  const worker = new Worker(new URL('./watch-worker.js', import.meta.url), { workerData: o });
  const waiting = new Map<string, (v: unknown) => void>();
  // A message that came before anyone asked for it (a group may open its watches quickly).
  const early = new Map<string, unknown>();
  worker.on('message', (m: Record<string, unknown>) => {
    for (const [k, v] of Object.entries(m)) {
      const resolve = waiting.get(k);
      if (resolve === undefined) early.set(k, v);
      else {
        waiting.delete(k);
        resolve(v);
      }
    }
  });
  return {
    worker,
    ask: <T>(msg: object, key: string) =>
      new Promise<T>((resolve, reject) => {
        if (early.has(key)) {
          const v = early.get(key);
          early.delete(key);
          resolve(v as T);
          return;
        }
        waiting.set(key, resolve as (v: unknown) => void);
        worker.once('error', reject);
        worker.postMessage(msg);
      }),
  };
}

export async function watchPoint(
  c: BenchCluster,
  watchers: number,
  writers: number,
  t: Timing,
  progress: Progress,
  label: string,
  protocol: 'http' | 'binary' = 'http',
): Promise<WatchPoint> {
  const running = c.running();
  const urls = running.map((id) => c.clientUrl(id));
  const binaryPorts =
    protocol === 'binary'
      ? running.map((id) => {
          const port = c.binaryPort(id);
          if (port === null) throw new Error(`${c.system} has no binary client protocol`);
          return port;
        })
      : undefined;
  const per = Math.ceil(watchers / WATCH_THREADS);
  const groups: Group[] = [];
  for (let g = 0; g * per < watchers; g++) {
    const count = Math.min(per, watchers - g * per);
    const group = startGroup({
      system: c.system,
      urls,
      count,
      offset: g * per,
      sampled: Math.ceil(SAMPLED / WATCH_THREADS),
      ...(binaryPorts === undefined ? {} : { binaryPorts }),
    });
    groups.push(group);
  }
  try {
    const opened = Promise.all(groups.map((g) => g.ask<boolean>({}, 'ready')));
    const timeout = new Promise<never>((_, reject) =>
      setTimeout(
        () =>
          reject(
            new EvalError('EVAL_SCENARIO', `${label}: the watches did not all open within 30 s`),
          ),
        30_000,
      ).unref(),
    );
    await Promise.race([opened, timeout]);
    for (const g of groups) g.worker.postMessage({ measure: true });
    let n = 0;
    const writes = await runClosedLoop({
      urls,
      clients: writers,
      warmupMs: 0,
      durationMs: t.durationMs,
      next: (client): HttpOp => {
        const key = b64(`${WATCH_PREFIX}${client}/${n++ % 100}`);
        const value = b64(now().toFixed(3));
        return c.system === 'etcd'
          ? { path: '/v3/kv/put', body: `{"key":"${key}","value":"${value}"}` }
          : { path: '/v1/kv/put', body: `{"key":"${key}","value":"${value}","encoding":"base64"}` };
      },
      onTick: (e, total, ops) => progress.tick(label, e, total, ops),
    });
    // Let the last events arrive (up to 5 s): a watch that keeps up has them within a second.
    const settleBy = Date.now() + 5_000;
    for (;;) {
      const fewest = Math.min(
        ...(await Promise.all(groups.map((g) => g.ask<number>({ fewest: true }, 'fewest')))),
      );
      if (fewest >= writes.ops || Date.now() > settleBy) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const results = await Promise.all(
      groups.map((g) => g.ask<WatchersResult>({ stop: true }, 'result')),
    );
    const hist = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000 });
    let delivered = 0;
    let missing = 0;
    for (const r of results) {
      for (const k of r.counts) {
        delivered += k;
        missing += Math.max(0, writes.ops - k);
      }
      for (const us of r.samplesUs) hist.recordValue(us);
    }
    const point: WatchPoint = {
      protocol,
      watchers,
      writers,
      writes,
      eventsDelivered: delivered,
      eventsPerSec: Math.round(delivered / (t.durationMs / 1000)),
      eventsMissing: missing,
      deliveryMs: {
        p50: hist.getValueAtPercentile(50) / 1000,
        p99: hist.getValueAtPercentile(99) / 1000,
        max: hist.maxValue / 1000,
      },
    };
    progress.done(
      label,
      `${writes.throughputOpsPerSec.toLocaleString('en')} writes/s, ${point.eventsPerSec.toLocaleString('en')} events/s delivered, ` +
        `delivery p50 ${point.deliveryMs.p50.toFixed(1)} ms, p99 ${point.deliveryMs.p99.toFixed(1)} ms, missing ${missing}`,
    );
    return point;
  } finally {
    await Promise.all(groups.map((g) => g.worker.terminate()));
  }
}

export async function leasePoint(
  c: BenchCluster,
  leases: number,
  clients: number,
  t: Timing,
  progress: Progress,
  label: string,
): Promise<LeasePoint> {
  const leader = c.clientUrl(await c.waitForLeader());
  const pool = new Pool(leader, { connections: clients });
  const ids: string[] = [];
  const started = performance.now();
  try {
    let next = 0;
    await Promise.all(
      Array.from({ length: clients }, async () => {
        while (next < leases) {
          next++;
          const res = await pool.request({
            method: 'POST',
            path: c.system === 'etcd' ? '/v3/lease/grant' : '/v1/lease/grant',
            headers: { 'content-type': 'application/json' },
            body: c.system === 'etcd' ? '{"TTL":600}' : '{"ttl":600}',
          });
          const j = (await res.body.json()) as { ID?: string; id?: number };
          const id = c.system === 'etcd' ? j.ID : j.id;
          if (res.statusCode !== 200 || id === undefined)
            throw new EvalError(
              'EVAL_SCENARIO',
              `grant: HTTP ${res.statusCode} ${JSON.stringify(j)}`,
            );
          ids.push(String(id));
        }
      }),
    );
  } finally {
    await pool.close();
  }
  const grantPerSec = Math.round(leases / ((performance.now() - started) / 1000));
  const keepAlive = await runClosedLoop({
    urls: [leader],
    clients,
    warmupMs: t.warmupMs,
    durationMs: t.durationMs,
    next: (client, n): HttpOp => {
      const id = ids[(client * 7919 + n * clients) % ids.length] as string;
      return c.system === 'etcd'
        ? { path: '/v3/lease/keepalive', body: `{"ID":"${id}"}` }
        : { path: '/v1/lease/keepalive', body: `{"id":${id}}` };
    },
    onTick: (e, total, ops) => progress.tick(label, e, total, ops),
  });
  progress.done(
    label,
    `${grantPerSec.toLocaleString('en')} grants/s; ${keepAlive.throughputOpsPerSec.toLocaleString('en')} keep-alives/s, p50 ${keepAlive.latencyMs.p50} ms, p99 ${keepAlive.latencyMs.p99} ms, errors ${keepAlive.errors}`,
  );
  return { leases, grantPerSec, keepAlive };
}
