import assert from 'node:assert/strict';
import { test } from 'node:test';
import { niceTicks, renderChart } from '../../bench/eval/chart.js';
import { EvalError } from '../../bench/eval/errors.js';
import { percentile, summarize } from '../../bench/eval/failover.js';
import { maxBucketMs } from '../../bench/eval/overload.js';
import { parseScenarios } from '../../bench/eval/plan.js';
import { areaOf, summariseProfile } from '../../bench/eval/profile.js';
import { delta, parsePrometheus, sumBy } from '../../bench/eval/prom.js';
import { getOp, putOp, randomValueB64 } from '../../bench/eval/protocol.js';
import { cdf } from '../../bench/eval/report.js';

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
      res.statusCode = n++ % 4 === 3 ? 503 : 200;
      res.end('{}');
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
