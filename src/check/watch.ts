// Checkers for the watch and lock workloads of the fault-injection suite.
//
// Watch: each watcher reports the revisions (with their events) it was delivered; the final
// history is the same prefix's changes replayed from one node after the faults healed. Every
// watcher must have been delivered exactly the history's revisions from its first one to its
// last: none twice, none out of order, none missing in between (a gap), none that the history
// lacks, each with the same events. A watcher may start late and end early (its stream was
// still reconnecting when the run stopped); what it got must be a contiguous run of the history.
//
// Lock: every write to the lock's data key carries the token of the holder that made it (a
// guarded write). Along the final history of that key, tokens must never go down: a write of
// token t after one of a higher token means two holders' critical sections interleaved (the
// old holder wrote after losing the lock).

/** One revision as a watcher saw it: its events rendered to comparable strings. */
export interface WatchedRevision {
  readonly revision: number;
  readonly events: readonly string[];
}

export interface WatcherLog {
  readonly watcher: string;
  readonly revisions: readonly WatchedRevision[];
}

export interface WatchReport {
  readonly valid: boolean;
  readonly watchers: number;
  readonly delivered: number;
  readonly historyRevisions: number;
  readonly anomalies: readonly string[];
}

/** Judges every watcher against the final history (both in revision order). */
export function checkWatchers(
  history: readonly WatchedRevision[],
  watchers: readonly WatcherLog[],
  maxAnomalies = 20,
): WatchReport {
  const index = new Map<number, number>();
  history.forEach((h, i) => index.set(h.revision, i));
  const anomalies: string[] = [];
  let delivered = 0;
  const note = (s: string) => {
    if (anomalies.length < maxAnomalies) anomalies.push(s);
  };
  for (const w of watchers) {
    delivered += w.revisions.length;
    let prev: number | null = null; // index in history of the previous delivered revision
    let prevRevision = 0;
    for (const got of w.revisions) {
      if (got.revision <= prevRevision) {
        note(
          `${w.watcher}: revision ${got.revision} after ${prevRevision} (repeated or out of order)`,
        );
        continue;
      }
      prevRevision = got.revision;
      const i = index.get(got.revision);
      if (i === undefined) {
        note(`${w.watcher}: revision ${got.revision} is not in the history`);
        continue;
      }
      if (prev !== null && i !== prev + 1) {
        const missing = history.slice(prev + 1, i).map((h) => h.revision);
        note(
          `${w.watcher}: missed revision(s) ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', …' : ''} before ${got.revision}`,
        );
      }
      prev = i;
      const want = (history[i] as WatchedRevision).events;
      if (want.join('\n') !== got.events.join('\n'))
        note(
          `${w.watcher}: revision ${got.revision} delivered ${JSON.stringify(got.events)}, the history has ${JSON.stringify(want)}`,
        );
    }
  }
  return {
    valid: anomalies.length === 0,
    watchers: watchers.length,
    delivered,
    historyRevisions: history.length,
    anomalies,
  };
}

export interface LockWrite {
  readonly revision: number;
  readonly token: number;
}

export interface LockReport {
  readonly valid: boolean;
  readonly writes: number;
  readonly holders: number;
  readonly anomalies: readonly string[];
}

/** Judges the final history of a lock's data key (writes in revision order). */
export function checkLockWrites(writes: readonly LockWrite[], maxAnomalies = 20): LockReport {
  const anomalies: string[] = [];
  let highest: LockWrite | null = null;
  const holders = new Set<number>();
  for (const w of writes) {
    holders.add(w.token);
    if (highest !== null && w.token < highest.token) {
      if (anomalies.length < maxAnomalies)
        anomalies.push(
          `revision ${w.revision}: a write of holder ${w.token} after holder ${highest.token} wrote at revision ${highest.revision} (critical sections interleaved)`,
        );
      continue;
    }
    highest = w;
  }
  return { valid: anomalies.length === 0, writes: writes.length, holders: holders.size, anomalies };
}
