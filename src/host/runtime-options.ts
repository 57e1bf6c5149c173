// What a group's runtime is built from (RuntimeOptions), with the defaults it fills in
// (settingsOf), and what it tells its owner as it runs (RuntimeEvent).

import type { Message, RaftConfig, RaftEvent, RaftNode, Recovery, Rng } from '../raft/index.js';
import type {
  Clock,
  GroupId,
  GroupStorage,
  PartialSnapshotStore,
  StateMachine,
} from './contracts.js';
import type { SnapshotEvent } from './group-snapshots.js';
import type { TraceHook } from './trace.js';

export interface RuntimeOptions {
  readonly id: number;
  /** The group this runtime drives (0 when a host runs one). */
  readonly group?: GroupId;
  /**
   * The group's initial voters, used only when the storage holds no snapshot: the
   * configuration is the snapshot's (or this list) followed by the log's membership changes.
   * A node joining a running group passes the group's initial list, in which it is no voter.
   */
  readonly voters: readonly number[];
  /** The group's storage; the host opened it and closes it. */
  readonly storage: GroupStorage;
  /**
   * Where a snapshot being received is kept, so that a transfer resumes after a restart.
   * Default: in memory (a restart of the process loses it, and the transfer starts over).
   */
  readonly partialSnapshots?: PartialSnapshotStore;
  /** Hands a message to the host's transport, tagged with this group. Never blocks. */
  readonly send: (msg: Message, attachment?: Uint8Array) => void;
  /** Writes what `send` was handed so far now, rather than at the end of this loop run. */
  readonly flush?: () => void;
  readonly stateMachine: StateMachine;
  readonly clock: Clock;
  readonly rng?: Rng;
  /** Milliseconds per Raft tick (the host's ticker). Default 10. */
  readonly tickMs?: number;
  /** Election timeout in ticks (randomised in [e, 2e)). Default 15: 150-300 ms at 10 ms ticks. */
  readonly electionTicks?: number;
  /** Heartbeat interval in ticks. Default 5. */
  readonly heartbeatTicks?: number;
  /**
   * Snapshots are taken at multiples of this many applied entries (the same indexes on every
   * member). Default 10,000.
   */
  readonly snapshotEveryEntries?: number;
  /**
   * At such a multiple, a snapshot is taken only once the entries applied since the last one
   * hold at least this fraction of its bytes (Raft thesis §5.1: snapshot when the log has grown
   * past a share of the state's size), so a large state is not copied in full every
   * snapshotEveryEntries: the copying costs at most 1/ratio bytes per byte of log, and the log
   * kept between snapshots about ratio times the state's size. 0: at every multiple. Default 0.5.
   */
  readonly snapshotLogRatio?: number;
  /** Entries kept behind a snapshot for slow followers to catch up from the log. Default 1,000. */
  readonly snapshotCatchupEntries?: number;
  /**
   * The largest share, in (0, 1], of the time since a snapshot began that encoding it may take:
   * it pauses between chunks to stay under it, so the requests served meanwhile keep the rest
   * of the event loop (pacedChunks). 1: as fast as the loop allows. Default 0.25.
   */
  readonly snapshotEncodeShare?: number;
  /** Default wait for a proposal or read. Default 5,000 ms. */
  readonly requestTimeoutMs?: number;
  /** Max proposals and reads waiting at once; more are refused. Default 65,536. */
  readonly maxPendingRequests?: number;
  /**
   * How long a request that finds no leader waits for one to be elected before it is refused
   * with NO_LEADER. Default: two of the longest election timeouts (4 × electionTicks × tickMs,
   * 600 ms at the defaults), enough for one split vote.
   */
  readonly leaderWaitMs?: number;
  readonly raft?: Partial<Omit<RaftConfig, 'id' | 'voters' | 'rng' | 'initial' | 'onEvent'>>;
  readonly onEvent?: (event: RuntimeEvent) => void;
  /**
   * Called when what `leading()` returns may have changed, once until `takeLeadingChange` is
   * called: the host's liveness lane then asks this group again, and no other.
   */
  readonly onLeadingChange?: () => void;
  /**
   * Whether this group's follower writes may block the thread (storage's inline writes): the
   * host says no while it leads another group with work outstanding. Default: they may.
   */
  readonly mayBlock?: () => boolean;
  /** Told when this runtime starts or stops leading its group (a stop ends leading). */
  readonly onLeads?: (leads: boolean) => void;
  /**
   * Stores the core's recovery state durably (Ready.recovery) before the Ready's entries are
   * written; its value is `raft.recovery` at the next start. Synchronous: it changes at most
   * twice in a node's life.
   */
  readonly storeRecovery?: (recovery: Recovery) => void;
  /**
   * Builds the core from its configuration. Default `new RaftNode(config)`; the simulator
   * passes one that keeps a reference for its checkers (and, in tests, a core with a planted
   * bug).
   */
  readonly createNode?: (config: RaftConfig) => RaftNode;
  /** Called at each step of a write's path through this runtime (trace.ts); absent: none. */
  readonly trace?: TraceHook;
}

export type RuntimeEvent =
  | { readonly kind: 'raft'; readonly event: RaftEvent }
  | { readonly kind: 'leader-changed'; readonly leader: number; readonly term: number }
  | SnapshotEvent
  | { readonly kind: 'snapshot-restored'; readonly index: number; readonly bytes: number }
  | { readonly kind: 'persisted'; readonly entries: number; readonly durationMs: number }
  | {
      readonly kind: 'applied';
      readonly entries: number;
      /**
       * Applied while this node's own write was in flight: an acknowledgement committed them
       * (DESIGN.md, "Applying during a write"); otherwise from a Ready.
       */
      readonly duringWrite: boolean;
    }
  | { readonly kind: 'fatal'; readonly error: Error };

/** The options a runtime fills in with defaults when absent, as it runs with them. */
export type RuntimeSettings = Required<
  Pick<
    RuntimeOptions,
    | 'tickMs'
    | 'snapshotEveryEntries'
    | 'snapshotLogRatio'
    | 'snapshotCatchupEntries'
    | 'snapshotEncodeShare'
    | 'requestTimeoutMs'
    | 'maxPendingRequests'
    | 'leaderWaitMs'
  >
>;

/** `o`'s settings, defaults filled in; throws a RangeError for one out of its range. */
export function settingsOf(o: RuntimeOptions): RuntimeSettings {
  const settings: RuntimeSettings = {
    tickMs: o.tickMs ?? 10,
    snapshotEveryEntries: o.snapshotEveryEntries ?? 10_000,
    snapshotLogRatio: o.snapshotLogRatio ?? 0.5,
    // Keep at most half a snapshot interval behind, so compaction always makes progress.
    snapshotCatchupEntries:
      o.snapshotCatchupEntries ??
      Math.min(1_000, Math.floor((o.snapshotEveryEntries ?? 10_000) / 2)),
    snapshotEncodeShare: o.snapshotEncodeShare ?? 0.25,
    requestTimeoutMs: o.requestTimeoutMs ?? 5_000,
    maxPendingRequests: o.maxPendingRequests ?? 65_536,
    leaderWaitMs: o.leaderWaitMs ?? 4 * (o.electionTicks ?? 15) * (o.tickMs ?? 10),
  };
  const share = settings.snapshotEncodeShare;
  if (!(share > 0 && share <= 1))
    throw new RangeError(`snapshotEncodeShare must be in (0, 1], got ${share}`);
  return settings;
}
