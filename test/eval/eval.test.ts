import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { niceTicks, renderChart } from '../../bench/eval/chart.js';
import { FlotillaCluster } from '../../bench/eval/clusters.js';
import { cpuPerOp, cpuSeconds } from '../../bench/eval/cpu.js';
import { EvalError } from '../../bench/eval/errors.js';
import { percentile, summarize } from '../../bench/eval/failover.js';
import { readResults } from '../../bench/eval/main.js';
import { maxBucketMs } from '../../bench/eval/overload.js';
import { parseScenarios, quickPlan, roundOrder } from '../../bench/eval/plan.js';
import { ProcessGroup } from '../../bench/eval/procs.js';
import { areaOf, summariseProfile } from '../../bench/eval/profile.js';
import { delta, parsePrometheus, sumBy } from '../../bench/eval/prom.js';
import { closedLoopSession, getOp, putOp, randomValueB64 } from '../../bench/eval/protocol.js';
import {
  cdf,
  clusterWarmupNote,
  cpuRows,
  goals,
  calibratedBlocks,
  goalsByRound,
  goalsByRoundMarkdown,
  renderHtml,
  SLOW_BLOCK,
} from '../../bench/eval/report.js';
import { runEvaluation, type EvalResults, type SystemResults } from '../../bench/eval/run.js';
import {
  binaryReadPoint,
  warmCluster,
  writePoint,
  type WritePoint,
} from '../../bench/eval/scenarios.js';
import { pidsMentioning } from '../support/procs.js';
import { repoRoot } from '../support/root.js';

const root = repoRoot();
const mainJs = join(root, 'dist', 'bench', 'eval', 'main.js');

void test('sums Prometheus counters by label and takes deltas', () => {
  const text = [
    '# HELP flotilla_messages_sent_total Raft messages sent by type',
    'flotilla_messages_sent_total{type="append",node="1"} 10',
    'flotilla_messages_sent_total{type="append",node="2"} 5',
    'flotilla_messages_sent_total{type="heartbeat",node="1"} 3',
    'etcd_network_peer_sent_bytes_total{To="a"} 1e3',
    'garbage line',
  ].join('\n');
  const s = parsePrometheus(text);
  const byType = sumBy(s, 'flotilla_messages_sent_total', 'type');
  assert.deepEqual(
    [...byType],
    [
      ['append', 15],
      ['heartbeat', 3],
    ],
  );
  assert.equal(sumBy(s, 'etcd_network_peer_sent_bytes_total').get(''), 1000);
  const d = delta(new Map([['append', 5]]), byType);
  assert.equal(d.get('append'), 10);
  assert.equal(d.get('heartbeat'), 3);
});

void test('bodies carry the same base64 key and value for both systems', () => {
  const v = randomValueB64(256, 1);
  assert.equal(Buffer.from(v, 'base64').length, 256);
  const e = JSON.parse(putOp('etcd', 'a2V5', v).body) as Record<string, unknown>;
  const f = JSON.parse(putOp('flotilla', 'a2V5', v, { clientId: 'c1', seq: 3 }).body) as Record<
    string,
    unknown
  >;
  assert.equal(e['value'], f['value']);
  assert.deepEqual(f, { key: 'a2V5', value: v, encoding: 'base64', clientId: 'c1', seq: 3 });
  // A closed-loop writer acknowledges every answer before its write, as the client library does.
  const marked = JSON.parse(putOp('flotilla', 'a2V5', v, closedLoopSession('c1', 2)).body) as {
    seq: number;
    ackedBelow: number;
  };
  assert.deepEqual([marked.seq, marked.ackedBelow], [3, 3]);
  assert.equal(putOp('etcd', 'k', v).path, '/v3/kv/put');
  assert.deepEqual(JSON.parse(getOp('etcd', 'k', 'serializable').body), {
    key: 'k',
    serializable: true,
  });
  assert.deepEqual(JSON.parse(getOp('flotilla', 'k').body), { key: 'k', encoding: 'base64' });
  assert.deepEqual(JSON.parse(getOp('flotilla', 'k', 'lease').body), {
    key: 'k',
    encoding: 'base64',
    consistency: 'lease',
  });
  assert.throws(() => getOp('etcd', 'k', 'lease'), /no per-request lease reads/);
});

void test('percentiles by nearest rank and the CDF reach 1 at the largest time', () => {
  const xs = [5, 1, 4, 2, 3];
  assert.equal(percentile([1, 2, 3, 4, 5], 50), 3);
  assert.equal(percentile([1, 2, 3, 4, 5], 100), 5);
  const s = summarize(xs);
  assert.equal(s['p50'], 3);
  assert.equal(s['max'], 5);
  assert.deepEqual(cdf(xs).at(-1), [5, 1]);
  assert.deepEqual(cdf(xs)[0], [1, 0]);
});

void test('nice ticks are round numbers covering the range', () => {
  assert.deepEqual(niceTicks(0, 1000, 5), [0, 200, 400, 600, 800, 1000]);
  assert.deepEqual(niceTicks(0, 1, 4), [0, 0.5, 1]);
  assert.deepEqual(niceTicks(3, 3), [3]);
});

void test('a chart is well-formed SVG with escaped labels and one path per series', () => {
  const svg = renderChart({
    title: 'a < b & c',
    xLabel: 'x',
    yLabel: 'y',
    xLog: true,
    series: [
      {
        name: 'one',
        color: '#000',
        points: [
          [1, 10],
          [16, 20],
          [256, 5],
        ],
      },
      {
        name: 'two',
        color: '#f00',
        points: [
          [1, 3],
          [256, 4],
        ],
        step: true,
        dashed: true,
      },
    ],
    refLines: [{ x: 100, label: 'ref' }],
  });
  assert.match(svg, /^<svg /);
  assert.match(svg, /a &#60; b &#38; c/);
  assert.equal((svg.match(/<path /g) ?? []).length, 2);
  assert.doesNotMatch(svg, /NaN|Infinity/);
});

void test('profile summary ranks functions by self time and groups by source area', () => {
  const frame = (functionName: string, url: string) => ({ functionName, url, lineNumber: 0 });
  const p = {
    nodes: [
      { id: 1, callFrame: frame('(root)', '') },
      { id: 2, callFrame: frame('encode', 'file:///r/dist/src/transport/codec.js') },
      { id: 3, callFrame: frame('parse', 'file:///r/node_modules/undici/lib/x.js') },
    ],
    samples: [2, 2, 3, 2],
    timeDeltas: [1000, 1000, 1000, 1000],
    startTime: 0,
    endTime: 4000,
  };
  const s = summariseProfile(p, 5);
  assert.equal(s.totalMs, 4);
  assert.equal(s.topFunctions[0]?.name, 'encode dist/src/transport/codec.js:1');
  assert.equal(s.topFunctions[0]?.selfPercent, 75);
  assert.equal(s.byArea[0]?.name, 'flotilla: src/transport');
  // From 2.5 ms on (samples stamped 1, 2, 3 and 4 ms): the last two only, one of each.
  const later = summariseProfile(p, 5, 2500);
  assert.equal(later.totalMs, 2);
  assert.equal(later.topFunctions[0]?.selfPercent, 50);
  assert.equal(areaOf('node:internal/http', 'x'), 'node: internal');
  assert.equal(areaOf('', '(garbage collector)'), '(garbage collector)');
});

void test('an unknown scenario is refused with a typed error naming it', () => {
  assert.deepEqual(parseScenarios('writes, failover'), ['writes', 'failover']);
  assert.throws(
    () => parseScenarios('writes,bogus'),
    (e: unknown) =>
      e instanceof EvalError && e.code === 'EVAL_BAD_OPTION' && /bogus/.test(e.message),
  );
});

void test('the closed loop counts answers by status within the window and closes its sockets', async () => {
  const { createServer } = await import('node:http');
  const { runClosedLoop } = await import('../../bench/eval/loadgen.js');
  let n = 0;
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const refused = n++ % 4 === 3;
      res.statusCode = refused ? 503 : 200;
      res.end(refused ? '{"error":{"code":"NO_LEADER","message":"no leader"}}' : '{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  try {
    // A window long enough for a few answers on a loaded machine: what is checked is how they
    // are counted, not how many there are.
    const r = await runClosedLoop({
      urls: [`http://127.0.0.1:${port}`],
      clients: 4,
      warmupMs: 50,
      durationMs: 1_000,
      next: () => ({ path: '/x', body: '{}' }),
    });
    assert.ok(r.ops >= 4, `ops ${r.ops}`);
    assert.ok((r.errorsByStatus['503'] ?? 0) > 0);
    assert.equal(r.errors, r.errorsByStatus['503']);
    assert.deepEqual(r.errorsByCode, { '503 NO_LEADER': r.errors });
    assert.ok(r.latencyMs.p50 > 0 && r.latencyMs.p50 <= r.latencyMs.p99);
    // The client closes its sockets; the server sees the FINs a moment later.
    let open = -1;
    for (let i = 0; i < 100 && open !== 0; i++) {
      open = await new Promise<number>((res) => server.getConnections((_, c) => res(c)));
      if (open !== 0) await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(open, 0);
  } finally {
    // Closed whatever happened above, or the test file would never exit.
    server.closeAllConnections();
    await new Promise<void>((res) => server.close(() => res()));
  }
});

void test("an error answer's code is read from Flotilla's and etcd's bodies, or left out", async () => {
  const { errorCodeOf } = await import('../../bench/eval/loadgen.js');
  assert.equal(errorCodeOf('{"error":{"code":"NO_LEADER","message":"m"}}'), 'NO_LEADER');
  assert.equal(errorCodeOf('{"error":"etcdserver: too many requests","code":8}'), '8');
  assert.equal(errorCodeOf('<html>502</html>'), '');
  assert.equal(errorCodeOf('null'), '');
  assert.equal(errorCodeOf('{"error":{}}'), '');
});

void test('the slowest observation of a histogram is read as the smallest bucket holding them all', () => {
  const text = [
    'flotilla_heartbeat_round_trip_seconds_bucket{le="0.05",node="1"} 3',
    'flotilla_heartbeat_round_trip_seconds_bucket{le="0.1",node="1"} 9',
    'flotilla_heartbeat_round_trip_seconds_bucket{le="0.25",node="1"} 10',
    'flotilla_heartbeat_round_trip_seconds_bucket{le="0.5",node="1"} 10',
    'flotilla_heartbeat_round_trip_seconds_bucket{le="+Inf",node="1"} 10',
  ].join('\n');
  assert.equal(maxBucketMs(parsePrometheus(text), 'flotilla_heartbeat_round_trip_seconds'), 250);
  assert.equal(maxBucketMs(parsePrometheus(''), 'flotilla_heartbeat_round_trip_seconds'), null);
  // Read against an earlier reading: only what was observed since counts. The slow round of
  // before (in the 0.25 s bucket) is left out; the two since were below 0.1 s.
  const earlier = [
    'flotilla_heartbeat_round_trip_seconds_bucket{le="0.05",node="1"} 3',
    'flotilla_heartbeat_round_trip_seconds_bucket{le="0.1",node="1"} 7',
    'flotilla_heartbeat_round_trip_seconds_bucket{le="0.25",node="1"} 8',
    'flotilla_heartbeat_round_trip_seconds_bucket{le="0.5",node="1"} 8',
    'flotilla_heartbeat_round_trip_seconds_bucket{le="+Inf",node="1"} 8',
  ].join('\n');
  const name = 'flotilla_heartbeat_round_trip_seconds';
  assert.equal(maxBucketMs(parsePrometheus(text), name, parsePrometheus(earlier)), 100);
  assert.equal(
    maxBucketMs(parsePrometheus(text), name, parsePrometheus(text)),
    null,
    'nothing observed since',
  );
  assert.deepEqual(parseScenarios('overload,writes'), ['overload', 'writes']);
});

const reading = (atMs: number, members: [number, number | null][], selfUs: number) => ({
  atMs,
  memberSeconds: new Map(members),
  selfUs,
});

void test('CPU per op splits leader and followers and scales a late reading to the window', () => {
  const a = reading(
    1_000,
    [
      [1, 10],
      [2, 20],
      [3, 30],
    ],
    5_000_000,
  );
  // 2 000 ms of CPU readings over a 2 000 ms window of 1 000 ops.
  const b = reading(
    3_000,
    [
      [1, 10.5],
      [2, 20.2],
      [3, 30.1],
    ],
    5_400_000,
  );
  const c = cpuPerOp(a, b, { leaderId: 2, ops: 1_000, durationMs: 2_000 });
  assert.deepEqual(c, {
    leaderId: 2,
    leader: 200,
    followers: [500, 100],
    members: 800,
    loadGenerator: 400,
    resolutionUs: 10,
  });
  // The end reading fired 500 ms late: the same CPU rate over 2 500 ms gives the same per op.
  const late = reading(
    3_500,
    [
      [1, 10.625],
      [2, 20.25],
      [3, 30.125],
    ],
    5_500_000,
  );
  // One clock tick over the longer span is a finer grain per op.
  assert.deepEqual(cpuPerOp(a, late, { leaderId: 2, ops: 1_000, durationMs: 2_000 }), {
    ...c,
    resolutionUs: 8,
  });
  // A member that stopped, or a window with no ops, gives no figure rather than a wrong one.
  const gone = reading(
    3_000,
    [
      [1, 10.5],
      [2, null],
      [3, 30.1],
    ],
    5_400_000,
  );
  assert.equal(cpuPerOp(a, gone, { leaderId: 2, ops: 1_000, durationMs: 2_000 }), null);
  assert.equal(cpuPerOp(a, b, { leaderId: 2, ops: 0, durationMs: 2_000 }), null);
  assert.equal(cpuPerOp(a, b, { leaderId: 9, ops: 1_000, durationMs: 2_000 }), null);
});

void test(
  "a process's CPU seconds from /proc agree with Node's own count",
  { skip: process.platform !== 'linux' },
  () => {
    const end = performance.now() + 300;
    let x = 0;
    while (performance.now() < end) x += Math.sqrt(x + 1);
    assert.ok(x > 0);
    const kernelMs = (cpuSeconds(process.pid) ?? -1) * 1000;
    const u = process.cpuUsage();
    const nodeMs = (u.user + u.system) / 1000;
    assert.ok(kernelMs >= 300, `kernel ${kernelMs} ms after a 300 ms busy loop`);
    assert.ok(
      Math.abs(kernelMs - nodeMs) < 50 + nodeMs * 0.05,
      `kernel ${kernelMs}, node ${nodeMs}`,
    );
    assert.equal(cpuSeconds(2 ** 30), null, 'no such process');
  },
);

/** Fails unless a write point carries CPU per write for its leader and every follower. */
function assertCpuPerWrite(w: WritePoint, followers: number): void {
  const c = w.cpuPerOpUs;
  assert.ok(c !== undefined && c !== null, `no cpuPerOpUs in ${JSON.stringify(w)}`);
  const positive = (what: string, v: number): void =>
    assert.ok(Number.isFinite(v) && v > 0, `${what} CPU per write ${v}`);
  positive('leader', c.leader);
  assert.equal(c.followers.length, followers, `followers ${JSON.stringify(c.followers)}`);
  c.followers.forEach((v, i) => positive(`follower ${i}`, v));
  positive('all members', c.members);
  positive('load generator', c.loadGenerator);
  assert.ok(c.members >= c.leader, `members ${c.members} < leader ${c.leader}`);
}

const loadResult = (clients: number) => ({
  clients,
  durationMs: 1_000,
  ops: 1_000,
  errors: 0,
  errorsByStatus: {},
  throughputOpsPerSec: 1_000,
  latencyMs: { mean: 1, p50: 1, p90: 1, p99: 1, p999: 1, max: 1 },
});
const noWire = { messagesByType: null, messages: null, peerBytes: null, reportedPeerBytes: null };
const cpuOk = {
  leaderId: 1,
  leader: 120,
  followers: [40, 42],
  members: 202,
  loadGenerator: 90,
  resolutionUs: 10,
};

void test('the CPU check refuses a write point without the figure or with a zero', () => {
  const w = { ...loadResult(1), valueBytes: 256, wire: noWire };
  assertCpuPerWrite({ ...w, cpuPerOpUs: cpuOk }, 2);
  assert.throws(() => assertCpuPerWrite(w, 2), /no cpuPerOpUs/);
  assert.throws(() => assertCpuPerWrite({ ...w, cpuPerOpUs: null }, 2), /no cpuPerOpUs/);
  assert.throws(
    () => assertCpuPerWrite({ ...w, cpuPerOpUs: { ...cpuOk, followers: [40, 0] } }, 2),
    /follower 1 CPU per write 0/,
  );
  assert.throws(
    () => assertCpuPerWrite({ ...w, cpuPerOpUs: { ...cpuOk, followers: [40] } }, 2),
    /followers/,
  );
  assert.throws(
    () => assertCpuPerWrite({ ...w, cpuPerOpUs: { ...cpuOk, leader: NaN } }, 2),
    /leader CPU per write NaN/,
  );
});

function resultsWith(flotilla: WritePoint[], etcd: WritePoint[]): EvalResults {
  const sys = (writes: WritePoint[]) => ({
    writes,
    payload: [],
    reads: [],
    sizes: [],
    failover: null,
  });
  const {
    clusterWarmupMs: _a,
    clusterWarmupClients: _b,
    readWarmupMs: _c,
    binaryWarmupMs: _d,
    ...oldPlan
  } = quickPlan;
  return {
    machine: {
      cpuModel: 'x',
      cores: 2,
      memoryGiB: 1,
      disk: 'd',
      kernel: 'k',
      node: 'n',
      etcd: null,
      loadAverageAtStart: [0, 0, 0],
    },
    startedAt: 's',
    finishedAt: 'f',
    quick: true,
    plan: oldPlan,
    settings: {},
    systems: { flotilla: sys(flotilla), etcd: sys(etcd) },
    profile: null,
    failures: [],
  };
}

void test('the report puts CPU per write side by side, and shows – for results without it', () => {
  const w = (clients: number, cpu?: typeof cpuOk) => ({
    ...loadResult(clients),
    valueBytes: 256,
    wire: noWire,
    ...(cpu === undefined ? {} : { cpuPerOpUs: cpu }),
  });
  const r = resultsWith(
    [w(1, cpuOk), w(256, { ...cpuOk, leader: 50 })],
    [w(1, { ...cpuOk, leader: 240 }), w(256, { ...cpuOk, leader: 200 })],
  );
  assert.deepEqual(cpuRows(r), [
    ['1 clients', '120', '40 / 42', '202', '90', '240', '40 / 42', '202', '90', '0.50×'],
    ['256 clients', '50', '40 / 42', '202', '90', '200', '40 / 42', '202', '90', '0.25×'],
  ]);
  const g = goals(r).find((x) => x.goal.startsWith('CPU per write'));
  assert.equal(g?.ratio, '0.25×');
  assert.equal(g?.met, true);
  // Results from before CPU was measured (nor a cluster warm-up run): dashes, no goal row.
  const old = resultsWith([w(1)], [w(1)]);
  assert.deepEqual(cpuRows(old), [['1 clients', ...Array<string>(9).fill('–')]]);
  assert.equal(
    goals(old).find((x) => x.goal.startsWith('CPU per write')),
    undefined,
  );
  const html = renderHtml(old);
  assert.match(html, /CPU per write \(µs\)/);
  assert.doesNotMatch(html, /cluster .*warm/);
  assert.match(
    clusterWarmupNote(quickPlan),
    /64 closed-loop writers for 20 s, and 64 linearizable readers for 5 s before the read points/,
  );
  assert.match(clusterWarmupNote(quickPlan), /binary protocol takes 256 writers for 5 s/);
});

void test("goals over several rounds: each round's ratio, the median, and the majority's verdict", () => {
  assert.deepEqual(roundOrder(['flotilla', 'etcd'], 0), ['flotilla', 'etcd']);
  assert.deepEqual(roundOrder(['flotilla', 'etcd'], 1), ['etcd', 'flotilla']);
  assert.deepEqual(roundOrder(['flotilla', 'etcd'], 2), ['flotilla', 'etcd']);
  // Flotilla's 256-client writes at these multiples of etcd's 1,000 ops/s, one per round.
  const round = (x: number) => {
    const w = (clients: number, ops: number) => ({
      ...loadResult(clients),
      throughputOpsPerSec: ops,
      valueBytes: 256,
      wire: noWire,
    });
    return resultsWith([w(256, 1_000 * x)], [w(256, 1_000)]).systems;
  };
  const run = (...xs: number[]): EvalResults => {
    const rounds = xs.map(round);
    return { ...resultsWith([], []), systems: rounds[0] ?? {}, rounds };
  };
  const writes256 = (r: EvalResults) =>
    goalsByRound(r).find((g) => g.goal.startsWith('writes/s over HTTP, 256'));
  const met = writes256(run(2.2, 1.5, 2.1));
  assert.deepEqual(met?.ratios, [2.2, 1.5, 2.1]);
  assert.equal(met?.median, 2.1);
  assert.equal(met?.metIn, 2);
  assert.equal(met?.met, true, 'met in two of three rounds');
  const missed = writes256(run(2.2, 1.5, 1.1));
  assert.equal(missed?.median, 1.5);
  assert.equal(missed?.met, false, 'one round of three is not the goal met');
  assert.equal(writes256(run(2.2, 1.9))?.met, false, 'one of two is not a majority');
  assert.equal(writes256(run(2.2, 1.9))?.median, 2.05);
  // One round: no table by round, the run's one goals table stands.
  assert.deepEqual(goalsByRound(resultsWith([], [])), []);
  assert.equal(goalsByRoundMarkdown(resultsWith([], [])), '');
  const md = goalsByRoundMarkdown(run(2.2, 1.5, 2.1));
  assert.match(md, /\| goal \| round 1 \| round 2 \| round 3 \| median \| met in \|/);
  assert.match(
    md,
    /\| writes\/s over HTTP, 256 clients ≥ 2× etcd \| 2\.20× \| 1\.50× \| 2\.10× \| 2\.10× \| 2 of 3 \(met\) \|/,
  );
  // The rounds lead; round 1's own table follows, said to be one round.
  assert.match(renderHtml(run(2.2, 1.5, 2.1)), /Goals over 3 rounds[^]*round 1 alone/);
  // The machine's speed around each block, in the order the blocks ran; a slow one is named.
  const calibrated = run(2.2, 1.5, 2.1);
  const cal = (before: number, after: number, startedAt: string) => ({
    before: { cpuMs: before, wallMs: before },
    after: { cpuMs: after, wallMs: after },
    startedAt,
  });
  const speeds: [number, number][][] = [
    [
      [22, 36],
      [22, 23],
    ],
    [
      [21, 22],
      [22, 23],
    ],
    [
      [23, 22],
      [21, 22],
    ],
  ];
  calibrated.rounds?.forEach((systems, i) => {
    const [f, e] = speeds[i] as [[number, number], [number, number]];
    // The order alternates: etcd's block ran first in round 2.
    const [tf, te] = i === 1 ? ['T2', 'T1'] : ['T1', 'T2'];
    (systems.flotilla as SystemResults).calibration = cal(...f, `${i}${tf}`);
    (systems.etcd as SystemResults).calibration = cal(...e, `${i}${te}`);
  });
  const slow = calibratedBlocks(calibrated).filter((b) => b.slowdown >= SLOW_BLOCK);
  assert.deepEqual(
    slow.map((b) => [b.round, b.system]),
    [[1, 'flotilla']],
  );
  assert.match(
    goalsByRoundMarkdown(calibrated),
    /Machine calibration .*: round 1: flotilla 22→36 ms \(1\.64× the run's median: a slower machine at its start or end\), etcd 22→23 ms; round 2: etcd 22→23 ms, flotilla 21→22 ms; round 3: flotilla/,
  );
  assert.doesNotMatch(goalsByRoundMarkdown(run(2.2, 1.5, 2.1)), /calibration/);
  assert.doesNotMatch(renderHtml(resultsWith([], [])), /Goals over/);
  // Flotilla alone over two rounds: no goals, but the rounds and their calibration are shown.
  const alone = run(1, 1);
  alone.rounds?.forEach((systems, i) => {
    delete systems.etcd;
    (systems.flotilla as SystemResults).calibration = cal(20, i === 0 ? 20 : 31, `${i}`);
  });
  const aloneHtml = renderHtml(alone);
  assert.match(aloneHtml, /<h2>2 rounds<\/h2>/);
  assert.match(aloneHtml, /round 2: flotilla 20→31 ms \(1\.\d+× the run&#39;s median/);
  assert.match(aloneHtml, /None measured: every goal is a ratio to etcd/);
});

void test('smoke: two rounds run each system twice, on fresh clusters', async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'flotilla-evalrounds-'));
  const lines: string[] = [];
  const prevTmp = process.env['TMPDIR'];
  process.env['TMPDIR'] = tmp;
  try {
    const r = await runEvaluation({
      plan: {
        ...quickPlan,
        kvRounds: 2,
        clusterWarmupMs: 0,
        warmupMs: 200,
        durationMs: 600,
        writeClients: [4],
      },
      quick: true,
      systems: ['flotilla'],
      queueSystems: [],
      scenarios: ['writes'],
      progress: { tick: () => {}, done: () => {}, line: (l) => lines.push(l) },
      keepData: true,
    });
    assert.deepEqual(r.failures, []);
    assert.equal(r.rounds?.length, 2, lines.join('\n'));
    assert.equal(r.rounds?.[0], r.systems, "the first round is the run's systems");
    for (const round of r.rounds ?? []) {
      const w = round.flotilla?.writes[0];
      assert.ok(w !== undefined && w.ops > 0 && w.errors === 0, JSON.stringify(w));
    }
    assert.notEqual(r.rounds?.[0]?.flotilla, r.rounds?.[1]?.flotilla);
    for (const round of r.rounds ?? []) {
      const c = round.flotilla?.calibration;
      assert.ok(c !== undefined && c.before.cpuMs > 0 && c.after.wallMs > 0, JSON.stringify(c));
    }
    assert.equal(lines.filter((l) => /machine calibration .* ms of CPU before/.test(l)).length, 2);
    assert.deepEqual(
      lines.filter((l) => l.startsWith('round ')),
      ['round 1 of 2: flotilla', 'round 2 of 2: flotilla'],
    );
    assert.equal(lines.filter((l) => l.startsWith('starting flotilla')).length, 2);
    // The second round's members had data directories of their own, not the first round's.
    const [dataDir] = readdirSync(tmp);
    const entries = readdirSync(join(tmp, dataDir ?? ''));
    assert.ok(entries.includes('round2'), entries.join(', '));
    assert.ok(
      readdirSync(join(tmp, dataDir ?? '', 'round2', 'main')).some((n) =>
        n.startsWith('flotilla-3-m'),
      ),
    );
  } finally {
    if (prevTmp === undefined) delete process.env['TMPDIR'];
    else process.env['TMPDIR'] = prevTmp;
    rmSync(tmp, { recursive: true, force: true });
  }
});

void test('smoke: a write point on a real 3-member cluster measures CPU per write on every member', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-evalcpu-'));
  const procs = new ProcessGroup();
  const lines: string[] = [];
  const progress = {
    tick: () => undefined,
    done: (l: string, s: string) => lines.push(`${l}: ${s}`),
  };
  try {
    const c = new FlotillaCluster({ size: 3, dir, procs });
    await c.start();
    await warmCluster(c, 16, 300, progress);
    const w = await writePoint(c, 16, 256, { warmupMs: 300, durationMs: 1_500 }, progress, 'w');
    assert.ok(w.ops > 0, `no writes: ${lines.join('; ')}`);
    assertCpuPerWrite(w, 2);
    assert.equal(w.cpuPerOpUs?.leaderId, await c.waitForLeader());
    assert.equal(lines.length, 2, lines.join('; '));
    // Reads over the binary protocol, at the leader, answered and measured the same way.
    const rd = await binaryReadPoint(
      c,
      8,
      2,
      'linearizable',
      { warmupMs: 200, durationMs: 800 },
      progress,
      'rb',
    );
    assert.ok(rd.ops > 0, `no binary reads: ${lines.join('; ')}`);
    assert.deepEqual(rd.errorsByStatus, {}, `errors: ${JSON.stringify(rd.errorsByStatus)}`);
    assert.equal(rd.cpuPerOpUs?.leaderId, await c.waitForLeader());
    await c.stop();
  } finally {
    await procs.stopAll();
    rmSync(dir, { recursive: true, force: true });
  }
});

void test('--report-from refuses a missing, non-JSON or foreign file in one line and re-renders a real one', () => {
  const dir = mkdtempSync(join(tmpdir(), 'eval-report-from-'));
  try {
    const write = (name: string, text: string): string => {
      const file = join(dir, name);
      writeFileSync(file, text);
      return file;
    };
    const cases: [string, RegExp][] = [
      [join(dir, 'absent.json'), /cannot read .*absent\.json: ENOENT/],
      [write('cut.json', '{"machine": '), /cut\.json is not JSON/],
      [
        write('other.json', '{"x":1}'),
        /other\.json is not a results\.json of this bench \(no machine, plan, systems, settings, failures\)/,
      ],
      [write('list.json', '[]'), /list\.json is not a results\.json/],
    ];
    for (const [file, message] of cases) {
      assert.throws(
        () => readResults(file),
        (e: unknown) =>
          e instanceof EvalError && e.code === 'EVAL_BAD_OPTION' && message.test(e.message),
        file,
      );
      const r = spawnSync(
        process.execPath,
        [mainJs, '--report-from', file, '--out', join(dir, 'out')],
        {
          encoding: 'utf8',
          timeout: 30_000,
        },
      );
      assert.equal(r.status, 1, r.stderr);
      assert.match(r.stderr, /^bench: EVAL_BAD_OPTION: --report-from: /);
      assert.doesNotMatch(r.stderr, /\n\s+at /, `a stack trace:\n${r.stderr}`);
    }
    // The results the docs' charts come from re-render.
    const committed = readResults(join(root, 'docs', 'bench', 'results.json'));
    assert.ok(committed.systems.flotilla !== undefined);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

void test('SIGINT during a run stops every member and removes the data directory', async (t) => {
  const tmp = mkdtempSync(join(tmpdir(), 'eval-sigint-'));
  t.after(() => rmSync(tmp, { recursive: true, force: true }));
  const child = spawn(
    process.execPath,
    [
      mainJs,
      '--quick',
      '--scenarios',
      'writes',
      '--systems',
      'flotilla',
      '--out',
      join(tmp, 'out'),
    ],
    { env: { ...process.env, TMPDIR: tmp }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let out = '';
  const exited = new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  const membersUp = new Promise<void>((resolve) => {
    const onData = (b: Buffer): void => {
      out += b.toString('utf8');
      if (/warm-up/.test(out)) resolve();
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
  });
  const bound = (ms: number, what: string): Promise<never> =>
    new Promise((_, reject) => {
      setTimeout(() => reject(new Error(`${what} within ${ms} ms; saw:\n${out}`)), ms).unref();
    });
  await Promise.race([
    membersUp,
    exited.then(() => bound(0, 'exited before its cluster was up')),
    bound(90_000, 'no cluster up'),
  ]);
  const dataDir = readdirSync(tmp).filter((n) => n.startsWith('flotilla-eval-'));
  assert.equal(
    dataDir.length,
    1,
    `one data directory under TMPDIR: ${readdirSync(tmp).join(', ')}`,
  );
  assert.ok(pidsMentioning(join(tmp, dataDir[0] ?? '')).length >= 3, 'three members running');
  child.kill('SIGINT');
  assert.equal(await Promise.race([exited, bound(15_000, 'did not exit after SIGINT')]), 130, out);
  assert.deepEqual(pidsMentioning(tmp), [], `members left running:\n${out}`);
  assert.deepEqual(
    readdirSync(tmp).filter((n) => n !== 'out'),
    [],
    `left under TMPDIR after SIGINT:\n${out}`,
  );
});

void test('the apply-during-write tool counts, per member, what it applied during its writes', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'flotilla-adw-test-'));
  try {
    const r = spawnSync(
      process.execPath,
      [
        join(root, 'dist', 'bench', 'eval', 'apply-during-write.js'),
        '--clients',
        '2',
        '--seconds',
        '1',
      ],
      { encoding: 'utf8', timeout: 90_000, env: { ...process.env, TMPDIR: tmp } },
    );
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    const rows = r.stdout
      .split('\n')
      .filter((l) => /^\| 2 \|/.test(l))
      .map((l) => l.split('|').map((c) => c.trim()));
    assert.equal(rows.length, 3, `one row per member:\n${r.stdout}`);
    assert.equal(rows.filter((c) => /leader/.test(c[3] ?? '')).length, 1, r.stdout);
    for (const c of rows) {
      const applied = Number(c[4]);
      const during = Number(c[5]);
      assert.ok(applied > 0 && during >= 0 && during <= applied, `a row: ${c.join(' | ')}`);
    }
    assert.deepEqual(pidsMentioning(tmp), [], 'members left running');
    assert.deepEqual(readdirSync(tmp), [], 'left under TMPDIR');
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
