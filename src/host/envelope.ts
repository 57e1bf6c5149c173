// The command envelope: what one normal log entry holds. Versioned, so that a later release
// can read what an earlier one wrote, and generic: the payload is the state machine's own
// encoding, which the host never looks into.
//
//   [format, kind, client, seq, timeMs, payload]              msgpack array, format 1
//   [format, kind, client, seq, timeMs, payload, ackedBelow]  the same with the client's mark
//
//   format  1
//   kind    1 = a client command; 2 = a member directory change (directory.ts), applied by the
//           session layer itself, with client '' and seq 0; 3 = the cluster's feature level
//           raised (src/base/features.ts; payload: the level, a msgpack integer), applied by
//           the session layer too, with client '' and seq 0. A release before a kind refuses
//           its entries as BAD_COMMAND, the same on every replica, and changes nothing.
//   client  the client's session id, '' for a write without a session
//   seq     the client's sequence number for this write (0 without a session)
//   timeMs  the proposing leader's clock, the only time a state machine may use
//   payload the state machine's command (bin)
//   ackedBelow  optional, a client command with a session only: the lowest sequence number
//           its client still awaits an answer for (1 to seq); the session layer forgets the
//           results below it (Raft thesis §6.3). A release before the session acknowledgement
//           feature (src/base/features.ts, level 4) refuses a 7-element envelope as
//           BAD_COMMAND, so a node writes one only once the cluster's level has the feature.

import { Packr } from 'msgpackr';
import { isFeatureLevel } from '../base/features.js';
import { defaultLimits } from '../base/limits.js';

export const ENVELOPE_FORMAT = 1;
export const KIND_COMMAND = 1;
export const KIND_DIRECTORY = 2;
export const KIND_FEATURE_LEVEL = 3;
/** Longest client id, in UTF-16 code units (3 bytes each in UTF-8 at worst). */
export const MAX_CLIENT_ID_CHARS = defaultLimits.maxClientIdChars;

export interface Envelope {
  /** KIND_COMMAND when absent. */
  readonly kind?: typeof KIND_COMMAND | typeof KIND_DIRECTORY | typeof KIND_FEATURE_LEVEL;
  readonly client: string;
  readonly seq: number;
  readonly timeMs: number;
  readonly payload: Uint8Array;
  /**
   * The lowest sequence number the client still awaits (1 to `seq`): it has every answer
   * below it. Absent: a client that says none (the session keeps its whole window).
   */
  readonly ackedBelow?: number;
}

const packr = new Packr({ useRecords: false, moreTypes: false, variableMapSize: true });

/** The payload of a KIND_FEATURE_LEVEL entry. */
export function encodeFeatureLevel(level: number): Uint8Array {
  return packr.pack(level);
}

/** Decodes a KIND_FEATURE_LEVEL payload, trusting nothing. */
export function decodeFeatureLevel(data: Uint8Array): number {
  let raw: unknown;
  try {
    raw = packr.unpack(data);
  } catch (err) {
    throw new Error(`not msgpack (${(err as Error).message})`);
  }
  if (!isFeatureLevel(raw))
    throw new Error(`bad feature level ${JSON.stringify(raw) ?? typeof raw}`);
  return raw;
}

/**
 * Entries from this size up get buffers of their own. msgpackr returns a view into its working
 * buffer, which it makes at least four times the largest message so far and never shrinks; an
 * entry is kept (the in-memory log, until compaction), and a large one kept as such a view held
 * a buffer several times its size: 1,000 writes of 256 KiB pinned 2.6 GB on a leader
 * (BENCHMARKS.md, "Memory: large values"). Smaller entries share the working buffer with the
 * entries around them, which the log keeps and drops together.
 */
export const OWN_BUFFER_FROM_BYTES = 16 * 1024;

export function encodeEnvelope(e: Envelope): Uint8Array {
  const fields = [ENVELOPE_FORMAT, e.kind ?? KIND_COMMAND, e.client, e.seq, e.timeMs, e.payload];
  const out = packr.pack(e.ackedBelow === undefined ? fields : [...fields, e.ackedBelow]);
  return out.byteLength < OWN_BUFFER_FROM_BYTES ? out : Uint8Array.prototype.slice.call(out);
}

/**
 * Bytes an envelope adds around a payload of `payloadBytes` at worst: the longest client id
 * in 3-byte characters, the largest sequence number, a 9-byte time. Proposal limits are
 * computed with it, so a payload the API accepted always fits in one entry.
 */
export function envelopeOverheadBytes(payloadBytes: number): number {
  const worst = encodeEnvelope({
    client: '\uffff'.repeat(MAX_CLIENT_ID_CHARS),
    seq: Number.MAX_SAFE_INTEGER,
    timeMs: 2 ** 53,
    payload: new Uint8Array(0),
    ackedBelow: Number.MAX_SAFE_INTEGER,
  }).length;
  return worst - binHeaderBytes(0) + binHeaderBytes(payloadBytes);
}

/** Bytes msgpack spends on the header of a `bin` of `n` bytes. */
export function binHeaderBytes(n: number): number {
  return n < 0x100 ? 2 : n < 0x10000 ? 3 : 5;
}

/** Decodes an entry's bytes, trusting nothing: any deviation is an Error naming it. */
export function decodeEnvelope(data: Uint8Array): Envelope {
  let raw: unknown;
  try {
    raw = packr.unpack(data);
  } catch (err) {
    throw new Error(`not msgpack (${(err as Error).message})`);
  }
  if (!Array.isArray(raw) || (raw.length !== 6 && raw.length !== 7))
    throw new Error('not a command envelope');
  const [format, kind, client, seq, timeMs, payload, ackedBelow] = raw as unknown[];
  if (format !== ENVELOPE_FORMAT)
    throw new Error(`envelope format ${String(format)} is not ${ENVELOPE_FORMAT}`);
  if (kind !== KIND_COMMAND && kind !== KIND_DIRECTORY && kind !== KIND_FEATURE_LEVEL)
    throw new Error(`unknown envelope kind ${String(kind)}`);
  if (typeof client !== 'string' || client.length > MAX_CLIENT_ID_CHARS)
    throw new Error('bad client id');
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0)
    throw new Error('bad sequence number');
  if (typeof timeMs !== 'number' || !Number.isFinite(timeMs) || timeMs < 0)
    throw new Error('bad time');
  if (!(payload instanceof Uint8Array)) throw new Error('bad payload');
  if (raw.length === 6) return { kind, client, seq, timeMs, payload };
  if (kind !== KIND_COMMAND || client === '')
    throw new Error('an acknowledgement mark without a client session');
  if (typeof ackedBelow !== 'number' || !Number.isSafeInteger(ackedBelow) || ackedBelow < 1)
    throw new Error(`bad acknowledgement mark ${String(ackedBelow)}`);
  if (ackedBelow > seq)
    throw new Error(`acknowledgement mark ${ackedBelow} is above the sequence number ${seq}`);
  return { kind, client, seq, timeMs, payload, ackedBelow };
}
