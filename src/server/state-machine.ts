// The replicated state machine contract, the command envelope every log entry carries, and
// exactly-once client sessions (Raft thesis §6.3).
//
// Everything here is pure and deterministic: no I/O, no clock, no randomness. The only time a
// state machine sees is the timestamp the leader stamped into the envelope when it proposed
// the entry, so every replica applying the same log computes the same results, expires the
// same sessions and evicts the same ones at the same log index.

import { Packr } from 'msgpackr';

/** Where an entry sits in the log, and the leader's time stamped into it. */
export interface ApplyContext {
  readonly index: number;
  readonly term: number;
  /** Milliseconds since the epoch, from the proposing leader's clock (not the local one). */
  readonly timeMs: number;
}

/**
 * A deterministic state machine driven by committed log entries.
 *
 * - `apply` is called once per committed command, in log order. It must depend only on the
 *   current state, `cmd` and `ctx`, and must not throw for any command its decoder accepted
 *   (a refused operation is a result value, so every replica refuses it the same way).
 * - `snapshot` returns the whole state as bytes; `restore` replaces the whole state with a
 *   snapshot's, validating it (bytes from disk or a peer are never trusted). After
 *   `restore(snapshot())` every answer and every future result is the same as before.
 */
export interface StateMachine<Cmd, Res> {
  apply(cmd: Cmd, ctx: ApplyContext): Res;
  snapshot(): Uint8Array;
  restore(data: Uint8Array): void;
}

/** Stable codes of errors raised while decoding commands and snapshots. */
export type CommandErrorCode =
  'BAD_COMMAND' | 'COMMAND_TOO_LARGE' | 'BAD_SNAPSHOT' | 'SESSION_STALE_SEQUENCE';

/** Bad input to a state machine: a typed error with a stable `code`. */
export class CommandError<Code extends string = CommandErrorCode> extends Error {
  override readonly name: string = 'CommandError';
  constructor(
    readonly code: Code,
    message: string,
  ) {
    super(message);
  }
}

/**
 * The replicated command. `clientId` '' means "no session": the command is applied every time
 * it appears in the log (seq must then be 0). Otherwise `seq` >= 1 numbers the client's writes.
 */
export interface CommandEnvelope<Cmd> {
  readonly clientId: string;
  readonly seq: number;
  /** Stamped by the leader when it proposes the entry. */
  readonly timeMs: number;
  readonly body: Cmd;
}

/** Turns a decoded, untrusted body into a command, or throws a CommandError (of any code). */
export type BodyDecoder<Cmd> = (raw: unknown) => Cmd;

export interface EnvelopeLimits {
  /** The largest encoded command accepted. Default 2 MiB (a 1 MiB value plus room). */
  readonly maxCommandBytes: number;
  /** The longest client id, in UTF-16 code units. Default 128. */
  readonly maxClientIdChars: number;
}

export const defaultEnvelopeLimits: EnvelopeLimits = {
  maxCommandBytes: 2 * 1024 * 1024,
  maxClientIdChars: 128,
};

/** One codec for every replicated structure: maps as plain objects, no records, no extensions. */
export const packr = new Packr({ useRecords: false, moreTypes: false, bundleStrings: false });

// Short field names: the envelope is paid for in every log entry on every replica.
const ENVELOPE_FIELDS = ['c', 's', 't', 'b'] as const;

/** Encodes a command once, for the log. The body must be plain data (objects, arrays, bytes). */
export function encodeCommand<Cmd>(env: CommandEnvelope<Cmd>): Uint8Array {
  checkSession(env.clientId, env.seq, defaultEnvelopeLimits);
  checkTime(env.timeMs);
  return packr.pack({ c: env.clientId, s: env.seq, t: env.timeMs, b: env.body });
}

/**
 * Decodes and validates a log entry's command. Throws CommandError BAD_COMMAND (or
 * COMMAND_TOO_LARGE, or whatever typed error `decodeBody` raises) for anything malformed:
 * wrong types, missing or unknown fields, trailing bytes, oversized input.
 */
export function decodeCommand<Cmd>(
  data: Uint8Array,
  decodeBody: BodyDecoder<Cmd>,
  limits: EnvelopeLimits = defaultEnvelopeLimits,
): CommandEnvelope<Cmd> {
  if (data.length > limits.maxCommandBytes) {
    throw new CommandError(
      'COMMAND_TOO_LARGE',
      `Command is ${data.length} bytes; the limit is ${limits.maxCommandBytes}`,
    );
  }
  const e = expectFields(unpackUntrusted(data, 'BAD_COMMAND'), ENVELOPE_FIELDS, 'command');
  const clientId = e['c'];
  const seq = e['s'];
  const timeMs = e['t'];
  if (typeof clientId !== 'string') throw bad('command.c (client id)', 'a string', clientId);
  if (typeof seq !== 'number') throw bad('command.s (seq)', 'a number', seq);
  if (typeof timeMs !== 'number') throw bad('command.t (time)', 'a number', timeMs);
  checkSession(clientId, seq, limits);
  checkTime(timeMs);
  return { clientId, seq, timeMs, body: decodeBody(e['b']) };
}

function checkSession(clientId: string, seq: number, limits: EnvelopeLimits): void {
  if (clientId.length > limits.maxClientIdChars) {
    throw new CommandError(
      'BAD_COMMAND',
      `Client id has ${clientId.length} characters; the limit is ${limits.maxClientIdChars}`,
    );
  }
  const min = clientId === '' ? 0 : 1;
  const max = clientId === '' ? 0 : Number.MAX_SAFE_INTEGER;
  if (!Number.isSafeInteger(seq) || seq < min || seq > max) {
    const want = clientId === '' ? '0 without a client id' : 'an integer >= 1';
    throw new CommandError('BAD_COMMAND', `Sequence number must be ${want}; saw ${String(seq)}`);
  }
}

function checkTime(timeMs: number): void {
  if (!Number.isSafeInteger(timeMs) || timeMs < 0) {
    throw new CommandError(
      'BAD_COMMAND',
      `Command time must be a non-negative integer of ms; saw ${String(timeMs)}`,
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Helpers for strict decoders (shared with the state machines' own decoders).

/** Unpacks bytes nobody vouches for: any failure of the decoder becomes a typed error. */
export function unpackUntrusted(data: Uint8Array, code: 'BAD_COMMAND' | 'BAD_SNAPSHOT'): unknown {
  try {
    return packr.unpack(data) as unknown;
  } catch (err) {
    // Truncated input, trailing bytes, unknown extensions, or nesting deep enough to overflow.
    const why = err instanceof Error ? err.message : String(err);
    throw new CommandError(code, `Cannot decode ${data.length} bytes of msgpack: ${why}`);
  }
}

/** Describes a decoded value for an error message without dumping large inputs. */
export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (v instanceof Uint8Array) return `${v.length} bytes`;
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (typeof v === 'string') return v.length > 40 ? `a string of ${v.length}` : JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') {
    return `${typeof v} ${String(v)}`;
  }
  return v === undefined ? 'nothing' : `a value of type ${typeof v}`;
}

export function bad(
  field: string,
  want: string,
  saw: unknown,
  code: 'BAD_COMMAND' | 'BAD_SNAPSHOT' = 'BAD_COMMAND',
): CommandError {
  return new CommandError(code, `${field} must be ${want}; saw ${describe(saw)}`);
}

/** Checks that `v` is a plain object with exactly `fields` (all present, nothing else). */
export function expectFields(
  v: unknown,
  fields: readonly string[],
  what: string,
  code: 'BAD_COMMAND' | 'BAD_SNAPSHOT' = 'BAD_COMMAND',
): Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v) || v instanceof Uint8Array) {
    throw bad(what, 'a map', v, code);
  }
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o);
  for (const k of keys) {
    if (!fields.includes(k)) {
      throw new CommandError(code, `${what} has an unknown field ${JSON.stringify(k)}`);
    }
  }
  for (const f of fields) {
    if (!Object.hasOwn(o, f)) throw new CommandError(code, `${what} lacks the field "${f}"`);
  }
  return o;
}

// ---------------------------------------------------------------------------------------------
// Exactly-once client sessions (Raft thesis §6.3).
//
// The thesis keeps, per client, the last sequence number applied and its response. A client
// of ours may have several writes in flight, so a session keeps the results of its most
// recent `resultsPerSession` writes (with 1 this is exactly the thesis's rule). Invariant:
// every sequence number applied for a client is either in `results` or <= `floor`; so a
// number above the floor and not in `results` has never been applied and is safe to apply,
// and one at or below the floor that is not cached can only be refused (the table cannot
// tell whether it applied): SESSION_STALE_SEQUENCE.
//
// Time is the largest leader timestamp applied so far (leaders' clocks may disagree, so the
// session clock never runs backwards). Because every touch moves a session to the end of the
// Map, Map order is both least-recently-used order and last-seen order: expiry and eviction
// pop from the front, O(1) per session removed.

export interface SessionLimits {
  /** A session unseen for longer than this (by log time) is forgotten. Default 10 minutes. */
  readonly ttlMs: number;
  /** Most sessions kept; past it the least recently used is forgotten. Default 10,000. */
  readonly maxSessions: number;
  /** Results kept per client: the most writes it may have in flight. Default 32. */
  readonly resultsPerSession: number;
}

export const defaultSessionLimits: SessionLimits = {
  ttlMs: 10 * 60_000,
  maxSessions: 10_000,
  resultsPerSession: 32,
};

interface Session<Res> {
  lastSeenMs: number;
  /** Invariant: every applied seq of this client is a key of `results` or <= floor. */
  floor: number;
  readonly results: Map<number, Res>;
}

export type SessionCheck<Res> =
  | { readonly kind: 'new' }
  | { readonly kind: 'duplicate'; readonly result: Res }
  | { readonly kind: 'stale'; readonly floor: number };

export class SessionTable<Res> {
  /** Least recently used first (= oldest lastSeenMs first; see above). */
  private sessions = new Map<string, Session<Res>>();
  private clockMs = 0;

  constructor(readonly limits: SessionLimits = defaultSessionLimits) {
    for (const [name, v] of Object.entries(limits)) {
      if (!Number.isSafeInteger(v) || (v as number) < 1) {
        throw new RangeError(`Session limit ${name} must be a positive integer; saw ${String(v)}`);
      }
    }
  }

  /** The session clock: the largest entry timestamp applied. */
  nowMs(): number {
    return this.clockMs;
  }

  size(): number {
    return this.sessions.size;
  }

  /** Moves the clock to an entry's time and forgets sessions idle for longer than the TTL. */
  advance(timeMs: number): void {
    if (timeMs > this.clockMs) this.clockMs = timeMs;
    for (const [id, s] of this.sessions) {
      if (this.clockMs - s.lastSeenMs <= this.limits.ttlMs) break;
      this.sessions.delete(id);
    }
  }

  /** What to do with (clientId, seq); touches the session so an active client stays. */
  check(clientId: string, seq: number): SessionCheck<Res> {
    const s = this.sessions.get(clientId);
    if (s === undefined) return { kind: 'new' };
    this.touch(clientId, s);
    if (s.results.has(seq)) return { kind: 'duplicate', result: s.results.get(seq) as Res };
    if (seq <= s.floor) return { kind: 'stale', floor: s.floor };
    return { kind: 'new' };
  }

  /** Remembers the result of an applied (clientId, seq). */
  record(clientId: string, seq: number, result: Res): void {
    let s = this.sessions.get(clientId);
    if (s === undefined) {
      s = { lastSeenMs: this.clockMs, floor: 0, results: new Map() };
      this.sessions.set(clientId, s);
    } else {
      this.touch(clientId, s);
    }
    s.results.set(seq, result);
    if (s.results.size > this.limits.resultsPerSession) {
      // Drop the smallest seq: with reordered retries the oldest-applied may not be the lowest.
      let min = Number.MAX_SAFE_INTEGER;
      for (const k of s.results.keys()) if (k < min) min = k;
      s.results.delete(min);
      if (min > s.floor) s.floor = min;
    }
    while (this.sessions.size > this.limits.maxSessions) {
      const oldest = this.sessions.keys().next();
      if (oldest.done === true) break;
      this.sessions.delete(oldest.value);
    }
  }

  private touch(clientId: string, s: Session<Res>): void {
    s.lastSeenMs = this.clockMs;
    this.sessions.delete(clientId);
    this.sessions.set(clientId, s);
  }

  /** Plain data for a snapshot, in LRU order. */
  save(): unknown {
    const sessions: unknown[] = [];
    for (const [id, s] of this.sessions) {
      sessions.push([id, s.lastSeenMs, s.floor, [...s.results]]);
    }
    return { clockMs: this.clockMs, sessions };
  }

  /** Replaces the table with saved data, validating all of it first (throws BAD_SNAPSHOT). */
  load(raw: unknown, decodeResult: (raw: unknown) => Res): void {
    const o = expectFields(raw, ['clockMs', 'sessions'], 'sessions', 'BAD_SNAPSHOT');
    const clockMs = snapInt(o['clockMs'], 'sessions.clockMs');
    const list = o['sessions'];
    if (!Array.isArray(list) || list.length > this.limits.maxSessions) {
      throw bad(
        'sessions.sessions',
        `an array of at most ${this.limits.maxSessions}`,
        list,
        'BAD_SNAPSHOT',
      );
    }
    const next = new Map<string, Session<Res>>();
    for (const item of list) {
      const [id, s] = this.loadSession(item, clockMs, decodeResult);
      if (next.has(id)) throw new CommandError('BAD_SNAPSHOT', `Session ${id} appears twice`);
      next.set(id, s);
    }
    this.sessions = next;
    this.clockMs = clockMs;
  }

  private loadSession(
    item: unknown,
    clockMs: number,
    decodeResult: (raw: unknown) => Res,
  ): [string, Session<Res>] {
    if (!Array.isArray(item) || item.length !== 4) {
      throw bad('a session', 'an array of 4', item, 'BAD_SNAPSHOT');
    }
    const [id, lastSeenMs, floor, results] = item as unknown[];
    if (typeof id !== 'string' || id === '')
      throw bad('a session id', 'a non-empty string', id, 'BAD_SNAPSHOT');
    const seen = snapInt(lastSeenMs, `session ${id} lastSeenMs`);
    if (seen > clockMs)
      throw bad(`session ${id} lastSeenMs`, `<= the clock ${clockMs}`, seen, 'BAD_SNAPSHOT');
    const s: Session<Res> = {
      lastSeenMs: seen,
      floor: snapInt(floor, `session ${id} floor`),
      results: new Map(),
    };
    if (!Array.isArray(results) || results.length > this.limits.resultsPerSession) {
      throw bad(
        `session ${id} results`,
        `an array of at most ${this.limits.resultsPerSession}`,
        results,
        'BAD_SNAPSHOT',
      );
    }
    for (const r of results as unknown[]) {
      if (!Array.isArray(r) || r.length !== 2)
        throw bad(`session ${id} result`, 'a pair', r, 'BAD_SNAPSHOT');
      const seq = snapInt(r[0], `session ${id} result seq`);
      if (seq <= s.floor || s.results.has(seq)) {
        throw bad(
          `session ${id} result seq`,
          `unique and above the floor ${s.floor}`,
          seq,
          'BAD_SNAPSHOT',
        );
      }
      s.results.set(seq, decodeSnapshotResult(r[1], decodeResult, `session ${id} result ${seq}`));
    }
    return [id, s];
  }
}

function decodeSnapshotResult<Res>(raw: unknown, decode: (raw: unknown) => Res, what: string): Res {
  try {
    return decode(raw);
  } catch (err) {
    // Whatever the result decoder calls it, a bad result inside a snapshot is a bad snapshot.
    if (!(err instanceof CommandError)) throw err;
    throw new CommandError('BAD_SNAPSHOT', `${what}: ${(err as CommandError<string>).message}`);
  }
}

function snapInt(v: unknown, field: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw bad(field, 'a non-negative integer', v, 'BAD_SNAPSHOT');
  }
  return v;
}

/** What a session-wrapped apply hands back to the proposer. */
export type SessionResult<Res> =
  | { readonly ok: true; readonly result: Res; readonly duplicate: boolean }
  | { readonly ok: false; readonly code: string; readonly message: string };

export interface ExactlyOnceOptions<Cmd, Res> {
  /** Strict decoder of a command body from untrusted decoded msgpack. */
  readonly decodeBody: BodyDecoder<Cmd>;
  /** Strict decoder of a cached result from a snapshot. */
  readonly decodeResult: (raw: unknown) => Res;
  readonly sessionLimits?: SessionLimits;
  readonly envelopeLimits?: EnvelopeLimits;
}

/**
 * Wraps a state machine so that each (clientId, seq) applies at most once (thesis §6.3):
 * a retry of a cached write returns the first result, a write older than the client's window
 * is refused with SESSION_STALE_SEQUENCE, and a command with clientId '' is always applied.
 * The session table is part of the snapshot.
 */
export class ExactlyOnce<
  Cmd,
  Res,
  Inner extends StateMachine<Cmd, Res> = StateMachine<Cmd, Res>,
> implements StateMachine<CommandEnvelope<Cmd>, SessionResult<Res>> {
  private table: SessionTable<Res>;

  constructor(
    readonly inner: Inner,
    private readonly opts: ExactlyOnceOptions<Cmd, Res>,
  ) {
    this.table = new SessionTable(opts.sessionLimits ?? defaultSessionLimits);
  }

  /** The live session table (for inspection and metrics; mutate only through apply). */
  get sessions(): SessionTable<Res> {
    return this.table;
  }

  /** Applies a command already decoded; the envelope's leader time is the only clock used. */
  apply(env: CommandEnvelope<Cmd>, ctx: ApplyContext): SessionResult<Res> {
    this.table.advance(env.timeMs);
    if (env.clientId !== '') {
      const c = this.table.check(env.clientId, env.seq);
      if (c.kind === 'duplicate') return { ok: true, result: c.result, duplicate: true };
      if (c.kind === 'stale') {
        return {
          ok: false,
          code: 'SESSION_STALE_SEQUENCE',
          message: `Client ${env.clientId} sequence ${env.seq} is at or below ${c.floor}, whose results are no longer kept; it may or may not have applied`,
        };
      }
    }
    const result = this.inner.apply(env.body, {
      index: ctx.index,
      term: ctx.term,
      timeMs: env.timeMs,
    });
    if (env.clientId !== '') this.table.record(env.clientId, env.seq, result);
    return { ok: true, result, duplicate: false };
  }

  /**
   * Decodes a log entry's bytes and applies them. Bytes that do not decode change nothing and
   * give the same typed refusal on every replica.
   */
  applyEntry(
    data: Uint8Array,
    at: { readonly index: number; readonly term: number },
  ): SessionResult<Res> {
    let env: CommandEnvelope<Cmd>;
    try {
      env = decodeCommand(data, this.opts.decodeBody, this.opts.envelopeLimits);
    } catch (err) {
      if (!(err instanceof CommandError)) throw err;
      const typed = err as CommandError<string>;
      return { ok: false, code: typed.code, message: `Entry ${at.index}: ${typed.message}` };
    }
    return this.apply(env, { index: at.index, term: at.term, timeMs: env.timeMs });
  }

  snapshot(): Uint8Array {
    return packr.pack({ v: 1, sessions: this.table.save(), sm: this.inner.snapshot() });
  }

  restore(data: Uint8Array): void {
    const o = expectFields(
      unpackUntrusted(data, 'BAD_SNAPSHOT'),
      ['v', 'sessions', 'sm'],
      'snapshot',
      'BAD_SNAPSHOT',
    );
    if (o['v'] !== 1) throw bad('snapshot.v', '1', o['v'], 'BAD_SNAPSHOT');
    const sm = o['sm'];
    if (!(sm instanceof Uint8Array)) throw bad('snapshot.sm', 'bytes', sm, 'BAD_SNAPSHOT');
    // Validate the sessions into a scratch table first so a bad snapshot changes nothing.
    const table = new SessionTable<Res>(this.table.limits);
    table.load(o['sessions'], this.opts.decodeResult);
    this.inner.restore(sm);
    this.table = table;
  }
}
