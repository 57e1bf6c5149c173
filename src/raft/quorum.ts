// Majority-quorum arithmetic, kept as pure functions over small inputs so they can be tested
// alone against naive versions (see test/raft/quorum.test.ts).

import type { Index, NodeId } from './types.js';

export type VoteResult = 'won' | 'lost' | 'pending';

/** The smallest number of voters that forms a majority of `voterCount` (paper §5.2). */
export function majority(voterCount: number): number {
  return Math.floor(voterCount / 2) + 1;
}

/**
 * The largest index replicated on a majority, given each voter's match index (paper §5.3:
 * "a majority of matchIndex[i] >= N"). Voters missing from `match` count as 0.
 * The §5.4.2 current-term check is the caller's, not this function's.
 */
export function committedIndex(voters: readonly NodeId[], match: (id: NodeId) => Index): Index {
  const n = voters.length;
  if (n === 0) return 0;
  const values = new Array<number>(n);
  for (let i = 0; i < n; i++) values[i] = match(voters[i] as NodeId);
  // Sort descending: the value at position majority-1 is held by at least a majority.
  values.sort((a, b) => b - a);
  return values[majority(n) - 1] as number;
}

/** Tally of an election: won once a majority granted, lost once a majority can no longer grant. */
export function voteResult(
  voters: readonly NodeId[],
  votes: ReadonlyMap<NodeId, boolean>,
): VoteResult {
  let granted = 0;
  let refused = 0;
  for (const id of voters) {
    const v = votes.get(id);
    if (v === true) granted++;
    else if (v === false) refused++;
  }
  const need = majority(voters.length);
  if (granted >= need) return 'won';
  if (voters.length - refused < need) return 'lost';
  return 'pending';
}

/** Whether the voters for which `active` is true form a majority. */
export function hasQuorum(voters: readonly NodeId[], active: (id: NodeId) => boolean): boolean {
  let count = 0;
  for (const id of voters) if (active(id)) count++;
  return count >= majority(voters.length);
}
