// The simulator's public types: what a run is given, what it reports, and the events in its
// queue.

import type { Message } from '../raft/index.js';
import type { Violation } from './checker.js';
import type { ClusterSize, Profile } from './profile.js';
import type { ReplicaStepFn } from './mover.js';
import type {
  KvPlant,
  MetaPlant,
  NodeFactory,
  RangePlant,
  RetirePlant,
  RuntimeFactory,
} from './sim-node.js';
import type { WriteSession } from './ops.js';
import type { DiskFactory } from './sim-storage.js';

export interface SimOptions {
  readonly seed: number;
  /** Overrides the drawn cluster size (the other draws stay as the seed made them). */
  readonly nodes?: ClusterSize;
  /** Overrides any drawn profile field (tests choose fault mixes with this). */
  readonly profile?: Partial<Profile>;
  /** Builds each node's core; tests pass subclasses with planted bugs. */
  readonly createNode?: NodeFactory;
  /** Starts each node's runtime; tests pass RaftRuntime subclasses with planted bugs. */
  readonly startRuntime?: RuntimeFactory;
  /** The session each client write is sent with; tests plant one that drops it. */
  readonly writeSession?: WriteSession;
  /** Builds each node's disk (default: the real WAL over a simulated file system, wal-disk.ts). */
  readonly createDisk?: DiskFactory;
  /** Receives one line per event (the --verbose output). */
  readonly log?: (line: string) => void;
  /** Keep the event trace in the result (determinism tests). */
  readonly keepTrace?: boolean;
  /** Hard bound on events; reaching it is a liveness violation. Default 400,000. */
  readonly maxEvents?: number;
  /**
   * Runs the key-value store as ranges: range 0 and the ranges clients split off it are Raft
   * groups on every node's one host (profile.ts, drawRangeProfile). Off by default.
   */
  readonly ranges?: boolean;
  /** Called with each range's machine as a node starts it; tests plant split bugs with it. */
  readonly plantRange?: RangePlant;
  /**
   * Called with each node's key-value machine (without ranges) as the node starts it; tests
   * plant apply bugs with it.
   */
  readonly plantKv?: KvPlant;
  /**
   * With ranges: moves replicas of the ranges split off range 0 under the faults (mover.ts,
   * profile.ts drawMoveProfile). Off by default.
   */
  readonly moves?: boolean;
  /**
   * With moves: how many moves may be under way at once, each on a range of its own (default
   * 1), as the product's placement loop runs drain moves. Above 1 the extra movers draw from
   * sources of their own, so a seed with one mover is unchanged.
   */
  readonly concurrentMoves?: number;
  /** The step function moves follow (default: the product's); tests plant a wrong one. */
  readonly replicaStep?: ReplicaStepFn;
  /** How nodes give a range up (default: the product's); tests plant a wrong one. */
  readonly plantRetire?: RetirePlant;
  /**
   * Planted defect for tests: the ranges a wiped node held start again as full members with
   * empty logs, as if nothing was lost (the product's `unsafeSkipRangeRecovery`).
   */
  readonly plantWipedRangesVote?: boolean;
  /**
   * Planted defect for tests: every range taken up from the map starts recovering, as before a
   * copy that provably never ran the range could vote at once (a second replica's lost disk
   * then wedges the range).
   */
  readonly plantTakeUpRecovering?: boolean;
  /**
   * With ranges: every node runs the meta group (the range map) with the product's bootstrap,
   * split records and map repair, and clients route by its map (sim-meta.ts). Off by default.
   */
  readonly meta?: boolean;
  /** Called with each meta machine as a node starts it; tests plant map bugs with it. */
  readonly plantMeta?: MetaPlant;
}

export interface SimStats {
  events: number;
  virtualMs: number;
  messages: number;
  dropped: number;
  elections: number;
  crashes: number;
  wipes: number;
  partitions: number;
  snapshots: number;
  committed: number;
  writesDone: number;
  /** Write attempts after the first (answers lost to timeouts, leader changes, crashes). */
  retries: number;
  /** Applies of a write the session recognised as a retry, counted on every node. */
  deduped: number;
  readsOk: number;
  readsFailed: number;
  /** Membership changes asked of a leader (membership churn). */
  confChanges: number;
  /** Snapshot chunks sent (resent ones included). */
  snapshotChunks: number;
  /** Snapshots a follower installed from a leader. */
  snapshotInstalls: number;
  /** Chunks a leader sent past byte 0 as the first of its transfer: a transfer resumed. */
  snapshotResumes: number;
  /** Splits applied, as their proposers were answered (ranges). */
  splits: number;
  /** Splits the range's leader held back while a change of its replicas was half-way. */
  splitsRefused: number;
  /** Requests a range refused with WRONG_RANGE, the client then re-routing (ranges). */
  wrongRange: number;
  /** Replica moves done, steps taken, moves given up at their bound (moves). */
  moves: number;
  moveSteps: number;
  movesAbandoned: number;
  /** Moves begun while another mover's was under way (concurrentMoves above 1). */
  movesBeside: number;
  /** Splits whose halves the splitting client saw recorded in the meta map (meta). */
  splitsRecorded: number;
  /** With meta: stray learners the nodes' map repairs removed (range-map-repair.ts). */
  straysRemoved: number;
  /** With meta: ranges whose unrecorded voters the map repairs recorded. */
  votersRecorded: number;
  /** Of those, ranges a learner's removal had marked due (its own record was never made). */
  marksRecorded: number;
  /** Quiescing (profile.quiesce): a node's group went quiet, and woke again. */
  quiesces: number;
  wakes: number;
  /** Of the wakes, those the host's node-level failure detection asked: a peer fell silent. */
  silenceWakes: number;
  /** ... and a peer heard again after it fell silent (a restart, a healed partition). */
  comebackWakes: number;
  /**
   * At the end of a run: replica states compared, each a node's whole state machine (sessions
   * included) against another's at the same applied index, in any group.
   */
  imagesCompared: number;
}

export interface SimResult {
  readonly seed: number;
  readonly ok: boolean;
  readonly profile: Profile;
  readonly violations: readonly Violation[];
  readonly stats: SimStats;
  /** FNV-1a hash of the event trace: equal for two runs of one seed. */
  readonly traceHash: number;
  readonly trace: readonly string[] | null;
  /** A one-line command that replays this seed. */
  readonly replay: string;
}

export type SimEvent =
  /** A runtime timer (ticks, request timeouts) or a disk write completing, on one node. */
  | {
      readonly kind: 'timer' | 'disk';
      readonly node: number;
      readonly gen: number;
      readonly id: number;
    }
  | {
      readonly kind: 'deliver';
      readonly msg: Message;
      readonly attachment: Uint8Array | null;
      /** The receiver's incarnation when sent: a crash loses what was in flight to it. */
      readonly toGen: number;
      /** The Raft group the message belongs to, when not group 0 (ranges). */
      readonly group?: number;
    }
  | { readonly kind: 'crash' }
  | { readonly kind: 'restart'; readonly node: number }
  | { readonly kind: 'wipe' }
  | { readonly kind: 'partition' }
  | { readonly kind: 'heal' }
  | { readonly kind: 'transfer' }
  | { readonly kind: 'membership' }
  | { readonly kind: 'move' }
  | { readonly kind: 'move-step' }
  | { readonly kind: 'client'; readonly client: number; readonly token: number }
  | { readonly kind: 'liveness' }
  | { readonly kind: 'probe' };
