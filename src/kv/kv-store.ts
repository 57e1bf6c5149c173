// The key-value state machine: etcd v3's data model (REFERENCES.md). One cluster-wide
// revision rises with every write transaction that changes something; each key carries its
// create revision, mod revision and version (1 at creation, reset when the key is deleted).
// Keys are bytes ordered bytewise. Pure and deterministic: no I/O, no clock.
//
// Keys are held in a Map for point lookups and in a chunked sorted index for ranges
// (sorted-keys.ts): a new key costs O(log n) plus a splice within one chunk of at most 1,024;
// lookups O(1); a range O(log n + k). Like etcd, the first write of an empty store gets
// revision 2.
//
// Like etcd's, the store is multi-version: the versions a write replaces and the deletions it
// makes are kept (history.ts), so a range can read the store as of any revision not yet
// compacted, and a watch can replay what happened since one.

import { FlotillaError } from '../base/errors.js';
import { defaultLimits } from '../base/limits.js';
import { History, isTombstone, type Tombstone, type Version } from './history.js';
import { bytesOf, k, toKeyValue, toStored, type KeyValue, type StoredKv } from './key-value.js';

export type { KeyValue, StoredKv } from './key-value.js';
export { bytesOf, k } from './key-value.js';
import { SortedKeys, lowerBound } from './sorted-keys.js';
import { StoreCapture } from './capture.js';

/** Snapshots read at once at most; a node reads one at a time, tests may hold a few. */
const MAX_CAPTURES = 4;

/** A lease: keys attached to it are deleted, in one revision, when it is revoked or expires. */
export interface Lease {
  readonly id: number;
  /** Its time to live in seconds, from its grant or its last keep-alive (kept by the leader). */
  readonly ttlSeconds: number;
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
      /** Attach the key to this lease (0 or absent: none). */
      readonly lease?: number;
    }
  | {
      readonly kind: 'delete';
      readonly range: Range;
      readonly prevKv: boolean;
      /**
       * With `prevKv`: the most bytes of keys and values the branch's deletes with `prevKv`
       * may answer together; over it the transaction is refused PREV_KV_TOO_LARGE and changes
       * nothing. Absent: no bound (a command proposed before the feature level that brought
       * it, src/base/features.ts).
       */
      readonly prevKvBytesMax?: number;
    }
  | {
      readonly kind: 'range';
      readonly range: Range;
      readonly limit: number;
      readonly countOnly: boolean;
    };

export interface Compare {
  readonly key: Uint8Array;
  readonly target: 'value' | 'version' | 'createRevision' | 'modRevision' | 'lease';
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

/** One key's change at a revision, as a watch delivers it. */
export type Change =
  | { readonly kind: 'put'; readonly kv: KeyValue; readonly prev: KeyValue | null }
  | {
      readonly kind: 'delete';
      readonly key: Uint8Array;
      readonly modRevision: number;
      readonly prev: KeyValue | null;
    };

/** The changes one write transaction made, in key byte order. */
export interface Changes {
  readonly revision: number;
  readonly changes: readonly Change[];
}

export interface TxnResult {
  readonly revision: number;
  readonly succeeded: boolean;
  readonly results: readonly OpResult[];
}

/** A key's past in a snapshot: the key and its older versions, oldest first. */
export interface KeyPast {
  readonly key: Uint8Array;
  readonly versions: readonly (KeyValue | Tombstone)[];
}

export interface StoreState {
  readonly revision: number;
  readonly compacted: number;
  readonly kvs: readonly KeyValue[];
  readonly pasts: readonly KeyPast[];
  readonly leases: readonly Lease[];
}

/** A state as the store keeps it (strings), as a snapshot is read into it. */
export interface StoredState {
  readonly revision: number;
  readonly compacted: number;
  readonly kvs: readonly StoredKv[];
  /** Each key with a past and its older versions, oldest first. */
  readonly pasts: readonly [string, Version[]][];
  readonly leases: readonly Lease[];
}

/** A key's past from a snapshot (or a test) as the store keeps it. */
export function storedPast(p: KeyPast): [string, Version[]] {
  return [k(p.key), p.versions.map((v) => (isTombstone(v) ? v : toStored(v)))];
}

export class KvStore {
  private rev = 1;
  private readonly map = new Map<string, StoredKv>();
  /** Invariant: exactly the keys of `map`. */
  private keys = new SortedKeys();
  private readonly history = new History();
  /** Leases by id, each with the keys (index form) attached to it. */
  private readonly leases = new Map<number, { ttlSeconds: number; keys: Set<string> }>();
  /** Told of every revision's changes as it is made (the watch hub). */
  private listener: ((c: Changes) => void) | null = null;
  /** The changes of the transaction being applied, while a listener is set. */
  private pending: PendingChange[] | null = null;
  /** Snapshots being read (capture.ts); each keeps the pre-image of what changes. */
  private captures: StoreCapture[] = [];
  /** Invariant: the sum of the key and value lengths of every record of `map`. */
  private liveBytes = 0;

  constructor() {
    this.history.beforeChange = (key) => this.preserve(key);
  }

  /** Sets the one listener told of every revision's changes as it is made. */
  onChanges(listener: ((c: Changes) => void) | null): void {
    this.listener = listener;
  }

  revision(): number {
    return this.rev;
  }

  /** The oldest revision a read may still ask for is one above this (0: nothing compacted). */
  compacted(): number {
    return this.history.compacted();
  }

  /** Older versions and tombstones held for reads in the past. */
  historySize(): number {
    return this.history.size();
  }

  /** Bytes of keys and values those versions take. */
  historyBytes(): number {
    return this.history.bytes();
  }

  /** The lowest revision to compact to for at most `maxBytes` of history (History.revisionToFit). */
  historyRevisionToFit(maxBytes: number): number | null {
    return this.history.revisionToFit(maxBytes);
  }

  /**
   * Forgets the versions no read at `rev` or later can see; reads below `rev` are refused from
   * then on. `rev` must be at most the current revision and above the last compaction.
   */
  compact(rev: number): void {
    if (!Number.isSafeInteger(rev) || rev < 1)
      throw new FlotillaError(
        'BAD_REQUEST',
        `Compaction revision must be a positive integer, got ${rev}`,
      );
    if (rev > this.rev)
      throw new FlotillaError(
        'FUTURE_REVISION',
        `Cannot compact to revision ${rev}: the store is at revision ${this.rev}`,
      );
    if (rev <= this.history.compacted())
      throw compactedError(
        `Revision ${rev} is already compacted: the oldest revision available is ${this.history.compacted()}`,
        this.history.compacted(),
      );
    this.history.compact(rev, (key) => this.map.get(key));
  }

  size(): number {
    return this.map.size;
  }

  /** Bytes of the live keys and values (not their history nor the records' other fields). */
  bytes(): number {
    return this.liveBytes;
  }

  /**
   * The key at position `i` of the byte order (0: the first), or undefined past the last.
   * O(chunks of the index): a few microseconds at 100,000 keys, so a range's middle key is
   * found without walking its keys.
   */
  keyAt(i: number): Uint8Array | undefined {
    const s = this.keys.at(i);
    return s === undefined ? undefined : bytesOf(s);
  }

  /** Applies a transaction: compares, then one branch. Raises the revision once if it wrote. */
  apply(txn: Txn): TxnResult {
    const succeeded = txn.compare.every((c) => this.holds(c));
    const ops = succeeded ? txn.success : txn.failure;
    // Checked before anything changes: a transaction applies whole or not at all.
    for (const op of ops)
      if (op.kind === 'put' && (op.lease ?? 0) !== 0 && !this.leases.has(op.lease as number))
        throw new FlotillaError(
          'LEASE_NOT_FOUND',
          `Lease ${op.lease} does not exist (never granted, revoked or expired)`,
        );
    checkPrevKvBytes(ops, this.bytesInRange);
    const next = this.rev + 1;
    let wrote = false;
    const results: OpResult[] = [];
    if (this.listener !== null) this.pending = [];
    const budget = new RangeBytes();
    for (const op of ops) {
      switch (op.kind) {
        case 'put':
          results.push({
            kind: 'put',
            prevKv: this.put(op.key, op.value, next, op.prevKv, op.lease ?? 0),
          });
          wrote = true;
          break;
        case 'delete': {
          const r = this.deleteRange(op.range, op.prevKv, next);
          if (r.deleted > 0) wrote = true;
          results.push(r);
          break;
        }
        case 'range':
          // The ranges of one transaction share one answer, hence one budget of bytes.
          results.push(this.range(op.range, op.limit, op.countOnly, 0, budget));
          break;
      }
    }
    if (wrote) this.rev = next;
    const pending = this.pending;
    this.pending = null;
    if (wrote && pending !== null && this.listener !== null)
      this.listener(new StoreChanges(next, pending));
    return { revision: this.rev, succeeded, results };
  }

  /**
   * Every change to keys in `range` made at `from` or later, by revision then key: what a
   * watch from `from` replays before it follows new writes. `from` must be above the
   * compacted revision (a compaction to c may drop what changed at c itself).
   */
  changesSince(range: Range, from: number): Changes[] {
    const compacted = this.history.compacted();
    if (compacted > 0 && from <= compacted)
      throw compactedError(
        `Cannot replay changes from revision ${from}: the history was compacted to ${compacted}; watch from ${compacted + 1} or later`,
        compacted,
      );
    let candidates: string[];
    if (range.rangeEnd === null) candidates = [k(range.key)];
    else {
      const [lo, hi] = bounds(range);
      candidates = mergeSorted(
        this.keys.scan(lo, hi, 0).keys,
        this.history.ghosts.scan(lo, hi, 0).keys,
      );
    }
    const byRev = new Map<number, Change[]>();
    for (const s of candidates) {
      const live = this.map.get(s);
      const chain: Version[] = [...(this.history.versionsOf(s) ?? [])];
      if (live !== undefined) chain.push(live);
      for (let i = chain.length - 1; i >= 0; i--) {
        const v = chain[i] as Version;
        if (v.modRevision < from) break;
        const before = chain[i - 1];
        const prev = before === undefined || isTombstone(before) ? null : toKeyValue(before);
        const change: Change = isTombstone(v)
          ? { kind: 'delete', key: bytesOf(s), modRevision: v.modRevision, prev }
          : { kind: 'put', kv: toKeyValue(v), prev };
        let list = byRev.get(v.modRevision);
        if (list === undefined) byRev.set(v.modRevision, (list = []));
        list.push(change);
      }
    }
    return [...byRev.keys()]
      .sort((a, b) => a - b)
      .map((revision) => ({ revision, changes: (byRev.get(revision) as Change[]).sort(byKey) }));
  }

  /**
   * Whether the branch a transaction would take now holds a delete with `prevKv` answering
   * more than `max` bytes: throws PREV_KV_TOO_LARGE if so, as applying it with that bound
   * would. Reads the state only (a proposer's early refusal; the apply decides).
   */
  checkPrevKv(txn: Txn, max: number): void {
    const ops = txn.compare.every((c) => this.holds(c)) ? txn.success : txn.failure;
    checkPrevKvBytes(
      ops.map((op) => (op.kind === 'delete' ? { ...op, prevKvBytesMax: max } : op)),
      this.bytesInRange,
    );
  }

  /** bytesIn, made once: applying every transaction passes it. */
  private readonly bytesInRange = (range: Range, stop: number): number => this.bytesIn(range, stop);

  /**
   * Bytes of the keys and values in `range`, counted until they pass `stop` (then some count
   * above it): what a delete with `prevKv` would answer, without building the answer.
   */
  private bytesIn(range: Range, stop: number): number {
    if (range.rangeEnd === null) {
      const kv = this.map.get(k(range.key));
      return kv === undefined ? 0 : recordBytes(kv);
    }
    const [from, to] = bounds(range);
    let n = 0;
    this.keys.walk(from, to, (s) => {
      n += recordBytes(this.map.get(s) as StoredKv);
      return n <= stop;
    });
    return n;
  }

  get(key: Uint8Array): KeyValue | undefined {
    const kv = this.map.get(k(key));
    return kv === undefined ? undefined : toKeyValue(kv);
  }

  /**
   * Keys in [range.key, range.rangeEnd) in byte order, as of `revision` (0: now); `limit` 0
   * means no limit but `maxRangeBytes`, which holds whatever the limit (`more` says the answer
   * stopped short). A revision compacted away is refused (`COMPACTED`), one not yet reached
   * too (`FUTURE_REVISION`).
   */
  range(
    range: Range,
    limit: number,
    countOnly: boolean,
    revision = 0,
    budget: RangeBytes = new RangeBytes(),
  ): Extract<OpResult, { kind: 'range' }> {
    if (revision !== 0 && revision !== this.rev)
      return this.rangeAt(range, limit, countOnly, revision, budget);
    if (range.rangeEnd === null) {
      const kv = this.map.get(k(range.key));
      if (kv === undefined) return { kind: 'range', kvs: [], count: 0, more: false };
      return { kind: 'range', kvs: countOnly ? [] : [toKeyValue(kv)], count: 1, more: false };
    }
    const [from, to] = bounds(range);
    if (countOnly) return { kind: 'range', kvs: [], count: this.keys.count(from, to), more: false };
    const { keys, count } = this.keys.scan(from, to, limit);
    const kvs: KeyValue[] = [];
    for (const key of keys) {
      const kv = this.map.get(key) as StoredKv;
      if (!budget.admits(kv)) break;
      kvs.push(toKeyValue(kv));
    }
    return { kind: 'range', kvs, count, more: kvs.length < count };
  }

  /**
   * Grants lease `id` (0: the smallest free id from `suggested` on) of `ttlSeconds`; answers
   * the lease. `LEASE_EXISTS` when `id` is taken.
   */
  grant(id: number, ttlSeconds: number, suggested: number): Lease {
    if (id !== 0 && this.leases.has(id))
      throw new FlotillaError('LEASE_EXISTS', `Lease ${id} already exists`);
    let chosen = id;
    if (chosen === 0) for (chosen = suggested; this.leases.has(chosen); chosen++);
    this.leases.set(chosen, { ttlSeconds, keys: new Set() });
    return { id: chosen, ttlSeconds };
  }

  /**
   * Revokes a lease: deletes every key attached to it in one revision (raised only if a key
   * was deleted) and forgets it. Answers the keys deleted. `LEASE_NOT_FOUND` if unknown.
   */
  revoke(id: number): { revision: number; deleted: number } {
    const lease = this.leases.get(id);
    if (lease === undefined)
      throw new FlotillaError(
        'LEASE_NOT_FOUND',
        `Lease ${id} does not exist (never granted, revoked or expired)`,
      );
    const keys = [...lease.keys].sort();
    const ops: Op[] = keys.map((s) => ({
      kind: 'delete',
      range: { key: bytesOf(s), rangeEnd: null },
      prevKv: false,
    }));
    const r = this.apply({ compare: [], success: ops, failure: [] });
    this.leases.delete(id);
    return { revision: r.revision, deleted: keys.length };
  }

  /** Every lease, by id. */
  leaseList(): Lease[] {
    return [...this.leases]
      .sort((a, b) => a[0] - b[0])
      .map(([id, l]) => ({ id, ttlSeconds: l.ttlSeconds }));
  }

  /** A lease and the keys attached to it (in byte order), or undefined. */
  lease(id: number): { lease: Lease; keys: Uint8Array[] } | undefined {
    const l = this.leases.get(id);
    if (l === undefined) return undefined;
    return { lease: { id, ttlSeconds: l.ttlSeconds }, keys: [...l.keys].sort().map(bytesOf) };
  }

  /** Checks that a read may ask for `revision`. */
  checkRevision(revision: number): void {
    if (revision > this.rev)
      throw new FlotillaError(
        'FUTURE_REVISION',
        `Revision ${revision} is not reached yet: the store is at revision ${this.rev}`,
      );
    if (revision !== 0 && revision < this.history.compacted())
      throw compactedError(
        `Revision ${revision} was compacted: the oldest revision available is ${this.history.compacted()}`,
        this.history.compacted(),
      );
  }

  /** A range in the past: the live keys and the deleted ones with a past, merged in order. */
  private rangeAt(
    range: Range,
    limit: number,
    countOnly: boolean,
    revision: number,
    budget: RangeBytes,
  ): Extract<OpResult, { kind: 'range' }> {
    this.checkRevision(revision);
    const at = (s: string): StoredKv | undefined => this.history.at(s, this.map.get(s), revision);
    let candidates: string[];
    if (range.rangeEnd === null) candidates = [k(range.key)];
    else {
      const [from, to] = bounds(range);
      candidates = mergeSorted(
        this.keys.scan(from, to, 0).keys,
        this.history.ghosts.scan(from, to, 0).keys,
      );
    }
    const kvs: KeyValue[] = [];
    let full = countOnly;
    let count = 0;
    for (const s of candidates) {
      const kv = at(s);
      if (kv === undefined) continue;
      count++;
      if (full || (limit !== 0 && kvs.length >= limit) || !budget.admits(kv)) full = true;
      else kvs.push(toKeyValue(kv));
    }
    return { kind: 'range', kvs, count, more: !countOnly && kvs.length < count };
  }

  /**
   * The store as of now, for a snapshot read later chunk by chunk while commands apply
   * (capture.ts): O(leases) now, the keys' records as the reader walks them. At most
   * MAX_CAPTURES are kept; an older one still being read then fails.
   */
  capture(): {
    readonly revision: number;
    readonly compacted: number;
    readonly leases: readonly Lease[];
    readonly capture: StoreCapture;
  } {
    this.captures = this.captures.filter((c) => !c.closed);
    const live = {
      keysAfter: (after: string | null, limit: number) => this.keys.keysAfter(after, limit),
      current: (key: string) => this.map.get(key),
      history: this.history,
    };
    const capture = new StoreCapture(live, this.map.size, this.history.keysWithPastCount());
    this.captures.push(capture);
    if (this.captures.length > MAX_CAPTURES) this.captures.shift()?.close();
    return {
      revision: this.rev,
      compacted: this.history.compacted(),
      leases: this.leaseList(),
      capture,
    };
  }

  /**
   * Moves every key from `at` on out of this store, with its past (a range split: the keys
   * from `at` on now belong to the right-hand range), and returns them as a capture of a store
   * that holds only them, at this revision, compacted as this one, with every lease: the
   * right-hand range's initial state, read later chunk by chunk like any capture. Nothing
   * changes the moved records afterwards, so reading it copies nothing. Costs O(keys moved +
   * keys with a past moved) map operations, and the same again for each snapshot of this store
   * being read (it keeps what it captured). No revision is made and no listener is told: the
   * moved keys did not change, they moved.
   */
  splitOff(at: Uint8Array): {
    readonly revision: number;
    readonly compacted: number;
    readonly leases: readonly Lease[];
    readonly capture: StoreCapture;
  } {
    const from = k(at);
    this.captures = this.captures.filter((c) => !c.closed);
    if (this.captures.length > 0) {
      for (const key of this.keys.scan(from, null, 0).keys) this.preserve(key);
      for (const key of this.history.withPast.scan(from, null, 0).keys) this.preserve(key);
    }
    const movedKeys = this.keys.removeRange(from, null);
    // Looked up by binary search as the seed is read (off the apply path) rather than put in a
    // new map here: the apply pays only for taking the keys out.
    const values: StoredKv[] = new Array<StoredKv>(movedKeys.length);
    for (let i = 0; i < movedKeys.length; i++) {
      const key = movedKeys[i] as string;
      const kv = this.map.get(key) as StoredKv;
      this.map.delete(key);
      this.detach(key, kv);
      this.liveBytes -= recordBytes(kv);
      values[i] = kv;
    }
    const pasts = this.history.splitOff(from);
    const pastKeys = pasts.map(([key]) => key);
    const keys = SortedKeys.fromSorted(movedKeys);
    const withPast = SortedKeys.fromSorted(pastKeys);
    const find = <T>(sorted: readonly string[], of: readonly T[], key: string): T | undefined => {
      const i = lowerBound(sorted, key);
      return sorted[i] === key ? of[i] : undefined;
    };
    const capture = new StoreCapture(
      {
        keysAfter: (after, limit) => keys.keysAfter(after, limit),
        current: (key) => find(movedKeys, values, key),
        history: {
          versionsOf: (key) => find(pastKeys, pasts, key)?.[1],
          withPast,
        },
      },
      movedKeys.length,
      pastKeys.length,
    );
    return {
      revision: this.rev,
      compacted: this.history.compacted(),
      leases: this.leaseList(),
      capture,
    };
  }

  /** Hands `key`'s version and past to every snapshot being read, before they change. */
  private preserve(key: string): void {
    for (const c of this.captures) c.preserve(key);
  }

  /** The whole state copied at once (tests compare it with what a capture reads). */
  snapshotState(): StoreState {
    const pasts: KeyPast[] = [];
    // Versions are immutable records and arrays are copied, so this is a point-in-time view.
    // In key order: a replica that restored a snapshot and one that replayed the log hold the
    // keys in different insertion orders, and their snapshots must be the same bytes.
    for (const key of [...this.history.keysWithPast()].sort())
      pasts.push({
        key: bytesOf(key),
        versions: (this.history.versionsOf(key) ?? []).map((v) =>
          isTombstone(v) ? v : toKeyValue(v),
        ),
      });
    return {
      revision: this.rev,
      compacted: this.history.compacted(),
      kvs: this.keys.all().map((s) => toKeyValue(this.map.get(s) as StoredKv)),
      pasts,
      leases: this.leaseList(),
    };
  }

  restoreState(state: StoreState): void {
    this.restoreStored({
      ...state,
      kvs: state.kvs.map(toStored),
      pasts: state.pasts.map(storedPast),
    });
  }

  /** Replaces the whole state with `state`, whose records become the store's own. */
  restoreStored(state: StoredState): void {
    // A snapshot still being read keeps everything it captured before the state goes.
    for (const c of this.captures)
      c.detach(new Set([...this.map.keys(), ...this.history.keysWithPast()]));
    this.captures = [];
    this.rev = state.revision;
    this.map.clear();
    this.liveBytes = 0;
    this.leases.clear();
    for (const l of state.leases)
      this.leases.set(l.id, { ttlSeconds: l.ttlSeconds, keys: new Set() });
    for (const stored of state.kvs) {
      const s = stored.key;
      this.map.set(s, stored);
      this.liveBytes += recordBytes(stored);
      if ((stored.lease ?? 0) !== 0) this.leases.get(stored.lease as number)?.keys.add(s);
    }
    this.keys = SortedKeys.fromKeys([...this.map.keys()]);
    this.history.restore(state.pasts, state.compacted, (key) => this.map.get(key));
  }

  private put(
    key: Uint8Array,
    value: Uint8Array,
    rev: number,
    wantPrev: boolean,
    lease: number,
  ): KeyValue | null {
    const s = k(key);
    this.preserve(s);
    const prev = this.map.get(s);
    if (prev !== undefined) this.history.superseded(s, prev, rev);
    else this.history.revived(s);
    this.detach(s, prev);
    if (lease !== 0) this.leases.get(lease)?.keys.add(s);
    const createRevision = prev?.createRevision ?? rev;
    const version = (prev?.version ?? 0) + 1;
    // Two literals rather than a spread: a spread builds every record on a slow path. `k`
    // copies the value: the caller's may be a view into a log entry.
    const kv: StoredKv =
      lease !== 0
        ? { key: s, value: k(value), createRevision, modRevision: rev, version, lease }
        : { key: s, value: k(value), createRevision, modRevision: rev, version };
    this.map.set(s, kv);
    this.liveBytes += recordBytes(kv) - (prev === undefined ? 0 : recordBytes(prev));
    this.pending?.push({ key: s, kv, prev });
    if (prev === undefined) this.keys.insert(s);
    return wantPrev && prev !== undefined ? toKeyValue(prev) : null;
  }

  /** Detaches key `s` (whose version was `prev`) from its lease. */
  private detach(s: string, prev: StoredKv | undefined): void {
    if (prev !== undefined && (prev.lease ?? 0) !== 0)
      this.leases.get(prev.lease as number)?.keys.delete(s);
  }

  private deleteRange(
    range: Range,
    wantPrev: boolean,
    rev: number,
  ): Extract<OpResult, { kind: 'delete' }> {
    if (range.rangeEnd === null) {
      const s = k(range.key);
      const prev = this.map.get(s);
      if (prev === undefined) return { kind: 'delete', deleted: 0, prevKvs: [] };
      this.preserve(s);
      this.map.delete(s);
      this.liveBytes -= recordBytes(prev);
      this.keys.remove(s);
      this.detach(s, prev);
      this.history.deleted(s, prev, rev);
      this.pending?.push({ key: s, kv: null, prev });
      return { kind: 'delete', deleted: 1, prevKvs: wantPrev ? [toKeyValue(prev)] : [] };
    }
    const [from, to] = bounds(range);
    const removed = this.keys.removeRange(from, to);
    const prevKvs: KeyValue[] = [];
    for (const s of removed) {
      const prev = this.map.get(s) as StoredKv;
      if (wantPrev) prevKvs.push(toKeyValue(prev));
      this.preserve(s);
      this.map.delete(s);
      this.liveBytes -= recordBytes(prev);
      this.detach(s, prev);
      this.history.deleted(s, prev, rev);
      this.pending?.push({ key: s, kv: null, prev });
    }
    return { kind: 'delete', deleted: removed.length, prevKvs };
  }

  private holds(c: Compare): boolean {
    const kv = this.map.get(k(c.key));
    if (c.target === 'value') {
      // Like etcd, a value compare against a missing key is false whatever the operator.
      if (kv === undefined) return false;
      const want = k(c.value as Uint8Array);
      return cmp(kv.value < want ? -1 : kv.value > want ? 1 : 0, c.op);
    }
    const actual = kv === undefined ? 0 : c.target === 'lease' ? (kv.lease ?? 0) : kv[c.target];
    return cmp(actual - (c.value as number), c.op);
  }
}

/**
 * Refuses a branch whose deletes with `prevKv` and a bound would answer more than it:
 * PREV_KV_TOO_LARGE, before anything changes. Deletes are counted one by one over the state
 * before the branch (two that overlap count their common keys twice): the same on every
 * replica, and never less than the answer.
 */
function checkPrevKvBytes(
  ops: readonly Op[],
  bytesIn: (range: Range, stop: number) => number,
): void {
  let total = 0;
  for (const op of ops) {
    if (op.kind !== 'delete' || !op.prevKv || op.prevKvBytesMax === undefined) continue;
    const max = op.prevKvBytesMax;
    total += bytesIn(op.range, max - total);
    if (total > max)
      throw new FlotillaError(
        'PREV_KV_TOO_LARGE',
        `Cannot delete with prevKv: the previous keys and values would take more than ` +
          `${max} bytes (maxRangeBytes); nothing was deleted. Delete without prevKv, or read ` +
          `the range (answers stop at that size and say more) and delete it in parts`,
      );
  }
}

/** What a record counts for in `KvStore.bytes` (a latin1 string's length is its bytes). */
function recordBytes(kv: StoredKv): number {
  return kv.key.length + kv.value.length;
}

/** One change of the transaction being applied: a put (`kv`) or a delete (`kv` null). */
interface PendingChange {
  readonly key: string;
  readonly kv: StoredKv | null;
  readonly prev: StoredKv | undefined;
}

/**
 * A revision's changes as the listener gets them, rendered as bytes only when read: the watch
 * hub reads them only when someone watches, and every write on every member is told.
 */
class StoreChanges implements Changes {
  private made: Change[] | null = null;

  constructor(
    readonly revision: number,
    private readonly pending: PendingChange[],
  ) {}

  get changes(): readonly Change[] {
    if (this.made !== null) return this.made;
    const sorted = this.pending.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    this.made = sorted.map((c): Change =>
      c.kv !== null
        ? {
            kind: 'put',
            kv: toKeyValue(c.kv),
            prev: c.prev === undefined ? null : toKeyValue(c.prev),
          }
        : {
            kind: 'delete',
            key: bytesOf(c.key),
            modRevision: this.revision,
            prev: c.prev === undefined ? null : toKeyValue(c.prev),
          },
    );
    return this.made;
  }
}

function keyOf(c: Change): Uint8Array {
  return c.kind === 'put' ? c.kv.key : c.key;
}

function byKey(a: Change, b: Change): number {
  return compareBytes(keyOf(a), keyOf(b));
}

/** Two ascending lists without common elements, merged ascending. */
function mergeSorted(a: readonly string[], b: readonly string[]): string[] {
  const out: string[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    if (j >= b.length || (i < a.length && (a[i] as string) < (b[j] as string)))
      out.push(a[i++] as string);
    else out.push(b[j++] as string);
  }
  return out;
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

/**
 * The bytes of keys and values a range answer holds so far, against `maxRangeBytes`: one per
 * range read, one for all the ranges of a transaction.
 */
export class RangeBytes {
  private bytes = 0;
  private taken = 0;

  /** Whether `kv` fits (the first always does); counts it if so. */
  admits(kv: { readonly key: { length: number }; readonly value: { length: number } }): boolean {
    const next = this.bytes + kv.key.length + kv.value.length;
    if (this.taken > 0 && next > defaultLimits.maxRangeBytes) return false;
    this.bytes = next;
    this.taken++;
    return true;
  }
}

/** A read or watch below the compacted revision, naming it as etcd's compact_revision does. */
function compactedError(message: string, compactRevision: number): FlotillaError {
  return new FlotillaError('COMPACTED', message, false, 0, 0, compactRevision);
}
