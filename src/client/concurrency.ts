// Locks and leader election built on the store, as etcd's `concurrency` package builds them:
// a session is a lease kept alive; a contender writes a key under the lock's (or election's)
// prefix attached to its session's lease, and the contender whose key has the lowest create
// revision holds it. Each waiter watches only the key just before its own (no thundering herd
// when the holder leaves). The create revision of the holder's key is a fencing token: it
// rises with every acquisition, and a write guarded by it (a txn comparing the key's create
// revision) fails once the holder lost its lease, however long it was paused. A name that is
// not UTF-8 is given in base64 with `encoding: 'base64'`; keys and values are then base64
// throughout, as the API's are.

import { FlotillaError } from '../base/errors.js';
import { checkOptions } from './util.js';
import type {
  Compare,
  DeleteResponse,
  KeyValue,
  LeaseGrantResponse,
  LeaseRevokeResponse,
  RangeResponse,
  TxnOp,
  TxnResponse,
} from '../api/types.js';
import type { WatchBatch, WatchOptions } from './watch.js';

/** How keys and values travel: UTF-8 text, or base64 (any bytes). */
interface Encoding {
  readonly encoding?: 'utf8' | 'base64';
}

/** What the recipes need of a client (FlotillaClient is one). */
export interface ConcurrencyClient {
  txn(
    compare: readonly Compare[],
    success: readonly TxnOp[],
    failure?: readonly TxnOp[],
    o?: Encoding,
  ): Promise<TxnResponse>;
  range(key: string, o?: { prefix?: boolean } & Encoding): Promise<RangeResponse>;
  delete(key: string, o?: Encoding): Promise<DeleteResponse>;
  watch(key: string, o?: WatchOptions): AsyncGenerator<WatchBatch>;
  leaseGrant(ttl: number): Promise<LeaseGrantResponse>;
  leaseRevoke(id: number): Promise<LeaseRevokeResponse>;
  keepLeaseAlive(id: number, ttl: number, o?: { signal?: AbortSignal }): Promise<void>;
}

/** A lease kept alive in the background: the lifetime of a lock holder or a candidate. */
export class Session {
  private readonly stop = new AbortController();
  /** Settles when the session ends: resolves when closed, rejects when the lease was lost. */
  readonly done: Promise<void>;

  private constructor(
    readonly client: ConcurrencyClient,
    readonly lease: number,
    readonly ttl: number,
  ) {
    this.done = client.keepLeaseAlive(lease, ttl, { signal: this.stop.signal });
    // Observed by whoever awaits `done`; never an unhandled rejection.
    this.done.catch(() => undefined);
  }

  /** Grants a lease of `ttl` seconds and keeps it alive until `close`. */
  static async create(client: ConcurrencyClient, o: { ttl?: number } = {}): Promise<Session> {
    // A misspelt option (`ttlMs`) ran on the default of 10 s without a word.
    checkOptions(o, 'Session.create', ['ttl']);
    const ttl = o.ttl ?? 10;
    const { id } = await client.leaseGrant(ttl);
    return new Session(client, id, ttl);
  }

  /** Stops the keep-alives and revokes the lease: every key of the session goes at once. */
  async close(): Promise<void> {
    this.stop.abort();
    await this.done.catch(() => undefined);
    await this.client.leaseRevoke(this.lease).catch((err: unknown) => {
      if (!(err instanceof FlotillaError && err.code === 'LEASE_NOT_FOUND')) throw err;
    });
  }
}

/** `name/` as a key prefix: text, or base64 for a name given in base64. */
function prefixOf(name: string, o: Encoding): string {
  return o.encoding === 'base64'
    ? Buffer.concat([Buffer.from(name, 'base64'), Buffer.from('/')]).toString('base64')
    : `${name}/`;
}

/** A contender's key: `prefix` then its lease in hex, in the prefix's encoding. */
function contenderKey(prefix: string, lease: number, o: Encoding): string {
  return o.encoding === 'base64'
    ? Buffer.concat([Buffer.from(prefix, 'base64'), Buffer.from(lease.toString(16))]).toString(
        'base64',
      )
    : `${prefix}${lease.toString(16)}`;
}

/** The options a request takes for `o`'s encoding: none for text, as before. */
function encodingOf(o: Encoding): Encoding {
  return o.encoding === 'base64' ? { encoding: 'base64' } : {};
}

/** Where a contender stands: its key and that key's create revision (the fencing token). */
export interface Held {
  readonly key: string;
  readonly token: number;
}

/**
 * Queues a contender under `prefix` and waits until it is first. Returns its key and token.
 * Re-entrant for one session: a session already queued keeps its place.
 */
async function queue(
  s: Session,
  prefix: string,
  value: string,
  o: { signal?: AbortSignal | undefined } & Encoding,
): Promise<Held> {
  const { signal } = o;
  const enc = encodingOf(o);
  const key = contenderKey(prefix, s.lease, o);
  const r = await s.client.txn(
    [{ key, target: 'createRevision', op: '=', value: 0 }],
    [{ put: { key, value, lease: s.lease } }],
    [{ range: { key } }],
    enc,
  );
  const token = r.succeeded
    ? r.header.revision
    : ((r.responses[0] as { range: { kvs: readonly KeyValue[] } }).range.kvs[0]?.createRevision ??
      0);
  if (token === 0) throw new FlotillaError('LEASE_NOT_FOUND', `Contender key ${key} vanished`);
  for (;;) {
    if (signal?.aborted) throw new FlotillaError('ABORTED', 'Aborted by the caller', false);
    // The contender just before this one, if any: the key with the highest create revision
    // below ours.
    const all = await s.client.range(prefix, { prefix: true, ...enc });
    let before: KeyValue | null = null;
    for (const kv of all.kvs)
      if (
        kv.createRevision < token &&
        (before === null || kv.createRevision > before.createRevision)
      )
        before = kv;
    if (before === null) return { key, token };
    await waitForDelete(s.client, before.key, all.header.revision + 1, { signal, ...enc });
  }
}

/** Resolves once `key` is deleted at `from` or later (it may be deleted already). */
async function waitForDelete(
  client: ConcurrencyClient,
  key: string,
  from: number,
  o: { signal?: AbortSignal | undefined } & Encoding,
): Promise<void> {
  const { signal } = o;
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    for await (const batch of client.watch(key, {
      startRevision: from,
      signal: stop.signal,
      ...encodingOf(o),
    }))
      if (batch.events.some((e) => e.type === 'delete')) return;
  } finally {
    signal?.removeEventListener('abort', onAbort);
    stop.abort();
  }
}

/**
 * A distributed mutex (etcd's concurrency.Mutex). With `encoding: 'base64'` the name is base64
 * (a name that is not UTF-8), and so is the key held.
 */
export class Mutex {
  private held: Held | null = null;
  private readonly prefix: string;
  private readonly enc: Encoding;

  constructor(
    private readonly session: Session,
    name: string,
    o: Encoding = {},
  ) {
    this.enc = encodingOf(o);
    this.prefix = prefixOf(name, this.enc);
  }

  /** Waits until this session holds the lock; answers the fencing token. */
  async lock(o: { signal?: AbortSignal } = {}): Promise<Held> {
    try {
      this.held = await queue(this.session, this.prefix, '', { signal: o.signal, ...this.enc });
    } catch (err) {
      // Leave the queue rather than block those behind.
      await this.session.client
        .delete(contenderKey(this.prefix, this.session.lease, this.enc), this.enc)
        .catch(() => undefined);
      throw err;
    }
    return this.held;
  }

  async unlock(): Promise<void> {
    if (this.held === null) return;
    await this.session.client.delete(this.held.key, this.enc);
    this.held = null;
  }

  /**
   * A transaction that applies only while this session still holds the lock: its compares
   * plus "the lock key has our create revision". `succeeded: false` when the lock was lost
   * (or the caller's own compares failed).
   */
  async guardedTxn(
    compare: readonly Compare[],
    success: readonly TxnOp[],
    failure: readonly TxnOp[] = [],
  ): Promise<TxnResponse> {
    const held = this.held;
    if (held === null) throw new FlotillaError('INVALID_REQUEST', 'The lock is not held');
    return this.session.client.txn(
      [...compare, { key: held.key, target: 'createRevision', op: '=', value: held.token }],
      success,
      failure,
      this.enc,
    );
  }
}

/**
 * Leader election (etcd's concurrency.Election): one leader at a time, and who it is. With
 * `encoding: 'base64'` the name, the values and the keys are base64.
 */
export class Election {
  private held: Held | null = null;
  private readonly prefix: string;
  private readonly enc: Encoding;

  constructor(
    private readonly session: Session,
    name: string,
    o: Encoding = {},
  ) {
    this.enc = encodingOf(o);
    this.prefix = prefixOf(name, this.enc);
  }

  /** Waits until elected, announcing `value`; answers the leadership's fencing token. */
  async campaign(value: string, o: { signal?: AbortSignal } = {}): Promise<Held> {
    this.held = await queue(this.session, this.prefix, value, { signal: o.signal, ...this.enc });
    return this.held;
  }

  /** Changes the value the leader announces, while it still leads. */
  async proclaim(value: string): Promise<void> {
    const held = this.held;
    if (held === null) throw new FlotillaError('INVALID_REQUEST', 'Not the leader');
    const r = await this.session.client.txn(
      [{ key: held.key, target: 'createRevision', op: '=', value: held.token }],
      [{ put: { key: held.key, value, lease: this.session.lease } }],
      [],
      this.enc,
    );
    if (!r.succeeded)
      throw new FlotillaError('INVALID_REQUEST', 'Leadership was lost: the lease expired');
  }

  /** Steps down: the next candidate in line becomes leader. */
  async resign(): Promise<void> {
    if (this.held === null) return;
    await this.session.client.delete(this.held.key, this.enc);
    this.held = null;
  }

  /** The current leader's value and token, or null when there is none. */
  async leader(): Promise<{ value: string; token: number } | null> {
    return leaderOf(this.session.client, this.prefix, this.enc);
  }
}

async function leaderOf(
  client: ConcurrencyClient,
  prefix: string,
  enc: Encoding,
): Promise<{ value: string; token: number; revision: number } | null> {
  const r = await client.range(prefix, { prefix: true, ...enc });
  let first: KeyValue | null = null;
  for (const kv of r.kvs)
    if (first === null || kv.createRevision < first.createRevision) first = kv;
  return first === null
    ? null
    : { value: first.value, token: first.createRevision, revision: r.header.revision };
}

/**
 * Follows an election's leadership: yields the leader (or null) now and at every change of
 * leader or of its value, until `o.signal` aborts. With `encoding: 'base64'` the name and the
 * values yielded are base64.
 */
export async function* observe(
  client: ConcurrencyClient,
  name: string,
  o: { signal?: AbortSignal } & Encoding = {},
): AsyncGenerator<{ value: string; token: number } | null> {
  const enc = encodingOf(o);
  const prefix = prefixOf(name, enc);
  let current = await leaderOf(client, prefix, enc);
  yield current === null ? null : { value: current.value, token: current.token };
  const from =
    (current?.revision ?? (await client.range(prefix, { prefix: true, ...enc })).header.revision) +
    1;
  for await (const _batch of client.watch(prefix, {
    prefix: true,
    startRevision: from,
    ...enc,
    ...(o.signal === undefined ? {} : { signal: o.signal }),
  })) {
    const next = await leaderOf(client, prefix, enc);
    if (next?.token !== current?.token || next?.value !== current?.value) {
      current = next;
      yield next === null ? null : { value: next.value, token: next.token };
    }
  }
}
