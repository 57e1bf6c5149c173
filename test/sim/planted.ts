// Cores and runtimes with one rule broken each, through the protected hooks RaftNode and
// RaftRuntime offer for this purpose, and the fault mixes that make the simulator likely to
// expose them.

import {
  RaftNode,
  changeConf,
  type AppendResponse,
  type ConfChange,
  type ConfState,
  type JointConfig,
  type Result,
  type Entry,
  type Message,
  type RaftConfig,
  type VoteRequest,
} from '../../src/raft/index.js';
import { RaftRuntime } from '../../src/host/runtime.js';
import type { ApplyResult } from '../../src/kv/machine.js';
import type { Command } from '../../src/host/contracts.js';
import {
  runSeed,
  type KvPlant,
  type Profile,
  type SimOptions,
  type SimResult,
  type ViolationKind,
} from '../../src/sim/index.js';

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

/**
 * Applies every membership change in one step, a change of two voters too: old and new
 * majorities need not overlap (breaks thesis §4.3, joint consensus).
 */
export class ChangesVotersInOneStep extends RaftNode {
  protected override nextConf(c: ConfState, cc: ConfChange): Result<ConfState> {
    const r = changeConf(c, cc);
    if (!r.ok || r.value.outgoing.length === 0) return r;
    const { learners, learnersNext } = r.value;
    const value = { ...r.value, outgoing: [], learnersNext: [], autoLeave: false };
    return { ok: true, value: { ...value, learners: [...learners, ...learnersNext].sort() } };
  }
}

/** Counts its learners' acknowledgements toward commit (learners must count in no decision). */
export class CountsLearnersTowardCommit extends RaftNode {
  protected override commitVoters(voters: JointConfig, learners: readonly number[]): JointConfig {
    return { incoming: [...voters.incoming, ...learners], outgoing: voters.outgoing };
  }
}

/**
 * Counts its lease from when a quorum's answers arrived rather than from when the round was
 * sent, and ignores the drift bound (breaks DESIGN.md, "Lease reads"): with clocks that drift,
 * a cut-off leader serves lease reads after the others elected a new leader.
 */
export class LeaseFromAckWithoutDrift extends RaftNode {
  private readonly electionTicks: number;
  constructor(c: RaftConfig) {
    super(c);
    this.electionTicks = c.electionTicks ?? 10;
  }
  protected override leaseEnd(_sentTick: number, nowTick: number): number {
    return nowTick + this.electionTicks;
  }
}

/** Never notices a follower that lost its log: probes stay above the old match forever. */
export class MissesLostLogs extends RaftNode {
  protected override followerLostLog(_m: AppendResponse, _match: number): boolean {
    return false;
  }
}

/**
 * A quiesced node that never wakes (DESIGN.md, "Quiescing idle groups"): neither a message nor
 * its host's failure detection restarts its timers, so once the leader of a quiesced group is
 * gone its followers never campaign.
 */
export class NeverWakes extends RaftNode {
  protected override wakes(): boolean {
    return false;
  }
}

/**
 * Answers a proposal once the leader's own write of it is durable, before it commits: an
 * acknowledged write can then be lost with the leader (breaks §5.3, "the leader returns the
 * result once the entry is committed").
 */
export class AcknowledgesBeforeCommit extends RaftRuntime {
  protected override earlyAnswer(_entry: Entry): { readonly result: unknown } | null {
    const result: ApplyResult = { revision: 0, succeeded: true, results: [] };
    return { result };
  }
}

/**
 * Sends append acknowledgements before the write they acknowledge is durable: a crash then
 * loses entries the leader counted toward a commit (breaks Figure 2's persistence rule).
 */
export class RuntimeAcksBeforePersist extends RaftRuntime {
  protected override mustPersistBeforeSending(m: Message): boolean {
    return m.type !== 'append-resp';
  }
}

/**
 * Sends every write without its client session, so the state machine cannot tell a retry from
 * a new write (breaks exactly-once, thesis §6.3).
 */
export const forgetsSessions = (): null => null;

/** Wipes and crashes often, with no pre-vote or check-quorum to mask a node that lost its data. */
export const WIPE_HEAVY_PROFILE: Partial<Profile> = {
  nodes: 3,
  wipeEveryMs: 200,
  preVote: false,
  checkQuorum: false,
  crashEveryMs: 200,
  restartAfterMs: 50,
  clients: 4,
  thinkMs: 0,
};

/**
 * Lease reads only, clocks drifting by up to 20%, and a leader often cut off alone while the
 * others elect a new one: the window a wrong lease leaves open. The simulator's lease check
 * (checker.ts, checkLease) sees the overlap whether or not a read fell into it; a stale read
 * also needs a write the old leader missed, which these schedules rarely give (about one seed
 * in 400). With this profile the overlap shows in 5 seeds of 200, the first at seed 14.
 */
export const LEASE_PROFILE: Partial<Profile> = {
  nodes: 3,
  leaseReadRatio: 1,
  commitOnTick: false,
  faultPhaseMs: 3000,
  readRatio: 0.5,
  checkQuorum: true,
  preVote: false,
  tickSkew: 0.2,
  electionTicks: 15,
  heartbeatTicks: 1,
  partitionEveryMs: 250,
  partitionForMs: 400,
  oneWay: false,
  crashEveryMs: 0,
  dropRate: 0,
  dupRate: 0,
  delayMinMs: 0,
  delayMaxMs: 3,
  persistMaxMs: 0,
  transferEveryMs: 0,
  wipeEveryMs: 0,
  clients: 4,
  thinkMs: 0,
  keys: 1,
};

export const SAFETY_KINDS: ReadonlySet<ViolationKind> = new Set<ViolationKind>([
  'election-safety',
  'log-matching',
  'leader-completeness',
  'state-machine-safety',
  'committed-lost',
  'stale-read',
  'lease-overlap',
  'exactly-once',
  'early-ack',
  'linearizability',
  'configuration',
  'range-map',
  'range-replicas',
  'retired-serving',
  'meta-map',
  'meta-agreement',
  'placement',
]);

export interface PlantedBug {
  readonly name: string;
  /** What the bug is planted in: the core or the runtime (the options that build it). */
  readonly plant: Pick<SimOptions, 'createNode' | 'startRuntime' | 'writeSession'>;
  readonly profile: Partial<Profile>;
  /** The violation it must be caught by, when only one fits. */
  readonly expect?: ViolationKind;
}

// Why these mixes: a stale-term log wins a vote only if it grew longer than the committed
// one, so a partitioned leader without check-quorum keeps taking client writes. Figure 8
// needs leaders to change while an old-term entry is half replicated, so crashes, drops and
// partitions come fast and one entry travels per message.
export const PLANTED_BUGS: readonly PlantedBug[] = [
  {
    name: 'vote check ignores log terms',
    plant: { createNode: (c) => new VoteIgnoresTerms(c) },
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
    plant: { createNode: (c) => new CommitsEarlierTerms(c) },
    profile: {
      nodes: 3,
      // The product's defaults, drawn otherwise. Since a vote of a lower term is answered with
      // the higher term, candidates catch up at once and the drawn mix found Figure 8 at seed
      // 465 (55 before); with these, at seed 36.
      preVote: true,
      checkQuorum: true,
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
    plant: { createNode: (c) => new AnswersBeforePersist(c) },
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
    plant: { createNode: (c) => new VotesAfterLosingData(c) },
    profile: WIPE_HEAVY_PROFILE,
  },
  {
    name: 'lease counts from the acknowledgement and ignores clock drift',
    plant: { createNode: (c) => new LeaseFromAckWithoutDrift(c) },
    expect: 'lease-overlap',
    profile: LEASE_PROFILE,
  },
];

/** Planted in the runtime rather than the core (the runtime's own obligations). */
export const RUNTIME_BUGS: readonly PlantedBug[] = [
  {
    name: 'acknowledges a write before it commits',
    plant: { startRuntime: (o) => AcknowledgesBeforeCommit.start(o) },
    expect: 'early-ack',
    profile: { nodes: 3, clients: 2, readRatio: 0 },
  },
  {
    name: 'answers an append before its write is durable',
    plant: { startRuntime: (o) => RuntimeAcksBeforePersist.start(o) },
    expect: 'committed-lost',
    profile: {
      nodes: 3,
      persistMaxMs: 25,
      crashEveryMs: 120,
      restartAfterMs: 30,
      partitionEveryMs: 0,
      dropRate: 0,
    },
  },
];

/** Planted in the state machine: retries must meet lost answers, so timeouts come often. */
export const SESSION_BUG: PlantedBug = {
  name: 'state machine whose writes carry no session',
  plant: { writeSession: forgetsSessions },
  expect: 'exactly-once',
  profile: { nodes: 3, clients: 4, thinkMs: 0, readRatio: 0, crashEveryMs: 150, dropRate: 0.1 },
};

/**
 * A key-value machine that, on node `node` alone, skips every command at an index ending in 3
 * and answers it with the revision it stands at: its replica drifts from the others while
 * every log, and what the core hands out to apply, stays correct.
 */
export function skipsCommands(node: number): KvPlant {
  return (kv, id) => {
    if (id !== node) return;
    const apply = kv.apply.bind(kv);
    kv.apply = (commands) => {
      const skipped = (c: Command): boolean => c.index % 10 === 3;
      const results = apply(commands.filter((c) => !skipped(c)));
      let i = 0;
      return commands.map((c) =>
        skipped(c) ? ({ revision: kv.revision() } as ApplyResult) : (results[i++] as ApplyResult),
      );
    };
  };
}

/** Wipes with no other faults but the drawn ones: a missed lost log never catches up. */
export const LOST_LOG_PROFILE: Partial<Profile> = { nodes: 3, wipeEveryMs: 300, snapshotEvery: 0 };

/** The first seed in [start, start+bound) where the planted core breaks a safety property. */
export async function findCaught(
  bug: PlantedBug,
  start: number,
  bound: number,
): Promise<SimResult | null> {
  for (let seed = start; seed < start + bound; seed++) {
    const r = await runSeed({ seed, profile: bug.profile, ...bug.plant });
    if (r.violations.some((v) => SAFETY_KINDS.has(v.kind))) return r;
  }
  return null;
}
