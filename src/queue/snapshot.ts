// The queue machine's snapshot: captured in O(queues + jobs) pointer copies when taken, then
// encoded chunk by chunk as the reader pulls, while commands keep applying.
//
// Jobs are mutable records, so a capture keeps a pre-image: before the machine changes a job
// the capture holds (one added before it), it hands the capture the job's encoded fields as
// they were (copy-on-write, `Capture.preserve`). Encoding then takes the pre-image when there
// is one, the live record otherwise, and so sees the state as of the capture. Everything else
// (queues' settings, repeatable jobs, events, dedup records) is small or immutable and copied
// or referenced when captured.
//
// Layout: a header chunk (format, counters, queues, repeatables, event-log state and how many
// chunks of each kind follow), then event chunks, dedup chunks and job chunks.

import { Packr } from 'msgpackr';
import { parseCron } from './cron.js';
import type { EventLogState } from './events.js';
import {
  defaultMaxReleases,
  expiryOf,
  isFinished,
  Job,
  QueueState,
  Repeatable,
  type FinishedState,
} from './jobs.js';
import { dedupKey, repeatKey, type QueueCore } from './state.js';
import type { DedupTuple } from './state.js';
import {
  zeroTotals,
  type Backoff,
  type JobState,
  type QueueEvent,
  type QueueTotals,
  type RateLimit,
  type Retention,
} from './types.js';

const packr = new Packr({ useRecords: false, moreTypes: false });
export const SNAPSHOT_FORMAT = 1;
const PER_CHUNK = 2_048;

/** A job's fields as stored: the queue by its rank in the header's list. */
export type JobTuple = [
  queue: number,
  id: string,
  seq: number,
  name: string,
  payload: Uint8Array,
  priority: number,
  maxAttempts: number,
  backoff: Backoff,
  leaseMs: number,
  addedAtMs: number,
  repeatId: string | null,
  state: JobState,
  attempts: number,
  runAtMs: number,
  token: number,
  leaseExpiresMs: number,
  worker: string | null,
  progress: number,
  finishedStamp: number,
  finishedAtMs: number,
  result: Uint8Array | null,
  error: string | null,
  removed: boolean,
  /**
   * Counted releases, written only when above 0: a snapshot without them (every snapshot taken
   * before releases were counted, and one a member of a release before them may be sent while
   * no job has been released since) has records of 23 fields, which every release reads.
   */
  releases?: number,
];

export function jobTuple(j: Job, queueRank: number): JobTuple {
  const t: JobTuple = [
    queueRank,
    j.id,
    j.seq,
    j.name,
    j.payload,
    j.priority,
    j.maxAttempts,
    j.backoff,
    j.leaseMs,
    j.addedAtMs,
    j.repeatId,
    j.state,
    j.attempts,
    j.runAtMs,
    j.token,
    j.leaseExpiresMs,
    j.worker,
    j.progress,
    j.finishedStamp,
    j.finishedAtMs,
    j.result,
    j.error,
    j.removed,
  ];
  if (j.releases > 0) t.push(j.releases);
  return t;
}

export type QueueTuple = [
  name: string,
  paused: boolean,
  rateLimit: RateLimit | null,
  rateWindow: number,
  rateCount: number,
  concurrency: number | null,
  keepCompleted: Retention,
  keepDead: Retention,
  /** Absent in snapshots taken before queues kept totals: zeros. */
  totals?: QueueTotals,
  /** Absent in snapshots taken before releases were capped: the default. */
  maxReleases?: number,
];

export type RepeatableTuple = [
  queue: string,
  repeatId: string,
  seq: number,
  everyMs: number | null,
  cron: string | null,
  name: string,
  payload: Uint8Array,
  priority: number,
  maxAttempts: number,
  backoff: Backoff,
  leaseMs: number,
  nextMs: number,
];

export interface SnapshotHeader {
  readonly v: number;
  readonly nowMs: number;
  readonly nextSeq: number;
  readonly finishStamp: number;
  readonly queues: QueueTuple[];
  readonly repeatables: RepeatableTuple[];
  readonly eventLog: EventLogState;
  readonly eventChunks: number;
  readonly dedupChunks: number;
  readonly jobChunks: number;
}

/** One snapshot in progress: what was captured, and the pre-images of jobs changed since. */
export class Capture {
  private readonly preimages = new Map<Job, JobTuple>();
  /** Set when the encoding finished or the capture was given up: it keeps nothing more. */
  closed = false;

  constructor(
    private readonly header: Omit<SnapshotHeader, 'eventChunks' | 'dedupChunks' | 'jobChunks'>,
    private readonly events: readonly QueueEvent[],
    private readonly dedup: readonly DedupTuple[],
    /** Every queue's jobs in seq order, queue by queue, as captured (removed ones included). */
    private readonly jobs: readonly Job[],
    private readonly rankOf: ReadonlyMap<string, number>,
    /** Jobs with a seq up to this were added before the capture. */
    readonly maxSeq: number,
  ) {}

  /** Called before the machine changes `j`: keeps its captured fields, once. */
  preserve(j: Job): void {
    if (this.closed || j.seq > this.maxSeq || this.preimages.has(j)) return;
    this.preimages.set(j, this.tupleOf(j));
  }

  private tupleOf(j: Job): JobTuple {
    return jobTuple(j, this.rankOf.get(j.queue.name) as number);
  }

  *chunks(): Generator<Uint8Array> {
    const n = (len: number) => Math.ceil(len / PER_CHUNK);
    yield packr.pack({
      ...this.header,
      eventChunks: n(this.events.length),
      dedupChunks: n(this.dedup.length),
      jobChunks: n(this.jobs.length),
    } satisfies SnapshotHeader);
    for (let i = 0; i < this.events.length; i += PER_CHUNK)
      yield packr.pack(this.events.slice(i, i + PER_CHUNK));
    for (let i = 0; i < this.dedup.length; i += PER_CHUNK)
      yield packr.pack(this.dedup.slice(i, i + PER_CHUNK));
    for (let i = 0; i < this.jobs.length; i += PER_CHUNK) {
      if (this.closed) throw new Error('Queue snapshot was superseded by later ones');
      const part: JobTuple[] = [];
      for (const j of this.jobs.slice(i, i + PER_CHUNK)) {
        const t = this.preimages.get(j) ?? this.tupleOf(j);
        if (!t[22]) part.push(t);
      }
      yield packr.pack(part);
    }
    this.close();
  }

  close(): void {
    this.closed = true;
    this.preimages.clear();
  }
}

/** The snapshot's contents, decoded and checked for shape; the machine rebuilds from it. */
export interface DecodedSnapshot {
  readonly header: SnapshotHeader;
  readonly events: QueueEvent[];
  readonly dedup: DedupTuple[];
  readonly jobs: JobTuple[];
}

function need(ok: boolean, what: string): void {
  if (!ok) throw new Error(`Queue snapshot is malformed: ${what}`);
}

export async function decodeSnapshot(source: AsyncIterable<Uint8Array>): Promise<DecodedSnapshot> {
  const it = source[Symbol.asyncIterator]();
  const next = async (what: string): Promise<unknown> => {
    const r = await it.next();
    if (r.done === true) throw new Error(`Queue snapshot is malformed: it ends before ${what}`);
    return packr.unpack(r.value);
  };
  const header = (await next('its header')) as SnapshotHeader;
  need(header !== null && typeof header === 'object', 'the header is not a map');
  if (header.v !== SNAPSHOT_FORMAT)
    throw new Error(`Unsupported queue snapshot version ${String(header.v)}`);
  for (const k of ['nowMs', 'nextSeq', 'finishStamp', 'eventChunks', 'dedupChunks', 'jobChunks'])
    need(Number.isSafeInteger((header as unknown as Record<string, unknown>)[k]), `bad ${k}`);
  need(Array.isArray(header.queues) && Array.isArray(header.repeatables), 'bad lists');
  const read = async <T>(chunks: number, what: string): Promise<T[]> => {
    const out: T[] = [];
    for (let i = 0; i < chunks; i++) {
      const part = await next(`${what} chunk ${i + 1}`);
      need(Array.isArray(part), `${what} chunk ${i + 1} is not an array`);
      for (const x of part as T[]) out.push(x);
    }
    return out;
  };
  const events = await read<QueueEvent>(header.eventChunks, 'event');
  const dedup = await read<DedupTuple>(header.dedupChunks, 'dedup');
  const jobs = await read<JobTuple>(header.jobChunks, 'job');
  need((await it.next()).done === true, 'chunks past its end');
  for (const t of jobs) {
    need(
      Array.isArray(t) && (t.length === 23 || t.length === 24),
      'a job record has the wrong shape',
    );
    need(
      t[23] === undefined || (Number.isSafeInteger(t[23]) && t[23] > 0),
      'a job has bad releases',
    );
    need(
      Number.isSafeInteger(t[0]) && t[0] >= 0 && t[0] < header.queues.length,
      'a job names no queue',
    );
    need(t[4] instanceof Uint8Array, 'a job payload is not bytes');
  }
  return { header, events, dedup, jobs };
}

/** Captures the state as of now (pointer copies; jobs' fields are kept on change). */
export function captureState(s: QueueCore): Capture {
  const rankOf = new Map<string, number>();
  const jobs: Job[] = [];
  for (const q of s.queues.values()) {
    rankOf.set(q.name, rankOf.size);
    for (const j of q.order) jobs.push(j);
  }
  const header = {
    v: SNAPSHOT_FORMAT,
    nowMs: s.nowMs,
    nextSeq: s.nextSeq,
    finishStamp: s.finishStamp,
    queues: [...s.queues.values()].map(queueTuple),
    repeatables: [...s.repeatables.values()].map(repeatableTuple),
    eventLog: s.events.state(),
  };
  const dedup = s.dedupQueue
    .slice(s.dedupStart)
    .filter(([q, id, e]) => s.dedup.get(dedupKey(q, id)) === e);
  return new Capture(header, s.events.kept(), dedup, jobs, rankOf, s.nextSeq - 1);
}

export function queueTuple(q: QueueState): QueueTuple {
  return [
    q.name,
    q.paused,
    q.rateLimit,
    q.rateWindow,
    q.rateCount,
    q.concurrency,
    q.keepCompleted,
    q.keepDead,
    // A copy: the header is encoded when the reader pulls it, and the totals change meanwhile.
    { ...q.totals },
    q.maxReleases,
  ];
}

export function repeatableTuple(r: Repeatable): RepeatableTuple {
  const { queue, repeatId, seq, everyMs, name, payload, priority, maxAttempts, backoff, leaseMs } =
    r;
  const cron = r.cron?.source ?? null;
  return [
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
    r.nextMs,
  ];
}

/** Replaces the whole state with the snapshot's, rebuilding every index. */
export function restoreState(s: QueueCore, d: DecodedSnapshot): void {
  s.clear();
  const h = d.header;
  s.nowMs = h.nowMs;
  s.nextSeq = h.nextSeq;
  s.finishStamp = h.finishStamp;
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
    totals,
    maxReleases,
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
      totals: { ...zeroTotals, ...totals },
      maxReleases: maxReleases ?? defaultMaxReleases,
    });
    s.queues.set(name, q);
    byRank.push(q);
  }
  for (const t of h.repeatables) {
    const cron = t[4] === null ? null : parseCron(t[4]);
    const r = new Repeatable(
      t[0],
      t[1],
      t[2],
      t[3],
      cron,
      t[5],
      new Uint8Array(t[6]),
      t[7],
      t[8],
      t[9],
      t[10],
      t[11],
    );
    s.repeatables.set(repeatKey(r.queue, r.repeatId), r);
    s.repeatHeap.push(r);
  }
  s.events.restore(d.events, h.eventLog);
  for (const [q, id, e] of d.dedup) s.dedup.set(dedupKey(q, id), e);
  s.dedupQueue = d.dedup;
  // Finished jobs re-enter their maps in the order they finished, as retention by count needs.
  const finished: Job[] = [];
  for (const t of d.jobs) {
    const q = byRank[t[0]] as QueueState;
    const j = new Job(
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
    [j.attempts, j.runAtMs, j.token, j.leaseExpiresMs, j.worker, j.progress] = [
      t[12],
      t[13],
      t[14],
      t[15],
      t[16],
      t[17],
    ];
    [j.finishedStamp, j.finishedAtMs, j.error] = [t[18], t[19], t[21]];
    if (t[23] !== undefined) j.releases = t[23];
    j.result = t[20] === null ? null : new Uint8Array(t[20]);
    q.jobs.set(j.id, j);
    q.order.push(j);
    q.counts[j.state]++;
    s.jobCount++;
    if (isFinished(j.state)) finished.push(j);
    else if (j.state === 'waiting') q.waiting.push(j);
    else if (j.state === 'active') s.leases.push(j);
    else s.timers.push(j);
  }
  finished.sort((a, b) => a.finishedStamp - b.finishedStamp);
  for (const j of finished) {
    j.queue.finishedMap(j.state as FinishedState).set(j.id, j);
    if (expiryOf(j) > j.finishedAtMs) s.retention.push(j);
  }
}
