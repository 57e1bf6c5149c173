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

import { setMaxListeners } from 'node:events';
import * as hdr from 'hdr-histogram-js';
import { Pool } from 'undici';
import type { BenchCluster, SystemName } from './clusters.js';
import { EvalError } from './errors.js';
import { runClosedLoop, type LoadResult } from './loadgen.js';
import { b64, type HttpOp } from './protocol.js';
import type { Progress, Timing } from './scenarios.js';

export interface WatchPoint {
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

const PREFIX = 'watchbench/';
/** Watchers whose events' latencies are recorded; the others are counted only. */
const SAMPLED = 100;

function now(): number {
  return performance.timeOrigin + performance.now();
}

function watchBody(system: SystemName): string {
  const key = b64(PREFIX);
  if (system === 'etcd') {
    const end = b64(
      PREFIX.slice(0, -1) + String.fromCharCode(PREFIX.charCodeAt(PREFIX.length - 1) + 1),
    );
    return JSON.stringify({ create_request: { key, range_end: end } });
  }
  return JSON.stringify({ key, prefix: true, encoding: 'base64' });
}

const valueRe = /"value":"([^"]*)"/g;

export async function watchPoint(
  c: BenchCluster,
  watchers: number,
  writers: number,
  t: Timing,
  progress: Progress,
  label: string,
): Promise<WatchPoint> {
  const urls = c.running().map((id) => c.clientUrl(id));
  const pools = urls.map(
    (u) => new Pool(u, { connections: Math.ceil(watchers / urls.length) + 1 }),
  );
  const hist = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000 });
  const stop = new AbortController();
  // One signal ends every watch stream: each request listens on it.
  setMaxListeners(watchers + 16, stop.signal);
  let delivered = 0;
  let measuring = false;
  let created = 0;
  const counts: number[] = new Array<number>(watchers).fill(0);
  const streams = Array.from({ length: watchers }, async (_, i) => {
    const res = await (pools[i % pools.length] as Pool).request({
      method: 'POST',
      path: c.system === 'etcd' ? '/v3/watch' : '/v1/watch',
      headers: { 'content-type': 'application/json' },
      body: watchBody(c.system),
      signal: stop.signal,
      bodyTimeout: 0,
    });
    if (res.statusCode !== 200)
      throw new EvalError(
        'EVAL_SCENARIO',
        `watch ${i}: HTTP ${res.statusCode} ${await res.body.text()}`,
      );
    let first = true;
    let rest = '';
    try {
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        const text = rest + chunk.toString('utf8');
        const cut = text.lastIndexOf('\n');
        rest = cut < 0 ? text : text.slice(cut + 1);
        const lines = cut < 0 ? '' : text.slice(0, cut);
        if (first && lines.length > 0) {
          first = false;
          created++;
        }
        const at = now();
        for (const m of lines.matchAll(valueRe)) {
          if (!measuring) continue;
          counts[i] = (counts[i] as number) + 1;
          delivered++;
          if (i < SAMPLED) {
            const sent = Number(Buffer.from(m[1] as string, 'base64').toString('utf8'));
            if (Number.isFinite(sent))
              hist.recordValue(Math.max(1, Math.round((at - sent) * 1000)));
          }
        }
      }
    } catch (err) {
      if (!stop.signal.aborted) throw err;
    }
  });
  const failed = Promise.all(streams).catch((err: unknown) => err);
  try {
    const deadline = Date.now() + 30_000;
    while (created < watchers && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    if (created < watchers)
      throw new EvalError(
        'EVAL_SCENARIO',
        `${label}: only ${created} of ${watchers} watches opened`,
      );
    measuring = true;
    let n = 0;
    const writes = await runClosedLoop({
      urls,
      clients: writers,
      warmupMs: 0,
      durationMs: t.durationMs,
      next: (client): HttpOp => {
        const key = b64(`${PREFIX}${client}/${n++ % 100}`);
        const value = b64(now().toFixed(3));
        return c.system === 'etcd'
          ? { path: '/v3/kv/put', body: `{"key":"${key}","value":"${value}"}` }
          : { path: '/v1/kv/put', body: `{"key":"${key}","value":"${value}","encoding":"base64"}` };
      },
      onTick: (e, total, ops) => progress.tick(label, e, total, ops),
    });
    // Let the last events arrive: a watcher that keeps up gets them within a second.
    const settleBy = Date.now() + 5_000;
    while (Math.min(...counts) < writes.ops && Date.now() < settleBy)
      await new Promise((r) => setTimeout(r, 50));
    const missing = counts.reduce((s, k) => s + Math.max(0, writes.ops - k), 0);
    const point: WatchPoint = {
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
    stop.abort();
    const err = await failed;
    await Promise.all(pools.map((p) => p.destroy()));
    if (err instanceof Error && !stop.signal.aborted) throw err;
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
