// The job queue as a replicated state machine. Every transition of every job is a committed
// command, so a job survives any minority of nodes dying, and a worker that lost its claim
// (its lease expired while it was paused, partitioned or slow) is refused by the fencing
// token when it reports back, so no job's outcome is recorded twice.
//
// Time is the leader's stamp on each command (Command.timeMs) and nothing else. Before a
// command runs the machine advances its clock to the command's time (never backwards) and
// processes everything due by then, in time order: delayed and failed jobs becoming waiting,
// leases expiring, repeatable jobs firing, finished jobs aging out. A replica that applies the
// same log does the same at the same index. The leader proposes `tick` when nothing else
// flows, so time moves on an idle queue.
//
// Indexes, so that nothing is a scan: per queue, waiting jobs in a heap by (priority, seq); for
// the machine, delayed and failed jobs in a heap by due time, active jobs by lease end,
// repeatable jobs by next run, finished jobs with an age limit by expiry. A claim is O(log n)
// in the waiting jobs of its queue; each due item costs O(log n) once.

import { strict as assert } from 'node:assert';
import { FlotillaError } from '../base/errors.js';
import { checkQueueLimits, defaultQueueLimits, type QueueLimits } from '../base/limits.js';
import { chunkStream, type Command, type Refusal, type StateMachine } from '../host/contracts.js';
import { checkInvariants, dumpState } from './audit.js';
import { decodeQueueCommand, encodeQueueCommand } from './codec.js';
import { parseCron } from './cron.js';
import {
  backoffMs,
  Job,
  defaultJobOptions,
  expiryOf,
  isFinished,
  newJob,
  nextRunMs,
  QueueState,
  Repeatable,
  viewOf,
  type FinishedState,
} from './jobs.js';
import { QueueReads } from './reads.js';
import { captureState, decodeSnapshot, restoreState, type Capture } from './snapshot.js';
import { dedupKey, QueueCore, repeatKey, type DedupTuple } from './state.js';
import {
  queueErrorCodes,
  type AddBulkCommand,
  type AddCommand,
  type AddResult,
  type ClaimSpec,
  type CompleteCommand,
  type FailCommand,
  type ClaimResult,
  type Claimed,
  type ConfigureCommand,
  type EventType,
  type JobState,
  type QueueCommandAny,
  type QueueError,
  type QueueErrorCode,
  type QueueResult,
  type ReportResult,
  type UpsertRepeatableCommand,
} from './types.js';

/** Snapshots being encoded at once; a further one closes the oldest (its reader then fails). */
const MAX_CAPTURES = 4;

function refuse(code: QueueErrorCode, message: string): QueueError {
  assert.ok((queueErrorCodes as readonly string[]).includes(code));
  return { ok: false, code, message };
}

export class QueueStateMachine extends QueueReads implements StateMachine {
  /** The command being applied: events take its index. */
  private index = 0;
  private captures: Capture[] = [];

  /** Throws a QueueLimitsError (CONFIG_INVALID) when the limits contradict each other. */
  constructor(limits: Partial<QueueLimits> = {}) {
    const resolved = { ...defaultQueueLimits, ...limits };
    checkQueueLimits(resolved);
    super(new QueueCore(resolved));
  }

  static encode(c: QueueCommandAny): Uint8Array {
    return encodeQueueCommand(c);
  }

  apply(commands: readonly Command[]): (QueueResult | Refusal)[] {
    return commands.map((c) => {
      let cmd: QueueCommandAny;
      try {
        cmd = decodeQueueCommand(c.payload, this.s.limits);
      } catch (err) {
        // Deterministic on every replica: the same bytes fail the same way, and nothing changes.
        const why = err instanceof FlotillaError ? err.message : String(err);
        return {
          refused: 'BAD_COMMAND',
          message: `Entry ${c.index} holds no valid queue command: ${why}`,
        };
      }
      this.index = c.index;
      this.advance(c.timeMs);
      const result = this.run(cmd, c.index);
      // A command may make something due at once (a retention age shortened by configure).
      this.processDue();
      return result;
    });
  }

  private run(cmd: QueueCommandAny, index: number): QueueResult {
    switch (cmd.op) {
      case 'add':
        return this.add(cmd);
      case 'addBulk':
        return this.addBulk(cmd);
      case 'claim':
        return this.claim(cmd, cmd.queue, index);
      case 'heartbeat':
      case 'progress':
      case 'complete':
      case 'fail':
        return this.reportOn(cmd);
      case 'reportBulk': {
        // Each as if it were its own command, in order: one's claim may take a job another
        // report of the same bulk has just failed back to waiting, as the next entry would.
        const results: (ReportResult | QueueError)[] = [];
        for (const r of cmd.reports)
          results.push(this.reportOn({ ...r, queue: cmd.queue }) as ReportResult | QueueError);
        return { ok: true, results };
      }
      case 'cancel':
      case 'delete':
      case 'retry': {
        const job = this.s.queues.get(cmd.queue)?.jobs.get(cmd.id);
        if (job === undefined)
          return refuse('JOB_NOT_FOUND', `No job "${cmd.id}" in queue "${cmd.queue}"`);
        return this.manage(job, cmd.op);
      }
      case 'pause':
      case 'resume': {
        const q = this.queueFor(cmd.queue);
        if (!(q instanceof QueueState)) return q;
        q.paused = cmd.op === 'pause';
        this.emit(cmd.op === 'pause' ? 'paused' : 'resumed', q.name, null, null);
        return { ok: true };
      }
      case 'configure':
        return this.configure(cmd);
      case 'repeat':
        return this.upsertRepeatable(cmd);
      case 'unrepeat': {
        const key = repeatKey(cmd.queue, cmd.repeatId);
        const r = this.s.repeatables.get(key);
        if (r === undefined)
          return refuse(
            'REPEATABLE_NOT_FOUND',
            `No repeatable job "${cmd.repeatId}" in queue "${cmd.queue}"`,
          );
        this.s.repeatables.delete(key);
        this.s.repeatHeap.remove(r);
        return { ok: true };
      }
      case 'tick':
        return { ok: true };
    }
  }

  // -------------------------------------------------------------------------------------------
  // Time.

  /** Moves the clock to `timeMs` (never back) and processes what is due by then. */
  private advance(timeMs: number): void {
    if (timeMs > this.s.nowMs) this.s.nowMs = timeMs;
    this.processDue();
  }

  /** Everything due at or before nowMs, earliest first; ties in a fixed order of kinds. */
  private processDue(): void {
    const now = this.s.nowMs;
    for (;;) {
      const timer = this.s.timers.peek();
      const lease = this.s.leases.peek();
      const rep = this.s.repeatHeap.peek();
      const old = this.s.retention.peek();
      const tTimer = timer?.runAtMs ?? Infinity;
      const tLease = lease?.leaseExpiresMs ?? Infinity;
      const tRep = rep?.nextMs ?? Infinity;
      const tOld = old !== undefined ? expiryOf(old) : Infinity;
      const t = Math.min(tTimer, tLease, tRep, tOld);
      if (t > now) break;
      if (timer !== undefined && t === tTimer) this.becomeWaiting(timer, 'waiting');
      else if (lease !== undefined && t === tLease) this.expireLease(lease);
      else if (rep !== undefined && t === tRep) this.fire(rep);
      else if (old !== undefined) this.removeJob(old);
    }
    while (this.s.dedupStart < this.s.dedupQueue.length) {
      const [queue, id, expiresMs] = this.s.dedupQueue[this.s.dedupStart] as DedupTuple;
      if (expiresMs > now) break;
      const key = dedupKey(queue, id);
      if (this.s.dedup.get(key) === expiresMs) this.s.dedup.delete(key);
      this.s.dedupStart++;
    }
    if (this.s.dedupStart > 1024 && this.s.dedupStart * 2 > this.s.dedupQueue.length) {
      this.s.dedupQueue = this.s.dedupQueue.slice(this.s.dedupStart);
      this.s.dedupStart = 0;
    }
  }

  private expireLease(job: Job): void {
    job.queue.totals.leaseExpired++;
    this.emit('stalled', job.queue.name, job.id, `lease of token ${job.token} expired`);
    this.failed(job, 'lease expired', false);
  }

  /** A repeatable job's due run: one job, then the next run after now (missed runs skipped). */
  private fire(r: Repeatable): void {
    const q = this.s.queues.get(r.queue) as QueueState;
    const id = `${r.repeatId}@${r.nextMs}`;
    if (!q.jobs.has(id) && this.s.jobCount < this.s.limits.maxJobs) {
      const seq = this.s.nextSeq++;
      this.insert(newJob(q, id, seq, r, this.s.nowMs, 'waiting', r.repeatId));
    }
    const next = nextRunMs(r, r.nextMs, this.s.nowMs);
    if (next === null) {
      this.s.repeatHeap.remove(r);
      this.s.repeatables.delete(repeatKey(r.queue, r.repeatId));
    } else {
      r.nextMs = next;
      this.s.repeatHeap.update(r);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Moving jobs between states. Every change of a job goes through `beforeChange` first.

  /** Called before any change to a job's fields: snapshots being encoded keep what it was. */
  protected beforeChange(job: Job): void {
    for (const c of this.captures) c.preserve(job);
  }

  /** Takes the job out of the index of its current state. */
  private detach(job: Job): void {
    const q = job.queue;
    q.counts[job.state]--;
    switch (job.state) {
      case 'waiting':
        q.waiting.remove(job);
        break;
      case 'delayed':
      case 'failed':
        this.s.timers.remove(job);
        break;
      case 'active':
        this.s.leases.remove(job);
        break;
      default:
        q.finishedMap(job.state).delete(job.id);
        if (this.s.retention.has(job)) this.s.retention.remove(job);
    }
  }

  /** Puts the job in `state` and its index; the caller set the fields that state needs. */
  private attach(job: Job, state: JobState): void {
    const q = job.queue;
    job.state = state;
    q.counts[state]++;
    switch (state) {
      case 'waiting':
        q.waiting.push(job);
        break;
      case 'delayed':
      case 'failed':
        this.s.timers.push(job);
        break;
      case 'active':
        this.s.leases.push(job);
        break;
      default: {
        job.finishedStamp = ++this.s.finishStamp;
        job.finishedAtMs = this.s.nowMs;
        const keep = state === 'completed' ? q.keepCompleted : q.keepDead;
        const finished = q.finishedMap(state);
        finished.set(job.id, job);
        if (keep.ageMs > 0) this.s.retention.push(job);
        while (finished.size > keep.count) this.removeJob(finished.values().next().value as Job);
      }
    }
  }

  private insert(job: Job): void {
    const q = job.queue;
    q.jobs.set(job.id, job);
    q.order.push(job);
    this.s.jobCount++;
    q.totals.added++;
    this.emit('added', q.name, job.id, null);
    this.attach(job, job.state);
  }

  private removeJob(job: Job): void {
    this.beforeChange(job);
    this.detach(job);
    job.removed = true;
    const q = job.queue;
    q.jobs.delete(job.id);
    q.removedInOrder++;
    q.maybeCompact();
    this.s.jobCount--;
  }

  private becomeWaiting(job: Job, event: EventType): void {
    this.beforeChange(job);
    this.detach(job);
    job.runAtMs = this.s.nowMs;
    this.attach(job, 'waiting');
    this.emit(event, job.queue.name, job.id, null);
  }

  /**
   * A run given back unrun (its worker stopping): waiting again at once, without the attempt
   * its claim counted, and no backoff. Its reason is kept, as a failure's is. A counted release
   * past the queue's maxReleases is a failed attempt instead (backoff, or dead), with the
   * reason saying so: a job that every worker gives back would otherwise never end. Answers
   * whether the job was given back (false: failed instead).
   */
  private released(job: Job, reason: string, counted: boolean): boolean {
    this.beforeChange(job);
    if (counted) {
      job.releases++;
      const max = job.queue.maxReleases;
      if (job.releases > max) {
        const why = `${reason} (release ${job.releases}, past the queue's maxReleases of ${max}: counted as a failed attempt)`;
        this.failed(job, why, false);
        return false;
      }
    }
    this.detach(job);
    job.error = reason;
    if (job.attempts > 0) job.attempts--;
    job.runAtMs = this.s.nowMs;
    this.attach(job, 'waiting');
    this.emit('waiting', job.queue.name, job.id, null);
    return true;
  }

  /** A run failed (reported, or its lease expired): retry after the backoff, or dead. */
  private failed(job: Job, error: string, final: boolean): void {
    this.beforeChange(job);
    this.detach(job);
    job.error = error;
    job.queue.totals.failed++;
    this.emit('failed', job.queue.name, job.id, error);
    if (final || job.attempts >= job.maxAttempts) {
      job.queue.totals.dead++;
      this.attach(job, 'dead');
      this.emit('dead', job.queue.name, job.id, error);
      return;
    }
    const wait = backoffMs(job.backoff, job.attempts);
    job.runAtMs = this.s.nowMs + wait;
    if (wait > 0) {
      this.attach(job, 'failed');
    } else {
      this.attach(job, 'waiting');
      this.emit('waiting', job.queue.name, job.id, null);
    }
  }

  private emit(
    type: EventType,
    queue: string,
    job: string | null,
    detail: string | number | null,
  ): void {
    this.s.events.append(this.index, this.s.nowMs, type, queue, job, detail);
  }

  // -------------------------------------------------------------------------------------------
  // Commands.

  private queueFor(name: string): QueueState | QueueError {
    const q = this.s.queues.get(name);
    if (q !== undefined) return q;
    if (this.s.queues.size >= this.s.limits.maxQueues)
      return refuse(
        'TOO_MANY_QUEUES',
        `Cannot create queue "${name}": ${this.s.queues.size} queues is the limit`,
      );
    const created = new QueueState(name);
    this.s.queues.set(name, created);
    return created;
  }

  private add(cmd: AddCommand): QueueResult {
    const q = this.queueFor(cmd.queue);
    if (!(q instanceof QueueState)) return q;
    if (cmd.id !== undefined) {
      const existing = q.jobs.get(cmd.id);
      if (this.s.dedup.has(dedupKey(q.name, cmd.id)))
        return { ok: true, id: cmd.id, duplicate: true, state: existing?.state ?? null };
      if (existing !== undefined)
        return refuse(
          'JOB_EXISTS',
          `Job "${cmd.id}" is still in queue "${q.name}" (${existing.state}) past its dedup window`,
        );
    }
    if (this.s.jobCount >= this.s.limits.maxJobs)
      return refuse(
        'QUEUE_FULL',
        `The machine holds ${this.s.jobCount} jobs, its limit: cannot add to "${q.name}"`,
      );
    const seq = this.s.nextSeq++;
    const id = cmd.id ?? `#${seq}`;
    const delayMs = cmd.delayMs ?? 0;
    // The options one by one, not spread over the defaults: this runs for every job.
    const job = new Job(
      q,
      id,
      seq,
      cmd.name,
      cmd.payload,
      cmd.priority ?? defaultJobOptions.priority,
      cmd.maxAttempts ?? defaultJobOptions.maxAttempts,
      cmd.backoff ?? defaultJobOptions.backoff,
      cmd.leaseMs ?? defaultJobOptions.leaseMs,
      this.s.nowMs,
      null,
      delayMs > 0 ? 'delayed' : 'waiting',
    );
    job.runAtMs = this.s.nowMs + delayMs;
    this.insert(job);
    if (cmd.id !== undefined) {
      const expiresMs = this.s.nowMs + this.s.limits.dedupWindowMs;
      this.s.dedup.set(dedupKey(q.name, cmd.id), expiresMs);
      this.s.dedupQueue.push([q.name, cmd.id, expiresMs]);
    }
    return { ok: true, id, duplicate: false, state: job.state };
  }

  /**
   * Every job of the batch is checked before any is added, so the batch adds all of its jobs
   * or none: each is then added exactly as its own add would be, which cannot be refused.
   */
  private addBulk(cmd: AddBulkCommand): QueueResult {
    const q = this.queueFor(cmd.queue);
    if (!(q instanceof QueueState)) return q;
    const ids = new Set<string>();
    let fresh = 0;
    for (const [i, j] of cmd.jobs.entries()) {
      if (j.id !== undefined) {
        if (ids.has(j.id) || this.s.dedup.has(dedupKey(q.name, j.id))) continue;
        const existing = q.jobs.get(j.id);
        if (existing !== undefined)
          return refuse(
            'JOB_EXISTS',
            `Job "${j.id}" (jobs[${i}]) is still in queue "${q.name}" (${existing.state}) ` +
              'past its dedup window: nothing of the batch was added',
          );
        ids.add(j.id);
      }
      fresh++;
    }
    if (this.s.jobCount + fresh > this.s.limits.maxJobs)
      return refuse(
        'QUEUE_FULL',
        `The machine holds ${this.s.jobCount} jobs; ${fresh} more would pass its limit ` +
          `(${this.s.limits.maxJobs}): nothing of the batch was added to "${q.name}"`,
      );
    const jobs = cmd.jobs.map((j) => {
      const r = this.add({ op: 'add', queue: q.name, ...j });
      // The checks above are add's own: a refusal here is a bug, not a bad command.
      assert.ok(r.ok, `a checked bulk add was refused: ${JSON.stringify(r)}`);
      const { ok: _ok, ...rest } = r as AddResult;
      return rest;
    });
    return { ok: true, jobs };
  }

  private claim(cmd: ClaimSpec, queue: string, index: number): ClaimResult {
    const q = this.s.queues.get(queue);
    // A time to retry at only where one is known (the next rate window): a pause lasts until
    // someone resumes, a full concurrency until a job ends, and the next delayed job is not
    // looked up; a made-up 0 there read as "retry now" and sent workers spinning.
    const none = (reason: 'empty' | 'paused' | 'concurrency'): ClaimResult => ({
      ok: true,
      jobs: [],
      reason,
    });
    if (q === undefined || (q.waiting.size === 0 && !q.paused)) return none('empty');
    if (q.paused) return none('paused');
    let n = Math.min(cmd.max ?? 1, q.waiting.size);
    if (q.concurrency !== null) {
      n = Math.min(n, q.concurrency - q.counts.active);
      if (n <= 0) return none('concurrency');
    }
    if (q.rateLimit !== null) {
      const window = Math.floor(this.s.nowMs / q.rateLimit.intervalMs);
      if (window !== q.rateWindow) {
        q.rateWindow = window;
        q.rateCount = 0;
      }
      n = Math.min(n, q.rateLimit.max - q.rateCount);
      if (n <= 0)
        return {
          ok: true,
          jobs: [],
          reason: 'rate-limited',
          retryAtMs: (window + 1) * q.rateLimit.intervalMs,
        };
    }
    const jobs: Claimed[] = [];
    let bytes = 0;
    for (let i = 0; i < n; i++) {
      const job = q.waiting.peek() as Job;
      bytes += job.payloadBytes;
      if (i > 0 && cmd.maxBytes !== undefined && bytes > cmd.maxBytes) break;
      this.beforeChange(job);
      this.detach(job);
      job.attempts++;
      q.totals.claimed++;
      job.token = index;
      job.leaseExpiresMs = this.s.nowMs + (cmd.leaseMs ?? job.leaseMs);
      job.worker = cmd.worker ?? null;
      job.progress = 0;
      this.attach(job, 'active');
      this.emit('active', q.name, job.id, null);
      jobs.push({ job: viewOf(job), token: index, leaseExpiresMs: job.leaseExpiresMs });
    }
    if (q.rateLimit !== null) q.rateCount += jobs.length;
    return { ok: true, jobs };
  }

  /** A report about a job by its fencing token: refused unless the token is the live claim's. */
  private reportOn(
    cmd: Extract<QueueCommandAny, { op: 'heartbeat' | 'progress' | 'complete' | 'fail' }>,
  ): QueueResult {
    const job = this.s.queues.get(cmd.queue)?.jobs.get(cmd.id);
    if (job === undefined)
      return refuse('JOB_NOT_FOUND', `No job "${cmd.id}" in queue "${cmd.queue}"`);
    if (job.state !== 'active' || job.token !== cmd.token)
      return refuse(
        'STALE_TOKEN',
        `Token ${cmd.token} is not the live claim of job "${cmd.id}": it is ${job.state}` +
          (job.state === 'active' ? ` under token ${job.token}` : ''),
      );
    return this.report(job, cmd);
  }

  /** A worker's report on a job it holds (token checked by the caller). */
  private report(
    job: Job,
    cmd: Extract<QueueCommandAny, { op: 'heartbeat' | 'progress' | 'complete' | 'fail' }>,
  ): QueueResult {
    this.beforeChange(job);
    switch (cmd.op) {
      case 'heartbeat':
        job.leaseExpiresMs = this.s.nowMs + (cmd.leaseMs ?? job.leaseMs);
        this.s.leases.update(job);
        return { ok: true, leaseExpiresMs: job.leaseExpiresMs };
      case 'progress':
        job.progress = cmd.progress;
        this.emit('progress', job.queue.name, job.id, cmd.progress);
        return { ok: true };
      case 'complete':
        this.detach(job);
        job.result = cmd.result ?? null;
        job.error = null;
        job.queue.totals.completed++;
        this.attach(job, 'completed');
        this.emit('completed', job.queue.name, job.id, null);
        return this.withNext({ ok: true, state: 'completed' }, cmd);
      case 'fail': {
        // A counted release says whether it gave the job back: past maxReleases it failed
        // the attempt instead, and its state alone cannot tell (a failure with no backoff to
        // wait out is waiting again too). An uncounted one (proposed while a member ran a
        // release before counted releases) always gives it back, and answers as such a
        // member does.
        if (cmd.release === true) {
          const counted = cmd.counted === true;
          const released = this.released(job, cmd.error, counted);
          const r = { ok: true, state: job.state } as const;
          return this.withNext(counted ? { ...r, released } : r, cmd);
        }
        this.failed(job, cmd.error, cmd.final === true);
        return this.withNext({ ok: true, state: job.state }, cmd);
      }
    }
  }

  /**
   * A report's answer with the claim it carried (`next`), made after the report applied: the
   * failed job itself may come back at once when it is due again, as it would to any claim.
   */
  private withNext(
    r: { ok: true; state: JobState; released?: boolean },
    cmd: CompleteCommand | FailCommand,
  ): ReportResult {
    if (cmd.next === undefined) return r;
    const c = this.claim(cmd.next, cmd.queue, this.index);
    // The usual answer (jobs claimed) built field by field: copying through object rest and
    // spread, on every completion, cost more than the claim itself.
    let next: ReportResult['next'];
    if ('reason' in c) {
      const { ok: _ok, ...rest } = c;
      next = rest;
    } else next = { jobs: c.jobs };
    return r.released === undefined
      ? { ok: true, state: r.state, next }
      : { ok: true, state: r.state, released: r.released, next };
  }

  private manage(job: Job, op: 'cancel' | 'delete' | 'retry'): QueueResult {
    const name = job.queue.name;
    if (op === 'delete') {
      this.removeJob(job);
      this.emit('deleted', name, job.id, null);
      return { ok: true };
    }
    if (op === 'cancel') {
      if (isFinished(job.state))
        return refuse(
          'INVALID_STATE',
          `Job "${job.id}" is ${job.state}: only an unfinished job can be cancelled`,
        );
      this.beforeChange(job);
      this.detach(job);
      this.attach(job, 'cancelled');
      this.emit('cancelled', name, job.id, null);
      return { ok: true, state: 'cancelled' };
    }
    if (job.state !== 'dead' && job.state !== 'cancelled')
      return refuse(
        'INVALID_STATE',
        `Job "${job.id}" is ${job.state}: only a dead or cancelled job can be retried`,
      );
    this.beforeChange(job);
    job.attempts = 0;
    job.releases = 0;
    job.error = null;
    job.result = null;
    job.finishedAtMs = 0;
    this.becomeWaiting(job, 'retried');
    return { ok: true, state: 'waiting' };
  }

  private configure(cmd: ConfigureCommand): QueueResult {
    const q = this.queueFor(cmd.queue);
    if (!(q instanceof QueueState)) return q;
    if (cmd.rateLimit !== undefined) {
      q.rateLimit = cmd.rateLimit;
      q.rateCount = 0;
    }
    if (cmd.concurrency !== undefined) q.concurrency = cmd.concurrency;
    if (cmd.maxReleases !== undefined) q.maxReleases = cmd.maxReleases;
    if (cmd.keepCompleted !== undefined || cmd.keepDead !== undefined) {
      // Expiry keys change with the settings: out of the heap under the old ones, back under the new.
      const finished = [...q.completed.values(), ...q.dead.values(), ...q.cancelled.values()];
      for (const j of finished) if (this.s.retention.has(j)) this.s.retention.remove(j);
      q.keepCompleted = cmd.keepCompleted ?? q.keepCompleted;
      q.keepDead = cmd.keepDead ?? q.keepDead;
      for (const j of finished) if (expiryOf(j) > j.finishedAtMs) this.s.retention.push(j);
      for (const s of ['completed', 'dead', 'cancelled'] as const) this.trimByCount(q, s);
    }
    return { ok: true };
  }

  private trimByCount(q: QueueState, s: FinishedState): void {
    const keep = s === 'completed' ? q.keepCompleted : q.keepDead;
    const m = q.finishedMap(s);
    while (m.size > keep.count) this.removeJob(m.values().next().value as Job);
  }

  private upsertRepeatable(cmd: UpsertRepeatableCommand): QueueResult {
    const q = this.queueFor(cmd.queue);
    if (!(q instanceof QueueState)) return q;
    const key = repeatKey(q.name, cmd.repeatId);
    const old = this.s.repeatables.get(key);
    if (old === undefined && this.s.repeatables.size >= this.s.limits.maxRepeatables)
      return refuse(
        'TOO_MANY_REPEATABLES',
        `The machine holds ${this.s.repeatables.size} repeatable jobs, its limit`,
      );
    const cron = cmd.cron !== undefined ? parseCron(cmd.cron) : null;
    const sameSchedule =
      old !== undefined &&
      old.everyMs === (cmd.everyMs ?? null) &&
      (old.cron?.source ?? null) === (cmd.cron ?? null);
    const probe = { everyMs: cmd.everyMs ?? null, cron };
    const nextMs = sameSchedule ? old.nextMs : nextRunMs(probe, this.s.nowMs, this.s.nowMs);
    if (nextMs === null)
      return refuse(
        'CRON_NEVER_FIRES',
        `Cron pattern "${cmd.cron}" matches no time in the next five years`,
      );
    const o = { ...defaultJobOptions, ...cmd.options };
    const r = new Repeatable(
      q.name,
      cmd.repeatId,
      this.s.nextSeq++,
      cmd.everyMs ?? null,
      cron,
      cmd.name,
      cmd.payload,
      o.priority,
      o.maxAttempts,
      o.backoff,
      o.leaseMs,
      nextMs,
    );
    if (old !== undefined) this.s.repeatHeap.remove(old);
    this.s.repeatables.set(key, r);
    this.s.repeatHeap.push(r);
    return { ok: true, nextRunMs: nextMs };
  }

  // -------------------------------------------------------------------------------------------
  // Snapshots, and the machine's state as data.

  snapshot(): AsyncIterable<Uint8Array> {
    this.captures = this.captures.filter((c) => !c.closed);
    const capture = captureState(this.s);
    this.captures.push(capture);
    if (this.captures.length > MAX_CAPTURES) this.captures.shift()?.close();
    return chunkStream(() => capture.chunks());
  }

  async restore(chunks: AsyncIterable<Uint8Array>): Promise<void> {
    const decoded = await decodeSnapshot(chunks);
    // A capture being read holds the jobs it captured, which nothing changes after the
    // restore (it makes jobs of its own): it reads on, no longer told of changes.
    this.captures = [];
    restoreState(this.s, decoded);
  }

  /** Every record of the state, canonically ordered: replicas compare equal iff they agree. */
  dump(): unknown {
    return dumpState(this.s);
  }

  /** What is wrong with the state, checked the slow way; empty when every invariant holds. */
  checkInvariants(): string[] {
    return checkInvariants(this.s);
  }
}
