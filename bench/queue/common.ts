// What the queue benchmarks on a real cluster share: the cluster, its queue group's leader
// (which need not be the key-value group's), and percentiles.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FlotillaCluster, type BenchCluster } from '../eval/clusters.js';
import { ProcessGroup, sleep } from '../eval/procs.js';

/** The member leading the queue group, from the members' own status; waits up to 30 s. */
export async function queueLeader(c: BenchCluster): Promise<number> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    for (const id of c.running()) {
      const s = (await (await fetch(`${c.clientUrl(id)}/v1/status`)).json()) as {
        queueGroup?: { role: string };
      };
      if (s.queueGroup?.role === 'leader') return id;
    }
    if (Date.now() > deadline) throw new Error('no member leads the queue group after 30 s');
    await sleep(50);
  }
}

/** The `p`th percentile of `xs`, sorted ascending, in two decimals. */
export const pct = (xs: readonly number[], p: number): string =>
  (xs[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))] as number).toFixed(2);

/**
 * Runs `fn` on a fresh 3-member cluster (WAL, fsync on) with the queue group's leader found,
 * then stops every member by PID and removes the data directory, whatever `fn` did.
 */
export async function onQueueCluster<T>(
  name: string,
  fn: (c: FlotillaCluster, leader: number) => Promise<T>,
): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), `flotilla-queue-${name}-`));
  const procs = new ProcessGroup();
  const c = new FlotillaCluster({ size: 3, dir, procs });
  try {
    await c.start();
    return await fn(c, await queueLeader(c));
  } finally {
    await c.stop();
    await procs.stopAll();
    rmSync(dir, { recursive: true, force: true });
  }
}
