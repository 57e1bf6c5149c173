// The one error vocabulary of Flotilla, from the Raft core to the client. Every failure a
// caller can see is a FlotillaError with a stable code from the table below, a message that
// names what failed and the value seen, and `indefinite`: whether the operation may have taken
// effect although it failed. An operation certainly did not happen iff !indefinite, so a
// caller may give up on (or blindly repeat) only a definite failure, and must retry an
// indefinite one with the same session sequence number so it applies at most once (the
// Maelstrom/Jepsen distinction; see REFERENCES.md).
//
// Broken invariants are not errors of this kind: they are bugs and go through assert() in the
// core. Storage and transport keep their own codes inside their layers; the host converts what
// reaches a caller to a code here (a failed write is STORAGE_FAILED).
//
// Pure like src/raft: the core imports this module.

/** What a code means and whether it is indefinite unless the thrower says otherwise. */
export interface ErrorCodeInfo {
  readonly meaning: string;
  /** The default of `indefinite`; the meaning says when a thrower overrides it. */
  readonly indefinite: boolean;
  /** Raised by the client itself, never sent by a node (so it has no HTTP status). */
  readonly clientOnly?: true;
}

/** Every code, documented once. docs/API.md and docs/CLIENT.md render their tables from it. */
export const errorCodes = {
  // The request itself: refused before anything was proposed.
  BAD_JSON: { meaning: 'the body is not valid JSON', indefinite: false },
  INVALID_UTF8: {
    meaning: 'the body is not UTF-8, or a string in it holds a lone surrogate',
    indefinite: false,
  },
  DUPLICATE_FIELD: { meaning: 'an object in the body names a field twice', indefinite: false },
  UNKNOWN_FIELD: {
    meaning: 'the body holds a field the endpoint does not take',
    indefinite: false,
  },
  BAD_REQUEST: {
    meaning: 'the body is not what the endpoint takes (the message names the field and value)',
    indefinite: false,
  },
  CONFLICTING_FIELDS: {
    meaning:
      'two fields of the body ask for different things, e.g. `"serializable": true` with `"consistency": "lease"`, or `prefix` with `rangeEnd`',
    indefinite: false,
  },
  INVALID_REQUEST: {
    meaning: 'a request that asks for nothing useful, e.g. a leadership transfer to the leader',
    indefinite: false,
  },
  DUPLICATE_KEY: { meaning: 'a transaction branch writes one key twice', indefinite: false },
  KEY_EMPTY: { meaning: 'a key is empty', indefinite: false },
  KEY_TOO_LARGE: { meaning: 'a key is longer than `maxKeyBytes`', indefinite: false },
  VALUE_TOO_LARGE: { meaning: 'a value is longer than `maxValueBytes`', indefinite: false },
  TXN_TOO_LARGE: {
    meaning: "a transaction's log entry would exceed the proposal limit: split it",
    indefinite: false,
  },
  PROPOSAL_TOO_LARGE: {
    meaning:
      'the Raft core refused a proposal above its limit (the API refuses such writes first, as TXN_TOO_LARGE)',
    indefinite: false,
  },
  BODY_TOO_LARGE: { meaning: 'the body is longer than `maxBodyBytes`', indefinite: false },
  STORE_FULL: {
    meaning:
      'the key-value data this node holds (live and history) reached `storeQuotaBytes`: writes that put are refused, nothing was written; delete keys or compact the history, or raise the quota',
    indefinite: false,
  },
  PREV_KV_TOO_LARGE: {
    meaning:
      'a delete with `prevKv` would answer more than `maxRangeBytes`; nothing was deleted: delete without it, or in parts',
    indefinite: false,
  },
  REQUEST_TIMEOUT: {
    meaning: 'the request did not arrive within the connection timeouts; the connection is closed',
    indefinite: false,
  },
  UNSUPPORTED_MEDIA_TYPE: {
    meaning: 'a body not declared `application/json`, or sent compressed (`Content-Encoding`)',
    indefinite: false,
  },
  NOT_FOUND: { meaning: 'no such route', indefinite: false },
  METHOD_NOT_ALLOWED: {
    meaning: "the route exists for other methods, listed in the answer's `Allow`",
    indefinite: false,
  },
  BAD_FRAME: {
    meaning:
      'binary client protocol: a frame that is not msgpack, not a request, or of an unknown type; the connection is closed',
    indefinite: false,
  },
  UNSUPPORTED_VERSION: {
    meaning:
      'binary client protocol: the handshake asks for a protocol version this node does not speak (the message lists those it does)',
    indefinite: false,
  },
  // Authentication (API.md, "Authentication"): refused before anything else was done.
  UNAUTHENTICATED: {
    meaning:
      "the node requires a bearer token and the request carried none, or one it does not accept; or, on a port with tlsClientCertAuth, the client presented no certificate or one its cluster's CA did not sign",
    indefinite: false,
  },
  PERMISSION_DENIED: {
    meaning:
      "the request's token is known but its role (read, write, admin) does not cover the request",
    indefinite: false,
  },
  ORIGIN_NOT_ALLOWED: {
    meaning:
      "a browser's cross-origin preflight refused: the page's origin is not a member's client address, or it asks for a method or header the dashboard does not use",
    indefinite: false,
  },
  UNKNOWN_NODE: {
    meaning: 'a leadership transfer to an id that is not a member',
    indefinite: false,
  },
  COMPACTED: {
    meaning:
      'the revision asked for was compacted away; `compactRevision` (and the message) names the oldest revision still available',
    indefinite: false,
  },
  LEASE_NOT_FOUND: {
    meaning: 'the lease named does not exist: never granted, revoked, or expired',
    indefinite: false,
  },
  LEASE_EXISTS: { meaning: 'a lease with the id asked for already exists', indefinite: false },
  WATCH_TOO_SLOW: {
    meaning:
      'a watch fell further behind than `maxWatchBufferBytes` and was cancelled; resume from its `resumeRevision`',
    indefinite: false,
  },
  WATCH_RESET: {
    meaning:
      'a watch was ended by its node (it installed a snapshot, a split moved the watched keys, or the replica it was relayed from went away); resume from its `resumeRevision`',
    indefinite: false,
  },
  FUTURE_REVISION: {
    meaning:
      "the revision asked for is above the store's current revision (or a queue event position past the queue group's log)",
    indefinite: false,
  },
  MEMBERSHIP_INVALID: {
    meaning:
      'a membership change that is malformed: a node id that is not a positive integer, a node named twice, too many changes',
    indefinite: false,
  },
  MEMBERSHIP_NO_VOTERS: {
    meaning: 'a membership change that would leave the group without a voter',
    indefinite: false,
  },
  MEMBERSHIP_UNKNOWN_MEMBER: {
    meaning: 'a membership change that removes a node that is not a member',
    indefinite: false,
  },
  MEMBERSHIP_WRONG_CLUSTER: {
    meaning:
      'a join from a node whose `clusterId` names another cluster than the one it reached: nothing was added',
    indefinite: false,
  },
  MEMBERSHIP_ALREADY_MEMBER: {
    meaning: 'a membership change that adds a member in the role it already has',
    indefinite: false,
  },
  MEMBERSHIP_LEARNER_BEHIND: {
    meaning:
      'promoting a learner the leader has not heard from, or whose log is further behind than learnerPromoteLagEntries: start it, let it catch up, then promote it',
    indefinite: false,
  },
  MEMBER_REMOVED: {
    meaning:
      'the member id was removed from the cluster and cannot be used again: give the node a new id and an empty data directory',
    indefinite: false,
  },
  MEMBERSHIP_QUORUM_AT_RISK: {
    meaning:
      'a membership change refused: the voters it leaves would not have a quorum of members the leader heard from lately (named); bring the silent ones back first, add a learner rather than a voter, or remove with `force` if they are gone for good',
    indefinite: false,
  },
  MEMBER_HOLDS_RANGES: {
    meaning:
      'a member removal refused: it still holds replicas of ranges split off range 0 (named); drain it first, or pass `force` if it is gone for good',
    indefinite: false,
  },
  MEMBERSHIP_NOT_JOINT: {
    meaning: 'a request to leave a joint configuration when the configuration is not joint',
    indefinite: false,
  },
  // The job queue's refusals (src/queue): decided when the command applied, nothing changed.
  JOB_NOT_FOUND: {
    meaning: 'no job by that id in the queue (never added, deleted, or removed by retention)',
    indefinite: false,
  },
  JOB_EXISTS: {
    meaning:
      'a job with that id is still in the queue although its dedup window has passed: delete it first',
    indefinite: false,
  },
  STALE_TOKEN: {
    meaning:
      "the fencing token is not the job's live claim: the lease expired, or the job was claimed again, cancelled or finished",
    indefinite: false,
  },
  INVALID_STATE: {
    meaning: 'the job is not in a state the command applies to (the message names it)',
    indefinite: false,
  },
  QUEUE_FULL: {
    meaning: 'the queue group holds `maxJobs` jobs: finish or delete some first',
    indefinite: false,
  },
  TOO_MANY_QUEUES: {
    meaning: 'the queue group holds `maxQueues` queues (a queue, once created, is never removed)',
    indefinite: false,
  },
  TOO_MANY_REPEATABLES: {
    meaning: 'the queue group holds `maxRepeatables` repeatable jobs',
    indefinite: false,
  },
  REPEATABLE_NOT_FOUND: {
    meaning: 'no repeatable job by that id in the queue',
    indefinite: false,
  },
  CRON_NEVER_FIRES: {
    meaning: 'the cron pattern matches no time in the next five years',
    indefinite: false,
  },
  CROSS_RANGE: {
    meaning:
      'the keys of a transaction, range read or watch lie in more than one range; the message names the ranges',
    indefinite: false,
  },
  MULTIPLE_RANGES: {
    meaning:
      'the operation covers the whole store (leases, backups) and the store has split into more than one range',
    indefinite: false,
  },
  LEASES_HELD: {
    meaning:
      'a range split is refused while the store holds leases: the keys of a lease that moved to the new range would outlive it',
    indefinite: false,
  },
  // Changing a range's replicas (API.md, "Ranges"): refused before anything changed.
  RANGE_NOT_FOUND: {
    meaning: 'the range map holds no range by the id asked for',
    indefinite: false,
  },
  RANGE_NOT_MOVABLE: {
    meaning:
      'ranges 0, 1 and 2 (the first range, the job queue, the meta group) run on every member: their replicas follow the membership',
    indefinite: false,
  },
  NODE_NOT_MEMBER: {
    meaning: 'the node a replica is to be moved or added to is not a member of the cluster',
    indefinite: false,
  },
  NODE_NOT_RESPONDING: {
    meaning:
      'the node a replica is to be moved or added to did not answer the request to prepare it within the request timeout (stopped, frozen; named): not added, the range keeps its replicas; not retried by the client',
    indefinite: false,
  },
  REPLICA_EXISTS: {
    meaning: 'the node a replica is to be moved or added to already holds a replica of the range',
    indefinite: false,
  },
  REPLICA_NOT_FOUND: {
    meaning: 'the node a replica is to be moved from holds no replica of the range',
    indefinite: false,
  },
  NOT_RANGE_VOTER: {
    meaning:
      "the node a range's leadership is to be handed to is not a voter of that range (the message names its voters)",
    indefinite: false,
  },
  RANGE_CHANGE_IN_PROGRESS: {
    meaning:
      "a change of the range's replicas is already running or half-way (a split waits for it), or the node is giving its copy up: retry once it finished",
    indefinite: false,
  },
  FEATURE_NOT_ENABLED: {
    meaning:
      'the command needs a feature level the cluster has not reached: a member runs an older release (named in the message)',
    indefinite: false,
  },
  // The cluster's state: refused, retry later or elsewhere.
  WRONG_RANGE: {
    meaning:
      "a key of the request lies outside the bounds of the range it reached: the range split, or the caller's map of the ranges is stale",
    indefinite: false,
  },
  RANGE_MAP_REFUSED: {
    meaning:
      'the meta group refused to record a change of the range map (an earlier change is not recorded yet); retry',
    indefinite: false,
  },
  NOT_LEADER: {
    meaning: 'this node does not lead; `leader` names the one it knows (0: none)',
    indefinite: false,
  },
  NO_LEADER: { meaning: 'no leader became known in time', indefinite: false },
  TRANSFER_IN_PROGRESS: {
    meaning: 'a leadership transfer is under way; retry once it finished',
    indefinite: false,
  },
  PEER_INACTIVE: {
    meaning: 'a leadership transfer to a member the leader has not heard from lately',
    indefinite: false,
  },
  MEMBERSHIP_CHANGE_PENDING: {
    meaning:
      'another membership change is in flight (proposed and not yet applied); retry once it is applied',
    indefinite: false,
  },
  MEMBERSHIP_JOINT_UNRESOLVED: {
    meaning:
      'the configuration is joint: only the leave may be proposed until the leader has left it',
    indefinite: false,
  },
  UNCOMMITTED_LIMIT: {
    meaning: 'the leader holds too many uncommitted bytes (flow control); back off',
    indefinite: false,
  },
  OVERLOADED: {
    meaning:
      'the node has as many requests in progress as it admits (count, bytes or age) and none freed within `maxInflightWaitMs`: refused, nothing done; retry after `Retry-After`',
    indefinite: false,
  },
  SNAPSHOT_BUSY: {
    meaning:
      "a backup is already streaming from this node, or it is installing the leader's snapshot; retry, or ask another member",
    indefinite: false,
  },
  READ_FAILED: {
    meaning: 'a linearizable read could not be confirmed by a quorum; retry',
    indefinite: false,
  },
  PROPOSAL_DROPPED: {
    meaning: "another term's entry took the write's place in the log: it will never apply",
    indefinite: false,
  },
  SHUTTING_DOWN: {
    meaning: 'the node is shutting down; indefinite for a write it had already proposed',
    indefinite: false,
  },
  // The fate of the operation may be unknown.
  LEADERSHIP_LOST: {
    meaning: 'the node lost leadership before the write committed: it may still commit',
    indefinite: true,
  },
  TIMEOUT: {
    meaning:
      'no answer within the request timeout; indefinite for a write that was sent, definite for one that never left the client',
    indefinite: true,
  },
  ABORTED: {
    meaning: "the caller's signal aborted the wait; indefinite for a write already proposed",
    indefinite: true,
  },
  SESSION_STALE_SEQUENCE: {
    meaning:
      "`seq` is below the client's session window: whether a write with it applied can no longer be told",
    indefinite: true,
  },
  FORWARD_FAILED: {
    meaning:
      'the leader did not answer a forwarded request in time (indefinite), or is not a member (definite)',
    indefinite: true,
  },
  UNAVAILABLE: {
    meaning:
      'a node the operation needed dropped the connection or could not be reached; the operation may be partly done and resumes where it stopped when retried (a range move)',
    indefinite: true,
  },
  STORAGE_FAILED: {
    meaning:
      'the group stopped after a failed disk write or sync on this node; it refuses everything until the node restarts',
    indefinite: false,
  },
  INTERNAL: { meaning: 'a bug: an error the node did not expect', indefinite: true },
  // Raised by the client, never sent by a node.
  CONNECTION: {
    meaning:
      'the connection failed or dropped; definite only when it was never made, so nothing was ' +
      'sent: refused, unreachable, a name not found, a connect timeout, or a TLS handshake this ' +
      "client gave up (the node's certificate not trusted, expired or for another name). A " +
      "node that refuses this client's certificate (none, or not of its CA) says so with " +
      'UNAUTHENTICATED instead. Where the scheme looks wrong (an http:// endpoint whose port speaks TLS, an ' +
      'https:// one that answers without TLS), the message says which to use. A certificate this client refused, ' +
      'a port that answered that it speaks TLS only, or one that answered a TLS handshake without TLS, fails ' +
      'the same way every time: the call tries such an endpoint once',
    indefinite: true,
    clientOnly: true,
  },
  BAD_RESPONSE: {
    meaning: 'the node answered something that is not the JSON the API promises',
    indefinite: true,
    clientOnly: true,
  },
  CLIENT_CLOSED: {
    meaning: 'the call was made on a client already closed: nothing was sent',
    indefinite: false,
    clientOnly: true,
  },
} as const satisfies Record<string, ErrorCodeInfo>;

export type ErrorCode = keyof typeof errorCodes;

/** Codes the client raises itself. */
export type ClientOnlyErrorCode = {
  [C in ErrorCode]: (typeof errorCodes)[C] extends { clientOnly: true } ? C : never;
}[ErrorCode];

/** Codes a node sends; each has an HTTP status (src/api/errors.ts). */
export type NodeErrorCode = Exclude<ErrorCode, ClientOnlyErrorCode>;

export const allErrorCodes = Object.keys(errorCodes) as readonly ErrorCode[];

export function isErrorCode(code: string): code is ErrorCode {
  return Object.prototype.hasOwnProperty.call(errorCodes, code);
}

export class FlotillaError extends Error {
  override readonly name = 'FlotillaError';
  /**
   * True when the operation may have taken effect even though it failed here; false means it
   * certainly did not. Defaults to the code's entry in `errorCodes`.
   */
  readonly indefinite: boolean;

  constructor(
    readonly code: ErrorCode,
    message: string,
    indefinite?: boolean,
    /** The leader the failing node knows of, for a redirect (0 when unknown). */
    readonly leader = 0,
    /** How long the node asked the caller to wait before trying again (Retry-After), in ms; 0: not said. */
    readonly retryAfterMs = 0,
    /**
     * For COMPACTED: the revision the history was compacted to (etcd's `compact_revision`): a
     * read or watch may start above it. 0: not said.
     */
    readonly compactRevision = 0,
  ) {
    // A refusal is ordinary control flow and its stack is never read; capturing one cost 3 %
    // of an overloaded leader's CPU (every 429). INTERNAL, a bug, keeps its stack.
    const limit = Error.stackTraceLimit;
    if (code !== 'INTERNAL') Error.stackTraceLimit = 0;
    try {
      super(message);
    } finally {
      Error.stackTraceLimit = limit;
    }
    this.indefinite = indefinite ?? errorCodes[code].indefinite;
  }
}

/** The outcome of an operation that can be refused: refusing is ordinary control flow. */
export type Result<T> =
  { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: FlotillaError };

export function ok<T>(value: T): Result<T> {
  return { ok: true, value };
}

/** A definite refusal: the operation did not happen. */
export function fail<T>(code: ErrorCode, message: string, leader = 0): Result<T> {
  return { ok: false, error: new FlotillaError(code, message, false, leader) };
}
