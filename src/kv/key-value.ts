// One version of a key: as every layer above the store renders it (KeyValue, bytes), and as the
// store keeps it (StoredKv, strings), with the conversions between the two.

import { latin1Bytes, latin1String } from '../host/latin1.js';

export interface KeyValue {
  readonly key: Uint8Array;
  readonly value: Uint8Array;
  readonly createRevision: number;
  readonly modRevision: number;
  readonly version: number;
  /** The lease the key is attached to (deleted with it); absent or 0 for none. */
  readonly lease?: number;
}

/**
 * A version as the store keeps it: the key and the value as latin1 strings, one char per byte
 * (so string order is byte order, and the key is the same string the store's map and index
 * hold). A string is one object on the V8 heap that a collection marks without looking
 * inside; a Uint8Array of a few hundred bytes is a view, an ArrayBuffer and a block outside
 * the heap that each collection must account for, and allocating it took about 1 µs against
 * 0.1–0.2 µs for the string. At a million keys of 256 bytes that was about half of the
 * store's resident memory and of a full collection's time (bench/kv/store-scale.ts,
 * BENCHMARKS.md "The store's own cost of size").
 */
export interface StoredKv {
  readonly key: string;
  readonly value: string;
  readonly createRevision: number;
  readonly modRevision: number;
  readonly version: number;
  /** As KeyValue's: present exactly when the version was written with (or restored with) it. */
  readonly lease?: number;
}

/** Bytes as a latin1 string (src/host/latin1.ts): the store's form of keys and values. */
export const k = latin1String;

/** A latin1 string back to its bytes, a fresh array (the inverse of `k`). */
export const bytesOf = latin1Bytes;

/** A stored version rendered for the layers above: fresh bytes, the fields in one order. */
export function toKeyValue(r: StoredKv): KeyValue {
  // Field order and presence as the version was written: a snapshot packs these objects, and
  // every replica's snapshot of the same state must be the same bytes.
  return r.lease === undefined
    ? {
        key: bytesOf(r.key),
        value: bytesOf(r.value),
        createRevision: r.createRevision,
        modRevision: r.modRevision,
        version: r.version,
      }
    : {
        key: bytesOf(r.key),
        value: bytesOf(r.value),
        createRevision: r.createRevision,
        modRevision: r.modRevision,
        version: r.version,
        lease: r.lease,
      };
}

/** A version from a snapshot (or a test) as the store keeps it. */
export function toStored(kv: KeyValue): StoredKv {
  return kv.lease === undefined
    ? {
        key: k(kv.key),
        value: k(kv.value),
        createRevision: kv.createRevision,
        modRevision: kv.modRevision,
        version: kv.version,
      }
    : {
        key: k(kv.key),
        value: k(kv.value),
        createRevision: kv.createRevision,
        modRevision: kv.modRevision,
        version: kv.version,
        lease: kv.lease,
      };
}
