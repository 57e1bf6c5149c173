// The job queue's endpoints (docs/API.md, "Job queue"). Writes (add, claim, and every report
// about a job) go through the queue group's log on its leader: a follower forwards them there,
// unchanged, like a key-value write, and the queue group's leader may be another node than the
// key-value group's. Reads (stats, get, list, events) are served here behind a ReadIndex
// barrier on the queue group. A job's `data` and a completed job's `result` are any JSON value,
// stored as its UTF-8 text, so `maxPayloadBytes` bounds that text.

import { FlotillaError } from '../base/errors.js';
import { MAX_RATE_LIMIT_CLAIMS, type Limits, type QueueLimits } from '../base/limits.js';
import type { Clock } from '../host/contracts.js';
import {
  checkName,
  jobId,
  jobStates,
  maxPriority,
  type Backoff,
  type ClaimSpec,
  type Claimed,
  type CompleteCommand,
  type FailCommand,
  type JobState,
  type JobView,
  type QueueCommandAny,
  type QueueError,
  type QueueStateMachine,
  type ReportResult,
  type RepeatableView,
} from '../queue/index.js';
import type { JsonHttpServer } from './http.js';
import { queuePaths, type QueueOpName } from './queue-paths.js';
import { parseSession, sessionFields } from './requests.js';
import { forwarded, type KvBackend, type Session } from './routes.js';
import {
  asObject,
  checkUnicode,
  onlyFields,
  optArray,
  optBool,
  optInt,
  optString,
  reqString,
  type Obj,
  naming,
} from './validate.js';

/** The longest a claim may wait for a job (`waitMs`). */
export const maxClaimWaitMs = 30_000;

/** Queues in a page of `queues` when the request gives no `limit`. */
export const defaultQueuesPage = 100;

export interface QueueHeader {
  readonly memberId: number;
  readonly raftTerm: number;
}

/** A result that is not a refusal: what the command's `ok: true` answer holds. */
export type QueueAnswer = Record<string, unknown> & { readonly ok: true };

/** What the routes need of the node's queue group. */
export interface QueueBackend extends Pick<KvBackend, 'forward'> {
  readonly service: {
    write(
      cmd: QueueCommandAny,
      session: Session | null,
      w: { signal?: AbortSignal; onProposed?: () => void },
    ): Promise<QueueAnswer>;
    read<T>(read: (q: QueueStateMachine) => T, w: { signal?: AbortSignal }): Promise<T>;
    readonly queue: QueueStateMachine;
    readonly runtime: {
      onApplied(listener: () => void): () => void;
      /** What the group answers once a storage failure stopped it; null while it runs. */
      stoppedError(): FlotillaError | null;
      /** The last entry the queue machine applied here. */
      appliedIndex(): number;
    };
  };
  readonly limits: QueueLimits;
  readonly requestLimits: Pick<Limits, 'maxClientIdChars'>;
  readonly clock: Clock;
  /** How often the leader ticks: a waiting claim looks again at least this often. */
  readonly tickMs: number;
  readonly maxClaimWaitMs: number;
  header(): QueueHeader;
}

const maxDuration = (l: QueueLimits): number => l.maxDurationMs;

/** What the routes report to the node's metrics. */
export interface QueueRoutes {
  /** Claims waiting here for a job now (`waitMs`). */
  claimWaiters(): number;
}

/**
 * One queue request type, as both fronts serve it: the HTTP route at `path` and the binary
 * protocol's request `queue.<name>` (wire-codec.ts). `parse` checks a body and returns what
 * runs it on this node; a write must run on the queue group's leader, so a follower forwards
 * its body there first (the front does that, as it does for key-value writes).
 */
export interface QueueOp {
  readonly name: QueueOpName;
  readonly path: string;
  readonly kind: 'read' | 'write';
  /**
   * Counted against the node's admission limit. All but the claim: one that waits for a job
   * holds its request open up to maxClaimWaitMs, and counted against admission it would age
   * the oldest request past maxInflightAgeMs and refuse everything else.
   */
  readonly admitted: boolean;
  parse(body: unknown): (signal: AbortSignal) => Promise<Record<string, unknown>>;
}

/** The queue's request types over `b`, for the HTTP routes and the binary protocol. */
export function queueOps(b: QueueBackend): { ops: readonly QueueOp[]; routes: QueueRoutes } {
  const l = b.limits;
  const waiters = { n: 0 };
  const ops: QueueOp[] = [];
  /** A write: the command is proposed to the queue group's log with the request's session. */
  const write = (
    name: QueueOpName,
    fields: readonly string[],
    handle: (o: Obj, session: Session | null, signal: AbortSignal) => Promise<object>,
  ): void => {
    ops.push({
      name,
      path: queuePaths[name],
      kind: 'write',
      admitted: name !== 'claim',
      parse: (body) => {
        const o = asObject(body);
        onlyFields(o, [...fields, ...sessionFields]);
        const session = parseSession(o, b.requestLimits);
        return async (signal) => ({ header: b.header(), ...(await handle(o, session, signal)) });
      },
    });
  };
  const read = (
    name: QueueOpName,
    fields: readonly string[],
    handle: (o: Obj) => (q: QueueStateMachine) => object,
  ): void => {
    ops.push({
      name,
      path: queuePaths[name],
      kind: 'read',
      admitted: true,
      parse: (body) => {
        const o = asObject(body);
        onlyFields(o, fields);
        const r = handle(o);
        return async (signal) => {
          const answer = await b.service.read(r, { signal });
          return { header: b.header(), ...answer };
        };
      },
    });
  };
  // Checked here, not only when a write is decoded: a read of a name no queue can have (a typo,
  // a space) is refused as such rather than answered as an unknown queue. (Not job ids: the
  // queue's own, "#12", are outside what a caller may choose, so an id is checked as one the
  // queue could have made or been given: a read of "" is refused, not answered JOB_NOT_FOUND.)
  const queueOf = (o: Obj): string => checkName(reqString(o, 'queue'), 'queue', l);
  const idOf = (o: Obj): string => jobId(reqString(o, 'id'), l);
  const tokenOf = (o: Obj): number =>
    required(optInt(o, 'token', 1, Number.MAX_SAFE_INTEGER), 'token');
  const propose = async (
    cmd: QueueCommandAny,
    session: Session | null,
    signal: AbortSignal,
    onProposed?: () => void,
  ): Promise<Record<string, unknown>> => {
    const { ok: _ok, ...rest } = await b.service.write(cmd, session, {
      signal,
      ...(onProposed === undefined ? {} : { onProposed }),
    });
    return rest;
  };

  write('add', ['queue', ...addJobFields], (o, session, signal) => {
    const queue = queueOf(o);
    const job = addJobOf(o, l);
    const due = job['delayMs'] === undefined || job['delayMs'] === 0 ? 1 : 0;
    return propose(command({ op: 'add', queue, ...job }), session, signal, handOver(b, queue, due));
  });
  write('addBulk', ['queue', 'jobs'], (o, session, signal) => {
    const queue = queueOf(o);
    const jobs = bulkArray(o, 'jobs', l.maxAddBatch).map((item, i) => {
      const what = `"jobs[${i}]"`;
      const j = asObject(item, what);
      onlyFields(j, addJobFields, what);
      return naming(`jobs[${i}]`, () => addJobOf(j, l));
    });
    const due = jobs.filter((j) => j['delayMs'] === undefined || j['delayMs'] === 0).length;
    return propose(
      command({ op: 'addBulk', queue, jobs }),
      session,
      signal,
      handOver(b, queue, due),
    );
  });

  write('claim', ['queue', 'max', 'worker', 'leaseMs', 'waitMs'], async (o, session, signal) => {
    const cmd = command({ op: 'claim', queue: queueOf(o), ...claimSpecOf(o, l) });
    const waitMs = optInt(o, 'waitMs', 0, b.maxClaimWaitMs) ?? 0;
    const r = await claim(b, cmd, queueOf(o), session, waitMs, signal, waiters);
    return { ...r, jobs: (r['jobs'] as Claimed[]).map(renderClaimed) };
  });

  write('heartbeat', ['queue', 'id', 'token', 'leaseMs'], (o, session, signal) =>
    propose(
      command({
        op: 'heartbeat',
        queue: queueOf(o),
        id: idOf(o),
        token: tokenOf(o),
        leaseMs: optInt(o, 'leaseMs', 1, maxDuration(l)),
      }),
      session,
      signal,
    ),
  );
  write('progress', ['queue', 'id', 'token', 'progress'], (o, session, signal) =>
    propose(
      {
        op: 'progress',
        queue: queueOf(o),
        id: idOf(o),
        token: tokenOf(o),
        progress: required(optInt(o, 'progress', 0, 100), 'progress'),
      },
      session,
      signal,
    ),
  );
  /**
   * A complete or fail, with the claim it may carry (`next`): proposed as one entry, its
   * claimed jobs rendered as a claim's, and counted by the claim gate while on its way.
   */
  const report = async (
    cmd: CompleteCommand | FailCommand,
    session: Session | null,
    signal: AbortSignal,
  ): Promise<object> => {
    if (cmd.next === undefined) return propose(cmd, session, signal);
    const gate = gateOf(b);
    if (yieldsNext(b, gate, cmd.queue)) {
      const { next: _next, ...alone } = cmd;
      return propose(alone, session, signal);
    }
    const want = cmd.next.max ?? 1;
    gate.reserve(cmd.queue, want);
    const r = await propose(cmd, session, signal).finally(() => gate.release(cmd.queue, want));
    const next = r['next'] as { jobs: readonly Claimed[] } | undefined;
    return next === undefined ? r : { ...r, next: { ...next, jobs: next.jobs.map(renderClaimed) } };
  };
  /** A complete's or a fail's command from its request (or a bulk report's item) `o`. */
  const reportOf = (
    op: 'complete' | 'fail',
    queue: string,
    o: Obj,
  ): CompleteCommand | FailCommand =>
    command(
      op === 'complete'
        ? {
            op,
            queue,
            id: idOf(o),
            token: tokenOf(o),
            result: o['result'] === undefined ? undefined : jsonBytes(o['result'], 'result', l),
            next: nextOf(o, l),
          }
        : {
            op,
            queue,
            id: idOf(o),
            token: tokenOf(o),
            error: reqString(o, 'error'),
            final: optBool(o, 'final'),
            // A single fail's only (features.queueRelease); a bulk's reports do not name it.
            release: releaseOf(o),
            next: nextOf(o, l),
          },
    ) as CompleteCommand | FailCommand;
  write('complete', ['queue', ...reportFields.complete], (o, session, signal) =>
    report(reportOf('complete', queueOf(o), o), session, signal),
  );
  write('fail', ['queue', ...reportFields.fail, 'release'], (o, session, signal) => {
    const cmd = reportOf('fail', queueOf(o), o) as FailCommand;
    if (cmd.release === true && cmd.final === true)
      throw new FlotillaError('BAD_REQUEST', '"release" and "final" exclude each other');
    return report(cmd, session, signal);
  });
  // Completes and fails of one queue in one entry, each applied as its own (its token checked,
  // its `next` claimed) and answered in `results`: a report's answer, or its refusal as
  // `{ error: { code, message } }`. A bad item refuses the whole request before anything is
  // proposed, naming the item.
  write('reportBulk', ['queue', 'reports'], async (o, session, signal) => {
    const queue = queueOf(o);
    const reports = bulkArray(o, 'reports', l.maxAddBatch).map((item, i) => {
      const what = `"reports[${i}]"`;
      const r = asObject(item, what);
      const op = r['op'];
      if (op !== 'complete' && op !== 'fail')
        throw new FlotillaError(
          'BAD_REQUEST',
          `reports[${i}]: "op" must be "complete" or "fail", got ${JSON.stringify(op) ?? 'nothing'}`,
        );
      onlyFields(r, ['op', ...reportFields[op]], what);
      const { queue: _q, ...rest } = naming(`reports[${i}]`, () => reportOf(op, queue, r));
      return rest;
    });
    if (yieldsNext(b, gateOf(b), queue)) for (const r of reports) delete r.next;
    const want = reports.reduce((n, r) => n + (r.next === undefined ? 0 : (r.next.max ?? 1)), 0);
    const gate = gateOf(b);
    if (want > 0) gate.reserve(queue, want);
    const r = await propose({ op: 'reportBulk', queue, reports }, session, signal).finally(() => {
      if (want > 0) gate.release(queue, want);
    });
    const results = r['results'] as readonly (ReportResult | QueueError)[];
    return {
      results: results.map((x) =>
        x.ok
          ? {
              state: x.state,
              ...(x.next === undefined
                ? {}
                : { next: { ...x.next, jobs: x.next.jobs.map(renderClaimed) } }),
            }
          : { error: { code: x.code, message: x.message } },
      ),
    };
  });
  for (const op of ['cancel', 'retry', 'delete'] as const)
    write(op, ['queue', 'id'], (o, session, signal) =>
      propose({ op, queue: queueOf(o), id: idOf(o) }, session, signal),
    );
  for (const op of ['pause', 'resume'] as const)
    write(op, ['queue'], (o, session, signal) =>
      propose({ op, queue: queueOf(o) }, session, signal),
    );

  read('stats', ['queue'], (o) => {
    const queue = queueOf(o);
    return (q) => ({ stats: q.stats(queue) });
  });
  read('queues', ['after', 'limit'], (o) => {
    // A page of queue names after `after` (a name, exclusive), in name order, each with its
    // counts: how an operator finds what queues there are (at most maxQueues of them).
    const after = o['after'] === undefined ? null : checkName(reqString(o, 'after'), 'after', l);
    const limit = optInt(o, 'limit', 1, l.maxPageSize) ?? defaultQueuesPage;
    return (q) => {
      const names = q
        .queueNames()
        .filter((n) => after === null || n > after)
        .sort();
      const page = names.slice(0, limit).flatMap((n) => {
        const s = q.stats(n);
        return s === null ? [] : [{ queue: s.queue, paused: s.paused, counts: s.counts }];
      });
      return { queues: page, next: names.length > limit ? (page.at(-1)?.queue ?? null) : null };
    };
  });
  read('get', ['queue', 'id'], (o) => {
    const queue = queueOf(o);
    const id = idOf(o);
    return (q) => {
      const job = q.getJob(queue, id);
      if (job === null)
        throw new FlotillaError('JOB_NOT_FOUND', `No job "${id}" in queue "${queue}"`);
      return { job: renderJob(job) };
    };
  });
  read('list', ['queue', 'state', 'after', 'limit'], (o) => {
    const queue = queueOf(o);
    const state = reqString(o, 'state');
    if (!(jobStates as readonly string[]).includes(state))
      throw new FlotillaError(
        'BAD_REQUEST',
        `"state" must be one of ${jobStates.join(', ')}, got ${JSON.stringify(state)}`,
      );
    const after = optInt(o, 'after', 0, Number.MAX_SAFE_INTEGER);
    const limit = optInt(o, 'limit', 1, l.maxPageSize);
    return (q) => {
      const page = q.list(queue, state as JobState, {
        ...(after === undefined ? {} : { after }),
        ...(limit === undefined ? {} : { limit }),
      });
      return { jobs: page.jobs.map(renderJob), next: page.next };
    };
  });
  read('events', ['queue', 'after', 'limit'], (o) => {
    const queue = o['queue'] === undefined ? undefined : queueOf(o);
    const after = positionOf(o['after']);
    const limit = optInt(o, 'limit', 1, l.maxPageSize);
    return (q) => {
      // Behind the read barrier every position the group handed out is applied here: one past
      // it was never handed out (a typo, another cluster's), and a reader holding it would
      // skip every event until the log reached it, saying nothing (etcd refuses a watch from
      // a future revision likewise).
      const applied = b.service.runtime.appliedIndex();
      if (after.index > applied)
        throw new FlotillaError(
          'FUTURE_REVISION',
          `Event position ${after.index} is past the queue group's log (at ${applied}): no event was handed out there; resume from a position an answer gave`,
        );
      return q.eventsAfter(after, {
        ...(queue === undefined ? {} : { queue }),
        ...(limit === undefined ? {} : { limit }),
      });
    };
  });

  write(
    'configure',
    ['queue', 'rateLimit', 'concurrency', 'keepCompleted', 'keepDead', 'maxReleases'],
    (o, session, signal) => propose(configureOf(o, l), session, signal),
  );
  write(
    'repeatUpsert',
    [
      'queue',
      'repeatId',
      'everyMs',
      'cron',
      'name',
      'data',
      'priority',
      'maxAttempts',
      'backoff',
      'leaseMs',
    ],
    (o, session, signal) => propose(repeatOf(o, l), session, signal),
  );
  write('repeatRemove', ['queue', 'repeatId'], (o, session, signal) =>
    propose(
      { op: 'unrepeat', queue: queueOf(o), repeatId: reqString(o, 'repeatId') },
      session,
      signal,
    ),
  );
  read('repeatList', ['queue', 'after', 'limit'], (o) => {
    const queue = queueOf(o);
    // A repeatable job's id, as an answer's `next` gives it.
    const after =
      o['after'] === undefined ? undefined : checkName(reqString(o, 'after'), 'after', l);
    const limit = optInt(o, 'limit', 1, l.maxPageSize);
    return (q) => {
      const page = q.repeatablePage(queue, {
        ...(after === undefined ? {} : { after }),
        ...(limit === undefined ? {} : { limit }),
      });
      return { repeatables: page.repeatables.map(renderRepeatable), next: page.next };
    };
  });

  return { ops, routes: { claimWaiters: () => waiters.n } };
}

/** Serves the queue's request types over HTTP; a write on a follower is forwarded unchanged. */
export function installQueueRoutes(
  http: JsonHttpServer,
  b: Pick<QueueBackend, 'forward'>,
  { ops, routes }: { readonly ops: readonly QueueOp[]; readonly routes: QueueRoutes },
): QueueRoutes {
  for (const op of ops)
    http.route('POST', op.path, async ({ body, rawBody, signal, headers }) => {
      if (op.kind === 'write') {
        const fwd = await forwarded(b, op.path, rawBody, signal, headers);
        if (fwd !== null) return fwd;
      }
      return { json: await op.parse(body)(signal) };
    });
  http.countAgainstAdmission(...ops.filter((op) => op.admitted).map((op) => op.path));
  return routes;
}

/**
 * A claim, waiting up to `waitMs` for a job. While the queue shows nothing claimable (no
 * waiting job, paused, or its concurrency or rate limit reached) nothing is proposed: the claim looks again whenever the queue group
 * applies something (an add, a resume, the leader's tick that makes a delayed job due). A
 * claim that found nothing, lost to another worker or hit a limit tries again on the next
 * change, unless it carries a session: its sequence number would answer every retry with the
 * first, cached, empty result. At the deadline it is proposed once more, so the answer names
 * why nothing was claimed. A claim waiting on a group that a storage failure stopped is refused
 * (STORAGE_FAILED) within a tick rather than at its deadline.
 *
 * An add that finds claims waiting hands its jobs over as it is proposed (`handOver`): the
 * first waiting claims are proposed at once, right behind the add in the log and in the same
 * append, rather than after the add's commit and apply. A worker waiting for work then gets a
 * new job one commit after its add, not two. The state machine still decides: a claim handed
 * a job another claim took first finds nothing, as any claim may.
 */
async function claim(
  b: QueueBackend,
  cmd: QueueCommandAny,
  queue: string,
  session: Session | null,
  waitMs: number,
  signal: AbortSignal,
  waiters: { n: number },
): Promise<Record<string, unknown>> {
  const deadline = b.clock.nowMs() + waitMs;
  const gate = gateOf(b);
  const want = cmd.op === 'claim' ? (cmd.max ?? 1) : 1;
  // Not paused, a job waiting, and the queue's limits leave room for one more claim than
  // those already on their way: a claim proposed under a full concurrency limit or a spent
  // rate window only comes back empty (and, with a session, returns to a worker that claims
  // again at once: hundreds of writes a second, found by a user). The window's roll-over is
  // seen on the next look, at most a tick later.
  const claimable = (): boolean =>
    b.service.queue.claimableNow(queue, b.clock.nowMs()) > gate.proposing(queue);
  /** Proposes the claim now (synchronously: handOver relies on it), counted by the gate. */
  const proposeNow = (): Promise<QueueAnswer> => {
    // Cancelled before it started (a binary cancel in the same read): nothing is proposed.
    if (signal.aborted)
      return Promise.reject(
        new FlotillaError('ABORTED', 'The claim was cancelled before it was proposed', false),
      );
    gate.reserve(queue, want);
    return b.service.write(cmd, session, { signal }).finally(() => gate.release(queue, want));
  };
  const answerOf = async (p: Promise<QueueAnswer>): Promise<Record<string, unknown>> => {
    const { ok: _ok, ...r } = await p;
    return r;
  };
  const found = (r: Record<string, unknown>): boolean =>
    (r['jobs'] as readonly unknown[]).length > 0;
  for (;;) {
    // A group a storage failure stopped applies nothing more: waiting would only hold the
    // worker until its deadline before the same refusal. It learns now, and claims elsewhere.
    const stopped = b.service.runtime.stoppedError();
    if (stopped !== null) throw stopped;
    const left = deadline - b.clock.nowMs();
    if (left <= 0 || claimable()) {
      const r = await answerOf(proposeNow());
      if (found(r) || left <= 0 || session !== null) return r;
    }
    // Wait for a change, or for an add to hand this claim a job. A claim handed a job that went
    // to another claim waits again rather than looking at once: under a limit the queue can
    // show waiting jobs no claim may take, and looking at once would propose in a loop.
    for (;;) {
      waiters.n++;
      let handed: { readonly proposal: Promise<QueueAnswer> } | null;
      try {
        const now = b.clock.nowMs();
        // A rate window that opens makes room without anything applied: look again then (on
        // the machine's time where it is ahead of this clock, as claimableNow judges it).
        const rate = b.service.queue.stats(queue)?.rateLimit ?? null;
        const at = Math.max(now, b.service.queue.timeMs());
        const toWindow = rate === null ? Infinity : rate.intervalMs - (at % rate.intervalMs);
        const ms = Math.max(1, Math.min(deadline - now, b.tickMs, toWindow));
        handed = await changeOrTimeout(b, ms, signal, { queue, want, propose: proposeNow });
      } finally {
        waiters.n--;
      }
      if (handed === null) break;
      const r = await answerOf(handed.proposal);
      if (found(r) || session !== null) return r;
      if (deadline - b.clock.nowMs() <= 0) break;
    }
  }
}

/**
 * What an add of `due` jobs ready to run on `queue` calls once proposed: the first claims
 * waiting there propose behind it (`ClaimGate.handOver`). Undefined (nothing to do) when no
 * claim waits, no job is due, or the queue is paused or limited (rate or concurrency): a claim
 * proposed there might find nothing it may take.
 */
function handOver(b: QueueBackend, queue: string, due: number): (() => void) | undefined {
  const gate = gateOf(b);
  if (due === 0 || !gate.hasSleepers(queue)) return undefined;
  const s = b.service.queue.stats(queue);
  if (s !== null && (s.paused || s.rateLimit !== null || s.concurrency !== null)) return undefined;
  return () => gate.handOver(queue, due);
}

/**
 * The claims this node is proposing, per queue, and how many jobs each asks for. An add wakes
 * every claim waiting on the queue; without this count each of them would propose, one would
 * get the job and the rest would go through the log for nothing (and, carrying a session,
 * return empty to a worker that claims again at once): with 32 waiting workers, 31 wasted
 * writes per job. Claims now propose only while the queue shows more waiting jobs than the
 * claims already on their way ask for; the others wait for the next change, which a claim's
 * end is too. Only a hint kept by this member: the state machine still decides who gets what.
 */
class ClaimGate {
  private readonly asked = new Map<string, number>();
  private readonly waiters = new Set<() => void>();
  /** Claims waiting for a job, per queue, oldest first: an add hands its jobs to these. */
  private readonly sleepers = new Map<string, Set<Sleeper>>();

  hasSleepers(queue: string): boolean {
    return this.sleepers.has(queue);
  }

  /** Registers a waiting claim until the returned function is called (or it is handed a job). */
  sleep(queue: string, s: Sleeper): () => void {
    let set = this.sleepers.get(queue);
    if (set === undefined) this.sleepers.set(queue, (set = new Set()));
    set.add(s);
    return () => this.wake(queue, s);
  }

  /** Claims waiting for a job of `queue` here. */
  sleeping(queue: string): number {
    return this.sleepers.get(queue)?.size ?? 0;
  }

  /** Hands `jobs` just proposed to the oldest claims waiting on `queue`: each proposes now. */
  handOver(queue: string, jobs: number): void {
    let left = jobs;
    for (const s of [...(this.sleepers.get(queue) ?? [])]) {
      if (left <= 0) break;
      this.wake(queue, s);
      left -= s.want;
      s.take();
    }
  }

  private wake(queue: string, s: Sleeper): void {
    const set = this.sleepers.get(queue);
    if (set === undefined) return;
    set.delete(s);
    if (set.size === 0) this.sleepers.delete(queue);
  }

  proposing(queue: string): number {
    return this.asked.get(queue) ?? 0;
  }

  reserve(queue: string, n: number): void {
    this.asked.set(queue, this.proposing(queue) + n);
  }

  release(queue: string, n: number): void {
    const left = this.proposing(queue) - n;
    if (left > 0) this.asked.set(queue, left);
    else this.asked.delete(queue);
    for (const w of [...this.waiters]) w();
  }

  /** Calls `f` at the end of every claim proposal until the returned function is called. */
  onRelease(f: () => void): () => void {
    this.waiters.add(f);
    return () => this.waiters.delete(f);
  }
}

/**
 * Whether a report's next claim gives way to the claims waiting here: on a queue with a
 * concurrency limit, the job a report frees room for goes to the oldest waiting claim, which
 * an apply wakes, rather than to the reporting slot. Otherwise the slots that held the room
 * kept it, and one worker of ten ran every job (a queue user's find). Without a limit every
 * claim can take a job, and the next claim saves a request.
 */
function yieldsNext(b: QueueBackend, gate: ClaimGate, queue: string): boolean {
  return gate.sleeping(queue) > 0 && (b.service.queue.stats(queue)?.concurrency ?? null) !== null;
}

const gates = new WeakMap<QueueBackend, ClaimGate>();

function gateOf(b: QueueBackend): ClaimGate {
  let g = gates.get(b);
  if (g === undefined) gates.set(b, (g = new ClaimGate()));
  return g;
}

/** A claim waiting for a job, as the gate sees it. */
interface Sleeper {
  readonly want: number;
  /** Proposes the claim now; the wait then resolves with that proposal. */
  take(): void;
}

/**
 * Resolves with null when the queue group applies something or a claim proposal ends, or
 * after `ms`; with the claim's proposal when an add hands it a job (`claim.propose` is then
 * called synchronously, inside the add's batch); rejects when `signal` aborts.
 */
function changeOrTimeout(
  b: QueueBackend,
  ms: number,
  signal: AbortSignal,
  claim: {
    readonly queue: string;
    readonly want: number;
    readonly propose: () => Promise<QueueAnswer>;
  },
): Promise<{ readonly proposal: Promise<QueueAnswer> } | null> {
  return new Promise((resolve, reject) => {
    const done = (): void => {
      b.clock.clearTimeout(timer);
      off();
      offRelease();
      offSleep();
      signal.removeEventListener('abort', aborted);
    };
    const aborted = (): void => {
      done();
      reject(
        new FlotillaError('ABORTED', 'The claim was aborted while it waited for a job', false),
      );
    };
    const timer = b.clock.setTimeout(() => {
      done();
      resolve(null);
    }, ms);
    const off = b.service.runtime.onApplied(() => {
      done();
      resolve(null);
    });
    const gate = gateOf(b);
    const offRelease = gate.onRelease(() => {
      done();
      resolve(null);
    });
    const offSleep = gate.sleep(claim.queue, {
      want: claim.want,
      take: () => {
        done();
        resolve({ proposal: claim.propose() });
      },
    });
    if (signal.aborted) aborted();
    else signal.addEventListener('abort', aborted, { once: true });
  });
}

/**
 * A command from fields a request may leave out (undefined): those are dropped. Its shape is
 * checked for real before anything is proposed: the service encodes it and decodes it with the
 * checks the machine applies (QueueService.encode).
 */
function command(fields: { op: QueueCommandAny['op'] } & Record<string, unknown>): QueueCommandAny {
  return defined(fields) as unknown as QueueCommandAny;
}

/** The fields that are not undefined. */
function defined(fields: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(fields)) if (v !== undefined) out[k] = v;
  return out;
}

const addJobFields = [
  'name',
  'data',
  'id',
  'delayMs',
  'priority',
  'maxAttempts',
  'backoff',
  'leaseMs',
] as const;

/** A job to add: of an add request, or one of a bulk add's. */
function addJobOf(o: Obj, l: QueueLimits): Record<string, unknown> {
  return defined({
    name: reqString(o, 'name'),
    payload: jsonBytes(o['data'] ?? null, 'data', l),
    id: optString(o, 'id'),
    delayMs: optInt(o, 'delayMs', 0, maxDuration(l)),
    priority: optInt(o, 'priority', 0, maxPriority),
    maxAttempts: optInt(o, 'maxAttempts', 1, l.maxAttempts),
    backoff: backoffOf(o, l),
    leaseMs: optInt(o, 'leaseMs', 1, maxDuration(l)),
  });
}

/** What a claim asks for: of a claim request, or of a report's `next`. */
function claimSpecOf(o: Obj, l: QueueLimits, prefix = ''): ClaimSpec {
  return defined({
    max: optIntIn(o, prefix, 'max', 1, l.maxClaimBatch),
    worker: optString(o, 'worker'),
    leaseMs: optIntIn(o, prefix, 'leaseMs', 1, maxDuration(l)),
  });
}

/**
 * A field of a nested object (`backoff.delayMs`), refused under its full name: a bare
 * "delayMs" would read as the job's own delay.
 */
function optIntIn(o: Obj, prefix: string, k: string, min: number, max: number): number | undefined {
  const name = `${prefix}${k}`;
  return optInt({ [name]: o[k] } as Obj, name, min, max);
}

/** A bulk request's array `field`: 1 to `max` items. */
function bulkArray(o: Obj, field: string, max: number): unknown[] {
  const given = o[field];
  if (!Array.isArray(given) || given.length === 0)
    throw new FlotillaError('BAD_REQUEST', `"${field}" must be a non-empty array of ${field}`);
  return optArray(o, field, max);
}

/** The fields of a complete and of a fail besides `queue` (and a bulk report's `op`). */
const reportFields = {
  complete: ['id', 'token', 'result', 'next'],
  fail: ['id', 'token', 'error', 'final', 'next'],
} as const;

/** A fail's `release`: true or absent (false would mean nothing, and is refused as the log's). */
function releaseOf(o: Obj): true | undefined {
  if (o['release'] === undefined) return undefined;
  if (o['release'] !== true)
    throw new FlotillaError(
      'BAD_REQUEST',
      `"release" must be true, got ${JSON.stringify(o['release'])}`,
    );
  return true;
}

/** A report's `next`: the claim it carries, or undefined for none. */
function nextOf(o: Obj, l: QueueLimits): ClaimSpec | undefined {
  if (o['next'] === undefined) return undefined;
  const n = asObject(o['next'], '"next"');
  onlyFields(n, ['max', 'worker', 'leaseMs'], '"next"');
  return claimSpecOf(n, l, 'next.');
}

function renderClaimed(c: Claimed): Record<string, unknown> {
  return { job: renderJob(c.job), token: c.token, leaseExpiresMs: c.leaseExpiresMs };
}

function required<T>(v: T | undefined, field: string): T {
  if (v === undefined) throw new FlotillaError('BAD_REQUEST', `"${field}" is required`);
  return v;
}

/** Any JSON value as its UTF-8 text, at most maxPayloadBytes of it. */
/**
 * A job's data or result as the JSON text stored, checked as every other field is: no string
 * or name holding a lone surrogate (INVALID_UTF8), and no number JSON cannot carry (a `1e400`
 * parsed as Infinity was stored as null).
 */
function jsonBytes(v: unknown, field: string, l: QueueLimits): Uint8Array {
  const text = JSON.stringify(v, (name: string, x: unknown) => {
    if (name !== '') checkUnicode(name, `A name in "${field}"`);
    if (typeof x === 'string') checkUnicode(x, `A string in "${field}"`);
    else if (typeof x === 'number' && !Number.isFinite(x))
      throw new FlotillaError(
        'BAD_REQUEST',
        `"${field}" holds a number JSON cannot carry (${x}); the limit is about 1.8e308`,
      );
    return x;
  });
  const bytes = new TextEncoder().encode(text);
  if (bytes.length > l.maxPayloadBytes)
    throw new FlotillaError(
      'VALUE_TOO_LARGE',
      `"${field}" is ${bytes.length} bytes as JSON; the limit is ${l.maxPayloadBytes}`,
    );
  return bytes;
}

function jsonOf(bytes: Uint8Array | null): unknown {
  if (bytes === null) return null;
  return JSON.parse(new TextDecoder().decode(bytes)) as unknown;
}

function backoffOf(o: Obj, l: QueueLimits): Backoff | undefined {
  const v = o['backoff'];
  if (v === undefined) return undefined;
  const bo = asObject(v, '"backoff"');
  onlyFields(bo, ['kind', 'delayMs', 'maxDelayMs'], '"backoff"');
  const kind = reqString({ 'backoff.kind': bo['kind'] } as Obj, 'backoff.kind');
  if (kind !== 'fixed' && kind !== 'exponential')
    throw new FlotillaError(
      'BAD_REQUEST',
      `"backoff.kind" must be "fixed" or "exponential", got ${JSON.stringify(kind)}`,
    );
  const delayMs = required(
    optIntIn(bo, 'backoff.', 'delayMs', 0, l.maxDurationMs),
    'backoff.delayMs',
  );
  const maxDelayMs =
    optIntIn(bo, 'backoff.', 'maxDelayMs', 0, l.maxDurationMs) ?? Math.max(delayMs, 60_000);
  return { kind, delayMs, maxDelayMs };
}

/**
 * A queue's settings: a field left out keeps its value, null lifts a limit. At least one is
 * required, so a request that names none is a mistake rather than a queue created empty.
 */
function configureOf(o: Obj, l: QueueLimits): QueueCommandAny {
  const settings = ['rateLimit', 'concurrency', 'keepCompleted', 'keepDead', 'maxReleases'];
  if (settings.every((k) => o[k] === undefined))
    throw new FlotillaError(
      'BAD_REQUEST',
      `A configure names at least one of ${settings.join(', ')}`,
    );
  let rateLimit: unknown;
  if (o['rateLimit'] === null) rateLimit = null;
  else if (o['rateLimit'] !== undefined) {
    const r = asObject(o['rateLimit'], '"rateLimit"');
    onlyFields(r, ['max', 'intervalMs'], '"rateLimit"');
    rateLimit = {
      max: required(optIntIn(r, 'rateLimit.', 'max', 1, MAX_RATE_LIMIT_CLAIMS), 'rateLimit.max'),
      intervalMs: required(
        optIntIn(r, 'rateLimit.', 'intervalMs', 1, l.maxDurationMs),
        'rateLimit.intervalMs',
      ),
    };
  }
  return command({
    op: 'configure',
    queue: reqString(o, 'queue'),
    rateLimit,
    concurrency: o['concurrency'] === null ? null : optInt(o, 'concurrency', 1, l.maxJobs),
    keepCompleted: retentionOf(o, 'keepCompleted', l),
    keepDead: retentionOf(o, 'keepDead', l),
    maxReleases: optInt(o, 'maxReleases', 0, l.maxAttempts),
  });
}

function retentionOf(o: Obj, field: string, l: QueueLimits): unknown {
  if (o[field] === undefined) return undefined;
  const r = asObject(o[field], `"${field}"`);
  onlyFields(r, ['count', 'ageMs'], `"${field}"`);
  return {
    count: required(optIntIn(r, `${field}.`, 'count', 0, l.maxJobs), `${field}.count`),
    ageMs: optIntIn(r, `${field}.`, 'ageMs', 0, l.maxDurationMs) ?? 0,
  };
}

/** A repeatable job: its schedule (exactly one of everyMs and cron) and the job it adds. */
function repeatOf(o: Obj, l: QueueLimits): QueueCommandAny {
  const everyMs = optInt(o, 'everyMs', 1, l.maxDurationMs);
  const cron = optString(o, 'cron');
  if ((everyMs === undefined) === (cron === undefined))
    throw new FlotillaError(
      'BAD_REQUEST',
      'A repeatable job needs exactly one of "everyMs" and "cron"',
    );
  const options = defined({
    priority: optInt(o, 'priority', 0, maxPriority),
    maxAttempts: optInt(o, 'maxAttempts', 1, l.maxAttempts),
    backoff: backoffOf(o, l),
    leaseMs: optInt(o, 'leaseMs', 1, l.maxDurationMs),
  });
  return command({
    op: 'repeat',
    queue: reqString(o, 'queue'),
    repeatId: reqString(o, 'repeatId'),
    everyMs,
    cron,
    name: reqString(o, 'name'),
    payload: jsonBytes(o['data'] ?? null, 'data', l),
    options: Object.keys(options).length === 0 ? undefined : options,
  });
}

/** A repeatable job as the API shows it: its template's data as the JSON it was given as. */
export function renderRepeatable(r: RepeatableView): Record<string, unknown> {
  const { payload, nextMs, ...rest } = r;
  return { ...rest, data: jsonOf(payload), nextRunMs: nextMs };
}

function positionOf(v: unknown): { index: number; seq: number } {
  if (v === undefined) return { index: 0, seq: 0 };
  const p = asObject(v, '"after"');
  onlyFields(p, ['index', 'seq'], '"after"');
  return {
    index: required(optIntIn(p, 'after.', 'index', 0, Number.MAX_SAFE_INTEGER), 'after.index'),
    seq: required(optIntIn(p, 'after.', 'seq', 0, Number.MAX_SAFE_INTEGER), 'after.seq'),
  };
}

/** A job as the API shows it: its data and result as the JSON they were given as. */
export function renderJob(j: JobView): Record<string, unknown> {
  const { payload, result, ...rest } = j;
  return { ...rest, data: jsonOf(payload), result: jsonOf(result) };
}
