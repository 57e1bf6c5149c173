// The election timeline of one node: leader changes, campaigns, step-downs, transfers and
// membership changes of both Raft groups, each with the reason the core gave (the same reasons
// the logs carry), kept in a ring of bounded size for the dashboard. Votes and the many
// per-message events are left to the logs.
//
// A node cut off from the others campaigns every election timeout: pre-candidate, then
// follower again ("lost pre-vote"), several times a second. Recorded one by one, that would
// push every earlier election out of the ring within a minute, so an entry equal to one of
// the last few of its group (same kind, term, peer and reason) is folded into it: its count
// rises and its time moves on.

import type { TimelineEntry } from '../api/dashboard-routes.js';
import type { RuntimeEvent } from '../host/runtime-options.js';

export type { TimelineEntry } from '../api/dashboard-routes.js';

/** The core's events worth a line on the timeline. */
const kept = new Set([
  'become-pre-candidate',
  'become-candidate',
  'become-leader',
  'become-follower',
  'step-down',
  'transfer-started',
  'transfer-handed-off',
  'transfer-aborted',
  'recovery-started',
  'recovery-finished',
  'follower-lost-log',
  'conf-applied',
  'campaign-deferred',
]);

/** How many of a group's latest entries a new one may be folded into. */
const foldWindow = 4;

export class Timeline {
  private readonly ring: (TimelineEntry | undefined)[];
  /** Invariant: the next seq; entries hold seqs nextSeq - size .. nextSeq - 1. */
  private nextSeq = 1;
  private size = 0;
  /** Rises whenever an entry is added or folded: a reader can tell the ring changed. */
  /**
   * Starts at the clock's time when made, not 0: a reader that kept the version of a run of
   * this node before a restart must not find it equal to the new run's, and keep the old lines.
   */
  private changes: number;

  constructor(
    private readonly node: number,
    private readonly capacity: number,
    private readonly nowMs: () => number,
  ) {
    if (!Number.isInteger(capacity) || capacity < 1)
      throw new RangeError(`A timeline holds at least 1 entry, got ${capacity}`);
    this.ring = new Array<TimelineEntry | undefined>(capacity);
    this.changes = Math.max(1, Math.floor(nowMs()));
  }

  /** Records a runtime event of `group` if it belongs on the timeline. */
  record(group: number, e: RuntimeEvent): void {
    if (e.kind === 'leader-changed') {
      const reason = e.leader === 0 ? 'no leader known' : `leader is ${e.leader}`;
      this.add({ group, kind: 'leader-changed', term: e.term, peer: e.leader, reason });
    } else if (e.kind === 'raft' && kept.has(e.event.kind)) {
      const r = e.event;
      this.add({ group, kind: r.kind, term: r.term, peer: r.peer, reason: r.reason });
    }
  }

  /** The entries after `after` (0: all kept), oldest first, and whether some were lost. */
  entriesAfter(after: number): { entries: TimelineEntry[]; missed: boolean; version: number } {
    const first = this.nextSeq - this.size;
    const out: TimelineEntry[] = [];
    for (let seq = Math.max(first, after + 1); seq < this.nextSeq; seq++) {
      const e = this.ring[seq % this.capacity];
      if (e !== undefined) out.push(e);
    }
    return { entries: out, missed: after + 1 < first && this.nextSeq > 1, version: this.changes };
  }

  /** The seq of the newest entry (0 when none). */
  lastSeq(): number {
    return this.nextSeq - 1;
  }

  /** Rises with every change, folds included. */
  version(): number {
    return this.changes;
  }

  private add(e: Omit<TimelineEntry, 'seq' | 'atMs' | 'lastMs' | 'count' | 'node'>): void {
    const now = this.nowMs();
    this.changes++;
    let seen = 0;
    for (let seq = this.nextSeq - 1; seq >= this.nextSeq - this.size; seq--) {
      const prev = this.ring[seq % this.capacity] as TimelineEntry;
      if (prev.group !== e.group) continue;
      if (
        prev.kind === e.kind &&
        prev.term === e.term &&
        prev.peer === e.peer &&
        prev.reason === e.reason
      ) {
        this.ring[seq % this.capacity] = { ...prev, count: prev.count + 1, lastMs: now };
        return;
      }
      if (++seen === foldWindow) break;
    }
    const seq = this.nextSeq++;
    this.ring[seq % this.capacity] = {
      seq,
      atMs: now,
      lastMs: now,
      count: 1,
      node: this.node,
      ...e,
    };
    this.size = Math.min(this.size + 1, this.capacity);
  }
}
