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
// A write may also carry its client's acknowledgement mark (`ackedBelow`, §6.3): the lowest
// sequence number the client still awaits an answer for. The client will never retry one below
// it, so their results are forgotten and the floor rises to just below the mark: a client that
// says its mark costs about one result per write in flight, not a whole window. A later entry
// below the floor (a stale copy of an answered write) is refused as one below the window is.
//
// Every decision depends only on the log: time comes from the leader's timestamps in the
// entries (never a local clock), and the session clock never goes backwards, so every replica
// answers, expires and evicts the same way at the same log index.

import { strict as assert } from 'node:assert';
import { Packr } from 'msgpackr';
import { chunkStream, type Command, type Refusal, type StateMachine } from './contracts.js';
import {
  KIND_DIRECTORY,
  KIND_FEATURE_LEVEL,
  decodeEnvelope,
  decodeFeatureLevel,
} from './envelope.js';
import { isFeatureLevel } from '../base/features.js';
import { MemberDirectory, decodeDirectoryChange, parseDirectorySnapshot } from './directory.js';
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
   * Sequence numbers at or below this are below the window, or were acknowledged, and are
   * refused. Invariant: floor >= (highest sequence number applied) - window, floor >= (highest
   * acknowledgement mark seen) - 1, and no result is kept for a sequence number at or below it.
   */
  floor: number;
  /** When it was made, in the table's count of sessions made: captures tell theirs by it. */
  readonly born: number;
}

/** A session as a snapshot stores it: client id, last seen, floor, [seq, result] pairs. */
export type SavedSession = [string, number, number, [number, unknown][]];

/** Captures read at once at most; a node reads one at a time, tests may hold a few. */
const MAX_CAPTURES = 4;

/**
 * The session table as of a moment, read later (copy-on-write, like the key-value store's
 * capture): it holds the sessions themselves, and the table hands it a session's fields as
 * they were before it changes one it holds. Taken in O(sessions) reference copies: copying
 * every session's results (up to 256 each, 10,000 sessions) took tens of milliseconds at once.
 */
export class SessionCapture {
  private readonly before = new Map<Session, [number, number, [number, unknown][]]>();
  /** Reading finished or was given up: the capture keeps nothing more. */
  closed = false;

  constructor(
    readonly clockMs: number,
    private readonly held: readonly (readonly [string, Session])[],
    /** Sessions made up to this count are the ones held (any later one is not). */
    private readonly madeBefore: number,
  ) {}

  get count(): number {
    return this.held.length;
  }

  /** Called before the table changes `s`: keeps its fields as captured, once. */
  preserve(s: Session): void {
    if (this.closed || s.born > this.madeBefore || this.before.has(s)) return;
    this.before.set(s, [s.lastSeenMs, s.floor, [...s.results]]);
  }

  /** Sessions `from` to `to` (exclusive) of the capture, in the table's order then. */
  rows(from: number, to: number): SavedSession[] {
    if (this.closed) throw new Error('Session snapshot was given up while being read');
    return this.held.slice(from, to).map(([id, s]) => {
      const b = this.before.get(s);
      return b === undefined ? [id, s.lastSeenMs, s.floor, [...s.results]] : [id, ...b];
    });
  }

  close(): void {
    this.closed = true;
    this.before.clear();
  }
}

export type SessionCheck =
  | { readonly kind: 'apply' }
  | { readonly kind: 'duplicate'; readonly result: unknown }
  /** Below the window: sequence numbers at or below `floor` are refused. */
  | { readonly kind: 'stale'; readonly floor: number };

/** The answer of most checks: one object, not one per write. */
const APPLY: SessionCheck = Object.freeze({ kind: 'apply' });

export class SessionTable {
  /** Map order is least recently used first: a touched session is re-inserted at the end. */
  private readonly sessions = new Map<string, Session>();
  private clockMs = 0;
  /**
   * The session clock when idle sessions were last expired: until it moves, none can expire
   * (every write records its session at the clock), so `tick` need not look.
   */
  private expiredAtMs = -1;
  /** Sessions made so far (each session's `born`). */
  private made = 0;
  private captures: SessionCapture[] = [];
  private readonly pinned = new WeakSet<SessionCapture>();

  constructor(private readonly limits: SessionLimits = defaultSessionLimits) {}

  /** Advances the session clock to the entry's time and expires idle sessions. */
  tick(timeMs: number): void {
    if (timeMs > this.clockMs) this.clockMs = timeMs;
    if (this.clockMs === this.expiredAtMs) return;
    this.expiredAtMs = this.clockMs;
    for (const [id, s] of this.sessions) {
      if (this.clockMs - s.lastSeenMs <= this.limits.ttlMs) break;
      this.sessions.delete(id);
    }
  }

  check(clientId: string, seq: number): SessionCheck {
    const s = this.sessions.get(clientId);
    if (s === undefined) return APPLY;
    if (s.results.has(seq)) return { kind: 'duplicate', result: s.results.get(seq) };
    if (seq <= s.floor) return { kind: 'stale', floor: s.floor };
    return APPLY;
  }

  /**
   * The client has every answer below `ackedBelow` (its mark, at most the sequence number of
   * the write that carries it): their results are forgotten and the floor rises below it. A
   * lower mark than one seen before changes nothing (marks reach the log out of order).
   */
  acknowledge(clientId: string, ackedBelow: number): void {
    const s = this.sessions.get(clientId);
    if (s === undefined || ackedBelow - 1 <= s.floor) return;
    for (const c of this.captures) c.preserve(s);
    this.raiseFloor(s, ackedBelow - 1);
  }

  /**
   * Remembers the result of applying `seq`; `check` must have answered `apply` for it.
   * `ackedBelow` is the write's mark (0: none), applied as `acknowledge` does.
   */
  record(clientId: string, seq: number, result: unknown, ackedBelow = 0): void {
    // The messages are built only on failure: this runs for every write.
    if (ackedBelow > seq) assert.fail(`mark ${ackedBelow} of ${clientId} is above its seq ${seq}`);
    let s = this.sessions.get(clientId);
    if (s !== undefined && (seq <= s.floor || s.results.has(seq)))
      assert.fail(`seq ${seq} of ${clientId} was not checked`);
    if (s === undefined) {
      s = { lastSeenMs: this.clockMs, results: new Map(), floor: 0, born: ++this.made };
    } else {
      for (const c of this.captures) c.preserve(s);
      this.sessions.delete(clientId);
    }
    s.lastSeenMs = this.clockMs;
    s.results.set(seq, result);
    this.raiseFloor(s, Math.max(seq - this.limits.window, ackedBelow - 1));
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

  /** Results remembered, over every session: what the table holds for retries. */
  resultsHeld(): number {
    let n = 0;
    for (const s of this.sessions.values()) n += s.results.size;
    return n;
  }

  /** Results remembered for one client (0 for a client without a session). */
  resultsOf(clientId: string): number {
    return this.sessions.get(clientId)?.results.size ?? 0;
  }

  /** The session clock: the latest leader time seen. */
  clockNow(): number {
    return this.clockMs;
  }

  has(clientId: string): boolean {
    return this.sessions.has(clientId);
  }

  get maxSessions(): number {
    return this.limits.maxSessions;
  }

  /**
   * The table as of now, for a snapshot read later (SessionCapture). Of the captures not
   * `pinned`, at most MAX_CAPTURES are kept (an older one still being read then fails); a
   * pinned one is kept until it is closed (a split's seed: its failure would stop the range).
   */
  capture(o: { readonly pinned?: boolean } = {}): SessionCapture {
    this.captures = this.captures.filter((c) => !c.closed);
    const c = new SessionCapture(this.clockMs, [...this.sessions], this.made);
    this.captures.push(c);
    if (o.pinned === true) this.pinned.add(c);
    const unpinned = this.captures.filter((x) => !this.pinned.has(x));
    if (unpinned.length > MAX_CAPTURES) unpinned[0]?.close();
    return c;
  }

  /** Plain data for snapshots (results must be serialisable by the caller's codec). */
  save(): { clockMs: number; sessions: SavedSession[] } {
    const c = this.capture();
    try {
      return { clockMs: c.clockMs, sessions: c.rows(0, c.count) };
    } finally {
      c.close();
    }
  }

  load(state: { clockMs: number; sessions: SavedSession[] }): void {
    // A capture being read holds the old sessions, which nothing changes any more.
    this.sessions.clear();
    this.clockMs = state.clockMs;
    this.expiredAtMs = -1;
    for (const [id, lastSeenMs, floor, results] of state.sessions) {
      this.sessions.set(id, { lastSeenMs, floor, results: new Map(results), born: ++this.made });
    }
  }
}

const packr = new Packr({ useRecords: false, moreTypes: false });

/**
 * Sessions per snapshot chunk: a full window is 256 results, so a chunk packs up to 8,192,
 * a few milliseconds of work per pull.
 */
const SESSIONS_PER_CHUNK = 32;

/**
 * What an inner machine implements when one of its commands needs the session table as it
 * stands when that command applies: a range's split hands the table to the right-hand range,
 * so that a write retried there after the split is recognised (src/ranges). Such a command is
 * applied alone, after the session of every command before it was recorded and before any
 * after it is, and the machine reads the table through the function it was bound to.
 */
export interface SessionReader {
  /** Whether `payload` is such a command; must be cheap and depend on the bytes alone. */
  readsSessions(payload: Uint8Array): boolean;
  /**
   * Called once, by the session layer wrapping the machine: `sessionsNow()` captures the table
   * (in O(sessions)) and answers the chunks a session layer's snapshot begins with, to be
   * followed by the inner machine's own chunks; the member directory in it is empty (the
   * directory is the first group's, never copied).
   */
  bindSessions(sessionsNow: () => SessionsPart): void;
}

/** The session layer's part of a snapshot, captured: read it whole, or close it unread. */
export interface SessionsPart {
  readonly chunks: AsyncIterable<Uint8Array>;
  /** Gives the capture up (nothing of it is read any more). */
  close(): void;
}

function isSessionReader(m: StateMachine): m is StateMachine & SessionReader {
  return 'readsSessions' in m && 'bindSessions' in m;
}

/**
 * Exactly-once sessions around any state machine. Every entry holds a command envelope
 * (envelope.ts); this layer decodes it, answers a retry of an applied write with the first
 * result, refuses a sequence number below its client's window, and hands the rest to the
 * inner machine with the leader's time. Its snapshot is its sessions followed by the inner
 * machine's own chunks.
 */
export class SessionMachine implements StateMachine {
  private readonly table: SessionTable;
  /** The member directory (directory.ts): applied here, in log order, saved in our snapshot. */
  readonly directory = new MemberDirectory();
  /**
   * The cluster's active feature level (src/base/features.ts), raised by KIND_FEATURE_LEVEL
   * entries in log order and never lowered; saved in our snapshot. Only group 0's is used.
   */
  private level = 0;
  private readonly levelListeners = new Set<(level: number) => void>();

  /** The inner machine, when some of its commands read the session table. */
  private readonly reader: SessionReader | null;

  constructor(
    readonly inner: StateMachine,
    limits: SessionLimits = defaultSessionLimits,
  ) {
    this.table = new SessionTable(limits);
    this.reader = isSessionReader(inner) ? inner : null;
    this.reader?.bindSessions(() => {
      const saved = this.table.capture({ pinned: true });
      return {
        chunks: sessionChunks(saved, { members: [], removed: [] }),
        close: () => saved.close(),
      };
    });
  }

  sessions(): number {
    return this.table.size();
  }

  /** Results the session table remembers for retries, over every session. */
  resultsHeld(): number {
    return this.table.resultsHeld();
  }

  /** Results the session table remembers for one client. */
  resultsOf(clientId: string): number {
    return this.table.resultsOf(clientId);
  }

  /** The active feature level this replica applied (0 before any was raised). */
  featureLevel(): number {
    return this.level;
  }

  /** Calls `listener` whenever the level rises (applied or restored). Returns its remover. */
  onFeatureLevel(listener: (level: number) => void): () => void {
    this.levelListeners.add(listener);
    return () => this.levelListeners.delete(listener);
  }

  private setLevel(level: number): void {
    if (level <= this.level) return;
    this.level = level;
    for (const l of this.levelListeners) l(level);
  }

  apply(commands: readonly Command[]): unknown[] {
    const results: unknown[] = new Array<unknown>(commands.length);
    // Commands for the inner machine are applied in runs, one call per run; a run ends before
    // a command of a client already in it, whose check must see the earlier one recorded.
    let run: { at: number; command: Command; client: string; seq: number; acked: number }[] = [];
    const inRun = new Set<string>();
    let newInRun = 0;
    const flush = (): void => {
      if (run.length === 0) return;
      const out = this.inner.apply(run.map((r) => r.command));
      for (let i = 0; i < run.length; i++) {
        const r = run[i] as (typeof run)[number];
        results[r.at] = out[i];
        if (r.client !== '') this.table.record(r.client, r.seq, out[i], r.acked);
      }
      run = [];
      inRun.clear();
      newInRun = 0;
    };
    // A loop, not forEach: no closure per command.
    for (let at = 0; at < commands.length; at++) {
      const c = commands[at] as Command;
      let env;
      try {
        env = decodeEnvelope(c.payload);
      } catch (err) {
        // The same bytes fail the same way on every replica, and nothing changes.
        results[at] = refusal(
          'BAD_COMMAND',
          `Entry ${c.index} holds no valid command: ${(err as Error).message}`,
        );
        continue;
      }
      if (env.kind === KIND_FEATURE_LEVEL) {
        // In log order like a directory change; a level below the current one changes nothing
        // (the level never goes down), and every replica answers with the level it then holds.
        flush();
        try {
          this.setLevel(decodeFeatureLevel(env.payload));
          results[at] = { featureLevel: this.level };
        } catch (err) {
          results[at] = refusal(
            'BAD_COMMAND',
            `Entry ${c.index} holds no valid feature level: ${(err as Error).message}`,
          );
        }
        continue;
      }
      if (env.kind === KIND_DIRECTORY) {
        // Applied in log order with the commands around it: the run before it goes first.
        flush();
        try {
          results[at] = this.directory.apply(decodeDirectoryChange(env.payload));
        } catch (err) {
          results[at] = refusal(
            'BAD_COMMAND',
            `Entry ${c.index} holds no valid directory change: ${(err as Error).message}`,
          );
        }
        continue;
      }
      // A run must end wherever applying it whole could differ from applying its commands one
      // at a time, or replicas that batch differently would diverge: before a second command of
      // a client in it (its check must see the first recorded); before the session clock moves
      // (a record takes the clock's value, and a tick expires sessions); and once the sessions
      // the run will add would evict one (a later check must not see an evicted session).
      const alone = this.reader?.readsSessions(env.payload) === true;
      if (
        alone ||
        (env.client !== '' && inRun.has(env.client)) ||
        env.timeMs > this.table.clockNow() ||
        this.table.size() + newInRun > this.table.maxSessions
      )
        flush();
      this.table.tick(env.timeMs);
      if (env.client !== '') {
        // The mark first: it only ever forgets results below the write's own seq. No other
        // command of this client is in the run, so the run sees the same as one at a time.
        if (env.ackedBelow !== undefined) this.table.acknowledge(env.client, env.ackedBelow);
        const check = this.table.check(env.client, env.seq);
        if (check.kind === 'duplicate') {
          results[at] = check.result;
          continue;
        }
        if (check.kind === 'stale') {
          results[at] = refusal(
            'SESSION_STALE_SEQUENCE',
            `Client ${env.client} sequence ${env.seq} is below its session window (sequence ` +
              `numbers up to ${check.floor} are refused: fallen out of the window or ` +
              `acknowledged by the client): whether a write with it applied can no longer be told`,
          );
          continue;
        }
        inRun.add(env.client);
        if (!this.table.has(env.client)) newInRun++;
      }
      run.push({
        at,
        client: env.client,
        seq: env.seq,
        acked: env.ackedBelow ?? 0,
        command: { index: c.index, term: c.term, timeMs: env.timeMs, payload: env.payload },
      });
      if (alone) flush();
    }
    flush();
    return results;
  }

  snapshot(): AsyncIterable<Uint8Array> {
    // Both captured now: the inner machine's view and ours are of the same index.
    const sessions = sessionChunks(this.table.capture(), this.directory.save(), this.level);
    const inner = this.inner.snapshot();
    return (async function* () {
      yield* sessions;
      yield* inner;
    })();
  }

  async restore(chunks: AsyncIterable<Uint8Array>): Promise<void> {
    const it = chunks[Symbol.asyncIterator]();
    const next = async (what: string): Promise<Uint8Array> => {
      const r = await it.next();
      if (r.done === true) throw new Error(`Session snapshot ends before its ${what}`);
      return r.value;
    };
    const header = packr.unpack(await next('header')) as {
      v?: unknown;
      clockMs?: unknown;
      chunks?: unknown;
      directory?: unknown;
      featureLevel?: unknown;
    };
    if (header.v !== 1) throw new Error(`Unsupported session snapshot version ${String(header.v)}`);
    if (typeof header.clockMs !== 'number' || !Number.isSafeInteger(header.chunks))
      throw new Error('Session snapshot header is malformed');
    const directory = parseDirectorySnapshot(header.directory);
    // Absent from snapshots written before the gate, and while the level is 0.
    const level = header.featureLevel ?? 0;
    if (!isFeatureLevel(level))
      throw new Error(`Session snapshot feature level is malformed: ${JSON.stringify(level)}`);
    const sessions: SavedSession[] = [];
    for (let i = 0; i < (header.chunks as number); i++) {
      const part = packr.unpack(await next(`chunk ${i + 1} of sessions`)) as unknown;
      if (!Array.isArray(part)) throw new Error('Session snapshot chunk is not an array');
      sessions.push(...(part as typeof sessions));
    }
    await this.inner.restore({ [Symbol.asyncIterator]: () => it });
    this.table.load({ clockMs: header.clockMs, sessions });
    this.directory.load(directory);
    // A snapshot from the leader is at least as far along the log as what it replaces, so its
    // level is never below ours unless ours was never raised there: take it as it is.
    this.level = level;
    for (const l of this.levelListeners) l(level);
  }

  onLeaderChange(leader: number, term: number): void {
    this.inner.onLeaderChange?.(leader, term);
  }
}

/** The session layer's part of a snapshot: its header, then the sessions of `saved`. */
function sessionChunks(
  saved: SessionCapture,
  directory: ReturnType<MemberDirectory['save']>,
  featureLevel = 0,
): AsyncIterable<Uint8Array> {
  return chunkStream(function* () {
    try {
      const chunks = Math.ceil(saved.count / SESSIONS_PER_CHUNK);
      // `directory` is absent from snapshots written before it existed; load() reads both.
      // `featureLevel` only once raised: a release before the gate never reads it, and a
      // level is raised only once no member runs such a release.
      yield packr.pack({
        v: 1,
        clockMs: saved.clockMs,
        chunks,
        directory,
        ...(featureLevel > 0 ? { featureLevel } : {}),
      });
      for (let i = 0; i < chunks; i++)
        yield packr.pack(saved.rows(i * SESSIONS_PER_CHUNK, (i + 1) * SESSIONS_PER_CHUNK));
    } finally {
      saved.close();
    }
  });
}

/**
 * A session snapshot's first chunk (its header) with an empty member directory. A backup
 * restored into a new cluster must not bring the old cluster's member addresses, nor its
 * removed ids, which may be the new cluster's members (DESIGN.md, "Backups"): the new members
 * are the ones its nodes start with. Throws on a chunk that is not a session header.
 */
export function sessionHeaderWithoutDirectory(chunk: Uint8Array): Uint8Array {
  const header = packr.unpack(chunk) as Record<string, unknown> | null;
  if (header === null || typeof header !== 'object' || header['v'] !== 1)
    throw new Error('Session snapshot does not begin with a version 1 header');
  // The feature level goes too: the new cluster's members decide their own.
  const { featureLevel: _level, ...rest } = header;
  return packr.pack({ ...rest, directory: { members: [], removed: [] } });
}

function refusal(refused: Refusal['refused'], message: string): Refusal {
  return { refused, message };
}
