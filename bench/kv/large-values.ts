// Memory of a real 3-member cluster (WAL, fsync on) written to with large values: what each
// member holds, resident and as external (Buffer) memory, after each round of writes, and the
// span of its in-memory Raft log.
//
//   node dist/bench/kv/large-values.js [--keys 1000] [--value-kib 256] [--rounds 2] [--clients 8]
//
// Each round puts `--value-kib` KiB to each of `--keys` keys (the same keys every round, so
// from the second round on the store also keeps the replaced versions as history), from
// `--clients` concurrent HTTP clients to the leader. A put refused as overloaded is retried
// after its Retry-After. Bounded: one cluster, stopped by PID at the end, data in a temp
// directory removed after.

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FlotillaCluster } from '../eval/clusters.js';
import { ProcessGroup, sleep } from '../eval/procs.js';
import { benchArgs } from '../args.js';

const { values } = benchArgs({
  options: {
    keys: { type: 'string', default: '1000' },
    'value-kib': { type: 'string', default: '256' },
    rounds: { type: 'string', default: '2' },
    clients: { type: 'string', default: '8' },
  },
});
const keys = Number(values.keys);
const valueKiB = Number(values['value-kib']);
const rounds = Number(values.rounds);
const clients = Number(values.clients);
for (const [k, n, max] of [
  ['keys', keys, 1_000_000],
  ['value-kib', valueKiB, 1_024],
  ['rounds', rounds, 100],
  ['clients', clients, 256],
] as const)
  if (!Number.isSafeInteger(n) || n < 1 || n > max) {
    process.stderr.write(`bad --${k} ${n}: an integer in 1..${max} (--help lists the options)\n`);
    process.exit(2);
  }

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Math.round(Number(m?.[1] ?? NaN) / 1024);
}

async function member(url: string, pid: number): Promise<Record<string, number>> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const ext = /^flotilla_nodejs_external_memory_bytes(?:\{[^}]*\})? (\S+)$/m.exec(text);
  const s = (await (await fetch(`${url}/v1/status`)).json()) as {
    firstIndex: number;
    lastIndex: number;
  };
  return {
    rssMiB: rssMiB(pid),
    externalMiB: Math.round(Number(ext?.[1] ?? NaN) / 2 ** 20),
    logFirst: s.firstIndex,
    logLast: s.lastIndex,
  };
}

const dir = mkdtempSync(join(tmpdir(), 'flotilla-large-values-'));
const procs = new ProcessGroup();
const c = new FlotillaCluster({ size: 3, dir, procs });
try {
  await c.start();
  const leaderId = await c.waitForLeader();
  const url = c.clientUrl(leaderId);
  const value = Buffer.alloc(valueKiB * 1024, 7).toString('base64');
  const report = async (label: string): Promise<void> => {
    const rows: Record<string, unknown> = { label };
    for (const id of c.running())
      rows[id === leaderId ? `${id} (leader)` : String(id)] = await member(
        c.clientUrl(id),
        c.pid(id) as number,
      );
    console.log(JSON.stringify(rows));
  };
  await report('empty');
  for (let round = 1; round <= rounds; round++) {
    let next = 0;
    let retried = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: clients }, async () => {
        while (next < keys) {
          const i = next++;
          const key = Buffer.from(`large-${i}`).toString('base64');
          const body = `{"key":"${key}","value":"${value}","encoding":"base64"}`;
          for (;;) {
            const res = await fetch(`${url}/v1/kv/put`, {
              method: 'POST',
              headers: { 'content-type': 'application/json' },
              body,
            });
            const answer = await res.text();
            if (res.status === 200) break;
            if (res.status !== 429) throw new Error(`put ${i}: ${res.status} ${answer}`);
            retried++;
            await sleep(1000 * Number(res.headers.get('retry-after') ?? '1'));
          }
        }
      }),
    );
    const s = (performance.now() - t0) / 1000;
    process.stderr.write(
      `round ${round}: ${keys} puts in ${s.toFixed(1)} s (${retried} retried)\n`,
    );
    await report(`after round ${round}`);
  }
} finally {
  await c.stop();
  await procs.stopAll();
  rmSync(dir, { recursive: true, force: true });
}
