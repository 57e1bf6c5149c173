// A node that has known no leader for long says why it may be so: which voters it has not heard
// from, or, when it hears from a majority or is itself recovering, that members which lost their data
// vote for no one and how to get out (a backup, or one saved from a survivor's directory). Said
// once the election has had its time, again at most every repeat interval, and once more when a
// leader is known again.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import { LeaderlessWatch, leaderlessReason } from '../../src/server/leaderless.js';
import type { LeaderlessStatus } from '../../src/server/leaderless.js';
import { ManualClock } from '../support/manual-clock.js';

const voters = [1, 2, 3];
const follower = (o: Partial<LeaderlessStatus> = {}): LeaderlessStatus => ({
  id: 1,
  leader: 0,
  recovery: 'none',
  voters,
  ...o,
});

void test('the reason names the voters out of reach, or the members that lost their data', () => {
  const none = leaderlessReason(follower(), () => false, 31_000);
  assert.match(none, /^no leader for 31 s: a leader needs 2 of the voters 1,2,3/);
  assert.match(none, /hears from 1 \(itself\); 2,3 are down, frozen or cut off from it/);
  const majority = leaderlessReason(follower(), (id) => id === 2, 40_000);
  assert.match(majority, /hears from a majority of the voters \(1,2 of 1,2,3\)/);
  assert.match(majority, /lost their data vote for no one/);
  assert.match(majority, /flotilla snapshot save FILE --data-dir DIR/);
  const recovering = leaderlessReason(follower({ recovery: 'recovering' }), () => true, 30_000);
  assert.match(recovering, /while this node recovers lost data/);
  assert.match(recovering, /If a majority of the members lost their data, none can be elected/);
  const learner = leaderlessReason(follower({ id: 4 }), () => true, 30_000);
  assert.match(learner, /not a voter and waits for the voters \(1,2,3\)/);
});

void test('said after the wait, repeated at most every interval, and when a leader is back', () => {
  const clock = new ManualClock();
  const lines: { level: number; msg: string }[] = [];
  const log = pino(
    { level: 'info' },
    { write: (s: string) => lines.push(JSON.parse(s) as { level: number; msg: string }) },
  );
  let status = follower();
  const w = new LeaderlessWatch({
    clock,
    log,
    status: () => status,
    received: () => 0,
    warnAfterMs: 30_000,
    repeatEveryMs: 60_000,
  });
  const line = (i: number): { level: number; msg: string } => lines[i] ?? { level: 0, msg: '' };
  const at = (ms: number) => {
    clock.now = ms;
    w.check();
  };
  at(0);
  at(29_999);
  assert.deepEqual(lines, []);
  assert.equal(w.reason(), null);
  at(30_000);
  assert.equal(lines.length, 1);
  assert.equal(line(0).level, 50);
  assert.match(line(0).msg, /^no leader for 30 s/);
  assert.match(w.reason() ?? '', /^no leader for 30 s/);
  at(89_999);
  assert.equal(lines.length, 1);
  at(90_000);
  assert.equal(lines.length, 2);
  assert.match(line(1).msg, /^no leader for 90 s/);
  status = follower({ leader: 2 });
  at(91_000);
  assert.equal(w.reason(), null);
  assert.equal(lines.length, 3);
  assert.match(line(2).msg, /leader 2 known again after 91 s without one/);
  // A new spell without a leader waits its full time again before it is said.
  status = follower();
  at(100_000);
  at(129_999);
  assert.equal(lines.length, 3);
  at(130_000);
  assert.equal(lines.length, 4);
});

void test('a leader known throughout is never said', () => {
  const clock = new ManualClock();
  const lines: string[] = [];
  const w = new LeaderlessWatch({
    clock,
    log: pino({ level: 'info' }, { write: (s: string) => lines.push(s) }),
    status: () => follower({ leader: 3 }),
    received: () => 0,
  });
  for (let t = 0; t <= 300_000; t += 1_000) {
    clock.now = t;
    w.check();
  }
  assert.deepEqual(lines, []);
  assert.equal(w.reason(), null);
});

void test('a voter is heard from when messages came from it lately, not when a connection is open', () => {
  // Two frozen peers keep their connections open and say nothing: this node does not reach a
  // majority, and is not told that members lost their data (and to restore a backup).
  const clock = new ManualClock();
  const got = new Map([
    [2, 40],
    [3, 12],
  ]);
  const w = new LeaderlessWatch({
    clock,
    log: pino({ level: 'silent' }),
    status: () => follower(),
    received: (id) => got.get(id) ?? 0,
    warnAfterMs: 30_000,
    heardWithinMs: 10_000,
  });
  for (let t = 0; t <= 40_000; t += 1_000) {
    clock.now = t;
    // Node 3 goes on sending (pre-votes, say) until 25 s; node 2 sent its last before 0.
    if (t <= 25_000) got.set(3, 12 + t / 1_000);
    w.check();
  }
  clock.now = 30_000;
  assert.match(w.reason() ?? '', /hears from a majority/, 'node 3 was heard 5 s before');
  clock.now = 40_000;
  assert.match(w.reason() ?? '', /hears from 1 \(itself\); 2,3 are down, frozen or cut off/);
  // Node 3 heard again: a majority is heard, and the lost-data explanation follows.
  got.set(3, 100);
  clock.now = 41_000;
  w.check();
  assert.match(w.reason() ?? '', /hears from a majority of the voters \(1,3 of 1,2,3\)/);
});
