// The simulated clients' writes, as the product's backend encodes them (one put in a command
// envelope with the client's session, src/server/kv-backend.ts), and their decoding for the
// checkers, which recognise a write in any log by its unique value.

import { Packr } from 'msgpackr';
import type { KvStateMachine } from '../server/kv-backend.js';
import { defaultSessionLimits, type SessionLimits } from '../server/sessions.js';

/** One client write: client `c` sets key `k` to `v` as its `s`-th write. */
export interface ClientWrite {
  readonly c: number;
  readonly s: number;
  readonly k: string;
  readonly v: string;
}

/** Small limits: the simulated keys and values are a few bytes. */
export const SIM_KV_LIMITS = { maxKeyBytes: 64, maxValueBytes: 64 } as const;

/**
 * A simulated client has one write in flight, so a window of a few sequence numbers is as
 * good as the default 256; it keeps each session's remembered results, which every snapshot
 * packs, small (snapshots are taken every few entries in many seeds).
 */
export const SIM_SESSION_LIMITS: SessionLimits = { ...defaultSessionLimits, window: 8 };

const packr = new Packr({ useRecords: false, moreTypes: false });
const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function clientId(c: number): string {
  return `c${c}`;
}

/** Encodes `w` exactly as the backend's write path does, stamped with the node's clock. */
export function encodeWrite(kv: KvStateMachine, w: ClientWrite, timeMs: number): Uint8Array {
  const put = {
    kind: 'put' as const,
    key: encoder.encode(w.k),
    value: encoder.encode(w.v),
    prevKv: false,
  };
  return kv.encode(
    { compare: [], success: [put], failure: [] },
    { clientId: clientId(w.c), seq: w.s },
    timeMs,
  );
}

/** The value of `key` on `kv` (what a read served there answers), undefined when unset. */
export function readValue(kv: KvStateMachine, key: string): string | undefined {
  const r = kv.range({
    range: { key: encoder.encode(key), rangeEnd: null },
    limit: 0,
    countOnly: false,
  });
  const v = r.kvs[0]?.value;
  return v === undefined ? undefined : decoder.decode(v);
}

/**
 * The client write an entry carries, or null for anything else. The client and sequence
 * number are read from the value (`c<client>.<seq>`, unique to one write) rather than from the
 * session, so a write encoded without its session is still recognised.
 */
export function decodeWrite(data: Uint8Array): ClientWrite | null {
  const env = packr.unpack(data) as {
    x?: { success?: { key?: unknown; value?: unknown }[] };
  } | null;
  const put = env?.x?.success?.[0];
  if (!(put?.key instanceof Uint8Array) || !(put.value instanceof Uint8Array)) return null;
  const v = decoder.decode(put.value);
  const m = /^c(\d+)\.(\d+)$/.exec(v);
  if (m === null) return null;
  return { c: Number(m[1]), s: Number(m[2]), k: decoder.decode(put.key), v };
}
