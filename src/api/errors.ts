// The API's error vocabulary: every failure a client can see has a stable code, an HTTP
// status that fits, a message naming what was wrong, and whether the operation may still have
// taken effect (`indefinite`), so clients know when a blind retry is safe.

export type ApiErrorCode =
  | 'BAD_JSON'
  | 'INVALID_UTF8'
  | 'DUPLICATE_FIELD'
  | 'DUPLICATE_KEY'
  | 'REQUEST_TIMEOUT'
  | 'BAD_REQUEST'
  | 'UNKNOWN_FIELD'
  | 'BODY_TOO_LARGE'
  | 'KEY_TOO_LARGE'
  | 'KEY_EMPTY'
  | 'VALUE_TOO_LARGE'
  | 'TXN_TOO_LARGE'
  | 'NOT_FOUND'
  | 'METHOD_NOT_ALLOWED'
  | 'UNSUPPORTED_MEDIA_TYPE'
  | 'NOT_LEADER'
  | 'NO_LEADER'
  | 'TRANSFER_IN_PROGRESS'
  | 'UNCOMMITTED_LIMIT'
  | 'OVERLOADED'
  | 'PROPOSAL_DROPPED'
  | 'LEADERSHIP_LOST'
  | 'TIMEOUT'
  | 'READ_FAILED'
  | 'SHUTTING_DOWN'
  | 'STORAGE_FAILED'
  | 'SESSION_STALE_SEQUENCE'
  | 'FORWARD_FAILED'
  | 'UNKNOWN_NODE'
  | 'PEER_INACTIVE'
  | 'INTERNAL';

const statusOf: Record<ApiErrorCode, number> = {
  BAD_JSON: 400,
  INVALID_UTF8: 400,
  DUPLICATE_FIELD: 400,
  DUPLICATE_KEY: 400,
  REQUEST_TIMEOUT: 408,
  BAD_REQUEST: 400,
  UNKNOWN_FIELD: 400,
  BODY_TOO_LARGE: 413,
  KEY_TOO_LARGE: 400,
  KEY_EMPTY: 400,
  VALUE_TOO_LARGE: 413,
  TXN_TOO_LARGE: 413,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  UNSUPPORTED_MEDIA_TYPE: 415,
  NOT_LEADER: 421,
  NO_LEADER: 503,
  TRANSFER_IN_PROGRESS: 503,
  UNCOMMITTED_LIMIT: 429,
  OVERLOADED: 429,
  PROPOSAL_DROPPED: 503,
  LEADERSHIP_LOST: 503,
  TIMEOUT: 504,
  READ_FAILED: 503,
  SHUTTING_DOWN: 503,
  STORAGE_FAILED: 500,
  SESSION_STALE_SEQUENCE: 409,
  FORWARD_FAILED: 502,
  UNKNOWN_NODE: 400,
  PEER_INACTIVE: 503,
  INTERNAL: 500,
};

export class ApiError extends Error {
  override readonly name = 'ApiError';
  constructor(
    readonly code: ApiErrorCode,
    message: string,
    readonly indefinite = false,
    readonly leader = 0,
  ) {
    super(message);
  }

  get status(): number {
    return statusOf[this.code];
  }

  toJSON(): {
    error: { code: ApiErrorCode; message: string; indefinite: boolean; leader?: number };
  } {
    return {
      error: {
        code: this.code,
        message: this.message,
        indefinite: this.indefinite,
        ...(this.leader ? { leader: this.leader } : {}),
      },
    };
  }
}

export function isApiErrorCode(code: string): code is ApiErrorCode {
  return code in statusOf;
}
