// The key-value store as a replicated state machine: each command is one transaction, encoded
// with msgpack. Applying decodes and validates it (never trusting stored bytes) and runs it on
// the store. Sessions, the leader's time and the log around it are the host's business
// (src/host): this module knows keys and nothing of Raft but the command contract.

import { Packr } from 'msgpackr';
import { checkKey, checkValue, defaultLimits, type Limits } from '../base/limits.js';
import { chunkStream, type Command, type Refusal, type StateMachine } from '../host/contracts.js';
import { binHeaderBytes, envelopeOverheadBytes } from '../host/envelope.js';
import { FlotillaError, type ErrorCode } from '../base/errors.js';
import { isTombstone, type Tombstone, type Version } from './history.js';
import { toKeyValue, toStored, type StoredKv } from './key-value.js';
import {
  readPastChunk,
  readRecordChunk,
  writePastChunk,
  writeRecordChunk,
} from './snapshot-records.js';
import {
  KvStore,
  bytesOf,
  type Compare,
  type Changes,
  type KeyPast,
  type Lease,
  type Op,
  type OpResult,
  type Range,
  type TxnResult,
  storedPast,
} from './kv-store.js';

/** One write: compares, then the operations of the branch they chose. */
export interface TxnCommand {
  readonly compare: readonly Compare[];
  readonly success: readonly Op[];
  readonly failure: readonly Op[];
}

/** Forget the versions no read at `compact` or later can see (history.ts). */
export interface CompactCommand {
  readonly compact: number;
}

/** Grant a lease of `ttl` seconds, with id `id` (0: chosen from the entry's index). */
export interface LeaseGrantCommand {
  readonly leaseGrant: { readonly id: number; readonly ttl: number };
}

/** Revoke a lease: its keys are deleted in one revision. */
export interface LeaseRevokeCommand {
  readonly leaseRevoke: number;
}

export type KvCommand = TxnCommand | CompactCommand | LeaseGrantCommand | LeaseRevokeCommand;

/** A command refused when applied, deterministically on every replica; nothing changed. */
export interface KvError {
  readonly kind: 'error';
  readonly revision: number;
  readonly error: { readonly code: ErrorCode; readonly message: string };
}

export interface LeaseGrantResult {
  readonly kind: 'lease-grant';
  readonly revision: number;
  readonly id: number;
  readonly ttl: number;
}

export interface LeaseRevokeResult {
  readonly kind: 'lease-revoke';
  readonly revision: number;
  readonly deleted: number;
}

/** What a compaction gave: the compacted revision, or why it was refused (nothing changed). */
export interface CompactResult {
  readonly kind: 'compact';
  /** The store's revision (a compaction does not raise it). */
  readonly revision: number;
  /** The store's compacted revision after this command. */
  readonly compacted: number;
  readonly error?: {
    readonly code: 'COMPACTED' | 'FUTURE_REVISION' | 'BAD_REQUEST';
    readonly message: string;
  };
}

/** The limits the state machine enforces on every command it decodes. */
export type KvLimits = Pick<Limits, 'maxKeyBytes' | 'maxValueBytes'> &
  Partial<Pick<Limits, 'maxTxnOps'>>;

type ResolvedKvLimits = Pick<Limits, 'maxKeyBytes' | 'maxValueBytes' | 'maxTxnOps'>;

/** What applying one command gives back to its proposer (and its session's cache). */
export type ApplyResult =
  TxnResult | CompactResult | LeaseGrantResult | LeaseRevokeResult | KvError | Refusal;

const packr = new Packr({ useRecords: false, moreTypes: false });

/** Bytes msgpack spends on a `bin` field of `n` bytes. */
function binBytes(n: number): number {
  return n + binHeaderBytes(n);
}

/**
 * The most bytes one put or delete can take in the log: a key and a value (or a range end) at
 * their limits, as a command inside an envelope whose fields are at their worst. This is the
 * core's proposal limit, so a write the API accepted is never refused by the core; a
 * transaction whose operations together encode to more is refused (`TXN_TOO_LARGE`).
 */
export function maxWriteEnvelopeBytes(limits: {
  readonly maxKeyBytes: number;
  readonly maxValueBytes: number;
}): number {
  const none = new Uint8Array(0);
  const txn = (op: Op): TxnCommand => ({ compare: [], success: [op], failure: [] });
  const put = packr.pack(
    txn({ kind: 'put', key: none, value: none, prevKv: true, lease: Number.MAX_SAFE_INTEGER }),
  ).length;
  const del = packr.pack(
    txn({
      kind: 'delete',
      range: { key: none, rangeEnd: none },
      prevKv: true,
      prevKvBytesMax: Number.MAX_SAFE_INTEGER,
    }),
  ).length;
  const key = binBytes(limits.maxKeyBytes) - binBytes(0);
  const value = binBytes(limits.maxValueBytes) - binBytes(0);
  const payload = Math.max(put + key + value, del + 2 * key);
  return payload + envelopeOverheadBytes(payload);
}

/** Key-value records per snapshot chunk: about 256 KB of 256-byte values. */
const RECORDS_PER_CHUNK = 1_024;

export class KvStateMachine implements StateMachine {
  private readonly store = new KvStore();
  private restored: (() => void) | null = null;
  private splitListener: ((at: Uint8Array) => void) | null = null;
  private readonly limits: ResolvedKvLimits;

  constructor(limits: KvLimits) {
    this.limits = {
      maxKeyBytes: limits.maxKeyBytes,
      maxValueBytes: limits.maxValueBytes,
      maxTxnOps: limits.maxTxnOps ?? defaultLimits.maxTxnOps,
    };
  }

  revision(): number {
    return this.store.revision();
  }

  /** Reads below this revision are refused (`COMPACTED`); 0 when nothing was compacted. */
  compacted(): number {
    return this.store.compacted();
  }

  /** Keys the store holds now. */
  keyCount(): number {
    return this.store.size();
  }

  /** Bytes of the live keys and values. */
  bytes(): number {
    return this.store.bytes();
  }

  /**
   * The key that halves the store by count (the first key of the upper half), or null when
   * it holds fewer than two keys. O(chunks of the index), not O(keys).
   */
  middleKey(): Uint8Array | null {
    const n = this.store.size();
    return n < 2 ? null : (this.store.keyAt(n >> 1) ?? null);
  }

  /** Older versions and tombstones held for reads in the past. */
  historySize(): number {
    return this.store.historySize();
  }

  /** Bytes of keys and values those versions take. */
  historyBytes(): number {
    return this.store.historyBytes();
  }

  /** The lowest revision to compact to for at most `maxBytes` of history, or null. */
  historyRevisionToFit(maxBytes: number): number | null {
    return this.store.historyRevisionToFit(maxBytes);
  }

  /** Sets the one listener told of each revision's changes as commands apply (the watch hub). */
  onChanges(listener: ((c: Changes) => void) | null): void {
    this.store.onChanges(listener);
  }

  /** Sets the one listener told when a snapshot replaced the whole state. */
  onRestored(listener: (() => void) | null): void {
    this.restored = listener;
  }

  leases(): Lease[] {
    return this.store.leaseList();
  }

  lease(id: number): { lease: Lease; keys: Uint8Array[] } | undefined {
    return this.store.lease(id);
  }

  /** The changes to `range` from revision `from` on, by revision (KvStore.changesSince). */
  changesSince(range: Range, from: number): Changes[] {
    return this.store.changesSince(range, from);
  }

  /** The command's bytes, the payload of one envelope. */
  static encode(cmd: KvCommand): Uint8Array {
    if ('compact' in cmd) return packr.pack({ compact: cmd.compact });
    if ('leaseGrant' in cmd) return packr.pack({ leaseGrant: cmd.leaseGrant });
    if ('leaseRevoke' in cmd) return packr.pack({ leaseRevoke: cmd.leaseRevoke });
    return packr.pack({ compare: cmd.compare, success: cmd.success, failure: cmd.failure });
  }

  apply(commands: readonly Command[]): ApplyResult[] {
    return commands.map((c) => {
      let cmd: KvCommand;
      try {
        cmd = decodeCommand(packr.unpack(c.payload), this.limits);
      } catch (err) {
        return badCommand(c, err);
      }
      return this.applyDecoded(c, cmd);
    });
  }

  /**
   * Decodes a command already unpacked from msgpack (a range's machine unpacks each entry once
   * to tell its own commands from the store's). Throws an Error naming what is wrong.
   */
  decode(unpacked: unknown): KvCommand {
    return decodeCommand(unpacked, this.limits);
  }

  /**
   * Throws PREV_KV_TOO_LARGE when `txn`, applied now with its deletes bounded by `max`, would
   * be refused so (KvStore.checkPrevKv): the proposer's early refusal, from its applied state.
   */
  checkPrevKv(txn: TxnCommand, max: number): void {
    this.store.checkPrevKv(txn, max);
  }

  /** Applies one decoded command of entry `c`. */
  applyDecoded(c: Command, cmd: KvCommand): ApplyResult {
    if ('compact' in cmd) return this.compact(cmd.compact);
    try {
      if ('leaseGrant' in cmd) {
        // An id from the entry's index: unique, and the same on every replica.
        const l = this.store.grant(cmd.leaseGrant.id, cmd.leaseGrant.ttl, c.index);
        return {
          kind: 'lease-grant',
          revision: this.store.revision(),
          id: l.id,
          ttl: l.ttlSeconds,
        };
      }
      if ('leaseRevoke' in cmd) {
        const r = this.store.revoke(cmd.leaseRevoke);
        return { kind: 'lease-revoke', revision: r.revision, deleted: r.deleted };
      }
      return this.store.apply(cmd);
    } catch (err) {
      if (!(err instanceof FlotillaError)) throw err;
      return {
        kind: 'error',
        revision: this.store.revision(),
        error: { code: err.code, message: err.message },
      };
    }
  }

  /**
   * Moves every key from `at` on out of this machine, with its past (a range split), and
   * answers their snapshot: the chunks a machine restores to hold exactly those keys, at this
   * revision, with every lease. O(keys moved) now (KvStore.splitOff); encoded as it is read.
   */
  splitOff(at: Uint8Array): AsyncIterable<Uint8Array> {
    const moved = chunksOf(this.store.splitOff(at));
    this.splitListener?.(at);
    return moved;
  }

  /**
   * Sets the one listener told when the keys from `at` on moved out of this machine (the
   * watch hub: watches of those keys must go on at the range that holds them now).
   */
  onSplitOff(listener: ((at: Uint8Array) => void) | null): void {
    this.splitListener = listener;
  }

  /** Checks that a read may ask for `revision` (0: now); throws COMPACTED or FUTURE_REVISION. */
  checkRevision(revision: number): void {
    this.store.checkRevision(revision);
  }

  range(op: {
    readonly range: Range;
    readonly limit: number;
    readonly countOnly: boolean;
    /** The revision to read at; 0 or absent for the current one. */
    readonly revision?: number;
  }): Extract<OpResult, { kind: 'range' }> {
    return this.store.range(op.range, op.limit, op.countOnly, op.revision ?? 0);
  }

  private compact(rev: number): CompactResult {
    try {
      this.store.compact(rev);
    } catch (err) {
      if (!(err instanceof FlotillaError)) throw err;
      const code =
        err.code === 'COMPACTED' || err.code === 'FUTURE_REVISION' ? err.code : 'BAD_REQUEST';
      return {
        kind: 'compact',
        revision: this.store.revision(),
        compacted: this.store.compacted(),
        error: { code, message: err.message },
      };
    }
    return { kind: 'compact', revision: this.store.revision(), compacted: this.store.compacted() };
  }

  /**
   * The state as of this call, in chunks of RECORDS_PER_CHUNK records: the current key-values,
   * then the keys' pasts (older versions kept for reads in the past), each in key order (a
   * replica that restored a snapshot and one that replayed the log hold the keys in different
   * insertion orders, and their snapshots must be the same bytes). Taken in O(1): the store
   * keeps the pre-image of each key a command changes while the chunks are read (capture.ts),
   * so a large state neither blocks the event loop when captured nor when encoded, one chunk
   * per pull.
   */
  snapshot(): AsyncIterable<Uint8Array> {
    return chunksOf(this.store.capture());
  }

  /** Restores a snapshot of this version (4) or of version 3 (no past, nothing compacted). */
  async restore(source: AsyncIterable<Uint8Array>): Promise<void> {
    const it = source[Symbol.asyncIterator]();
    const first = await it.next();
    if (first.done === true) throw new Error('Key-value snapshot is empty');
    const header = packr.unpack(first.value) as {
      v?: unknown;
      revision?: unknown;
      compacted?: unknown;
      chunks?: unknown;
      pastChunks?: unknown;
      leases?: unknown;
    };
    if (header.v !== 3 && header.v !== 4)
      throw new Error(`Unsupported key-value snapshot version ${String(header.v)}`);
    const compacted = header.v === 3 ? 0 : header.compacted;
    const pastChunks = header.v === 3 ? 0 : header.pastChunks;
    if (
      !Number.isSafeInteger(header.revision) ||
      !Number.isSafeInteger(header.chunks) ||
      !Number.isSafeInteger(compacted) ||
      !Number.isSafeInteger(pastChunks)
    )
      throw new Error('Key-value snapshot header is malformed');
    const next = async (what: string): Promise<Uint8Array> => {
      const r = await it.next();
      if (r.done === true) throw new Error(`Key-value snapshot ends before ${what}`);
      return r.value;
    };
    // Each chunk is read straight into the store's form where it has the layout every release
    // writes (snapshot-records.ts), and through msgpackr otherwise.
    const unpacked = (bytes: Uint8Array, what: string): unknown[] => {
      const part = packr.unpack(bytes) as unknown;
      if (!Array.isArray(part)) throw new Error(`Key-value snapshot ${what} is not an array`);
      return part as unknown[];
    };
    const kvs: StoredKv[] = [];
    for (let i = 0; i < (header.chunks as number); i++) {
      const what = `chunk ${i + 1}`;
      const bytes = await next(what);
      const fast = readRecordChunk(bytes);
      if (fast !== null) for (const kv of fast) kvs.push(kv);
      else for (const kv of unpacked(bytes, what)) kvs.push(toStored(normalizeKv(kv as KeyValue)));
    }
    const pasts: [string, Version[]][] = [];
    for (let i = 0; i < (pastChunks as number); i++) {
      const what = `history chunk ${i + 1}`;
      const bytes = await next(what);
      const fast = readPastChunk(bytes);
      if (fast !== null) for (const p of fast) pasts.push(p);
      else
        for (const p of unpacked(bytes, what)) pasts.push(storedPast(normalizePast(p as KeyPast)));
    }
    if (!(await it.next()).done) throw new Error('Key-value snapshot has chunks past its end');
    const leases = header.v === 3 ? [] : header.leases;
    if (
      !Array.isArray(leases) ||
      !leases.every(
        (l) => Array.isArray(l) && l.length === 2 && l.every((n) => Number.isSafeInteger(n)),
      )
    )
      throw new Error('Key-value snapshot leases are malformed');
    this.store.restoreStored({
      revision: header.revision as number,
      compacted: compacted as number,
      kvs,
      pasts,
      leases: (leases as [number, number][]).map(([id, ttlSeconds]) => ({ id, ttlSeconds })),
    });
    this.restored?.();
  }
}

/** The snapshot chunks of a capture: its header, its key-values, then the keys' pasts. */
function chunksOf(captured: ReturnType<KvStore['capture']>): AsyncIterable<Uint8Array> {
  const { revision, compacted, leases, capture } = captured;
  return chunkStream(function* () {
    try {
      yield packr.pack({
        v: 4,
        revision,
        compacted,
        chunks: Math.ceil(capture.kvCount / RECORDS_PER_CHUNK),
        pastChunks: Math.ceil(capture.pastCount / RECORDS_PER_CHUNK),
        leases: leases.map((l) => [l.id, l.ttlSeconds]),
      });
      // Written by hand (snapshot-records.ts): the bytes msgpackr makes of the same objects.
      for (const part of capture.kvs(RECORDS_PER_CHUNK))
        yield writeRecordChunk(part) ?? packr.pack(part.map(toKeyValue));
      for (const part of capture.pasts(RECORDS_PER_CHUNK))
        yield (
          writePastChunk(part) ??
          packr.pack(
            part.map(([key, versions]) => ({
              key: bytesOf(key),
              versions: versions.map((v) => (isTombstone(v) ? v : toKeyValue(v))),
            })),
          )
        );
    } finally {
      capture.close();
    }
  });
}

/** Deterministic on every replica: the same bytes fail the same way, and nothing changes. */
function badCommand(c: Command, err: unknown): Refusal {
  return {
    refused: 'BAD_COMMAND',
    message: `Entry ${c.index} holds no valid transaction: ${(err as Error).message}`,
  };
}

type KeyValue = ReturnType<KvStore['snapshotState']>['kvs'][number];

function normalizeKv(kv: KeyValue): KeyValue {
  // Views into the chunk are kept as they are: the store copies keys and values into its own
  // strings as it restores them (toStored), so copying them here too made every record twice.
  return { ...kv, key: asBytes(kv.key), value: asBytes(kv.value) };
}

function asBytes(b: Uint8Array): Uint8Array {
  return b instanceof Uint8Array ? b : new Uint8Array(b);
}

function normalizePast(p: KeyPast): KeyPast {
  const versions = p.versions.map((v): KeyValue | Tombstone =>
    'deleted' in v ? { modRevision: v.modRevision, deleted: true } : normalizeKv(v),
  );
  return { key: new Uint8Array(p.key), versions };
}

// ---------------------------------------------------------------------------------------------
// Strict decoding of stored commands.

function fail(msg: string): never {
  throw new Error(msg);
}

function isBytes(v: unknown): v is Uint8Array {
  return v instanceof Uint8Array;
}

function decodeCommand(x: unknown, limits: ResolvedKvLimits): KvCommand {
  if (x === null || typeof x !== 'object' || Array.isArray(x)) fail('not a transaction map');
  const t = x as Record<string, unknown>;
  if ('leaseGrant' in t) {
    const g = t['leaseGrant'] as Record<string, unknown> | null;
    const id = g?.['id'];
    const ttl = g?.['ttl'];
    if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0) fail('bad lease id');
    if (typeof ttl !== 'number' || !Number.isSafeInteger(ttl) || ttl < 1) fail('bad lease ttl');
    return { leaseGrant: { id, ttl } };
  }
  if ('leaseRevoke' in t) {
    const id = t['leaseRevoke'];
    if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 1) fail('bad lease id');
    return { leaseRevoke: id };
  }
  if ('compact' in t) {
    const rev = t['compact'];
    if (typeof rev !== 'number' || !Number.isSafeInteger(rev) || rev < 1)
      fail('bad compaction revision');
    return { compact: rev };
  }
  const compare = arr(t['compare'], 'compare', limits).map((c) => decodeCompare(c, limits));
  const success = arr(t['success'], 'success', limits).map((o) => decodeOp(o, limits));
  const failure = arr(t['failure'], 'failure', limits).map((o) => decodeOp(o, limits));
  return { compare, success, failure };
}

function arr(v: unknown, name: string, limits: Pick<Limits, 'maxTxnOps'>): unknown[] {
  if (!Array.isArray(v) || v.length > limits.maxTxnOps)
    fail(`${name} must be an array of at most ${limits.maxTxnOps}`);
  return v;
}

// Keys and values stay views into the entry they were decoded from: the store copies what it
// keeps (KvStore.put), and nothing else outlives the apply.
function key(v: unknown, limits: Pick<Limits, 'maxKeyBytes'>): Uint8Array {
  if (!isBytes(v)) fail('a key is not bytes');
  return checkKey(v, limits);
}

function range(
  v: unknown,
  limits: Pick<Limits, 'maxKeyBytes'>,
): { key: Uint8Array; rangeEnd: Uint8Array | null } {
  const r = v as Record<string, unknown>;
  const end = r['rangeEnd'];
  return { key: key(r['key'], limits), rangeEnd: end === null ? null : key(end, limits) };
}

function decodeOp(v: unknown, limits: ResolvedKvLimits): Op {
  const o = v as Record<string, unknown>;
  switch (o['kind']) {
    case 'put': {
      const value = o['value'];
      if (!isBytes(value)) fail('a value is not bytes');
      const lease = o['lease'] ?? 0;
      if (typeof lease !== 'number' || !Number.isSafeInteger(lease) || lease < 0) fail('bad lease');
      return {
        kind: 'put',
        key: key(o['key'], limits),
        value: checkValue(value, limits),
        prevKv: o['prevKv'] === true,
        ...(lease !== 0 ? { lease } : {}),
      };
    }
    case 'delete': {
      const max = o['prevKvBytesMax'];
      if (max !== undefined && (typeof max !== 'number' || !Number.isSafeInteger(max) || max < 1))
        fail('bad prevKvBytesMax');
      return {
        kind: 'delete',
        range: range(o['range'], limits),
        prevKv: o['prevKv'] === true,
        ...(max !== undefined ? { prevKvBytesMax: max } : {}),
      };
    }
    case 'range': {
      const limit = o['limit'];
      if (typeof limit !== 'number' || !Number.isSafeInteger(limit) || limit < 0) fail('bad limit');
      return {
        kind: 'range',
        range: range(o['range'], limits),
        limit,
        countOnly: o['countOnly'] === true,
      };
    }
    default:
      return fail(`unknown op kind ${String(o['kind'])}`);
  }
}

function decodeCompare(v: unknown, limits: ResolvedKvLimits): Compare {
  const c = v as Record<string, unknown>;
  const target = c['target'];
  const op = c['op'];
  if (
    target !== 'value' &&
    target !== 'version' &&
    target !== 'createRevision' &&
    target !== 'modRevision' &&
    target !== 'lease'
  )
    fail('bad compare target');
  if (op !== '=' && op !== '!=' && op !== '<' && op !== '>') fail('bad compare op');
  const value = c['value'];
  if (target === 'value' ? !isBytes(value) : typeof value !== 'number') fail('bad compare value');
  return {
    key: key(c['key'], limits),
    target,
    op,
    value: isBytes(value) ? value : (value as number),
  };
}
