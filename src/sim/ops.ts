// The simulated clients' writes, as the product's backend encodes them (one put in a command
// envelope with the client's session, src/server/kv-backend.ts), and their decoding for the
// checkers, which recognise a write in any log by its unique value.

import { Packr } from 'msgpackr';
import type { KvStateMachine } from '../server/kv-backend.js';

/** One client write: client `c` sets key `k` to `v` as its `s`-th write. */
export interface ClientWrite {
  readonly c: number;
  readonly s: number;
  readonly k: string;
  readonly v: string;
}

/** Small limits: the simulated keys and values are a few bytes. */
export const SIM_KV_LIMITS = { maxKeyBytes: 64, maxValueBytes: 64 } as const;

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
 * The client write an entry carries, or null for anything else. Only the simulator's own
 * writes reach its logs, so anything not of their shape is reported by the caller.
 */
export function decodeWrite(data: Uint8Array): ClientWrite | null {
  const env = packr.unpack(data) as {
    c?: unknown;
    s?: unknown;
    x?: { success?: { key?: unknown; value?: unknown }[] };
  } | null;
  const put = env?.x?.success?.[0];
  if (
    typeof env?.c !== 'string' ||
    !/^c\d+$/.test(env.c) ||
    typeof env.s !== 'number' ||
    !(put?.key instanceof Uint8Array) ||
    !(put.value instanceof Uint8Array)
  ) {
    return null;
  }
  return {
    c: Number(env.c.slice(1)),
    s: env.s,
    k: decoder.decode(put.key),
    v: decoder.decode(put.value),
  };
}
