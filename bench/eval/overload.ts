// The overload scenario: many closed-loop writers against a cluster on a machine whose cores
// are also taken by two CPU-bound processes, for a long stretch. It asks whether the leader
// keeps its quorum (no leader change, no 5xx) and whether latency stays bounded, when the
// offered load is far above what the machine can serve.
//
// Each point gets a fresh cluster, so leader changes, event-loop delay and errors belong to
// that point alone. Clients spread over every member (client i writes through member
// i mod n): followers forward to the leader, as they would for real clients. A 429 answer
// makes its client wait for the Retry-After it names, as a well-behaved client does.

import type { BenchCluster, SystemName } from './clusters.js';
import { runClosedLoop, type LoadResult } from './loadgen.js';
import { parsePrometheus, type Sample } from './prom.js';
import { b64, closedLoopSession, putOp, randomValueB64 } from './protocol.js';
import type { ProcessGroup } from './procs.js';
import { summary, type Progress, type Timing } from './scenarios.js';

export interface OverloadPoint extends LoadResult {
  readonly nodes: number;
  /** Answers 429 (refused at once, not applied). */
  readonly refused429: number;
  /** Answers 500-599. */
  readonly errors5xx: number;
  /** How far the highest term any member reports rose during the point (elections won or not). */
  readonly termsElapsed: number | null;
  /** Distinct leaders seen while polling every ~100 ms, minus one: leader changes. */
  readonly leaderChanges: number;
  /** Per member: the longest event-loop delay over its life, ms (Flotilla only). */
  readonly maxLoopDelayMsByNode: Record<string, number> | null;
  /** Per member: the slowest heartbeat round trip seen, as a histogram bucket bound, ms. */
  readonly maxHeartbeatRttMsByNode: Record<string, number> | null;
  /**
   * Per member: the longest silence from the leader seen during the point, as a histogram
   * bucket bound, ms (over the member's life before 2026-11-30's run 5).
   */
  readonly maxLeaderGapMsByNode: Record<string, number> | null;
  /**
   * Per member that sent any: heartbeats its liveness lane sent for a silent main thread during
   * the point (DESIGN.md, "The liveness lane"). Absent from runs before the lane.
   */
  readonly laneHeartbeatsByNode?: Record<string, number> | null;
}

/** Two (by default) processes that do nothing but burn a core each, ended by PID. */
export async function withBurners<T>(
  procs: ProcessGroup,
  count: number,
  logPath: string,
  fn: () => Promise<T>,
): Promise<T> {
  const pids = Array.from({ length: count }, (_, i) =>
    procs.spawn({
      name: `cpu burner ${i + 1}`,
      command: process.execPath,
      args: ['-e', 'for (;;) {}'],
      logPath,
    }),
  );
  try {
    return await fn();
  } finally {
    await Promise.all(pids.map((pid) => procs.kill(pid, 'SIGKILL')));
  }
}

/** Polls every member's view until stopped; counts leader changes and the highest term. */
function watchLeaders(c: BenchCluster): { stop(): Promise<{ changes: number }> } {
  let stopped = false;
  let last = 0;
  let changes = 0;
  const run = (async () => {
    while (!stopped) {
      const views = await Promise.all(c.running().map((id) => c.view(id)));
      const leaders = new Set(views.filter((v) => v?.leads === true).map((v) => v?.leader ?? 0));
      for (const l of leaders) {
        if (l !== 0 && l !== last) {
          if (last !== 0) changes++;
          last = l;
        }
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  return {
    async stop() {
      stopped = true;
      await run;
      return { changes };
    },
  };
}

async function maxTerm(c: BenchCluster): Promise<number | null> {
  const views = await Promise.all(c.running().map((id) => c.view(id)));
  const known = views.flatMap((v) => (v === null ? [] : [v.term]));
  return known.length === 0 ? null : Math.max(...known);
}

/** The Flotilla members' own figures: loop delay and heartbeat round trip, per member. */
/** Each running member's metrics now, by id (Flotilla only; empty for etcd). */
async function metricsOf(c: BenchCluster): Promise<Map<number, Sample[]>> {
  const out = new Map<number, Sample[]>();
  if (c.system !== 'flotilla') return out;
  for (const id of c.running())
    out.set(id, parsePrometheus(await c.metricsText(id).catch(() => '')));
  return out;
}

/**
 * The members' loop delay (the largest since they started) and, over the point only (from the
 * metrics read at its start, `before`), the slowest heartbeat round trip and the longest
 * silence from the leader: a startup or an earlier point does not count.
 */
async function flotillaHealth(
  c: BenchCluster,
  before: ReadonlyMap<number, readonly Sample[]>,
): Promise<{
  loop: Record<string, number>;
  rtt: Record<string, number>;
  gap: Record<string, number>;
  lane: Record<string, number>;
} | null> {
  if (c.system !== 'flotilla') return null;
  const lane: Record<string, number> = {};
  const loop: Record<string, number> = {};
  const rtt: Record<string, number> = {};
  const gap: Record<string, number> = {};
  for (const id of c.running()) {
    const text = await c.metricsText(id).catch(() => '');
    const samples = parsePrometheus(text);
    const since = before.get(id) ?? [];
    const max = samples.find(
      (s) => s.name === 'flotilla_event_loop_delay_seconds' && s.labels['quantile'] === '1',
    );
    if (max !== undefined) loop[String(id)] = Math.round(max.value * 1000 * 10) / 10;
    const r = maxBucketMs(samples, 'flotilla_heartbeat_round_trip_seconds', since);
    if (r !== null) rtt[String(id)] = r;
    const g = maxBucketMs(samples, 'flotilla_leader_contact_gap_seconds', since);
    if (g !== null) gap[String(id)] = g;
    const name = 'flotilla_liveness_heartbeats_total';
    const sent =
      (samples.find((s) => s.name === name)?.value ?? 0) -
      (since.find((s) => s.name === name)?.value ?? 0);
    if (sent > 0) lane[String(id)] = sent;
  }
  return { loop, rtt, gap, lane };
}

/**
 * The smallest bucket bound of a histogram that holds every observation, in ms; with `since`
 * (the same histogram read earlier), of the observations made after it only.
 */
export function maxBucketMs(
  samples: readonly Sample[],
  name: string,
  since: readonly Sample[] = [],
): number | null {
  const earlier = new Map(
    since.filter((s) => s.name === `${name}_bucket`).map((s) => [s.labels['le'], s.value]),
  );
  const buckets = samples
    .filter((s) => s.name === `${name}_bucket`)
    .map((s) => ({ le: Number(s.labels['le']), n: s.value - (earlier.get(s.labels['le']) ?? 0) }))
    .sort((a, b) => a.le - b.le);
  const total = buckets.at(-1)?.n ?? 0;
  const bound = buckets.find((b) => b.n === total)?.le;
  return total > 0 && bound !== undefined ? bound * 1000 : null;
}

export async function overloadPoint(
  c: BenchCluster,
  clients: number,
  t: Timing,
  p: Progress,
  label: string,
): Promise<OverloadPoint> {
  await c.waitForLeader();
  const termBefore = await maxTerm(c);
  const metricsBefore = await metricsOf(c);
  const urls = c.ids.map((id) => c.clientUrl(id));
  const values = Array.from({ length: 8 }, (_, i) => randomValueB64(256, i + 1));
  const runTag = `o${Date.now().toString(36)}`;
  const watcher = watchLeaders(c);
  let r: LoadResult;
  let watched: { changes: number };
  try {
    r = await runClosedLoop({
      urls,
      clients,
      warmupMs: t.warmupMs,
      durationMs: t.durationMs,
      honourRetryAfter: true,
      next: (client, n) =>
        putOp(
          c.system,
          b64(`overload/${client}/${n % 1000}`),
          values[n % values.length] as string,
          c.system === 'flotilla' ? closedLoopSession(`${runTag}-${client}`, n) : undefined,
        ),
      onTick: (e, total, ops) => p.tick(label, e, total, ops),
    });
  } finally {
    watched = await watcher.stop();
  }
  const termAfter = await maxTerm(c);
  const health = await flotillaHealth(c, metricsBefore);
  let refused429 = 0;
  let errors5xx = 0;
  for (const [status, n] of Object.entries(r.errorsByStatus)) {
    if (status === '429') refused429 += n;
    else if (/^5\d\d$/.test(status)) errors5xx += n;
  }
  const point: OverloadPoint = {
    ...r,
    nodes: c.size,
    refused429,
    errors5xx,
    termsElapsed: termBefore === null || termAfter === null ? null : termAfter - termBefore,
    leaderChanges: watched.changes,
    maxLoopDelayMsByNode: health?.loop ?? null,
    maxHeartbeatRttMsByNode: health?.rtt ?? null,
    maxLeaderGapMsByNode: health?.gap ?? null,
    laneHeartbeatsByNode: health?.lane ?? null,
  };
  p.done(label, overloadSummary(point));
  return point;
}

export function overloadSummary(x: OverloadPoint): string {
  const loop =
    x.maxLoopDelayMsByNode === null
      ? ''
      : `, max loop delay ms ${JSON.stringify(x.maxLoopDelayMsByNode)}, heartbeat rtt ≤ ms ${JSON.stringify(x.maxHeartbeatRttMsByNode)}, leader silence ≤ ms ${JSON.stringify(x.maxLeaderGapMsByNode)}, lane heartbeats ${JSON.stringify(x.laneHeartbeatsByNode ?? {})}`;
  return `${summary(x)}, max ${x.latencyMs.max} ms, 429s ${x.refused429}, 5xx ${x.errors5xx}, leader changes ${x.leaderChanges}, terms +${x.termsElapsed ?? '?'}${loop}`;
}

export type { SystemName };
