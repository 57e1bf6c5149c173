// The queue scenario of `flotilla bench`: its load halves against an in-memory queue (with
// planted faults the tally must catch), the summary, the redis settings, and a short smoke run
// of the real thing (a 3-member Flotilla cluster; BullMQ too when redis-server is installed).

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { quickPlan } from '../../bench/eval/plan.js';
import { ProcessGroup } from '../../bench/eval/procs.js';
import {
  ADD_FAILED,
  consume,
  nowUs,
  produce,
  tallyJobs,
  type JobData,
  type LoadConfig,
  type QueueDriver,
} from '../../bench/eval/queue-load.js';
import {
  queueMarkdown,
  queueRoundsMarkdown,
  summariseQueue,
} from '../../bench/eval/queue-report.js';
import { median } from '../../bench/stats.js';
import { serverFigures } from '../../bench/eval/queue-bench.js';
import { runQueueScenario, type QueueResults } from '../../bench/eval/queue-run.js';
import { redisArgs, redisVersion } from '../../bench/eval/redis.js';

void test('the tally finds a job lost, a job run twice, and leaves out adds that failed', () => {
  const marks = new Uint8Array([1, 1, 0, 2, ADD_FAILED, 1]);
  assert.deepEqual(tallyJobs(marks, 6), {
    added: 6,
    addFailed: 1,
    completed: 4,
    missing: 1,
    duplicates: 1,
  });
  assert.deepEqual(tallyJobs(new Uint8Array([1, 1, 1]), 3), {
    added: 3,
    addFailed: 0,
    completed: 3,
    missing: 0,
    duplicates: 0,
  });
});

type Fault = 'none' | 'lose' | 'twice';

/** A queue in memory: jobs wait in an array and workers take them on a timer tick. */
function memoryDriver(
  fault: Fault,
  stats: { maxOutstanding: number; added: number },
): QueueDriver & { drained(): boolean } {
  const waiting: JobData[] = [];
  let completed = 0;
  let timer: NodeJS.Timeout | undefined;
  const d: QueueDriver & { drained(): boolean } = {
    /** Nothing queued: every job the workers will ever report has been reported. */
    drained: () => waiting.length === 0,
    add(data) {
      stats.added++;
      stats.maxOutstanding = Math.max(stats.maxOutstanding, stats.added - completed);
      // The planted loss: every 7th job is acknowledged and never queued.
      if (!(fault === 'lose' && data.n % 7 === 3)) waiting.push(data);
      return new Promise((r) => setImmediate(r));
    },
    startWorkers(concurrency, done) {
      timer = setInterval(() => {
        for (const job of waiting.splice(0, concurrency)) {
          completed++;
          done(job);
          // The planted repeat: every 5th job is reported complete twice.
          if (fault === 'twice' && job.n % 5 === 0) done(job);
        }
      }, 1);
    },
    close() {
      clearInterval(timer);
      return Promise.resolve();
    },
  };
  return d;
}

async function runMemory(fault: Fault) {
  const stats = { maxOutstanding: 0, added: 0 };
  const d = memoryDriver(fault, stats);
  const from = nowUs() + 50_000;
  const c: LoadConfig = {
    system: 'flotilla',
    endpoints: [],
    redisPort: 0,
    queue: 'q',
    workers: 4,
    adders: 4,
    window: 8,
    payloadBytes: 16,
    measureFromUs: from,
    endUs: from + 300_000,
    ctl: new SharedArrayBuffer(8),
    marks: new SharedArrayBuffer(1 << 16),
  };
  const stop = consume(c, d);
  const produced = await produce(c, d);
  // Let the last jobs through the 1 ms worker tick: wait (bounded) until none is queued.
  const deadline = Date.now() + 5_000;
  while (!d.drained()) {
    if (Date.now() > deadline) assert.fail('the in-memory workers did not drain the queue');
    await new Promise((r) => setTimeout(r, 1));
  }
  const consumed = await stop();
  const added = new Int32Array(c.ctl)[0] as number;
  return { produced, consumed, stats, tally: tallyJobs(new Uint8Array(c.marks), added) };
}

void test('the load halves keep the window, time every job and find planted faults', async () => {
  const sound = await runMemory('none');
  assert.equal(sound.tally.missing, 0);
  assert.equal(sound.tally.duplicates, 0);
  assert.ok(sound.tally.completed > 50, `only ${sound.tally.completed} jobs went through`);
  assert.ok(sound.stats.maxOutstanding <= 8, `outstanding reached ${sound.stats.maxOutstanding}`);
  assert.ok(sound.consumed.completedInWindow > 0);
  assert.ok(sound.consumed.endToEndMs.p50 > 0);
  assert.ok(sound.consumed.endToEndMs.p50 <= sound.consumed.endToEndMs.p99);
  assert.equal(sound.produced.addErrors, 0);

  const lost = await runMemory('lose');
  assert.ok(lost.tally.missing > 0, 'a lost job went unnoticed');
  const twice = await runMemory('twice');
  assert.ok(twice.tally.duplicates > 0, 'a job completed twice went unnoticed');
});

void test('redis runs with appendfsync always, or with nothing changed from its defaults', () => {
  const a = redisArgs(6399, '/tmp/x', 'always');
  assert.deepEqual(a.slice(-4), ['--appendonly', 'yes', '--appendfsync', 'always']);
  const d = redisArgs(6399, '/tmp/x', 'default');
  assert.ok(!d.some((x) => x.startsWith('--append') || x === '--save'), d.join(' '));
  assert.deepEqual(d.slice(0, 4), ['--port', '6399', '--bind', '127.0.0.1']);
});

void test('the summary takes the median over rounds and the ratio to BullMQ always', () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  const point = (system: 'flotilla' | 'bullmq-always', round: number, jobsPerSec: number) => ({
    system,
    workers: 8,
    round,
    elections: system === 'flotilla' ? 0 : null,
    adders: 8,
    window: 16,
    payloadBytes: 64,
    durationMs: 1000,
    jobsPerSec,
    completedInWindow: jobsPerSec,
    endToEndMs: { p50: 1, p90: 2, p99: round * 10, max: 50, mean: 1 },
    addMs: { p50: 1, p90: 1, p99: 1, max: 1, mean: 1 },
    addErrors: 0,
    firstAddError: null,
    tally: { added: 1, addFailed: 0, completed: 1, missing: 0, duplicates: 0 },
    loadGenerator: { producer: 0.1, consumer: 0.1 },
    serverCores: 0.5,
    ...(system === 'flotilla'
      ? { rounds: { leaderWritesPerSec: jobsPerSec / 2, jobsPerWrite: 2 + round } }
      : {}),
    loadAverage: [1, 1, 1],
  });
  const q: QueueResults = {
    points: [point('flotilla', 1, 300), point('bullmq-always', 1, 100), point('flotilla', 2, 500)],
    skipped: [],
    redis: null,
    bullmq: null,
  };
  const rows = summariseQueue(q);
  const f = rows.find((r) => r.system === 'flotilla');
  assert.equal(f?.jobsPerSec, 400);
  assert.deepEqual(f?.jobsPerSecByRound, [300, 500]);
  assert.equal(f?.p99Ms, 15);
  assert.match(queueMarkdown(q), /\| 8 +\| 400 \(300 \/ 500\) +\| 100 \(100\) +\| – +\| 4\.00× /);
  // The write rounds: medians of Flotilla's (150 and 250 writes/s; 3 and 4 jobs each), none
  // for Redis; CPU per job and per write from the median cores (0.5).
  assert.equal(f?.leaderWritesPerSec, 200);
  assert.equal(f?.jobsPerWrite, 3.5);
  assert.equal(rows.find((r) => r.system === 'bullmq-always')?.leaderWritesPerSec, null);
  assert.match(queueRoundsMarkdown(q), /\| 8 +\| 200 +\| 3\.5 +\| 0\.5 +\| 1,250 +\| 2,500 +\|/);
  // Without rounds recorded (Redis, or Flotilla in an older results file): no table.
  const { rounds: _dropped, ...older } = point('flotilla', 1, 300);
  assert.equal(
    queueRoundsMarkdown({ ...q, points: [q.points[1] as (typeof q.points)[number], older] }),
    '',
  );
});

void test("a point's server figures are rates over the time between its two readings", () => {
  const from = { atMs: 1_000, cpu: 10, switches: 100, writes: 50 };
  const to = { atMs: 3_000, cpu: 12, switches: 700, writes: 450 };
  // 2 s apart: 2 CPU seconds are 1 core; 400 writes 200 a second, 1,600 jobs 4 per write.
  assert.deepEqual(serverFigures(from, to, 1_600), {
    serverCores: 1,
    rounds: { leaderWritesPerSec: 200, jobsPerWrite: 4 },
    serverContextSwitchesPerSec: 300,
  });
  // A reading stretched past the window is a longer time, not a larger rate.
  assert.equal(serverFigures(from, { ...to, atMs: 5_000 }, 1_600).serverCores, 0.5);
  // Writes unknown (Redis) or none: no rounds; switches unread or gone backwards: none.
  assert.deepEqual(serverFigures({ ...from, writes: null }, to, 1_600), {
    serverCores: 1,
    serverContextSwitchesPerSec: 300,
  });
  assert.equal(serverFigures(from, { ...to, writes: 50 }, 1_600).rounds, undefined);
  assert.equal(
    serverFigures(from, { ...to, switches: 50 }, 1_600).serverContextSwitchesPerSec,
    undefined,
  );
  assert.equal(
    serverFigures({ ...from, switches: null }, to, 1_600).serverContextSwitchesPerSec,
    undefined,
  );
  // No reading at the window's start: nothing measured.
  assert.deepEqual(serverFigures(undefined, to, 1_600), { serverCores: 0 });
});

void test('smoke: a short queue run completes every job once on each system it can start', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-queue-smoke-'));
  const procs = new ProcessGroup();
  const lines: string[] = [];
  try {
    const r = await runQueueScenario({
      plan: {
        ...quickPlan,
        warmupMs: 300,
        queueMs: 2_000,
        queueWorkers: [1, 4],
        queueRounds: 1,
        queueWarmupMs: 500,
      },
      systems: ['flotilla', 'bullmq-always', 'bullmq-default'],
      dir,
      procs,
      progress: {
        tick: () => undefined,
        done: (l, s) => lines.push(`${l}: ${s}`),
        line: (s) => lines.push(s),
      },
    });
    const expected =
      redisVersion() === null ? ['flotilla'] : ['flotilla', 'bullmq-always', 'bullmq-default'];
    if (redisVersion() === null)
      assert.ok(
        r.skipped.some((s) => /no redis-server/.test(s)),
        r.skipped.join('; '),
      );
    assert.deepEqual([...new Set(r.points.map((p) => p.system))], expected, lines.join('\n'));
    // Each system warmed once, at 4 workers, and the warm-up is no point of the results.
    const warmups = lines.filter((l) => /queue warm-up \(not measured\), 4 workers: /.test(l));
    assert.equal(warmups.length, expected.length, lines.join('\n'));
    assert.equal(r.points.length, expected.length * 2, lines.join('\n'));
    // Correctness is asserted strictly; speed is not (a test must not time the machine): on a
    // loaded machine an election can leave a 2-second point without a completion inside its
    // window, so liveness is asked of the whole point, drain included.
    for (const p of r.points) {
      const what = `${p.system} ${p.workers} workers: ${JSON.stringify(p.tally)}; ${lines.join(' | ')}`;
      assert.ok(p.tally.completed > 0, what);
      assert.equal(p.tally.missing, 0, what);
      assert.equal(p.tally.duplicates, 0, what);
      if (p.completedInWindow > 0)
        assert.ok(p.endToEndMs.p50 > 0 && p.endToEndMs.p50 <= p.endToEndMs.p99, what);
      // The server's context switches are read from /proc for every system; the leader's
      // writes, from its metrics, for Flotilla only (a job completed in the window was written).
      assert.ok((p.serverContextSwitchesPerSec ?? 0) > 0, what);
      if (p.system !== 'flotilla') assert.equal(p.rounds, undefined, what);
      else if (p.completedInWindow > 0)
        assert.ok(
          (p.rounds?.leaderWritesPerSec ?? 0) > 0 && (p.rounds?.jobsPerWrite ?? 0) > 0,
          `${JSON.stringify(p.rounds)}: ${what}`,
        );
    }
  } finally {
    await procs.stopAll();
    rmSync(dir, { recursive: true, force: true });
  }
});
