// The leader's picture of the cluster (etcd-io/raft's tracker package): the configuration in
// force, what is known of each member's log (Progress), and the votes of an election in
// progress. Every quorum decision of the core is taken here, through the joint-capable
// functions of quorum.ts: the committed index, the vote tally, check-quorum and ReadIndex
// acknowledgements. Nothing else in the core counts voters.

import { confMembers, simpleConf, type ConfState } from './confchange.js';
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
  /** Replicated to, counted in no decision. Invariant: none is a voter of either half. */
  readonly learners: readonly NodeId[];
  /** Outgoing voters that become learners when the joint configuration is left. */
  readonly learnersNext: readonly NodeId[];
  /** The leader leaves the joint configuration by itself once it is applied. */
  readonly autoLeave: boolean;
}

export class ProgressTracker {
  private cfg: TrackerConfig;
  /** Every voter of either half, once, in a stable order: replication walks it often. */
  private ids: readonly NodeId[];
  /** Every member: the voters, then the learners. */
  private members: readonly NodeId[];
  /** Invariant: once reset, holds a Progress for exactly the ids in `members`. */
  readonly progress = new Map<NodeId, Progress>();
  /** The election in progress: true for a granted vote, false for a refused one. */
  readonly votes = new Map<NodeId, boolean>();
  private readonly maxInflightMsgs: number;
  private readonly maxInflightBytes: number;

  constructor(voters: JointConfig, maxInflightMsgs: number, maxInflightBytes: number) {
    this.cfg = { voters, learners: [], learnersNext: [], autoLeave: false };
    this.ids = jointVoters(voters);
    this.members = this.ids;
    this.maxInflightMsgs = maxInflightMsgs;
    this.maxInflightBytes = maxInflightBytes;
  }

  config(): TrackerConfig {
    return this.cfg;
  }

  /** The configuration in force, as a snapshot records it. */
  confState(): ConfState {
    const c = this.cfg;
    return {
      voters: c.voters.incoming,
      learners: c.learners,
      outgoing: c.voters.outgoing,
      learnersNext: c.learnersNext,
      autoLeave: c.autoLeave,
    };
  }

  /** Every voter, of either half of a joint configuration. */
  voterIds(): readonly NodeId[] {
    return this.ids;
  }

  /** Every member the leader replicates to: voters of either half and learners. */
  memberIds(): readonly NodeId[] {
    return this.members;
  }

  isVoter(id: NodeId): boolean {
    return this.ids.includes(id);
  }

  isLearner(id: NodeId): boolean {
    return this.cfg.learners.includes(id);
  }

  /** The voters when the configuration is not joint; null while it is. */
  simpleVoters(): readonly NodeId[] | null {
    const v = this.cfg.voters;
    return isJoint(v) ? null : v.incoming;
  }

  /** Whether `id` is the only voter: it decides everything alone. */
  isSingleton(id: NodeId): boolean {
    const v = this.cfg.voters;
    return !isJoint(v) && v.incoming.length === 1 && v.incoming[0] === id;
  }

  /** Puts a voter configuration without learners in force (see switchToConf). */
  switchTo(voters: JointConfig, next: Index): NodeId[] {
    return this.switchToConf(
      { ...simpleConf(voters.incoming), outgoing: [...voters.outgoing] },
      next,
    );
  }

  /**
   * Puts another configuration in force. Members that stay keep their progress; new ones start
   * probing from `next`, counted as recently active (check-quorum must not count a member
   * against the leader before it had a chance to answer); the progress of members that left
   * is dropped. Returns the new members.
   */
  switchToConf(c: ConfState, next: Index): NodeId[] {
    const voters: JointConfig = { incoming: c.voters, outgoing: c.outgoing };
    this.cfg = {
      voters,
      learners: c.learners,
      learnersNext: c.learnersNext,
      autoLeave: c.autoLeave,
    };
    this.ids = jointVoters(voters);
    this.members = confMembers(c);
    for (const id of [...this.progress.keys()])
      if (!this.members.includes(id)) this.progress.delete(id);
    const added: NodeId[] = [];
    for (const id of this.members) {
      if (this.progress.has(id)) continue;
      const pr = this.newProgress(next);
      pr.recentActive = true;
      this.progress.set(id, pr);
      added.push(id);
    }
    return added;
  }

  /** Forgets what was known of every member: a new term or role starts probing from `next`. */
  resetProgress(next: Index): void {
    this.progress.clear();
    for (const id of this.members) this.progress.set(id, this.newProgress(next));
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

  /**
   * The largest index a quorum of `voters` (by default the configuration's) holds (paper
   * §5.3); the §5.4.2 term check is the caller's.
   */
  committed(voters: JointConfig = this.cfg.voters): Index {
    return jointCommittedIndex(voters, (id) => {
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

  /** Whether a voter other than `self` answered within this election timeout. */
  anyVoterActive(self: NodeId): boolean {
    for (const id of this.voterIds()) {
      if (id !== self && this.progress.get(id)?.recentActive === true) return true;
    }
    return false;
  }

  /** Whether every voter other than `self` holds the log up to `index`, as far as known. */
  votersHold(self: NodeId, index: Index): boolean {
    for (const id of this.voterIds()) {
      if (id !== self && (this.progress.get(id)?.match ?? 0) < index) return false;
    }
    return true;
  }

  /** Whether the voters for which `acked` holds form a quorum (ReadIndex rounds). */
  confirmedBy(acked: (id: NodeId) => boolean): boolean {
    return jointHasQuorum(this.cfg.voters, acked);
  }

  private newProgress(next: Index): Progress {
    return new Progress(next, this.maxInflightMsgs, this.maxInflightBytes);
  }
}
