// Structural validation of decoded messages. msgpack gives us arbitrary values; before one
// reaches the Raft core it must be exactly one of the Message shapes of src/raft/types.ts, with
// ids positive integers, terms and indices non-negative safe integers, and arrays bounded. The
// result is a fresh object holding only the known fields, so nothing unexpected rides along.

import type { Entry, Message, MessageType, SnapshotMeta } from '../raft/types.js';
import { TransportError } from './errors.js';

export interface ValidationLimits {
  /** Most entries one append may carry. */
  readonly maxEntriesPerMessage: number;
  /** Most node ids in each list of a snapshot's configuration (voters, learners, ...). */
  readonly maxVoters: number;
}

export const defaultValidationLimits: ValidationLimits = {
  maxEntriesPerMessage: 65_536,
  maxVoters: 1_024,
};

export const messageTypes: readonly MessageType[] = [
  'vote',
  'pre-vote',
  'vote-resp',
  'pre-vote-resp',
  'append',
  'append-resp',
  'heartbeat',
  'heartbeat-resp',
  'timeout-now',
  'read-index',
  'read-index-resp',
  'snapshot',
  'snapshot-resp',
];

/** Thrown inside this module only; validateMessage turns it into a returned error. */
class Invalid extends Error {}

type Rec = Record<string, unknown>;

function rec(v: unknown, what: string): Rec {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Uint8Array)
    throw new Invalid(`${what} must be a map, saw ${describe(v)}`);
  return v as Rec;
}

function uint(o: Rec, key: string): number {
  const v = o[key];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0)
    throw new Invalid(`field ${key} must be a non-negative safe integer, saw ${describe(v)}`);
  return v;
}

function nodeId(o: Rec, key: string): number {
  const v = uint(o, key);
  if (v === 0) throw new Invalid(`field ${key} must be a positive node id, saw 0`);
  return v;
}

/** A snapshot's id: its checksum, in the runtime's spelling (hex); bounded. */
function snapshotId(o: Rec): string {
  const v = o['id'];
  if (typeof v !== 'string' || v.length === 0 || v.length > 128)
    throw new Invalid(`field id must be a string of 1..128 characters, saw ${describe(v)}`);
  return v;
}

function bool(o: Rec, key: string): boolean {
  const v = o[key];
  if (typeof v !== 'boolean')
    throw new Invalid(`field ${key} must be a boolean, saw ${describe(v)}`);
  return v;
}

function array(o: Rec, key: string, max: number): unknown[] {
  const v = o[key];
  if (!Array.isArray(v)) throw new Invalid(`field ${key} must be an array, saw ${describe(v)}`);
  if (v.length > max) throw new Invalid(`field ${key} has ${v.length} items, limit ${max}`);
  return v;
}

function entry(v: unknown, i: number): Entry {
  const o = rec(v, `entries[${i}]`);
  const type = o['type'];
  if (type !== 'normal' && type !== 'noop' && type !== 'conf-change')
    throw new Invalid(
      `entries[${i}].type must be normal, noop or conf-change, saw ${describe(type)}`,
    );
  const data = o['data'];
  if (!(data instanceof Uint8Array))
    throw new Invalid(`entries[${i}].data must be bytes, saw ${describe(data)}`);
  // A plain Uint8Array view (not a Buffer) so decoded entries compare equal to the originals.
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return { term: uint(o, 'term'), index: uint(o, 'index'), type, data: bytes };
}

function idList(o: Rec, key: string, limits: ValidationLimits): number[] {
  return array(o, key, limits.maxVoters).map((v, i) => {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0)
      throw new Invalid(`snapshot.${key}[${i}] must be a positive node id, saw ${describe(v)}`);
    return v;
  });
}

/**
 * The configuration fields besides `voters` are optional (absent: empty, false), as in
 * SnapshotMeta; they are kept only when set, so metadata compares equal across the wire.
 */
function snapshotMeta(v: unknown, limits: ValidationLimits): SnapshotMeta {
  const o = rec(v, 'snapshot');
  const meta: { -readonly [K in keyof SnapshotMeta]: SnapshotMeta[K] } = {
    index: uint(o, 'index'),
    term: uint(o, 'term'),
    voters: idList(o, 'voters', limits),
  };
  for (const key of ['learners', 'outgoing', 'learnersNext'] as const) {
    if (o[key] === undefined) continue;
    const ids = idList(o, key, limits);
    if (ids.length > 0) meta[key] = ids;
  }
  if (o['autoLeave'] !== undefined && bool(o, 'autoLeave')) meta.autoLeave = true;
  return meta;
}

function body(o: Rec, type: MessageType, limits: ValidationLimits): Message {
  const base = { from: nodeId(o, 'from'), to: nodeId(o, 'to'), term: uint(o, 'term') };
  switch (type) {
    case 'vote':
    case 'pre-vote':
      return {
        ...base,
        type,
        lastLogIndex: uint(o, 'lastLogIndex'),
        lastLogTerm: uint(o, 'lastLogTerm'),
        transfer: bool(o, 'transfer'),
      };
    case 'vote-resp':
    case 'pre-vote-resp':
      return { ...base, type, granted: bool(o, 'granted') };
    case 'append': {
      const entries = array(o, 'entries', limits.maxEntriesPerMessage).map(entry);
      const prevIndex = uint(o, 'prevIndex');
      entries.forEach((e, i) => {
        if (e.index !== prevIndex + 1 + i)
          throw new Invalid(`entries[${i}].index must be ${prevIndex + 1 + i}, saw ${e.index}`);
      });
      return {
        ...base,
        type,
        prevIndex,
        prevTerm: uint(o, 'prevTerm'),
        entries,
        commit: uint(o, 'commit'),
      };
    }
    case 'append-resp':
      return {
        ...base,
        type,
        success: bool(o, 'success'),
        index: uint(o, 'index'),
        hintIndex: uint(o, 'hintIndex'),
        hintTerm: uint(o, 'hintTerm'),
        // Absent from peers that predate it: they never report a lost log.
        lost: o['lost'] === undefined ? false : bool(o, 'lost'),
        catchingUp: o['catchingUp'] === undefined ? false : bool(o, 'catchingUp'),
      };
    case 'heartbeat':
      return {
        ...base,
        type,
        commit: uint(o, 'commit'),
        seq: uint(o, 'seq'),
        // Absent from leaders that predate quiescing, and on every heartbeat but the last.
        ...(o['quiesce'] !== undefined && bool(o, 'quiesce') ? { quiesce: true as const } : {}),
      };
    case 'heartbeat-resp':
      return {
        ...base,
        type,
        seq: uint(o, 'seq'),
        catchingUp: o['catchingUp'] === undefined ? false : bool(o, 'catchingUp'),
      };
    case 'timeout-now':
      return { ...base, type };
    case 'read-index':
      return {
        ...base,
        type,
        requestId: uint(o, 'requestId'),
        // Absent from members that predate lease reads: a normal ReadIndex request.
        lease: o['lease'] === undefined ? false : bool(o, 'lease'),
      };
    case 'read-index-resp':
      return {
        ...base,
        type,
        requestId: uint(o, 'requestId'),
        ok: bool(o, 'ok'),
        index: uint(o, 'index'),
      };
    case 'snapshot': {
      const snapshot = snapshotMeta(o['snapshot'], limits);
      const offset = uint(o, 'offset');
      const length = uint(o, 'length');
      const totalBytes = uint(o, 'totalBytes');
      if (totalBytes === 0 || offset + length > totalBytes)
        throw new Invalid(
          `snapshot chunk ${offset}+${length} must lie within its ${totalBytes} bytes (at least 1)`,
        );
      return {
        ...base,
        type,
        snapshot,
        id: snapshotId(o),
        offset,
        length,
        totalBytes,
      };
    }
    case 'snapshot-resp':
      return { ...base, type, id: snapshotId(o), received: uint(o, 'received') };
  }
}

/** Returns the validated message, or a TRANSPORT_BAD_MESSAGE error naming the first problem. */
export function validateMessage(
  value: unknown,
  limits: ValidationLimits = defaultValidationLimits,
): Message | TransportError {
  try {
    const o = rec(value, 'message');
    const type = o['type'];
    if (typeof type !== 'string' || !(messageTypes as readonly string[]).includes(type))
      throw new Invalid(`unknown message type ${describe(type)}`);
    return body(o, type as MessageType, limits);
  } catch (e) {
    if (e instanceof Invalid) return new TransportError('TRANSPORT_BAD_MESSAGE', e.message);
    throw e;
  }
}

function describe(v: unknown): string {
  if (v instanceof Uint8Array) return `bytes(${v.byteLength})`;
  if (Array.isArray(v)) return `array(${v.length})`;
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v);
  if (typeof v === 'object' && v !== null) return 'map';
  return String(v);
}
