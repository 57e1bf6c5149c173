// The report: goals with their ratios, tables of every figure, and the charts, as one
// self-contained HTML file (inline SVG, inline CSS); the same charts as SVG files for the docs.

import { fmtNumber, escapeXml, palette, renderChart, type Series } from './chart.js';
import type { SystemName } from './clusters.js';
import type { LoadResult } from './loadgen.js';
import type { OverloadPoint } from './overload.js';
import { median } from '../stats.js';
import { roundOrder } from './plan.js';
import type { EvalResults, SystemResults } from './run.js';
import type { CpuPerOp } from './cpu.js';
import type { WritePoint } from './scenarios.js';
import { queueComparison, queueComparisonHead } from './queue-report.js';

const colors: Record<SystemName, string> = {
  flotilla: palette[0] as string,
  etcd: palette[1] as string,
};

/** The paper's Figure 16, 150–300 ms line (Raft paper §9.3), read off the figure. */
export const paperFailover = { medianMs: 171, maxMs: 603 } as const;

export interface Goal {
  readonly goal: string;
  readonly flotilla: string;
  readonly anchor: string;
  readonly ratio: string;
  /** The ratio as a number (Flotilla's figure over the anchor's). */
  readonly x: number;
  readonly met: boolean | null;
}

function sys(r: EvalResults, s: SystemName): SystemResults | undefined {
  return r.systems[s];
}

function at<T extends LoadResult>(
  points: readonly T[] | undefined,
  clients: number,
): T | undefined {
  return points?.find((p) => p.clients === clients);
}

/** A point's CPU per op: undefined in results from before it was measured, null if it failed. */
function cpuOf(w: WritePoint): CpuPerOp | null | undefined {
  return w.cpuPerOpUs;
}

const fmtBytes = (b: number): string => (b >= 1024 ? `${b / 1024} KiB` : `${b} B`);

/** µs with three significant figures (whole µs from 100 up). */
const us = (x: number): string => (x >= 100 ? String(Math.round(x)) : String(+x.toPrecision(3)));

const ops = (x: number): string => `${x.toLocaleString('en-US')} ops/s`;

/**
 * The performance issue's goals, each a ratio measured in this run (BENCHMARKS.md, "Evaluation
 * against etcd"): write throughput over HTTP at 64 and 256 clients and over the binary
 * protocol at 256, the write p99 at 256, linearizable reads at the leader, CPU per write on the
 * leader, single-client latency, and the failover median against the paper.
 */
export function goals(r: EvalResults): Goal[] {
  const f = sys(r, 'flotilla');
  const e = sys(r, 'etcd');
  const out: Goal[] = [];
  const throughput = (
    goal: string,
    a: LoadResult | undefined,
    b: LoadResult | undefined,
    x: number,
  ) => {
    if (a === undefined || b === undefined) return;
    const ratio = a.throughputOpsPerSec / b.throughputOpsPerSec;
    out.push({
      goal,
      flotilla: ops(a.throughputOpsPerSec),
      anchor: ops(b.throughputOpsPerSec),
      ratio: `${ratio.toFixed(2)}×`,
      x: ratio,
      met: ratio >= x,
    });
  };
  const cpu = (goal: string, a: WritePoint | undefined, b: WritePoint | undefined) => {
    const ca = a === undefined ? undefined : cpuOf(a);
    const cb = b === undefined ? undefined : cpuOf(b);
    if (ca == null || cb == null || cb.leader <= 0) return;
    const ratio = ca.leader / cb.leader;
    out.push({
      goal,
      flotilla: `${us(ca.leader)} µs`,
      anchor: `${us(cb.leader)} µs`,
      ratio: `${ratio.toFixed(2)}×`,
      x: ratio,
      met: ratio <= 0.5,
    });
  };
  const w256f = at(f?.writes, 256);
  const w256e = at(e?.writes, 256);
  throughput('writes/s over HTTP, 64 clients ≥ 2× etcd', at(f?.writes, 64), at(e?.writes, 64), 2);
  throughput('writes/s over HTTP, 256 clients ≥ 2× etcd', w256f, w256e, 2);
  const b256f = at(f?.writesBinary, 256);
  throughput('writes/s, binary protocol, 256 clients ≥ 5× etcd (JSON gateway)', b256f, w256e, 5);
  if (w256f !== undefined && w256e !== undefined)
    out.push({
      goal: 'write p99, 256 clients ≤ etcd',
      flotilla: `${w256f.latencyMs.p99} ms`,
      anchor: `${w256e.latencyMs.p99} ms`,
      ratio: `${(w256f.latencyMs.p99 / w256e.latencyMs.p99).toFixed(2)}×`,
      x: w256f.latencyMs.p99 / w256e.latencyMs.p99,
      met: w256f.latencyMs.p99 <= w256e.latencyMs.p99,
    });
  const rf = f?.reads.find((x) => x.consistency === 'linearizable' && x.target === 'leader');
  const re = e?.reads.find((x) => x.consistency === 'linearizable' && x.target === 'leader');
  throughput(`linearizable reads/s, ${rf?.clients ?? 64} clients ≥ 2× etcd`, rf, re, 2);
  cpu('CPU per write on the leader, 256 clients over HTTP ≤ ½ etcd', w256f, w256e);
  cpu(
    'CPU per write on the leader, 256 clients, binary protocol ≤ ½ etcd (JSON gateway)',
    b256f,
    w256e,
  );
  const w1f = at(f?.writes, 1);
  const w1e = at(e?.writes, 1);
  if (w1f !== undefined && w1e !== undefined)
    out.push({
      goal: 'single-client write latency (p50) ≤ etcd (stretch: ≤ 0.5 ms)',
      flotilla: `${w1f.latencyMs.p50} ms (p99 ${w1f.latencyMs.p99})`,
      anchor: `${w1e.latencyMs.p50} ms (p99 ${w1e.latencyMs.p99})`,
      ratio: `${(w1f.latencyMs.p50 / w1e.latencyMs.p50).toFixed(2)}×`,
      x: w1f.latencyMs.p50 / w1e.latencyMs.p50,
      met: w1f.latencyMs.p50 <= w1e.latencyMs.p50,
    });
  const fo = f?.failover;
  if (fo !== null && fo !== undefined && fo.timesMs.length > 0) {
    const med = fo.summary['p50'] ?? NaN;
    const eMed = e?.failover?.summary['p50'];
    out.push({
      goal: `failover median ≤ ${paperFailover.medianMs} ms (paper, 150–300 ms)`,
      flotilla: `${med} ms (n=${fo.timesMs.length})`,
      anchor: `paper ${paperFailover.medianMs} ms${eMed === undefined ? '' : `; etcd ${eMed} ms`}`,
      ratio: `${(med / paperFailover.medianMs).toFixed(2)}× paper`,
      x: med / paperFailover.medianMs,
      met: med <= paperFailover.medianMs,
    });
  }
  return out;
}

/** A goal across the rounds of a run (Plan.kvRounds). */
export interface GoalRounds {
  readonly goal: string;
  /** Each round's ratio; null where that round did not measure it. */
  readonly ratios: readonly (number | null)[];
  /** The median of the rounds that measured it. */
  readonly median: number;
  /** Rounds in which the goal was met, of those that measured it. */
  readonly metIn: number;
  readonly measured: number;
  /** Met in more than half of the rounds that measured it (with an even count, the median may
   * meet it while this says missed: a tie is not a majority). */
  readonly met: boolean;
}

/**
 * Every goal in every round of a run of several rounds; empty after one round. A goal's verdict
 * is the majority's: one lucky round (or one unlucky one) does not decide it.
 */
export function goalsByRound(r: EvalResults): GoalRounds[] {
  const rounds = r.rounds ?? [];
  if (rounds.length < 2) return [];
  const per = rounds.map((systems) => goals({ ...r, systems }));
  const names: string[] = [];
  for (const gs of per) for (const g of gs) if (!names.includes(g.goal)) names.push(g.goal);
  return names.flatMap((goal) => {
    const found = per.map((gs) => gs.find((g) => g.goal === goal));
    const measured = found.filter((g): g is Goal => g !== undefined);
    if (measured.length === 0) return [];
    const metIn = measured.filter((g) => g.met === true).length;
    return [
      {
        goal,
        ratios: found.map((g) => (g === undefined ? null : g.x)),
        median: median(measured.map((g) => g.x)),
        metIn,
        measured: measured.length,
        met: 2 * metIn > measured.length,
      },
    ];
  });
}

/** A block of one system's points, with the machine's speed around it. */
export interface CalibratedBlock {
  readonly round: number;
  readonly system: SystemName;
  readonly beforeMs: number;
  readonly afterMs: number;
  /** The slower of the two readings over the median of every reading in the run. */
  readonly slowdown: number;
}

/**
 * Each system's block in each round with its calibration (calibrate.ts), in the order the
 * blocks ran; a `slowdown` well above 1 says the machine was slower at that block's start or
 * end than over the rest of the run (it is read only before and after the block).
 */
export function calibratedBlocks(r: EvalResults): CalibratedBlock[] {
  const rounds = r.rounds ?? [r.systems];
  const found: Omit<CalibratedBlock, 'slowdown'>[] = [];
  rounds.forEach((systems, i) => {
    // In the order the blocks ran (it alternates from round to round); results from before
    // blocks were stamped ran in the default order, flotilla first in odd rounds.
    const order = roundOrder(both, i);
    const ran = both
      .filter((s) => systems[s]?.calibration !== undefined)
      .sort(
        (a, b) =>
          (systems[a]?.calibration?.startedAt ?? '').localeCompare(
            systems[b]?.calibration?.startedAt ?? '',
          ) || order.indexOf(a) - order.indexOf(b),
      );
    for (const s of ran) {
      const c = systems[s]?.calibration;
      if (c !== undefined)
        found.push({ round: i + 1, system: s, beforeMs: c.before.cpuMs, afterMs: c.after.cpuMs });
    }
  });
  if (found.length === 0) return [];
  const mid = median(found.flatMap((b) => [b.beforeMs, b.afterMs]));
  return found.map((b) => ({ ...b, slowdown: Math.max(b.beforeMs, b.afterMs) / mid }));
}

/** A block whose calibration says the machine was this much slower is pointed out. */
export const SLOW_BLOCK = 1.25;

/** calibratedBlocks in one line per round, the slow blocks pointed out. */
export function calibrationNote(r: EvalResults): string {
  const blocks = calibratedBlocks(r);
  const rounds = [...new Set(blocks.map((b) => b.round))];
  return rounds
    .map((n) => {
      const parts = blocks
        .filter((b) => b.round === n)
        .map(
          (b) =>
            `${b.system} ${b.beforeMs}→${b.afterMs} ms${b.slowdown >= SLOW_BLOCK ? ` (${b.slowdown.toFixed(2)}× the run's median: a slower machine at its start or end)` : ''}`,
        );
      return `${r.rounds === undefined ? '' : `round ${n}: `}${parts.join(', ')}`;
    })
    .join('; ');
}

/** The columns the console and the page share: goal, each round's ratio, median, met in. */
function roundsTable(
  r: EvalResults,
  g: readonly GoalRounds[],
): { head: string[]; rows: string[][] } {
  const n = r.rounds?.length ?? 0;
  return {
    head: ['goal', ...Array.from({ length: n }, (_, i) => `round ${i + 1}`), 'median', 'met in'],
    rows: g.map((x) => [
      x.goal,
      ...x.ratios.map((v) => (v === null ? '–' : `${v.toFixed(2)}×`)),
      `${x.median.toFixed(2)}×`,
      `${x.metIn} of ${x.measured}`,
    ]),
  };
}

/** goalsByRound as a Markdown table, for the console and BENCHMARKS.md. */
export function goalsByRoundMarkdown(r: EvalResults): string {
  const g = goalsByRound(r);
  if (g.length === 0) return '';
  const { head, rows } = roundsTable(r, g);
  const verdicts = rows.map((row, i) => [
    ...row.slice(0, -1),
    `${row[row.length - 1]}${g[i]?.met === true ? ' (met)' : ' (missed)'}`,
  ]);
  const table = [head, head.map(() => '---'), ...verdicts].map((c) => `| ${c.join(' | ')} |`);
  const note = calibrationNote(r);
  return [
    ...table,
    ...(note === ''
      ? []
      : ['', `Machine calibration (ms of CPU for fixed work, before→after each block): ${note}`]),
  ].join('\n');
}

function line(s: SystemName, pts: [number, number][], extra: Partial<Series> = {}): Series {
  return { name: s, color: colors[s], points: pts, ...extra };
}

const both: SystemName[] = ['flotilla', 'etcd'];

function present(r: EvalResults): SystemName[] {
  return both.filter((s) => r.systems[s] !== undefined);
}

const machineNote = (r: EvalResults): string =>
  `${r.machine.cores} shared cores, ${r.quick ? 'quick run' : 'full run'}`;

export function renderCharts(r: EvalResults): Map<string, string> {
  const charts = new Map<string, string>();
  const ss = present(r);
  const clientTicks = [
    ...new Set(ss.flatMap((s) => r.systems[s]?.writes.map((w) => w.clients) ?? [])),
  ];
  if (clientTicks.length > 0) {
    charts.set(
      'throughput-vs-clients',
      renderChart({
        title: 'Writes (256 B, 3 members): throughput vs clients',
        xLabel: 'concurrent clients (closed loop)',
        yLabel: 'committed writes per second',
        xLog: true,
        xTicks: clientTicks,
        series: ss.map((s) =>
          line(
            s,
            (r.systems[s]?.writes ?? []).map((w) => [w.clients, w.throughputOpsPerSec]),
          ),
        ),
        note: machineNote(r),
      }),
    );
    charts.set(
      'latency-vs-clients',
      renderChart({
        title: 'Writes (256 B, 3 members): latency percentiles vs clients',
        xLabel: 'concurrent clients (closed loop)',
        yLabel: 'latency, ms (log)',
        xLog: true,
        yLog: true,
        xTicks: clientTicks,
        series: ss.flatMap((s) =>
          (['p50', 'p99'] as const).map((q) =>
            line(
              s,
              (r.systems[s]?.writes ?? []).map((w) => [w.clients, w.latencyMs[q]]),
              {
                name: `${s} ${q}`,
                dashed: q === 'p99',
              },
            ),
          ),
        ),
        note: machineNote(r),
      }),
    );
  }
  const payloadTicks = [
    ...new Set(ss.flatMap((s) => r.systems[s]?.payload.map((w) => w.valueBytes) ?? [])),
  ];
  if (payloadTicks.length > 0)
    charts.set(
      'payload-sweep',
      renderChart({
        title: `Payload sweep: writes at ${r.plan.payloadClients} clients`,
        xLabel: 'value size (bytes)',
        yLabel: 'committed writes per second',
        xLog: true,
        xTicks: payloadTicks,
        xTickFormat: fmtBytes,
        series: ss.map((s) =>
          line(
            s,
            (r.systems[s]?.payload ?? []).map((w) => [w.valueBytes, w.throughputOpsPerSec]),
          ),
        ),
        note: machineNote(r),
      }),
    );
  const cdfs = ss.filter((s) => (r.systems[s]?.failover?.timesMs.length ?? 0) > 0);
  if (cdfs.length > 0)
    charts.set(
      'failover-cdf',
      renderChart({
        title: 'Failover: kill -9 the leader → first committed write (150–300 ms timeouts)',
        xLabel: 'milliseconds after the kill',
        yLabel: 'fraction of trials',
        yMin: 0,
        yMax: 1,
        xMin: 0,
        series: cdfs.flatMap((s) => {
          const f = r.systems[s]?.failover;
          return [
            line(s, cdf(f?.timesMs ?? []), {
              name: `${s}: write committed (${f?.nodes} members, n=${f?.timesMs.length})`,
              step: true,
            }),
            line(s, cdf(f?.electedMs ?? []), {
              name: `${s}: leader elected`,
              step: true,
              dashed: true,
            }),
          ];
        }),
        refLines: [
          { x: paperFailover.medianMs, label: `paper median ${paperFailover.medianMs} ms` },
          { x: paperFailover.maxMs, label: `paper max ${paperFailover.maxMs} ms` },
        ],
        note: 'paper: Raft §9.3, Fig. 16, 5 servers',
      }),
    );
  return charts;
}

export function cdf(timesMs: readonly number[]): [number, number][] {
  const s = [...timesMs].sort((a, b) => a - b);
  const pts: [number, number][] = [[s[0] ?? 0, 0]];
  s.forEach((v, i) => pts.push([v, (i + 1) / s.length]));
  return pts;
}

function table(head: readonly string[], rows: readonly (readonly (string | number)[])[]): string {
  const th = head.map((h) => `<th>${escapeXml(h)}</th>`).join('');
  const tr = rows
    .map((r) => `<tr>${r.map((c) => `<td>${escapeXml(String(c))}</td>`).join('')}</tr>`)
    .join('\n');
  return `<table><thead><tr>${th}</tr></thead><tbody>${tr}</tbody></table>`;
}

function loadRow(label: string, x: LoadResult): (string | number)[] {
  const l = x.latencyMs;
  return [
    label,
    x.clients,
    fmtNumber(x.throughputOpsPerSec),
    l.p50,
    l.p90,
    l.p99,
    l.p999,
    l.max,
    x.errors,
  ];
}

const loadHead = [
  'system',
  'clients',
  'ops/s',
  'p50 ms',
  'p90 ms',
  'p99 ms',
  'p99.9 ms',
  'max ms',
  'errors',
];

const overloadHead = [
  'system',
  'members',
  'clients',
  'ops/s',
  'p50 ms',
  'p99 ms',
  'max ms',
  '429s',
  '5xx',
  'leader changes',
  'terms',
  'max loop delay ms per member',
];

/** One overload point as a table row (also what docs/BENCHMARKS.md shows). */
export function overloadRow(s: SystemName, x: OverloadPoint): (string | number)[] {
  const loop = x.maxLoopDelayMsByNode;
  return [
    s,
    x.nodes,
    fmtNumber(x.clients),
    fmtNumber(x.throughputOpsPerSec),
    x.latencyMs.p50,
    x.latencyMs.p99,
    x.latencyMs.max,
    fmtNumber(x.refused429),
    fmtNumber(x.errors5xx),
    x.leaderChanges,
    x.termsElapsed ?? '–',
    loop === null ? '–' : Object.values(loop).join(', '),
  ];
}

function wireCell(w: WritePoint['wire']): string {
  const m = w.messages === null ? '–' : String(w.messages);
  const b = w.peerBytes === null ? '–' : fmtNumber(Math.round(w.peerBytes));
  return `${m} msgs, ${b} B`;
}

/** Flotilla's binary points, each with its throughput over etcd's and its own HTTP's. */
export function binaryRows(r: EvalResults): (string | number)[][] {
  const f = sys(r, 'flotilla');
  const e = sys(r, 'etcd');
  const vs = (x: LoadResult, y: LoadResult | undefined): string =>
    y === undefined || y.throughputOpsPerSec === 0
      ? '–'
      : `${(x.throughputOpsPerSec / y.throughputOpsPerSec).toFixed(2)}×`;
  return (f?.writesBinary ?? []).map((w) => [
    ...loadRow(`flotilla binary (${w.connections} conns)`, w),
    wireCell(w.wire),
    vs(w, at(e?.writes, w.clients)),
    vs(w, at(f?.writes, w.clients)),
  ]);
}

export const cpuHead = [
  'write point',
  'Flotilla leader',
  'Flotilla followers',
  'Flotilla all members',
  'Flotilla load generator',
  'etcd leader',
  'etcd followers',
  'etcd all members',
  'etcd load generator',
  'leader Flotilla ÷ etcd',
];

function cpuCells(c: CpuPerOp | null | undefined): string[] {
  if (c === null || c === undefined) return ['–', '–', '–', '–'];
  return [us(c.leader), c.followers.map(us).join(' / '), us(c.members), us(c.loadGenerator)];
}

/**
 * CPU per write (µs) of every write point, Flotilla's beside etcd's at the same point: the
 * JSON writes, Flotilla's binary points against etcd's JSON ones, the payload sweep and the
 * larger cluster. "–" where a system did not run the point or the figure is missing (results
 * from before it was measured, or a point whose leader changed).
 */
export function cpuRows(r: EvalResults): string[][] {
  const f = sys(r, 'flotilla');
  const e = sys(r, 'etcd');
  const rows: string[][] = [];
  const pair = (label: string, x: WritePoint | undefined, y: WritePoint | undefined): void => {
    if (x === undefined && y === undefined) return;
    const a = x === undefined ? undefined : cpuOf(x);
    const b = y === undefined ? undefined : cpuOf(y);
    const ratio =
      a != null && b != null && b.leader > 0 ? `${(a.leader / b.leader).toFixed(2)}×` : '–';
    rows.push([label, ...cpuCells(a), ...cpuCells(b), ratio]);
  };
  const keys = <T>(xs: readonly T[], key: (x: T) => number): number[] =>
    [...new Set(xs.map(key))].sort((x, y) => x - y);
  for (const n of keys([...(f?.writes ?? []), ...(e?.writes ?? [])], (w) => w.clients))
    pair(`${n} clients`, at(f?.writes, n), at(e?.writes, n));
  for (const w of f?.writesBinary ?? [])
    pair(`${w.clients} clients, Flotilla binary vs etcd JSON`, w, at(e?.writes, w.clients));
  for (const b of keys([...(f?.payload ?? []), ...(e?.payload ?? [])], (w) => w.valueBytes)) {
    const of = (xs: readonly WritePoint[] | undefined): WritePoint | undefined =>
      xs?.find((w) => w.valueBytes === b);
    pair(
      `payload ${fmtBytes(b)}, ${r.plan.payloadClients} clients`,
      of(f?.payload),
      of(e?.payload),
    );
  }
  for (const n of keys([...(f?.sizes ?? []), ...(e?.sizes ?? [])], (w) => w.clients)) {
    const of = (xs: SystemResults['sizes'] | undefined): WritePoint | undefined =>
      xs?.find((w) => w.clients === n);
    const nodes = f?.sizes[0]?.nodes ?? e?.sizes[0]?.nodes ?? 0;
    pair(`${nodes} members, ${n} clients`, of(f?.sizes), of(e?.sizes));
  }
  return rows;
}

const cpuMethod =
  "Process CPU time (user + system) of each member from /proc/<pid>/stat, read when the warm-up ends and when the point ends, divided by the point's committed writes; the load generator (this one Node.js process, all clients) from process.cpuUsage(). /proc counts in 10 ms clock ticks: the grain is 10 ms ÷ the point's writes (resolutionUs in results.json), a few µs on a short point at one client. At low write rates it includes each member's idle work (ticks, heartbeats) spread over few writes. Values are 256 B unless stated; followers in member id order.";

export function renderTables(r: EvalResults): string {
  const ss = present(r);
  const parts: string[] = [];
  const writes = ss.flatMap((s) =>
    (r.systems[s]?.writes ?? []).map((w) => [...loadRow(s, w), wireCell(w.wire)]),
  );
  if (writes.length > 0)
    parts.push(
      '<h2>Writes, 256-byte values, 3 members</h2>',
      table([...loadHead, 'peer traffic per write'], writes),
    );
  const binary = binaryRows(r);
  if (binary.length > 0)
    parts.push(
      '<h2>Writes over the binary client protocol (Flotilla) vs JSON over HTTP (both)</h2>',
      table([...loadHead, 'peer traffic per write', 'vs etcd', 'vs Flotilla HTTP'], binary),
    );
  const cpu = cpuRows(r);
  if (cpu.length > 0)
    parts.push(
      '<h2>CPU per write (µs): leader / each follower / all members / load generator</h2>',
      `<p>${escapeXml(cpuMethod)}</p>`,
      table(cpuHead, cpu),
    );
  const reads = ss.flatMap((s) => [
    ...(r.systems[s]?.reads ?? []).map((x) => {
      const [leader, followers, , gen] = cpuCells(x.cpuPerOpUs);
      return [
        ...loadRow(`${s} ${x.consistency} @${x.target}`, x),
        `${leader} / ${followers} / ${gen}`,
      ];
    }),
    ...(r.systems[s]?.readsBinary ?? []).map((x) => {
      const [leader, followers, , gen] = cpuCells(x.cpuPerOpUs);
      return [
        ...loadRow(`${s} ${x.consistency} @${x.target}, binary (${x.connections} conns)`, x),
        `${leader} / ${followers} / ${gen}`,
      ];
    }),
  ]);
  if (reads.length > 0)
    parts.push(
      '<h2>Reads (single key, 256 B)</h2>',
      table([...loadHead, 'CPU µs per read: leader / followers / load generator'], reads),
    );
  const payload = ss.flatMap((s) =>
    (r.systems[s]?.payload ?? []).map((w) => [
      ...loadRow(`${s} ${w.valueBytes} B`, w),
      fmtNumber(Math.round((w.throughputOpsPerSec * w.valueBytes) / 1e4) / 100) + ' MB/s',
      wireCell(w.wire),
    ]),
  );
  if (payload.length > 0)
    parts.push(
      '<h2>Payload sweep</h2>',
      table([...loadHead, 'payload', 'peer traffic per write'], payload),
    );
  const sizes = ss.flatMap((s) => {
    const three = r.systems[s]?.writes ?? [];
    return (r.systems[s]?.sizes ?? []).flatMap((w) => {
      const t = three.find((x) => x.clients === w.clients);
      const rows = [[...loadRow(`${s} ${w.nodes} members`, w), wireCell(w.wire)]];
      if (t !== undefined) rows.unshift([...loadRow(`${s} 3 members`, t), wireCell(t.wire)]);
      return rows;
    });
  });
  if (sizes.length > 0)
    parts.push(
      '<h2>Cluster size: 3 vs 5 members (256 B writes)</h2>',
      table([...loadHead, 'peer traffic per write'], sizes),
    );
  const overload = ss.flatMap((s) => (r.systems[s]?.overload ?? []).map((x) => overloadRow(s, x)));
  if (overload.length > 0)
    parts.push(
      '<h2>Overload: closed-loop writers over every member, two CPU-bound processes beside</h2>',
      table(overloadHead, overload),
    );
  const fo = ss.flatMap((s) => {
    const f = r.systems[s]?.failover;
    if (f === null || f === undefined) return [];
    const a = f.summary;
    const e = f.electedSummary;
    return [
      [
        s,
        f.nodes,
        a['n'] ?? 0,
        f.failedTrials,
        a['min'] ?? 0,
        a['p50'] ?? 0,
        a['p90'] ?? 0,
        a['p99'] ?? 0,
        a['max'] ?? 0,
        `${e['p50']} / ${e['max']}`,
      ],
    ];
  });
  if (fo.length > 0)
    parts.push(
      '<h2>Failover (kill -9 the leader)</h2>',
      table(
        [
          'system',
          'members',
          'trials',
          'failed',
          'min ms',
          'p50 ms',
          'p90 ms',
          'p99 ms',
          'max ms',
          'leader seen p50 / max ms',
        ],
        [
          ...fo,
          [
            'Raft paper Fig. 16 (150–300 ms)',
            5,
            1000,
            '',
            '',
            paperFailover.medianMs,
            '',
            '',
            paperFailover.maxMs,
            '',
          ],
        ],
      ),
    );
  if (r.profile !== null) {
    parts.push(
      `<h2>CPU profile of the Flotilla leader</h2><p>${escapeXml(r.profile.load)}; ${r.profile.totalMs} ms sampled.</p>`,
      table(
        ['area', 'self ms', 'self %'],
        r.profile.byArea.map((x) => [x.name, x.selfMs, x.selfPercent]),
      ),
      table(
        ['function', 'self ms', 'self %'],
        r.profile.topFunctions.map((x) => [x.name, x.selfMs, x.selfPercent]),
      ),
    );
  }
  return parts.join('\n');
}

function renderQueue(r: EvalResults): string {
  const q = r.queue;
  if (q === undefined) return '';
  const skipped = q.skipped.map((s) => `<p>${escapeXml(s)}</p>`).join('');
  return `<h2>Job queue: add → claim → complete (median of the rounds; each round in brackets)</h2>
<p>${escapeXml(r.settings['queue'] ?? '')} Redis ${escapeXml(q.redis ?? 'not installed')}, BullMQ ${escapeXml(q.bullmq ?? 'not installed')}.</p>${skipped}
${table(queueComparisonHead, queueComparison(q))}`;
}

/** The cluster warm-up sentence of the method (nothing for results from before it was run). */
export function clusterWarmupNote(p: EvalResults['plan']): string {
  const ms = p.clusterWarmupMs ?? 0;
  if (ms <= 0) return '';
  const reads =
    (p.readWarmupMs ?? 0) > 0
      ? `, and ${p.readClients} linearizable readers for ${(p.readWarmupMs ?? 0) / 1000} s before the read points`
      : '';
  const binary =
    (p.binaryWarmupMs ?? 0) > 0
      ? `; Flotilla's binary protocol takes 256 writers for ${(p.binaryWarmupMs ?? 0) / 1000} s before its points`
      : '';
  return `; before its first point each write/read cluster (both systems alike) takes ${p.clusterWarmupClients ?? 64} closed-loop writers for ${ms / 1000} s${reads}, not measured, so that no point measures the JIT compiling the write and read paths${binary} (failover, overload, watch, lease and scale clusters are not warmed)`;
}

/** The goals round by round, when the run had several rounds. */
function renderRounds(r: EvalResults): string {
  const g = goalsByRound(r);
  const n = r.rounds?.length ?? 0;
  if (g.length === 0) {
    // One system alone has no goals (they are ratios to etcd); its rounds' calibration still
    // says which of its blocks ran on a slower machine.
    const note = n > 1 ? calibrationNote(r) : '';
    return note === ''
      ? ''
      : `<h2>${n} rounds</h2>\n<p>Machine calibration (ms of CPU for a fixed piece of work, before→after each system's block): ${escapeXml(note)}. The tables below are round 1's; every round is in results.json.</p>`;
  }
  const { head, rows } = roundsTable(r, g);
  const note = calibrationNote(r);
  return `<h2>Goals over ${n} rounds (the systems taking turns, the order alternating)</h2>
${table(
  [...head, 'verdict'],
  rows.map((row, i) => [...row, g[i]?.met === true ? 'met' : 'MISSED']),
)}
${note === '' ? '' : `<p>Machine calibration (ms of CPU for a fixed piece of work, before→after each system's block): ${escapeXml(note)}</p>`}`;
}

export function renderHtml(r: EvalResults): string {
  const m = r.machine;
  const speed = calibrationNote(r);
  const g = goals(r);
  const goalRows = g.map((x) => [
    x.goal,
    x.flotilla,
    x.anchor,
    x.ratio,
    x.met === null ? '–' : x.met ? 'met' : 'MISSED',
  ]);
  const charts = [...renderCharts(r).values()].map((svg) => `<figure>${svg}</figure>`).join('\n');
  const settings = Object.entries(r.settings)
    .map(([k, v]) => `<li><b>${escapeXml(k)}</b>: ${escapeXml(v)}</li>`)
    .join('');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Flotilla evaluation against etcd</title>
<style>
body{font-family:Helvetica,Arial,sans-serif;max-width:1000px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:right}
td:first-child,th:first-child{text-align:left}figure{margin:1em 0}.facts td{text-align:left}
</style></head><body>
<h1>Flotilla evaluation against etcd</h1>
<table class="facts"><tbody>
<tr><td>CPU</td><td>${escapeXml(m.cpuModel)}, ${m.cores} cores (shared with other work; load average at start ${m.loadAverageAtStart.join(' / ')})</td></tr>
<tr><td>memory</td><td>${m.memoryGiB} GiB</td></tr>
<tr><td>disk</td><td>${escapeXml(m.disk)} (both systems' data on it, fsync on)</td></tr>
<tr><td>software</td><td>Linux ${escapeXml(m.kernel)}, Node.js ${escapeXml(m.node)}, etcd ${escapeXml(m.etcd ?? 'not installed')}</td></tr>
${r.rounds === undefined && speed !== '' ? `<tr><td>machine speed</td><td>ms of CPU for a fixed piece of work, before→after each system's points: ${escapeXml(speed)}</td></tr>\n` : ''}<tr><td>run</td><td>${escapeXml(r.startedAt)} → ${escapeXml(r.finishedAt)}, ${r.quick ? 'quick' : 'full'}: warm-up ${r.plan.warmupMs / 1000} s, measured ${r.plan.durationMs / 1000} s per point${escapeXml(clusterWarmupNote(r.plan))}</td></tr>
</tbody></table>
<ul>${settings}</ul>
${renderRounds(r)}
<h2>Goals (same machine, same run${r.rounds === undefined ? '' : '; round 1 alone, as are the charts and tables below'})</h2>
${goalRows.length === 0 ? '<p>None measured: every goal is a ratio to etcd, and a run needs both systems for it.</p>' : table(['goal', 'Flotilla', 'anchor', 'ratio', 'verdict'], goalRows)}
${charts}
${renderTables(r)}
${renderQueue(r)}
</body></html>
`;
}
