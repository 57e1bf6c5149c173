// Quorum arithmetic, kept as pure functions over small inputs so they can be tested alone
// against naive versions (see test/raft/quorum.property.test.ts).
//
// Two layers, as in etcd-io/raft's quorum package. A majority configuration is one set of
// voters deciding by majority (paper §5.2). A joint configuration is a pair of them, the
// incoming and the outgoing one, and a decision needs a majority of each (thesis §4.3, joint
// consensus). An empty outgoing half means the configuration is simple. The core makes every
// decision (commit, vote tally, ReadIndex acknowledgements, check-quorum) through the joint
// functions, so membership changes (confchange.ts) bring new configurations and no new
// decision paths.

import type { Index, NodeId } from './types.js';

export type VoteResult = 'won' | 'lost' | 'pending';

/** A set of voters deciding by majority. Invariant: the ids are distinct. */
export type MajorityConfig = readonly NodeId[];

/**
 * The voters of a configuration, possibly in transition. Invariant: `incoming` is not empty;
 * an empty `outgoing` means the configuration is simple.
 */
export interface JointConfig {
  /** The configuration being moved to; the only one when the configuration is simple. */
  readonly incoming: MajorityConfig;
  /** The configuration being left; empty when the configuration is simple. */
  readonly outgoing: MajorityConfig;
}

/** The smallest number of voters that forms a majority of `voterCount` (paper §5.2). */
export function majority(voterCount: number): number {
  return Math.floor(voterCount / 2) + 1;
}

/**
 * The largest index replicated on a majority, given each voter's match index (paper §5.3:
 * "a majority of matchIndex[i] >= N"). Voters missing from `match` count as 0.
 * The §5.4.2 current-term check is the caller's, not this function's.
 */
export function committedIndex(voters: MajorityConfig, match: (id: NodeId) => Index): Index {
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
  voters: MajorityConfig,
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
export function hasQuorum(voters: MajorityConfig, active: (id: NodeId) => boolean): boolean {
  let count = 0;
  for (const id of voters) if (active(id)) count++;
  return count >= majority(voters.length);
}

/** The simple configuration of `voters`: no outgoing half. */
export function simpleConfig(voters: MajorityConfig): JointConfig {
  return { incoming: voters, outgoing: [] };
}

export function isJoint(c: JointConfig): boolean {
  return c.outgoing.length > 0;
}

/** Every voter of either half, once: the incoming ones in order, then the outgoing-only ones. */
export function jointVoters(c: JointConfig): NodeId[] {
  const out = [...c.incoming];
  for (const id of c.outgoing) if (!c.incoming.includes(id)) out.push(id);
  return out;
}

/**
 * The largest index replicated on a majority of both halves: the smaller of the two halves'
 * committed indexes, since an index is committed only once each half has committed it.
 */
export function jointCommittedIndex(c: JointConfig, match: (id: NodeId) => Index): Index {
  const incoming = committedIndex(c.incoming, match);
  if (!isJoint(c)) return incoming;
  return Math.min(incoming, committedIndex(c.outgoing, match));
}

/**
 * An election in a joint configuration is won once both halves have granted it and lost once
 * either half has refused it; otherwise it is still pending.
 */
export function jointVoteResult(c: JointConfig, votes: ReadonlyMap<NodeId, boolean>): VoteResult {
  const incoming = voteResult(c.incoming, votes);
  if (!isJoint(c)) return incoming;
  const outgoing = voteResult(c.outgoing, votes);
  if (incoming === outgoing) return incoming;
  if (incoming === 'lost' || outgoing === 'lost') return 'lost';
  return 'pending';
}

/** Whether the voters for which `active` is true form a majority of both halves. */
export function jointHasQuorum(c: JointConfig, active: (id: NodeId) => boolean): boolean {
  if (!hasQuorum(c.incoming, active)) return false;
  return !isJoint(c) || hasQuorum(c.outgoing, active);
}
