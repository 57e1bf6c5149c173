// The binary client protocol's frames (docs/CLIENT-PROTOCOL.md), shared by the node's server
// (wire-server.ts) and the client (src/client/wire.ts). A frame is a 4-byte big-endian length
// and that many bytes of msgpack. Bodies are the HTTP API's JSON objects carried as msgpack
// maps, so that both fronts validate one shape with one code (requests.ts); only the framing
// and the request id are the protocol's own.

import { isUtf8 } from 'node:buffer';
import { Packr, Unpackr } from 'msgpackr';
import { FlotillaError, isErrorCode, type ErrorCode } from '../base/errors.js';
import { MAX_BODY_DEPTH } from '../base/limits.js';
import { defaultLimits } from '../base/limits.js';
import { queuePaths, type QueueOpName } from './queue-paths.js';
import type { Json } from './validate.js';

/** The first field of the handshake: what a client of this protocol says it is. */
export const WIRE_MAGIC = 'flotilla';
/** Protocol versions this build speaks; a client asks for one in its handshake. */
export const WIRE_VERSION_MIN = 1;
export const WIRE_VERSION_MAX = 1;
export const WIRE_LENGTH_BYTES = 4;
/** Request ids are positive safe integers; 0 marks a frame about the whole connection. */
export const CONNECTION_ID = 0;
/** How deep a request body may nest: the HTTP API's bound (limits.ts). */
export const maxBodyDepth = MAX_BODY_DEPTH;

/** The response header a node's HTTP answers carry when it serves this protocol: its port. */
export const clientProtocolHeader = 'x-flotilla-client-protocol-port';

/**
 * The header of the plain-text answer an HTTPS port gives a plain HTTP request: a client that
 * named the port http:// tells it from any other 400 by it.
 */
export const tlsOnlyHeader = 'x-flotilla-tls-only';

/** The job queue's request types: `queue.<name>` for each of its HTTP paths. */
export const queueWireOps = (Object.keys(queuePaths) as QueueOpName[]).map(
  (name) => `queue.${name}` as const,
);
export const wireOps = [
  'put',
  'range',
  'delete',
  'txn',
  'status',
  'watch',
  'cancel',
  ...queueWireOps,
] as const;
export type WireOp = (typeof wireOps)[number] | `queue.${QueueOpName}`;
const knownOps = new Set<string>(wireOps);

// Plain maps, no msgpackr records: each frame decodes on its own, and a record extension from
// the wire is an error rather than a structure the decoder would compile and keep.
const packr = new Packr({ useRecords: false, moreTypes: false, variableMapSize: true });
// Structured clone (extensions 0x69, 0x70) would rebuild plain objects out of an extension's
// bytes, out of firstInvalidString's sight: refused.
const unpackr = new Unpackr({
  useRecords: false,
  mapsAsObjects: true,
  int64AsType: 'number',
  structuredClone: false,
});

export interface Handshake {
  readonly version: number;
  /** The session id writes on this connection use when they carry `seq` without `clientId`. */
  readonly clientId: string | null;
  /**
   * The bearer token the connection's requests are made with (API.md, "Authentication");
   * required by a node with authentication on, ignored by one without.
   */
  readonly token: string | null;
}

export interface HandshakeAnswer {
  readonly version: number;
  readonly nodeId: number;
  /** The leader the node knows (0: none). */
  readonly leader: number;
  /**
   * The feature level of the node's release (src/base/features.ts): request types introduced
   * at a higher level are unknown to it. 0 when the node sent none (a release before the field).
   */
  readonly featureLevel: number;
}

export interface WireRequest {
  readonly id: number;
  readonly op: WireOp;
  readonly body: Json;
  /**
   * Set when the body holds a string whose bytes are not UTF-8: the request is refused alone
   * with this error (INVALID_UTF8), as the HTTP API refuses such a body, not carried out.
   */
  readonly invalid?: FlotillaError;
}

export interface WireErrorJson {
  readonly code: ErrorCode;
  readonly message: string;
  readonly indefinite: boolean;
  readonly leader?: number;
  /** For OVERLOADED: when to come back. */
  readonly retryAfterMs?: number;
  /** For a watch the node ended: the first revision it did not send, to resume from. */
  readonly resumeRevision?: number;
  /** For COMPACTED: the revision the history was compacted to. */
  readonly compactRevision?: number;
}

/** An answer frame's status: the request's result, its error, or one item of its stream. */
export const ANSWER_OK = 0;
export const ANSWER_ERROR = 1;
export const ANSWER_STREAM = 2;

/** One frame: the length prefix and the msgpack of `value`, in one buffer. */
export function encodeFrame(value: unknown): Buffer {
  const payload = packr.pack(value);
  const out = Buffer.allocUnsafe(WIRE_LENGTH_BYTES + payload.length);
  out.writeUInt32BE(payload.length, 0);
  payload.copy(out, WIRE_LENGTH_BYTES);
  return out;
}

export function encodeError(id: number, err: FlotillaError, resumeRevision?: number): Buffer {
  const e: WireErrorJson = {
    code: err.code,
    message: err.message,
    indefinite: err.indefinite,
    ...(err.leader ? { leader: err.leader } : {}),
    ...(err.retryAfterMs ? { retryAfterMs: err.retryAfterMs } : {}),
    ...(err.compactRevision ? { compactRevision: err.compactRevision } : {}),
    ...(resumeRevision === undefined ? {} : { resumeRevision }),
  };
  return encodeFrame([id, ANSWER_ERROR, e]);
}

export function encodeAnswer(id: number, result: unknown): Buffer {
  return encodeFrame([id, ANSWER_OK, result]);
}

/** One item of a request's stream (a watch's line); the stream ends with an answer or error. */
export function encodeStreamItem(id: number, item: unknown): Buffer {
  return encodeFrame([id, ANSWER_STREAM, item]);
}

/**
 * Splits a byte stream into frame payloads. The length is checked against the limit before
 * anything is buffered for the payload, so a hostile length costs nothing.
 */
export class FrameReader {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** Bytes the frame in progress needs in all (its length prefix included) before it is whole. */
  private need = WIRE_LENGTH_BYTES;

  constructor(readonly maxFrameBytes: number) {}

  /** The payloads completed by `chunk`, in order; throws BODY_TOO_LARGE on an oversized length. */
  push(chunk: Buffer): Buffer[] {
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    // A large frame arriving in many reads is joined once, when whole, not once per read.
    if (this.pendingBytes < this.need) return [];
    const buf =
      this.pending.length === 1
        ? (this.pending[0] as Buffer)
        : Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    this.need = WIRE_LENGTH_BYTES;
    const out: Buffer[] = [];
    let at = 0;
    while (buf.length - at >= WIRE_LENGTH_BYTES) {
      const length = this.checkLength(buf.readUInt32BE(at));
      if (buf.length - at - WIRE_LENGTH_BYTES < length) {
        this.need = WIRE_LENGTH_BYTES + length;
        break;
      }
      out.push(buf.subarray(at + WIRE_LENGTH_BYTES, at + WIRE_LENGTH_BYTES + length));
      at += WIRE_LENGTH_BYTES + length;
    }
    if (at < buf.length) {
      const rest = buf.subarray(at);
      this.pending.push(rest);
      this.pendingBytes = rest.length;
    }
    return out;
  }

  private checkLength(length: number): number {
    if (length > this.maxFrameBytes)
      throw new FlotillaError(
        'BODY_TOO_LARGE',
        `Frame of ${length} bytes exceeds the limit of ${this.maxFrameBytes} (maxBodyBytes)`,
      );
    return length;
  }
}

/** Decodes one payload; BAD_FRAME when it is not exactly one msgpack value. */
export function decodePayload(payload: Buffer): unknown {
  try {
    return unpackr.unpack(payload);
  } catch (err) {
    throw new FlotillaError(
      'BAD_FRAME',
      `Frame is not one msgpack value (${payload.length} bytes): ${(err as Error).message}`,
    );
  }
}

/**
 * The client's handshake, checked: magic, a version this node speaks, an optional client id.
 * `payload`, the frame it was decoded from, is looked at again when a string of it may have
 * held bytes that are not UTF-8 (hasReplacement).
 */
export function parseHandshake(v: unknown, payload?: Buffer): Handshake {
  if (v === null || typeof v !== 'object' || Array.isArray(v))
    throw new FlotillaError('BAD_FRAME', 'The first frame must be the handshake map');
  const h = v as Record<string, unknown>;
  if (h['magic'] !== WIRE_MAGIC)
    throw new FlotillaError(
      'BAD_FRAME',
      `Not a Flotilla client protocol handshake: magic ${JSON.stringify(h['magic'] ?? null)}, expected "${WIRE_MAGIC}"`,
    );
  const version = h['version'];
  if (typeof version !== 'number' || !Number.isInteger(version))
    throw new FlotillaError('BAD_FRAME', `Handshake version must be an integer`);
  if (version < WIRE_VERSION_MIN || version > WIRE_VERSION_MAX)
    throw new FlotillaError(
      'UNSUPPORTED_VERSION',
      `Client protocol version ${version} is not spoken here; this node speaks ` +
        `${WIRE_VERSION_MIN} to ${WIRE_VERSION_MAX}`,
    );
  const clientId = h['clientId'];
  if (clientId !== undefined && clientId !== null && typeof clientId !== 'string')
    throw new FlotillaError('BAD_FRAME', 'Handshake clientId must be a string');
  // Checked here, once, rather than failing every write of the connection that takes it.
  const maxIdChars = defaultLimits.maxClientIdChars;
  if (typeof clientId === 'string' && (clientId === '' || clientId.length > maxIdChars))
    throw new FlotillaError(
      'BAD_FRAME',
      `Handshake clientId must have 1 to ${maxIdChars} characters, got ${clientId.length}`,
    );
  const token = h['token'];
  if (token !== undefined && token !== null && typeof token !== 'string')
    throw new FlotillaError('BAD_FRAME', 'Handshake token must be a string');
  // Two client ids whose bytes differ but decode alike would share one session.
  if (
    (hasReplacement(clientId) || hasReplacement(token)) &&
    payload !== undefined &&
    firstInvalidString(payload) >= 0
  )
    throw new FlotillaError(
      'INVALID_UTF8',
      'Handshake clientId or token is not valid UTF-8 (a lone surrogate has no UTF-8 form)',
    );
  return { version, clientId: clientId ?? null, token: token ?? null };
}

/**
 * A request frame `[id, op, body]`, checked: a positive safe integer id, a known op, and a body
 * that is JSON-shaped (maps with string keys, arrays, strings, finite numbers, booleans, null),
 * so that it means the same as the HTTP body and forwards to the leader as JSON unchanged.
 * With `payload`, the frame it was decoded from, a body string whose bytes are not UTF-8 marks
 * the request `invalid`.
 */
export function parseRequest(v: unknown, payload?: Buffer): WireRequest {
  if (!Array.isArray(v) || v.length !== 3)
    throw new FlotillaError('BAD_FRAME', 'A request frame must be the array [id, op, body]');
  const [id, op, body] = v as [unknown, unknown, unknown];
  if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 1)
    throw new FlotillaError(
      'BAD_FRAME',
      `Request id must be a positive integer, got ${String(id).slice(0, 40)}`,
    );
  if (typeof op !== 'string' || !knownOps.has(op))
    throw new FlotillaError(
      'BAD_FRAME',
      `Request ${id} has unknown type ${JSON.stringify(op ?? null)?.slice(0, 40)} ` +
        `(known: ${wireOps.join(', ')})`,
    );
  let replaced: boolean;
  try {
    replaced = checkJsonShaped(body, `request ${id} body`, 0);
  } catch (err) {
    // The framing is intact, so this request alone is refused (as HTTP refuses the body 400):
    // closing the connection failed every other caller's requests in flight on it.
    if (!(err instanceof FlotillaError)) throw err;
    return { id, op: op as WireOp, body: null, invalid: err };
  }
  if (replaced && payload !== undefined) {
    const at = firstInvalidString(payload);
    if (at >= 0)
      return {
        id,
        op: op as WireOp,
        body: body as Json,
        invalid: new FlotillaError(
          'INVALID_UTF8',
          `Request ${id}'s body holds a string that is not valid UTF-8 (the string at byte ${at} ` +
            'of its frame): strings must be valid Unicode, and a lone surrogate has no UTF-8 form',
        ),
      };
  }
  return { id, op: op as WireOp, body: body as Json };
}

/** Whether `v` is a string holding U+FFFD, what the decoder makes of bytes that are not UTF-8. */
function hasReplacement(v: unknown): boolean {
  return typeof v === 'string' && v.includes('\uFFFD');
}

/**
 * Checks a body is JSON-shaped; true if a string or name in it holds U+FFFD, which is either
 * itself or what the decoder made of bytes that are not UTF-8 (then firstInvalidString tells).
 */
function checkJsonShaped(v: unknown, where: string, depth: number): boolean {
  if (typeof v === 'string') return hasReplacement(v);
  if (v === null || typeof v === 'boolean') return false;
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new FlotillaError('BAD_REQUEST', `${where} is ${v}`);
    return false;
  }
  let replaced = false;
  // The body itself is the first level, as over HTTP.
  if (typeof v === 'object' && depth >= maxBodyDepth)
    throw new FlotillaError(
      'BAD_REQUEST',
      `${where} is nested more than ${maxBodyDepth} levels deep`,
    );
  if (Array.isArray(v)) {
    v.forEach((x, i) => {
      if (checkJsonShaped(x, `${where}[${i}]`, depth + 1)) replaced = true;
    });
    return replaced;
  }
  if (typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) {
    for (const [k, x] of Object.entries(v))
      if (checkJsonShaped(x, `${where}.${k}`, depth + 1) || hasReplacement(k)) replaced = true;
    return replaced;
  }
  const kind =
    v instanceof Uint8Array ? 'binary' : typeof v === 'object' ? 'an extension' : typeof v;
  throw new FlotillaError(
    'BAD_REQUEST',
    `${where} holds ${kind}: bodies take maps, arrays, strings, numbers, booleans and nil`,
  );
}

/** An error frame's error, as the FlotillaError it stands for. */
export function errorFromWire(v: unknown, fallbackIndefinite: boolean): FlotillaError {
  const e = (v ?? {}) as Partial<Record<keyof WireErrorJson, unknown>>;
  const message = typeof e.message === 'string' ? e.message : 'no message';
  if (typeof e.code !== 'string' || !isErrorCode(e.code))
    return new FlotillaError(
      'BAD_RESPONSE',
      `Unknown error ${JSON.stringify(e.code ?? null)}: ${message}`,
      typeof e.indefinite === 'boolean' ? e.indefinite : fallbackIndefinite,
    );
  return new FlotillaError(
    e.code,
    message,
    typeof e.indefinite === 'boolean' ? e.indefinite : fallbackIndefinite,
    typeof e.leader === 'number' ? e.leader : 0,
    typeof e.retryAfterMs === 'number' ? e.retryAfterMs : 0,
    typeof e.compactRevision === 'number' ? e.compactRevision : 0,
  );
}

/**
 * The offset in a msgpack `payload` of the first string (its header) whose bytes are not valid
 * UTF-8, or of an extension (the decoder may have made strings of its bytes out of this walk's
 * sight), or -1. The decoder turns bytes that are not UTF-8 into U+FFFD, as Buffer#toString
 * does, so two different keys could become one; the HTTP API refuses them (INVALID_UTF8), and
 * so must this protocol. A walk over the payload's items, skipping numbers and binaries;
 * called only when a decoded string holds U+FFFD.
 */
export function firstInvalidString(payload: Buffer): number {
  let at = 0;
  let items = 1;
  const u = (bytes: 1 | 2 | 4): number => {
    const n =
      bytes === 1
        ? (payload[at] ?? 0)
        : bytes === 2
          ? payload.readUInt16BE(at)
          : payload.readUInt32BE(at);
    at += bytes;
    return n;
  };
  while (items > 0 && at < payload.length) {
    items--;
    const start = at;
    const b = payload[at++] as number;
    let str = -1;
    let skip = 0;
    if (b <= 0x7f || b >= 0xe0 || b === 0xc0 || b === 0xc1 || b === 0xc2 || b === 0xc3) continue;
    if (b <= 0x8f) items += 2 * (b & 0x0f);
    else if (b <= 0x9f) items += b & 0x0f;
    else if (b <= 0xbf) str = b & 0x1f;
    else if (b === 0xd9) str = u(1);
    else if (b === 0xda) str = u(2);
    else if (b === 0xdb) str = u(4);
    else if (b === 0xdc) items += u(2);
    else if (b === 0xdd) items += u(4);
    else if (b === 0xde) items += 2 * u(2);
    else if (b === 0xdf) items += 2 * u(4);
    // The length is read (moving `at` past it) before it is added: `at += u(1)` would add it
    // to `at` as it was before the read.
    else if (b === 0xc4) skip = u(1);
    else if (b === 0xc5) skip = u(2);
    else if (b === 0xc6) skip = u(4);
    // An extension: no JSON-shaped body holds one, and the decoder may have made strings of
    // its bytes (bundled strings, 0x62) that this walk cannot check.
    else if ((b >= 0xc7 && b <= 0xc9) || (b >= 0xd4 && b <= 0xd8)) return start;
    else skip = fixedSizes[b - 0xca] ?? 0;
    at += skip;
    if (str >= 0) {
      if (!isUtf8(payload.subarray(at, at + str))) return start;
      at += str;
    }
  }
  // Bytes past the one value were never decoded: not a string this protocol checked.
  return at < payload.length ? at : -1;
}

/** The bytes after the header of msgpack types 0xca..0xd3: floats and integers. */
const fixedSizes = [4, 8, 1, 2, 4, 8, 1, 2, 4, 8];
