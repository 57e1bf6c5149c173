// Property tests of the majority-quorum arithmetic (src/raft/quorum.ts) against naive
// versions that enumerate every subset of voters or count directly (paper §5.2, §5.3).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { committedIndex, hasQuorum, majority, voteResult } from '../../src/raft/quorum.js';
import type { VoteResult } from '../../src/raft/quorum.js';

/** Voter sets of 1..7 distinct ids, as in the clusters the project supports. */
const voterIds = fc.uniqueArray(fc.integer({ min: 1, max: 50 }), { minLength: 1, maxLength: 7 });

/** Every subset of `items` (2^7 = 128 at most). */
function subsets<T>(items: readonly T[]): T[][] {
  const out: T[][] = [];
  for (let mask = 0; mask < 1 << items.length; mask++) {
    out.push(items.filter((_, i) => (mask & (1 << i)) !== 0));
  }
  return out;
}

/** A set is a quorum when it holds more than half of all voters. */
function isQuorum(size: number, voterCount: number): boolean {
  return 2 * size > voterCount;
}

function naiveMajority(n: number): number {
  let k = 0;
  while (!isQuorum(k, n)) k++;
  return k;
}

/** The largest N such that some quorum of voters all have match >= N (0 if none). */
function naiveCommitted(voters: readonly number[], match: ReadonlyMap<number, number>): number {
  let best = 0;
  for (const s of subsets(voters)) {
    if (!isQuorum(s.length, voters.length)) continue;
    const floor = Math.min(...s.map((id) => match.get(id) ?? 0));
    best = Math.max(best, floor);
  }
  return best;
}

/** Won if the grants form a quorum; lost if no way of filling in the silent voters wins. */
function naiveVote(voters: readonly number[], votes: ReadonlyMap<number, boolean>): VoteResult {
  const granted = voters.filter((id) => votes.get(id) === true);
  if (isQuorum(granted.length, voters.length)) return 'won';
  const silent = voters.filter((id) => !votes.has(id));
  const canWin = subsets(silent).some((extra) =>
    isQuorum(granted.length + extra.length, voters.length),
  );
  return canWin ? 'pending' : 'lost';
}

function naiveHasQuorum(voters: readonly number[], active: (id: number) => boolean): boolean {
  return subsets(voters).some(
    (s) => isQuorum(s.length, voters.length) && s.every((id) => active(id)),
  );
}

const matchArb = voterIds.chain((voters) =>
  fc
    .array(fc.integer({ min: 0, max: 20 }), { minLength: voters.length, maxLength: voters.length })
    .map((values) => ({ voters, match: new Map(voters.map((id, i) => [id, values[i] ?? 0])) })),
);

const votesArb = voterIds.chain((voters) =>
  fc
    .array(fc.constantFrom<boolean | null>(true, false, null), {
      minLength: voters.length,
      maxLength: voters.length,
    })
    .map((vs) => {
      const votes = new Map<number, boolean>();
      voters.forEach((id, i) => {
        const v = vs[i];
        if (v !== null && v !== undefined) votes.set(id, v);
      });
      return { voters, votes };
    }),
);

void test('majority(n) is the smallest size of a quorum', () => {
  for (let n = 1; n <= 101; n++) assert.equal(majority(n), naiveMajority(n), `n=${n}`);
});

void test('committedIndex equals the best floor over all quorums', () => {
  fc.assert(
    fc.property(matchArb, ({ voters, match }) => {
      assert.equal(
        committedIndex(voters, (id) => match.get(id) ?? 0),
        naiveCommitted(voters, match),
      );
    }),
    { numRuns: 500 },
  );
});

void test('committedIndex counts voters missing from match as 0', () => {
  assert.equal(
    committedIndex([1, 2, 3], (id) => (id === 1 ? 9 : 0)),
    0,
  );
  assert.equal(
    committedIndex([], () => 5),
    0,
  );
});

void test('voteResult agrees with enumerating how silent voters could answer', () => {
  fc.assert(
    fc.property(votesArb, ({ voters, votes }) => {
      assert.equal(voteResult(voters, votes), naiveVote(voters, votes));
    }),
    { numRuns: 500 },
  );
});

void test('voteResult ignores votes from non-voters', () => {
  const votes = new Map([
    [1, true],
    [9, true],
    [10, true],
  ]);
  assert.equal(voteResult([1, 2, 3], votes), 'pending');
});

void test('hasQuorum agrees with enumerating subsets of active voters', () => {
  fc.assert(
    fc.property(
      voterIds,
      fc.array(fc.boolean(), { minLength: 7, maxLength: 7 }),
      (voters, flags) => {
        const active = (id: number): boolean => flags[voters.indexOf(id)] === true;
        assert.equal(hasQuorum(voters, active), naiveHasQuorum(voters, active));
      },
    ),
    { numRuns: 500 },
  );
});

// Planted bugs: the naive oracles must catch plausible mistakes, or the properties above
// prove nothing.

void test('the committedIndex oracle catches an off-by-one quorum position', () => {
  const buggy = (voters: readonly number[], match: (id: number) => number): number => {
    const values = voters.map(match).sort((a, b) => b - a);
    return values[Math.floor((voters.length - 1) / 2)] ?? 0; // should be majority - 1
  };
  const result = fc.check(
    fc.property(matchArb, ({ voters, match }) => {
      return buggy(voters, (id) => match.get(id) ?? 0) === naiveCommitted(voters, match);
    }),
    { numRuns: 500, seed: 1 },
  );
  assert.equal(result.failed, true);
});

void test('the voteResult oracle catches a tally that never reports a loss', () => {
  const buggy = (voters: readonly number[], votes: ReadonlyMap<number, boolean>): VoteResult => {
    const granted = voters.filter((id) => votes.get(id) === true).length;
    return granted >= majority(voters.length) ? 'won' : 'pending';
  };
  const result = fc.check(
    fc.property(votesArb, ({ voters, votes }) => buggy(voters, votes) === naiveVote(voters, votes)),
    { numRuns: 500, seed: 1 },
  );
  assert.equal(result.failed, true);
});

void test('the hasQuorum oracle catches counting half as a quorum', () => {
  const buggy = (voters: readonly number[], active: (id: number) => boolean): boolean =>
    2 * voters.filter(active).length >= voters.length;
  const result = fc.check(
    fc.property(
      voterIds,
      fc.array(fc.boolean(), { minLength: 7, maxLength: 7 }),
      (voters, flags) => {
        const active = (id: number): boolean => flags[voters.indexOf(id)] === true;
        return buggy(voters, active) === naiveHasQuorum(voters, active);
      },
    ),
    { numRuns: 500, seed: 1 },
  );
  assert.equal(result.failed, true);
});
