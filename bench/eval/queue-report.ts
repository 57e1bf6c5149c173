// The queue scenario in the report: per system and worker count, the median over the rounds
// of jobs/s and of the end-to-end p50 and p99, every round's figures beside it, and the ratio
// to BullMQ on Redis with appendfsync always (the goal: more jobs/s at every worker
// count, p99 no worse).

import type { QueueSystem } from './queue-load.js';
import type { QueueResults } from './queue-run.js';
import { median } from '../stats.js';

export interface QueueSummaryRow {
  readonly system: QueueSystem;
  readonly workers: number;
  readonly rounds: number;
  readonly jobsPerSec: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** Each round's jobs/s, in order. */
  readonly jobsPerSecByRound: readonly number[];
  readonly p99MsByRound: readonly number[];
  readonly serverCores: number;
  /** Jobs lost, run twice, or whose add failed, over all rounds (0 when sound). */
  readonly faults: number;
  /** Queue group elections during the points, over all rounds (Flotilla; null for Redis). */
  readonly elections: number | null;
  /**
   * Flotilla: the queue leader's writes a second and the jobs each carried (medians over the
   * rounds; QueuePoint.rounds); null for Redis and for points recorded without them.
   */
  readonly leaderWritesPerSec: number | null;
  readonly jobsPerWrite: number | null;
}

export function summariseQueue(q: QueueResults): QueueSummaryRow[] {
  const keys = new Map<string, { system: QueueSystem; workers: number }>();
  for (const p of q.points) keys.set(`${p.system}/${p.workers}`, p);
  return [...keys.values()].map(({ system, workers }) => {
    const ps = q.points.filter((p) => p.system === system && p.workers === workers);
    const r1 = (x: number): number => Math.round(x * 10) / 10;
    return {
      system,
      workers,
      rounds: ps.length,
      jobsPerSec: Math.round(median(ps.map((p) => p.jobsPerSec))),
      p50Ms: r1(median(ps.map((p) => p.endToEndMs.p50))),
      p99Ms: r1(median(ps.map((p) => p.endToEndMs.p99))),
      jobsPerSecByRound: ps.map((p) => p.jobsPerSec),
      p99MsByRound: ps.map((p) => r1(p.endToEndMs.p99)),
      serverCores: Math.round(median(ps.map((p) => p.serverCores)) * 100) / 100,
      faults: ps.reduce((s, p) => s + p.tally.missing + p.tally.duplicates + p.addErrors, 0),
      elections: ps.some((p) => (p.elections ?? null) === null)
        ? null
        : ps.reduce((s, p) => s + (p.elections ?? 0), 0),
      ...roundsOf(ps),
    };
  });
}

function roundsOf(ps: readonly QueueResults['points'][number][]): {
  leaderWritesPerSec: number | null;
  jobsPerWrite: number | null;
} {
  const measured = ps.flatMap((p) => (p.rounds === undefined ? [] : [p.rounds]));
  if (measured.length === 0) return { leaderWritesPerSec: null, jobsPerWrite: null };
  return {
    leaderWritesPerSec: Math.round(median(measured.map((r) => r.leaderWritesPerSec))),
    jobsPerWrite: Math.round(median(measured.map((r) => r.jobsPerWrite)) * 10) / 10,
  };
}

/**
 * Flotilla's write rounds per worker count: the leader's writes a second, the jobs each
 * carried, and the members' CPU per job and per write (BENCHMARKS.md, "What a round costs").
 */
export function queueRoundsMarkdown(q: QueueResults): string {
  const rows = summariseQueue(q).filter(
    (r) => r.system === 'flotilla' && r.leaderWritesPerSec !== null,
  );
  if (rows.length === 0) return '';
  const body = rows
    .sort((a, b) => a.workers - b.workers)
    .map((r) => {
      const writes = r.leaderWritesPerSec ?? 0;
      const perJob = r.jobsPerSec > 0 ? Math.round((r.serverCores * 1e6) / r.jobsPerSec) : 0;
      const perWrite = writes > 0 ? Math.round((r.serverCores * 1e6) / writes) : 0;
      return [
        String(r.workers),
        writes.toLocaleString('en-US'),
        String(r.jobsPerWrite),
        String(r.serverCores),
        perJob.toLocaleString('en-US'),
        perWrite.toLocaleString('en-US'),
      ];
    });
  return markdownTable(queueRoundsHead, body);
}

const queueRoundsHead = [
  'workers',
  'leader writes/s',
  'jobs per write',
  'members, cores',
  'µs of CPU per job',
  'µs per write',
];

/** Rows for the docs: one per worker count, Flotilla beside both BullMQ settings. */
export function queueComparison(q: QueueResults): string[][] {
  const rows = summariseQueue(q);
  const at = (s: QueueSystem, w: number): QueueSummaryRow | undefined =>
    rows.find((r) => r.system === s && r.workers === w);
  const workers = [...new Set(rows.map((r) => r.workers))].sort((a, b) => a - b);
  const cell = (r: QueueSummaryRow | undefined): string =>
    r === undefined
      ? '–'
      : `${r.jobsPerSec.toLocaleString('en-US')} (${r.jobsPerSecByRound.map((x) => x.toLocaleString('en-US')).join(' / ')})`;
  const lat = (r: QueueSummaryRow | undefined): string =>
    r === undefined ? '–' : `${r.p50Ms} / ${r.p99Ms}`;
  return workers.map((w) => {
    const f = at('flotilla', w);
    const a = at('bullmq-always', w);
    const d = at('bullmq-default', w);
    const ratio =
      f !== undefined && a !== undefined ? `${(f.jobsPerSec / a.jobsPerSec).toFixed(2)}×` : '–';
    return [String(w), cell(f), cell(a), cell(d), ratio, lat(f), lat(a), lat(d)];
  });
}

export const queueComparisonHead = [
  'workers',
  'Flotilla jobs/s (rounds)',
  'BullMQ always jobs/s',
  'BullMQ default jobs/s',
  'Flotilla ÷ always',
  'Flotilla p50 / p99 ms',
  'always p50 / p99 ms',
  'default p50 / p99 ms',
];

export function queueMarkdown(q: QueueResults): string {
  return markdownTable(queueComparisonHead, queueComparison(q));
}

/** A Markdown table, its columns padded to their widest cell. */
function markdownTable(head: readonly string[], rows: readonly (readonly string[])[]): string {
  const all = [head, ...rows];
  const widths = head.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  const line = (r: readonly string[]): string =>
    `| ${r.map((c, i) => c.padEnd(widths[i] as number)).join(' | ')} |`;
  return [
    line(head),
    `| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`,
    ...rows.map(line),
  ].join('\n');
}
