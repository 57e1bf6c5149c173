// The trace tools (bench/trace): the queue trace's steps computed from fixed trace points, and
// both tools run on a real cluster and print their tables (short runs; the figures are
// docs/BENCHMARKS.md's business, not a test's), and refuse a bad option.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { promisify } from 'node:util';
import type { TraceEvent } from '../../src/host/trace.js';
import type { Point } from '../../bench/trace/members.js';
import { QUEUE_STEPS, queueRounds } from '../../bench/trace/queue-rounds.js';

const queueTrace = fileURLToPath(new URL('../../bench/trace/queue-trace.js', import.meta.url));
const writeTrace = fileURLToPath(new URL('../../bench/trace/write-trace.js', import.meta.url));

/** Leader 1, followers 2 and 3: one write (index 10) before, then a round of entries 11-12. */
function oneRound(): Point[] {
  const p = (node: number, event: TraceEvent, index: number, t: number, peer = 0): Point => ({
    node,
    event,
    index,
    peer,
    t,
  });
  return [
    p(1, 'proposed', 10, -0.5),
    p(1, 'persist-start', 10, 0),
    p(1, 'persist-end', 10, 10.2),
    p(1, 'wire-received', 0, 9.8),
    p(1, 'proposed', 11, 10),
    p(1, 'append-sent', 11, 10.05, 2),
    p(1, 'append-sent', 11, 10.06, 3),
    p(1, 'proposed', 12, 10.2),
    p(1, 'append-sent', 12, 10.25, 2),
    p(1, 'append-sent', 12, 10.26, 3),
    p(1, 'persist-start', 12, 10.5),
    p(2, 'append-received', 12, 10.45, 1),
    p(2, 'persist-start', 12, 10.5),
    p(2, 'persist-end', 12, 11.2),
    p(3, 'append-received', 12, 10.6, 1),
    p(3, 'persist-start', 12, 10.7),
    p(3, 'persist-end', 12, 11.7),
    p(1, 'ack-received', 12, 11.4, 2),
    p(1, 'persist-end', 12, 11.5),
    p(1, 'committed', 12, 11.52),
    p(1, 'applied', 12, 11.62),
    p(1, 'ack-received', 12, 11.9, 3),
    p(1, 'wire-answered', 0, 11.7),
    p(1, 'wire-received', 0, 12.5),
  ];
}

const expected: Record<(typeof QUEUE_STEPS)[number], number> = {
  'request read -> proposed': 0.2,
  'first proposal -> leader write start': 0.5,
  'leader write': 1.0,
  'first proposal -> append sent': 0.05,
  'append sent -> follower received': 0.2,
  'append received -> follower write start': 0.05,
  'follower write': 0.7,
  'follower write end -> ack received': 0.2,
  'max(ack, leader write end) -> committed': 0.02,
  'committed -> applied': 0.1,
  'applied -> answers written': 0.08,
  'round: first proposal -> answers written': 1.7,
  'answers written -> next request read (client)': 0.8,
};

function assertOneRound(points: readonly Point[]): void {
  const r = queueRounds(points, 1);
  assert.equal(r.rounds, 1);
  assert.equal(r.waited, 1, 'proposed at 10.0 while the write of index 10 ran until 10.2');
  assert.equal(r.leaderLast, 1, "the leader's write ended at 11.5, the first ack came at 11.4");
  assert.deepEqual(r.followersSooner, [], 'the second ack came at 11.9, after the write ended');
  // The write started 0.45 ms after the first append (10.05): begun then, it would have ended
  // at 11.05, and the commit been ready at the first ack, 11.4, not at 11.5.
  assert.equal(r.pipelinedSooner.length, 1);
  assert.ok(Math.abs((r.pipelinedSooner[0] as number) - 0.1) < 1e-9, `${r.pipelinedSooner[0]}`);
  for (const step of QUEUE_STEPS) {
    const xs = r.steps.get(step) ?? [];
    assert.equal(xs.length, 1, `${step}: ${JSON.stringify(xs)}`);
    assert.ok(Math.abs((xs[0] as number) - expected[step]) < 1e-9, `${step}: ${xs[0]}`);
  }
}

void test('queue trace: a round is timed step by step, the first acknowledgement standing for the followers', () => {
  // Shuffled: the analysis orders the points by time itself.
  assertOneRound(oneRound().reverse());
});

void test('queue trace: a write of the hard state alone between two rounds starts none', () => {
  assertOneRound([
    ...oneRound(),
    { node: 1, event: 'persist-start', index: 0, peer: 0, t: 10.3 },
    { node: 1, event: 'persist-end', index: 0, peer: 0, t: 10.4 },
  ]);
});

void test('queue trace: a round proposed after the previous write ended did not wait', () => {
  const points = oneRound().map((p) =>
    p.event === 'persist-end' && p.index === 10 ? { ...p, t: 9.9 } : p,
  );
  const r = queueRounds(points, 1);
  assert.equal(r.rounds, 1);
  assert.equal(r.waited, 0);
  assert.equal(r.leaderLast, 1);
});

void test("queue trace: a round whose acknowledgement came after the leader's write is not counted as the leader's", () => {
  const points = oneRound().map((p) =>
    p.event === 'ack-received' && p.peer === 2 ? { ...p, t: 11.6 } : p,
  );
  const r = queueRounds(points, 1);
  assert.equal(r.rounds, 1);
  assert.equal(r.leaderLast, 0);
  assert.deepEqual(r.pipelinedSooner, [0], 'the commit waited for the ack, not the write');
});

void test("queue trace: a leader write started with the round's appends saves what it waited, up to the first acknowledgement", () => {
  const early = oneRound().map((p) =>
    p.event === 'ack-received' && p.peer === 2 ? { ...p, t: 11.0 } : p,
  );
  const r = queueRounds(early, 1);
  assert.ok(Math.abs((r.pipelinedSooner[0] as number) - 0.45) < 1e-9, `${r.pipelinedSooner[0]}`);
  const started = oneRound().map((p) =>
    p.event === 'persist-start' && p.index === 12 ? { ...p, t: 10.05 } : p,
  );
  assert.deepEqual(queueRounds(started, 1).pipelinedSooner, [0], 'it did not wait');
});

void test("queue trace: a second acknowledgement before the leader's write ended is how much sooner the followers alone could commit", () => {
  const points = oneRound().map((p) =>
    p.event === 'ack-received' && p.peer === 3 ? { ...p, t: 11.45 } : p,
  );
  const r = queueRounds(points, 1);
  assert.equal(r.rounds, 1);
  assert.equal(r.followersSooner.length, 1);
  assert.ok(Math.abs((r.followersSooner[0] as number) - 0.05) < 1e-9, `${r.followersSooner[0]}`);
});

void test('queue trace: one worker for a few seconds prints every step of its rounds', async () => {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [queueTrace, '--workers', '1', '--seconds', '1', '--warmup-seconds', '1'],
    { timeout: 180_000 },
  );
  const head =
    /^1 worker\(s\), queue group leader \d, one process per member: (\d+) rounds \(\d+ leader writes\/s\); \d+ \(\d+ %\) began while/m.exec(
      stdout,
    );
  assert.ok(head !== null, `unexpected output: ${stdout}`);
  assert.ok(Number(head[1]) > 10, stdout);
  assert.match(
    stdout,
    /^the leader's own write ended after the first acknowledgement in \d+ \(\d+ %\) of the rounds$/m,
  );
  assert.match(
    stdout,
    /^both followers' acknowledgements came before the leader's write ended in \d+ \(\d+ %\) of the rounds, by p50 ([\d.]+|-) ms \(p90 ([\d.]+|-) ms\) among them$/m,
  );
  for (const step of QUEUE_STEPS) {
    const row = new RegExp(
      `^\\| ${step.replace(/[()]/g, '\\$&')} +\\| +([\\d.]+) \\| +[\\d.]+ \\| +(\\d+) \\|$`,
      'm',
    ).exec(stdout);
    assert.ok(row !== null && Number(row[2]) > 0, `${step} missing or empty:\n${stdout}`);
  }
});

void test('queue trace: a bad option is refused, naming it', async () => {
  await assert.rejects(
    promisify(execFile)(process.execPath, [queueTrace, '--workers', '0'], { timeout: 30_000 }),
    (err: Error & { stderr?: string; code?: number }) =>
      /--workers must be an integer from 1 to 256/.test(err.stderr ?? '') && err.code === 2,
  );
});

void test('write trace: a few writes, each member in a process of its own, print their steps and CPU', async () => {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [writeTrace, '--processes', '--writes', '30', '--warmup', '5', '--cpu-writes', '64'],
    { timeout: 120_000 },
  );
  assert.match(
    stdout,
    /^30 sequential writes of 100-byte values, 1 client, leader \d, one process per node$/m,
  );
  assert.match(stdout, /^\| follower persist \(fsync\) +\| +[\d.]+ \| +[\d.]+ \| +30 \|$/m);
  assert.match(stdout, /^CPU per write at 64 client\(s\): \d+ us/m);
});
