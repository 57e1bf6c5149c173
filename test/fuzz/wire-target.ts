// The binary client protocol under fuzz (docs/CLIENT-PROTOCOL.md): every input is the raw
// bytes of one connection. `structured` inputs are a valid handshake and one to three request
// frames `[id, type, body]` whose body, type or id was mutated; `mutated` ones are those bytes
// mutated (lengths, msgpack, the handshake); `handshake` ones a mutated handshake map;
// `random` ones random bytes, half of them after a valid handshake.
//
// The oracle splits the input into frames itself (u32 length, then the payload) and expects,
// for every whole frame: the handshake answered (a map) or refused, and every request with a
// usable id answered `[id, 0|1|2, ...]`, unless the node sent a connection error `[0, 1, error]`
// and closed. Every error carries a code a node sends, never INTERNAL. A connection the node
// closes without a connection error, while requests are unanswered, is a failure; so is one
// that neither answers nor closes. Once every whole frame is answered the fuzzer half-closes,
// which ends a connection holding a cut frame.

import { connect } from 'node:net';
import { Packr, Unpackr } from 'msgpackr';
import { isErrorCode } from '../../src/base/errors.js';
import { isNodeErrorCode } from '../../src/api/errors.js';
import type { FuzzRng } from './gen.js';
import { mutateBytes, mutateJson, randomJson } from './gen.js';
import { bodyTemplates, fieldPool, wireType } from './bodies.js';
import { unlessLogged, type FuzzInput, type FuzzTarget, type Verdict } from './run.js';

const packr = new Packr({ useRecords: false, moreTypes: false, variableMapSize: true });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });
const wireTemplates = bodyTemplates.filter((t) => t.httpOnly !== true);

function frame(value: unknown): Buffer {
  const p = packr.pack(value);
  const h = Buffer.allocUnsafe(4);
  h.writeUInt32BE(p.length, 0);
  return Buffer.concat([h, p]);
}

const handshake = { magic: 'flotilla', version: 1, clientId: 'fuzz' };
const handshakeFrame = frame(handshake);

export function generateWire(rng: FuzzRng): FuzzInput {
  const r = rng.int(100);
  if (r < 10) {
    const after = rng.chance(0.5);
    const body = rng.chance(0.5)
      ? rng.bytes(rng.length(300))
      : (() => {
          const p = rng.bytes(rng.length(300));
          const h = Buffer.allocUnsafe(4);
          h.writeUInt32BE(p.length, 0);
          return Buffer.concat([h, p]);
        })();
    return {
      kind: 'random',
      what: after ? 'random bytes after a handshake' : 'random bytes',
      bytes: after ? Buffer.concat([handshakeFrame, body]) : body,
    };
  }
  if (r < 15) {
    const h = mutateJson(rng, handshake, ['magic', 'version', 'clientId'], new Set());
    return { kind: 'handshake', what: 'a mutated handshake', bytes: frame(h) };
  }
  const n = rng.chance(0.8) ? 1 : 2 + rng.int(2);
  const frames = [handshakeFrame];
  const what: string[] = [];
  for (let i = 0; i < n; i++) {
    const t = rng.pick(wireTemplates);
    let type: unknown = wireType(t.path);
    let id: unknown = 1 + i + rng.int(3) * 1000;
    let body: unknown = rng.chance(0.85)
      ? mutateJson(rng, t.body, fieldPool, new Set(t.pinned ?? []))
      : rng.chance(0.5)
        ? t.body
        : randomJson(rng, 3, fieldPool);
    if (rng.chance(0.05)) type = rng.pick(['status', 'cancel', 'queue.nope', 'PUT', '', 7, null]);
    if (type === 'cancel') body = { id: rng.int(3) };
    if (rng.chance(0.05)) id = rng.pick([0, -1, 1.5, 2 ** 53, 'one', null, 1]);
    if (rng.chance(0.03)) body = rng.pick([new Uint8Array([1, 2]), new Date(0), NaN, [body]]);
    const req: unknown[] = [id, type, body];
    if (rng.chance(0.03)) req.push(rng.pick([null, 0, {}]));
    if (rng.chance(0.02)) req.pop();
    frames.push(frame(req));
    what.push(String(type));
  }
  const bytes = Buffer.concat(frames);
  if (r < 35) return { kind: 'mutated', what: what.join(','), bytes: mutateBytes(rng, bytes) };
  return { kind: 'structured', what: what.join(','), bytes };
}

/** The whole frames of an input and whether bytes of a cut frame follow them. */
function splitFrames(
  b: Buffer,
  maxFrameBytes: number,
): { frames: Buffer[]; cut: boolean; oversized: boolean } {
  const frames: Buffer[] = [];
  let at = 0;
  while (b.length - at >= 4) {
    const n = b.readUInt32BE(at);
    if (n > maxFrameBytes) return { frames, cut: false, oversized: true };
    if (b.length - at - 4 < n) break;
    frames.push(b.subarray(at + 4, at + 4 + n));
    at += 4 + n;
  }
  return { frames, cut: at < b.length, oversized: false };
}

/** The request ids the node owes an answer, from the whole frames after the handshake. */
function expectedIds(frames: readonly Buffer[]): Set<number> {
  const ids = new Set<number>();
  for (const p of frames.slice(1)) {
    try {
      const v = unpackr.unpack(p) as unknown;
      if (Array.isArray(v) && Number.isSafeInteger(v[0]) && (v[0] as number) > 0)
        ids.add(v[0] as number);
    } catch {
      // Not msgpack: the node must refuse the connection, which the oracle sees as its close.
    }
  }
  return ids;
}

interface Seen {
  readonly frames: unknown[];
  /** Requests left unanswered when the connection closed. */
  readonly owedLeft: number;
  /** A whole handshake frame was sent and neither answered nor refused. */
  readonly handshakeOwed: boolean;
  /** A frame's length was over the limit. */
  readonly oversized: boolean;
  /** The connection's refusal `[0, 1, error]`, if it was sent. */
  readonly connectionError: Record<string, unknown> | null;
  readonly undecodable: boolean;
}

function converse(port: number, bytes: Buffer, maxFrameBytes: number): Promise<Seen> {
  // A frame over the limit always ends in a connection error (its own, or an earlier frame's),
  // so the fuzzer waits for the node to close rather than half-closing.
  const { frames, oversized } = splitFrames(bytes, maxFrameBytes);
  const owed = expectedIds(frames);
  const wantHandshake = frames.length > 0 || oversized;
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port, noDelay: true });
    const seen: unknown[] = [];
    let pending = Buffer.alloc(0);
    let connectionError: Record<string, unknown> | null = null;
    let undecodable = false;
    let handshakeAnswered = false;
    let halfClosed = false;
    const maybeHalfClose = (): void => {
      // Everything whole was answered (or nothing can be): end our side, the node closes.
      if (halfClosed || connectionError !== null || oversized) return;
      if ((!wantHandshake || handshakeAnswered) && owed.size === 0) {
        halfClosed = true;
        socket.end();
      }
    };
    socket.on('connect', () => {
      socket.write(bytes);
      maybeHalfClose();
    });
    socket.on('data', (c: Buffer) => {
      pending = Buffer.concat([pending, c]);
      const { frames: got, cut } = splitFrames(pending, 64 * 1024 * 1024);
      let used = 0;
      for (const p of got) {
        used += 4 + p.length;
        let v: unknown;
        try {
          v = unpackr.unpack(p);
        } catch {
          undecodable = true;
          continue;
        }
        seen.push(v);
        if (!Array.isArray(v)) {
          handshakeAnswered = true;
          continue;
        }
        const [id, status, payload] = v as [unknown, unknown, unknown];
        if (id === 0) connectionError = (payload ?? {}) as Record<string, unknown>;
        else if (status === 0 || status === 1) owed.delete(id as number);
        else if (status === 2) {
          // A watch opened: its stream would go on; it counts as answered.
          owed.delete(id as number);
        }
      }
      pending = cut || used < pending.length ? pending.subarray(used) : Buffer.alloc(0);
      maybeHalfClose();
    });
    socket.on('error', () => undefined);
    // If the node neither answers nor closes, the driver's bound reports the hang.
    socket.on('close', () =>
      resolve({
        frames: seen,
        connectionError,
        undecodable,
        owedLeft: owed.size,
        handshakeOwed: wantHandshake && !handshakeAnswered,
        oversized,
      }),
    );
  });
}

function checkError(e: unknown, where: string): string | null {
  const err = (e ?? {}) as { code?: unknown; message?: unknown; indefinite?: unknown };
  if (typeof err.code !== 'string' || !isErrorCode(err.code) || !isNodeErrorCode(err.code))
    return `${where}: error without a code a node sends: ${JSON.stringify(e)?.slice(0, 200)}`;
  if (err.code === 'INTERNAL')
    return `${where}: INTERNAL (an exception the node did not expect): ${String(err.message)}`;
  if (typeof err.message !== 'string' || err.message === '')
    return `${where}: ${err.code} without a message`;
  if (typeof err.indefinite !== 'boolean') return `${where}: ${err.code} without "indefinite"`;
  return null;
}

export function judgeWire(s: Seen): Verdict {
  if (s.undecodable) return { ok: false, failure: 'the node sent a frame that is not msgpack' };
  let outcome = 'ok';
  let answered = false;
  for (const f of s.frames) {
    if (!Array.isArray(f)) {
      answered = true;
      continue;
    }
    const [id, status, payload] = f as [unknown, unknown, unknown];
    if (!Number.isSafeInteger(id) || (status !== 0 && status !== 1 && status !== 2))
      return {
        ok: false,
        failure: `an answer frame that is not [id, 0|1|2, ...]: ${JSON.stringify(f).slice(0, 200)}`,
      };
    answered = true;
    if (status === 1) {
      const bad = checkError(payload, `answer ${String(id)}`);
      if (bad !== null) return { ok: false, failure: bad };
      if (outcome === 'ok') outcome = String((payload as { code: string }).code);
    }
  }
  if (s.connectionError !== null) return { ok: true, outcome: String(s.connectionError['code']) };
  if (s.oversized)
    return {
      ok: false,
      failure: 'a frame over the limit, and no connection error before the close',
    };
  if (s.handshakeOwed)
    return { ok: false, failure: 'closed with the handshake neither answered nor refused' };
  if (s.owedLeft > 0)
    return {
      ok: false,
      failure: `closed with ${s.owedLeft} request(s) unanswered and no connection error`,
    };
  return { ok: true, outcome: answered ? outcome : 'closed' };
}

export interface WireTargetOptions {
  /** What the node logged at error level since last taken: each line is a bug. */
  readonly internalErrors: string[];
  readonly port: number;
  readonly maxFrameBytes: number;
  readonly stillServes: () => Promise<string | null>;
  readonly clear?: () => Promise<void>;
  readonly close: () => Promise<void>;
}

export function wireTarget(o: WireTargetOptions): FuzzTarget {
  return {
    protocol: 'wire',
    generate: generateWire,
    exercise: async (input) =>
      unlessLogged(
        judgeWire(await converse(o.port, input.bytes, o.maxFrameBytes)),
        o.internalErrors,
      ),
    stillServes: o.stillServes,
    ...(o.clear === undefined ? {} : { clear: o.clear }),
    close: o.close,
  };
}
