// The job queue's side of a node, as KvService is the key-value store's: how a validated
// request becomes a log entry of the queue group (the command inside a session envelope,
// stamped with this node's clock), how its applied result becomes an answer or a FlotillaError
// with the queue's stable code, and how a read waits for ReadIndex on the queue group.

import { toFlotillaError } from '../api/errors.js';
import type { Session } from '../api/routes.js';
import type { QueueAnswer } from '../api/queue-routes.js';
import { FlotillaError } from '../base/errors.js';
import { features } from '../base/features.js';
import type { QueueLimits } from '../base/limits.js';
import { isRefusal, type Clock } from '../host/contracts.js';
import { encodeEnvelope } from '../host/envelope.js';
import type { RaftRuntime, WaitOptions } from '../host/runtime.js';
import { queueCommandFeature, sessionAtLevel, type FeatureCheck } from './feature-gate.js';
import type { QueueStateMachine } from '../queue/index.js';
import {
  checkProposal,
  decodeQueueCommand,
  encodeQueueCommand,
  type QueueCommandAny,
  type QueueError,
} from '../queue/index.js';

export class QueueService {
  constructor(
    readonly runtime: RaftRuntime,
    readonly queue: QueueStateMachine,
    private readonly limits: QueueLimits,
    private readonly clock: Clock,
    /** The version gate (feature-gate.ts); null: every command is proposed (a lone test). */
    private readonly gate: FeatureCheck | null = null,
  ) {}

  /**
   * The entry for a command. The command is checked here as the machine will check it when
   * applied (the same decoder), so a bad request is refused before anything is proposed.
   */
  encode(cmd: QueueCommandAny, session: Session | null): Uint8Array {
    // A claim's bound in bytes once every member knows it (features.queueClaimBytes).
    const level = this.gate === null ? Infinity : this.gate.active();
    const bounded = withCountedRelease(
      level >= features.queueClaimBytes.level
        ? withClaimBytes(cmd, this.limits.maxAnswerBytes)
        : cmd,
      level,
    );
    const payload = encodeQueueCommand(bounded);
    decodeQueueCommand(payload, this.limits);
    // What only a new command must satisfy (an empty failure message): not checked on apply.
    checkProposal(cmd);
    // The mark only once every member knows it (sessionAtLevel); a lone test has no gate.
    const s = this.gate === null ? session : sessionAtLevel(session, this.gate.active());
    return encodeEnvelope({
      client: s?.clientId ?? '',
      seq: s?.seq ?? 0,
      timeMs: this.clock.nowMs(),
      payload,
      ...(s?.ackedBelow === undefined ? {} : { ackedBelow: s.ackedBelow }),
    });
  }

  /**
   * Replicates a command and answers with what applying it gave, or throws a FlotillaError.
   * `onProposed` runs right after the command is handed to the core, in the same batch: what it
   * proposes follows the command in the log and leaves in the same append.
   */
  async write(
    cmd: QueueCommandAny,
    session: Session | null = null,
    w: WaitOptions & { readonly onProposed?: () => void } = {},
  ): Promise<QueueAnswer> {
    const data = this.encode(cmd, session);
    // Refused before it enters the log while a member runs a release that does not know it.
    const feature = queueCommandFeature(cmd);
    if (feature !== null && this.gate !== null) await this.gate.require(feature, w.signal);
    const then = w.onProposed;
    let result: unknown;
    try {
      result = await (then === undefined
        ? this.runtime.propose(data, w)
        : this.runtime.batch(() => {
            const proposed = this.runtime.propose(data, w);
            then();
            return proposed;
          }));
    } catch (err) {
      throw toFlotillaError(err);
    }
    return queueAnswerOf(result);
  }

  /** Moves the queue's clock to now: leases expire and delayed jobs become due. */
  async tick(w: WaitOptions = {}): Promise<void> {
    await this.write({ op: 'tick' }, null, w);
  }

  /** Runs `read` on the applied state once a linearizable read may be served here. */
  async read<T>(read: (q: QueueStateMachine) => T, w: WaitOptions = {}): Promise<T> {
    try {
      await this.runtime.linearizableRead(w);
    } catch (err) {
      throw toFlotillaError(err);
    }
    return read(this.queue);
  }
}

/**
 * A release marked `counted` once every member counts releases (features.queueReleaseCap):
 * below that level it is proposed as before, neither counted nor capped anywhere.
 */
function withCountedRelease(cmd: QueueCommandAny, level: number): QueueCommandAny {
  if (cmd.op !== 'fail' || cmd.release !== true || level < features.queueReleaseCap.level)
    return cmd;
  return { ...cmd, counted: true };
}

/** `cmd` with every claim it makes (its own, a report's next) bounded to `maxBytes`. */
function withClaimBytes(cmd: QueueCommandAny, maxBytes: number): QueueCommandAny {
  switch (cmd.op) {
    case 'claim':
      return { ...cmd, maxBytes };
    case 'complete':
    case 'fail':
      return cmd.next === undefined ? cmd : { ...cmd, next: { ...cmd.next, maxBytes } };
    case 'reportBulk':
      return {
        ...cmd,
        reports: cmd.reports.map((r) =>
          r.next === undefined ? r : { ...r, next: { ...r.next, maxBytes } },
        ),
      };
    default:
      return cmd;
  }
}

/** Maps an applied queue result to its answer, or throws the error it carries. */
export function queueAnswerOf(result: unknown): QueueAnswer {
  if (isRefusal(result)) {
    // As for a key-value write: an earlier attempt with a stale sequence number may have applied.
    if (result.refused === 'SESSION_STALE_SEQUENCE')
      throw new FlotillaError(result.refused, result.message, true);
    throw new FlotillaError('BAD_REQUEST', result.message);
  }
  const r = result as QueueAnswer | QueueError;
  if (!r.ok) throw new FlotillaError(r.code, r.message);
  return r;
}
