// Transport benchmark: two TCP transports on loopback in one process.
//   1. throughput: append messages of 16 x 256-byte entries, a window of 512 unanswered
//      messages, for 5 s; prints messages/s and MB/s of entry data.
//   2. latency: heartbeat round trips (heartbeat -> heartbeat-resp) every 1 ms while the same
//      bulk append stream runs (window 64, so one event-loop turn stays short: both nodes
//      share this process), for 5 s; prints p50/p99/max.
// Run: npm run build && node dist/bench/transport/transport-bench.js

import type { Entry, Message } from '../../src/raft/types.js';
import { TcpTransport } from '../../src/transport/tcp.js';
import { benchArgs } from '../args.js';

// No options: --help says so, and any option is refused rather than ignored.
benchArgs({ options: {} });

const phaseMs = 5000;
const throughputWindow = 512;
const latencyWindow = 64;
const entryBytes = 256;
const entriesPerMsg = 16;

function append(seq: number): Message {
  const entries: Entry[] = Array.from({ length: entriesPerMsg }, (_, i) => ({
    term: 1,
    index: seq * entriesPerMsg + i + 1,
    type: 'normal',
    data: new Uint8Array(entryBytes).fill(i),
  }));
  return {
    from: 1,
    to: 2,
    term: 1,
    type: 'append',
    prevIndex: seq * entriesPerMsg,
    prevTerm: 1,
    entries,
    commit: 0,
  };
}

async function start(id: number): Promise<TcpTransport> {
  return TcpTransport.listen({
    nodeId: id,
    clusterId: 'bench',
    listen: { host: '127.0.0.1', port: 0 },
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Keeps `window` appends in flight until `stopAt`; returns the number delivered. */
async function bulkStream(
  a: TcpTransport,
  received: { n: number },
  stopAt: number,
  window: number,
): Promise<number> {
  let sent = 0;
  const first = received.n;
  while (Date.now() < stopAt) {
    while (sent - (received.n - first) < window) a.send(append(sent++));
    await new Promise((r) => setImmediate(r));
  }
  return received.n - first;
}

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

async function main(): Promise<void> {
  const a = await start(1);
  const b = await start(2);
  a.setPeer(2, b.address);
  b.setPeer(1, a.address);
  const received = { n: 0 };
  b.onMessage((m) => {
    if (m.type === 'append') received.n += 1;
    else if (m.type === 'heartbeat')
      b.send({ from: 2, to: 1, term: 1, type: 'heartbeat-resp', seq: m.seq, catchingUp: false });
  });
  await sleep(200);

  const t0 = Date.now();
  const n = await bulkStream(a, received, t0 + phaseMs, throughputWindow);
  const secs = (Date.now() - t0) / 1000;
  const mb = (n * entriesPerMsg * entryBytes) / 1e6 / secs;
  console.log(
    `throughput: ${Math.round(n / secs)} append msgs/s, ${mb.toFixed(1)} MB/s of entry data (16 x 256 B entries)`,
  );

  const sentAt = new Map<number, bigint>();
  const rttMs: number[] = [];
  a.onMessage((m) => {
    const s = m.type === 'heartbeat-resp' ? sentAt.get(m.seq) : undefined;
    if (s !== undefined) rttMs.push(Number(process.hrtime.bigint() - s) / 1e6);
  });
  const stopAt = Date.now() + phaseMs;
  const bulk = bulkStream(a, received, stopAt, latencyWindow);
  for (let seq = 1; Date.now() < stopAt; seq++) {
    sentAt.set(seq, process.hrtime.bigint());
    a.send({ from: 1, to: 2, term: 1, type: 'heartbeat', commit: 0, seq });
    await sleep(1);
  }
  const bulkN = await bulk;
  rttMs.sort((x, y) => x - y);
  console.log(
    `heartbeat rtt under bulk load: n=${rttMs.length} p50 ${pct(rttMs, 50).toFixed(3)} ms, p99 ${pct(rttMs, 99).toFixed(3)} ms, max ${(rttMs.at(-1) ?? NaN).toFixed(3)} ms (bulk ${Math.round(bulkN / (phaseMs / 1000))} msgs/s alongside)`,
  );
  console.log(`sender stats: ${JSON.stringify(a.stats().peers.get(2)?.drops)}`);
  await Promise.all([a.close(), b.close()]);
}

await main();
