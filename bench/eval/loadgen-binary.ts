// The closed-loop load generator of loadgen.ts over Flotilla's binary client protocol: N
// clients, each sending one request and waiting for its answer before the next, sharing a few
// connections (client i uses connection i % connections) on which their requests are pipelined.
// Warm-up, the measured window and the HDR histogram are as in loadgen.ts, so the figures
// compare with the HTTP ones point for point.

import * as hdr from 'hdr-histogram-js';
import type { WireOp } from '../../src/api/wire-codec.js';
import { FlotillaError } from '../../src/base/errors.js';
import { WireConnection } from '../../src/client/wire.js';
import { EvalError } from './errors.js';
import { maxClients, round3, type LoadResult } from './loadgen.js';

export interface BinaryLoadOptions {
  readonly host: string;
  readonly port: number;
  readonly connections: number;
  readonly clients: number;
  readonly warmupMs: number;
  readonly durationMs: number;
  /** The next request of client `client`; `n` counts that client's requests from 0. */
  readonly next: (client: number, n: number) => { op: WireOp; body: Record<string, unknown> };
  readonly onTick?: (elapsedMs: number, totalMs: number, ops: number) => void;
}

export async function runClosedLoopBinary(o: BinaryLoadOptions): Promise<LoadResult> {
  if (!Number.isInteger(o.clients) || o.clients < 1 || o.clients > maxClients)
    throw new EvalError('EVAL_BAD_OPTION', `clients must be 1..${maxClients}, got ${o.clients}`);
  if (!Number.isInteger(o.connections) || o.connections < 1 || o.connections > 64)
    throw new EvalError('EVAL_BAD_OPTION', `connections must be 1..64, got ${o.connections}`);
  const conns = await Promise.all(
    Array.from({ length: Math.min(o.connections, o.clients) }, () =>
      WireConnection.connect({ host: o.host, port: o.port, timeoutMs: 5_000 }),
    ),
  );
  const hist = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000 });
  const errorsByStatus: Record<string, number> = {};
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
    const conn = conns[client % conns.length] as WireConnection;
    for (let n = 0; performance.now() < end; n++) {
      const { op, body } = o.next(client, n);
      const start = performance.now();
      let status = 'OK';
      let retryAfterMs = 0;
      try {
        await conn.request(op, body, { read: op === 'range' });
      } catch (err) {
        status = err instanceof FlotillaError ? err.code : 'ERROR';
        if (err instanceof FlotillaError) retryAfterMs = err.retryAfterMs;
        if (conn.closed) {
          // A lost connection ends this client: its requests would all fail at once.
          errors++;
          errorsByStatus[status] = (errorsByStatus[status] ?? 0) + 1;
          return;
        }
      }
      const done = performance.now();
      const counted = start >= measureFrom && done <= end;
      if (status === 'OK') {
        if (!counted) continue;
        ops++;
        hist.recordValue(Math.max(1, Math.round((done - start) * 1000)));
        continue;
      }
      if (counted) {
        errors++;
        errorsByStatus[status] = (errorsByStatus[status] ?? 0) + 1;
      }
      const pauseMs = retryAfterMs > 0 ? retryAfterMs * (1 + Math.random() / 2) : 5;
      await new Promise((r) => setTimeout(r, Math.min(pauseMs, Math.max(0, end - done))));
    }
  };
  try {
    await Promise.all(Array.from({ length: o.clients }, (_, i) => loop(i)));
  } finally {
    if (ticker !== undefined) clearInterval(ticker);
    for (const c of conns) c.close();
  }
  const ms = (q: number): number => round3(hist.getValueAtPercentile(q) / 1000);
  const result: LoadResult = {
    clients: o.clients,
    durationMs: o.durationMs,
    ops,
    errors,
    errorsByStatus,
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
