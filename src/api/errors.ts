// How the one error vocabulary (src/base/errors.ts) travels over HTTP: every code a node can
// send has a status that fits, and every error is the JSON body
// `{"error": {"code", "message", "indefinite", "leader"?}}`. The Record is over every node
// code, so a new code does not compile until it has a status here.

import { FlotillaError, errorCodes, type ErrorCode, type NodeErrorCode } from '../base/errors.js';

export const httpStatusOf: Readonly<Record<NodeErrorCode, number>> = {
  BAD_JSON: 400,
  INVALID_UTF8: 400,
  DUPLICATE_FIELD: 400,
  UNKNOWN_FIELD: 400,
  BAD_REQUEST: 400,
  CONFLICTING_FIELDS: 400,
  INVALID_REQUEST: 400,
  DUPLICATE_KEY: 400,
  KEY_EMPTY: 400,
  KEY_TOO_LARGE: 400,
  VALUE_TOO_LARGE: 413,
  TXN_TOO_LARGE: 413,
  PROPOSAL_TOO_LARGE: 413,
  BODY_TOO_LARGE: 413,
  PREV_KV_TOO_LARGE: 413,
  STORE_FULL: 507,
  REQUEST_TIMEOUT: 408,
  UNSUPPORTED_MEDIA_TYPE: 415,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  // The binary client protocol's own refusals (never sent over HTTP, but every code has a status).
  BAD_FRAME: 400,
  UNSUPPORTED_VERSION: 505,
  UNAUTHENTICATED: 401,
  PERMISSION_DENIED: 403,
  ORIGIN_NOT_ALLOWED: 403,
  UNKNOWN_NODE: 400,
  COMPACTED: 410,
  FUTURE_REVISION: 400,
  LEASE_NOT_FOUND: 404,
  LEASE_EXISTS: 409,
  // Sent inside a watch's stream, whose status line (200) went out when it opened.
  WATCH_TOO_SLOW: 429,
  WATCH_RESET: 503,
  MEMBERSHIP_INVALID: 400,
  MEMBERSHIP_NO_VOTERS: 400,
  MEMBERSHIP_UNKNOWN_MEMBER: 400,
  MEMBERSHIP_ALREADY_MEMBER: 409,
  MEMBERSHIP_WRONG_CLUSTER: 409,
  MEMBERSHIP_LEARNER_BEHIND: 409,
  MEMBERSHIP_NOT_JOINT: 409,
  MEMBER_REMOVED: 409,
  MEMBER_HOLDS_RANGES: 409,
  MEMBERSHIP_QUORUM_AT_RISK: 409,
  JOB_NOT_FOUND: 404,
  JOB_EXISTS: 409,
  STALE_TOKEN: 409,
  INVALID_STATE: 409,
  // Capacity of the queue group, not of this request: nothing the caller sends differently helps.
  QUEUE_FULL: 507,
  TOO_MANY_QUEUES: 507,
  TOO_MANY_REPEATABLES: 507,
  REPEATABLE_NOT_FOUND: 404,
  CRON_NEVER_FIRES: 400,
  CROSS_RANGE: 400,
  MULTIPLE_RANGES: 409,
  LEASES_HELD: 409,
  FEATURE_NOT_ENABLED: 409,
  RANGE_MAP_REFUSED: 503,
  RANGE_NOT_FOUND: 404,
  RANGE_NOT_MOVABLE: 400,
  NOT_RANGE_VOTER: 400,
  NODE_NOT_MEMBER: 400,
  // The node the request needed did not answer in time, as a gateway's upstream.
  NODE_NOT_RESPONDING: 504,
  REPLICA_EXISTS: 409,
  REPLICA_NOT_FOUND: 409,
  RANGE_CHANGE_IN_PROGRESS: 409,
  NOT_LEADER: 421,
  // Like NOT_LEADER, the request reached a node (or range) that cannot answer it.
  WRONG_RANGE: 421,
  NO_LEADER: 503,
  TRANSFER_IN_PROGRESS: 503,
  PEER_INACTIVE: 503,
  MEMBERSHIP_CHANGE_PENDING: 503,
  MEMBERSHIP_JOINT_UNRESOLVED: 503,
  UNCOMMITTED_LIMIT: 429,
  OVERLOADED: 429,
  SNAPSHOT_BUSY: 503,
  READ_FAILED: 503,
  PROPOSAL_DROPPED: 503,
  SHUTTING_DOWN: 503,
  LEADERSHIP_LOST: 503,
  TIMEOUT: 504,
  // The caller went away (its connection closed): nobody reads this answer. nginx's code.
  ABORTED: 499,
  SESSION_STALE_SEQUENCE: 409,
  FORWARD_FAILED: 502,
  UNAVAILABLE: 503,
  STORAGE_FAILED: 500,
  INTERNAL: 500,
};

/** The HTTP status of an error a node sends. */
export function httpStatus(err: FlotillaError): number {
  // A client-only code never reaches a node's answer; should one, it is a bug of ours.
  return isNodeErrorCode(err.code) ? httpStatusOf[err.code] : 500;
}

export function isNodeErrorCode(code: ErrorCode): code is NodeErrorCode {
  return !('clientOnly' in errorCodes[code]);
}

export interface ErrorJson {
  readonly error: {
    readonly code: ErrorCode;
    readonly message: string;
    readonly indefinite: boolean;
    readonly leader?: number;
    /** COMPACTED: the revision the history was compacted to. */
    readonly compactRevision?: number;
  };
}

export function errorJson(err: FlotillaError): ErrorJson {
  return {
    error: {
      code: err.code,
      message: err.message,
      indefinite: err.indefinite,
      ...(err.leader ? { leader: err.leader } : {}),
      ...(err.compactRevision ? { compactRevision: err.compactRevision } : {}),
    },
  };
}

/** Anything thrown while serving a request, as the error the client gets. */
export function toFlotillaError(err: unknown): FlotillaError {
  if (err instanceof FlotillaError) return err;
  return new FlotillaError('INTERNAL', `Internal error: ${(err as Error).message}`, true);
}
