// The JSON shapes of the HTTP API, shared by the server and the TypeScript client.
// Keys and values travel as UTF-8 strings, or base64 when the request says
// `"encoding": "base64"` (responses then use base64 too). Revisions are JSON numbers: they
// stay below 2^53 for any realistic cluster lifetime.

import type { ErrorCode } from '../base/errors.js';
import type { SnapshotTransfer as HostSnapshotTransfer } from '../host/snapshot-transfer.js';

export interface ResponseHeader {
  /** The store's revision when the request was served (etcd's header.revision). */
  readonly revision: number;
  /** The node that answered. */
  readonly memberId: number;
  readonly raftTerm: number;
}

export interface KeyValue {
  readonly key: string;
  readonly value: string;
  readonly createRevision: number;
  readonly modRevision: number;
  readonly version: number;
  /** The lease the key is attached to; absent when none. */
  readonly lease?: number;
}

/** Exactly-once session fields (Raft thesis §6.3): the client's id and this request's number. */
export interface SessionFields {
  readonly clientId?: string;
  readonly seq?: number;
}

export interface PutRequest extends SessionFields {
  readonly key: string;
  readonly value: string;
  readonly prevKv?: boolean;
  readonly encoding?: 'utf8' | 'base64';
}

export interface PutResponse {
  readonly header: ResponseHeader;
  readonly prevKv?: KeyValue;
}

export interface RangeRequest {
  readonly key: string;
  /** Exclusive end of the range; omit for a single key. */
  readonly rangeEnd?: string;
  /** Treat `key` as a prefix. */
  readonly prefix?: boolean;
  readonly limit?: number;
  readonly countOnly?: boolean;
  /** Serve from this node's state without confirming leadership (may be stale). */
  readonly serializable?: boolean;
  /**
   * How the read is served: `linearizable` (default), `lease` (no ReadIndex round while the
   * leader's lease holds; see API.md for its risk) or `serializable` (the flag above).
   */
  readonly consistency?: 'linearizable' | 'serializable' | 'lease';
  /** Read the store as it was at this revision (0 or absent: now); below the compacted one is refused. */
  readonly revision?: number;
  readonly encoding?: 'utf8' | 'base64';
}

export interface CompactRequest {
  /** Forget the history before this revision. */
  readonly revision: number;
}

export interface CompactResponse {
  readonly header: ResponseHeader;
  /** The compacted revision: reads below it are refused (`COMPACTED`). */
  readonly compacted: number;
}

export interface RangeResponse {
  readonly header: ResponseHeader;
  readonly kvs: readonly KeyValue[];
  readonly count: number;
  readonly more: boolean;
  /** With `multiRange`: the ranges read, in key order, each with the revision it was read at. */
  readonly ranges?: readonly { readonly id: number; readonly revision: number }[];
}

export interface DeleteRequest extends SessionFields {
  readonly key: string;
  readonly rangeEnd?: string;
  readonly prefix?: boolean;
  readonly prevKv?: boolean;
  readonly encoding?: 'utf8' | 'base64';
}

export interface DeleteResponse {
  readonly header: ResponseHeader;
  readonly deleted: number;
  readonly prevKvs?: readonly KeyValue[];
}

export type CompareTarget = 'value' | 'version' | 'createRevision' | 'modRevision' | 'lease';
export type CompareOp = '=' | '!=' | '<' | '>';

export interface Compare {
  readonly key: string;
  readonly target: CompareTarget;
  readonly op: CompareOp;
  /** A string for target "value", an integer otherwise. */
  readonly value: string | number;
}

export type TxnOp =
  | {
      readonly put: {
        readonly key: string;
        readonly value: string;
        readonly prevKv?: boolean;
        readonly lease?: number;
      };
    }
  | {
      readonly delete: {
        readonly key: string;
        readonly rangeEnd?: string;
        readonly prefix?: boolean;
        readonly prevKv?: boolean;
      };
    }
  | {
      readonly range: {
        readonly key: string;
        readonly rangeEnd?: string;
        readonly prefix?: boolean;
        readonly limit?: number;
      };
    };

export interface TxnRequest extends SessionFields {
  readonly compare: readonly Compare[];
  readonly success: readonly TxnOp[];
  readonly failure?: readonly TxnOp[];
  readonly encoding?: 'utf8' | 'base64';
}

export type TxnOpResponse =
  | { readonly put: { readonly prevKv?: KeyValue } }
  | { readonly delete: { readonly deleted: number; readonly prevKvs?: readonly KeyValue[] } }
  | {
      readonly range: {
        readonly kvs: readonly KeyValue[];
        readonly count: number;
        readonly more: boolean;
      };
    };

export interface TxnResponse {
  readonly header: ResponseHeader;
  readonly succeeded: boolean;
  readonly responses: readonly TxnOpResponse[];
}

export interface NodeStatus {
  readonly id: number;
  /** The operating-system process id of the node answering. */
  readonly pid: number;
  readonly role: 'follower' | 'pre-candidate' | 'candidate' | 'leader';
  readonly term: number;
  readonly leader: number;
  readonly commit: number;
  readonly applied: number;
  readonly lastIndex: number;
  readonly firstIndex: number;
  readonly revision: number;
  /** The node lost its data and is catching up: it neither votes nor counts toward a quorum. */
  readonly recovering: boolean;
  /**
   * Groups (range groups, the queue and meta groups) this node runs that have not caught up
   * since it lost its data: each neither votes nor counts toward a quorum. Empty otherwise.
   */
  readonly recoveringGroups?: readonly number[];
  /** What the node's recovery still waits for, one line each; empty once it recovered. */
  readonly recoveryWaitingFor?: readonly string[];
  /**
   * Ranges of the meta group's map, as this node applied it, that this node holds: range 0
   * while it is a member (range 0 follows the membership, not its record in the map), the
   * others when their replicas name it.
   */
  readonly rangesInMap?: readonly number[];
  /**
   * Groups of this node stopped by a failed disk write or sync, with the error: each refuses
   * everything until the node restarts (the disk's state is unknown). Empty otherwise.
   */
  readonly stoppedGroups?: readonly { readonly group: number; readonly error: string }[];
  readonly members: readonly {
    readonly id: number;
    readonly peer: string;
    readonly client: string;
  }[];
  /** The key-value group's voters (of either half while joint) and learners, in force here. */
  readonly voters?: readonly number[];
  readonly learners?: readonly number[];
  /** Each other member's replication, as this node sees it when it leads; empty otherwise. */
  readonly replication?: readonly MemberReplication[];
  /**
   * Snapshots this node is sending (as a leader) or receiving, in chunks, in either group:
   * bytes the follower holds, bytes and chunks moved (resends included), and the rate.
   */
  readonly snapshotTransfers: readonly SnapshotTransferStatus[];
  /**
   * Ranges of the key-value store running on this node (1 until it first splits); every other
   * field describes range 0 (the key-value group).
   */
  readonly ranges?: number;
  /**
   * The version gate (DESIGN.md, "Upgrades"): the feature level this node runs, the cluster's
   * active level as this node applied group 0's log, and each member's level as this node
   * heard it in their handshakes (null: not heard from since it started).
   */
  readonly featureLevel?: {
    readonly node: number;
    readonly active: number;
    readonly members: readonly { readonly id: number; readonly level: number | null }[];
  };
  /** The job queue's group (group 1): its own leader, term and log. */
  readonly queueGroup?: {
    readonly role: 'follower' | 'pre-candidate' | 'candidate' | 'leader';
    readonly term: number;
    readonly leader: number;
    readonly commit: number;
    readonly applied: number;
  };
}

/** A snapshot transfer in progress (the host's record of it), with its Raft group. */
export interface SnapshotTransferStatus extends HostSnapshotTransfer {
  /** The Raft group: 0 key-value, 1 the job queue. */
  readonly group: number;
}

export interface ClusterStatus {
  readonly leader: number;
  /**
   * Every member, then every member removed from the cluster (`removed: true`): one that
   * still runs answers until it learns of its removal and stops. A removed member whose
   * address the node no longer knows has `client` "" and says so in `error`.
   */
  readonly nodes: readonly ({
    readonly id: number;
    readonly client: string;
    readonly removed?: boolean;
  } & (
    | { readonly status: NodeStatus }
    /** `slow`: it did not answer within the time allowed (busy, or down without a refusal). */
    | { readonly error: string; readonly slow?: boolean }
  ))[];
}

export interface ErrorBody {
  readonly error: {
    /** A node never sends a client-only code (CONNECTION, BAD_RESPONSE, CLIENT_CLOSED). */
    readonly code: ErrorCode;
    readonly message: string;
    readonly indefinite: boolean;
    readonly leader?: number;
    /** COMPACTED: the revision the history was compacted to (etcd's compact_revision). */
    readonly compactRevision?: number;
  };
}

export interface LeaseGrantResponse {
  readonly header: ResponseHeader;
  readonly id: number;
  /** Seconds. */
  readonly ttl: number;
}

export interface LeaseRevokeResponse {
  readonly header: ResponseHeader;
  /** Keys deleted with the lease. */
  readonly deleted: number;
}

export interface LeaseKeepAliveResponse {
  readonly header: ResponseHeader;
  readonly id: number;
  /** Seconds from now before the lease expires unless renewed again. */
  readonly ttl: number;
}

export interface LeaseTimeToLiveResponse {
  readonly header: ResponseHeader;
  readonly id: number;
  /** Seconds left, as the leader sees it. */
  readonly ttl: number;
  readonly grantedTtl: number;
  /** The keys attached, when asked for. */
  readonly keys?: readonly string[];
}

export interface LeaseListResponse {
  readonly header: ResponseHeader;
  readonly leases: readonly { readonly id: number; readonly ttl: number }[];
}

/** One follower's (or learner's) replication, as its leader sees it. */
export interface MemberReplication {
  readonly id: number;
  readonly learner: boolean;
  /** The highest log index known to be on the member. */
  readonly match: number;
  /** Entries the member is behind the leader's last index. */
  readonly lag: number;
  /** probe, replicate or snapshot (a snapshot is being sent). */
  readonly state: string;
  /** The snapshot being sent to it, when one is; null otherwise. */
  readonly snapshot: SnapshotTransfer | null;
}

/**
 * A snapshot transfer in progress to one member. Every field is filled by the snapshot sender
 * when it knows it (the hook `snapshotTransfer` of the node's membership); an empty object
 * says only that the leader is sending the member a snapshot.
 */
export interface SnapshotTransfer {
  readonly index?: number;
  readonly bytesSent?: number;
  readonly bytesTotal?: number;
  readonly chunksSent?: number;
  readonly bytesPerSecond?: number;
}

export type MemberRole = 'voter' | 'learner' | 'none';

/** One Raft group's configuration in force on the answering node. */
export interface GroupMembership {
  readonly group: number;
  readonly voters: readonly number[];
  readonly learners: readonly number[];
  /** The voters being left while the configuration is joint; empty otherwise. */
  readonly outgoing: readonly number[];
}

export interface MemberView {
  readonly id: number;
  readonly peer: string;
  readonly client: string;
  /** Its role in the key-value group; `queueRole` in the queue group, which follows it. */
  readonly role: MemberRole;
  readonly queueRole: MemberRole;
  /** Promoted to voter automatically once caught up (a member that joined). */
  readonly autoPromote: boolean;
  /** Replication as the key-value group's leader sees it; absent unless the answerer leads. */
  readonly match?: number;
  readonly lag?: number;
  readonly replication?: string;
}

/** The answer of the membership endpoints (/v1/cluster/members/...). */
export interface MembersResponse {
  /** The member that answered (the leader, unless none was known). */
  readonly memberId: number;
  readonly leader: number;
  readonly groups: readonly GroupMembership[];
  readonly members: readonly MemberView[];
  /** Ids removed from the cluster; never usable again. */
  readonly removed: readonly number[];
  /** Whether the queue group's configuration has caught up with the key-value group's. */
  readonly queueGroupFollows: boolean;
}

/** The answer of POST /v1/cluster/join: what a joining node needs to start. */
export interface JoinResponse {
  readonly clusterId: string;
  /** The cluster's initial voters: the configuration its log starts from. */
  readonly initialMembers: readonly number[];
  /** Every member's addresses, the joining node's included. */
  readonly book: readonly { readonly id: number; readonly peer: string; readonly client: string }[];
  readonly members: MembersResponse;
  /**
   * The id joining is a voter that has held a log: one of the cluster's initial members, or a
   * member that joined and was promoted (only after it answered appends). A node joining under
   * it with an empty data directory has lost that log, and recovers before it votes again.
   */
  readonly recover: boolean;
}

/** One range as `GET /v1/ranges` shows it (keys as the KV API encodes them). */
export interface RangeDescriptorJson {
  readonly id: number;
  readonly start: string;
  /** null: the end of the key space. */
  readonly end: string | null;
  readonly generation: number;
  readonly replicas: readonly number[];
}

/** `GET /v1/ranges`: the meta group's map, with what the answering node knows of each range. */
export interface RangesResponse {
  /** The map's version: grows by one at every change recorded. */
  readonly version: number;
  /** The answering node: the figures below are its own. */
  readonly node: number;
  readonly ranges: readonly (RangeDescriptorJson & {
    /**
     * The leader the answering node knows (0: none). On a node that does not run the range: the
     * leader it learned from answers there, or null (docs/API.md, "Ranges"); `applied` is null.
     */
    readonly leader: number | null;
    /** Keys the range holds on the answering node. */
    readonly keys: number | null;
    /** Bytes of the live keys and values there. */
    readonly bytes: number | null;
    /** Write transactions the range applies per second there (about the same on each replica). */
    readonly writesPerSec: number | null;
    /** Reads of the range the answering node served per second (its own alone). */
    readonly readsPerSec: number | null;
    readonly applied: number | null;
  })[];
}

/** `POST /v1/ranges/split`: both halves as the range's log applied the split. */
export interface SplitResponse {
  readonly left: RangeDescriptorJson;
  readonly right: RangeDescriptorJson;
}

/** `POST /v1/ranges/transfer-leadership`: the range and the node that leads it now. */
export interface TransferLeaderResponse {
  readonly range: number;
  readonly leader: number;
}

/** `POST /v1/ranges/move`: the range as its log recorded it once the replica moved. */
export interface MoveResponse {
  readonly range: RangeDescriptorJson;
}
