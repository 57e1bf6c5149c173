// Errors the runtime reports to callers. Each says whether the operation surely did not take
// effect (definite) or may have (indefinite): a client may blindly retry only the former, and
// must retry the latter with the same session sequence number so it applies at most once
// (the Maelstrom/Jepsen distinction; see REFERENCES.md).

export type ServerErrorCode =
  | 'NOT_LEADER'
  | 'NO_LEADER'
  | 'TRANSFER_IN_PROGRESS'
  | 'UNCOMMITTED_LIMIT'
  | 'PROPOSAL_TOO_LARGE'
  | 'PROPOSAL_DROPPED'
  | 'LEADERSHIP_LOST'
  | 'TIMEOUT'
  | 'ABORTED'
  | 'READ_FAILED'
  | 'SHUTTING_DOWN'
  | 'STORAGE_FAILED'
  | 'INVALID_REQUEST'
  | 'UNKNOWN_NODE'
  | 'PEER_INACTIVE';

export class ServerError extends Error {
  override readonly name = 'ServerError';
  constructor(
    readonly code: ServerErrorCode,
    message: string,
    /** True when the operation may have taken effect even though it failed here. */
    readonly indefinite: boolean,
    /** The leader this node knows of, when useful for a redirect (0 when unknown). */
    readonly leader = 0,
  ) {
    super(message);
  }
}
