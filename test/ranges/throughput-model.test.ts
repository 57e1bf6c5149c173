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
