// The queue machine by property, over random command sequences on two queues and a handful of
// job ids, with leases, backoffs, windows and retention short enough that every timed path
// runs: replicas that split the log into batches differently agree on every result and on the
// whole state; a snapshot taken at a random point, with commands applied while it is still
// being read, restores to a machine that then agrees with the original; and the invariants
// hold after every command. Two planted bugs show the comparisons can fail.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import type { QueueLimits } from '../../src/base/limits.js';
import type { Command } from '../../src/host/contracts.js';
import { jobStates, QueueStateMachine, type QueueCommandAny } from '../../src/queue/index.js';
import type { Job } from '../../src/queue/jobs.js';

const limits: Partial<QueueLimits> = {
  maxEvents: 25,
  maxPageSize: 25,
  dedupWindowMs: 400,
  maxJobs: 30,
  maxRepeatables: 3,
};

const queues = ['q1', 'q2'];
const ids = ['a', 'b', 'c', '#1', '#2', '#3', '#5', '#8'];

/** A command whose token is a reference to an earlier command, resolved when built. */
type Step = { cmd: QueueCommandAny; tokenOf?: number; dtMs: number };

const queue = fc.constantFrom(...queues);
const id = fc.constantFrom(...ids);
const lease = fc.constantFrom(50, 200, 1_000);
const backoff = fc.oneof(
  fc.constant(undefined),
  fc.record({
    kind: fc.constantFrom('fixed' as const, 'exponential' as const),
    delayMs: fc.constantFrom(0, 30, 100),
    maxDelayMs: fc.constant(250),
  }),
);

const command: fc.Arbitrary<Omit<Step, 'dtMs'>> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc
      .record({
        queue,
        id: fc.option(fc.constantFrom('a', 'b', 'c'), { nil: undefined }),
        priority: fc.constantFrom(0, 1, 2),
        delayMs: fc.constantFrom(0, 0, 120),
        maxAttempts: fc.constantFrom(1, 2, 3),
        leaseMs: lease,
        backoff,
      })
      .map((r) => ({
        cmd: {
          op: 'add' as const,
          name: 'n',
          payload: new Uint8Array([r.priority]),
          queue: r.queue,
          priority: r.priority,
          delayMs: r.delayMs,
          maxAttempts: r.maxAttempts,
          leaseMs: r.leaseMs,
          ...(r.id !== undefined && { id: r.id }),
          ...(r.backoff !== undefined && { backoff: r.backoff }),
        },
      })),
  },
  {
    weight: 6,
    arbitrary: fc
      .record({ queue, max: fc.constantFrom(1, 2), leaseMs: fc.option(lease, { nil: undefined }) })
      .map(({ leaseMs, ...r }) => ({
        cmd: { op: 'claim' as const, ...r, ...(leaseMs !== undefined && { leaseMs }) },
      })),
  },
  {
    weight: 6,
    arbitrary: fc
      .record({
        queue,
        id,
        ref: fc.nat(50),
        op: fc.constantFrom(
          'complete',
          'fail',
          'heartbeat',
          'progress',
          'fail-final',
          'release',
          'release-counted',
        ),
      })
      .map(({ queue: q, id: i, ref, op }) => {
        const base = { queue: q, id: i, token: 1 };
        const cmd: QueueCommandAny =
          op === 'complete'
            ? { op, ...base, result: new Uint8Array([1]) }
            : op === 'release' || op === 'release-counted'
              ? {
                  op: 'fail',
                  ...base,
                  error: 'r',
                  release: true,
                  ...(op === 'release-counted' && { counted: true }),
                }
              : op === 'fail' || op === 'fail-final'
                ? { op: 'fail', ...base, error: 'e', ...(op === 'fail-final' && { final: true }) }
                : op === 'heartbeat'
                  ? { op, ...base }
                  : { op, ...base, progress: 50 };
        return { cmd, tokenOf: ref };
      }),
  },
  {
    weight: 2,
    arbitrary: fc
      .record({
        queue,
        id,
        op: fc.constantFrom('cancel' as const, 'delete' as const, 'retry' as const),
      })
      .map((cmd) => ({ cmd })),
  },
  {
    weight: 1,
    arbitrary: fc
      .record({ queue, op: fc.constantFrom('pause' as const, 'resume' as const) })
      .map((cmd) => ({ cmd })),
  },
  {
    weight: 1,
    arbitrary: fc
      .record({
        queue,
        rateLimit: fc.option(
          fc.record({ max: fc.constantFrom(1, 3), intervalMs: fc.constantFrom(100, 500) }),
          { nil: null },
        ),
        concurrency: fc.option(fc.constantFrom(1, 2), { nil: null }),
        keepCompleted: fc.record({
          count: fc.constantFrom(0, 2, 5),
          ageMs: fc.constantFrom(0, 300),
        }),
        keepDead: fc.record({ count: fc.constantFrom(1, 5), ageMs: fc.constantFrom(0, 300) }),
        maxReleases: fc.constantFrom(0, 1, 3),
      })
      .map((r) => ({ cmd: { op: 'configure' as const, ...r } })),
  },
  {
    weight: 1,
    arbitrary: fc
      .record({
        queue,
        repeatId: fc.constantFrom('r1', 'r2'),
        sched: fc.oneof(
          fc.constantFrom(150, 400).map((everyMs) => ({ everyMs })),
          fc.constant({ cron: '* * * * *' }),
        ),
      })
      .map(({ queue: q, repeatId, sched }) => ({
        cmd: {
          op: 'repeat' as const,
          queue: q,
          repeatId,
          name: 'rep',
          payload: new Uint8Array(0),
          ...sched,
        },
      })),
  },
  {
    weight: 1,
    arbitrary: fc
      .record({ queue, repeatId: fc.constantFrom('r1', 'r2') })
      .map((r) => ({ cmd: { op: 'unrepeat' as const, ...r } })),
  },
  { weight: 2, arbitrary: fc.constant({ cmd: { op: 'tick' as const } }) },
);

// Mostly small steps; sometimes a jump (a gap with no commands) or a clock behind the last one.
const dt = fc.oneof(
  { weight: 8, arbitrary: fc.integer({ min: 0, max: 80 }) },
  { weight: 1, arbitrary: fc.integer({ min: 500, max: 130_000 }) },
  { weight: 1, arbitrary: fc.integer({ min: -300, max: -1 }) },
);

const steps = fc.array(fc.record({ step: command, dtMs: dt }), {
  minLength: 1,
  maxLength: 150,
  size: 'max',
});

/**
 * The log. A worker's report or a command about a job names a live job most of the time: the
 * log is built by applying it to a scratch machine, and such a command picks one of the jobs
 * that machine holds at that point (active ones for reports, with their live token); otherwise
 * it keeps its random id and a token of an earlier claim, likely stale.
 */
function build(raw: { step: Omit<Step, 'dtMs'>; dtMs: number }[]): Command[] {
  const scratch = new QueueStateMachine(limits);
  const claims: number[] = [];
  let t = 1_767_225_600_000; // 2026-01-01, so cron patterns run on a real calendar
  return raw.map(({ step, dtMs }, i) => {
    t += dtMs;
    const index = i + 1;
    let cmd = step.cmd;
    if (cmd.op === 'claim') claims.push(index);
    const ref = step.tokenOf;
    if (ref !== undefined && 'token' in cmd) {
      const active = queues.flatMap((q) => scratch.list(q, 'active', { limit: 100 }).jobs);
      const live = active[ref % Math.max(active.length, 1)];
      cmd =
        live !== undefined && ref % 5 !== 4
          ? { ...cmd, queue: live.queue, id: live.id, token: live.token }
          : { ...cmd, token: claims[ref % Math.max(claims.length, 1)] ?? 1 };
    } else if (ref !== undefined && 'id' in cmd) {
      const all = queues.flatMap((q) =>
        jobStates.flatMap((s) => scratch.list(q, s, { limit: 100 }).jobs),
      );
      const pick = all[ref % Math.max(all.length, 1)];
      if (pick !== undefined && ref % 5 !== 4) cmd = { ...cmd, queue: pick.queue, id: pick.id };
    }
    const c = { index, term: 1, timeMs: Math.max(t, 0), payload: QueueStateMachine.encode(cmd) };
    scratch.apply([c]);
    return c;
  });
}

function applyChecked(m: QueueStateMachine, log: readonly Command[]): unknown[] {
  return log.map((c) => {
    const r = m.apply([c])[0];
    const problems = m.checkInvariants();
    assert.deepEqual(problems, [], `invariants after entry ${c.index}`);
    return r;
  });
}

/** Applies in random batches: replicas cut the log differently. */
function applyBatched(
  m: QueueStateMachine,
  log: readonly Command[],
  cuts: readonly number[],
): unknown[] {
  const out: unknown[] = [];
  let i = 0;
  for (const n of cuts) {
    if (i >= log.length) break;
    out.push(...m.apply(log.slice(i, i + n)));
    i += n;
  }
  out.push(...m.apply(log.slice(i)));
  return out;
}

async function drain(stream: AsyncIterable<Uint8Array>): Promise<Uint8Array[]> {
  const chunks: Uint8Array[] = [];
  for await (const c of stream) chunks.push(c);
  return chunks;
}

async function* replay(chunks: readonly Uint8Array[]): AsyncIterable<Uint8Array> {
  for (const c of chunks) yield await Promise.resolve(c);
}

const batchCuts = fc.array(fc.integer({ min: 1, max: 10 }), { maxLength: 40 });

void test('replicas applying the same log agree on every result and the whole state', () => {
  fc.assert(
    fc.property(steps, batchCuts, (raw, cuts) => {
      const log = build(raw);
      const a = new QueueStateMachine(limits);
      const b = new QueueStateMachine(limits);
      const ra = applyChecked(a, log);
      const rb = applyBatched(b, log, cuts);
      assert.deepStrictEqual(rb, ra);
      assert.deepStrictEqual(b.dump(), a.dump());
    }),
    { numRuns: 300, seed: 7 },
  );
});

/** Snapshot after `k` entries, apply `during` more before reading it, restore, apply the rest. */
async function snapshotAgrees(
  make: () => QueueStateMachine,
  raw: Parameters<typeof build>[0],
  kPick: number,
  duringPick: number,
): Promise<void> {
  const log = build(raw);
  const k = kPick % (log.length + 1);
  const during = Math.min(duringPick, log.length - k);
  const a = make();
  a.apply(log.slice(0, k));
  const stream = a.snapshot();
  const resultsA = a.apply(log.slice(k, k + during));
  const chunks = await drain(stream);
  resultsA.push(...a.apply(log.slice(k + during)));
  const c = new QueueStateMachine(limits);
  await c.restore(replay(chunks));
  const resultsC = applyChecked(c, log.slice(k));
  assert.deepStrictEqual(resultsC, resultsA);
  assert.deepStrictEqual(c.dump(), a.dump());
}

void test('a snapshot at any point, restored, then the rest of the log equals replaying it all', async () => {
  await fc.assert(
    fc.asyncProperty(steps, fc.nat(), fc.nat(20), async (raw, k, during) => {
      await snapshotAgrees(() => new QueueStateMachine(limits), raw, k, during);
    }),
    { numRuns: 200, seed: 11 },
  );
});

void test('planted: a machine that skips copy-on-write leaks later changes into its snapshot', async () => {
  class NoCopyOnWrite extends QueueStateMachine {
    protected override beforeChange(_job: Job): void {}
  }
  const r = await fc.check(
    fc.asyncProperty(steps, fc.nat(), fc.nat(20), async (raw, k, during) => {
      await snapshotAgrees(() => new NoCopyOnWrite(limits), raw, k, during);
    }),
    { numRuns: 200, seed: 11 },
  );
  assert.equal(r.failed, true, 'the snapshot property must catch a missing pre-image');
});

void test('planted: a replica that sees one command at a different time diverges, and is caught', () => {
  const r = fc.check(
    fc.property(steps, fc.nat(), (raw, pick) => {
      const log = build(raw);
      const i = pick % log.length;
      const skewed = log.map((c, j) => (j === i ? { ...c, timeMs: c.timeMs + 1_000 } : c));
      const a = new QueueStateMachine(limits);
      const b = new QueueStateMachine(limits);
      assert.deepStrictEqual(b.apply(skewed), a.apply(log));
      assert.deepStrictEqual(b.dump(), a.dump());
    }),
    { numRuns: 100, seed: 3 },
  );
  assert.equal(r.failed, true, 'a skewed clock must show in results or state');
});
