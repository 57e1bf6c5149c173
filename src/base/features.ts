// Feature levels: the gate that keeps a rolling upgrade from splitting the replicas. A release
// runs at FEATURE_LEVEL; a command a release before some level does not know is introduced at
// that level, and a node proposes it only once the cluster's active level (decided in group 0's
// log, DESIGN.md "Upgrades") reached it. An older member would refuse such a command when it
// applies it while the others apply it, and their states would part for good.
//
// Adding a replicated command that an older release would not apply the same way: give it a
// new entry below at the next level, raise FEATURE_LEVEL to it, and call the node's
// FeatureGate.require with it before proposing (src/server/feature-gate.ts). Levels are never
// reused or renumbered: a member reports the number, and the cluster remembers it.

export interface Feature {
  /** The level that enables it; a cluster below it refuses its commands before proposing. */
  readonly level: number;
  /** What it is, for messages. */
  readonly name: string;
  /** The commands it introduces (what the gate checks, for the documentation). */
  readonly commands: readonly string[];
}

/** Every feature behind the gate, by the level that enables it. */
export const features = {
  /** The queue's reports that claim the next jobs, and bulk adds. */
  queueNextAndBulk: {
    level: 1,
    name: "the queue's report with next and bulk add",
    commands: ['queue complete/fail with "next"', 'queue addBulk'],
  },
  /**
   * Ranges: a range's split and every command of the meta group's machine. A range's `replicas`
   * command needs no check of its own: it changes only ranges a split made, and a split is
   * refused until every member runs a release that knows it.
   */
  ranges: {
    level: 2,
    name: 'ranges (split and the range map)',
    commands: [
      'range split',
      'range replicas (through the split that made the range)',
      'meta bootstrap',
      'meta allocate',
      'meta recordSplit',
      'meta recordReplicas',
      'meta drain',
      'meta undrain',
    ],
  },
  /**
   * A delete with `prevKv` bounded by `maxRangeBytes`: its op carries `prevKvBytesMax`, and a
   * member that knows it refuses the delete when it applies it over a range holding more. A
   * release before it ignores the field and deletes, so it is proposed only from this level;
   * below it a delete with `prevKv` is proposed without the bound, as before.
   */
  boundedPrevKv: {
    level: 3,
    name: 'deletes with prevKv bounded by maxRangeBytes',
    commands: ['kv delete with "prevKvBytesMax"'],
  },
  /**
   * A write's session acknowledgement mark (Raft thesis §6.3): the envelope's seventh element,
   * the lowest sequence number its client still awaits, below which the session layer forgets
   * results. A release before it refuses a 7-element envelope, so below this level a node
   * proposes the write without the mark and the session keeps its whole window, as before.
   */
  sessionAcks: {
    level: 4,
    name: 'session acknowledgement marks (ackedBelow)',
    commands: ['kv and queue writes with "ackedBelow"'],
  },
  /**
   * A drain with `force`: the meta group's `drain` command carries `force: true`, and the
   * placement loop may then take ranges below their replication factor to empty the node. A
   * release before it refuses the field (an unknown field is a bad command) and could not read
   * the format 3 meta snapshot that records the mark.
   */
  forcedDrain: {
    level: 5,
    name: 'forced drains (drain with "force")',
    commands: ['meta drain with "force"'],
  },
  /**
   * The queue's bulk report: several completes and fails in one entry (a worker's slots that
   * finished in the same turn). A release before it refuses the unknown command; a client
   * refused it sends the reports one by one.
   */
  queueReportBulk: {
    level: 6,
    name: "the queue's bulk report",
    commands: ['queue reportBulk'],
  },
  /**
   * A split refused while the store holds leases: the split command carries `noLeases`, and a
   * member that knows it refuses the split (LEASES_HELD) when it applies it over a store with a
   * lease, whose keys in the new range would outlive it. A release before it ignores the field
   * and splits, so below this level the split is checked by its proposer alone.
   */
  splitWithoutLeases: {
    level: 7,
    name: 'range splits refused while the store holds leases',
    commands: ['range split with "noLeases"'],
  },
  /**
   * A queue fail with `release`: the job goes back to waiting at once and its attempt is not
   * counted (a worker that stopped before the job ran out). A release before it refuses the
   * unknown field; the client, refused it, fails the job as before.
   */
  queueRelease: {
    level: 8,
    name: "the queue's release (a fail that counts no attempt)",
    commands: ['queue fail with "release"'],
  },
  /**
   * A claim (or a report's next claim) with `maxBytes`: it stops before the job whose payload
   * would bring the bytes claimed past it (the queue's `maxAnswerBytes`). A release before it
   * refuses the unknown field, so below this level a claim is proposed without it and takes
   * up to its count whatever the jobs' sizes.
   */
  queueClaimBytes: {
    level: 9,
    name: 'claims bounded in bytes',
    commands: ['queue claim with "maxBytes"', 'queue report with "next.maxBytes"'],
  },
  /**
   * A release counted on the job (`counted` in a fail with `release`), and one past its
   * queue's `maxReleases` a failed attempt; and a configure with `maxReleases`. A release
   * before it refuses both unknown fields, so below this level a release is proposed without
   * `counted` (not counted, never capped, as before) and a configure naming maxReleases is
   * refused.
   */
  queueReleaseCap: {
    level: 10,
    name: 'releases counted and capped',
    commands: ['queue fail with "release" and "counted"', 'queue configure with "maxReleases"'],
  },
  /**
   * The list of queues (`queue.queues` over the binary protocol, `/v1/queue/queues`): a read,
   * no command, so the gate never holds it back; its level tells a client whether a node knows
   * the request type, as a node of a release before it closes a binary connection on a type it
   * does not know.
   */
  queueList: {
    level: 11,
    name: 'the list of queues (a read)',
    commands: [],
  },
} as const satisfies Record<string, Feature>;

/** The level this release runs: the highest level of any feature it has. */
export const FEATURE_LEVEL = 11;

/** The level of a node that says none (a release before the gate existed). */
export const FEATURE_LEVEL_NONE = 0;

/** Highest level accepted on the wire or in a log entry: a bound, far above any release. */
export const FEATURE_LEVEL_MAX = 65_535;

export function isFeatureLevel(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && v <= FEATURE_LEVEL_MAX;
}
