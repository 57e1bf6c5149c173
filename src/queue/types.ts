// The job queue's vocabulary: the commands it applies, the results it gives back, the
// codes of its refusals, and the job as readers see it. Plain data only, so a result can be
// cached by the session layer and sent over HTTP as it is.

import type { ErrorCode } from '../base/errors.js';

/** Where a job is. Exactly one at any time (checked by `QueueStateMachine.checkInvariants`). */
export type JobState =
  'waiting' | 'delayed' | 'active' | 'completed' | 'failed' | 'dead' | 'cancelled';

/** A job's priority is 0 (first, the default) to this (last). */
export const maxPriority = 1_000_000;

export const jobStates: readonly JobState[] = [
  'waiting',
  'delayed',
  'active',
  'completed',
  'failed',
  'dead',
  'cancelled',
];

/** How long a failed job waits before its next run: `delayMs`, or doubling from it. */
export interface Backoff {
  readonly kind: 'fixed' | 'exponential';
  readonly delayMs: number;
  /** The longest an exponential backoff waits; ignored by a fixed one. */
  readonly maxDelayMs: number;
}

/** How many finished jobs a queue keeps, and for how long (0: no age limit). */
export interface Retention {
  readonly count: number;
  readonly ageMs: number;
}

export interface RateLimit {
  /** Claims per window. */
  readonly max: number;
  /** The window; windows are aligned to multiples of it in command time. */
  readonly intervalMs: number;
}

export interface JobOptions {
  /** Lower runs first; equal priorities run in the order they were added. Default 0. */
  readonly priority?: number;
  /** Runs allowed; past the last the job is dead. Default 3. */
  readonly maxAttempts?: number;
  readonly backoff?: Backoff;
  /** How long a claim lasts without a heartbeat. Default 30 s. */
  readonly leaseMs?: number;
}

export interface AddCommand extends JobOptions {
  readonly op: 'add';
  readonly queue: string;
  readonly name: string;
  readonly payload: Uint8Array;
  /** A caller's id deduplicates within the dedup window; without one the machine makes one. */
  readonly id?: string;
  /** Not before this long after the command's time. */
  readonly delayMs?: number;
}

/** What a claim asks for. */
export interface ClaimSpec {
  /** At most this many jobs (default 1). */
  readonly max?: number;
  readonly worker?: string;
  /** Overrides each job's lease length for this claim. */
  readonly leaseMs?: number;
  /**
   * Stops before a job whose payload would bring the payload bytes claimed past this; the
   * first job is always taken. Set by the node that proposes (the queue's `maxAnswerBytes`),
   * never by a client: a member of a release before it would refuse it (features.queueClaimBytes).
   */
  readonly maxBytes?: number;
}

/** One job of a bulk add: an add's fields but the queue. */
export type BulkJob = Omit<AddCommand, 'op' | 'queue'>;

/**
 * Adds many jobs to one queue in one entry, all or none: a job that would be refused (an id
 * still held past its dedup window, the machine full) refuses the whole batch. Each job is
 * added as its own add would be, in order (an id repeated in the batch is a duplicate).
 */
export interface AddBulkCommand {
  readonly op: 'addBulk';
  readonly queue: string;
  readonly jobs: readonly BulkJob[];
}

export interface ClaimCommand extends ClaimSpec {
  readonly op: 'claim';
  readonly queue: string;
}

/** Commands a worker sends about a job it holds: refused unless `token` is its live claim. */
export interface HeartbeatCommand {
  readonly op: 'heartbeat';
  readonly queue: string;
  readonly id: string;
  readonly token: number;
  readonly leaseMs?: number;
}

export interface ProgressCommand {
  readonly op: 'progress';
  readonly queue: string;
  readonly id: string;
  readonly token: number;
  /** 0 to 100. */
  readonly progress: number;
}

export interface CompleteCommand {
  readonly op: 'complete';
  readonly queue: string;
  readonly id: string;
  readonly token: number;
  readonly result?: Uint8Array;
  /**
   * Claims the next jobs of the same queue in the same entry once the report is applied
   * (BullMQ's fetchNext): a worker's steady state is one command per job, not two.
   */
  readonly next?: ClaimSpec;
}

export interface FailCommand {
  readonly op: 'fail';
  readonly queue: string;
  readonly id: string;
  readonly token: number;
  readonly error: string;
  /** No further attempt: the job is dead at once. */
  readonly final?: boolean;
  /**
   * Not a failure: the worker gives the job back unrun (it is stopping). The job waits again
   * at once and the attempt its claim counted is not counted (features.queueRelease).
   */
  readonly release?: boolean;
  /**
   * With `release`: the release is counted on the job, and one past its queue's `maxReleases`
   * is a failed attempt instead (features.queueReleaseCap). Set by the node that proposes, once
   * every member knows it, never by a client: a member that did not count would part from one
   * that did.
   */
  readonly counted?: boolean;
  /** As CompleteCommand's. */
  readonly next?: ClaimSpec;
}

/** One report of a ReportBulkCommand: a complete or a fail without its queue (the bulk's). */
export type BulkReport = Omit<CompleteCommand, 'queue'> | Omit<FailCommand, 'queue'>;

/**
 * Several reports on one queue's jobs in one entry, applied in order as if each were its own
 * command (each with its own token check, its own claim of `next`): what a worker's slots
 * finished in the same turn send together.
 */
export interface ReportBulkCommand {
  readonly op: 'reportBulk';
  readonly queue: string;
  readonly reports: readonly BulkReport[];
}

/** Commands about one job by id, from anyone. */
export interface JobCommand {
  readonly op: 'cancel' | 'delete' | 'retry';
  readonly queue: string;
  readonly id: string;
}

export interface QueueCommand {
  readonly op: 'pause' | 'resume';
  readonly queue: string;
}

/** Sets a queue's settings; a field left out keeps its value, null clears a limit. */
export interface ConfigureCommand {
  readonly op: 'configure';
  readonly queue: string;
  readonly rateLimit?: RateLimit | null;
  readonly concurrency?: number | null;
  /** Releases of a job that count no attempt; past them a release is a failed attempt. */
  readonly maxReleases?: number;
  readonly keepCompleted?: Retention;
  readonly keepDead?: Retention;
}

/** Creates a repeatable job, or replaces the one with the same id. */
export interface UpsertRepeatableCommand {
  readonly op: 'repeat';
  readonly queue: string;
  readonly repeatId: string;
  /** Exactly one of `everyMs` and `cron` (5 fields, UTC). */
  readonly everyMs?: number;
  readonly cron?: string;
  readonly name: string;
  readonly payload: Uint8Array;
  readonly options?: JobOptions;
}

export interface RemoveRepeatableCommand {
  readonly op: 'unrepeat';
  readonly queue: string;
  readonly repeatId: string;
}

/** Changes nothing but the machine's time: the leader proposes one when nothing else flows. */
export interface TickCommand {
  readonly op: 'tick';
}

export type QueueCommandAny =
  | AddCommand
  | AddBulkCommand
  | ClaimCommand
  | HeartbeatCommand
  | ProgressCommand
  | CompleteCommand
  | FailCommand
  | ReportBulkCommand
  | JobCommand
  | QueueCommand
  | ConfigureCommand
  | UpsertRepeatableCommand
  | RemoveRepeatableCommand
  | TickCommand;

/**
 * Why a command was refused; stable, for callers to act on. Their meanings and HTTP statuses
 * are in the one error table (src/base/errors.ts, src/api/errors.ts).
 */
export const queueErrorCodes = [
  'JOB_NOT_FOUND',
  'JOB_EXISTS',
  'STALE_TOKEN',
  'INVALID_STATE',
  'QUEUE_FULL',
  'TOO_MANY_QUEUES',
  'TOO_MANY_REPEATABLES',
  'REPEATABLE_NOT_FOUND',
  'CRON_NEVER_FIRES',
] as const satisfies readonly ErrorCode[];

export type QueueErrorCode = (typeof queueErrorCodes)[number];

export interface QueueError {
  readonly ok: false;
  readonly code: QueueErrorCode;
  readonly message: string;
}

/** A job as a reader sees it: a copy, never the machine's own record. */
export interface JobView {
  readonly queue: string;
  readonly id: string;
  readonly name: string;
  readonly payload: Uint8Array;
  readonly state: JobState;
  readonly priority: number;
  readonly attempts: number;
  readonly maxAttempts: number;
  /** Times a worker gave the job back unrun (counted releases; a retry resets it). */
  readonly releases: number;
  readonly backoff: Backoff;
  readonly leaseMs: number;
  readonly addedAtMs: number;
  /** When a delayed or failed job becomes waiting; when a waiting one became due. */
  readonly runAtMs: number;
  /** The fencing token of the live claim (active), or of the last one (0: never claimed). */
  readonly token: number;
  /** Active: when the lease ends unless extended. */
  readonly leaseExpiresMs: number;
  readonly worker: string | null;
  readonly progress: number;
  readonly finishedAtMs: number;
  readonly result: Uint8Array | null;
  readonly error: string | null;
  readonly repeatId: string | null;
}

export interface Claimed {
  readonly job: JobView;
  /** Pass with every later command about the job: the claim command's log index. */
  readonly token: number;
  readonly leaseExpiresMs: number;
}

export type ClaimResult =
  | { readonly ok: true; readonly jobs: readonly Claimed[] }
  | {
      readonly ok: true;
      readonly jobs: readonly [];
      /**
       * Why nothing was claimed, with no time to retry at: `paused` until someone resumes the
       * queue, `concurrency` until an active job ends, `empty` until a job is added or a
       * delayed one is due. A claim with `waitMs` returns as soon as one of those happens.
       */
      readonly reason: 'empty' | 'paused' | 'concurrency';
    }
  | {
      readonly ok: true;
      readonly jobs: readonly [];
      readonly reason: 'rate-limited';
      /** When the next rate window opens (queue time, ms since the epoch). */
      readonly retryAtMs: number;
    };

export type AddResult = {
  readonly ok: true;
  readonly id: string;
  /** The add matched an earlier one by id within the dedup window and changed nothing. */
  readonly duplicate: boolean;
  /** The job's state now (null when the earlier job has since been removed). */
  readonly state: JobState | null;
};

/** Each member of a union without its `ok`. */
type WithoutOk<T> = T extends unknown ? Omit<T, 'ok'> : never;

/** A complete or fail: the job's state after it, and the claim it carried, if any. */
export type ReportResult = {
  readonly ok: true;
  readonly state: JobState;
  /**
   * A counted release only (a fail with `release` and `counted`): whether the job was given
   * back (waiting again, its attempt not counted), or, false, failed instead, past its
   * queue's maxReleases.
   */
  readonly released?: boolean;
  /** Present when the command asked for the next jobs (ClaimSpec `next`). */
  readonly next?: WithoutOk<ClaimResult>;
};

/** Each report's result, in the bulk's order: a report's own or its refusal. */
export type ReportBulkResult = {
  readonly ok: true;
  readonly results: readonly (ReportResult | QueueError)[];
};

export type AddBulkResult = {
  readonly ok: true;
  /** Each job's add result, in the batch's order. */
  readonly jobs: readonly Omit<AddResult, 'ok'>[];
};

export type QueueResult =
  | AddResult
  | AddBulkResult
  | ClaimResult
  | ReportResult
  | ReportBulkResult
  | { readonly ok: true; readonly state?: JobState; readonly leaseExpiresMs?: number }
  | { readonly ok: true; readonly nextRunMs: number }
  | QueueError;

/**
 * What has happened to a queue's jobs since it was created: replicated state like the jobs
 * themselves, so every replica that applied the same log reports the same numbers, across
 * restarts and snapshots.
 */
export interface QueueTotals {
  /** Jobs added, by a caller or by a repeatable job. */
  readonly added: number;
  /** Jobs claimed (each claim of a job counts once). */
  readonly claimed: number;
  readonly completed: number;
  /** Failed runs: reported by a worker, or a lease that expired. */
  readonly failed: number;
  /** Jobs that went dead (out of attempts, or failed as final). */
  readonly dead: number;
  /** Claims whose lease expired without a report. */
  readonly leaseExpired: number;
}

export const zeroTotals: QueueTotals = {
  added: 0,
  claimed: 0,
  completed: 0,
  failed: 0,
  dead: 0,
  leaseExpired: 0,
};

/** Counts per state, the queue's settings, and its totals. */
export interface QueueStats {
  readonly queue: string;
  readonly paused: boolean;
  readonly counts: Readonly<Record<JobState, number>>;
  readonly rateLimit: RateLimit | null;
  readonly concurrency: number | null;
  readonly keepCompleted: Retention;
  readonly keepDead: Retention;
  readonly maxReleases: number;
  readonly totals: QueueTotals;
}

export type EventType =
  | 'added'
  | 'waiting'
  | 'active'
  | 'progress'
  | 'completed'
  | 'failed'
  | 'stalled'
  | 'dead'
  | 'cancelled'
  | 'retried'
  | 'deleted'
  | 'paused'
  | 'resumed';

/** Ordered by (index, seq): the log index of the command that caused it, and its rank there. */
export interface EventPosition {
  readonly index: number;
  readonly seq: number;
}

export interface QueueEvent extends EventPosition {
  readonly timeMs: number;
  readonly type: EventType;
  readonly queue: string;
  /** The job's id; null for a queue's own events. */
  readonly job: string | null;
  /** progress: the value; failed, stalled, dead: the error; otherwise null. */
  readonly detail: string | number | null;
}
