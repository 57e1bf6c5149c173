// The election judgement the rolling-restart test relies on, on logs written here: a leader's
// restart accounts for one election, a stall near an election for it, and an election with
// neither (a restarted follower disrupting its leader, a second election after a hand-off) is
// caught, as is a term no log line accounts for.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { describeElection, judgeElections, parseNodeLog, type NodeLogLine } from './elections.js';

/** A node's output: pino JSON lines as `flotilla start` writes them. */
function output(node: number, recs: readonly Record<string, unknown>[]): string {
  return recs.map((r) => JSON.stringify({ level: 30, node, ...r })).join('\n') + '\n';
}

const t0 = 1_800_000_000_000;

/** Three members, node 1 leading term 1; node 1 restarted at +1 s, node 2 at +10 s. */
function run(extra: Record<number, Record<string, unknown>[]> = {}): NodeLogLine[] {
  const base: Record<number, Record<string, unknown>[]> = {
    1: [
      { time: t0, term: 1, reason: 'election timeout', msg: 'become candidate' },
      { time: t0 + 1_000, signal: 'SIGTERM', msg: 'shutting down' },
      { time: t0 + 1_010, term: 2, reason: 'vote request from 2 in term 2', msg: 'stepped down' },
    ],
    2: [
      { time: t0 + 1_005, term: 2, reason: 'leadership transfer', msg: 'become candidate' },
      // The queue group's election of the same term is not the key-value group's.
      {
        time: t0 + 1_006,
        group: 1,
        term: 2,
        reason: 'leadership transfer',
        msg: 'become candidate',
      },
    ],
    3: [],
  };
  const lines: NodeLogLine[] = [];
  for (const node of [1, 2, 3]) {
    const text = output(node, [...(base[node] ?? []), ...(extra[node] ?? [])]);
    lines.push(...parseNodeLog(node, 'torn tail of an earlier line"}\n' + text));
  }
  return lines;
}

const restarts = [
  { node: 1, atMs: t0 + 1_000, led: true },
  { node: 2, atMs: t0 + 10_000, led: false },
];
const judge = (lines: NodeLogLine[], toTerm: number) =>
  judgeElections(lines, { group: 0, fromTerm: 1, toTerm, restarts, evidenceMs: 5_000 });

void test('parses JSON lines only, with the group 0 when a line names none', () => {
  const lines = parseNodeLog(
    3,
    'flotilla: not json\n{"time":5,"msg":"become candidate","term":4,"reason":"x"}\n{"time":6,"group":1,"msg":"m","stalledMs":120}\n{"broken',
  );
  assert.deepEqual(lines, [
    { node: 3, atMs: 5, group: 0, msg: 'become candidate', term: 4, reason: 'x' },
    { node: 3, atMs: 6, group: 1, msg: 'm', stalledMs: 120 },
  ]);
});

void test("the leader's hand-off is the restart's election", () => {
  const v = judge(run(), 2);
  assert.deepEqual(
    v.restart.map((e) => [e.term, e.node, e.reason]),
    [[2, 2, 'leadership transfer']],
  );
  assert.deepEqual([v.stalled, v.unexplained, v.unrecorded], [[], [], []]);
});

void test('planted: a restarted follower that campaigns with no stall near is caught', () => {
  const lines = run({
    2: [{ time: t0 + 12_000, term: 3, reason: 'election timeout', msg: 'become candidate' }],
  });
  const v = judge(lines, 3);
  assert.deepEqual(
    v.unexplained.map((e) => [e.term, e.node]),
    [[3, 2]],
  );
  assert.match(
    describeElection(v.unexplained[0]!, lines, [], 5_000),
    /^term 3: node 2 campaigned \(election timeout\); no event-loop stall within 5\.00 s before$/,
  );
});

void test('planted: a second election in the round of a leader restart is caught', () => {
  const v = judge(
    run({
      3: [{ time: t0 + 1_400, term: 3, reason: 'election timeout', msg: 'become candidate' }],
    }),
    3,
  );
  assert.deepEqual(
    v.restart.map((e) => e.term),
    [2],
  );
  assert.deepEqual(
    v.unexplained.map((e) => e.term),
    [3],
  );
});

void test('an election after stalls is explained by them, and says so with the step-down', () => {
  const stalled = 'event loop stalled: long enough for an election to start meanwhile';
  const lines = run({
    2: [
      { time: t0 + 12_100, stalledMs: 400, electionTimeoutMs: 150, msg: stalled },
      { time: t0 + 12_300, stalledMs: 150, electionTimeoutMs: 150, msg: stalled },
      { time: t0 + 12_600, term: 3, reason: 'election timeout', msg: 'become candidate' },
    ],
    3: [
      {
        time: t0 + 12_200,
        term: 2,
        reason: 'check-quorum: no contact with a majority',
        msg: 'stepped down',
      },
    ],
  });
  const v = judge(lines, 3);
  assert.deepEqual(v.unexplained, []);
  assert.equal(v.stalled.length, 1);
  const { election, stalls } = v.stalled[0]!;
  assert.deepEqual(stalls, [
    { node: 2, endMs: t0 + 12_100, stalledMs: 400 },
    { node: 2, endMs: t0 + 12_300, stalledMs: 150 },
  ]);
  assert.equal(
    describeElection(election, lines, stalls, 5_000),
    "term 3: node 2 campaigned (election timeout); node 3 stepped down 0.40 s before (check-quorum: no contact with a majority); node 2's event loop stalled 2 times, longest 400 ms ending 0.50 s before",
  );
});

void test('a stall that ended before the evidence window, or began after the campaign, explains nothing', () => {
  for (const time of [t0 + 12_600 - 5_001, t0 + 12_600 + 401]) {
    const v = judge(
      run({
        1: [{ time, stalledMs: 400, msg: 'event loop stalled: x' }],
        2: [{ time: t0 + 12_600, term: 3, reason: 'election timeout', msg: 'become candidate' }],
      }),
      3,
    );
    assert.deepEqual(
      v.unexplained.map((e) => e.term),
      [3],
      `stall ending at +${time - t0} ms`,
    );
  }
});

void test('a term no campaign line accounts for is reported', () => {
  assert.deepEqual(judge(run(), 4).unrecorded, [3, 4]);
});
