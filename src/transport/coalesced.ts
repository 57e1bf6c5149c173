// Coalesced heartbeats (peer protocol version 4, docs/PROTOCOL.md, "Coalesced heartbeats").
// A node that hosts many Raft groups with the same peers sends each peer, every heartbeat
// interval, one heartbeat per group it leads and one answer per group it follows. Framed one
// by one that is a msgpack map, a checksum, a socket write and a validation per group per
// peer: with 1,000 idle groups it was most of a node's CPU (docs/BENCHMARKS.md, "Idle
// groups"). So the heartbeats and answers queued for one peer when its connection is written
// go as one HEARTBEATS frame of fixed-size records; each group's core still sends and steps
// its own message, the transport only folds them on the wire and unfolds them on arrival.
//
// Payload: u32 count, then `count` records of RECORD_BYTES (big-endian):
//
//   u8   kind     1 heartbeat, 2 heartbeat-resp
//   u8   flags    bit 0: catchingUp (heartbeat-resp); the other bits are zero
//   u32  group
//   u64  term     at most 2^53 - 1, as every integer of the protocol
//   u64  commit   heartbeat; zero in an answer
//   u64  seq
//
// `from` and `to` are not on the wire: the connection names them (the handshake authenticated
// the dialler, and a connection carries one direction only).

import type { Heartbeat, HeartbeatResponse, Message, NodeId } from '../raft/types.js';
import type { GroupMessage } from './codec.js';
import { TransportError } from './errors.js';

export const RECORD_BYTES = 30;
/** The record count in front of the records. */
export const COUNT_BYTES = 4;

const KIND_HEARTBEAT = 1;
const KIND_RESPONSE = 2;
const FLAG_CATCHING_UP = 1;
const TWO_32 = 2 ** 32;
/** The high word of 2^53 - 1: no integer of the protocol is larger. */
const HIGH_MAX = 2 ** 21 - 1;

/**
 * Whether a message may ride in a HEARTBEATS frame. A heartbeat that quiesces its group
 * (Heartbeat.quiesce) goes as a MESSAGE frame, whose map carries the flag: a record has no bit
 * for it that a version-4 peer would accept, and a peer that ignores the field only stays
 * awake. It is sent once per group going idle, so the frame costs nothing that matters.
 */
export function isCoalescable(msg: Message): msg is Heartbeat | HeartbeatResponse {
  return (msg.type === 'heartbeat' && msg.quiesce !== true) || msg.type === 'heartbeat-resp';
}

/** Most records in one frame whose payload may be at most `maxFrameBytes`. */
export function recordsPerFrame(maxFrameBytes: number): number {
  return Math.floor((maxFrameBytes - COUNT_BYTES) / RECORD_BYTES);
}

function writeU53(out: Buffer, v: number, at: number): void {
  out.writeUInt32BE(Math.floor(v / TWO_32), at);
  out.writeUInt32BE(v % TWO_32, at + 4);
}

/** The payload of one HEARTBEATS frame holding `items` (all coalescable, at least one). */
export function encodeHeartbeats(
  items: readonly { readonly msg: Heartbeat | HeartbeatResponse; readonly group: number }[],
): Buffer {
  const out = Buffer.allocUnsafe(COUNT_BYTES + items.length * RECORD_BYTES);
  out.writeUInt32BE(items.length, 0);
  let at = COUNT_BYTES;
  for (const { msg, group } of items) {
    const hb = msg.type === 'heartbeat';
    out.writeUInt8(hb ? KIND_HEARTBEAT : KIND_RESPONSE, at);
    out.writeUInt8(!hb && msg.catchingUp ? FLAG_CATCHING_UP : 0, at + 1);
    out.writeUInt32BE(group, at + 2);
    writeU53(out, msg.term, at + 6);
    writeU53(out, hb ? msg.commit : 0, at + 14);
    writeU53(out, msg.seq, at + 22);
    at += RECORD_BYTES;
  }
  return out;
}

function readU53(p: Buffer, at: number, field: string, i: number): number {
  const high = p.readUInt32BE(at);
  if (high > HIGH_MAX)
    throw new TransportError(
      'TRANSPORT_BAD_MESSAGE',
      `heartbeats record ${i}: ${field} is above 2^53 - 1 (high word ${high})`,
    );
  return high * TWO_32 + p.readUInt32BE(at + 4);
}

/**
 * The messages of one HEARTBEATS payload, from `from` to `to` (the connection's ends), in the
 * order sent. Throws TransportError: TRANSPORT_BAD_FRAME for a payload whose size does not
 * match its count, TRANSPORT_BAD_MESSAGE for a record that is not a valid message.
 */
export function decodeHeartbeats(payload: Buffer, from: NodeId, to: NodeId): GroupMessage[] {
  if (payload.byteLength < COUNT_BYTES)
    throw new TransportError(
      'TRANSPORT_BAD_FRAME',
      `heartbeats frame of ${payload.byteLength} bytes has no count`,
    );
  const count = payload.readUInt32BE(0);
  if (count === 0 || payload.byteLength !== COUNT_BYTES + count * RECORD_BYTES)
    throw new TransportError(
      'TRANSPORT_BAD_FRAME',
      `heartbeats frame of ${payload.byteLength} bytes says ${count} records of ${RECORD_BYTES} bytes (at least 1)`,
    );
  const out: GroupMessage[] = [];
  for (let i = 0, at = COUNT_BYTES; i < count; i++, at += RECORD_BYTES) {
    const kind = payload.readUInt8(at);
    const flags = payload.readUInt8(at + 1);
    const group = payload.readUInt32BE(at + 2);
    const term = readU53(payload, at + 6, 'term', i);
    const commit = readU53(payload, at + 14, 'commit', i);
    const seq = readU53(payload, at + 22, 'seq', i);
    if (kind === KIND_HEARTBEAT && flags === 0)
      out.push({ msg: { type: 'heartbeat', from, to, term, commit, seq }, group });
    else if (kind === KIND_RESPONSE && (flags & ~FLAG_CATCHING_UP) === 0 && commit === 0)
      out.push({
        msg: {
          type: 'heartbeat-resp',
          from,
          to,
          term,
          seq,
          catchingUp: (flags & FLAG_CATCHING_UP) !== 0,
        },
        group,
      });
    else
      throw new TransportError(
        'TRANSPORT_BAD_MESSAGE',
        `heartbeats record ${i}: kind ${kind} with flags ${flags} and commit ${commit} is neither a heartbeat nor an answer`,
      );
  }
  return out;
}
