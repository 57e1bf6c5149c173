// Typed errors with stable codes. The core never throws these: operations that can be refused
// return a Result, so that refusing a proposal is ordinary control flow. Broken invariants are
// bugs and go through assert() instead, which throws and is meant to crash the process.

import type { NodeId } from './types.js';

export type RaftErrorCode =
  /** This node is not the leader; `leader` is the node it believes leads (0 if unknown). */
  | 'NOT_LEADER'
  /** A leadership transfer is under way; retry once it finished. */
  | 'TRANSFER_IN_PROGRESS'
  /** The leader holds too many uncommitted bytes; slow down (flow control). */
  | 'UNCOMMITTED_LIMIT'
  /** The proposal is larger than one message may carry. */
  | 'PROPOSAL_TOO_LARGE'
  /** The request was dropped for a reason given in the message. */
  | 'PROPOSAL_DROPPED'
  /** The named node is not a member of the cluster. */
  | 'UNKNOWN_NODE'
  /** The leader has not heard from the named node within an election timeout: probably down. */
  | 'PEER_INACTIVE'
  /** The node asked to do nothing useful, e.g. transfer leadership to itself. */
  | 'INVALID_REQUEST';

export class RaftError extends Error {
  override readonly name = 'RaftError';
  readonly code: RaftErrorCode;
  /** The leader this node knows of, for NOT_LEADER; 0 when unknown. */
  readonly leader: NodeId;

  constructor(code: RaftErrorCode, message: string, leader: NodeId = 0) {
    super(message);
    this.code = code;
    this.leader = leader;
  }
}

export type Result<T> =
  { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: RaftError };

export function ok<T>(value: T): Result<T> {
  return { ok: true, value };
}

export function fail<T>(code: RaftErrorCode, message: string, leader: NodeId = 0): Result<T> {
  return { ok: false, error: new RaftError(code, message, leader) };
}

/** Thrown when an invariant of the core is broken: a bug, never bad input. */
export class AssertionError extends Error {
  override readonly name = 'AssertionError';
}

export function assert(condition: boolean, message: string): asserts condition {
  if (!condition) throw new AssertionError(message);
}
