// The key-value store as the runtime drives it: every write is one log entry holding a
// command envelope (client session, the leader's timestamp, the transaction), encoded once
// with msgpack. Applying decodes and validates the entry (never trusting stored bytes),
// checks the session for duplicates, and runs the transaction on the store.

import { Packr } from 'msgpackr';
import { ApiError } from '../api/errors.js';
import {
  MAX_CLIENT_ID_CHARS,
  type BackendCompare,
  type BackendOp,
  type BackendOpResult,
  type Header,
  type RangeSpec,
  type Session,
} from '../api/routes.js';
import { KvStore, type Compare, type Op, type TxnResult } from '../kv/kv-store.js';
import type { Entry } from '../raft/index.js';
import type { ApplyTarget } from './contracts.js';
import { SessionTable, defaultSessionLimits, type SessionLimits } from './sessions.js';

/** The replicated command: `c` client id ('' for none), `s` seq, `t` leader time, `x` the txn. */
interface Envelope {
  readonly c: string;
  readonly s: number;
  readonly t: number;
  readonly x: {
    readonly compare: readonly Compare[];
    readonly success: readonly Op[];
    readonly failure: readonly Op[];
  };
}

/** The result an entry's apply hands back to the proposer (and caches in its session). */
export type ApplyResult =
  | { readonly ok: true; readonly txn: TxnResult }
  | {
      readonly ok: false;
      readonly code: 'SESSION_STALE_SEQUENCE' | 'BAD_COMMAND';
      readonly message: string;
    };

const packr = new Packr({ useRecords: false, moreTypes: false });

/** Bytes msgpack spends on a `bin` field of `n` bytes: bin8, bin16 or bin32 header and data. */
function binBytes(n: number): number {
  return n + (n < 0x100 ? 2 : n < 0x10000 ? 3 : 5);
}

/**
 * The most bytes one put or delete can take in the log: a key and a value (or a range end) at
 * their limits, inside an envelope whose other fields are at their worst (the longest client
 * id in 3-byte characters, the largest sequence number, a 9-byte time). This is the core's
 * proposal limit, so a write the API accepted is never refused by the core; a transaction
 * whose operations together encode to more is refused by the API (`TXN_TOO_LARGE`).
 */
export function maxWriteEnvelopeBytes(limits: {
  readonly maxKeyBytes: number;
  readonly maxValueBytes: number;
}): number {
  const none = new Uint8Array(0);
  const envelope = (op: Op): Envelope => ({
    c: '\uffff'.repeat(MAX_CLIENT_ID_CHARS),
    s: Number.MAX_SAFE_INTEGER,
    t: 2 ** 53,
    x: { compare: [], success: [op], failure: [] },
  });
  const put = envelope({ kind: 'put', key: none, value: none, prevKv: true });
  const del = envelope({ kind: 'delete', range: { key: none, rangeEnd: none }, prevKv: true });
  const key = binBytes(limits.maxKeyBytes) - binBytes(0);
  const value = binBytes(limits.maxValueBytes) - binBytes(0);
  return Math.max(packr.pack(put).length + key + value, packr.pack(del).length + 2 * key);
}

export class KvStateMachine implements ApplyTarget {
  private readonly store = new KvStore();
  private readonly sessions: SessionTable;
  /** The most bytes `encode` hands out: maxWriteEnvelopeBytes of the limits. */
  readonly maxProposalBytes: number;

  /** Yields to the event loop between snapshot slices. */
  private readonly nextTurn: () => Promise<void>;

  constructor(
    private readonly limits: { readonly maxKeyBytes: number; readonly maxValueBytes: number },
    options: {
      readonly sessionLimits?: SessionLimits;
      /**
       * How a snapshot's encoding yields between slices. Default: the next turn of the event
       * loop (setImmediate); the simulator passes its own, which stays inside virtual time.
       */
      readonly nextTurn?: () => Promise<void>;
    } = {},
  ) {
    this.sessions = new SessionTable(options.sessionLimits ?? defaultSessionLimits);
    this.maxProposalBytes = maxWriteEnvelopeBytes(limits);
    this.nextTurn = options.nextTurn ?? eventLoopTurn;
  }

  revision(): number {
    return this.store.revision();
  }

  /**
   * Encodes a write for the log; `timeMs` is the proposing leader's clock. Throws
   * `TXN_TOO_LARGE` when it would exceed maxProposalBytes (only a transaction can).
   */
  encode(
    txn: {
      readonly compare: readonly BackendCompare[];
      readonly success: readonly BackendOp[];
      readonly failure: readonly BackendOp[];
    },
    session: Session | null,
    timeMs: number,
  ): Uint8Array {
    const env: Envelope = { c: session?.clientId ?? '', s: session?.seq ?? 0, t: timeMs, x: txn };
    const data = packr.pack(env);
    if (data.length > this.maxProposalBytes) {
      throw new ApiError(
        'TXN_TOO_LARGE',
        `The transaction takes ${data.length} bytes in the log; one write holds at most ` +
          `${this.maxProposalBytes} (a key and a value at their limits): split it`,
      );
    }
    return data;
  }

  apply(entry: Entry): ApplyResult {
    let env: Envelope;
    try {
      env = decodeEnvelope(entry.data, this.limits);
    } catch (err) {
      // Deterministic on every replica: the same bytes fail the same way, and nothing changes.
      return {
        ok: false,
        code: 'BAD_COMMAND',
        message: `Entry ${entry.index} holds no valid command: ${(err as Error).message}`,
      };
    }
    this.sessions.tick(env.t);
    if (env.c !== '') {
      const check = this.sessions.check(env.c, env.s);
      if (check.kind === 'duplicate') return check.result as ApplyResult;
      if (check.kind === 'stale') {
        return {
          ok: false,
          code: 'SESSION_STALE_SEQUENCE',
          message:
            `Client ${env.c} sequence ${env.s} is below its session window (sequence numbers ` +
            `up to ${check.floor} are refused): whether a write with it applied can no longer be told`,
        };
      }
    }
    const result: ApplyResult = { ok: true, txn: this.store.apply(env.x) };
    if (env.c !== '') this.sessions.record(env.c, env.s, result);
    return result;
  }

  /** Maps an applied result to the API's answer, or throws the API error it carries. */
  toWriteResult(
    result: unknown,
    header: () => Header,
  ): { header: Header; succeeded: boolean; results: readonly BackendOpResult[] } {
    const r = result as ApplyResult;
    if (!r.ok) {
      // A stale sequence number applied nothing now, but an earlier attempt with it may have:
      // the window no longer remembers, so the write's fate is unknown (indefinite).
      if (r.code === 'SESSION_STALE_SEQUENCE') throw new ApiError(r.code, r.message, true);
      throw new ApiError('BAD_REQUEST', r.message);
    }
    const h = header();
    return {
      header: { ...h, revision: r.txn.revision },
      succeeded: r.txn.succeeded,
      results: r.txn.results,
    };
  }

  range(op: {
    readonly range: RangeSpec;
    readonly limit: number;
    readonly countOnly: boolean;
  }): Extract<BackendOpResult, { kind: 'range' }> {
    return this.store.range(op.range, op.limit, op.countOnly);
  }

  /**
   * The state as of this call, serialized over several turns of the event loop. Records are
   * immutable (a put makes a new one), so the arrays captured synchronously here are a
   * consistent point-in-time view however many entries are applied while the slices encode.
   * Encoding 100k keys in one go took 0.5-0.8 s, far past the election timeout: a leader
   * that blocks that long loses its followers. Slices keep each turn to a few milliseconds.
   */
  async snapshot(): Promise<Uint8Array> {
    const kv = this.store.snapshotState();
    const sessions = this.sessions.save();
    const kvChunks = await packSlices(kv.kvs, this.nextTurn);
    const sessionChunks = await packSlices(
      sessions.sessions,
      this.nextTurn,
      (x) => 1 + x[3].length,
    );
    const header: SnapshotHeader = {
      revision: kv.revision,
      clockMs: sessions.clockMs,
      kvChunks: kvChunks.length,
      sessionChunks: sessionChunks.length,
    };
    return joinFramed([packr.pack(header), ...kvChunks, ...sessionChunks], this.nextTurn);
  }

  restore(data: Uint8Array): void {
    if (!hasMagic(data)) {
      this.restoreV1(data);
      return;
    }
    const frames = splitFramed(data);
    const header = packr.unpack(frames[0] as Uint8Array) as SnapshotHeader;
    const counts = [header.kvChunks, header.sessionChunks];
    if (
      !counts.every(Number.isSafeInteger) ||
      1 + header.kvChunks + header.sessionChunks !== frames.length
    )
      throw new Error('Key-value snapshot: chunk counts do not match its frames');
    const unpackAll = (from: number, n: number): unknown[] =>
      frames.slice(from, from + n).flatMap((f) => packr.unpack(f) as unknown[]);
    const kvs = unpackAll(1, header.kvChunks) as KeyValue[];
    const sessions = unpackAll(
      1 + header.kvChunks,
      header.sessionChunks,
    ) as SavedSessions['sessions'];
    this.store.restoreState({ revision: header.revision, kvs: kvs.map(normalizeKv) });
    this.sessions.load({ clockMs: header.clockMs, sessions });
  }

  /** Format 1 (earlier releases): one msgpack map, encoded in one go. Still read. */
  private restoreV1(data: Uint8Array): void {
    const s = packr.unpack(data) as { v: unknown; kv: StoreState; sessions: SavedSessions };
    if (s.v !== 1) throw new Error(`Unsupported key-value snapshot version ${String(s.v)}`);
    this.store.restoreState({ revision: s.kv.revision, kvs: s.kv.kvs.map(normalizeKv) });
    this.sessions.load(s.sessions);
  }
}

type StoreState = ReturnType<KvStore['snapshotState']>;
type KeyValue = StoreState['kvs'][number];
type SavedSessions = ReturnType<SessionTable['save']>;

// Format 2: the magic "FKV2", then frames, each a u32 (little-endian) length and that many
// bytes of msgpack: a header, then the key-value records and the sessions in slices (arrays of
// at most SLICE_RECORDS each). Format 1 began with a msgpack map, whose first byte can never
// be 'F', so the magic tells the two apart.
const SNAPSHOT_MAGIC = Buffer.from('FKV2', 'latin1');

interface SnapshotHeader {
  readonly revision: number;
  readonly clockMs: number;
  readonly kvChunks: number;
  readonly sessionChunks: number;
}

/** Records per slice: about 256 KB of 256-byte values, a millisecond or two to encode. */
const SLICE_RECORDS = 1_024;
/** Bytes copied into the snapshot buffer between two turns of the event loop. */
const COPY_BYTES_PER_TURN = 4 << 20;

/**
 * Packs records in slices of about SLICE_RECORDS units of work, yielding between slices. A
 * record's weight is its share of the work: 1 for a key, 1 + cached results for a session.
 */
async function packSlices<T>(
  records: readonly T[],
  nextTurn: () => Promise<void>,
  weight: (record: T) => number = () => 1,
): Promise<Uint8Array[]> {
  const chunks: Uint8Array[] = [];
  let from = 0;
  while (from < records.length) {
    if (from > 0) await nextTurn();
    let to = from;
    let work = 0;
    while (to < records.length && (to === from || work < SLICE_RECORDS)) {
      work += weight(records[to] as T);
      to++;
    }
    chunks.push(packr.pack(records.slice(from, to)));
    from = to;
  }
  return chunks;
}

/**
 * Concatenates the frames, copying a few MB per turn: touching tens of MB of fresh memory at
 * once costs page faults enough to block for hundreds of milliseconds on a busy machine.
 */
async function joinFramed(
  frames: readonly Uint8Array[],
  nextTurn: () => Promise<void>,
): Promise<Uint8Array> {
  let total = SNAPSHOT_MAGIC.length;
  for (const f of frames) total += 4 + f.length;
  const out = Buffer.allocUnsafe(total);
  let at = SNAPSHOT_MAGIC.copy(out, 0);
  let sinceTurn = 0;
  for (const f of frames) {
    out.writeUInt32LE(f.length, at);
    out.set(f, at + 4);
    at += 4 + f.length;
    sinceTurn += f.length;
    if (sinceTurn >= COPY_BYTES_PER_TURN) {
      sinceTurn = 0;
      await nextTurn();
    }
  }
  return out;
}

function hasMagic(data: Uint8Array): boolean {
  return data.length >= SNAPSHOT_MAGIC.length && SNAPSHOT_MAGIC.equals(data.subarray(0, 4));
}

function splitFramed(data: Uint8Array): Uint8Array[] {
  const view = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const frames: Uint8Array[] = [];
  let at = SNAPSHOT_MAGIC.length;
  while (at < view.length) {
    if (at + 4 > view.length) throw new Error(`Key-value snapshot: truncated frame at ${at}`);
    const n = view.readUInt32LE(at);
    if (at + 4 + n > view.length) throw new Error(`Key-value snapshot: truncated frame at ${at}`);
    frames.push(view.subarray(at + 4, at + 4 + n));
    at += 4 + n;
  }
  if (frames.length === 0) throw new Error('Key-value snapshot: no header frame');
  return frames;
}

/** Lets timers and I/O (heartbeats, votes, client requests) run between slices. */
function eventLoopTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function normalizeKv(kv: {
  key: Uint8Array;
  value: Uint8Array;
  createRevision: number;
  modRevision: number;
  version: number;
}) {
  return { ...kv, key: new Uint8Array(kv.key), value: new Uint8Array(kv.value) };
}

// ---------------------------------------------------------------------------------------------
// Strict decoding of stored commands.

function fail(msg: string): never {
  throw new Error(msg);
}

function isBytes(v: unknown): v is Uint8Array {
  return v instanceof Uint8Array;
}

function decodeEnvelope(
  data: Uint8Array,
  limits: { maxKeyBytes: number; maxValueBytes: number },
): Envelope {
  const raw = packr.unpack(data) as unknown;
  if (raw === null || typeof raw !== 'object') fail('not a map');
  const e = raw as Record<string, unknown>;
  if (typeof e['c'] !== 'string' || typeof e['s'] !== 'number' || typeof e['t'] !== 'number')
    fail('bad envelope fields');
  const x = e['x'] as Record<string, unknown> | undefined;
  if (x === undefined || x === null || typeof x !== 'object') fail('missing transaction');
  const compare = arr(x['compare'], 'compare').map((c) => decodeCompare(c, limits));
  const success = arr(x['success'], 'success').map((o) => decodeOp(o, limits));
  const failure = arr(x['failure'], 'failure').map((o) => decodeOp(o, limits));
  return { c: e['c'], s: e['s'], t: e['t'], x: { compare, success, failure } };
}

function arr(v: unknown, name: string): unknown[] {
  if (!Array.isArray(v) || v.length > 128) fail(`${name} must be an array of at most 128`);
  return v;
}

function key(v: unknown, limits: { maxKeyBytes: number }): Uint8Array {
  if (!isBytes(v) || v.length === 0 || v.length > limits.maxKeyBytes) fail('bad key');
  return new Uint8Array(v);
}

function range(
  v: unknown,
  limits: { maxKeyBytes: number },
): { key: Uint8Array; rangeEnd: Uint8Array | null } {
  const r = v as Record<string, unknown>;
  const end = r['rangeEnd'];
  return { key: key(r['key'], limits), rangeEnd: end === null ? null : key(end, limits) };
}

function decodeOp(v: unknown, limits: { maxKeyBytes: number; maxValueBytes: number }): Op {
  const o = v as Record<string, unknown>;
  switch (o['kind']) {
    case 'put': {
      const value = o['value'];
      if (!isBytes(value) || value.length > limits.maxValueBytes) fail('bad value');
      return {
        kind: 'put',
        key: key(o['key'], limits),
        value: new Uint8Array(value),
        prevKv: o['prevKv'] === true,
      };
    }
    case 'delete':
      return { kind: 'delete', range: range(o['range'], limits), prevKv: o['prevKv'] === true };
    case 'range': {
      const limit = o['limit'];
      if (typeof limit !== 'number' || !Number.isSafeInteger(limit) || limit < 0) fail('bad limit');
      return {
        kind: 'range',
        range: range(o['range'], limits),
        limit,
        countOnly: o['countOnly'] === true,
      };
    }
    default:
      return fail(`unknown op kind ${String(o['kind'])}`);
  }
}

function decodeCompare(
  v: unknown,
  limits: { maxKeyBytes: number; maxValueBytes: number },
): Compare {
  const c = v as Record<string, unknown>;
  const target = c['target'];
  const op = c['op'];
  if (
    target !== 'value' &&
    target !== 'version' &&
    target !== 'createRevision' &&
    target !== 'modRevision'
  )
    fail('bad compare target');
  if (op !== '=' && op !== '!=' && op !== '<' && op !== '>') fail('bad compare op');
  const value = c['value'];
  if (target === 'value' ? !isBytes(value) : typeof value !== 'number') fail('bad compare value');
  return {
    key: key(c['key'], limits),
    target,
    op,
    value: isBytes(value) ? new Uint8Array(value) : (value as number),
  };
}
