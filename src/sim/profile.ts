// Swarm testing (Groce et al., "Swarm Testing", ISSTA 2012): rather than every run using every
// fault at a fixed rate, each seed draws which faults are on and how often, the cluster size
// and the timing. Runs that leave some faults out reach states the full mix drowns out.

import type { Rng } from '../raft/index.js';
import { SimError } from './errors.js';

export type ClusterSize = 3 | 5 | 7;

export interface Profile {
  readonly nodes: ClusterSize;
  // Raft configuration.
  readonly electionTicks: number;
  readonly heartbeatTicks: number;
  readonly preVote: boolean;
  readonly checkQuorum: boolean;
  readonly maxEntriesPerMsg: number;
  readonly maxInflightMsgs: number;
  // Timing.
  readonly tickMs: number;
  /** Each node's clock runs up to +-this fraction slow or fast against virtual time (drift). */
  readonly tickSkew: number;
  readonly delayMinMs: number;
  readonly delayMaxMs: number;
  /** Upper bound of one persist's virtual latency (0: writes finish at once). */
  readonly persistMaxMs: number;
  // Faults (rates are per message; intervals are means, 0 turns the fault off).
  readonly dropRate: number;
  readonly dupRate: number;
  readonly partitionEveryMs: number;
  readonly partitionForMs: number;
  readonly oneWay: boolean;
  readonly crashEveryMs: number;
  readonly restartAfterMs: number;
  readonly transferEveryMs: number;
  /** Mean interval between disk wipes (a node's data directory lost; 0: off). */
  readonly wipeEveryMs: number;
  /**
   * Membership churn (membership.ts): the leader is asked for a random change about this often;
   * 0 turns it off. Never drawn, so the profile of every seed is what it was before it existed.
   */
  readonly membershipEveryMs: number;
  /**
   * Ranges (src/server/range-groups.ts): 0 runs the key-value store as one group, as every
   * seed did before ranges; otherwise the most ranges splits may make. Never drawn here (see
   * drawRangeProfile), so no other seed's profile moves.
   */
  readonly ranges: number;
  /** With ranges, the share of client operations that split the range holding their key. */
  readonly splitRatio: number;
  /**
   * With ranges, the mean interval between replica moves (mover.ts; 0: none). Never drawn
   * here (see drawMoveProfile). With moves, a range split off range 0 has three replicas.
   */
  readonly moveEveryMs: number;
  /**
   * Quiescing idle groups (RaftConfig.quiesce, DESIGN.md "Quiescing idle groups"). Never
   * drawn, so no seed's profile moves; the liveness phase then also waits for every group to
   * quiesce on every node, caught up.
   */
  readonly quiesce: boolean;
  /** Take a snapshot and compact once this many entries were applied since the last (0: never). */
  readonly snapshotEvery: number;
  // Workload.
  readonly clients: number;
  readonly thinkMs: number;
  readonly readRatio: number;
  /**
   * The share of reads asked as lease reads (DESIGN.md, "Lease reads"). With check-quorum on,
   * the nodes hold leases with a drift bound that covers tickSkew (leaseDriftTicks).
   */
  readonly leaseReadRatio: number;
  /**
   * Followers told a commit index that moved alone at the next tick (RaftConfig.commitOnTick),
   * as the product's nodes run; off, at once.
   */
  readonly commitOnTick: boolean;
  /** ReadIndex rounds to a quorum's worth of followers only (RaftConfig.readRoundsToQuorum). */
  readonly readRoundsToQuorum: boolean;
  readonly keys: number;
  /**
   * How long a client waits for one attempt's answer, in election timeouts, before it tries
   * another node (3: clients wait out an election and its retries where they are). 1 makes
   * them impatient (`--impatient`): a write stuck at a leader that was cut off is sent again to
   * another node while the first copy may still commit, and a client's reads after it go to a
   * new leader sooner. Never drawn, so no seed's profile moves.
   */
  readonly attemptTimeoutElections: number;
  /** Length of the phase with faults; a fault-free liveness phase follows. */
  readonly faultPhaseMs: number;
}

function pick<T>(rng: Rng, options: readonly T[]): T {
  return options[rng.int(options.length)] as T;
}

function onOff(rng: Rng, pOn: number, value: () => number): number {
  return rng.float() < pOn ? value() : 0;
}

/** Draws a profile from `rng`; every draw happens whatever `overrides` says, so replaying a
 * seed with an override changes only the overridden fields. */
export function drawProfile(rng: Rng, overrides: Partial<Profile> = {}): Profile {
  const tickMs = 10;
  const drawn: Omit<
    Profile,
    | 'membershipEveryMs'
    | 'ranges'
    | 'splitRatio'
    | 'moveEveryMs'
    | 'quiesce'
    | 'attemptTimeoutElections'
  > = {
    nodes: pick(rng, [3, 3, 5, 5, 7] as const),
    electionTicks: 5 + rng.int(11),
    heartbeatTicks: pick(rng, [1, 1, 2, 3]),
    preVote: rng.float() < 0.7,
    checkQuorum: rng.float() < 0.7,
    maxEntriesPerMsg: pick(rng, [1, 2, 4, 64, 4096]),
    maxInflightMsgs: pick(rng, [1, 2, 8, 256]),
    tickMs,
    tickSkew: pick(rng, [0, 0.05, 0.2]),
    delayMinMs: pick(rng, [0, 1, 2]),
    delayMaxMs: pick(rng, [3, 10, 30, 60]),
    persistMaxMs: pick(rng, [0, 2, 10, 25]),
    dropRate: onOff(rng, 0.5, () => rng.float() * 0.2),
    dupRate: onOff(rng, 0.4, () => rng.float() * 0.1),
    partitionEveryMs: onOff(rng, 0.5, () => 200 + rng.int(1000)),
    partitionForMs: 100 + rng.int(600),
    oneWay: rng.float() < 0.4,
    crashEveryMs: onOff(rng, 0.5, () => 150 + rng.int(1000)),
    restartAfterMs: 10 + rng.int(400),
    transferEveryMs: onOff(rng, 0.25, () => 200 + rng.int(800)),
    snapshotEvery: onOff(rng, 0.5, () => 3 + rng.int(40)),
    clients: 1 + rng.int(4),
    thinkMs: pick(rng, [0, 5, 20, 60]),
    readRatio: pick(rng, [0, 0.2, 0.5]),
    keys: 1 + rng.int(4),
    faultPhaseMs: 1500 + rng.int(1500),
    // Drawn last, so every earlier field of a seed is what it was before wipes existed.
    wipeEveryMs: onOff(rng, 0.25, () => 300 + rng.int(1200)),
    // Drawn after wipes, for the same reason.
    leaseReadRatio: onOff(rng, 0.5, () => pick(rng, [0.5, 1])),
    // Drawn after lease reads, for the same reason.
    commitOnTick: rng.float() < 0.75,
    readRoundsToQuorum: rng.float() < 0.75,
  };
  const profile = {
    ...drawn,
    membershipEveryMs: 0,
    ranges: 0,
    splitRatio: 0,
    moveEveryMs: 0,
    quiesce: false,
    attemptTimeoutElections: 3,
    ...overrides,
  };
  validateProfile(profile);
  return profile;
}

function range(name: string, v: number, lo: number, hi: number): void {
  if (!(Number.isFinite(v) && v >= lo && v <= hi)) {
    throw new SimError('INVALID_OPTION', `${name} must be in [${lo}, ${hi}], got ${v}`);
  }
}

export function validateProfile(p: Profile): void {
  if (p.nodes !== 3 && p.nodes !== 5 && p.nodes !== 7) {
    throw new SimError('INVALID_OPTION', `nodes must be 3, 5 or 7, got ${String(p.nodes)}`);
  }
  range('electionTicks', p.electionTicks, 2, 100);
  range('heartbeatTicks', p.heartbeatTicks, 1, p.electionTicks - 1);
  range('maxEntriesPerMsg', p.maxEntriesPerMsg, 1, 1 << 20);
  range('maxInflightMsgs', p.maxInflightMsgs, 1, 1 << 20);
  range('tickMs', p.tickMs, 1, 1000);
  range('tickSkew', p.tickSkew, 0, 0.5);
  range('delayMinMs', p.delayMinMs, 0, 10_000);
  range('delayMaxMs', p.delayMaxMs, p.delayMinMs, 10_000);
  range('persistMaxMs', p.persistMaxMs, 0, 10_000);
  range('dropRate', p.dropRate, 0, 0.9);
  range('dupRate', p.dupRate, 0, 0.9);
  for (const name of [
    'partitionEveryMs',
    'crashEveryMs',
    'transferEveryMs',
    'wipeEveryMs',
    'membershipEveryMs',
    'moveEveryMs',
  ] as const) {
    range(name, p[name], 0, 1_000_000);
  }
  range('partitionForMs', p.partitionForMs, 1, 1_000_000);
  range('restartAfterMs', p.restartAfterMs, 0, 1_000_000);
  range('snapshotEvery', p.snapshotEvery, 0, 1_000_000);
  range('clients', p.clients, 0, 64);
  range('thinkMs', p.thinkMs, 0, 1_000_000);
  range('leaseReadRatio', p.leaseReadRatio, 0, 1);
  range('readRatio', p.readRatio, 0, 1);
  range('keys', p.keys, 1, 1000);
  range('attemptTimeoutElections', p.attemptTimeoutElections, 1, 100);
  range('faultPhaseMs', p.faultPhaseMs, 0, 10_000_000);
  range('ranges', p.ranges, 0, 1000);
  range('splitRatio', p.splitRatio, 0, 1);
  if (p.ranges > 0 && p.membershipEveryMs > 0)
    throw new SimError('INVALID_OPTION', 'ranges and membership churn cannot be combined yet');
  if (p.moveEveryMs > 0 && (p.ranges === 0 || p.nodes < 5))
    throw new SimError(
      'INVALID_OPTION',
      `moves need ranges and at least 5 nodes (three replicas and room to move), got ranges=${p.ranges} nodes=${p.nodes}`,
    );
}

/**
 * The move fields of a seed that moves replicas, drawn from their own source: how often a
 * move starts, more splits (a move needs a range split off range 0), five nodes unless asked
 * otherwise, and no wipes unless asked for (`--wipe-every`, which needs the meta group).
 */
export function drawMoveProfile(
  rng: Rng,
): Pick<Profile, 'moveEveryMs' | 'splitRatio' | 'nodes' | 'wipeEveryMs'> {
  return {
    moveEveryMs: 150 + rng.int(500),
    splitRatio: pick(rng, [0.05, 0.1, 0.2]),
    nodes: 5,
    wipeEveryMs: 0,
  };
}

/**
 * The range fields of a seed that runs ranges, drawn from their own source (so the rest of
 * the seed's profile is what it is without ranges): how many ranges splits may make, how
 * often a client splits, and more keys than the plain mix draws, so there is room to split.
 */
export function drawRangeProfile(rng: Rng): Pick<Profile, 'ranges' | 'splitRatio' | 'keys'> {
  return {
    ranges: 2 + rng.int(7),
    splitRatio: pick(rng, [0.02, 0.05, 0.1]),
    keys: 3 + rng.int(8),
  };
}

export function describeProfile(p: Profile): string {
  const on = (ms: number): string => (ms === 0 ? 'off' : `~${ms}ms`);
  return [
    `nodes=${p.nodes} election=${p.electionTicks}t heartbeat=${p.heartbeatTicks}t`,
    `prevote=${p.preVote} checkquorum=${p.checkQuorum}`,
    `batch=${p.maxEntriesPerMsg} inflight=${p.maxInflightMsgs}`,
    `delay=${p.delayMinMs}-${p.delayMaxMs}ms persist<=${p.persistMaxMs}ms skew=${p.tickSkew}`,
    `drop=${p.dropRate.toFixed(3)} dup=${p.dupRate.toFixed(3)}`,
    `partition=${on(p.partitionEveryMs)}${p.oneWay ? '(one-way)' : ''} crash=${on(p.crashEveryMs)}`,
    `transfer=${on(p.transferEveryMs)} wipe=${on(p.wipeEveryMs)} snapshot=${p.snapshotEvery || 'off'}`,
    ...(p.membershipEveryMs > 0 ? [`membership=${on(p.membershipEveryMs)}`] : []),
    ...(p.ranges > 0 ? [`ranges<=${p.ranges} splits=${p.splitRatio}`] : []),
    ...(p.moveEveryMs > 0 ? [`moves=${on(p.moveEveryMs)}`] : []),
    ...(p.quiesce ? ['quiesce'] : []),
    ...(p.attemptTimeoutElections !== 3 ? [`attempt=${p.attemptTimeoutElections}el`] : []),
    `clients=${p.clients} reads=${p.readRatio} keys=${p.keys} faults=${p.faultPhaseMs}ms`,
    ...(p.leaseReadRatio > 0
      ? [`lease-reads=${p.leaseReadRatio} drift=${leaseDriftTicks(p)}t`]
      : []),
  ].join(' ');
}

/**
 * The drift bound the simulated nodes are configured with: enough for the clocks tickSkew
 * allows (one node's ticks (1 + skew) times as long as virtual time's, another's (1 - skew)
 * times), plus the tick of granularity. A lease of E - d leader ticks must end before E - 1
 * ticks of the fastest follower: (E - d)(1 + s) <= (E - 1)(1 - s).
 */
export function leaseDriftTicks(p: Pick<Profile, 'electionTicks' | 'tickSkew'>): number {
  const e = p.electionTicks;
  const s = p.tickSkew;
  return Math.max(1, Math.ceil(e - ((e - 1) * (1 - s)) / (1 + s) - 1e-9));
}

/** The longest a message or a disk write takes once the faults healed (network.ts says why). */
export function healedDelayMaxMs(p: Pick<Profile, 'tickMs' | 'electionTicks'>): number {
  return Math.floor((p.tickMs * p.electionTicks) / 8);
}

/** An election timeout in virtual time, on the slowest clock the skew allows. */
export function electionTimeoutMs(
  p: Pick<Profile, 'tickMs' | 'electionTicks' | 'tickSkew'>,
): number {
  return p.tickMs * p.electionTicks * (1 + p.tickSkew);
}
