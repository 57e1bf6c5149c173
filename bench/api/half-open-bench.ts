// How long connections that send half a request stay open on the HTTP server. Each opens,
// sends a request line and one header, and waits; the server must answer 408 and close it once
// the header timeout passes. It reports, per connection, the time from connecting to the close.
//
//   node dist/bench/api/half-open-bench.js [--connections 4000] [--headers-timeout-ms 1000]

import { connect } from 'node:net';
import { JsonHttpServer } from '../../src/api/http.js';
import { benchArgs } from '../args.js';

const { values } = benchArgs({
  options: {
    connections: { type: 'string', default: '4000' },
    'headers-timeout-ms': { type: 'string', default: '1000' },
  },
});
const n = Number(values.connections);
const headersTimeoutMs = Number(values['headers-timeout-ms']);
for (const v of [n, headersTimeoutMs]) {
  if (!Number.isSafeInteger(v) || v < 1 || v > 100_000) throw new Error(`bad number ${v}`);
}
/** Give up waiting this long after the timeout: a connection still open then is reported. */
const graceMs = 30_000;

const http = new JsonHttpServer({
  maxBodyBytes: 1024,
  headersTimeoutMs,
  requestTimeoutMs: Math.max(headersTimeoutMs, 30_000),
  idleTimeoutMs: 10_000,
  maxConnections: n + 100,
});
const { port } = await http.listen('127.0.0.1:0');
const lifetimesMs: number[] = [];
let answered408 = 0;
await new Promise<void>((resolve) => {
  const giveUp = setTimeout(resolve, headersTimeoutMs + graceMs);
  for (let i = 0; i < n; i++) {
    let openedAt = 0;
    let data = '';
    const s = connect(port, '127.0.0.1', () => {
      openedAt = performance.now();
      s.write('POST /v1/kv/put HTTP/1.1\r\nHost: bench\r\n');
    });
    s.on('error', () => undefined); // a reset is a close, which is what is measured
    s.on('data', (d: Buffer) => (data += d.toString('latin1')));
    s.on('close', () => {
      lifetimesMs.push(performance.now() - openedAt);
      if (data.startsWith('HTTP/1.1 408')) answered408++;
      if (lifetimesMs.length === n) {
        clearTimeout(giveUp);
        resolve();
      }
    });
  }
});
lifetimesMs.sort((a, b) => a - b);
const at = (q: number) =>
  (
    lifetimesMs[Math.min(lifetimesMs.length - 1, Math.floor(q * lifetimesMs.length))] ?? NaN
  ).toFixed(0);
console.log(
  `${n} half-open connections, header timeout ${headersTimeoutMs} ms: ` +
    `${lifetimesMs.length} closed (${answered408} answered 408), ${n - lifetimesMs.length} still open; ` +
    `open for min ${at(0)} ms, p50 ${at(0.5)}, p99 ${at(0.99)}, max ${at(1)}`,
);
await http.close();
