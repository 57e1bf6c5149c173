// The data types of the Raft core: log entries, persistent state, messages and the Ready
// batch the caller acts on. Everything here is plain data (no classes, no methods) so it can be
// encoded by any transport or storage layer and compared structurally in tests.

/** A node's identity: a positive integer, unique within a cluster. 0 means "none". */
export type NodeId = number;
/** A Raft term (paper §5.1): 0 before any election. */
export type Term = number;
/** A log index, 1-based (paper Figure 2); 0 means "before the first entry". */
export type Index = number;

/** No node (no leader known, no vote cast). */
export const NONE: NodeId = 0;

export type EntryType = 'normal' | 'noop' | 'conf-change';

/**
 * One log entry. A `noop` entry is appended by every new leader at the start of its term so
 * that entries from earlier terms can be committed (paper §5.4.2, §8) and ReadIndex can be
 * served; its data is empty and it is never handed to the state machine as a command. A
 * `conf-change` entry holds an encoded ConfChange (confchange.ts): the core puts it in force
 * when the caller has applied it (advance), and it is not a state machine command either.
 */
export interface Entry {
  readonly term: Term;
  readonly index: Index;
  readonly type: EntryType;
  readonly data: Uint8Array;
}

/**
 * The state a node must persist before it answers any message that depends on it
 * (paper Figure 2 "Persistent state on all servers"). `commit` may be written lazily: a Ready
 * whose hard state changed only in `commit` need not be synced. But the latest `commit` handed
 * out must be written with the next entries, in the same write or before it: membership
 * changes take effect when applied, so a node that appends a change must still know after a
 * restart that the changes before it committed, or it can count votes in a configuration two
 * changes behind, where two candidates win one term (DESIGN.md, "Campaigns wait for committed
 * changes"). The host's runtime writes a commit index it skipped with the next entries.
 */
export interface HardState {
  readonly term: Term;
  readonly vote: NodeId;
  readonly commit: Index;
}

/**
 * Metadata of a snapshot: the last index and term it covers, and the configuration in force
 * at that index (ConfState, confchange.ts). `voters` is the (incoming) voter set. The other
 * fields are present only when not empty (not false): a snapshot of a simple configuration
 * without learners reads as it did before membership changes, and equal configurations have
 * equal metadata (see snapshotMetaOf, confOfSnapshot).
 */
export interface SnapshotMeta {
  readonly index: Index;
  readonly term: Term;
  readonly voters: readonly NodeId[];
  readonly learners?: readonly NodeId[];
  /** The outgoing voters of a joint configuration. */
  readonly outgoing?: readonly NodeId[];
  readonly learnersNext?: readonly NodeId[];
  readonly autoLeave?: boolean;
}

export type Role = 'follower' | 'pre-candidate' | 'candidate' | 'leader';

/**
 * Whether a node may be missing state it once promised to keep (DESIGN.md, "A node that lost
 * its data"). The caller decides `recovering` when a node starts with an empty data directory
 * in a cluster that already has a log, and stores the state durably (RaftConfig.recovery)
 * until a Ready reports `none`:
 * - `recovering`: it neither votes nor campaigns, and its answers count toward no quorum,
 *   until it has caught up with a leader;
 * - `none`: a full member.
 */
export type Recovery = 'recovering' | 'none';

// ---------------------------------------------------------------------------------------------
// Messages. Every message carries the sender's term; a receiver compares terms first (§5.1).

interface MessageBase {
  readonly from: NodeId;
  readonly to: NodeId;
  readonly term: Term;
}

/** RequestVote (paper §5.2) or its pre-vote rehearsal (thesis §9.6). */
export interface VoteRequest extends MessageBase {
  readonly type: 'vote' | 'pre-vote';
  readonly lastLogIndex: Index;
  readonly lastLogTerm: Term;
  /** Set when the campaign follows a TimeoutNow: voters ignore their leader lease (§3.10). */
  readonly transfer: boolean;
}

export interface VoteResponse extends MessageBase {
  readonly type: 'vote-resp' | 'pre-vote-resp';
  readonly granted: boolean;
}

/** AppendEntries (paper §5.3). */
export interface AppendRequest extends MessageBase {
  readonly type: 'append';
  readonly prevIndex: Index;
  readonly prevTerm: Term;
  readonly entries: readonly Entry[];
  readonly commit: Index;
}

/**
 * Answer to AppendEntries. On success `index` is the last index now known to match the
 * leader. On rejection `index` is the prevIndex that failed and (`hintIndex`, `hintTerm`) is
 * the follower's guess of where the logs may agree: the largest index <= min(prevIndex,
 * follower's last index) whose term is <= the leader's prevTerm, so the leader can skip a
 * whole conflicting term in one round trip (paper §5.3, "fast backtracking").
 */
export interface AppendResponse extends MessageBase {
  readonly type: 'append-resp';
  readonly success: boolean;
  readonly index: Index;
  readonly hintIndex: Index;
  readonly hintTerm: Term;
  /**
   * Set on the answer to a heartbeat whose commit index (min(commit, the follower's match))
   * lies past the follower's log: the follower lost entries it acknowledged. The heartbeat was
   * sent after the acknowledgement arrived, so unlike an append rejection this can never be an
   * answer older than the acknowledgement, however the network reorders.
   */
  readonly lost: boolean;
  /** The sender is recovering lost data (Recovery): see HeartbeatResponse.catchingUp. */
  readonly catchingUp: boolean;
}

/**
 * Heartbeat: asserts leadership and carries the commit index (bounded by what the follower
 * is known to have). `seq` is the leader's ReadIndex round; followers echo it back.
 */
export interface Heartbeat extends MessageBase {
  readonly type: 'heartbeat';
  readonly commit: Index;
  readonly seq: number;
  /**
   * The leader quiesced the group with this heartbeat (DESIGN.md, "Quiescing idle groups"):
   * every member holds its whole log, committed and applied, and nothing is pending. A
   * follower that quiesces too stops its election timer until any message or input wakes it.
   * Absent (never false) on every other heartbeat.
   */
  readonly quiesce?: true;
}

export interface HeartbeatResponse extends MessageBase {
  readonly type: 'heartbeat-resp';
  readonly seq: number;
  /**
   * The sender is recovering lost data: it may have forgotten a newer term it once knew, so
   * its answers count toward no quorum (commit, ReadIndex, check-quorum); it is replicated to
   * as a learner would be.
   */
  readonly catchingUp: boolean;
}

/** Leadership transfer: tells the target to start an election at once (thesis §3.10). */
export interface TimeoutNow extends MessageBase {
  readonly type: 'timeout-now';
}

/** A follower asks the leader for a read index on behalf of one of its clients (§6.4). */
export interface ReadIndexRequest extends MessageBase {
  readonly type: 'read-index';
  readonly requestId: number;
  /** The client asked for a lease read: the leader may answer from its lease, without a round. */
  readonly lease: boolean;
}

/** The leader's answer; `index` is meaningful only when `ok`. */
export interface ReadIndexResponse extends MessageBase {
  readonly type: 'read-index-resp';
  readonly requestId: number;
  readonly ok: boolean;
  readonly index: Index;
}

/**
 * A snapshot the caller holds whole and can send (RaftNode.offerSnapshot): its metadata, its
 * size, and `id`, a checksum of its bytes. The id is the snapshot's identity: a transfer
 * resumes only into a partial copy with the same id, so bytes of two different snapshots are
 * never spliced, even two taken at the same index by different leaders.
 */
export interface SnapshotDescriptor {
  readonly meta: SnapshotMeta;
  readonly id: string;
  readonly totalBytes: number;
}

/**
 * A snapshot a follower is receiving: how many of its bytes it holds, in order from byte 0
 * (its caller keeps them in a partial file that survives a restart: InitialState.incoming).
 * Invariant: 0 <= received <= totalBytes.
 */
export interface IncomingSnapshot extends SnapshotDescriptor {
  readonly received: number;
}

/**
 * InstallSnapshot (paper §7), one chunk at a time, as in the paper's Figure 13 (offset, data,
 * done) with a snapshot id as in openraft. The core names the chunk (offset and length in the
 * snapshot `id`); the sending runtime attaches those bytes, and the receiving runtime holds
 * them until the core hands the chunk out in a Ready (Ready.snapshotChunks) to be written.
 * A chunk of length 0 carries no bytes. The follower answers every chunk with how much of
 * snapshot `id` it holds (SnapshotResponse), and the last one, once the whole snapshot is
 * installed, with an append acknowledgement of its index.
 */
export interface SnapshotRequest extends MessageBase {
  readonly type: 'snapshot';
  readonly snapshot: SnapshotMeta;
  readonly id: string;
  readonly offset: number;
  readonly length: number;
  readonly totalBytes: number;
}

/**
 * The follower holds the first `received` bytes of snapshot `id`: the leader sends on from
 * there. A `received` below what the leader last heard (0 after a refused checksum, less after
 * a restart) makes it go back; a different `id` is stale and ignored.
 */
export interface SnapshotResponse extends MessageBase {
  readonly type: 'snapshot-resp';
  readonly id: string;
  readonly received: number;
}

export type Message =
  | VoteRequest
  | VoteResponse
  | AppendRequest
  | AppendResponse
  | Heartbeat
  | HeartbeatResponse
  | TimeoutNow
  | ReadIndexRequest
  | ReadIndexResponse
  | SnapshotRequest
  | SnapshotResponse;

export type MessageType = Message['type'];

/** A chunk of a snapshot that a follower accepted (Ready.snapshotChunks), and its snapshot. */
export interface SnapshotChunk extends SnapshotDescriptor {
  readonly offset: number;
  readonly length: number;
  /** Set on the chunk that completes the snapshot. */
  readonly last: boolean;
}

/** A ReadIndex request that became safe (or failed): see RaftNode.readIndex. */
export interface ReadState {
  readonly requestId: number;
  /** Serve the read once the local state machine has applied at least this index. */
  readonly index: Index;
  /** False when the request could not be served (the leader stepped down, no leader, ...). */
  readonly ok: boolean;
}

/** Volatile state that callers display and use for routing. */
export interface SoftState {
  readonly leader: NodeId;
  readonly role: Role;
}

/**
 * What the caller must do next, in this order (DESIGN.md, "The runtime"):
 *
 * 1. Send `messages` at once: they do not depend on anything in this Ready being durable (the
 *    leader's AppendEntries may go out before its own write, thesis §10.2.1).
 * 2. Persist `snapshot` (if any), then `entries` and `hardState` to stable storage. Entries
 *    whose index is at or below the last stored one replace the stored suffix. Write
 *    `snapshotChunks` (if any) to the partial snapshot.
 * 3. Only after step 2 is durable, send `messagesAfterPersist` (votes and append
 *    acknowledgements promise that the state is on disk).
 * 4. Apply `snapshot` (if any, after persisting it) and then `committedEntries` to the state
 *    machine, in order. `committedEntries` are already durable locally (they are at or below
 *    the persisted index), so they may be applied before step 2 finishes. Serve `readStates`
 *    once the state machine has applied up to each one's index. While step 2 is in flight,
 *    `takeCommitted` hands out what committed since, to apply at once in the same order.
 * 5. Call `advance(ready)`.
 */
export interface Ready {
  readonly softState: SoftState | null;
  /** Non-null when term, vote or commit changed since the last Ready. */
  readonly hardState: HardState | null;
  /** A snapshot received from the leader that replaces the log up to its index. */
  readonly snapshot: SnapshotMeta | null;
  /**
   * With `snapshot`, the id of the incoming snapshot it is: the one last reported good with
   * RaftNode.incomingSnapshotChecked, whose bytes to install. Null without a snapshot.
   */
  readonly snapshotId: string | null;
  /**
   * Chunks of a snapshot being received, in order: write each one's bytes (which came with
   * its message) at its offset of the partial snapshot `id` before sending
   * `messagesAfterPersist`, starting a new partial file (and discarding the old one) at a
   * chunk of offset 0. When the last one is written, check the whole snapshot's checksum
   * and report it (RaftNode.incomingSnapshotChecked).
   */
  readonly snapshotChunks: readonly SnapshotChunk[];
  readonly entries: readonly Entry[];
  readonly messages: readonly Message[];
  readonly messagesAfterPersist: readonly Message[];
  /** Committed and locally persisted entries, to apply in order. Includes noop entries. */
  readonly committedEntries: readonly Entry[];
  readonly readStates: readonly ReadState[];
  /**
   * Non-null when the node's recovery state changed since the last Ready: store it durably
   * before this Ready's entries (it is RaftConfig.recovery at the next start).
   */
  readonly recovery: Recovery | null;
}

/** What a restarting node recovered from its stable storage. */
export interface InitialState {
  readonly hardState: HardState;
  /** The latest snapshot, if the log was compacted. */
  readonly snapshot: SnapshotMeta | null;
  /** Persisted entries after the snapshot, contiguous. */
  readonly entries: readonly Entry[];
  /**
   * The index the state machine had applied durably (at least the snapshot index; 0 or the
   * snapshot's index for a state machine rebuilt from the snapshot at every start). It may be
   * above `hardState.commit`, which may lag (see HardState): only committed entries are handed out
   * to apply, so the core counts everything up to it committed and hands out only what follows.
   * It must not be past the last entry held.
   */
  readonly applied: Index;
  /** A snapshot being received when the node stopped, and the bytes of it that were kept. */
  readonly incoming?: IncomingSnapshot;
}
