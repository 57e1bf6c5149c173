// Each checker, fed a history with its property broken, reports it (and stays quiet on the
// same history without the break): a green simulator run means the checks can fail.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Entry } from '../../src/raft/index.js';
import { ClientChecker, SafetyChecker, type LogView } from '../../src/sim/index.js';
import { ClientHistory } from '../../src/sim/history.js';

const enc = new TextEncoder();

function e(index: number, term: number, text: string): Entry {
  return { index, term, type: 'normal', data: enc.encode(text) };
}

function view(id: number, entries: readonly Entry[]): LogView {
  const byIndex = new Map(entries.map((x) => [x.index, x]));
  return {
    id,
    firstIndex: entries[0]?.index ?? 1,
    lastIndex: entries.at(-1)?.index ?? 0,
    termAt: (i) => byIndex.get(i)?.term,
    entryAt: (i) => byIndex.get(i),
  };
}

/** A client write whose unique value is `v` (client 1, its sequence number from the value). */
function w(k: string, v: string, s = 1): { c: number; s: number; k: string; v: string } {
  return { c: 1, s, k, v };
}

function kinds(c: SafetyChecker): string[] {
  return c.violations.map((v) => v.kind);
}

void test('election safety: two leaders in one term', () => {
  const c = new SafetyChecker();
  c.onLeader(1, 5);
  c.onLeader(1, 5);
  c.onLeader(2, 6);
  assert.deepEqual(kinds(c), []);
  c.onLeader(3, 6);
  assert.deepEqual(kinds(c), ['election-safety']);
});

void test('log matching: same index and term with different content or predecessor', () => {
  const c = new SafetyChecker();
  c.onLogEntries(1, [e(1, 1, 'a'), e(2, 1, 'b')], 0);
  c.onLogEntries(2, [e(2, 1, 'b')], 1);
  assert.deepEqual(kinds(c), []);
  c.onLogEntries(3, [e(2, 1, 'x')], 1);
  assert.deepEqual(kinds(c), ['log-matching']);
  const d = new SafetyChecker();
  d.onLogEntries(1, [e(5, 3, 'a')], 2);
  d.onLogEntries(2, [e(5, 3, 'a')], 1);
  assert.deepEqual(kinds(d), ['log-matching']);
});

void test('log matching, pairwise: logs that agree late but differ early', () => {
  const c = new SafetyChecker();
  const a = view(1, [e(1, 1, 'a'), e(2, 1, 'b'), e(3, 2, 'c')]);
  const ok = view(2, [e(1, 1, 'a'), e(2, 1, 'b'), e(3, 2, 'c'), e(4, 2, 'd')]);
  const diverged = view(3, [e(1, 1, 'a'), e(2, 1, 'z'), e(3, 2, 'c')]);
  const conflicting = view(4, [e(1, 1, 'a'), e(2, 1, 'b'), e(3, 3, 'q')]);
  c.checkLogsPairwise([a, ok, conflicting]);
  assert.deepEqual(kinds(c), []);
  c.checkLogsPairwise([a, diverged]);
  assert.deepEqual(kinds(c), ['log-matching']);
});

void test('state machine safety: different entries applied at one index', () => {
  const c = new SafetyChecker();
  assert.equal(c.onApply(1, e(1, 1, 'a')), true);
  assert.equal(c.onApply(2, e(1, 1, 'a')), false);
  assert.deepEqual(kinds(c), []);
  c.onApply(3, e(1, 2, 'b'));
  assert.ok(kinds(c).includes('state-machine-safety'));
});

void test('state machine safety: different snapshot images at one index', () => {
  const c = new SafetyChecker();
  c.onSnapshot(1, 10, '{"a":1}');
  c.onSnapshot(2, 10, '{"a":1}');
  assert.deepEqual(kinds(c), []);
  c.onSnapshot(3, 10, '{"a":2}');
  assert.deepEqual(kinds(c), ['state-machine-safety']);
});

void test('leader completeness: a new leader missing a committed entry', () => {
  const c = new SafetyChecker();
  const log = [e(1, 1, 'a'), e(2, 1, 'b'), e(3, 2, 'c')];
  c.onCommit(1, 3, (i) => log[i - 1]);
  c.checkLeaderCompleteness(view(2, [...log, e(4, 3, 'd')]), 3);
  assert.deepEqual(kinds(c), []);
  c.checkLeaderCompleteness(view(3, [e(1, 1, 'a'), e(2, 1, 'b'), e(3, 1, 'x')]), 4);
  assert.deepEqual(kinds(c), ['leader-completeness']);
});

void test('committed entries lost: not durable on a majority, or committed twice differently', () => {
  const c = new SafetyChecker();
  const log = [e(1, 1, 'a'), e(2, 1, 'b')];
  c.onCommit(1, 2, (i) => log[i - 1]);
  const has = (upTo: number) => (i: number, t: number) => i <= upTo && t === 1;
  c.checkDurable([
    { id: 1, holds: has(2) },
    { id: 2, holds: has(2) },
    { id: 3, holds: has(0) },
  ]);
  assert.deepEqual(kinds(c), []);
  assert.equal(c.overwritesCommitted(e(2, 1, 'b')), false);
  assert.equal(c.overwritesCommitted(e(2, 2, 'x')), true);
  c.checkDurable([
    { id: 1, holds: has(2) },
    { id: 2, holds: has(1) },
    { id: 3, holds: has(0) },
  ]);
  assert.deepEqual(kinds(c), ['committed-lost']);
  c.onCommit(2, 2, () => e(2, 3, 'other'));
  c.onApply(3, e(2, 3, 'other'));
  assert.ok(kinds(c).filter((k) => k === 'committed-lost').length >= 2);
});

void test('stale reads: a read older than a write committed before it was asked', () => {
  const c = new SafetyChecker();
  const r = new ClientChecker(c);
  r.onWrite(w('k', 'v1'), 3);
  r.onWrite(w('k', 'v2'), 5);
  r.onRead({ node: 1, key: 'k', value: 'v1', askedCommit: 4 });
  r.onRead({ node: 1, key: 'k', value: 'v2', askedCommit: 9 });
  r.onRead({ node: 1, key: 'other', value: undefined, askedCommit: 9 });
  assert.deepEqual(kinds(c), []);
  r.onRead({ node: 2, key: 'k', value: 'v1', askedCommit: 5 });
  assert.deepEqual(kinds(c), ['stale-read']);
  r.onRead({ node: 2, key: 'k', value: 'never-written', askedCommit: 5 });
  assert.deepEqual(kinds(c), ['stale-read', 'stale-read']);
});

void test('stale reads: a write that takes effect after the read is still held against it', () => {
  const c = new SafetyChecker();
  const r = new ClientChecker(c);
  r.onRead({ node: 1, key: 'k', value: undefined, askedCommit: 7 });
  assert.deepEqual(kinds(c), []);
  r.onWrite(w('k', 'v1'), 6);
  r.finish();
  assert.deepEqual(kinds(c), ['stale-read']);
});

void test('exactly once: a retried write that takes effect a second time', () => {
  const c = new SafetyChecker();
  const r = new ClientChecker(c);
  r.onWrite(w('k', 'c1.1', 1), 3);
  r.onWrite(w('k', 'c1.2', 2), 4);
  assert.deepEqual(kinds(c), []);
  r.onWrite(w('k', 'c1.1', 1), 6);
  assert.deepEqual(kinds(c), ['exactly-once']);
});

void test('early acknowledgement: a write acknowledged before any node applied it', () => {
  const c = new SafetyChecker();
  const r = new ClientChecker(c);
  r.onWrite(w('k', 'c1.1', 1), 3);
  r.onAck(1, w('k', 'c1.1', 1));
  assert.deepEqual(kinds(c), []);
  r.onAck(1, w('k', 'c1.2', 2));
  assert.deepEqual(kinds(c), ['early-ack']);
});

void test('client history: a read that misses a write acknowledged before it began', () => {
  const h = new ClientHistory();
  const w1 = h.invokeWrite(1, 'k', 'c1.1', 0);
  h.ok(w1, 10);
  const w2 = h.invokeWrite(1, 'k', 'c1.2', 20);
  h.ok(w2, 30);
  const r1 = h.invokeRead(2, 'k', 25); // concurrent with the second write: either value fits
  h.ok(r1, 28, 'c1.1');
  const lost = h.invokeRead(3, 'k', 5);
  h.fail(lost, 50); // failed reads constrain nothing
  const pending = h.invokeWrite(2, 'k', 'c2.1', 60); // never answered: unknown
  assert.equal(h.size, 5);
  assert.equal(h.check(), null);
  const stale = h.invokeRead(4, 'k', 40);
  h.ok(stale, 45, 'c1.1');
  assert.match(h.check() ?? '', /Not linearizable: key "k"/);
  assert.equal(pending, 4);
});

void test('client history: a search that runs out of steps fails the history as unchecked', () => {
  // Overlapping writes, each read back: a search of a few steps cannot finish it.
  const fill = (h: ClientHistory): ClientHistory => {
    for (let i = 0; i < 6; i++) {
      const w = h.invokeWrite(1 + (i % 2), 'k', `c${i}`, i * 10);
      h.ok(w, i * 10 + 15);
      const r = h.invokeRead(3 + (i % 2), 'k', i * 10 + 1);
      h.ok(r, i * 10 + 14, `c${i}`);
    }
    return h;
  };
  assert.match(
    fill(new ClientHistory(3)).check() ?? '',
    /^Unchecked: the search ran out of its 3 steps or its memory on key "k" \(12 operations, step-budget\)/,
  );
  assert.equal(fill(new ClientHistory()).check(), null, 'the same history, the default budget');
});

void test('lease overlap: a lease that holds after a later term elected a leader', () => {
  const c = new SafetyChecker();
  c.onLeader(1, 3);
  c.checkLease(1, 3, true);
  assert.deepEqual(kinds(c), [], 'the only leader holds its lease');
  c.onLeader(2, 4);
  c.checkLease(1, 3, false);
  assert.deepEqual(kinds(c), [], 'the old lease ended before node 2 was elected');
  c.checkLease(2, 4, true);
  assert.deepEqual(kinds(c), [], 'the newest leader holds its lease');
  c.checkLease(1, 3, true);
  c.checkLease(1, 3, true);
  assert.deepEqual(kinds(c), ['lease-overlap'], 'reported once per node and term');
  assert.match(
    c.violations[0]?.message ?? '',
    /node 1's lease from term 3 .* node 2 was elected in term 4/,
  );
});
