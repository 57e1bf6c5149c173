// Property tests of the in-memory Raft log (src/raft/log.ts) against a naive array model:
// random sequences of leader appends, follower AppendEntries (with conflicts), commits and
// compactions, checking term lookups, the conflict hint, slices and the up-to-date rule
// after every step (paper Figure 2, §5.3, §5.4.1, §7).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { AssertionError } from '../../src/raft/errors.js';
import { RaftLog } from '../../src/raft/log.js';
import type { Entry } from '../../src/raft/types.js';

/** The model: a snapshot boundary and a plain array of every entry after it. */
class Model {
  snapIndex = 0;
  snapTerm = 0;
  committed = 0;
  entries: Entry[] = [];

  last(): number {
    return this.snapIndex + this.entries.length;
  }
  lastTerm(): number {
    return this.entries.at(-1)?.term ?? this.snapTerm;
  }
  term(i: number): number | undefined {
    if (i === this.snapIndex) return this.snapTerm;
    return this.entries.find((e) => e.index === i)?.term;
  }
  /** Figure 2 receiver rules 2-4, written the obvious way. 'committed' = would drop one. */
  maybeAppend(prevIndex: number, prevTerm: number, es: readonly Entry[]): number | 'committed' {
    if (this.term(prevIndex) !== prevTerm) return -1;
    const conflict = es.find(
      (e) =>
        e.index > this.snapIndex &&
        this.term(e.index) !== undefined &&
        this.term(e.index) !== e.term,
    );
    if (conflict !== undefined && conflict.index <= this.committed) return 'committed';
    if (conflict !== undefined) this.entries = this.entries.filter((e) => e.index < conflict.index);
    for (const e of es) if (e.index > this.last()) this.entries.push(e);
    return prevIndex + es.length;
  }
  findConflictByTerm(index: number, term: number): { index: number; term: number } {
    for (let i = Math.min(index, this.last()); i > this.snapIndex; i--) {
      const t = this.term(i) as number;
      if (t <= term) return { index: i, term: t };
    }
    return { index: this.snapIndex, term: this.snapTerm };
  }
  slice(lo: number, hi: number, maxCount: number, maxBytes: number): Entry[] {
    const out: Entry[] = [];
    let bytes = 0;
    for (const e of this.entries) {
      if (e.index < lo || e.index >= hi || out.length >= maxCount) continue;
      if (out.length > 0 && bytes + e.data.length > maxBytes) break;
      bytes += e.data.length;
      out.push(e);
    }
    return out;
  }
}

function entry(term: number, index: number, bytes: number): Entry {
  return { term, index, type: 'normal', data: new Uint8Array(bytes) };
}

type Op =
  | { kind: 'propose'; bump: number; bytes: number }
  | { kind: 'follow'; back: number; wrongTerm: boolean; plan: { keep: boolean; bump: number }[] }
  | { kind: 'commit'; back: number }
  | { kind: 'compact'; back: number }
  | { kind: 'probe'; back: number; term: number; count: number; maxBytes: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    kind: fc.constant('propose' as const),
    bump: fc.integer({ min: 0, max: 2 }),
    bytes: fc.integer({ min: 0, max: 9 }),
  }),
  fc.record({
    kind: fc.constant('follow' as const),
    back: fc.integer({ min: 0, max: 6 }),
    wrongTerm: fc.boolean(),
    plan: fc.array(fc.record({ keep: fc.boolean(), bump: fc.integer({ min: 0, max: 2 }) }), {
      maxLength: 5,
    }),
  }),
  fc.record({ kind: fc.constant('commit' as const), back: fc.integer({ min: 0, max: 4 }) }),
  fc.record({ kind: fc.constant('compact' as const), back: fc.integer({ min: 0, max: 4 }) }),
  fc.record({
    kind: fc.constant('probe' as const),
    back: fc.integer({ min: 0, max: 8 }),
    term: fc.integer({ min: 0, max: 12 }),
    count: fc.integer({ min: 1, max: 4 }),
    maxBytes: fc.integer({ min: 0, max: 20 }),
  }),
);

/** Builds the entries a leader would send after prevIndex: each either matches ours or is new. */
function followerEntries(
  m: Model,
  prevIndex: number,
  prevTerm: number,
  plan: Op & { kind: 'follow' },
): Entry[] {
  const out: Entry[] = [];
  let term = prevTerm;
  for (let k = 0; k < plan.plan.length; k++) {
    const step = plan.plan[k] as { keep: boolean; bump: number };
    const index = prevIndex + 1 + k;
    const ours = m.term(index);
    // Keep our entry when asked and when the terms stay non-decreasing; otherwise diverge.
    term = step.keep && ours !== undefined && ours >= term ? ours : term + step.bump;
    out.push(
      m.entries.find((e) => e.index === index && e.term === term) ??
        entry(term, index, (index % 5) + 1),
    );
  }
  return out;
}

function apply(log: RaftLog, m: Model, op: Op): void {
  switch (op.kind) {
    case 'propose': {
      const e = entry(m.lastTerm() + op.bump || 1, m.last() + 1, op.bytes);
      log.append(e);
      m.entries.push(e);
      return;
    }
    case 'follow': {
      const prevIndex = Math.max(0, m.last() - op.back);
      const prevTerm = (m.term(prevIndex) ?? 0) + (op.wrongTerm ? 1 : 0);
      const es = followerEntries(m, prevIndex, prevTerm, op);
      const expected = m.maybeAppend(prevIndex, prevTerm, es);
      if (expected === 'committed') {
        assert.throws(() => log.maybeAppend(prevIndex, prevTerm, es, () => {}), AssertionError);
        return;
      }
      let truncatedAt = Infinity;
      const got = log.maybeAppend(prevIndex, prevTerm, es, (from) => (truncatedAt = from));
      assert.equal(got, expected, `maybeAppend(${prevIndex}, ${prevTerm})`);
      if (truncatedAt !== Infinity)
        assert.ok(truncatedAt > m.committed, 'truncated a committed entry');
      return;
    }
    case 'commit': {
      const target = Math.max(m.committed, m.last() - op.back);
      log.commitTo(target);
      m.committed = target;
      return;
    }
    case 'compact': {
      const target = Math.max(m.snapIndex, m.committed - op.back);
      log.applied = log.committed;
      log.acceptInProgress();
      log.stableTo(log.lastIndex());
      log.compact(target);
      if (target > m.snapIndex) {
        m.snapTerm = m.term(target) as number;
        m.entries = m.entries.filter((e) => e.index > target);
        m.snapIndex = target;
      }
      return;
    }
    case 'probe': {
      const index = Math.max(0, m.last() + 2 - op.back);
      assert.deepEqual(
        log.findConflictByTerm(index, op.term),
        m.findConflictByTerm(index, op.term),
      );
      const lo = Math.max(m.snapIndex + 1, m.last() + 1 - op.back);
      const got = log.slice(lo, Infinity, op.count, op.maxBytes).map((e) => `${e.term}/${e.index}`);
      const want = m.slice(lo, Infinity, op.count, op.maxBytes).map((e) => `${e.term}/${e.index}`);
      assert.deepEqual(got, want, `slice(${lo}, inf, ${op.count}, ${op.maxBytes})`);
      const upTo = log.isUpToDate(index, op.term);
      assert.equal(upTo, op.term > m.lastTerm() || (op.term === m.lastTerm() && index >= m.last()));
      return;
    }
  }
}

function checkSame(log: RaftLog, m: Model): void {
  assert.equal(log.lastIndex(), m.last());
  assert.equal(log.lastTerm(), m.lastTerm());
  assert.equal(log.firstIndex(), m.snapIndex + 1);
  assert.equal(log.committed, m.committed);
  for (let i = 0; i <= m.last() + 2; i++) assert.equal(log.term(i), m.term(i), `term(${i})`);
  for (let i = 1; i < m.entries.length; i++) {
    assert.ok((m.entries[i] as Entry).term >= (m.entries[i - 1] as Entry).term, 'terms decrease');
  }
}

void test('RaftLog agrees with a naive array model', () => {
  fc.assert(
    fc.property(fc.array(opArb, { minLength: 1, maxLength: 40 }), (ops) => {
      const log = new RaftLog();
      const m = new Model();
      for (const op of ops) {
        apply(log, m, op);
        checkSame(log, m);
      }
    }),
    { numRuns: 400 },
  );
});

void test('maybeAppend of entries already present changes nothing (duplicates, retries)', () => {
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 0, max: 2 }), { minLength: 1, maxLength: 12 }),
      fc.nat(),
      (bumps, pick) => {
        const log = new RaftLog();
        let term = 1;
        bumps.forEach((b, i) => {
          term += b;
          log.append(entry(term, i + 1, 1));
        });
        const last = log.lastIndex();
        const prev = pick % last;
        const copy: Entry[] = [];
        for (let i = prev + 1; i <= last; i++) copy.push(log.entryAt(i) as Entry);
        let truncated = false;
        assert.equal(
          log.maybeAppend(prev, log.term(prev) as number, copy, () => (truncated = true)),
          last,
        );
        assert.equal(truncated, false);
        assert.equal(log.lastIndex(), last);
      },
    ),
    { numRuns: 200 },
  );
});

// Planted bug: a hint that stops at the first entry of a lower term in the wrong direction
// (scanning up instead of down) must be caught by the model comparison.
void test('the model catches a findConflictByTerm that scans the wrong way', () => {
  const buggy = (m: Model, index: number, term: number): { index: number; term: number } => {
    for (let i = m.snapIndex + 1; i <= Math.min(index, m.last()); i++) {
      const t = m.term(i) as number;
      if (t <= term) return { index: i, term: t };
    }
    return { index: m.snapIndex, term: m.snapTerm };
  };
  const result = fc.check(
    fc.property(
      fc.array(fc.integer({ min: 0, max: 2 }), { minLength: 2, maxLength: 10 }),
      fc.nat(12),
      (bumps, t) => {
        const m = new Model();
        let term = 1;
        bumps.forEach((b, i) => {
          term += b;
          m.entries.push(entry(term, i + 1, 0));
        });
        const a = buggy(m, m.last(), t);
        const b = m.findConflictByTerm(m.last(), t);
        return a.index === b.index && a.term === b.term;
      },
    ),
    { numRuns: 300, seed: 1 },
  );
  assert.equal(result.failed, true);
});
