// Runs the queue scenario for each selected system in turn (never two at once): a 3-member
// Flotilla cluster, then a redis-server with appendfsync always, then one with its defaults,
// each started for the scenario and stopped by PID after its points.

import { join } from 'node:path';
import { FlotillaCluster } from './clusters.js';
import type { Plan } from './plan.js';
import type { ProcessGroup } from './procs.js';
import { queuePoint, type QueuePoint, type QueueTarget } from './queue-bench.js';
import type { QueueSystem } from './queue-load.js';
import { RedisServer, redisVersion } from './redis.js';
import type { Progress } from './scenarios.js';

export interface QueueResults {
  readonly points: QueuePoint[];
  /** Systems not measured, with why (e.g. no redis-server on the PATH). */
  readonly skipped: string[];
  readonly redis: string | null;
  readonly bullmq: string | null;
}

export interface QueueRunOptions {
  readonly plan: Plan;
  readonly systems: readonly QueueSystem[];
  readonly dir: string;
  readonly procs: ProcessGroup;
  readonly progress: Progress & { line(s: string): void };
}

async function bullmqVersion(): Promise<string | null> {
  try {
    const { createRequire } = await import('node:module');
    const req = createRequire(import.meta.url);
    return (req('bullmq/package.json') as { version: string }).version;
  } catch {
    return null;
  }
}

/** The URL of the member that leads the queue group (group 1), which may not lead group 0. */
async function queueLeaderUrl(c: FlotillaCluster): Promise<string> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    for (const id of c.running()) {
      try {
        const res = await fetch(`${c.clientUrl(id)}/v1/status`, {
          signal: AbortSignal.timeout(1_000),
        });
        const s = (await res.json()) as { queueGroup?: { role: string } };
        if (s.queueGroup?.role === 'leader') return c.clientUrl(id);
      } catch {
        // A member that does not answer yet: ask the next.
      }
    }
    if (Date.now() > deadline) throw new Error('no leader of the queue group within 15 s');
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function runQueueScenario(o: QueueRunOptions): Promise<QueueResults> {
  const p = o.plan;
  const t = { warmupMs: p.warmupMs, durationMs: p.queueMs };
  const redis = redisVersion();
  const results: QueueResults = {
    points: [],
    skipped: [],
    redis,
    bullmq: await bullmqVersion(),
  };
  const points = async (target: QueueTarget): Promise<void> => {
    for (const w of p.queueWorkers)
      results.points.push(
        await queuePoint(
          target,
          w,
          p.queuePayloadBytes,
          t,
          o.progress,
          `${target.system} queue, ${w} workers`,
        ),
      );
  };
  for (const system of o.systems) {
    if (system === 'flotilla') {
      const c = new FlotillaCluster({ size: 3, dir: join(o.dir, 'queue'), procs: o.procs });
      o.progress.line('starting flotilla with 3 members (queue)');
      try {
        await c.start();
        const leader = await queueLeaderUrl(c);
        const others = c.ids.map((id) => c.clientUrl(id)).filter((u) => u !== leader);
        await points({
          system,
          endpoints: [leader, ...others],
          redisPort: 0,
          serverPids: c.ids.map((id) => c.pidOf(id)).filter((x) => x !== undefined),
        });
      } finally {
        await c.stop();
      }
      continue;
    }
    if (redis === null || results.bullmq === null) {
      const why = `${system} skipped: ${redis === null ? 'no redis-server on the PATH (apt-get install redis-server)' : 'bullmq is not installed'}`;
      results.skipped.push(why);
      o.progress.line(why);
      continue;
    }
    const durability = system === 'bullmq-always' ? 'always' : 'default';
    const server = new RedisServer({ dir: join(o.dir, system), durability, procs: o.procs });
    o.progress.line(`starting redis-server ${redis} (${durability})`);
    try {
      await server.start();
      const pid = server.pidOf();
      await points({
        system,
        endpoints: [],
        redisPort: server.port,
        serverPids: pid === undefined ? [] : [pid],
      });
    } finally {
      await server.stop();
    }
  }
  return results;
}
