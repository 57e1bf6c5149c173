// Exactly-once client sessions (Raft thesis §6.3). Each client names itself and numbers its
// writes; the state machine remembers the results of each client's recent writes, so a retry
// of a write that already applied returns the first result instead of applying again.
//
// A client may have several writes in flight, so results are kept for a window of recent
// sequence numbers per client, not only the last. Time comes only from the leader's
// timestamps in the log (never a local clock), and the session clock never goes backwards,
// so every replica expires the same sessions at the same log index.

export interface SessionLimits {
  /** Sessions idle longer than this (by log time) are forgotten. Default 10 minutes. */
  readonly ttlMs: number;
  /** Most sessions remembered; the least recently used is forgotten first. Default 10,000. */
  readonly maxSessions: number;
  /** Results remembered per client (the most writes it may have in flight). Default 256. */
  readonly window: number;
}

export const defaultSessionLimits: SessionLimits = {
  ttlMs: 10 * 60_000,
  maxSessions: 10_000,
  window: 256,
};

interface Session {
  lastSeenMs: number;
  /** seq -> result, for the most recent `window` sequence numbers applied. */
  readonly results: Map<number, unknown>;
  /** Sequence numbers at or below this fell out of the window: their retries are refused. */
  floor: number;
}

export type SessionCheck =
  | { readonly kind: 'apply' }
  | { readonly kind: 'duplicate'; readonly result: unknown }
  | { readonly kind: 'stale' };

export class SessionTable {
  /** Map order is least recently used first: a touched session is re-inserted at the end. */
  private readonly sessions = new Map<string, Session>();
  private clockMs = 0;

  constructor(private readonly limits: SessionLimits = defaultSessionLimits) {}

  /** Advances the session clock to the entry's time and expires idle sessions. */
  tick(timeMs: number): void {
    if (timeMs > this.clockMs) this.clockMs = timeMs;
    for (const [id, s] of this.sessions) {
      if (this.clockMs - s.lastSeenMs <= this.limits.ttlMs) break;
      this.sessions.delete(id);
    }
  }

  check(clientId: string, seq: number): SessionCheck {
    const s = this.sessions.get(clientId);
    if (s === undefined) return { kind: 'apply' };
    if (s.results.has(seq)) return { kind: 'duplicate', result: s.results.get(seq) };
    if (seq <= s.floor) return { kind: 'stale' };
    return { kind: 'apply' };
  }

  record(clientId: string, seq: number, result: unknown): void {
    let s = this.sessions.get(clientId);
    if (s === undefined) {
      s = { lastSeenMs: this.clockMs, results: new Map(), floor: 0 };
    } else {
      this.sessions.delete(clientId);
    }
    s.lastSeenMs = this.clockMs;
    s.results.set(seq, result);
    if (s.results.size > this.limits.window) {
      const oldest = Math.min(...s.results.keys());
      s.results.delete(oldest);
      s.floor = Math.max(s.floor, oldest);
    }
    this.sessions.set(clientId, s);
    while (this.sessions.size > this.limits.maxSessions) {
      const first = this.sessions.keys().next().value as string;
      this.sessions.delete(first);
    }
  }

  size(): number {
    return this.sessions.size;
  }

  /** Plain data for snapshots (results must be serialisable by the caller's codec). */
  save(): { clockMs: number; sessions: [string, number, number, [number, unknown][]][] } {
    return {
      clockMs: this.clockMs,
      sessions: [...this.sessions].map(([id, s]) => [id, s.lastSeenMs, s.floor, [...s.results]]),
    };
  }

  load(state: {
    clockMs: number;
    sessions: [string, number, number, [number, unknown][]][];
  }): void {
    this.sessions.clear();
    this.clockMs = state.clockMs;
    for (const [id, lastSeenMs, floor, results] of state.sessions) {
      this.sessions.set(id, { lastSeenMs, floor, results: new Map(results) });
    }
  }
}
