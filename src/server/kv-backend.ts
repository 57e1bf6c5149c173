// The key-value store as the runtime drives it: every write is one log entry holding a
// command envelope (client session, the leader's timestamp, the transaction), encoded once
// with msgpack. Applying decodes and validates the entry (never trusting stored bytes),
// checks the session for duplicates, and runs the transaction on the store.

import { Packr } from 'msgpackr';
import { ApiError } from '../api/errors.js';
import type {
  BackendCompare,
  BackendOp,
  BackendOpResult,
  Header,
  RangeSpec,
  Session,
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

export class KvStateMachine implements ApplyTarget {
  private readonly store = new KvStore();
  private readonly sessions: SessionTable;

  constructor(
    private readonly limits: { readonly maxKeyBytes: number; readonly maxValueBytes: number },
    sessionLimits: SessionLimits = defaultSessionLimits,
  ) {
    this.sessions = new SessionTable(sessionLimits);
  }

  revision(): number {
    return this.store.revision();
  }

  /** Encodes a write for the log; `timeMs` is the proposing leader's clock. */
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
    return packr.pack(env);
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
          message: `Client ${env.c} sequence ${env.s} is older than its session window`,
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
    if (!r.ok) throw new ApiError(r.code === 'BAD_COMMAND' ? 'BAD_REQUEST' : r.code, r.message);
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

  snapshot(): Uint8Array {
    return packr.pack({ v: 1, kv: this.store.snapshotState(), sessions: this.sessions.save() });
  }

  restore(data: Uint8Array): void {
    const s = packr.unpack(data) as {
      v: number;
      kv: ReturnType<KvStore['snapshotState']>;
      sessions: ReturnType<SessionTable['save']>;
    };
    if (s.v !== 1) throw new Error(`Unsupported key-value snapshot version ${String(s.v)}`);
    this.store.restoreState({ revision: s.kv.revision, kvs: s.kv.kvs.map(normalizeKv) });
    this.sessions.load(s.sessions);
  }
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
