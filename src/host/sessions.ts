// Exactly-once client sessions (Raft thesis §6.3). Each client names itself and numbers its
// writes; the state machine remembers the results of each client's recent writes, so a retry
// of a write that already applied returns the first result instead of applying again.
//
// A client may have several writes in flight, and they can reach the log out of order (sent
// on different connections, through different nodes, retried after a timeout). So each client
// has a window: the `window` sequence numbers ending at the highest it has used. Inside the
// window every applied sequence number keeps its result, and one not yet applied is applied
// (it is a write still in flight, overtaken by a later one); below the window a sequence
// number is refused, because whether it applied can no longer be told. docs/API.md
// ("Exactly-once writes") states the rule for clients.
//
// Every decision depends only on the log: time comes from the leader's timestamps in the
// entries (never a local clock), and the session clock never goes backwards, so every replica
// answers, expires and evicts the same way at the same log index.

import { strict as assert } from 'node:assert';
import { defaultLimits } from '../base/limits.js';

export interface SessionLimits {
  /** Sessions idle longer than this (by log time) are forgotten. Default 10 minutes. */
  readonly ttlMs: number;
  /** Most sessions remembered; the least recently used is forgotten first. Default 10,000. */
  readonly maxSessions: number;
  /**
   * Sequence numbers per client, ending at its highest, inside which an out-of-order write is
   * still applied and every applied one remembered: the most writes a client may have in
   * flight. Default 256.
   */
  readonly window: number;
}

export const defaultSessionLimits: SessionLimits = {
  ttlMs: 10 * 60_000,
  maxSessions: defaultLimits.maxSessions,
  window: defaultLimits.sessionWindow,
};

interface Session {
  lastSeenMs: number;
  /** seq -> result for every applied sequence number above `floor`. */
  readonly results: Map<number, unknown>;
  /**
   * Sequence numbers at or below this are below the window and refused.
   * Invariant: floor >= (highest sequence number applied) - window, and no result is kept for
   * a sequence number at or below it.
   */
  floor: number;
}

export type SessionCheck =
  | { readonly kind: 'apply' }
  | { readonly kind: 'duplicate'; readonly result: unknown }
  /** Below the window: sequence numbers at or below `floor` are refused. */
  | { readonly kind: 'stale'; readonly floor: number };

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
    if (seq <= s.floor) return { kind: 'stale', floor: s.floor };
    return { kind: 'apply' };
  }

  /** Remembers the result of applying `seq`; `check` must have answered `apply` for it. */
  record(clientId: string, seq: number, result: unknown): void {
    let s = this.sessions.get(clientId);
    assert(
      s === undefined || (seq > s.floor && !s.results.has(seq)),
      `seq ${seq} of ${clientId} was not checked`,
    );
    if (s === undefined) {
      s = { lastSeenMs: this.clockMs, results: new Map(), floor: 0 };
    } else {
      this.sessions.delete(clientId);
    }
    s.lastSeenMs = this.clockMs;
    s.results.set(seq, result);
    this.raiseFloor(s, seq - this.limits.window);
    this.sessions.set(clientId, s);
    while (this.sessions.size > this.limits.maxSessions) {
      const first = this.sessions.keys().next().value as string;
      this.sessions.delete(first);
    }
  }

  /** Moves the window's lower edge up to `floor` and forgets the results it leaves behind. */
  private raiseFloor(s: Session, floor: number): void {
    if (floor <= s.floor) return;
    if (floor - s.floor < s.results.size) {
      for (let q = s.floor + 1; q <= floor; q++) s.results.delete(q);
    } else {
      for (const q of s.results.keys()) if (q <= floor) s.results.delete(q);
    }
    s.floor = floor;
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
