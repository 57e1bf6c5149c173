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
import { defaultQueueLimits, type QueueLimits } from '../base/limits.js';
import { chunkStream, type Command, type Refusal, type StateMachine } from '../host/contracts.js';
import { decodeQueueCommand, encodeQueueCommand } from './codec.js';
import { nextCronMs, parseCron } from './cron.js';
import { EventLog } from './events.js';
import { IndexedHeap } from './heap.js';
import {
  backoffMs,
  defaultJobOptions,
  dueOrder,
  expiryOf,
  isFinished,
  Job,
  leaseOrder,
  QueueState,
  Repeatable,
  repeatOrder,
  retentionOrder,
  type FinishedState,
} from './jobs.js';
import { QueueReads } from './reads.js';
import { Capture, decodeSnapshot, jobTuple, type DedupTuple } from './snapshot.js';
import type {
  AddCommand,
  ClaimCommand,
  ClaimResult,
  Claimed,
  ConfigureCommand,
  EventType,
  JobState,
  QueueCommandAny,
  QueueErrorCode,
  QueueError,
  QueueResult,
  UpsertRepeatableCommand,
} from './types.js';
import { queueErrorCodes } from './types.js';
import { viewOf } from './jobs.js';

/** Snapshots being encoded at once; a further one closes the oldest (its reader then fails). */
const MAX_CAPTURES = 4;

function refuse(code: QueueErrorCode, message: string): QueueError {
  assert.ok(code in queueErrorCodes);
  return { ok: false, code, message };
}

export class QueueStateMachine extends QueueReads implements StateMachine {
  /** Jobs in delayed or failed state, by due time. */
  private readonly timers = new IndexedHeap<Job>(dueOrder);
  /** Active jobs, by lease end. Invariant: after a command, every lease ends after nowMs. */
  private readonly leases = new IndexedHeap<Job>(leaseOrder);
  /** Finished jobs of queues with an age limit for their kind, by expiry. */
  private readonly retention = new IndexedHeap<Job>(retentionOrder);
  private readonly repeatHeap = new IndexedHeap<Repeatable>(repeatOrder);
  /** Caller ids' dedup records in the order they expire (time never goes back). */
  private dedupQueue: DedupTuple[] = [];
  private dedupStart = 0;
  private nextSeq = 1;
  private finishStamp = 0;
  /** The command being applied: events take its index. */
  private index = 0;
  private captures: Capture[] = [];

  constructor(limits: Partial<QueueLimits> = {}) {
    const l = { ...defaultQueueLimits, ...limits };
    super(l, new EventLog(l.maxEvents));
  }

  static encode(c: QueueCommandAny): Uint8Array {
    return encodeQueueCommand(c);
  }

  apply(commands: readonly Command[]): (QueueResult | Refusal)[] {
    return commands.map((c) => {
      let cmd: QueueCommandAny;
      try {
        cmd = decodeQueueCommand(c.payload, this.limits);
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
      case 'claim':
        return this.claim(cmd, index);
      case 'heartbeat':
      case 'progress':
      case 'complete':
      case 'fail': {
        const job = this.queues.get(cmd.queue)?.jobs.get(cmd.id);
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
      case 'cancel':
      case 'delete':
      case 'retry': {
        const job = this.queues.get(cmd.queue)?.jobs.get(cmd.id);
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
        const r = this.repeatables.get(key);
        if (r === undefined)
          return refuse(
            'REPEATABLE_NOT_FOUND',
            `No repeatable job "${cmd.repeatId}" in queue "${cmd.queue}"`,
          );
        this.repeatables.delete(key);
        this.repeatHeap.remove(r);
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
    if (timeMs > this.nowMs) this.nowMs = timeMs;
    this.processDue();
  }

  /** Everything due at or before nowMs, earliest first; ties in a fixed order of kinds. */
  private processDue(): void {
    const now = this.nowMs;
    for (;;) {
      const timer = this.timers.peek();
      const lease = this.leases.peek();
      const rep = this.repeatHeap.peek();
      const old = this.retention.peek();
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
    while (this.dedupStart < this.dedupQueue.length) {
      const [queue, id, expiresMs] = this.dedupQueue[this.dedupStart] as DedupTuple;
      if (expiresMs > now) break;
      const key = dedupKey(queue, id);
      if (this.dedup.get(key) === expiresMs) this.dedup.delete(key);
      this.dedupStart++;
    }
    if (this.dedupStart > 1024 && this.dedupStart * 2 > this.dedupQueue.length) {
      this.dedupQueue = this.dedupQueue.slice(this.dedupStart);
      this.dedupStart = 0;
    }
  }

  private expireLease(job: Job): void {
    this.emit('stalled', job.queue.name, job.id, `lease of token ${job.token} expired`);
    this.failed(job, 'lease expired', false);
  }

  /** A repeatable job's due run: one job, then the next run after now (missed runs skipped). */
  private fire(r: Repeatable): void {
    const q = this.queues.get(r.queue) as QueueState;
    const id = `${r.repeatId}@${r.nextMs}`;
    if (!q.jobs.has(id) && this.jobCount < this.limits.maxJobs) {
      const job = new Job(
        q,
        id,
        this.nextSeq++,
        r.name,
        r.payload,
        r.priority,
        r.maxAttempts,
        r.backoff,
        r.leaseMs,
        this.nowMs,
        r.repeatId,
        'waiting',
      );
      this.insert(job);
    }
    const next = nextRunMs(r, r.nextMs, this.nowMs);
    if (next === null) {
      this.repeatHeap.remove(r);
      this.repeatables.delete(repeatKey(r.queue, r.repeatId));
    } else {
      r.nextMs = next;
      this.repeatHeap.update(r);
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
        this.timers.remove(job);
        break;
      case 'active':
        this.leases.remove(job);
        break;
      default:
        q.finishedMap(job.state).delete(job.id);
        if (this.retention.has(job)) this.retention.remove(job);
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
        this.timers.push(job);
        break;
      case 'active':
        this.leases.push(job);
        break;
      default: {
        job.finishedStamp = ++this.finishStamp;
        job.finishedAtMs = this.nowMs;
        const keep = state === 'completed' ? q.keepCompleted : q.keepDead;
        const finished = q.finishedMap(state);
        finished.set(job.id, job);
        if (keep.ageMs > 0) this.retention.push(job);
        while (finished.size > keep.count) this.removeJob(finished.values().next().value as Job);
      }
    }
  }

  private insert(job: Job): void {
    const q = job.queue;
    q.jobs.set(job.id, job);
    q.order.push(job);
    this.jobCount++;
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
    this.jobCount--;
  }

  private becomeWaiting(job: Job, event: EventType): void {
    this.beforeChange(job);
    this.detach(job);
    job.runAtMs = this.nowMs;
    this.attach(job, 'waiting');
    this.emit(event, job.queue.name, job.id, null);
  }

  /** A run failed (reported, or its lease expired): retry after the backoff, or dead. */
  private failed(job: Job, error: string, final: boolean): void {
    this.beforeChange(job);
    this.detach(job);
    job.error = error;
    this.emit('failed', job.queue.name, job.id, error);
    if (final || job.attempts >= job.maxAttempts) {
      this.attach(job, 'dead');
      this.emit('dead', job.queue.name, job.id, error);
      return;
    }
    const wait = backoffMs(job.backoff, job.attempts);
    job.runAtMs = this.nowMs + wait;
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
    this.events.append({ index: this.index, timeMs: this.nowMs, type, queue, job, detail });
  }

  // -------------------------------------------------------------------------------------------
  // Commands.

  private queueFor(name: string): QueueState | QueueError {
    const q = this.queues.get(name);
    if (q !== undefined) return q;
    if (this.queues.size >= this.limits.maxQueues)
      return refuse(
        'TOO_MANY_QUEUES',
        `Cannot create queue "${name}": ${this.queues.size} queues is the limit`,
      );
    const created = new QueueState(name);
    this.queues.set(name, created);
    return created;
  }

  private add(cmd: AddCommand): QueueResult {
    const q = this.queueFor(cmd.queue);
    if (!(q instanceof QueueState)) return q;
    if (cmd.id !== undefined) {
      const existing = q.jobs.get(cmd.id);
      if (this.dedup.has(dedupKey(q.name, cmd.id)))
        return { ok: true, id: cmd.id, duplicate: true, state: existing?.state ?? null };
      if (existing !== undefined)
        return refuse(
          'JOB_EXISTS',
          `Job "${cmd.id}" is still in queue "${q.name}" (${existing.state}) past its dedup window`,
        );
    }
    if (this.jobCount >= this.limits.maxJobs)
      return refuse(
        'QUEUE_FULL',
        `The machine holds ${this.jobCount} jobs, its limit: cannot add to "${q.name}"`,
      );
    const seq = this.nextSeq++;
    const id = cmd.id ?? `#${seq}`;
    const delayMs = cmd.delayMs ?? 0;
    const o = defaultJobOptions;
    const job = new Job(
      q,
      id,
      seq,
      cmd.name,
      cmd.payload,
      cmd.priority ?? o.priority,
      cmd.maxAttempts ?? o.maxAttempts,
      cmd.backoff ?? o.backoff,
      cmd.leaseMs ?? o.leaseMs,
      this.nowMs,
      null,
      delayMs > 0 ? 'delayed' : 'waiting',
    );
    job.runAtMs = this.nowMs + delayMs;
    this.insert(job);
    if (cmd.id !== undefined) {
      const expiresMs = this.nowMs + this.limits.dedupWindowMs;
      this.dedup.set(dedupKey(q.name, cmd.id), expiresMs);
      this.dedupQueue.push([q.name, cmd.id, expiresMs]);
    }
    return { ok: true, id, duplicate: false, state: job.state };
  }

  private claim(cmd: ClaimCommand, index: number): ClaimResult {
    const q = this.queues.get(cmd.queue);
    const none = (
      reason: 'empty' | 'paused' | 'rate-limited' | 'concurrency',
      retryAtMs = 0,
    ): ClaimResult => ({ ok: true, jobs: [], reason, retryAtMs });
    if (q === undefined || (q.waiting.size === 0 && !q.paused)) return none('empty');
    if (q.paused) return none('paused');
    let n = Math.min(cmd.max ?? 1, q.waiting.size);
    if (q.concurrency !== null) {
      n = Math.min(n, q.concurrency - q.counts.active);
      if (n <= 0) return none('concurrency');
    }
    if (q.rateLimit !== null) {
      const window = Math.floor(this.nowMs / q.rateLimit.intervalMs);
      if (window !== q.rateWindow) {
        q.rateWindow = window;
        q.rateCount = 0;
      }
      n = Math.min(n, q.rateLimit.max - q.rateCount);
      if (n <= 0) return none('rate-limited', (window + 1) * q.rateLimit.intervalMs);
      q.rateCount += n;
    }
    const jobs: Claimed[] = [];
    for (let i = 0; i < n; i++) {
      const job = q.waiting.peek() as Job;
      this.beforeChange(job);
      this.detach(job);
      job.attempts++;
      job.token = index;
      job.leaseExpiresMs = this.nowMs + (cmd.leaseMs ?? job.leaseMs);
      job.worker = cmd.worker ?? null;
      job.progress = 0;
      this.attach(job, 'active');
      this.emit('active', q.name, job.id, null);
      jobs.push({ job: viewOf(job), token: index, leaseExpiresMs: job.leaseExpiresMs });
    }
    return { ok: true, jobs };
  }

  /** A worker's report on a job it holds (token checked by the caller). */
  private report(
    job: Job,
    cmd: Extract<QueueCommandAny, { op: 'heartbeat' | 'progress' | 'complete' | 'fail' }>,
  ): QueueResult {
    this.beforeChange(job);
    switch (cmd.op) {
      case 'heartbeat':
        job.leaseExpiresMs = this.nowMs + (cmd.leaseMs ?? job.leaseMs);
        this.leases.update(job);
        return { ok: true, leaseExpiresMs: job.leaseExpiresMs };
      case 'progress':
        job.progress = cmd.progress;
        this.emit('progress', job.queue.name, job.id, cmd.progress);
        return { ok: true };
      case 'complete':
        this.detach(job);
        job.result = cmd.result ?? null;
        job.error = null;
        this.attach(job, 'completed');
        this.emit('completed', job.queue.name, job.id, null);
        return { ok: true, state: 'completed' };
      case 'fail': {
        this.failed(job, cmd.error, cmd.final === true);
        return { ok: true, state: job.state };
      }
    }
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
    if (cmd.keepCompleted !== undefined || cmd.keepDead !== undefined) {
      // Expiry keys change with the settings: out of the heap under the old ones, back under the new.
      const finished = [...q.completed.values(), ...q.dead.values(), ...q.cancelled.values()];
      for (const j of finished) if (this.retention.has(j)) this.retention.remove(j);
      q.keepCompleted = cmd.keepCompleted ?? q.keepCompleted;
      q.keepDead = cmd.keepDead ?? q.keepDead;
      for (const j of finished) if (expiryOf(j) > j.finishedAtMs) this.retention.push(j);
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
    const old = this.repeatables.get(key);
    if (old === undefined && this.repeatables.size >= this.limits.maxRepeatables)
      return refuse(
        'TOO_MANY_REPEATABLES',
        `The machine holds ${this.repeatables.size} repeatable jobs, its limit`,
      );
    const cron = cmd.cron !== undefined ? parseCron(cmd.cron) : null;
    const sameSchedule =
      old !== undefined &&
      old.everyMs === (cmd.everyMs ?? null) &&
      (old.cron?.source ?? null) === (cmd.cron ?? null);
    const probe = { everyMs: cmd.everyMs ?? null, cron };
    const nextMs = sameSchedule ? old.nextMs : nextRunMs(probe, this.nowMs, this.nowMs);
    if (nextMs === null)
      return refuse(
        'CRON_NEVER_FIRES',
        `Cron pattern "${cmd.cron}" matches no time in the next five years`,
      );
    const o = { ...defaultJobOptions, ...cmd.options };
    const r = new Repeatable(
      q.name,
      cmd.repeatId,
      this.nextSeq++,
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
    if (old !== undefined) this.repeatHeap.remove(old);
    this.repeatables.set(key, r);
    this.repeatHeap.push(r);
    return { ok: true, nextRunMs: nextMs };
  }

  // -------------------------------------------------------------------------------------------
  // Snapshots.

  snapshot(): AsyncIterable<Uint8Array> {
    const rankOf = new Map<string, number>();
    const jobs: Job[] = [];
    for (const q of this.queues.values()) {
      rankOf.set(q.name, rankOf.size);
      for (const j of q.order) jobs.push(j);
    }
    const capture = new Capture(
      {
        v: 1,
        nowMs: this.nowMs,
        nextSeq: this.nextSeq,
        finishStamp: this.finishStamp,
        queues: [...this.queues.values()].map((q) => [
          q.name,
          q.paused,
          q.rateLimit,
          q.rateWindow,
          q.rateCount,
          q.concurrency,
          q.keepCompleted,
          q.keepDead,
        ]),
        repeatables: [...this.repeatables.values()].map((r) => [
          r.queue,
          r.repeatId,
          r.seq,
          r.everyMs,
          r.cron?.source ?? null,
          r.name,
          r.payload,
          r.priority,
          r.maxAttempts,
          r.backoff,
          r.leaseMs,
          r.nextMs,
        ]),
        eventLog: this.events.state(),
      },
      this.events.kept(),
      this.dedupQueue
        .slice(this.dedupStart)
        .filter(([q, id, e]) => this.dedup.get(dedupKey(q, id)) === e),
      jobs,
      rankOf,
      this.nextSeq - 1,
    );
    this.captures = this.captures.filter((c) => !c.closed);
    this.captures.push(capture);
    if (this.captures.length > MAX_CAPTURES) this.captures.shift()?.close();
    return chunkStream(() => capture.chunks());
  }

  async restore(chunks: AsyncIterable<Uint8Array>): Promise<void> {
    const s = await decodeSnapshot(chunks);
    for (const c of this.captures) c.close();
    this.captures = [];
    this.reset();
    const h = s.header;
    this.nowMs = h.nowMs;
    this.nextSeq = h.nextSeq;
    this.finishStamp = h.finishStamp;
    const byRank: QueueState[] = [];
    for (const [
      name,
      paused,
      rateLimit,
      rateWindow,
      rateCount,
      concurrency,
      keepCompleted,
      keepDead,
    ] of h.queues) {
      const q = new QueueState(name);
      Object.assign(q, {
        paused,
        rateLimit,
        rateWindow,
        rateCount,
        concurrency,
        keepCompleted,
        keepDead,
      });
      this.queues.set(name, q);
      byRank.push(q);
    }
    for (const [
      queue,
      repeatId,
      seq,
      everyMs,
      cron,
      name,
      payload,
      priority,
      maxAttempts,
      backoff,
      leaseMs,
      nextMs,
    ] of h.repeatables) {
      const r = new Repeatable(
        queue,
        repeatId,
        seq,
        everyMs,
        cron === null ? null : parseCron(cron),
        name,
        new Uint8Array(payload),
        priority,
        maxAttempts,
        backoff,
        leaseMs,
        nextMs,
      );
      this.repeatables.set(repeatKey(queue, repeatId), r);
      this.repeatHeap.push(r);
    }
    this.events.restore(s.events, h.eventLog);
    for (const [q, id, e] of s.dedup) this.dedup.set(dedupKey(q, id), e);
    this.dedupQueue = s.dedup;
    // Finished jobs re-enter their maps in the order they finished, as retention needs.
    const finished: Job[] = [];
    for (const t of s.jobs) {
      const q = byRank[t[0]] as QueueState;
      const job = new Job(
        q,
        t[1],
        t[2],
        t[3],
        new Uint8Array(t[4]),
        t[5],
        t[6],
        t[7],
        t[8],
        t[9],
        t[10],
        t[11],
      );
      [job.attempts, job.runAtMs, job.token, job.leaseExpiresMs, job.worker, job.progress] = [
        t[12],
        t[13],
        t[14],
        t[15],
        t[16],
        t[17],
      ];
      [job.finishedStamp, job.finishedAtMs, job.error] = [t[18], t[19], t[21]];
      job.result = t[20] === null ? null : new Uint8Array(t[20]);
      q.jobs.set(job.id, job);
      q.order.push(job);
      q.counts[job.state]++;
      this.jobCount++;
      if (isFinished(job.state)) finished.push(job);
      else if (job.state === 'waiting') q.waiting.push(job);
      else if (job.state === 'active') this.leases.push(job);
      else this.timers.push(job);
    }
    finished.sort((a, b) => a.finishedStamp - b.finishedStamp);
    for (const j of finished) {
      j.queue.finishedMap(j.state as FinishedState).set(j.id, j);
      if (expiryOf(j) > j.finishedAtMs) this.retention.push(j);
    }
  }

  private reset(): void {
    this.queues.clear();
    this.repeatables.clear();
    this.dedup.clear();
    for (const h of [this.timers, this.leases, this.retention]) while (h.pop() !== undefined);
    while (this.repeatHeap.pop() !== undefined);
    this.dedupQueue = [];
    this.dedupStart = 0;
    this.jobCount = 0;
  }

  /** Every record of the machine's state, canonically ordered: replicas compare equal iff they agree. */
  dump(): unknown {
    return {
      nowMs: this.nowMs,
      nextSeq: this.nextSeq,
      finishStamp: this.finishStamp,
      queues: [...this.queues.values()].map((q) => ({
        settings: [
          q.name,
          q.paused,
          q.rateLimit,
          q.rateWindow,
          q.rateCount,
          q.concurrency,
          q.keepCompleted,
          q.keepDead,
        ],
        jobs: q.order.filter((j) => !j.removed).map((j) => jobTuple(j, 0)),
        finishedOrder: [q.completed, q.dead, q.cancelled].map((m) => [...m.keys()]),
      })),
      repeatables: [...this.repeatables.values()].map((r) => [
        r.queue,
        r.repeatId,
        r.seq,
        r.everyMs,
        r.cron?.source ?? null,
        r.nextMs,
      ]),
      events: [this.events.kept(), this.events.state()],
      dedup: [...this.dedup.entries()].sort(),
    };
  }

  /**
   * The invariants, checked the slow way (every job against every index); a list of what is
   * wrong, empty when all hold. For tests and the simulator, not the apply path.
   */
  checkInvariants(): string[] {
    const bad: string[] = [];
    let total = 0;
    for (const q of this.queues.values()) {
      const seen: Record<string, number> = {};
      for (const j of q.jobs.values()) {
        total++;
        seen[j.state] = (seen[j.state] ?? 0) + 1;
        const where = `job "${j.id}" of "${q.name}" (${j.state})`;
        const inWaiting = q.waiting.has(j);
        const inTimers = this.timers.has(j);
        const inLeases = this.leases.has(j);
        const inFinished = [q.completed, q.dead, q.cancelled].filter(
          (m) => m.get(j.id) === j,
        ).length;
        const places = Number(inWaiting) + Number(inTimers) + Number(inLeases) + inFinished;
        if (places !== 1) bad.push(`${where} is in ${places} indexes`);
        if (j.state === 'waiting' && !inWaiting) bad.push(`${where} is not in the waiting heap`);
        if ((j.state === 'delayed' || j.state === 'failed') && !inTimers)
          bad.push(`${where} is not in the timer heap`);
        if ((j.state === 'delayed' || j.state === 'failed') && j.runAtMs <= this.nowMs)
          bad.push(`${where} is overdue`);
        if (j.state === 'active' && !inLeases) bad.push(`${where} is not in the lease heap`);
        if (j.state === 'active' && j.leaseExpiresMs <= this.nowMs)
          bad.push(`${where} holds an expired lease`);
        if (isFinished(j.state) && q.finishedMap(j.state).get(j.id) !== j)
          bad.push(`${where} is not in its finished map`);
        if (j.removed || j.queue !== q)
          bad.push(`${where} is removed or filed under another queue`);
        if (j.attempts > j.maxAttempts)
          bad.push(`${where} ran ${j.attempts} times, more than ${j.maxAttempts}`);
      }
      for (const s of Object.keys(q.counts) as JobState[])
        if (q.counts[s] !== (seen[s] ?? 0))
          bad.push(`queue "${q.name}" counts ${q.counts[s]} ${s}, holds ${seen[s] ?? 0}`);
      if (q.order.filter((j) => !j.removed).length !== q.jobs.size)
        bad.push(`queue "${q.name}" order list disagrees with its jobs`);
      if (q.concurrency !== null && q.counts.active > q.concurrency)
        bad.push(`queue "${q.name}" runs more than its concurrency`);
    }
    if (total !== this.jobCount) bad.push(`jobCount is ${this.jobCount}, the queues hold ${total}`);
    const heaps = this.timers.size + this.leases.size;
    let timed = 0;
    for (const q of this.queues.values())
      timed += q.counts.delayed + q.counts.failed + q.counts.active;
    if (heaps !== timed) bad.push(`timer and lease heaps hold ${heaps} jobs, the queues ${timed}`);
    return bad;
  }
}

export function dedupKey(queue: string, id: string): string {
  return `${queue} ${id}`;
}

export function repeatKey(queue: string, repeatId: string): string {
  return `${queue} ${repeatId}`;
}

/**
 * The first run strictly after `nowMs` of a schedule whose last due run was `fromMs`. An
 * interval keeps its grid (fromMs + k * everyMs); a cron pattern its own times. Runs between
 * `fromMs` and now were missed (no command came in between) and are skipped: the caller fired
 * the one at `fromMs`, so a gap fires at most one run, never a burst.
 */
function nextRunMs(
  r: { readonly everyMs: number | null; readonly cron: ReturnType<typeof parseCron> | null },
  fromMs: number,
  nowMs: number,
): number | null {
  if (r.everyMs !== null)
    return fromMs + r.everyMs * (Math.floor((nowMs - fromMs) / r.everyMs) + 1);
  return nextCronMs(r.cron as ReturnType<typeof parseCron>, nowMs);
}
