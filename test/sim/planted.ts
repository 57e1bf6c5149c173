// Cores with one Raft rule broken each, through the protected hooks RaftNode offers for this
// purpose, and the fault mixes that make the simulator likely to expose them.

import {
  RaftNode,
  type AppendResponse,
  type Message,
  type RaftConfig,
  type VoteRequest,
} from '../../src/raft/index.js';
import { runSeed, type Profile, type SimResult, type ViolationKind } from '../../src/sim/index.js';

/** Grants votes by log length alone, ignoring the last term (breaks §5.4.1). */
export class VoteIgnoresTerms extends RaftNode {
  protected override logIsUpToDate(lastIndex: number, _lastTerm: number): boolean {
    return lastIndex >= this.status().lastIndex;
  }
}

/** Commits any entry a majority holds, even one of an earlier term (breaks §5.4.2, Figure 8). */
export class CommitsEarlierTerms extends RaftNode {
  protected override mayCommitAt(_index: number): boolean {
    return true;
  }
}

/** Sends votes and append acknowledgements before its state is durable (breaks Figure 2). */
export class AnswersBeforePersist extends RaftNode {
  protected override mustPersistBeforeSending(_m: Message): boolean {
    return false;
  }
}

/** Votes and campaigns although its data was lost and it has not caught up. */
export class VotesAfterLosingData extends RaftNode {
  protected override withholdsVote(_m: VoteRequest): boolean {
    return false;
  }
}

/** Never notices a follower that lost its log: probes stay above the old match forever. */
export class MissesLostLogs extends RaftNode {
  protected override followerLostLog(_m: AppendResponse, _match: number): boolean {
    return false;
  }
}

export const SAFETY_KINDS: ReadonlySet<ViolationKind> = new Set<ViolationKind>([
  'election-safety',
  'log-matching',
  'leader-completeness',
  'state-machine-safety',
  'committed-lost',
  'stale-read',
]);

export interface PlantedBug {
  readonly name: string;
  readonly make: (c: RaftConfig) => RaftNode;
  readonly profile: Partial<Profile>;
}

// Why these mixes: a stale-term log wins a vote only if it grew longer than the committed
// one, so a partitioned leader without check-quorum keeps taking client writes. Figure 8
// needs leaders to change while an old-term entry is half replicated, so crashes, drops and
// partitions come fast and one entry travels per message.
export const PLANTED_BUGS: readonly PlantedBug[] = [
  {
    name: 'vote check ignores log terms',
    make: (c) => new VoteIgnoresTerms(c),
    profile: {
      nodes: 3,
      preVote: false,
      checkQuorum: false,
      electionTicks: 10,
      clients: 4,
      thinkMs: 0,
      partitionEveryMs: 300,
      partitionForMs: 400,
      crashEveryMs: 0,
      transferEveryMs: 0,
      dropRate: 0,
      snapshotEvery: 0,
    },
  },
  {
    name: 'commit counts replicas of an earlier-term entry',
    make: (c) => new CommitsEarlierTerms(c),
    profile: {
      nodes: 3,
      maxEntriesPerMsg: 1,
      electionTicks: 5,
      heartbeatTicks: 1,
      delayMinMs: 1,
      delayMaxMs: 10,
      persistMaxMs: 25,
      crashEveryMs: 50,
      restartAfterMs: 20,
      dropRate: 0.2,
      partitionEveryMs: 100,
      partitionForMs: 100,
      oneWay: false,
      clients: 4,
      thinkMs: 0,
      readRatio: 0,
      snapshotEvery: 0,
      faultPhaseMs: 5000,
    },
  },
  {
    name: 'follower answers before persisting',
    make: (c) => new AnswersBeforePersist(c),
    profile: {
      nodes: 3,
      persistMaxMs: 25,
      crashEveryMs: 120,
      restartAfterMs: 30,
      partitionEveryMs: 0,
      dropRate: 0,
    },
  },
  {
    name: 'node votes after losing its data',
    make: (c) => new VotesAfterLosingData(c),
    profile: {
      nodes: 3,
      wipeEveryMs: 200,
      preVote: false,
      checkQuorum: false,
      crashEveryMs: 200,
      restartAfterMs: 50,
      clients: 4,
      thinkMs: 0,
    },
  },
];

/** Wipes with no other faults but the drawn ones: a missed lost log never catches up. */
export const LOST_LOG_PROFILE: Partial<Profile> = { nodes: 3, wipeEveryMs: 300, snapshotEvery: 0 };

/** The first seed in [start, start+bound) where the planted core breaks a safety property. */
export function findCaught(bug: PlantedBug, start: number, bound: number): SimResult | null {
  for (let seed = start; seed < start + bound; seed++) {
    const r = runSeed({ seed, profile: bug.profile, createNode: bug.make });
    if (r.violations.some((v) => SAFETY_KINDS.has(v.kind))) return r;
  }
  return null;
}
