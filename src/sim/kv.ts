// The simulated state machine: a map of key/value registers with client sessions, so a
// retried proposal that commits twice takes effect once (Raft thesis §6.3). Operations and
// snapshots are JSON so a failing seed's log is readable.

import { SimError } from './errors.js';

/** One client write: client `c` sets key `k` to `v` as its `s`-th operation. */
export interface KvOp {
  readonly c: number;
  readonly s: number;
  readonly k: string;
  readonly v: string;
}

/** Upper bound on an encoded operation or snapshot the simulator accepts. */
const MAX_OP_BYTES = 1024;
const MAX_SNAPSHOT_BYTES = 16 * 1024 * 1024;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encodeOp(op: KvOp): Uint8Array {
  return encoder.encode(JSON.stringify(op));
}

export function decodeOp(data: Uint8Array): KvOp {
  if (data.length > MAX_OP_BYTES) {
    throw new SimError(
      'BAD_OPERATION',
      `Operation of ${data.length} bytes exceeds ${MAX_OP_BYTES}`,
    );
  }
  const text = decoder.decode(data);
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new SimError('BAD_OPERATION', `Operation is not JSON: ${JSON.stringify(text)}`);
  }
  if (!isOp(v)) throw new SimError('BAD_OPERATION', `Not a key/value operation: ${text}`);
  return v;
}

function isOp(v: unknown): v is KvOp {
  if (typeof v !== 'object' || v === null) return false;
  const o = v as Record<string, unknown>;
  return (
    Number.isSafeInteger(o['c']) &&
    Number.isSafeInteger(o['s']) &&
    typeof o['k'] === 'string' &&
    typeof o['v'] === 'string'
  );
}

export class KvStateMachine {
  private readonly values = new Map<string, string>();
  /** Highest operation number applied per client: the session table. */
  private readonly sessions = new Map<number, number>();

  /** Applies `op`; returns false when it is a duplicate of an operation already applied. */
  apply(op: KvOp): boolean {
    if ((this.sessions.get(op.c) ?? 0) >= op.s) return false;
    this.sessions.set(op.c, op.s);
    this.values.set(op.k, op.v);
    return true;
  }

  get(key: string): string | undefined {
    return this.values.get(key);
  }

  /** A canonical image (sorted), so equal states give equal bytes. */
  encode(): Uint8Array {
    const values = [...this.values].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    const sessions = [...this.sessions].sort((a, b) => a[0] - b[0]);
    return encoder.encode(JSON.stringify({ values, sessions }));
  }

  static decode(bytes: Uint8Array): KvStateMachine {
    if (bytes.length > MAX_SNAPSHOT_BYTES) {
      throw new SimError(
        'BAD_SNAPSHOT',
        `Snapshot of ${bytes.length} bytes exceeds ${MAX_SNAPSHOT_BYTES}`,
      );
    }
    const text = decoder.decode(bytes);
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new SimError('BAD_SNAPSHOT', `Snapshot is not JSON: ${text.slice(0, 80)}`);
    }
    const sm = new KvStateMachine();
    const o = (typeof parsed === 'object' && parsed !== null ? parsed : {}) as Record<
      string,
      unknown
    >;
    const values = o['values'];
    const sessions = o['sessions'];
    if (!Array.isArray(values) || !Array.isArray(sessions)) {
      throw new SimError('BAD_SNAPSHOT', `Snapshot lacks values or sessions: ${text.slice(0, 80)}`);
    }
    for (const pair of values as unknown[]) {
      if (!Array.isArray(pair) || typeof pair[0] !== 'string' || typeof pair[1] !== 'string') {
        throw new SimError('BAD_SNAPSHOT', `Bad value pair in snapshot: ${JSON.stringify(pair)}`);
      }
      sm.values.set(pair[0], pair[1]);
    }
    for (const pair of sessions as unknown[]) {
      if (
        !Array.isArray(pair) ||
        !Number.isSafeInteger(pair[0]) ||
        !Number.isSafeInteger(pair[1])
      ) {
        throw new SimError('BAD_SNAPSHOT', `Bad session in snapshot: ${JSON.stringify(pair)}`);
      }
      sm.sessions.set(pair[0] as number, pair[1] as number);
    }
    return sm;
  }
}
