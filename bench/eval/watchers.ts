// A group of streaming watches of one prefix, counting the events each receives and timing a
// sample of them (each value is the time its put was sent). Runs in a worker thread
// (watch-worker.ts) so that several threads share the parsing of a large fan-out: one thread
// parsing 1,000 streams' events was the bottleneck of the first measurements. Flotilla's
// watches go over HTTP, or over its binary client protocol (`binaryPorts`): then a thread's
// watches of one member share one connection.

import { setMaxListeners } from 'node:events';
import { Pool } from 'undici';
import { WireConnection } from '../../src/client/wire.js';
import type { SystemName } from './clusters.js';
import { b64 } from './protocol.js';

export const WATCH_PREFIX = 'watchbench/';

export interface WatchersOptions {
  readonly system: SystemName;
  readonly urls: readonly string[];
  /** Watches this group opens; watch i goes to urls[(offset + i) % urls.length]. */
  readonly count: number;
  readonly offset: number;
  /** How many of this group's watches have their events' latencies recorded. */
  readonly sampled: number;
  /** Flotilla only: watch over the binary client protocol on these ports (as `urls`). */
  readonly binaryPorts?: readonly number[];
}

export interface WatchersResult {
  /** Events each watch received while measuring. */
  readonly counts: number[];
  /** Delivery latencies of the sampled watches' events, microseconds. */
  readonly samplesUs: number[];
}

export function now(): number {
  return performance.timeOrigin + performance.now();
}

function watchBody(system: SystemName): string {
  const key = b64(WATCH_PREFIX);
  if (system === 'etcd') {
    const p = WATCH_PREFIX;
    const end = b64(p.slice(0, -1) + String.fromCharCode(p.charCodeAt(p.length - 1) + 1));
    return JSON.stringify({ create_request: { key, range_end: end } });
  }
  return JSON.stringify({ key, prefix: true, encoding: 'base64' });
}

const valueRe = /"value":"([^"]*)"/g;

export class Watchers {
  private readonly stopper = new AbortController();
  private readonly pools: Pool[];
  private readonly wires: Promise<WireConnection>[];
  private readonly streams: Promise<void>[];
  private measuring = false;
  private opened = 0;
  private readonly counts: number[];
  private readonly samplesUs: number[] = [];
  /** Resolves once every watch is open (its first line arrived). */
  readonly ready: Promise<void>;

  constructor(o: WatchersOptions) {
    setMaxListeners(o.count + 16, this.stopper.signal);
    this.counts = new Array<number>(o.count).fill(0);
    this.pools = o.urls.map(
      (u) => new Pool(u, { connections: Math.ceil(o.count / o.urls.length) + 1 }),
    );
    let opened: () => void = () => undefined;
    this.ready = new Promise((r) => (opened = r));
    this.wires = (o.binaryPorts ?? []).map((port, i) =>
      WireConnection.connect({
        host: new URL(o.urls[i] as string).hostname,
        port,
        timeoutMs: 10_000,
      }),
    );
    const binary = o.binaryPorts !== undefined;
    this.streams = Array.from({ length: o.count }, (_, i) =>
      (binary ? this.binaryStream.bind(this) : this.stream.bind(this))(o, i, () => {
        if (++this.opened === o.count) opened();
      }),
    );
  }

  measure(on: boolean): void {
    this.measuring = on;
  }

  /** Events received so far, fewest over the watches. */
  fewest(): number {
    return Math.min(...this.counts);
  }

  async stop(): Promise<WatchersResult> {
    this.measuring = false;
    this.stopper.abort();
    await Promise.allSettled(this.streams);
    await Promise.all(this.pools.map((p) => p.destroy()));
    for (const w of await Promise.allSettled(this.wires))
      if (w.status === 'fulfilled') w.value.close();
    return { counts: this.counts, samplesUs: this.samplesUs };
  }

  /** One watch over the binary protocol: its frames are the HTTP lines, already decoded. */
  private async binaryStream(o: WatchersOptions, i: number, opened: () => void): Promise<void> {
    const conn = await (this.wires[(o.offset + i) % this.wires.length] as Promise<WireConnection>);
    let first = true;
    try {
      for await (const [status, line] of conn.stream(
        'watch',
        { key: b64(WATCH_PREFIX), prefix: true, encoding: 'base64' },
        { signal: this.stopper.signal, idleMs: 120_000, maxQueued: 1_000_000 },
      )) {
        if (status !== 2) throw new Error(`watch ${i} ended: ${JSON.stringify(line)}`);
        if (first) {
          first = false;
          opened();
        }
        const events = (line as { events?: { kv: { value: string } }[] }).events;
        if (!this.measuring || events === undefined) continue;
        const at = now();
        for (const e of events) {
          this.counts[i] = (this.counts[i] as number) + 1;
          if (i < o.sampled) {
            const sent = Number(Buffer.from(e.kv.value, 'base64').toString('utf8'));
            if (Number.isFinite(sent))
              this.samplesUs.push(Math.max(1, Math.round((at - sent) * 1000)));
          }
        }
      }
    } catch (err) {
      if (!this.stopper.signal.aborted) throw err;
    }
  }

  private async stream(o: WatchersOptions, i: number, opened: () => void): Promise<void> {
    const pool = this.pools[(o.offset + i) % this.pools.length] as Pool;
    const res = await pool.request({
      method: 'POST',
      path: o.system === 'etcd' ? '/v3/watch' : '/v1/watch',
      headers: { 'content-type': 'application/json' },
      body: watchBody(o.system),
      signal: this.stopper.signal,
      bodyTimeout: 0,
    });
    if (res.statusCode !== 200)
      throw new Error(`watch ${i}: HTTP ${res.statusCode} ${await res.body.text()}`);
    let first = true;
    let rest = '';
    try {
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        const text = rest + chunk.toString('utf8');
        const cut = text.lastIndexOf('\n');
        rest = cut < 0 ? text : text.slice(cut + 1);
        if (cut < 0) continue;
        if (first) {
          first = false;
          opened();
        }
        if (!this.measuring) continue;
        const at = now();
        for (const m of text.slice(0, cut).matchAll(valueRe)) {
          this.counts[i] = (this.counts[i] as number) + 1;
          if (i < o.sampled) {
            const sent = Number(Buffer.from(m[1] as string, 'base64').toString('utf8'));
            if (Number.isFinite(sent))
              this.samplesUs.push(Math.max(1, Math.round((at - sent) * 1000)));
          }
        }
      }
    } catch (err) {
      if (!this.stopper.signal.aborted) throw err;
    }
  }
}
