// Property tests of the joint-quorum functions (src/raft/quorum.ts, thesis §4.3) against
// naive versions that enumerate every subset of the voters of both halves, with the semantics
// of etcd-io/raft's quorum/joint.go: a joint configuration with an empty outgoing half is the
// simple majority of its incoming half; an index is committed once both halves committed it;
// an election is won once both halves granted it and lost once either refused it.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  committedIndex,
  hasQuorum,
  jointCommittedIndex,
  jointHasQuorum,
  jointVoteResult,
  jointVoters,
  simpleConfig,
  voteResult,
  type JointConfig,
  type VoteResult,
} from '../../src/raft/quorum.js';

/** Ids from a small range so that the two halves often overlap, as real transitions do. */
const half = (minLength: number): fc.Arbitrary<number[]> =>
  fc.uniqueArray(fc.integer({ min: 1, max: 9 }), { minLength, maxLength: 5 });

const jointArb: fc.Arbitrary<JointConfig> = fc
  .tuple(half(1), half(1))
  .map(([incoming, outgoing]) => ({ incoming, outgoing }));

/** Joint or simple: an empty outgoing half is drawn as often as a non-empty one. */
const anyConfigArb: fc.Arbitrary<JointConfig> = fc.oneof(
  jointArb,
  half(1).map((incoming) => simpleConfig(incoming)),
);

function union(c: JointConfig): number[] {
  return [...new Set([...c.incoming, ...c.outgoing])];
}

function subsets<T>(items: readonly T[]): T[][] {
  const out: T[][] = [];
  for (let mask = 0; mask < 1 << items.length; mask++) {
    out.push(items.filter((_, i) => (mask & (1 << i)) !== 0));
  }
  return out;
}

/** `s` holds more than half of `voters`; an empty half constrains nothing. */
function isQuorumOf(s: readonly number[], voters: readonly number[]): boolean {
  if (voters.length === 0) return true;
  return 2 * voters.filter((id) => s.includes(id)).length > voters.length;
}

function isJointQuorum(s: readonly number[], c: JointConfig): boolean {
  return isQuorumOf(s, c.incoming) && isQuorumOf(s, c.outgoing);
}

/** The largest N such that some joint quorum all have match >= N (0 if none). */
function naiveCommitted(c: JointConfig, match: ReadonlyMap<number, number>): number {
  let best = 0;
  for (const s of subsets(union(c))) {
    if (s.length === 0 || !isJointQuorum(s, c)) continue;
    best = Math.max(best, Math.min(...s.map((id) => match.get(id) ?? 0)));
  }
  return best;
}

/** Won if the grants are a joint quorum; lost if no way of filling in the silent voters wins. */
function naiveVote(c: JointConfig, votes: ReadonlyMap<number, boolean>): VoteResult {
  const voters = union(c);
  const granted = voters.filter((id) => votes.get(id) === true);
  if (isJointQuorum(granted, c)) return 'won';
  const silent = voters.filter((id) => !votes.has(id));
  const canWin = subsets(silent).some((extra) => isJointQuorum([...granted, ...extra], c));
  return canWin ? 'pending' : 'lost';
}

function naiveHasQuorum(c: JointConfig, active: (id: number) => boolean): boolean {
  return isJointQuorum(union(c).filter(active), c);
}

const withMatch = (configs: fc.Arbitrary<JointConfig>) =>
  configs.chain((c) =>
    fc
      .array(fc.integer({ min: 0, max: 20 }), { minLength: 9, maxLength: 9 })
      .map((values) => ({ c, match: new Map(union(c).map((id) => [id, values[id - 1] ?? 0])) })),
  );

const withVotes = (configs: fc.Arbitrary<JointConfig>) =>
  configs.chain((c) =>
    fc
      .array(fc.constantFrom<boolean | null>(true, false, null), { minLength: 9, maxLength: 9 })
      .map((vs) => {
        const votes = new Map<number, boolean>();
        for (const id of union(c)) {
          const v = vs[id - 1];
          if (v !== null && v !== undefined) votes.set(id, v);
        }
        return { c, votes };
      }),
  );

const withActive = (configs: fc.Arbitrary<JointConfig>) =>
  configs.chain((c) =>
    fc
      .array(fc.boolean(), { minLength: 9, maxLength: 9 })
      .map((flags) => ({ c, active: (id: number): boolean => flags[id - 1] === true })),
  );

// ---------------------------------------------------------------------------------------------
// An empty outgoing half is the simple majority

void test('a joint config with an empty outgoing half commits as the simple majority', () => {
  fc.assert(
    fc.property(withMatch(half(1).map(simpleConfig)), ({ c, match }) => {
      const m = (id: number): number => match.get(id) ?? 0;
      assert.equal(jointCommittedIndex(c, m), committedIndex(c.incoming, m));
    }),
    { numRuns: 500 },
  );
});

void test('a joint config with an empty outgoing half votes as the simple majority', () => {
  fc.assert(
    fc.property(withVotes(half(1).map(simpleConfig)), ({ c, votes }) => {
      assert.equal(jointVoteResult(c, votes), voteResult(c.incoming, votes));
    }),
    { numRuns: 500 },
  );
});

void test('a joint config with an empty outgoing half has a quorum as the simple majority', () => {
  fc.assert(
    fc.property(withActive(half(1).map(simpleConfig)), ({ c, active }) => {
      assert.equal(jointHasQuorum(c, active), hasQuorum(c.incoming, active));
    }),
    { numRuns: 500 },
  );
});

void test('the voters of a simple config are its incoming half, in order', () => {
  fc.assert(
    fc.property(half(1), (voters) => {
      assert.deepEqual(jointVoters(simpleConfig(voters)), voters);
    }),
  );
});

// ---------------------------------------------------------------------------------------------
// Joint configurations

void test('the joint committed index is the smaller of the two halves', () => {
  fc.assert(
    fc.property(withMatch(jointArb), ({ c, match }) => {
      const m = (id: number): number => match.get(id) ?? 0;
      const expected = Math.min(committedIndex(c.incoming, m), committedIndex(c.outgoing, m));
      assert.equal(jointCommittedIndex(c, m), expected);
    }),
    { numRuns: 500 },
  );
});

void test('the joint committed index is the best floor over all joint quorums', () => {
  fc.assert(
    fc.property(withMatch(anyConfigArb), ({ c, match }) => {
      assert.equal(
        jointCommittedIndex(c, (id) => match.get(id) ?? 0),
        naiveCommitted(c, match),
      );
    }),
    { numRuns: 500 },
  );
});

void test('joint vote outcomes: won only if both won, lost if either lost, else pending', () => {
  // Disjoint halves, so each half's outcome is set by its own voters' answers.
  const c: JointConfig = { incoming: [1, 2, 3], outgoing: [4, 5, 6] };
  const answers: Record<VoteResult, readonly (boolean | null)[]> = {
    won: [true, true, null],
    lost: [false, false, null],
    pending: [true, false, null],
  };
  const table: [VoteResult, VoteResult, VoteResult][] = [
    ['won', 'won', 'won'],
    ['won', 'pending', 'pending'],
    ['won', 'lost', 'lost'],
    ['pending', 'won', 'pending'],
    ['pending', 'pending', 'pending'],
    ['pending', 'lost', 'lost'],
    ['lost', 'won', 'lost'],
    ['lost', 'pending', 'lost'],
    ['lost', 'lost', 'lost'],
  ];
  for (const [incoming, outgoing, expected] of table) {
    const votes = new Map<number, boolean>();
    const cast = (ids: readonly number[], vs: readonly (boolean | null)[]): void => {
      ids.forEach((id, i) => {
        const v = vs[i];
        if (v !== null && v !== undefined) votes.set(id, v);
      });
    };
    cast(c.incoming, answers[incoming]);
    cast(c.outgoing, answers[outgoing]);
    assert.equal(voteResult(c.incoming, votes), incoming, 'incoming half set up wrong');
    assert.equal(voteResult(c.outgoing, votes), outgoing, 'outgoing half set up wrong');
    assert.equal(jointVoteResult(c, votes), expected, `incoming ${incoming}, outgoing ${outgoing}`);
  }
});

void test('jointVoteResult agrees with enumerating how silent voters could answer', () => {
  fc.assert(
    fc.property(withVotes(anyConfigArb), ({ c, votes }) => {
      assert.equal(jointVoteResult(c, votes), naiveVote(c, votes));
    }),
    { numRuns: 500 },
  );
});

void test('jointHasQuorum agrees with enumerating joint quorums', () => {
  fc.assert(
    fc.property(withActive(anyConfigArb), ({ c, active }) => {
      assert.equal(jointHasQuorum(c, active), naiveHasQuorum(c, active));
    }),
    { numRuns: 500 },
  );
});

void test('jointVoters lists every voter of either half once', () => {
  fc.assert(
    fc.property(jointArb, (c) => {
      const ids = jointVoters(c);
      assert.equal(new Set(ids).size, ids.length, 'duplicate ids');
      assert.deepEqual([...ids].sort(), union(c).sort());
    }),
  );
});

// ---------------------------------------------------------------------------------------------
// Planted bugs: the oracles must catch plausible mistakes, or the properties above prove nothing.

function caught<T>(arb: fc.Arbitrary<T>, agrees: (x: T) => boolean): boolean {
  return fc.check(fc.property(arb, agrees), { numRuns: 500, seed: 1 }).failed;
}

void test('the oracles catch a joint commit that takes the larger half', () => {
  const buggy = (c: JointConfig, m: (id: number) => number): number =>
    c.outgoing.length === 0
      ? committedIndex(c.incoming, m)
      : Math.max(committedIndex(c.incoming, m), committedIndex(c.outgoing, m));
  assert.ok(
    caught(
      withMatch(jointArb),
      ({ c, match }) => buggy(c, (id) => match.get(id) ?? 0) === naiveCommitted(c, match),
    ),
  );
});

void test('the oracles catch a joint commit that ignores the outgoing half', () => {
  const buggy = (c: JointConfig, m: (id: number) => number): number =>
    committedIndex(c.incoming, m);
  assert.ok(
    caught(
      withMatch(jointArb),
      ({ c, match }) => buggy(c, (id) => match.get(id) ?? 0) === naiveCommitted(c, match),
    ),
  );
});

void test('the oracles catch a joint election won by either half', () => {
  const buggy = (c: JointConfig, votes: ReadonlyMap<number, boolean>): VoteResult => {
    const a = voteResult(c.incoming, votes);
    if (c.outgoing.length === 0) return a;
    const b = voteResult(c.outgoing, votes);
    if (a === 'won' || b === 'won') return 'won';
    return a === 'lost' && b === 'lost' ? 'lost' : 'pending';
  };
  assert.ok(caught(withVotes(jointArb), ({ c, votes }) => buggy(c, votes) === naiveVote(c, votes)));
});

void test('the oracles catch a joint quorum check satisfied by either half', () => {
  const buggy = (c: JointConfig, active: (id: number) => boolean): boolean =>
    hasQuorum(c.incoming, active) || (c.outgoing.length > 0 && hasQuorum(c.outgoing, active));
  assert.ok(
    caught(withActive(jointArb), ({ c, active }) => buggy(c, active) === naiveHasQuorum(c, active)),
  );
});
