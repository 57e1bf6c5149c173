// Runs the queue scenario: a 3-member Flotilla cluster, a redis-server with appendfsync always
// and one with its defaults, each started for the scenario and stopped by PID after it, and
// the points of the selected systems in turns (runQueueScenario says why).

import { join } from 'node:path';
import { FlotillaCluster } from './clusters.js';
import type { Plan } from './plan.js';
import type { ProcessGroup } from './procs.js';
import { queuePoint, type QueuePoint, type QueueTarget } from './queue-bench.js';
import type { QueueSystem } from './queue-load.js';
import { readProfileOf, type ProfileSummary } from './profile.js';
import { parsePrometheus, sumBy } from './prom.js';
import { RedisServer, redisVersion } from './redis.js';
import type { Progress } from './scenarios.js';

export interface QueueResults {
  readonly points: (QueuePoint & {
    readonly round: number;
    /** Terms the queue group went through during the point (Flotilla; null for Redis). */
    readonly elections: number | null;
  })[];
  /** Systems not measured, with why (e.g. no redis-server on the PATH). */
  readonly skipped: string[];
  readonly redis: string | null;
  readonly bullmq: string | null;
  /** With `profile`: where the queue group leader's CPU went over all Flotilla points. */
  profile?: ProfileSummary;
}

export interface QueueRunOptions {
  readonly plan: Plan;
  readonly systems: readonly QueueSystem[];
  readonly dir: string;
  readonly procs: ProcessGroup;
  readonly progress: Progress & { line(s: string): void };
  /** Run the Flotilla members under --cpu-prof and summarise the queue leader's profile. */
  readonly profile?: boolean;
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

/** The member that leads the queue group (group 1, which may have another leader than group 0). */
async function queueLeader(c: FlotillaCluster): Promise<{ id: number; term: number }> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    for (const id of c.running()) {
      try {
        const res = await fetch(`${c.clientUrl(id)}/v1/status`, {
          signal: AbortSignal.timeout(1_000),
        });
        const s = (await res.json()) as { queueGroup?: { role: string; term: number } };
        if (s.queueGroup?.role === 'leader') return { id, term: s.queueGroup.term };
      } catch {
        // A member that does not answer yet: ask the next.
      }
    }
    if (Date.now() > deadline) throw new Error('no leader of the queue group within 15 s');
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A system ready for load, and how to stop it. */
interface Started {
  /**
   * Where the next point's load goes. Flotilla: the queue group's leader first, found again
   * before every point (as the key-value scenarios find theirs): after an election a client
   * still pointed at the old leader would have every request forwarded.
   */
  target(): Promise<QueueTarget>;
  /** The queue group's term (Flotilla), to count the elections during a point; null for Redis. */
  term(): Promise<number | null>;
  /** Stops the system; Flotilla under --cpu-prof then gives its leader's profile. */
  stop(): Promise<ProfileSummary | undefined>;
}

async function startFlotilla(o: QueueRunOptions): Promise<Started> {
  const profDir = join(o.dir, 'queue-cpu-profiles');
  const c = new FlotillaCluster({
    size: 3,
    dir: join(o.dir, 'queue'),
    procs: o.procs,
    ...(o.profile === true ? { nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${profDir}`] } : {}),
  });
  o.progress.line(
    `starting flotilla with 3 members (queue${o.profile === true ? ', profiled' : ''})`,
  );
  try {
    await c.start();
    let leaderPid = c.pid((await queueLeader(c)).id) ?? undefined;
    return {
      target: async () => {
        const { id } = await queueLeader(c);
        leaderPid = c.pid(id) ?? undefined;
        const others = c.ids.filter((x) => x !== id).map((x) => c.clientUrl(x));
        return {
          system: 'flotilla',
          endpoints: [c.clientUrl(id), ...others],
          redisPort: 0,
          serverPids: c.ids.map((x) => c.pid(x)).filter((x) => x !== null),
          leaderWrites: async () => {
            const text = await c.metricsText(id);
            return sumBy(parsePrometheus(text), 'flotilla_group_persists_total').get('') ?? null;
          },
        };
      },
      term: async () => (await queueLeader(c)).term,
      stop: async () => {
        await c.stop();
        if (o.profile !== true) return undefined;
        return {
          load: `the queue group leader over every Flotilla queue point of the run`,
          ...readProfileOf(profDir, leaderPid),
        };
      },
    };
  } catch (err) {
    await c.stop();
    throw err;
  }
}

async function startRedis(
  o: QueueRunOptions,
  system: 'bullmq-always' | 'bullmq-default',
  version: string,
): Promise<Started> {
  const durability = system === 'bullmq-always' ? 'always' : 'default';
  const server = new RedisServer({ dir: join(o.dir, system), durability, procs: o.procs });
  o.progress.line(`starting redis-server ${version} (${durability})`);
  try {
    await server.start();
  } catch (err) {
    await server.stop();
    throw err;
  }
  const pid = server.pidOf();
  const target: QueueTarget = {
    system,
    endpoints: [],
    redisPort: server.port,
    serverPids: pid === undefined ? [] : [pid],
  };
  return {
    target: () => Promise.resolve(target),
    term: () => Promise.resolve(null),
    stop: async () => {
      await server.stop();
      return undefined;
    },
  };
}

/**
 * Every selected system is started first and stays up; the points then take turns, system
 * after system at each worker count, round after round. The machine is shared and its load
 * moves within minutes: interleaved, every system sees the same spells of it. An idle system
 * costs little meanwhile (redis nothing; Flotilla its heartbeats and one queue tick entry per
 * interval).
 */
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
  const started: Started[] = [];
  try {
    for (const system of o.systems) {
      if (system === 'flotilla') {
        started.push(await startFlotilla(o));
        continue;
      }
      if (redis === null || results.bullmq === null) {
        const why = `${system} skipped: ${redis === null ? 'no redis-server on the PATH (apt-get install redis-server)' : 'bullmq is not installed'}`;
        results.skipped.push(why);
        o.progress.line(why);
        continue;
      }
      started.push(await startRedis(o, system, redis));
    }
    // Not measured: each system's queue path at the largest worker count (Plan.queueWarmupMs).
    const most = Math.max(...p.queueWorkers);
    if ((p.queueWarmupMs ?? 0) > 0 && p.queueWorkers.length > 0)
      for (const s of started) {
        const target = await s.target();
        await queuePoint(
          target,
          most,
          p.queueWindowPerWorker,
          p.queuePayloadBytes,
          { warmupMs: 0, durationMs: p.queueWarmupMs ?? 0 },
          o.progress,
          `${target.system} queue warm-up (not measured), ${most} workers`,
        );
      }
    for (let round = 1; round <= p.queueRounds; round++)
      for (const w of p.queueWorkers)
        for (const s of started) {
          const target = await s.target();
          const termBefore = await s.term();
          const point = await queuePoint(
            target,
            w,
            p.queueWindowPerWorker,
            p.queuePayloadBytes,
            t,
            o.progress,
            `${target.system} queue, ${w} workers, round ${round}/${p.queueRounds}`,
          );
          const termAfter = await s.term();
          if (termBefore !== null && termAfter !== null && termAfter > termBefore)
            o.progress.line(`  the queue group went through ${termAfter - termBefore} election(s)`);
          results.points.push({
            ...point,
            round,
            elections: termBefore === null || termAfter === null ? null : termAfter - termBefore,
          });
        }
  } finally {
    for (const s of started) {
      const profile = await s.stop();
      if (profile !== undefined) results.profile = profile;
    }
  }
  return results;
}
