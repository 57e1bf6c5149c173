// The peer protocol under fuzz (docs/PROTOCOL.md): every input is the raw bytes of one
// connection to node 1's peer port: the preface, a HELLO, then frames. `hello` inputs carry a
// mutated HELLO; `frames` inputs a valid HELLO in the name of an absent member, offering a
// protocol version from 2 to 5, then MESSAGE, CHUNK and MESSAGE_WITH_ATTACHMENT frames built
// from every Raft message type and mutated (fields, frame types, checksums, lengths, chunk
// headers), HEARTBEATS frames of valid and broken records and GOODBYE frames (each valid only
// from its version on); `mutated` ones are such bytes mutated; `random` ones random bytes,
// some after a valid preface or handshake.
//
// A mutated message that still validates is delivered, so the generator gives every message
// a group no node runs (the host drops it, counted): the peer port trusts a peer that passed
// the handshake, and a forged vote or append for a real group would be a valid message with
// a Byzantine sender, outside what Raft or this protocol defends against. For the same
// reason a HELLO never names a member the node does not know together with a usable address
// (which would make it a member, as PROTOCOL.md describes).
//
// The oracle reads the input as the protocol says (preface; frame lengths against 4 KiB
// before the handshake and 16 MiB after; frame types; CRC32C; the HELLO's fields and checks)
// and knows, up to the first message it cannot judge, which code the node must count. Each
// connection must end with exactly what was expected: ACCEPT for a valid HELLO, the REFUSE
// frame and event for a refused one, one error event with the expected (or a possible) code,
// or, for an input that ends cut short or whole and valid, no event. The fuzzer half-closes
// after its input, so a connection ends either way.

import { crc32c } from '@node-rs/crc32';
import { connect } from 'node:net';
import { Packr, Unpackr } from 'msgpackr';
import type { Message } from '../../src/raft/types.js';
import { everyMessage } from '../transport/fixtures.js';
import type { FuzzRng } from './gen.js';
import { mutateBytes, mutateJson, type JsonValue } from './gen.js';
import type { PeerCluster } from './peer-cluster.js';
import type { FuzzInput, FuzzTarget, Verdict } from './run.js';

const packr = new Packr({ useRecords: false, moreTypes: false, variableMapSize: true });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

const PREFACE = Buffer.from('FLOT', 'latin1');
const HEADER = 9;
const T = {
  hello: 1,
  accept: 2,
  refuse: 3,
  message: 4,
  chunk: 5,
  attached: 6,
  heartbeats: 7,
  goodbye: 8,
} as const;
/** The versions node 1 speaks, and the first that takes HEARTBEATS and GOODBYE frames. */
const VERSION_MIN = 2;
const VERSION_MAX = 5;
const HEARTBEATS_VERSION = 4;
const GOODBYE_VERSION = 5;
/** HEARTBEATS: a record count, then records of this many bytes (src/transport/coalesced.ts). */
const RECORD_BYTES = 30;
const maxHandshakeFrameBytes = 4 * 1024;
const maxFrameBytes = 16 * 1024 * 1024;
const maxAttachmentBytes = 1024 * 1024 * 1024;
/**
 * Groups no node runs: a message for one is dropped by the host. A node runs groups 0 (keys),
 * 1 (the queue), 2 (the range map) and 3 upwards (ranges); 0xffff_ffff is the node heartbeat's
 * (host.ts NODE_BEAT_GROUP), dropped too. A forged message for a running group is a Byzantine
 * peer's (above): a vote in term 2^53 - 1 took the range map's group to a term past what the
 * protocol carries, and its members' messages were refused from then on.
 */
const unservedGroups = [0x10_0000, 0x4000_0000, 0xffff_fffe, 0xffff_ffff];

function frame(type: number, payload: Buffer, crcFlip = 0): Buffer {
  const h = Buffer.allocUnsafe(HEADER);
  h.writeUInt32BE(payload.length, 0);
  h.writeUInt32BE((crc32c(payload, crc32c(Buffer.of(type))) ^ crcFlip) >>> 0, 4);
  h.writeUInt8(type, 8);
  return Buffer.concat([h, payload]);
}

/** Settings of the cluster the inputs are made for. */
export interface PeerShape {
  readonly clusterId: string;
  readonly target: number;
  readonly absentIds: readonly number[];
  /** Every configured member but the target. */
  readonly peerIds: readonly number[];
}

function hello(shape: PeerShape, from: number, maxVersion = 2): Record<string, JsonValue> {
  return {
    minVersion: 2,
    maxVersion,
    clusterId: shape.clusterId,
    from,
    to: shape.target,
    hasLog: true,
  };
}

export function generatePeer(shape: PeerShape, rng: FuzzRng): FuzzInput {
  const from = rng.pick(shape.absentIds);
  const version = rng.pick([2, 3, 4, 5]);
  const validHello = Buffer.concat([
    PREFACE,
    frame(T.hello, packr.pack(hello(shape, from, version))),
  ]);
  const r = rng.int(100);
  if (r < 10) {
    const prefix = rng.pick([Buffer.alloc(0), PREFACE, validHello]);
    return {
      kind: 'random',
      what: `random bytes after ${prefix.length} bytes`,
      bytes: Buffer.concat([prefix, rng.bytes(rng.length(400))]),
    };
  }
  if (r < 30) {
    const h = mutateJson(
      rng,
      hello(shape, from),
      ['minVersion', 'maxVersion', 'clusterId', 'from', 'to', 'hasLog', 'peer', 'client'],
      new Set(),
    );
    disarmHello(shape, h);
    let payload = packr.pack(h);
    if (rng.chance(0.05)) payload = Buffer.concat([payload, rng.bytes(1 + rng.int(8))]);
    if (rng.chance(0.05))
      payload = packr.pack({ ...(h as object), pad: 'p'.repeat(maxHandshakeFrameBytes) });
    const type = rng.chance(0.05) ? rng.int(8) : T.hello;
    const f = frame(type, payload, rng.chance(0.05) ? 1 << rng.int(32) : 0);
    const bytes = Buffer.concat([rng.chance(0.05) ? rng.bytes(4) : PREFACE, f]);
    return { kind: 'hello', what: 'a mutated HELLO', bytes };
  }
  const frames: Buffer[] = [validHello];
  const what: string[] = [];
  for (let n = 1 + rng.length(4); n > 0; n--) {
    const k = rng.int(100);
    const f =
      k < 12
        ? snapshotTransfer(rng, shape, from)
        : k < 27
          ? heartbeatsFrame(rng)
          : k < 32
            ? goodbyeFrame(rng)
            : messageFrame(rng, shape, from);
    frames.push(f.bytes);
    what.push(f.what);
  }
  const bytes = Buffer.concat(frames);
  if (r < 50) return { kind: 'mutated', what: what.join(','), bytes: mutateBytes(rng, bytes) };
  return { kind: 'frames', what: what.join(','), bytes };
}

/** No HELLO may make a stranger a member (see above): drop a usable address of one. */
function disarmHello(shape: PeerShape, h: JsonValue): void {
  if (h === null || typeof h !== 'object' || Array.isArray(h)) return;
  if (!shape.peerIds.includes(h['from'] as number) && typeof h['peer'] === 'string')
    delete h['peer'];
  // Nor take the place of a running peer's connection.
  if (shape.peerIds.includes(h['from'] as number) && !shape.absentIds.includes(h['from'] as number))
    h['from'] = shape.absentIds[0] as number;
}

function asJson(m: Message): Record<string, JsonValue> {
  return m as unknown as Record<string, JsonValue>;
}

/** One message of every type from `from` to `to`, made once (they are copied before use). */
const templates = new Map<string, readonly Message[]>();
function messagesOf(from: number, to: number): readonly Message[] {
  const k = `${from}>${to}`;
  let list = templates.get(k);
  if (list === undefined) templates.set(k, (list = everyMessage(from, to)));
  return list;
}

function messageFrame(
  rng: FuzzRng,
  shape: PeerShape,
  from: number,
): { bytes: Buffer; what: string } {
  const m = rng.pick(messagesOf(from, shape.target).filter((x) => x.type !== 'snapshot'));
  const o = { ...asJson(m), group: rng.pick(unservedGroups) };
  const v = rng.chance(0.8) ? mutateJson(rng, o, fieldsOf(o), new Set()) : o;
  disarmGroup(rng, v);
  const type = rng.chance(0.04)
    ? rng.pick([T.hello, T.accept, T.refuse, 0, T.heartbeats, T.goodbye, 9, 255])
    : T.message;
  return { bytes: frame(type, packr.pack(v), rng.chance(0.04) ? 1 : 0), what: m.type };
}

/**
 * A HEARTBEATS frame of one to five records for groups no node runs, most of them valid; a
 * broken one has a record of an unknown kind, stray flags, a commit in an answer, a term past
 * 2^53 - 1, or a count that does not match the payload.
 */
function heartbeatsFrame(rng: FuzzRng): { bytes: Buffer; what: string } {
  const count = 1 + rng.int(5);
  const p = Buffer.alloc(4 + count * RECORD_BYTES);
  p.writeUInt32BE(count, 0);
  for (let i = 0, at = 4; i < count; i++, at += RECORD_BYTES) {
    const answer = rng.chance(0.5);
    p.writeUInt8(answer ? 2 : 1, at);
    p.writeUInt8(answer && rng.chance(0.5) ? 1 : 0, at + 1);
    p.writeUInt32BE(rng.pick(unservedGroups), at + 2);
    p.writeUInt32BE(1 + rng.int(100), at + 10); // term
    if (!answer) p.writeUInt32BE(rng.int(100), at + 18); // commit
    p.writeUInt32BE(rng.int(100), at + 26); // seq
  }
  let payload = p;
  if (rng.chance(0.3)) {
    const at = 4 + rng.int(count) * RECORD_BYTES;
    switch (rng.int(6)) {
      case 0:
        p.writeUInt8(rng.pick([0, 3, 255]), at);
        break;
      case 1:
        p.writeUInt8(2 + rng.int(254), at + 1);
        break;
      case 2:
        p.writeUInt8(2, at);
        p.writeUInt32BE(1, at + 18);
        break;
      case 3:
        p.writeUInt32BE(2 ** 21, at + 6);
        break;
      case 4:
        payload = rng.chance(0.5) ? p.subarray(0, p.length - 1 - rng.int(RECORD_BYTES)) : p;
        p.writeUInt32BE(rng.pick([0, count + 1, 0xffff_ffff]), 0);
        break;
      default:
        payload = p.subarray(0, rng.int(4));
    }
  }
  return { bytes: frame(T.heartbeats, payload, rng.chance(0.04) ? 1 : 0), what: 'heartbeats' };
}

/** A GOODBYE frame: an empty map (whose payload the node does not read), now and then not. */
function goodbyeFrame(rng: FuzzRng): { bytes: Buffer; what: string } {
  const payload = rng.chance(0.8) ? packr.pack({}) : rng.bytes(rng.int(16));
  return { bytes: frame(T.goodbye, payload), what: 'goodbye' };
}

/**
 * What a node must count for a HEARTBEATS payload: null for a valid one (its records reach
 * groups no node runs, dropped by the host), else the code (src/transport/coalesced.ts).
 */
function judgeHeartbeats(p: Buffer): string | null {
  if (p.length < 4) return 'TRANSPORT_BAD_FRAME';
  const count = p.readUInt32BE(0);
  if (count === 0 || p.length !== 4 + count * RECORD_BYTES) return 'TRANSPORT_BAD_FRAME';
  for (let at = 4; at < p.length; at += RECORD_BYTES) {
    for (const field of [6, 14, 22])
      if (p.readUInt32BE(at + field) >= 2 ** 21) return 'TRANSPORT_BAD_MESSAGE';
    const kind = p.readUInt8(at);
    const flags = p.readUInt8(at + 1);
    const commitZero = p.readUInt32BE(at + 14) === 0 && p.readUInt32BE(at + 18) === 0;
    const ok = (kind === 1 && flags === 0) || (kind === 2 && (flags & ~1) === 0 && commitZero);
    if (!ok) return 'TRANSPORT_BAD_MESSAGE';
  }
  return null;
}

function fieldsOf(o: Record<string, JsonValue>): string[] {
  return [...Object.keys(o), 'entries', 'snapshot', 'data', 'index', 'term', 'type'];
}

/** A group that would reach a running group is replaced by one no node runs. */
function disarmGroup(rng: FuzzRng, v: JsonValue): void {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return;
  const g = v['group'];
  const valid = typeof g === 'number' && Number.isSafeInteger(g) && g >= 0 && g <= 0xffff_ffff;
  if (g === undefined || (valid && !unservedGroups.includes(g)))
    v['group'] = rng.pick(unservedGroups);
}

/** CHUNK frames and the MESSAGE_WITH_ATTACHMENT of one snapshot chunk, some of it wrong. */
function snapshotTransfer(
  rng: FuzzRng,
  shape: PeerShape,
  from: number,
): { bytes: Buffer; what: string } {
  const data = rng.bytes(1 + rng.length(3000));
  const total = rng.chance(0.9)
    ? data.length
    : rng.pick([data.length + 1, maxAttachmentBytes + 1, 0xffffffff, 0]);
  const id = rng.u32();
  const parts: Buffer[] = [];
  let offset = 0;
  while (offset < data.length) {
    const n = Math.min(data.length - offset, 1 + rng.int(1500));
    const h = Buffer.allocUnsafe(12);
    h.writeUInt32BE(rng.chance(0.03) ? rng.u32() : id, 0);
    h.writeUInt32BE(rng.chance(0.03) ? offset + 1 : offset, 4);
    h.writeUInt32BE(total, 8);
    parts.push(frame(T.chunk, Buffer.concat([h, data.subarray(offset, offset + n)])));
    offset += n;
  }
  if (rng.chance(0.05)) parts.pop();
  const snap = messagesOf(from, shape.target).find((x) => x.type === 'snapshot') as Message;
  const msg = rng.chance(0.7)
    ? { ...asJson(snap), group: rng.pick(unservedGroups) }
    : mutateJson(
        rng,
        { ...asJson(snap), group: rng.pick(unservedGroups) },
        fieldsOf(asJson(snap)),
        new Set(),
      );
  disarmGroup(rng, msg);
  const tid = Buffer.allocUnsafe(4);
  tid.writeUInt32BE(rng.chance(0.05) ? rng.u32() : id, 0);
  parts.push(frame(T.attached, Buffer.concat([tid, packr.pack(msg)])));
  return { bytes: Buffer.concat(parts), what: 'snapshot transfer' };
}

/** What the protocol says the node must do with an input. */
export interface PeerExpectation {
  /** ACCEPT must arrive. */
  readonly accept: boolean;
  /** The code the node must count, or null when it counts none unless a message is refused. */
  readonly code: string | null;
  /** Codes the node may count instead, for frames the oracle cannot judge (messages). */
  readonly maybe: ReadonlySet<string>;
}

export function expectPeer(shape: PeerShape, b: Buffer): PeerExpectation {
  const none = (accept: boolean, maybe = new Set<string>()): PeerExpectation => ({
    accept,
    code: null,
    maybe,
  });
  const must = (code: string, accept = false, maybe = new Set<string>()): PeerExpectation => ({
    accept,
    code,
    maybe,
  });
  if (b.length < 4) return none(false);
  if (!b.subarray(0, 4).equals(PREFACE)) return must('TRANSPORT_HANDSHAKE_REFUSED');
  let at = 4;
  const next = (limit: number): { type: number; payload: Buffer } | string | null => {
    if (b.length - at < HEADER) return null;
    const length = b.readUInt32BE(at);
    const type = b.readUInt8(at + 8);
    if (length > limit) return 'TRANSPORT_FRAME_TOO_LARGE';
    if (type < 1 || type > T.goodbye) return 'TRANSPORT_BAD_FRAME';
    if (b.length - at - HEADER < length) return null;
    const payload = b.subarray(at + HEADER, at + HEADER + length);
    const crc = crc32c(payload, crc32c(Buffer.of(type))) >>> 0;
    if (crc !== b.readUInt32BE(at + 4)) return 'TRANSPORT_CHECKSUM_MISMATCH';
    at += HEADER + length;
    return { type, payload };
  };
  const first = next(maxHandshakeFrameBytes);
  if (first === null) return none(false);
  if (typeof first === 'string') return must(first);
  if (first.type !== T.hello) return must('TRANSPORT_BAD_FRAME');
  const verdict = judgeHello(shape, first.payload);
  if (typeof verdict === 'string') return must(verdict);
  const version = verdict.version;
  const maybe = new Set<string>();
  for (;;) {
    const f = next(maxFrameBytes);
    if (f === null) return none(true, maybe);
    if (typeof f === 'string') return must(f, true, maybe);
    // A chunk may have left a snapshot transfer open, inside which HEARTBEATS is refused.
    const inTransfer = maybe.has('TRANSPORT_ATTACHMENT_TOO_LARGE');
    if (f.type === T.heartbeats && version >= HEARTBEATS_VERSION) {
      const code = judgeHeartbeats(f.payload);
      if (inTransfer) maybe.add('TRANSPORT_BAD_FRAME');
      if (code !== null) return must(code, true, maybe);
    } else if (f.type === T.goodbye && version >= GOODBYE_VERSION) continue;
    else if (f.type === T.message) maybe.add('TRANSPORT_BAD_MESSAGE').add('TRANSPORT_BAD_FRAME');
    else if (f.type === T.chunk)
      maybe.add('TRANSPORT_BAD_FRAME').add('TRANSPORT_ATTACHMENT_TOO_LARGE');
    else if (f.type === T.attached) maybe.add('TRANSPORT_BAD_FRAME').add('TRANSPORT_BAD_MESSAGE');
    else if (maybe.size === 0) return must('TRANSPORT_BAD_FRAME', true);
    else return must('TRANSPORT_BAD_FRAME', true, maybe);
  }
}

/**
 * The HELLO's code: BAD_FRAME when malformed, HANDSHAKE_REFUSED when refused; the version the
 * connection speaks when it is accepted.
 */
function judgeHello(shape: PeerShape, payload: Buffer): string | { version: number } {
  let h: unknown;
  try {
    h = unpackr.unpack(payload);
  } catch {
    return 'TRANSPORT_BAD_FRAME';
  }
  if (h === null || typeof h !== 'object' || Array.isArray(h)) return 'TRANSPORT_BAD_FRAME';
  const o = h as Record<string, unknown>;
  const num = (k: string): boolean => Number.isSafeInteger(o[k]) && (o[k] as number) >= 0;
  const str = (k: string): boolean => typeof o[k] === 'string' && o[k].length <= 256;
  const opt = (k: string, ok: boolean): boolean => o[k] === undefined || ok;
  if (!num('minVersion') || !num('maxVersion') || !str('clusterId') || !num('from') || !num('to'))
    return 'TRANSPORT_BAD_FRAME';
  if (
    !opt('hasLog', typeof o['hasLog'] === 'boolean') ||
    !opt('peer', str('peer')) ||
    !opt('client', str('client'))
  )
    return 'TRANSPORT_BAD_FRAME';
  const version = Math.min(o['maxVersion'] as number, VERSION_MAX);
  if (o['clusterId'] !== shape.clusterId) return 'TRANSPORT_HANDSHAKE_REFUSED';
  if (version < Math.max(o['minVersion'] as number, VERSION_MIN))
    return 'TRANSPORT_HANDSHAKE_REFUSED';
  if (o['to'] !== shape.target) return 'TRANSPORT_HANDSHAKE_REFUSED';
  if (!shape.peerIds.includes(o['from'] as number)) return 'TRANSPORT_HANDSHAKE_REFUSED';
  return { version };
}

interface PeerSeen {
  readonly accepted: boolean;
  readonly refuseFrame: boolean;
  readonly localPort: number;
}

function converse(port: number, bytes: Buffer): Promise<PeerSeen> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port, noDelay: true });
    let got = Buffer.alloc(0);
    let localPort = 0;
    socket.on('connect', () => {
      localPort = socket.localPort ?? 0;
      socket.write(bytes);
      socket.end();
    });
    socket.on('data', (c: Buffer) => {
      got = Buffer.concat([got, c]);
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      const type = got.length >= HEADER ? got.readUInt8(8) : 0;
      resolve({ accepted: type === T.accept, refuseFrame: type === T.refuse, localPort });
    });
  });
}

export function judgePeer(
  e: PeerExpectation,
  seen: PeerSeen,
  events: readonly { code: string; reason: string }[],
): Verdict {
  const codes = events.map((x) => x.code);
  const saw = `saw ${seen.accepted ? 'ACCEPT' : seen.refuseFrame ? 'REFUSE' : 'no answer'}, events [${events.map((x) => `${x.code}: ${x.reason}`).join('; ')}]`;
  if (events.length > 1)
    return { ok: false, failure: `more than one error counted for one connection: ${saw}` };
  if (e.accept !== seen.accepted)
    return { ok: false, failure: `expected ${e.accept ? '' : 'no '}ACCEPT; ${saw}` };
  const code = codes[0] ?? null;
  if (code === 'TRANSPORT_HANDSHAKE_REFUSED' && !seen.refuseFrame)
    return { ok: false, failure: `a refusal counted without a REFUSE frame sent; ${saw}` };
  if (code === e.code) return { ok: true, outcome: code ?? (e.accept ? 'accepted' : 'closed') };
  if (code !== null && e.maybe.has(code)) return { ok: true, outcome: code };
  return {
    ok: false,
    failure: `expected ${e.code ?? 'no error'}${e.maybe.size > 0 ? ` or one of ${[...e.maybe].join(', ')}` : ''}; ${saw}`,
  };
}

export function peerTarget(c: PeerCluster): FuzzTarget {
  const shape: PeerShape = {
    clusterId: c.clusterId,
    target: 1,
    absentIds: c.absentIds,
    peerIds: [2, 3, 4, 5],
  };
  const before = sumErrors(c);
  const reportedBefore = c.eventsReported();
  return {
    protocol: 'peer',
    generate: (rng) => generatePeer(shape, rng),
    exercise: async (input) => {
      const seen = await converse(c.peerPort, input.bytes);
      // The transport reported its events before it closed the socket, so they are all here.
      const events = c.takeEvents(`127.0.0.1:${seen.localPort}`);
      const handler = c.handlerErrors.splice(0);
      if (handler.length > 0)
        return { ok: false, failure: `node failed to handle a message: ${handler.join('; ')}` };
      return judgePeer(expectPeer(shape, input.bytes), seen, events);
    },
    stillServes: async () => {
      const counted = sumErrors(c) - before;
      const reported = c.eventsReported() - reportedBefore;
      if (counted !== reported)
        return `node 1 counted ${counted} errors in its transport stats, its events named ${reported}`;
      return c.commits();
    },
    notes: () =>
      c.unattributed().map((e) => `an event of no fuzz connection (node 1's own link): ${e}`),
    close: () => c.close(),
  };
}

/** Every error node 1's transport counted: per peer and anonymous. */
function sumErrors(c: PeerCluster): number {
  const s = c.stats();
  let n = 0;
  for (const v of Object.values(s.anonymousErrors)) n += v ?? 0;
  for (const p of s.peers.values()) for (const v of Object.values(p.errors)) n += v ?? 0;
  return n;
}
