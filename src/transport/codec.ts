// msgpack payloads of the peer protocol. Plain maps (no msgpackr records or structures): every
// payload is self-describing, so a frame can be decoded and validated on its own and a later
// protocol version can add fields without a shared structure table. Binary fields (entry data)
// use msgpack's bin type and decode as Uint8Array views of the frame they arrived in.

import { Packr, Unpackr } from 'msgpackr';
import type { Message, NodeId } from '../raft/types.js';
import { TransportError } from './errors.js';
import type { ValidationLimits } from './validate.js';
import { validateMessage } from './validate.js';

// useRecords off on both sides: a record extension from the wire is then an error rather than
// a structure definition that the decoder would compile and keep.
const packr = new Packr({ useRecords: false, moreTypes: false, variableMapSize: true });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

/** Protocol versions this build speaks. A new version is added here and negotiated in HELLO. */
export const PROTOCOL_VERSION_MIN = 1;
export const PROTOCOL_VERSION_MAX = 1;

export interface Hello {
  readonly minVersion: number;
  readonly maxVersion: number;
  readonly clusterId: string;
  readonly from: NodeId;
  readonly to: NodeId;
  /** Whether the sender holds any Raft log; null when it did not say (TransportOptions.hasLog). */
  readonly hasLog: boolean | null;
}

export interface Accept {
  readonly version: number;
  readonly clusterId: string;
  readonly nodeId: NodeId;
  readonly hasLog: boolean | null;
}

/** An optional boolean handshake field: absent (an older peer) is null. */
function optionalBool(o: Record<string, unknown>, key: string, what: string): boolean | null {
  const v = o[key];
  if (v === undefined) return null;
  if (typeof v !== 'boolean')
    throw new TransportError(
      'TRANSPORT_BAD_FRAME',
      `${what}.${key} must be a boolean, saw ${typeof v}`,
    );
  return v;
}

export interface Refuse {
  readonly reason: string;
}

export function pack(value: unknown): Buffer {
  return packr.pack(value);
}

/** Decodes a msgpack payload; garbage becomes TRANSPORT_BAD_FRAME instead of an exception. */
export function unpack(payload: Uint8Array, what: string): unknown {
  try {
    return unpackr.unpack(payload);
  } catch (e) {
    const detail = e instanceof Error ? e.message : String(e);
    return new TransportError(
      'TRANSPORT_BAD_FRAME',
      `${what} payload is not valid msgpack: ${detail}`,
    );
  }
}

function field<T extends 'string' | 'number'>(
  o: Record<string, unknown>,
  key: string,
  type: T,
  what: string,
): T extends 'string' ? string : number {
  const v = o[key];
  const okType =
    type === 'string'
      ? typeof v === 'string' && v.length <= 256
      : Number.isSafeInteger(v) && (v as number) >= 0;
  if (!okType)
    throw new TransportError(
      'TRANSPORT_BAD_FRAME',
      `${what}.${key} must be a ${type}, saw ${JSON.stringify(v) ?? String(v)}`,
    );
  return v as T extends 'string' ? string : number;
}

function asMap(v: unknown, what: string): Record<string, unknown> {
  if (v instanceof TransportError) throw v;
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new TransportError('TRANSPORT_BAD_FRAME', `${what} payload must be a map`);
  return v as Record<string, unknown>;
}

/** Parses a handshake payload; throws TransportError (caught by the connection) when malformed. */
export function decodeHello(payload: Uint8Array): Hello {
  const o = asMap(unpack(payload, 'hello'), 'hello');
  return {
    minVersion: field(o, 'minVersion', 'number', 'hello'),
    maxVersion: field(o, 'maxVersion', 'number', 'hello'),
    clusterId: field(o, 'clusterId', 'string', 'hello'),
    from: field(o, 'from', 'number', 'hello'),
    to: field(o, 'to', 'number', 'hello'),
    hasLog: optionalBool(o, 'hasLog', 'hello'),
  };
}

export function decodeAccept(payload: Uint8Array): Accept {
  const o = asMap(unpack(payload, 'accept'), 'accept');
  return {
    version: field(o, 'version', 'number', 'accept'),
    clusterId: field(o, 'clusterId', 'string', 'accept'),
    nodeId: field(o, 'nodeId', 'number', 'accept'),
    hasLog: optionalBool(o, 'hasLog', 'accept'),
  };
}

export function decodeRefuse(payload: Uint8Array): Refuse {
  const o = asMap(unpack(payload, 'refuse'), 'refuse');
  return { reason: field(o, 'reason', 'string', 'refuse') };
}

export function encodeMessage(msg: Message): Buffer {
  return packr.pack(msg);
}

/** Decodes and validates one message payload. */
export function decodeMessage(
  payload: Uint8Array,
  limits: ValidationLimits,
): Message | TransportError {
  const value = unpack(payload, 'message');
  if (value instanceof TransportError) return value;
  return validateMessage(value, limits);
}

/** Chunk frame payload header: transfer id, offset, total size (all u32 BE), then the bytes. */
export const CHUNK_HEADER_BYTES = 12;

export function chunkHeader(transferId: number, offset: number, total: number): Buffer {
  const h = Buffer.allocUnsafe(CHUNK_HEADER_BYTES);
  h.writeUInt32BE(transferId >>> 0, 0);
  h.writeUInt32BE(offset, 4);
  h.writeUInt32BE(total, 8);
  return h;
}
