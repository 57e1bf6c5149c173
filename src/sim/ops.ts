// The simulated clients' writes, as the product's backend encodes them (one put in a command
// envelope with the client's session, src/server/kv-service.ts), and their decoding for the
// checkers, which recognise a write in any log by its unique value.

import { Packr } from 'msgpackr';
import type { Session } from '../api/routes.js';
import { decodeEnvelope } from '../host/envelope.js';
import { defaultSessionLimits, type SessionLimits } from '../host/sessions.js';
import type { KvStateMachine, TxnCommand } from '../kv/machine.js';

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

/** The transaction a client write is: one put, as the API would validate it. */
export function writeTxn(w: ClientWrite): TxnCommand {
  const put = {
    kind: 'put' as const,
    key: encoder.encode(w.k),
    value: encoder.encode(w.v),
    prevKv: false,
  };
  return { compare: [], success: [put], failure: [] };
}

/** The session a client write is sent with (the simulator's planted bugs may drop it). */
export type WriteSession = (w: ClientWrite) => Session | null;

/**
 * A simulated client has one write at a time, so it awaits no earlier one: each write carries
 * its own seq as its acknowledgement mark, and the sessions keep one result per client.
 */
export const clientSession: WriteSession = (w) => ({
  clientId: clientId(w.c),
  seq: w.s,
  ackedBelow: w.s,
});

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
  let payload: Uint8Array;
  try {
    payload = decodeEnvelope(data).payload;
  } catch {
    return null;
  }
  const txn = packr.unpack(payload) as { success?: { key?: unknown; value?: unknown }[] } | null;
  const put = txn?.success?.[0];
  if (!(put?.key instanceof Uint8Array) || !(put.value instanceof Uint8Array)) return null;
  const v = decoder.decode(put.value);
  const m = /^c(\d+)\.(\d+)$/.exec(v);
  if (m === null) return null;
  return { c: Number(m[1]), s: Number(m[2]), k: decoder.decode(put.key), v };
}

/**
 * The revision a compaction entry compacts to (the leader's automatic compaction), or null
 * when the entry is not one.
 */
export function decodeCompaction(data: Uint8Array): number | null {
  try {
    const cmd = packr.unpack(decodeEnvelope(data).payload) as { compact?: unknown } | null;
    return typeof cmd?.compact === 'number' ? cmd.compact : null;
  } catch {
    return null;
  }
}

/** Whether an entry carries a range split (src/ranges/range-machine.ts), a harness command. */
export function isSplitEntry(data: Uint8Array): boolean {
  return carries(data, 'split');
}

/**
 * Whether an entry records a range's replicas after a move, or marks them due to be recorded
 * before a learner's removal (range-machine.ts `replicas`, `recordDue`).
 */
export function isReplicasEntry(data: Uint8Array): boolean {
  return carries(data, 'replicas') || carries(data, 'recordDue');
}

function carries(data: Uint8Array, kind: 'split' | 'replicas' | 'recordDue'): boolean {
  try {
    const cmd = packr.unpack(decodeEnvelope(data).payload) as Record<string, unknown> | null;
    return cmd !== null && typeof cmd === 'object' && kind in cmd;
  } catch {
    return false;
  }
}
