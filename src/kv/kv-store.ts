// The key-value state machine: etcd v3's data model (REFERENCES.md). One cluster-wide
// revision rises with every write transaction that changes something; each key carries its
// create revision, mod revision and version (1 at creation, reset when the key is deleted).
// Keys are bytes ordered bytewise. Pure and deterministic: no I/O, no clock.
//
// Keys are held in a Map for point lookups and in a chunked sorted index for ranges
// (sorted-keys.ts): a new key costs O(log n) plus a splice within one chunk of at most 1,024;
// lookups O(1); a range O(log n + k). Like etcd, the first write of an empty store gets
// revision 2.

import { SortedKeys } from './sorted-keys.js';

export interface KeyValue {
  readonly key: Uint8Array;
  readonly value: Uint8Array;
  readonly createRevision: number;
  readonly modRevision: number;
  readonly version: number;
}

export interface Range {
  readonly key: Uint8Array;
  /** Exclusive end; null for the single key; [0] means "to the end of the keyspace". */
  readonly rangeEnd: Uint8Array | null;
}

export type Op =
  | {
      readonly kind: 'put';
      readonly key: Uint8Array;
      readonly value: Uint8Array;
      readonly prevKv: boolean;
    }
  | { readonly kind: 'delete'; readonly range: Range; readonly prevKv: boolean }
  | {
      readonly kind: 'range';
      readonly range: Range;
      readonly limit: number;
      readonly countOnly: boolean;
    };

export interface Compare {
  readonly key: Uint8Array;
  readonly target: 'value' | 'version' | 'createRevision' | 'modRevision';
  readonly op: '=' | '!=' | '<' | '>';
  readonly value: Uint8Array | number;
}

export interface Txn {
  readonly compare: readonly Compare[];
  readonly success: readonly Op[];
  readonly failure: readonly Op[];
}

export type OpResult =
  | { readonly kind: 'put'; readonly prevKv: KeyValue | null }
  | { readonly kind: 'delete'; readonly deleted: number; readonly prevKvs: readonly KeyValue[] }
  | {
      readonly kind: 'range';
      readonly kvs: readonly KeyValue[];
      readonly count: number;
      readonly more: boolean;
    };

export interface TxnResult {
  readonly revision: number;
  readonly succeeded: boolean;
  readonly results: readonly OpResult[];
}

/** Bytes as a latin1 string: one char per byte, so string order is byte order. */
function k(bytes: Uint8Array): string {
  let s = '';
  for (let i = 0; i < bytes.length; i += 4096) {
    s += String.fromCharCode(...bytes.subarray(i, i + 4096));
  }
  return s;
}

export class KvStore {
  private rev = 1;
  private readonly map = new Map<string, KeyValue>();
  /** Invariant: exactly the keys of `map`. */
  private keys = new SortedKeys();

  revision(): number {
    return this.rev;
  }

  size(): number {
    return this.map.size;
  }

  /** Applies a transaction: compares, then one branch. Raises the revision once if it wrote. */
  apply(txn: Txn): TxnResult {
    const succeeded = txn.compare.every((c) => this.holds(c));
    const ops = succeeded ? txn.success : txn.failure;
    const next = this.rev + 1;
    let wrote = false;
    const results: OpResult[] = [];
    for (const op of ops) {
      switch (op.kind) {
        case 'put':
          results.push({ kind: 'put', prevKv: this.put(op.key, op.value, next, op.prevKv) });
          wrote = true;
          break;
        case 'delete': {
          const r = this.deleteRange(op.range, op.prevKv);
          if (r.deleted > 0) wrote = true;
          results.push(r);
          break;
        }
        case 'range':
          results.push(this.range(op.range, op.limit, op.countOnly));
          break;
      }
    }
    if (wrote) this.rev = next;
    return { revision: this.rev, succeeded, results };
  }

  get(key: Uint8Array): KeyValue | undefined {
    return this.map.get(k(key));
  }

  /** Keys in [range.key, range.rangeEnd) in byte order; `limit` 0 means no limit. */
  range(range: Range, limit: number, countOnly: boolean): Extract<OpResult, { kind: 'range' }> {
    if (range.rangeEnd === null) {
      const kv = this.map.get(k(range.key));
      const kvs = kv === undefined ? [] : [kv];
      return { kind: 'range', kvs: countOnly ? [] : kvs, count: kvs.length, more: false };
    }
    const [from, to] = bounds(range);
    if (countOnly) return { kind: 'range', kvs: [], count: this.keys.count(from, to), more: false };
    const { keys, count } = this.keys.scan(from, to, limit);
    const kvs = keys.map((key) => this.map.get(key) as KeyValue);
    return { kind: 'range', kvs, count, more: kvs.length < count };
  }

  snapshotState(): { revision: number; kvs: KeyValue[] } {
    return { revision: this.rev, kvs: this.keys.all().map((s) => this.map.get(s) as KeyValue) };
  }

  restoreState(state: { revision: number; kvs: readonly KeyValue[] }): void {
    this.rev = state.revision;
    this.map.clear();
    for (const kv of state.kvs) this.map.set(k(kv.key), kv);
    this.keys = SortedKeys.fromSorted([...this.map.keys()].sort());
  }

  private put(key: Uint8Array, value: Uint8Array, rev: number, wantPrev: boolean): KeyValue | null {
    const s = k(key);
    const prev = this.map.get(s);
    this.map.set(s, {
      key: key.slice(),
      value: value.slice(),
      createRevision: prev?.createRevision ?? rev,
      modRevision: rev,
      version: (prev?.version ?? 0) + 1,
    });
    if (prev === undefined) this.keys.insert(s);
    return wantPrev ? (prev ?? null) : null;
  }

  private deleteRange(range: Range, wantPrev: boolean): Extract<OpResult, { kind: 'delete' }> {
    if (range.rangeEnd === null) {
      const s = k(range.key);
      const prev = this.map.get(s);
      if (prev === undefined) return { kind: 'delete', deleted: 0, prevKvs: [] };
      this.map.delete(s);
      this.keys.remove(s);
      return { kind: 'delete', deleted: 1, prevKvs: wantPrev ? [prev] : [] };
    }
    const [from, to] = bounds(range);
    const removed = this.keys.removeRange(from, to);
    const prevKvs: KeyValue[] = [];
    for (const s of removed) {
      if (wantPrev) prevKvs.push(this.map.get(s) as KeyValue);
      this.map.delete(s);
    }
    return { kind: 'delete', deleted: removed.length, prevKvs };
  }

  private holds(c: Compare): boolean {
    const kv = this.map.get(k(c.key));
    if (c.target === 'value') {
      // Like etcd, a value compare against a missing key is false whatever the operator.
      if (kv === undefined) return false;
      return cmp(compareBytes(kv.value, c.value as Uint8Array), c.op);
    }
    const actual = kv === undefined ? 0 : kv[c.target];
    return cmp(actual - (c.value as number), c.op);
  }
}

/** [from, to) as index keys; `to` null means to the end of the keyspace (rangeEnd [0]). */
function bounds(range: Range): [string, string | null] {
  const end = range.rangeEnd as Uint8Array;
  const toEnd = end.length === 1 && end[0] === 0;
  return [k(range.key), toEnd ? null : k(end)];
}

export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = (a[i] as number) - (b[i] as number);
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

function cmp(d: number, op: Compare['op']): boolean {
  switch (op) {
    case '=':
      return d === 0;
    case '!=':
      return d !== 0;
    case '<':
      return d < 0;
    case '>':
      return d > 0;
  }
}
