// The one load generator both systems get: a closed loop of N clients, each sending one request
// and waiting for its answer before the next, over HTTP/1.1 keep-alive (undici Pool, one
// connection per client, no pipelining), JSON bodies. A warm-up runs first and is not counted;
// then every answer that arrives within the measured window is counted, and its latency (from
// send to full body) recorded in an HDR histogram (microseconds, 3 significant digits).

import * as hdr from 'hdr-histogram-js';
import { Pool } from 'undici';
import { EvalError } from './errors.js';
import type { HttpOp } from './protocol.js';

export interface LoadOptions {
  /** Base URL per client (client i uses urls[i % urls.length]). */
  readonly urls: readonly string[];
  readonly clients: number;
  readonly warmupMs: number;
  readonly durationMs: number;
  /** The next request of client `client`; `n` counts that client's requests from 0. */
  readonly next: (client: number, n: number) => HttpOp;
  readonly onTick?: (elapsedMs: number, totalMs: number, ops: number) => void;
  /**
   * After a 429 with a Retry-After header, the client waits that long (with up to 50 % more,
   * at random, so refused clients do not return all at once). Otherwise it pauses 5 ms.
   */
  readonly honourRetryAfter?: boolean;
}

export interface LoadResult {
  readonly clients: number;
  readonly durationMs: number;
  readonly ops: number;
  readonly errors: number;
  readonly errorsByStatus: Record<string, number>;
  /**
   * Errors by status and the code the answer's body gave (Flotilla's `error.code`, the etcd
   * gateway's `code`), e.g. "503 NO_LEADER"; the status alone when the body named none.
   * Absent from the binary load generator's results and from result files made before it.
   */
  readonly errorsByCode?: Record<string, number>;
  readonly throughputOpsPerSec: number;
  readonly latencyMs: {
    readonly mean: number;
    readonly p50: number;
    readonly p90: number;
    readonly p99: number;
    readonly p999: number;
    readonly max: number;
  };
}

export const maxClients = 4096;
const maxDurationMs = 600_000;

function validate(o: LoadOptions): void {
  if (!Number.isInteger(o.clients) || o.clients < 1 || o.clients > maxClients)
    throw new EvalError('EVAL_BAD_OPTION', `clients must be 1..${maxClients}, got ${o.clients}`);
  if (o.durationMs <= 0 || o.durationMs > maxDurationMs || o.warmupMs < 0)
    throw new EvalError(
      'EVAL_BAD_OPTION',
      `duration must be in (0, ${maxDurationMs}] ms and warm-up ≥ 0, got ${o.durationMs} / ${o.warmupMs}`,
    );
  if (o.urls.length === 0) throw new EvalError('EVAL_BAD_OPTION', 'no target URLs');
}

export async function runClosedLoop(o: LoadOptions): Promise<LoadResult> {
  validate(o);
  const pools = new Map<string, Pool>();
  const perUrl = Math.ceil(o.clients / o.urls.length);
  for (const u of new Set(o.urls))
    pools.set(u, new Pool(u, { connections: perUrl, pipelining: 1, keepAliveTimeout: 60_000 }));
  const hist = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000 });
  const errorsByStatus: Record<string, number> = {};
  const errorsByCode: Record<string, number> = {};
  const t0 = performance.now();
  const measureFrom = t0 + o.warmupMs;
  const end = measureFrom + o.durationMs;
  let ops = 0;
  let errors = 0;
  const ticker =
    o.onTick === undefined
      ? undefined
      : setInterval(() => o.onTick?.(performance.now() - t0, o.warmupMs + o.durationMs, ops), 500);
  const loop = async (client: number): Promise<void> => {
    const url = o.urls[client % o.urls.length] as string;
    const pool = pools.get(url) as Pool;
    for (let n = 0; performance.now() < end; n++) {
      const op = o.next(client, n);
      const start = performance.now();
      let status: string;
      let code = '';
      let retryAfterMs = 0;
      try {
        const res = await pool.request({
          path: op.path,
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: op.body,
        });
        const text = await res.body.text();
        status = String(res.statusCode);
        if (res.statusCode !== 200) code = errorCodeOf(text);
        const after = Number(res.headers['retry-after']);
        if (res.statusCode === 429 && Number.isFinite(after)) retryAfterMs = after * 1000;
      } catch (err) {
        status = (err as { code?: string }).code ?? 'ERROR';
      }
      const done = performance.now();
      const counted = start >= measureFrom && done <= end;
      if (status === '200') {
        if (!counted) continue;
        ops++;
        hist.recordValue(Math.max(1, Math.round((done - start) * 1000)));
        continue;
      }
      if (counted) {
        errors++;
        errorsByStatus[status] = (errorsByStatus[status] ?? 0) + 1;
        const key = code === '' ? status : `${status} ${code}`;
        errorsByCode[key] = (errorsByCode[key] ?? 0) + 1;
      }
      // A refused request returns at once; pause so a client does not spin on errors.
      const pauseMs =
        o.honourRetryAfter === true && retryAfterMs > 0
          ? retryAfterMs * (1 + Math.random() / 2)
          : 5;
      await new Promise((r) => setTimeout(r, Math.min(pauseMs, Math.max(0, end - done))));
    }
  };
  try {
    await Promise.all(Array.from({ length: o.clients }, (_, i) => loop(i)));
  } finally {
    if (ticker !== undefined) clearInterval(ticker);
    await Promise.all([...pools.values()].map((p) => p.close()));
  }
  const ms = (q: number): number => round3(hist.getValueAtPercentile(q) / 1000);
  const result: LoadResult = {
    clients: o.clients,
    durationMs: o.durationMs,
    ops,
    errors,
    errorsByStatus,
    errorsByCode,
    throughputOpsPerSec: Math.round((ops / o.durationMs) * 1000),
    latencyMs: {
      mean: round3(hist.mean / 1000),
      p50: ms(50),
      p90: ms(90),
      p99: ms(99),
      p999: ms(99.9),
      max: round3(hist.maxValue / 1000),
    },
  };
  hist.destroy();
  return result;
}

export function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

/** The error code an answer's body names, or '' (not JSON, or no code in it). */
export function errorCodeOf(body: string): string {
  try {
    const o = JSON.parse(body) as { error?: { code?: unknown }; code?: unknown } | null;
    const code = o?.error?.code ?? o?.code;
    return typeof code === 'string' || typeof code === 'number' ? String(code) : '';
  } catch {
    return '';
  }
}
