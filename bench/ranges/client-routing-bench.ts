// What the client's range routing buys (docs/CLIENT.md, "Range routing"): a three-node cluster
// (real processes, WAL storage, the binary protocol served) split into four ranges, driven by
// one client with `concurrency` requests in flight (half puts, half linearizable gets, on keys
// spread over every range) for `seconds` per mode: routing off (the client sends everything to
// its first endpoint, which forwards what it does not lead) and on, over HTTP and over the
// binary protocol. Prints requests/s and the fraction of requests that missed their range's
// leader, counted by the nodes (requests forwarded on, reads served without leading).
//
// Range leaders are where the elections put them: only range 0's leadership can be moved
// through the API (it is moved to node 1), so the run prints each range's leader; the
// unrouted client's misses depend on how many ranges its first endpoint (node 1) leads.
//
//   node dist/bench/ranges/client-routing-bench.js [--seconds 10] [--concurrency 32] [--keys 1000]

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FlotillaClient, type RangesResponse } from '../../src/client/index.js';
import { FlotillaCluster } from '../eval/clusters.js';
import { ProcessGroup, sleep } from '../eval/procs.js';
import { benchArgs } from '../args.js';

const { values } = benchArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    concurrency: { type: 'string', default: '32' },
    keys: { type: 'string', default: '1000' },
  },
});
const seconds = Number(values.seconds);
const concurrency = Number(values.concurrency);
const keyCount = Number(values.keys);
for (const n of [seconds, concurrency, keyCount])
  if (!Number.isSafeInteger(n) || n < 1 || n > 100_000) throw new Error(`bad number ${n}`);

/** Keys over the whole alphabet, so every range of a map cut at g, n, u gets its share. */
const keys = Array.from(
  { length: keyCount },
  (_, i) => `${String.fromCharCode(0x61 + (i % 26))}-${String(i).padStart(6, '0')}`,
);

/** Requests forwarded on and reads served off the leader, summed over the nodes. */
async function missedCount(c: FlotillaCluster): Promise<number> {
  let sum = 0;
  for (const id of c.ids) {
    for (const line of (await c.metricsText(id)).split('\n')) {
      const forwarded =
        line.startsWith('flotilla_forwarded_requests_total{') && line.includes('path="/v1/kv/');
      if (forwarded || line.startsWith('flotilla_follower_reads_total{'))
        sum += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
  }
  return sum;
}

async function until<T>(what: string, probe: () => Promise<T | null>, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const seen = await probe().catch(() => null);
    if (seen !== null) return seen;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(100);
  }
}

async function run(
  c: FlotillaCluster,
  mode: { protocol: 'http' | 'auto'; routing: boolean },
): Promise<{ perSec: number; missed: number }> {
  const client = new FlotillaClient({
    endpoints: c.ids.map((id) => c.clientUrl(id)),
    protocol: mode.protocol,
    rangeRouting: mode.routing,
    connections: concurrency,
  });
  try {
    // Warm-up: connections made, binary ports learned, the map fetched.
    for (const key of keys.slice(0, 2 * concurrency)) await client.put(key, 'warm');
    const before = await missedCount(c);
    let done = 0;
    let next = 0;
    const t0 = performance.now();
    const until = t0 + seconds * 1000;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (performance.now() < until) {
          const i = next++;
          const key = keys[(i * 7919) % keys.length] as string;
          if (i % 2 === 0) await client.put(key, `v${i}`);
          else await client.get(key);
          done++;
        }
      }),
    );
    const elapsed = (performance.now() - t0) / 1000;
    const missed = (await missedCount(c)) - before;
    return { perSec: done / elapsed, missed: missed / done };
  } finally {
    await client.close();
  }
}

const dir = mkdtempSync(join(tmpdir(), 'flotilla-client-routing-'));
const procs = new ProcessGroup();
const c = new FlotillaCluster({ size: 3, dir, procs });
try {
  await c.start();
  await c.waitForLeader();
  const admin = new FlotillaClient({ endpoints: [c.clientUrl(1)], rangeRouting: false });
  try {
    await until('the range map', async () => ((await admin.ranges()).ranges.length > 0 ? 1 : null));
    for (const key of ['g', 'n', 'u']) await admin.splitRange(key);
    // Range 0 led by node 1, the unrouted client's first endpoint, so that it is not the
    // worst case of a node leading nothing.
    await admin.transferLeadership({ to: 1 });
    const map = await until('every range led, as node 1 sees it', async () => {
      const m: RangesResponse = await admin.ranges();
      return m.ranges.length === 4 && m.ranges.every((r) => (r.leader ?? 0) > 0) ? m : null;
    });
    process.stdout.write(
      `ranges (start: leader): ${map.ranges.map((r) => `"${r.start}": ${String(r.leader)}`).join(', ')}; ` +
        `${concurrency} requests in flight, ${seconds} s per mode, half puts, half linearizable gets\n`,
    );
  } finally {
    await admin.close();
  }
  for (const protocol of ['http', 'auto'] as const)
    for (const routing of [false, true]) {
      const r = await run(c, { protocol, routing });
      process.stdout.write(
        `${protocol === 'http' ? 'HTTP  ' : 'binary'} routing ${routing ? 'on ' : 'off'}: ` +
          `${Math.round(r.perSec)} requests/s, ${(100 * r.missed).toFixed(1)}% missed their range's leader\n`,
      );
    }
} finally {
  await c.stop();
  await procs.stopAll();
  rmSync(dir, { recursive: true, force: true });
}
