// The key-value store's side of a node: how a validated API write becomes a log entry (the
// transaction inside a session envelope, stamped with the leader's clock) and how its applied
// result becomes an answer; how a read waits for ReadIndex. The HTTP routes call it through the
// backend in kv-backend.ts, and the simulator calls it directly, so both drive the same code.

import { toFlotillaError } from '../api/errors.js';
import { FlotillaError } from '../base/errors.js';
import { checkProposalBytes } from '../base/limits.js';
import type { BackendOpResult, Session } from '../api/routes.js';
import type { ReadConsistency } from '../api/requests.js';
import type { Clock } from '../host/contracts.js';
import { encodeEnvelope } from '../host/envelope.js';
import type { RaftRuntime, WaitOptions } from '../host/runtime.js';
import { isRefusal } from '../host/contracts.js';
import type { TxnResult } from '../kv/kv-store.js';
import {
  KvStateMachine,
  maxWriteEnvelopeBytes,
  type CompactResult,
  type KvCommand,
  type KvError,
  type LeaseGrantResult,
  type LeaseRevokeResult,
  type TxnCommand,
} from '../kv/machine.js';

export interface WriteAnswer {
  readonly revision: number;
  readonly succeeded: boolean;
  readonly results: readonly BackendOpResult[];
}

export class KvService {
  /** The most bytes one write may take in the log (a key and a value at their limits). */
  readonly maxProposalBytes: number;

  constructor(
    readonly runtime: RaftRuntime,
    readonly kv: KvStateMachine,
    limits: { readonly maxKeyBytes: number; readonly maxValueBytes: number },
    private readonly clock: Clock,
  ) {
    this.maxProposalBytes = maxWriteEnvelopeBytes(limits);
  }

  /**
   * The entry for a write: the transaction in an envelope with the session and this node's
   * clock (it leads, or forwards to one that does). Throws `TXN_TOO_LARGE` when the entry
   * would exceed maxProposalBytes (only a transaction can).
   */
  encode(txn: TxnCommand, session: Session | null): Uint8Array {
    return encodeWrite(txn, session, this.clock.nowMs(), this.maxProposalBytes);
  }

  /** Replicates a write and answers with what applying it gave, or throws a FlotillaError. */
  async write(txn: TxnCommand, session: Session | null, w: WaitOptions = {}): Promise<WriteAnswer> {
    return answerOf(await this.propose(this.encode(txn, session), w));
  }

  /**
   * Compacts the store's history to `revision` through the log, so every replica forgets the
   * same versions at the same point; answers the compacted revision or throws `COMPACTED`,
   * `FUTURE_REVISION` (decided when applied) or the proposal's error.
   */
  async compact(
    revision: number,
    w: WaitOptions = {},
  ): Promise<{ revision: number; compacted: number }> {
    return compactAnswerOf(await this.propose(this.command({ compact: revision }), w));
  }

  /** Grants a lease of `ttl` seconds (id 0: one is chosen); answers its id and revision. */
  async leaseGrant(id: number, ttl: number, w: WaitOptions = {}): Promise<LeaseGrantResult> {
    return ok<LeaseGrantResult>(await this.propose(this.command({ leaseGrant: { id, ttl } }), w));
  }

  /** Revokes a lease, deleting its keys in one revision. */
  async leaseRevoke(id: number, w: WaitOptions = {}): Promise<LeaseRevokeResult> {
    return ok<LeaseRevokeResult>(await this.propose(this.command({ leaseRevoke: id }), w));
  }

  /** A command without a session: its retries are harmless (or refused as such). */
  private command(cmd: KvCommand): Uint8Array {
    return encodeEnvelope({
      client: '',
      seq: 0,
      timeMs: this.clock.nowMs(),
      payload: KvStateMachine.encode(cmd),
    });
  }

  /** Proposes an entry and waits for its applied result; throws a FlotillaError. */
  private async propose(data: Uint8Array, w: WaitOptions): Promise<unknown> {
    try {
      return await this.runtime.propose(data, w);
    } catch (err) {
      throw toFlotillaError(err);
    }
  }

  /**
   * Waits until a linearizable read may be served here (ReadIndex, or the leader's lease with
   * `lease`); throws a FlotillaError.
   */
  async readBarrier(w: WaitOptions & { readonly lease?: boolean } = {}): Promise<void> {
    try {
      await this.runtime.linearizableRead(w);
    } catch (err) {
      throw toFlotillaError(err);
    }
  }
}

/**
 * Waits until `runtime` may serve a read at `consistency` from what it applied: a ReadIndex
 * round, or the leader's lease for `lease`; nothing for `serializable`, unless a storage
 * failure stopped the group: what it applied then lags for good, and it refuses every request
 * (STORAGE_FAILED). Throws a FlotillaError.
 */
export async function readBarrierAt(
  runtime: Pick<RaftRuntime, 'linearizableRead' | 'stoppedError'>,
  consistency: ReadConsistency,
  signal: AbortSignal,
): Promise<void> {
  if (consistency === 'serializable') {
    const stopped = runtime.stoppedError();
    if (stopped !== null) throw stopped;
    return;
  }
  try {
    await runtime.linearizableRead({ signal, lease: consistency === 'lease' });
  } catch (err) {
    throw toFlotillaError(err);
  }
}

/** A write's log entry; `TXN_TOO_LARGE` when it would exceed `maxProposalBytes`. */
export function encodeWrite(
  txn: TxnCommand,
  session: Session | null,
  timeMs: number,
  maxProposalBytes: number,
): Uint8Array {
  const data = encodeEnvelope({
    client: session?.clientId ?? '',
    seq: session?.seq ?? 0,
    timeMs,
    payload: KvStateMachine.encode(txn),
    ...(session?.ackedBelow === undefined ? {} : { ackedBelow: session.ackedBelow }),
  });
  checkProposalBytes(data.length, { maxProposalBytes });
  return data;
}

/** Maps an applied result to the answer, or throws the API error it carries. */
export function answerOf(result: unknown): WriteAnswer {
  if (isRefusal(result)) {
    // A stale sequence number applied nothing now, but an earlier attempt with it may have:
    // the window no longer remembers, so the write's fate is unknown (indefinite).
    if (result.refused === 'SESSION_STALE_SEQUENCE')
      throw new FlotillaError(result.refused, result.message, true);
    throw new FlotillaError('BAD_REQUEST', result.message);
  }
  const r = ok<TxnResult>(result);
  return { revision: r.revision, succeeded: r.succeeded, results: r.results };
}

/** Maps an applied compaction to its answer, or throws the error it carries. */
export function compactAnswerOf(result: unknown): { revision: number; compacted: number } {
  if (isRefusal(result)) throw new FlotillaError('BAD_REQUEST', result.message);
  const r = result as CompactResult;
  if (r.error !== undefined) {
    // A compaction to a revision already compacted names the oldest one left, as a read does.
    const oldest = r.error.code === 'COMPACTED' ? r.compacted : 0;
    throw new FlotillaError(r.error.code, r.error.message, false, 0, 0, oldest);
  }
  return { revision: r.revision, compacted: r.compacted };
}

/** A result that is not a refusal or an error, or the error it carries thrown. */
function ok<T>(result: unknown): T {
  if (isRefusal(result)) throw new FlotillaError('BAD_REQUEST', result.message);
  const e = result as Partial<KvError>;
  if (e.kind === 'error' && e.error !== undefined)
    throw new FlotillaError(e.error.code, e.error.message);
  return result as T;
}
