// Everything the queue machine holds, in one object: the machine (machine.ts) changes it, the
// reads (reads.ts) and the audit (audit.ts) look at it, snapshots (snapshot.ts) capture and
// rebuild it. Nothing here decides anything.

import type { QueueLimits } from '../base/limits.js';
import { EventLog } from './events.js';
import { IndexedHeap } from './heap.js';
import {
  byLeaseEnd,
  byNextRun,
  byRunAt,
  bySeq,
  expiryOf,
  type Job,
  type QueueState,
  type Repeatable,
} from './jobs.js';

export class QueueCore {
  /** The latest command time applied. Never goes back. */
  nowMs = 0;
  /** Job and repeatable sequence numbers: unique, increasing. */
  nextSeq = 1;
  /** Counts finishes, ordering finished jobs for retention. */
  finishStamp = 0;
  jobCount = 0;
  readonly queues = new Map<string, QueueState>();
  /** By repeatKey(queue, repeatId). */
  readonly repeatables = new Map<string, Repeatable>();
  readonly repeatHeap = new IndexedHeap<Repeatable>(byNextRun, bySeq);
  /** Jobs in delayed or failed state, by due time. */
  readonly timers = new IndexedHeap<Job>(byRunAt, bySeq);
  /** Active jobs, by lease end. Invariant: after a command, every lease ends after nowMs. */
  readonly leases = new IndexedHeap<Job>(byLeaseEnd, bySeq);
  /** Finished jobs of queues with an age limit for their kind, by expiry. */
  readonly retention = new IndexedHeap<Job>(expiryOf, bySeq);
  /** Live dedup records: dedupKey(queue, id) to when the window ends. */
  readonly dedup = new Map<string, number>();
  /** The same records in the order they expire (time never goes back), from dedupStart. */
  dedupQueue: DedupTuple[] = [];
  dedupStart = 0;
  readonly events: EventLog;

  constructor(readonly limits: QueueLimits) {
    this.events = new EventLog(limits.maxEvents);
  }

  clear(): void {
    this.nowMs = 0;
    this.nextSeq = 1;
    this.finishStamp = 0;
    this.jobCount = 0;
    this.queues.clear();
    this.repeatables.clear();
    this.dedup.clear();
    this.dedupQueue = [];
    this.dedupStart = 0;
    for (const h of [this.timers, this.leases, this.retention]) while (h.pop() !== undefined);
    while (this.repeatHeap.pop() !== undefined);
  }
}

export function dedupKey(queue: string, id: string): string {
  return `${queue} ${id}`;
}

export function repeatKey(queue: string, repeatId: string): string {
  return `${queue} ${repeatId}`;
}

/** A caller-given job id remembered for deduplication: its queue, the id, and when it expires. */
export type DedupTuple = [queue: string, id: string, expiresMs: number];
