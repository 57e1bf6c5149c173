// Configuration of one Raft node, with defaults and the start-up checks of the relations
// between limits (TigerBeetle style: every limit is explicit and checked once).

import { defaultLimits } from '../base/limits.js';
import { checkSnapshotMeta } from './check-message.js';
import { AssertionError } from './errors.js';
import type { Rng } from './rng.js';
import type { EntryType, InitialState, NodeId, Recovery, SnapshotMeta } from './types.js';

/** Something the core reports for people to follow: role changes, votes, elections. */
export interface RaftEvent {
  readonly kind:
    | 'become-follower'
    | 'become-pre-candidate'
    | 'become-candidate'
    | 'become-leader'
    | 'vote-granted'
    | 'vote-refused'
    /** A pre-vote (thesis §9.6) moves no term and records no vote: logged apart from votes. */
    | 'pre-vote-granted'
    | 'pre-vote-refused'
    | 'step-down'
    | 'transfer-started'
    | 'transfer-handed-off'
    | 'transfer-aborted'
    | 'recovery-started'
    | 'recovery-finished'
    | 'follower-lost-log'
    /** A membership change took effect (it was applied); the reason shows both configurations. */
    | 'conf-applied'
    /** The leader proposed the leave of a joint configuration it had applied (autoLeave). */
    | 'conf-leave-proposed'
    /** An election timeout passed, but a committed membership change is not applied yet. */
    | 'campaign-deferred'
    /** The group went idle: the leader sent, or the follower heard, a quiescing heartbeat. */
    | 'quiesced'
    /** A quiesced node woke: an input, a message, or its caller (RaftNode.wake). */
    | 'woke';
  readonly node: NodeId;
  readonly term: number;
  /** The other node involved (candidate voted for, leader followed, transfer target), or 0. */
  readonly peer: number;
  readonly reason: string;
}

export interface RaftConfig {
  /** This node's id (> 0). */
  readonly id: NodeId;
  /**
   * The group's initial voting members, as every member was first started with them; used only
   * when `initial` has no snapshot, to read the log's membership changes from the start. Keep
   * passing the same list at every restart (not the membership of today: the log's changes are
   * applied to it again). A node that joins a running group (added to it by a membership
   * change) is started with the group's initial members too, never with itself alone: a node
   * whose voters are just itself is a group of one, elects itself and commits on its own.
   */
  readonly voters: readonly NodeId[];
  /** Source of randomness for election timeouts. */
  readonly rng: Rng;
  /** Ticks without hearing from a leader before a follower campaigns. Default 10. */
  readonly electionTicks?: number;
  /** Ticks between leader heartbeats. Default 1. Must be < electionTicks. */
  readonly heartbeatTicks?: number;
  /** Pre-vote (thesis §9.6). Default true. */
  readonly preVote?: boolean;
  /** Check-quorum: a leader steps down without a quorum's contact for an election timeout. Default true. */
  readonly checkQuorum?: boolean;
  /**
   * Lease reads (DESIGN.md, "Lease reads"): the bound, in ticks, on how far two members' tick
   * counts may drift apart over one election timeout, plus one tick for the granularity of a
   * tick count. A leader's lease from a heartbeat round it sent at tick t lasts until
   * t + electionTicks - leaseDriftTicks. Must be >= 1 and < electionTicks, and needs
   * check-quorum. Omitted: no lease, and a lease read takes a ReadIndex round.
   */
  readonly leaseDriftTicks?: number;
  /**
   * Quiescing (DESIGN.md, "Quiescing idle groups"): a leader whose group is idle (every
   * member holds its whole log, committed and applied; nothing pending) sends one last
   * heartbeat that says so and stops its timers, as do the followers that hear it, until an
   * input or a message wakes them. Failure detection of a quiesced group is the caller's
   * (RaftNode.wake). Turn it on on every member or none. Default false.
   */
  readonly quiesce?: boolean;
  /**
   * A commit index that moved while nothing new is to be sent reaches the followers with the
   * next append or at the next tick, not in an append of its own (DESIGN.md, "Telling
   * followers the commit index"). Under one client that halves the messages between members:
   * each entry costs an append and its answer instead of two of each. A follower applies up to
   * a tick later; one whose ReadIndex the leader answers is told at once. Default false.
   */
  readonly commitOnTick?: boolean;
  /**
   * A ReadIndex round goes to as many voters as make a quorum with the leader (those that
   * answered the latest rounds first), not to every member (DESIGN.md, "ReadIndex rounds"): a
   * round costs one follower one message less in three members, two in five. A round
   * unanswered for a tick is followed by one to every member. Default false.
   */
  readonly readRoundsToQuorum?: boolean;
  /** Max AppendEntries messages in flight to one follower. Default 256. */
  readonly maxInflightMsgs?: number;
  /** Max bytes of entry data in flight to one follower. Default 64 MiB. */
  readonly maxInflightBytes?: number;
  /** Max entries in one AppendEntries message. Default 4,096. */
  readonly maxEntriesPerMsg?: number;
  /** Max bytes of entry data in one AppendEntries message. Default 1 MiB. */
  readonly maxBytesPerMsg?: number;
  /**
   * Max bytes of one proposal's data; larger ones are refused with PROPOSAL_TOO_LARGE. An entry
   * may exceed maxBytesPerMsg (it then travels alone). Default: maxBytesPerMsg.
   */
  readonly maxProposalBytes?: number;
  /** Max bytes of uncommitted entry data a leader accepts before refusing proposals. Default 64 MiB. */
  readonly maxUncommittedBytes?: number;
  /** Max entries handed out in one Ready as committedEntries. Default 16,384. */
  readonly maxCommittedPerReady?: number;
  /** Max bytes of one snapshot chunk (SnapshotRequest.length). Default 1 MiB. */
  readonly snapshotChunkBytes?: number;
  /** Recovered state; omitted for a brand-new node. */
  readonly initial?: InitialState;
  /** The recovery state the caller stored (see Recovery). Default `none`. */
  readonly recovery?: Recovery;
  /**
   * The group began with state this node does not hold, and its log is empty: a range's replica
   * that missed the split that made the range, started from its parent's children. It votes,
   * as any member, but neither campaigns nor pre-campaigns while its log is empty, until a
   * leader's snapshot or entries reach it. Several such replicas would otherwise elect one of
   * themselves with nothing and begin a second history beside the one that holds the state.
   * Default false.
   */
  readonly waitsForState?: boolean;
  /** Receives events worth logging. Called synchronously; must not call back into the node. */
  readonly onEvent?: (event: RaftEvent) => void;
}

export interface ResolvedConfig {
  readonly id: NodeId;
  readonly voters: readonly NodeId[];
  readonly rng: Rng;
  readonly electionTicks: number;
  readonly heartbeatTicks: number;
  readonly preVote: boolean;
  readonly checkQuorum: boolean;
  /** Null: lease reads are off. */
  readonly leaseDriftTicks: number | null;
  readonly quiesce: boolean;
  readonly waitsForState: boolean;
  readonly commitOnTick: boolean;
  readonly readRoundsToQuorum: boolean;
  readonly maxInflightMsgs: number;
  readonly maxInflightBytes: number;
  readonly maxEntriesPerMsg: number;
  readonly maxBytesPerMsg: number;
  readonly maxProposalBytes: number;
  readonly maxUncommittedBytes: number;
  readonly maxCommittedPerReady: number;
  readonly snapshotChunkBytes: number;
  readonly onEvent: ((event: RaftEvent) => void) | null;
}

function check(condition: boolean, message: string): void {
  if (!condition) throw new AssertionError(`Invalid Raft config: ${message}`);
}

/** The settings that are counts: positive integers when given. */
const countSettings = [
  'electionTicks',
  'heartbeatTicks',
  'maxInflightMsgs',
  'maxInflightBytes',
  'maxEntriesPerMsg',
  'maxBytesPerMsg',
  'maxProposalBytes',
  'maxUncommittedBytes',
  'maxCommittedPerReady',
  'snapshotChunkBytes',
] as const;

/** The settings that are switches: true, false, or absent for the default. */
const switchSettings = [
  'preVote',
  'checkQuorum',
  'quiesce',
  'waitsForState',
  'commitOnTick',
  'readRoundsToQuorum',
] as const;

/** Every field of RaftConfig: any other is a mistake (a misspelt setting keeps its default). */
const configFields: ReadonlySet<string> = new Set<keyof RaftConfig>([
  'id',
  'voters',
  'rng',
  ...countSettings,
  ...switchSettings,
  'leaseDriftTicks',
  'initial',
  'recovery',
  'onEvent',
]);

/** The field of RaftConfig `name` was probably meant to be, if one is close enough. */
function meant(name: string): string | undefined {
  const lower = name.toLowerCase();
  let best: string | undefined;
  let bestShared = 3; // a shorter common start says nothing
  for (const f of configFields) {
    const fl = f.toLowerCase();
    if (fl === lower) return f;
    let shared = 0;
    while (shared < fl.length && fl[shared] === lower[shared]) shared++;
    if (shared > bestShared) {
      best = f;
      bestShared = shared;
    }
  }
  return best;
}

export function resolveConfig(config: RaftConfig): ResolvedConfig {
  // A caller in plain JavaScript may pass anything: say which field is wrong rather than fail
  // later with a TypeError from deep inside the core (a missing rng at the first election).
  check(typeof config === 'object' && config !== null, 'a config object is required');
  for (const k of Object.keys(config)) {
    if (configFields.has(k)) continue;
    const guess = meant(k);
    check(false, `unknown field "${k}"${guess === undefined ? '' : ` (did you mean "${guess}"?)`}`);
  }
  check(
    typeof (config.rng as Partial<Rng> | undefined)?.int === 'function',
    'rng must be a random source (createRng(seed))',
  );
  check(
    Array.isArray(config.voters) || config.initial?.snapshot != null,
    `voters must be an array of node ids, got ${String(config.voters)}`,
  );
  // Counts given as strings or fractions would not fail at once: "10" + n made a campaign wait
  // ten times too long, and 1.5 in-flight messages an Array of invalid length.
  for (const k of countSettings) {
    const v = (config as unknown as Record<string, unknown>)[k];
    check(
      v === undefined || v === null || (typeof v === 'number' && Number.isSafeInteger(v) && v >= 1),
      `${k} must be a positive integer, got ${JSON.stringify(v) ?? String(v)}`,
    );
  }
  // A switch given as "false" or 0 would be read as its truth: quiescing on, check-quorum off.
  for (const k of switchSettings) {
    const v = (config as unknown as Record<string, unknown>)[k];
    check(
      v === undefined || v === null || typeof v === 'boolean',
      `${k} must be true or false (or absent for the default), got ${JSON.stringify(v) ?? String(v)}`,
    );
  }
  check(
    config.recovery === undefined || config.recovery === 'none' || config.recovery === 'recovering',
    `recovery must be "none" or "recovering", got ${JSON.stringify(config.recovery)}`,
  );
  check(
    config.onEvent === undefined || config.onEvent === null || typeof config.onEvent === 'function',
    'onEvent must be a function',
  );
  const resolved: ResolvedConfig = {
    id: config.id,
    voters: [...new Set(config.initial?.snapshot?.voters ?? config.voters)].sort((a, b) => a - b),
    rng: config.rng,
    electionTicks: config.electionTicks ?? 10,
    heartbeatTicks: config.heartbeatTicks ?? 1,
    preVote: config.preVote ?? true,
    checkQuorum: config.checkQuorum ?? true,
    leaseDriftTicks: config.leaseDriftTicks ?? null,
    quiesce: config.quiesce ?? false,
    waitsForState: config.waitsForState ?? false,
    commitOnTick: config.commitOnTick ?? false,
    readRoundsToQuorum: config.readRoundsToQuorum ?? false,
    maxInflightMsgs: config.maxInflightMsgs ?? 256,
    maxInflightBytes: config.maxInflightBytes ?? defaultLimits.maxInflightBytes,
    maxEntriesPerMsg: config.maxEntriesPerMsg ?? 4096,
    maxBytesPerMsg: config.maxBytesPerMsg ?? defaultLimits.maxBytesPerMsg,
    maxProposalBytes:
      config.maxProposalBytes ?? config.maxBytesPerMsg ?? defaultLimits.maxProposalBytes,
    maxUncommittedBytes: config.maxUncommittedBytes ?? defaultLimits.maxUncommittedBytes,
    maxCommittedPerReady: config.maxCommittedPerReady ?? 16384,
    snapshotChunkBytes: config.snapshotChunkBytes ?? defaultLimits.maxSnapshotChunkBytes,
    onEvent: config.onEvent ?? null,
  };
  check(
    Number.isSafeInteger(resolved.id) && resolved.id > 0,
    `id must be a positive integer, got ${JSON.stringify(resolved.id) ?? String(resolved.id)}`,
  );
  check(resolved.voters.length > 0, 'voters must not be empty');
  for (const v of resolved.voters) {
    check(
      Number.isSafeInteger(v) && v > 0,
      `voter ids must be positive integers, got ${JSON.stringify(v) ?? String(v)}`,
    );
  }
  check(
    resolved.heartbeatTicks >= 1,
    `heartbeatTicks must be >= 1, got ${resolved.heartbeatTicks}`,
  );
  check(
    resolved.electionTicks > resolved.heartbeatTicks,
    `electionTicks (${resolved.electionTicks}) must exceed heartbeatTicks (${resolved.heartbeatTicks})`,
  );
  if (resolved.leaseDriftTicks !== null) {
    const drift = resolved.leaseDriftTicks;
    check(
      Number.isSafeInteger(drift) && drift >= 1 && drift < resolved.electionTicks,
      `leaseDriftTicks must be an integer >= 1 and below electionTicks (${resolved.electionTicks}), got ${JSON.stringify(drift)}`,
    );
    // The lease is the followers' promise not to vote for another leader within an election
    // timeout of hearing from this one; only check-quorum makes them keep it.
    check(resolved.checkQuorum, 'leaseDriftTicks needs checkQuorum: without it there is no lease');
  }
  check(
    resolved.maxInflightMsgs >= 1,
    `maxInflightMsgs must be >= 1, got ${resolved.maxInflightMsgs}`,
  );
  check(
    resolved.maxEntriesPerMsg >= 1,
    `maxEntriesPerMsg must be >= 1, got ${resolved.maxEntriesPerMsg}`,
  );
  check(
    resolved.maxBytesPerMsg >= 1,
    `maxBytesPerMsg must be >= 1, got ${resolved.maxBytesPerMsg}`,
  );
  check(
    Number.isSafeInteger(resolved.maxProposalBytes) && resolved.maxProposalBytes >= 1,
    `maxProposalBytes must be a positive integer, got ${resolved.maxProposalBytes}`,
  );
  check(
    resolved.maxInflightBytes >= resolved.maxBytesPerMsg,
    `maxInflightBytes (${resolved.maxInflightBytes}) must be >= maxBytesPerMsg (${resolved.maxBytesPerMsg}${config.maxBytesPerMsg === undefined ? ', its default' : ''})`,
  );
  check(
    resolved.maxUncommittedBytes >= resolved.maxBytesPerMsg,
    `maxUncommittedBytes (${resolved.maxUncommittedBytes}) must be >= maxBytesPerMsg (${resolved.maxBytesPerMsg}${config.maxBytesPerMsg === undefined ? ', its default' : ''})`,
  );
  check(resolved.maxCommittedPerReady >= 1, 'maxCommittedPerReady must be >= 1');
  check(
    Number.isSafeInteger(resolved.snapshotChunkBytes) && resolved.snapshotChunkBytes >= 1,
    `snapshotChunkBytes must be a positive integer, got ${resolved.snapshotChunkBytes}`,
  );
  if (config.initial !== undefined) checkInitial(config.initial);
  return resolved;
}

const entryTypes: ReadonlySet<string> = new Set<EntryType>(['normal', 'noop', 'conf-change']);

function isCount(v: unknown): boolean {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/**
 * The recovered state's numbers, which the caller's storage decoded: a missing `applied` made
 * the applied index NaN, and the committed entries were then never handed out again (the
 * state machine of a restarted node stayed empty); a term decoded as a string became "11" at
 * the next campaign. The ranges are the core's to clamp (a commit index is a hint); the types
 * are the caller's to get right.
 */
function checkInitial(initial: InitialState): void {
  const hs = initial.hardState as unknown as Partial<Record<string, unknown>> | undefined;
  for (const k of ['term', 'vote', 'commit'])
    check(
      isCount(hs?.[k]),
      `initial.hardState.${k} must be an integer >= 0, got ${String(hs?.[k])}`,
    );
  check(
    isCount(initial.applied),
    `initial.applied must be an integer >= 0, got ${String(initial.applied)}`,
  );
  const snap = initial.snapshot as SnapshotMeta | null | undefined;
  check(
    snap === null || (isCount(snap?.index) && isCount(snap?.term) && Array.isArray(snap?.voters)),
    'initial.snapshot must be null or snapshot metadata (index, term, voters)',
  );
  check(Array.isArray(initial.entries), 'initial.entries must be an array');
  for (const e of initial.entries)
    check(
      isCount(e?.index) && isCount(e?.term) && e?.data instanceof Uint8Array,
      'initial.entries: an entry needs an integer index and term and Uint8Array data',
    );
  for (const e of initial.entries)
    check(
      entryTypes.has(e.type),
      `initial.entries: entry ${e.index} has type ${JSON.stringify(e.type)}, not one of ${[...entryTypes].join(', ')}`,
    );
  checkIncoming(initial.incoming);
  // Terms never fall along a log: Figure 3's Log Matching and the election restriction rest on
  // it. (The hard state's term may be below the last entry's: Raft's constructor says why.)
  const base = snap ?? null;
  let prev = base === null ? 0 : base.term;
  let prevAt = base === null ? 'the start of the log' : `the snapshot at ${base.index}`;
  for (const e of initial.entries) {
    if (base !== null && e.index <= base.index) continue;
    check(
      e.term >= prev,
      `initial.entries: entry ${e.index} has term ${e.term}, below term ${prev} of ${prevAt}: terms never fall along a log`,
    );
    prev = e.term;
    prevAt = `entry ${e.index}`;
  }
}

/**
 * A snapshot being received when the node stopped, as its caller recorded it: the bytes held
 * from 0 (`received`) of `totalBytes`, under an id, with the snapshot's metadata. A malformed
 * one failed only when the next chunk came (a TypeError), or let a chunk past the end in.
 */
function checkIncoming(inc: unknown): void {
  if (inc === undefined || inc === null) return;
  check(typeof inc === 'object', `initial.incoming must be an object or absent, got ${typeof inc}`);
  const o = inc as Record<string, unknown>;
  checkSnapshotMeta(o['meta'], 'initial.incoming.meta');
  const id = o['id'];
  check(
    typeof id === 'string' && id.length > 0,
    `initial.incoming.id must be a non-empty string, got ${String(id)}`,
  );
  check(
    isCount(o['totalBytes']),
    `initial.incoming.totalBytes must be an integer >= 0, got ${String(o['totalBytes'])}`,
  );
  check(
    isCount(o['received']) && (o['received'] as number) <= (o['totalBytes'] as number),
    `initial.incoming.received must be an integer from 0 to totalBytes (${String(o['totalBytes'])}), got ${String(o['received'])}`,
  );
}
