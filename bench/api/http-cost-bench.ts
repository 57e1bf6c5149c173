// What the HTTP front costs a node per request, without Raft: a JsonHttpServer in a child
// process answers key-value puts (the body parsed, validated by the same code as a node's, and
// answered with a header) while this process sends them from closed-loop clients over
// keep-alive connections. It prints requests/s and the server's CPU per request (user + system
// from /proc), after a warm-up, for each round.
//
//   node dist/bench/api/http-cost-bench.js [--clients 64] [--seconds 5] [--rounds 3]

import { fork } from 'node:child_process';
import { Pool } from 'undici';
import { Counter, Registry } from 'prom-client';
import { JsonHttpServer } from '../../src/api/http.js';
import { parseWrite } from '../../src/api/requests.js';
import { defaultLimits } from '../../src/base/limits.js';
import { cpuSeconds } from '../eval/cpu.js';
import { benchArgs } from '../args.js';

const WARMUP_MS = 2_000;

async function serve(): Promise<void> {
  const registry = new Registry();
  const requests = new Counter({
    name: 'requests_total',
    help: 'requests by route and status',
    labelNames: ['route', 'status'],
    registers: [registry],
  });
  const server = new JsonHttpServer({
    maxBodyBytes: 2 << 20,
    headersTimeoutMs: 10_000,
    requestTimeoutMs: 30_000,
    idleTimeoutMs: 60_000,
    maxConnections: 10_000,
    // As a node counts its requests.
    onRequest: (route, status) => requests.inc({ route, status: String(status) }),
  });
  server.countAgainstAdmission('/v1/kv/put');
  let revision = 1;
  server.route('POST', '/v1/kv/put', async (ctx) => {
    parseWrite('put', ctx.body, defaultLimits);
    // Where a node would propose and wait: one turn of the microtask queue.
    await Promise.resolve();
    return { json: { header: { revision: ++revision, memberId: 1, raftTerm: 2 } } };
  });
  const address = await server.listen('127.0.0.1:0');
  process.send?.(address.port);
}

async function drive(clients: number, seconds: number): Promise<void> {
  const child = fork(new URL(import.meta.url).pathname, ['--serve'], { stdio: 'inherit' });
  try {
    const port = await new Promise<number>((resolve, reject) => {
      child.once('message', (m) => resolve(m as number));
      child.once('exit', (code) => reject(new Error(`the server exited with ${code}`)));
    });
    const pool = new Pool(`http://127.0.0.1:${port}`, { connections: clients, pipelining: 1 });
    const value = Buffer.alloc(256, 7).toString('base64');
    let stop = false;
    let counting = false;
    let ops = 0;
    const loop = async (c: number): Promise<void> => {
      for (let n = 0; !stop; n++) {
        const key = Buffer.from(`bench/${c}/${n % 1000}`).toString('base64');
        const res = await pool.request({
          path: '/v1/kv/put',
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: `{"key":"${key}","value":"${value}","encoding":"base64","clientId":"c${c}","seq":${n + 1}}`,
        });
        await res.body.text();
        if (res.statusCode !== 200) throw new Error(`status ${res.statusCode}`);
        if (counting) ops++;
      }
    };
    const loops = Array.from({ length: clients }, (_, c) => loop(c));
    await new Promise((r) => setTimeout(r, WARMUP_MS));
    counting = true;
    const cpu0 = cpuSeconds(child.pid as number) ?? NaN;
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const cpu1 = cpuSeconds(child.pid as number) ?? NaN;
    const elapsed = (performance.now() - t0) / 1000;
    counting = false;
    stop = true;
    await Promise.all(loops);
    await pool.close();
    const perRequestUs = ((cpu1 - cpu0) * 1e6) / ops;
    console.log(
      `${clients} clients: ${Math.round(ops / elapsed).toLocaleString('en-US')} requests/s, ` +
        `server CPU ${perRequestUs.toFixed(1)} µs per request`,
    );
  } finally {
    child.kill('SIGKILL');
  }
}

if (process.argv.includes('--serve')) {
  await serve();
} else {
  const { values } = benchArgs({
    options: {
      clients: { type: 'string', default: '64' },
      seconds: { type: 'string', default: '5' },
      rounds: { type: 'string', default: '3' },
    },
  });
  const clients = Number(values.clients);
  const seconds = Number(values.seconds);
  const rounds = Number(values.rounds);
  for (const [name, v, max] of [
    ['clients', clients, 4096],
    ['seconds', seconds, 600],
    ['rounds', rounds, 100],
  ] as const)
    if (!Number.isInteger(v) || v < 1 || v > max)
      throw new RangeError(`--${name} must be an integer 1..${max}, got ${v}`);
  for (let i = 0; i < rounds; i++) await drive(clients, seconds);
}
