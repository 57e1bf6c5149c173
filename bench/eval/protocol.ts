// Request bodies for the two systems, built so both carry the same key and value bytes: keys and
// values travel base64-encoded in JSON for both (etcd's JSON gateway requires base64; Flotilla
// takes it with "encoding":"base64"). Flotilla writers add their exactly-once session fields
// (clientId, a rising seq and the acknowledgement mark ackedBelow, docs/API.md), about 55 bytes
// more per request.

import type { SystemName } from './clusters.js';
import { EvalError } from './errors.js';

export interface HttpOp {
  readonly path: string;
  readonly body: string;
}

export interface Session {
  readonly clientId: string;
  readonly seq: number;
  /**
   * The lowest seq whose answer the client still awaits, as the client library says it with
   * every write: a closed-loop writer has one write in flight, so this is its seq. Without it
   * the node keeps a result for each of the session's last 256 writes (sessionWindow), which
   * no client of ours makes it do. A release before feature level 4 refuses the field
   * (UNKNOWN_FIELD), so these writers drive releases from that level on.
   */
  readonly ackedBelow?: number;
}

/** A closed-loop writer's session at its `n`th write (0-based): one write in flight. */
export function closedLoopSession(clientId: string, n: number): Session {
  return { clientId, seq: n + 1, ackedBelow: n + 1 };
}

export function b64(s: string | Buffer): string {
  return (typeof s === 'string' ? Buffer.from(s, 'utf8') : s).toString('base64');
}

/** A put of pre-encoded base64 key and value. */
export function putOp(
  system: SystemName,
  keyB64: string,
  valueB64: string,
  session?: Session,
): HttpOp {
  if (system === 'etcd')
    return { path: '/v3/kv/put', body: `{"key":"${keyB64}","value":"${valueB64}"}` };
  const mark = session?.ackedBelow === undefined ? '' : `,"ackedBelow":${session.ackedBelow}`;
  const s =
    session === undefined ? '' : `,"clientId":"${session.clientId}","seq":${session.seq}${mark}`;
  return {
    path: '/v1/kv/put',
    body: `{"key":"${keyB64}","value":"${valueB64}","encoding":"base64"${s}}`,
  };
}

/** How a benchmark read is served; `lease` is Flotilla's alone (etcd sets it per server). */
export type BenchConsistency = 'linearizable' | 'serializable' | 'lease';

/** A single-key range (get), linearizable by default. */
export function getOp(
  system: SystemName,
  keyB64: string,
  consistency: BenchConsistency = 'linearizable',
): HttpOp {
  if (consistency === 'lease' && system === 'etcd')
    throw new EvalError('EVAL_BAD_OPTION', 'etcd takes no per-request lease reads');
  const ser =
    consistency === 'serializable'
      ? ',"serializable":true'
      : consistency === 'lease'
        ? ',"consistency":"lease"'
        : '';
  if (system === 'etcd') return { path: '/v3/kv/range', body: `{"key":"${keyB64}"${ser}}` };
  return { path: '/v1/kv/range', body: `{"key":"${keyB64}","encoding":"base64"${ser}}` };
}

/** `sizeBytes` of pseudo-random bytes, base64-encoded (random so no layer compresses it). */
export function randomValueB64(sizeBytes: number, seed: number): string {
  const buf = Buffer.alloc(sizeBytes);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < sizeBytes; i++) {
    // xorshift32: cheap, deterministic filler.
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    buf[i] = x & 0xff;
  }
  return buf.toString('base64');
}
