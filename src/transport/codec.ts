// msgpack payloads of the peer protocol. Plain maps (no msgpackr records or structures): every
// payload is self-describing, so a frame can be decoded and validated on its own and a later
// protocol version can add fields without a shared structure table. Binary fields (entry data)
// use msgpack's bin type and decode as Uint8Array views of the frame they arrived in.

import { Packr, Unpackr } from 'msgpackr';
import { FEATURE_LEVEL_MAX, isFeatureLevel } from '../base/features.js';
import type { Message, NodeId } from '../raft/types.js';
import { TransportError } from './errors.js';
import type { ValidationLimits } from './validate.js';
import { validateMessage } from './validate.js';

// useRecords off on both sides: a record extension from the wire is then an error rather than
// a structure definition that the decoder would compile and keep.
const packr = new Packr({ useRecords: false, moreTypes: false, variableMapSize: true });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

/**
 * Protocol versions this build speaks. A new version is added here and negotiated in HELLO.
 * Version 2 tags every message with its Raft group; version 1 (one group, untagged) is no
 * longer spoken: a version-1 peer would take every group's messages for one group's. Version 3
 * adds the liveness lane (HELLO `lane`): a second connection from the same peer that carries
 * only heartbeats and does not replace the first. A liveness HELLO offers version 3 alone, so
 * a version-2 node refuses it instead of taking it for a redial of the main connection.
 */
export const PROTOCOL_VERSION_MIN = 2;
export const PROTOCOL_VERSION_MAX = 5;
export const LIVENESS_LANE_VERSION = 3;
/**
 * Version 4 adds the HEARTBEATS frame (coalesced.ts): the heartbeats and heartbeat answers of
 * many groups to one peer in one frame. A sender uses it only on a connection negotiated at 4
 * or above, so a version-3 peer keeps receiving one MESSAGE frame per heartbeat.
 */
export const COALESCED_HEARTBEATS_VERSION = 4;
/**
 * Version 5 adds the GOODBYE frame (goodbye.ts): a node that stops cleanly says so on its main
 * connections before it closes them, so its peers log a planned stop, not a failure. A release
 * before it takes an unknown frame type for a broken stream, so GOODBYE is written only on a
 * connection negotiated at 5 or above; a version-4 peer sees the connection close, as before.
 */
export const GOODBYE_VERSION = 5;

/** The connections a peer may open: the main one, and the heartbeats-only liveness lane. */
export type Lane = 'main' | 'liveness';

/** Largest group id on the wire (u32). */
export const MAX_GROUP_ID = 0xffff_ffff;

export interface Hello {
  readonly minVersion: number;
  readonly maxVersion: number;
  readonly clusterId: string;
  readonly from: NodeId;
  readonly to: NodeId;
  /** Whether the sender holds any Raft log; null when it did not say (TransportOptions.hasLog). */
  readonly hasLog: boolean | null;
  /**
   * Where the sender listens for peers (host:port) and serves clients (URL); null when it did
   * not say (TransportOptions.advertise). A node that does not know the sender may learn it.
   */
  readonly peerAddress: string | null;
  readonly clientUrl: string | null;
  /** Which connection this is; absent means the main one. */
  readonly lane: Lane;
  /** The feature level the sender runs (src/base/features.ts); null when it did not say. */
  readonly featureLevel: number | null;
  /** The sending process's random id (TcpTransportOptions.incarnation); null: not said. */
  readonly incarnation: string | null;
}

export interface Accept {
  readonly version: number;
  readonly clusterId: string;
  readonly nodeId: NodeId;
  readonly hasLog: boolean | null;
  /** As Hello's. */
  readonly featureLevel: number | null;
  /** As Hello's `inc`: the answering process's id, so a dialler can tell two apart. */
  readonly incarnation: string | null;
  /** Where the answering node sends to the dialler (host:port): null when not said. */
  readonly yourPeer: string | null;
  /** The client URL the answering node forwards the dialler's requests to: null when not said. */
  readonly yourClient: string | null;
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

/** An optional feature level (src/base/features.ts): absent (a release before it) is null. */
function optionalLevel(o: Record<string, unknown>, key: string, what: string): number | null {
  const v = o[key];
  if (v === undefined) return null;
  if (!isFeatureLevel(v))
    throw new TransportError(
      'TRANSPORT_BAD_FRAME',
      `${what}.${key} must be an integer from 0 to ${FEATURE_LEVEL_MAX}, saw ${JSON.stringify(v) ?? typeof v}`,
    );
  return v;
}

/** An optional string handshake field of at most 256 characters: absent is null. */
function optionalString(o: Record<string, unknown>, key: string, what: string): string | null {
  const v = o[key];
  if (v === undefined) return null;
  if (typeof v !== 'string' || v.length > 256)
    throw new TransportError(
      'TRANSPORT_BAD_FRAME',
      `${what}.${key} must be a string of at most 256 characters, saw ${typeof v === 'string' ? `${v.length} characters` : typeof v}`,
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
    peerAddress: optionalString(o, 'peer', 'hello'),
    clientUrl: optionalString(o, 'client', 'hello'),
    lane: laneOf(optionalString(o, 'lane', 'hello')),
    featureLevel: optionalLevel(o, 'featureLevel', 'hello'),
    incarnation: optionalString(o, 'inc', 'hello'),
  };
}

function laneOf(v: string | null): Lane {
  if (v === null || v === 'main') return 'main';
  if (v === 'liveness') return 'liveness';
  throw new TransportError(
    'TRANSPORT_BAD_FRAME',
    `hello.lane must be "main" or "liveness", saw ${JSON.stringify(v)}`,
  );
}

export function decodeAccept(payload: Uint8Array): Accept {
  const o = asMap(unpack(payload, 'accept'), 'accept');
  return {
    version: field(o, 'version', 'number', 'accept'),
    clusterId: field(o, 'clusterId', 'string', 'accept'),
    nodeId: field(o, 'nodeId', 'number', 'accept'),
    hasLog: optionalBool(o, 'hasLog', 'accept'),
    featureLevel: optionalLevel(o, 'featureLevel', 'accept'),
    incarnation: optionalString(o, 'inc', 'accept'),
    yourPeer: optionalString(o, 'yourPeer', 'accept'),
    yourClient: optionalString(o, 'yourClient', 'accept'),
  };
}

export function decodeRefuse(payload: Uint8Array): Refuse {
  const o = asMap(unpack(payload, 'refuse'), 'refuse');
  return { reason: field(o, 'reason', 'string', 'refuse') };
}

/** A message payload: the message's own map, with `group` added unless it is group 0. */
export function encodeMessage(msg: Message, group = 0): Buffer {
  return packr.pack(group === 0 ? msg : { ...msg, group });
}

/** A message as it arrived, with the group it is for. */
export interface GroupMessage {
  readonly msg: Message;
  readonly group: number;
}

/** Decodes and validates one message payload. */
export function decodeMessage(
  payload: Uint8Array,
  limits: ValidationLimits,
): GroupMessage | TransportError {
  const value = unpack(payload, 'message');
  if (value instanceof TransportError) return value;
  let group = 0;
  if (typeof value === 'object' && value !== null && 'group' in value) {
    const o = value as Record<string, unknown>;
    const g = o['group'];
    if (!Number.isSafeInteger(g) || (g as number) < 0 || (g as number) > MAX_GROUP_ID)
      return new TransportError(
        'TRANSPORT_BAD_MESSAGE',
        `message.group must be an integer 0..${MAX_GROUP_ID}, saw ${JSON.stringify(g) ?? String(g)}`,
      );
    group = g as number;
    delete o['group'];
  }
  const msg = validateMessage(value, limits);
  return msg instanceof TransportError ? msg : { msg, group };
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
