// Property tests of membership changes (src/raft/confchange.ts, thesis §4.3). Random sequences
// of changes, some valid and some not, are fed to changeConf as a leader would (the leave
// whenever the configuration is joint); every configuration it accepts is checked by
// `transitionViolation`, which knows nothing of how changeConf works:
// - the configuration invariants: never zero voters, no node both voter and learner,
//   learners-next only among outgoing voters, joint iff auto-leave;
// - safety of the step: a simple configuration follows another only if every majority of the
//   old voters shares a node with every majority of the new ones (checked by enumerating
//   them); otherwise the step must go through a joint configuration whose outgoing half is the
//   old voters;
// - a leave keeps the incoming voters and turns learners-next into learners.
// Each rule is shown to catch a planted bug.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  changeConf,
  decodeConfChange,
  encodeConfChange,
  simpleConf,
  type ConfChange,
  type ConfChangeSingle,
  type ConfState,
} from '../../src/raft/confchange.js';
import type { Result } from '../../src/raft/errors.js';

type ChangeFn = (c: ConfState, cc: ConfChange) => Result<ConfState>;

function subsets(items: readonly number[]): number[][] {
  const out: number[][] = [];
  for (let mask = 0; mask < 1 << items.length; mask++)
    out.push(items.filter((_, i) => (mask & (1 << i)) !== 0));
  return out;
}

function majorities(voters: readonly number[]): number[][] {
  return subsets(voters).filter((s) => 2 * s.length > voters.length);
}

/** Whether every majority of `a` shares a node with every majority of `b`. */
function majoritiesOverlap(a: readonly number[], b: readonly number[]): boolean {
  const mb = majorities(b);
  return majorities(a).every((x) => mb.every((y) => y.some((id) => x.includes(id))));
}

function invariantViolation(c: ConfState): string | null {
  if (c.voters.length === 0) return 'no voters';
  const voters = new Set([...c.voters, ...c.outgoing]);
  for (const id of c.learners) if (voters.has(id)) return `node ${id} is voter and learner`;
  for (const id of c.learnersNext) {
    if (!c.outgoing.includes(id) || c.voters.includes(id))
      return `learner-next ${id} is not an outgoing-only voter`;
  }
  if (c.outgoing.length > 0 !== c.autoLeave) return 'joint without auto-leave (or the reverse)';
  if (c.outgoing.length === 0 && c.learnersNext.length > 0) return 'learners-next while simple';
  return null;
}

/** What must hold of `after`, accepted by a change function for `cc` from `before`. */
function transitionViolation(before: ConfState, cc: ConfChange, after: ConfState): string | null {
  const broken = invariantViolation(after);
  if (broken !== null) return broken;
  if (cc.changes.length === 0) {
    if (before.outgoing.length === 0) return 'left a configuration that was not joint';
    if (after.outgoing.length > 0) return 'a leave that stays joint';
    if (String(after.voters) !== String(before.voters)) return 'a leave that changed the voters';
    const learners = [...before.learners, ...before.learnersNext].sort((a, b) => a - b);
    if (String(after.learners) !== String(learners)) return 'a leave that lost learners-next';
    return null;
  }
  if (before.outgoing.length > 0) return 'a change accepted while joint';
  if (after.outgoing.length === 0) {
    if (!majoritiesOverlap(before.voters, after.voters))
      return `one step from (${before.voters.join(',')}) to (${after.voters.join(',')}): majorities need not overlap`;
  } else if (String(after.outgoing) !== String(before.voters)) {
    return `joint outgoing half (${after.outgoing.join(',')}) is not the old voters (${before.voters.join(',')})`;
  }
  return null;
}

const singleArb: fc.Arbitrary<ConfChangeSingle> = fc.record({
  kind: fc.constantFrom('add-voter' as const, 'add-learner' as const, 'remove' as const),
  node: fc.integer({ min: 1, max: 6 }),
});
const changeArb: fc.Arbitrary<ConfChange> = fc.record({
  changes: fc.array(singleArb, { minLength: 1, maxLength: 4 }),
});

/** Runs a sequence as a leader would: the leave when joint, else the next change. */
function runSequence(
  change: ChangeFn,
  start: ConfState,
  seq: readonly ConfChange[],
): string | null {
  let c = start;
  for (const next of seq) {
    const cc: ConfChange = c.outgoing.length > 0 ? { changes: [] } : next;
    const r = change(c, cc);
    if (!r.ok) continue;
    const broken = transitionViolation(c, cc, r.value);
    if (broken !== null) return broken;
    c = r.value;
  }
  return null;
}

const seqArb = fc.tuple(
  fc.uniqueArray(fc.integer({ min: 1, max: 6 }), { minLength: 1, maxLength: 5 }),
  fc.array(changeArb, { minLength: 1, maxLength: 30 }),
);

void test('random sequences of changes keep every configuration valid and every step safe', () => {
  fc.assert(
    fc.property(
      seqArb,
      ([voters, seq]) => runSequence(changeConf, simpleConf(voters), seq) === null,
    ),
    { numRuns: 500 },
  );
});

/** A planted bug is caught when some random sequence makes the checker report it. */
function caught(buggy: ChangeFn): string {
  const found = fc.check(
    fc.property(seqArb, ([voters, seq]) => runSequence(buggy, simpleConf(voters), seq) === null),
    { numRuns: 2000, seed: 7 },
  );
  assert.ok(found.failed, 'the planted bug went unnoticed');
  const [voters, seq] = found.counterexample?.[0] ?? [[], []];
  return runSequence(buggy, simpleConf(voters), seq) ?? '';
}

void test('planted: a change of two voters applied in one step is caught', () => {
  const oneStep: ChangeFn = (c, cc) => {
    const r = changeConf(c, cc);
    if (!r.ok || r.value.outgoing.length === 0 || cc.changes.length === 0) return r;
    // Skip the joint configuration: put the incoming voters in force at once.
    return { ok: true, value: { ...r.value, outgoing: [], learnersNext: [], autoLeave: false } };
  };
  assert.match(caught(oneStep), /majorities need not overlap/);
});

void test('planted: a demoted voter kept as a voter is caught', () => {
  const keepsVoter: ChangeFn = (c, cc) => {
    const r = changeConf(c, cc);
    if (!r.ok) return r;
    const demoted = cc.changes.find((x) => x.kind === 'add-learner' && c.voters.includes(x.node));
    if (demoted === undefined) return r;
    const voters = [...new Set([...r.value.voters, demoted.node])].sort((a, b) => a - b);
    return { ok: true, value: { ...r.value, voters } };
  };
  assert.match(caught(keepsVoter), /voter and learner/);
});

void test('planted: a change that removes every voter is caught', () => {
  const noCheck: ChangeFn = (c, cc) => {
    const r = changeConf(c, cc);
    if (r.ok || r.error.code !== 'MEMBERSHIP_NO_VOTERS') return r;
    return { ok: true, value: { ...c, voters: [] } };
  };
  assert.match(caught(noCheck), /no voters/);
});

void test('planted: a leave that forgets learners-next is caught', () => {
  const forgets: ChangeFn = (c, cc) => {
    const r = changeConf(c, cc);
    if (!r.ok || cc.changes.length > 0) return r;
    return { ok: true, value: { ...r.value, learners: c.learners } };
  };
  assert.match(caught(forgets), /lost learners-next/);
});

void test('a change survives its encoding', () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.record({
          kind: fc.constantFrom('add-voter' as const, 'add-learner' as const, 'remove' as const),
          node: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
        }),
        { maxLength: 20 },
      ),
      (drawn) => {
        const changes = drawn.map((c) => ({ kind: c.kind, node: c.node }));
        assert.deepEqual(decodeConfChange(encodeConfChange({ changes })), { changes });
      },
    ),
  );
});

void test('a damaged encoding is described, not decoded', () => {
  const good = encodeConfChange({ changes: [{ kind: 'add-voter', node: 4 }] });
  const described = (data: Uint8Array): string => {
    const r = decodeConfChange(data);
    assert.equal(typeof r, 'string', 'a damaged encoding was decoded');
    return r as string;
  };
  assert.match(described(good.subarray(0, 5)), /is 12 bytes, got 5/);
  const badFormat = Uint8Array.from(good);
  badFormat[0] = 9;
  assert.match(described(badFormat), /format 9 is unknown/);
  const badKind = Uint8Array.from(good);
  badKind[3] = 7;
  assert.match(described(badKind), /kind 7 is unknown/);
});

void test('the examples of the thesis: one step for one voter, joint for two', () => {
  const c = simpleConf([1, 2, 3]);
  const one = changeConf(c, { changes: [{ kind: 'add-voter', node: 4 }] });
  assert.ok(one.ok);
  assert.deepEqual(one.value, simpleConf([1, 2, 3, 4]));
  const two = changeConf(c, {
    changes: [
      { kind: 'add-voter', node: 4 },
      { kind: 'remove', node: 3 },
    ],
  });
  assert.ok(two.ok);
  assert.deepEqual(two.value, {
    voters: [1, 2, 4],
    learners: [],
    outgoing: [1, 2, 3],
    learnersNext: [],
    autoLeave: true,
  });
  // Demoting a voter while joint: it votes in the outgoing half until the leave.
  const demote = changeConf(c, {
    changes: [
      { kind: 'add-learner', node: 3 },
      { kind: 'add-voter', node: 5 },
    ],
  });
  assert.ok(demote.ok);
  assert.deepEqual(demote.value.learnersNext, [3]);
  assert.deepEqual(demote.value.learners, []);
  const left = changeConf(demote.value, { changes: [] });
  assert.ok(left.ok);
  assert.deepEqual(left.value, { ...simpleConf([1, 2, 5]), learners: [3] });
});
