// A thousand clients at once: a 3-member cluster (real processes, WAL storage) warmed up, then
// N new clients that each write one key at the same moment, as a fleet of services restarted
// together would. Each round prints how long the burst took, how many writes were
// acknowledged, the refusals the clients gave up on by code, the longest Retry-After a node
// asked for, and how many requests each node refused OVERLOADED. A burst the cluster can absorb in a few seconds should end with every write
// acknowledged: a refusal is definite (nothing applied), but a client that gives up on it has
// failed its caller all the same.
//
//   node dist/bench/api/burst-bench.js [--clients 1000] [--rounds 2]

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FlotillaClient, FlotillaError } from '../../src/client/index.js';
import { benchArgs } from '../args.js';
import { FlotillaCluster } from '../eval/clusters.js';
import { ProcessGroup } from '../eval/procs.js';

const WARM_CLIENTS = 16;
const WARM_WRITES = 100;

interface Round {
  readonly ms: number;
  readonly acknowledged: number;
  readonly failed: Map<string, number>;
  readonly longestRetryAfterMs: number;
}

async function burst(endpoints: string[], clients: number, round: number): Promise<Round> {
  const fleet = Array.from({ length: clients }, () => new FlotillaClient({ endpoints }));
  const failed = new Map<string, number>();
  let acknowledged = 0;
  let longestRetryAfterMs = 0;
  const start = performance.now();
  try {
    await Promise.all(
      fleet.map(async (c, i) => {
        try {
          await c.put(`burst/${round}/${i}`, 'v'.repeat(100));
          acknowledged += 1;
        } catch (err) {
          const code = err instanceof FlotillaError ? err.code : 'OTHER';
          failed.set(code, (failed.get(code) ?? 0) + 1);
          if (err instanceof FlotillaError)
            longestRetryAfterMs = Math.max(longestRetryAfterMs, err.retryAfterMs);
        }
      }),
    );
    return { ms: performance.now() - start, acknowledged, failed, longestRetryAfterMs };
  } finally {
    await Promise.all(fleet.map((c) => c.close()));
  }
}

/** Each node's count of requests it refused OVERLOADED since it started (its /metrics). */
async function refusals(endpoints: readonly string[]): Promise<number[]> {
  return Promise.all(
    endpoints.map(async (url) => {
      const text = await (await fetch(`${url}/metrics`)).text();
      const m = /^flotilla_admission_total\{[^}]*outcome="overloaded"[^}]*\} (\d+)/m.exec(text);
      return m === null ? 0 : Number(m[1]);
    }),
  );
}

const { values } = benchArgs({
  options: {
    clients: { type: 'string', default: '1000' },
    rounds: { type: 'string', default: '2' },
  },
});
const clients = Number(values.clients);
const rounds = Number(values.rounds);
for (const [name, v, max] of [
  ['clients', clients, 4096],
  ['rounds', rounds, 20],
] as const)
  if (!Number.isInteger(v) || v < 1 || v > max)
    throw new RangeError(`--${name} must be an integer 1..${max}, got ${v}`);

const dir = mkdtempSync(join(tmpdir(), 'flotilla-burst-'));
const procs = new ProcessGroup();
const cluster = new FlotillaCluster({ size: 3, dir, procs });
try {
  process.stdout.write('starting 3 members\n');
  await cluster.start();
  const endpoints = cluster.ids.map((id) => cluster.clientUrl(id));
  const warm = Array.from({ length: WARM_CLIENTS }, () => new FlotillaClient({ endpoints }));
  try {
    await Promise.all(
      warm.map(async (c, j) => {
        for (let i = 0; i < WARM_WRITES; i++) await c.put(`warm/${j}/${i}`, 'v');
      }),
    );
  } finally {
    await Promise.all(warm.map((c) => c.close()));
  }
  process.stdout.write(`warmed up with ${WARM_CLIENTS * WARM_WRITES} writes\n`);
  for (let r = 1; r <= rounds; r++) {
    const before = await refusals(endpoints);
    const o = await burst(endpoints, clients, r);
    const after = await refusals(endpoints);
    const failed = [...o.failed].map(([code, n]) => `${code} ${n}`).join(', ') || 'none';
    const refused = after.map((n, i) => `node ${i + 1} ${n - (before[i] ?? 0)}`).join(', ');
    process.stdout.write(
      `round ${r}: ${clients} clients, one write each: ${o.acknowledged} acknowledged in ` +
        `${Math.round(o.ms)} ms; gave up: ${failed}; longest Retry-After given up on: ` +
        `${o.longestRetryAfterMs} ms; refused OVERLOADED by the nodes: ${refused}\n`,
    );
  }
} finally {
  await procs.stopAll();
  rmSync(dir, { recursive: true, force: true });
}
