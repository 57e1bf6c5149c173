import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  cpuBoundWritesPerSec,
  cpuMsBetween,
  fitLeaderFollower,
  parseProcIo,
  parseProcStat,
  quantile,
  rangeKey,
  rangePrefix,
  roundRobinReplicas,
  sharedMachineWritesPerSec,
  splitKeys,
  spreadLeaders,
  type RangeLeadership,
} from '../../bench/ranges/throughput-model.js';

void test('reads utime and stime from /proc/<pid>/stat, even when the command name holds spaces and parentheses', () => {
  // Fields 3.. after the name: state ppid pgrp session tty tpgid flags minflt cminflt majflt
  // cmajflt utime stime …
  const line = '4242 (node (a) b) S 1 4242 4242 0 -1 4194304 900 0 3 0 1234 567 0 0 20 0 11 0\n';
  assert.deepEqual(parseProcStat(line), { userTicks: 1234, systemTicks: 567 });
  assert.throws(() => parseProcStat('no parenthesis here'), /not a \/proc\/<pid>\/stat line/);
  assert.throws(() => parseProcStat('1 (x) S 1 2'), /no utime\/stime/);
});

void test(
  "reads this process's own /proc stat where there is one",
  { skip: process.platform !== 'linux' },
  async () => {
    const { readFileSync } = await import('node:fs');
    const cpu = parseProcStat(readFileSync('/proc/self/stat', 'utf8'));
    // The kernel's figure in ticks of 10 ms against Node's own in µs: the same time.
    const node = process.cpuUsage();
    const kernelMs = (cpu.userTicks + cpu.systemTicks) * 10;
    const nodeMs = (node.user + node.system) / 1000;
    assert.ok(
      Math.abs(kernelMs - nodeMs) < 50 + nodeMs * 0.05,
      `kernel ${kernelMs} ms, node ${nodeMs} ms`,
    );
  },
);

void test('CPU milliseconds between two readings count user and system ticks', () => {
  const a = { userTicks: 100, systemTicks: 50 };
  const b = { userTicks: 130, systemTicks: 70 };
  assert.equal(cpuMsBetween(a, b, 100), 500);
  assert.equal(cpuMsBetween(a, b, 1000), 50);
});

void test('reads write_bytes and syscw from /proc/<pid>/io', () => {
  const text = [
    'rchar: 1000',
    'wchar: 2000',
    'syscr: 10',
    'syscw: 20',
    'read_bytes: 4096',
    'write_bytes: 8192',
    'cancelled_write_bytes: 0',
  ].join('\n');
  assert.deepEqual(parseProcIo(text), { writeBytes: 8192, syscw: 20 });
  // "cancelled_write_bytes" must not be taken for "write_bytes".
  assert.throws(() => parseProcIo('syscw: 1\ncancelled_write_bytes: 5\n'), /no write_bytes/);
});

void test("every range's keys fall inside that range of the split layout", () => {
  assert.deepEqual(splitKeys(1), []);
  assert.deepEqual(splitKeys(4), ['r001', 'r002', 'r003']);
  const ranges = 64;
  const bounds = ['', ...splitKeys(ranges)];
  for (let i = 0; i < ranges; i++)
    for (const [w, n] of [
      [0, 0],
      [255, 63],
      [17, 9],
    ] as const) {
      const key = rangeKey(i, w, n);
      // The range holding a key is the last whose start is ≤ the key.
      const holder = bounds.filter((s) => s <= key).length - 1;
      assert.equal(holder, i, `${key} falls in range ${holder}, not ${i}`);
    }
  assert.equal(rangePrefix(7), 'r007');
  assert.throws(() => splitKeys(0), /ranges must be 1\.\.999/);
});

void test('round-robin replicas give every node an equal share (to within one), each range distinct nodes', () => {
  const nodes = 5;
  const count = new Map<number, number>();
  for (let k = 0; k < 63; k++) {
    const r = roundRobinReplicas(k, nodes, 3);
    assert.equal(new Set(r).size, 3);
    assert.ok(r.every((id) => id >= 1 && id <= nodes));
    for (const id of r) count.set(id, (count.get(id) ?? 0) + 1);
  }
  const shares = [...count.values()];
  assert.equal(shares.length, nodes);
  assert.ok(Math.max(...shares) - Math.min(...shares) <= 1, `shares ${shares.join('/')}`);
  assert.deepEqual(roundRobinReplicas(4, 3, 3), [1, 2, 3]);
  assert.deepEqual(roundRobinReplicas(0, 5, 3), [1, 2, 3]);
  assert.deepEqual(roundRobinReplicas(1, 5, 3), [1, 4, 5]);
});

void test('the leader and follower costs are recovered from the nodes’ CPU per write', () => {
  const L = 1.2;
  const F = 0.4;
  const ranges = 16;
  const shares = [
    { leaders: 10, replicas: 16 },
    { leaders: 4, replicas: 16 },
    { leaders: 2, replicas: 16 },
  ];
  const cpu = shares.map((s) => (L * s.leaders + F * (s.replicas - s.leaders)) / ranges);
  const fit = fitLeaderFollower(cpu, shares, ranges);
  assert.ok(fit !== null);
  assert.ok(
    Math.abs(fit.leaderMs - L) < 1e-9 && Math.abs(fit.followerMs - F) < 1e-9,
    JSON.stringify(fit),
  );
  // One range on three nodes: the leader's CPU is L, each follower's F.
  const one = fitLeaderFollower(
    [1.0, 0.3, 0.35],
    [
      { leaders: 1, replicas: 1 },
      { leaders: 0, replicas: 1 },
      { leaders: 0, replicas: 1 },
    ],
    1,
  );
  assert.ok(
    one !== null && Math.abs(one.leaderMs - 1.0) < 1e-9 && Math.abs(one.followerMs - 0.325) < 1e-9,
  );
  // Nodes that all carry the same share cannot tell L from F.
  assert.equal(
    fitLeaderFollower(
      [0.5, 0.5],
      [
        { leaders: 2, replicas: 4 },
        { leaders: 2, replicas: 4 },
      ],
      4,
    ),
    null,
  );
});

void test('on machines of their own, CPU-bound throughput grows with nodes once ranges outnumber them', () => {
  const cost = { leaderMs: 1, followerMs: 0.5, replicas: 3, coresPerNode: 1 };
  // L + 2F = 2 ms of CPU per write spread over N cores.
  assert.equal(cpuBoundWritesPerSec({ ...cost, nodes: 3, ranges: 64 }), 1500);
  assert.equal(cpuBoundWritesPerSec({ ...cost, nodes: 6, ranges: 64 }), 3000);
  assert.equal(cpuBoundWritesPerSec({ ...cost, nodes: 12, ranges: 64 }), 6000);
  // One range: its leader's L bounds it, however many nodes.
  assert.equal(cpuBoundWritesPerSec({ ...cost, nodes: 3, ranges: 1 }), 1000);
  assert.equal(cpuBoundWritesPerSec({ ...cost, nodes: 9, ranges: 1 }), 1000);
  // Four ranges on nine nodes: four leaders carry L/4 each.
  assert.equal(cpuBoundWritesPerSec({ ...cost, nodes: 9, ranges: 4 }), 4000);
  assert.throws(
    () => cpuBoundWritesPerSec({ ...cost, leaderMs: 0, nodes: 3, ranges: 1 }),
    /positive/,
  );
});

void test('on one shared machine the cores bound throughput whatever the number of nodes', () => {
  assert.equal(
    sharedMachineWritesPerSec({ cores: 2, clusterCpuMsPerWrite: 1.5, loadgenCpuMsPerWrite: 0.5 }),
    1000,
  );
  assert.throws(
    () => sharedMachineWritesPerSec({ cores: 2, clusterCpuMsPerWrite: 0, loadgenCpuMsPerWrite: 0 }),
    /positive/,
  );
});

void test('quantiles by nearest rank', () => {
  const xs = Array.from({ length: 100 }, (_, i) => i + 1);
  assert.equal(quantile(xs, 0.5), 50);
  assert.equal(quantile(xs, 0.99), 99);
  assert.equal(quantile(xs, 1), 100);
  assert.equal(quantile([], 0.5), 0);
});

/** Leaders per node of a plan, in the order of `nodes`. */
function leaderCounts(plan: readonly number[], nodes: readonly number[]): number[] {
  return nodes.map((n) => plan.filter((t) => t === n).length);
}

const sumOfSquares = (xs: readonly number[]): number => xs.reduce((a, x) => a + x * x, 0);

/**
 * The checker: every range led by one of its replicas, and the leaders per node spread as
 * evenly as any choice of leaders could (the least sum of squared counts, found by trying
 * every choice; small cases only).
 */
function assertBestSpread(
  ranges: readonly RangeLeadership[],
  nodes: readonly number[],
  plan: readonly number[],
): void {
  assert.equal(plan.length, ranges.length);
  plan.forEach((t, i) =>
    assert.ok(ranges[i]?.replicas.includes(t), `range ${i} led by ${t}, not a replica`),
  );
  let best = Infinity;
  const pick: number[] = [];
  const visit = (i: number): void => {
    if (i === ranges.length) {
      best = Math.min(best, sumOfSquares(leaderCounts(pick, nodes)));
      return;
    }
    for (const r of ranges[i]?.replicas ?? []) {
      pick.push(r);
      visit(i + 1);
      pick.pop();
    }
  };
  visit(0);
  assert.equal(
    sumOfSquares(leaderCounts(plan, nodes)),
    best,
    `leaders per node ${leaderCounts(plan, nodes).join('/')} are not as even as the replicas allow (least sum of squares ${best})`,
  );
}

/** A planted planner: one hand-over at a time, as the placement loop makes them. */
function singleHandOvers(ranges: readonly RangeLeadership[], nodes: readonly number[]): number[] {
  const plan = ranges.map((r) => r.leader);
  for (let step = 0; step < 1_000; step++) {
    const counts = leaderCounts(plan, nodes);
    const i = plan.findIndex((t, k) =>
      (ranges[k]?.replicas ?? []).some(
        (w) => (counts[nodes.indexOf(w)] ?? 0) <= (counts[nodes.indexOf(t)] ?? 0) - 2,
      ),
    );
    if (i < 0) return plan;
    const from = counts[nodes.indexOf(plan[i] as number)] ?? 0;
    plan[i] = (ranges[i]?.replicas ?? []).find(
      (w) => (counts[nodes.indexOf(w)] ?? 0) <= from - 2,
    ) as number;
  }
  return plan;
}

void test('leaders are spread as evenly as the replicas allow, through chains of hand-overs where one is not enough', () => {
  const nodes = [1, 2, 3];
  // Node 1 leads two ranges that node 3 does not hold: only 1 -> 2 together with 2 -> 3 helps.
  const stuck: RangeLeadership[] = [
    { replicas: [1, 2], leader: 1 },
    { replicas: [1, 2], leader: 1 },
    { replicas: [2, 3], leader: 2 },
  ];
  const plan = spreadLeaders(stuck, nodes);
  assert.deepEqual(leaderCounts(plan, nodes), [1, 1, 1]);
  assertBestSpread(stuck, nodes, plan);
  // The checker catches planners that stop short: leaving the leaders, or single hand-overs.
  assert.throws(
    () => assertBestSpread(stuck, nodes, singleHandOvers(stuck, nodes)),
    /not as even as the replicas allow/,
  );
  assert.throws(
    () =>
      assertBestSpread(
        stuck,
        nodes,
        stuck.map((r) => r.leader),
      ),
    /not as even/,
  );
  // A replica set that forces an uneven spread: node 1 holds both ranges alone.
  const forced: RangeLeadership[] = [
    { replicas: [1], leader: 1 },
    { replicas: [1], leader: 1 },
  ];
  assert.deepEqual(spreadLeaders(forced, nodes), [1, 1]);
  assertBestSpread(forced, nodes, spreadLeaders(forced, nodes));
});

void test('leader spreading matches the best choice on random small cases, and moves nothing already even', () => {
  let seed = 12345;
  const next = (n: number): number => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed % n;
  };
  for (let c = 0; c < 300; c++) {
    const nodes = Array.from({ length: 2 + next(4) }, (_, i) => i + 1);
    const ranges: RangeLeadership[] = Array.from({ length: 1 + next(7) }, () => {
      const replicas = nodes.filter(() => next(2) === 0);
      if (replicas.length === 0) replicas.push(nodes[next(nodes.length)] as number);
      // Now and then a stale leader that holds no replica.
      const leader = next(5) === 0 ? 99 : (replicas[next(replicas.length)] as number);
      return { replicas, leader };
    });
    const plan = spreadLeaders(ranges, nodes);
    assertBestSpread(ranges, nodes, plan);
    // A plan already as even as possible is kept as it is: no needless transfer.
    assert.deepEqual(
      spreadLeaders(
        ranges.map((r, i) => ({ replicas: r.replicas, leader: plan[i] as number })),
        nodes,
      ),
      plan,
    );
  }
});

void test("the benchmark's layouts get leaders per node that differ by at most one", () => {
  for (const [n, r] of [
    [3, 16],
    [3, 64],
    [5, 4],
    [5, 16],
    [5, 64],
  ] as const) {
    const nodes = Array.from({ length: n }, (_, i) => i + 1);
    // Range 0 on every node, the others on 3 round-robin; every leader on node 1 to start.
    const ranges: RangeLeadership[] = Array.from({ length: r }, (_, i) => ({
      replicas: i === 0 ? nodes : roundRobinReplicas(i - 1, n, 3),
      leader: i === 0 ? 1 : (roundRobinReplicas(i - 1, n, 3)[0] as number),
    }));
    const counts = leaderCounts(spreadLeaders(ranges, nodes), nodes);
    assert.ok(
      Math.max(...counts) - Math.min(...counts) <= 1,
      `${n} nodes, ${r} ranges: ${counts.join('/')}`,
    );
  }
  assert.throws(() => spreadLeaders([{ replicas: [4], leader: 4 }], [1, 2, 3]), /node 4/);
  assert.throws(() => spreadLeaders([{ replicas: [], leader: 1 }], [1]), /no replicas/);
  assert.throws(() => spreadLeaders([], [1, 1]), /twice/);
});
