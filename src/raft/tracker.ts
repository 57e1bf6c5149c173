// The leader's picture of the cluster (etcd-io/raft's tracker package): the configuration in
// force, what is known of each member's log (Progress), and the votes of an election in
// progress. Every quorum decision of the core is taken here, through the joint-capable
// functions of quorum.ts: the committed index, the vote tally, check-quorum and ReadIndex
// acknowledgements. Nothing else in the core counts voters.

import { Progress } from './progress.js';
import {
  isJoint,
  jointCommittedIndex,
  jointHasQuorum,
  jointVoteResult,
  jointVoters,
  type JointConfig,
  type VoteResult,
} from './quorum.js';
import type { Index, NodeId } from './types.js';

/** The membership in force. */
export interface TrackerConfig {
  /** Who votes, and by which majorities. */
  readonly voters: JointConfig;
  // Learners (replicated to, counted in no decision) and the learners a joint configuration
  // adds when it is left will sit beside the voters here.
}

export class ProgressTracker {
  private cfg: TrackerConfig;
  /** Every voter of either half, once, in a stable order: replication walks it often. */
  private ids: readonly NodeId[];
  /** Invariant: once reset, holds a Progress for exactly the ids in `ids`. */
  readonly progress = new Map<NodeId, Progress>();
  /** The election in progress: true for a granted vote, false for a refused one. */
  readonly votes = new Map<NodeId, boolean>();
  private readonly maxInflightMsgs: number;
  private readonly maxInflightBytes: number;

  constructor(voters: JointConfig, maxInflightMsgs: number, maxInflightBytes: number) {
    this.cfg = { voters };
    this.ids = jointVoters(voters);
    this.maxInflightMsgs = maxInflightMsgs;
    this.maxInflightBytes = maxInflightBytes;
  }

  config(): TrackerConfig {
    return this.cfg;
  }

  /** Every voter, of either half of a joint configuration. */
  voterIds(): readonly NodeId[] {
    return this.ids;
  }

  isVoter(id: NodeId): boolean {
    return this.ids.includes(id);
  }

  /** Whether `id` is the only voter: it decides everything alone. */
  isSingleton(id: NodeId): boolean {
    const v = this.cfg.voters;
    return !isJoint(v) && v.incoming.length === 1 && v.incoming[0] === id;
  }

  /**
   * Puts another configuration in force. Members that stay keep their progress; new ones start
   * probing from `next`; the progress of members that left is dropped.
   */
  switchTo(voters: JointConfig, next: Index): void {
    this.cfg = { voters };
    this.ids = jointVoters(voters);
    for (const id of [...this.progress.keys()])
      if (!this.ids.includes(id)) this.progress.delete(id);
    for (const id of this.ids)
      if (!this.progress.has(id)) this.progress.set(id, this.newProgress(next));
  }

  /** Forgets what was known of every member: a new term or role starts probing from `next`. */
  resetProgress(next: Index): void {
    this.progress.clear();
    for (const id of this.ids) this.progress.set(id, this.newProgress(next));
  }

  get(id: NodeId): Progress | undefined {
    return this.progress.get(id);
  }

  /**
   * A follower that is recovering lost data may have forgotten a term it knew, and could help
   * a stale leader reach a quorum that overlaps the current leader's only in itself. Like a
   * learner, it is replicated to but counts toward no quorum (commit, ReadIndex, check-quorum)
   * until it has caught up.
   */
  countsInQuorum(id: NodeId): boolean {
    return !(this.progress.get(id)?.catchingUp ?? false);
  }

  /** The largest index a quorum holds (paper §5.3); the §5.4.2 term check is the caller's. */
  committed(): Index {
    return jointCommittedIndex(this.cfg.voters, (id) => {
      const pr = this.progress.get(id);
      return pr === undefined || pr.catchingUp ? 0 : pr.match;
    });
  }

  resetVotes(): void {
    this.votes.clear();
  }

  /** Records `id`'s answer; a later answer from the same voter replaces an earlier one. */
  recordVote(id: NodeId, granted: boolean): void {
    this.votes.set(id, granted);
  }

  tallyVotes(): VoteResult {
    return jointVoteResult(this.cfg.voters, this.votes);
  }

  /**
   * Check-quorum (thesis §6.2): whether the members heard from since the last check form a
   * quorum. The leader keeps its own progress marked active.
   */
  quorumActive(): boolean {
    return jointHasQuorum(this.cfg.voters, (id) => {
      const pr = this.progress.get(id);
      return pr !== undefined && pr.recentActive && !pr.catchingUp;
    });
  }

  /** Whether the voters for which `acked` holds form a quorum (ReadIndex rounds). */
  confirmedBy(acked: (id: NodeId) => boolean): boolean {
    return jointHasQuorum(this.cfg.voters, acked);
  }

  private newProgress(next: Index): Progress {
    return new Progress(next, this.maxInflightMsgs, this.maxInflightBytes);
  }
}
