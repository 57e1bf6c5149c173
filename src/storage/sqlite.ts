// The SQLite backend: one file (WAL journal mode, synchronous=FULL) for users who want a store
// they can inspect with the sqlite3 shell. The database lives in a worker thread (sqlite-worker.ts)
// so an fsync never stalls the event loop; this side keeps the in-memory log the runtime reads
// and group-commits writes: while one transaction is in flight the next one gathers.

import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { Entry, HardState, InitialState, SnapshotMeta } from '../raft/index.js';
import { StorageError, closedError, rejected } from './errors.js';
import { GroupCommitter } from './group-commit.js';
import { checkBatch, checkSnapshotSize, resolveLimits } from './limits.js';
import type { ResolvedLimits } from './limits.js';
import { LogIndex, checkHardState, checkSnapshotMeta } from './log-index.js';
import { lockPath } from './lock.js';
import { makeDirs } from './make-dirs.js';
import type { DirLock } from './lock.js';
import type { SqliteLoaded, SqliteOp, SqliteRequest, SqliteResponse } from './sqlite-protocol.js';
import type {
  LogStore,
  RaftStorage,
  SnapshotStore,
  SqliteOptions,
  StableStore,
  StoredSnapshot,
} from './types.js';

type Request = SqliteRequest extends infer R
  ? R extends { id: number }
    ? Omit<R, 'id'>
    : never
  : never;

/** Request/response over the worker's message port, failing every waiter if the worker dies. */
class WorkerClient {
  private nextId = 1;
  private readonly waiting = new Map<
    number,
    { resolve: (v: unknown) => void; reject: (e: unknown) => void }
  >();

  constructor(private readonly worker: Worker) {
    worker.on('message', (res: SqliteResponse) => this.settle(res));
    worker.on('error', (err) =>
      this.failAll(
        new StorageError('STORAGE_WRITE_FAILED', `SQLite worker crashed: ${err.message}`, {
          cause: err,
        }),
      ),
    );
    worker.on('exit', () => this.failAll(closedError('the SQLite worker')));
  }

  call(req: Request): Promise<unknown> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.worker.postMessage({ ...req, id });
    });
  }

  private settle(res: SqliteResponse): void {
    const w = this.waiting.get(res.id);
    if (w === undefined) return;
    this.waiting.delete(res.id);
    if (res.ok) w.resolve(res.value);
    else {
      const { code, message, ...details } = res.error;
      w.reject(new StorageError(code, message, details));
    }
  }

  private failAll(err: StorageError): void {
    for (const w of this.waiting.values()) w.reject(err);
    this.waiting.clear();
  }

  async terminate(): Promise<void> {
    await this.worker.terminate();
  }
}

class SqliteStorage implements RaftStorage {
  private hardState: HardState;
  private snapshotMeta: SnapshotMeta | null;
  private readonly commits: GroupCommitter<readonly SqliteOp[]>;
  private snapshotChain: Promise<void> = Promise.resolve();
  private closing: Promise<void> | null = null;
  readonly log: LogStore;
  readonly stable: StableStore;
  readonly snapshots: SnapshotStore;

  constructor(
    private readonly client: WorkerClient,
    private readonly index: LogIndex,
    loaded: SqliteLoaded,
    private readonly limits: ResolvedLimits,
    private readonly lock: DirLock,
  ) {
    this.hardState = loaded.hardState;
    this.snapshotMeta = loaded.snapshot;
    this.commits = new GroupCommitter(
      (items) => this.client.call({ type: 'write', ops: items.flat() }).then(() => undefined),
      'SQLite store',
    );
    this.log = {
      firstIndex: () => this.index.firstIndex(),
      lastIndex: () => this.index.lastIndex(),
      term: (i) => this.index.term(i),
      entries: (lo, hi) => this.index.entries(lo, hi),
      append: (entries) => this.persist(entries, null),
      compact: (through) => this.compact(through),
      close: () => this.close(),
    };
    this.stable = { load: () => this.hardState, save: (hs) => this.persist([], hs) };
    this.snapshots = { save: (m, d) => this.saveSnapshot(m, d), latest: () => this.loadSnapshot() };
  }

  initialState(): InitialState {
    return {
      hardState: this.hardState,
      snapshot: this.snapshotMeta,
      entries: this.index.all().slice(),
      applied: this.snapshotMeta?.index ?? 0,
    };
  }

  persist(entries: readonly Entry[], hardState: HardState | null): Promise<void> {
    try {
      this.commits.checkWritable();
      checkBatch(entries, this.limits);
      this.index.checkAppend(entries);
      if (hardState !== null) checkHardState(hardState, this.hardState);
    } catch (err) {
      return rejected(err);
    }
    if (entries.length === 0 && hardState === null) return Promise.resolve();
    this.index.append(entries);
    // One queue item, so entries and hard state land in the same transaction.
    const ops: SqliteOp[] = [];
    if (entries.length > 0) ops.push({ kind: 'append', entries: entries.slice() });
    if (hardState !== null) {
      this.hardState = hardState;
      ops.push({ kind: 'hardState', hardState });
    }
    return this.commits.submit(ops);
  }

  async compact(through: number): Promise<void> {
    this.commits.checkWritable();
    if (through <= this.index.base().index) return;
    this.index.compact(through);
    await this.commits.submit([{ kind: 'compact', ...this.index.base() }]);
  }

  saveSnapshot(meta: SnapshotMeta, data: Uint8Array): Promise<void> {
    try {
      this.commits.checkWritable();
      checkSnapshotMeta(meta);
      checkSnapshotSize(data.length, this.limits);
    } catch (err) {
      return rejected(err);
    }
    const next = this.snapshotChain.then(() => this.writeSnapshot(meta, data));
    this.snapshotChain = next.catch(() => undefined);
    return next;
  }

  private async writeSnapshot(meta: SnapshotMeta, data: Uint8Array): Promise<void> {
    this.commits.checkWritable();
    if (meta.index <= (this.snapshotMeta?.index ?? 0)) return;
    this.snapshotMeta = meta;
    const outcome = this.index.applySnapshot(meta);
    // Snapshot row and compaction queued together: one transaction, so they are atomic.
    const ops: SqliteOp[] = [{ kind: 'snapshot', meta, data }];
    if (outcome !== 'stale')
      ops.push({
        kind: outcome === 'reset' ? 'reset' : 'compact',
        index: meta.index,
        term: meta.term,
      });
    await this.commits.submit(ops);
  }

  async loadSnapshot(): Promise<StoredSnapshot | null> {
    if (this.closing !== null) throw closedError('the SQLite store');
    return (await this.client.call({ type: 'loadSnapshot' })) as StoredSnapshot | null;
  }

  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    try {
      await this.snapshotChain;
      await this.commits.close();
      await this.client.call({ type: 'close' }).catch(() => undefined);
      await this.client.terminate();
    } finally {
      await this.lock.release();
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** A path ending in .sqlite, .sqlite3 or .db names the file; anything else is a directory. */
function resolveFile(path: string, opts: SqliteOptions): string {
  return /\.(sqlite3?|db)$/.test(path) ? path : join(path, opts.fileName ?? 'raft.sqlite');
}

/**
 * Opens (creating if needed) a SQLite store. Throws STORAGE_LOCKED, STORAGE_CORRUPT (a gap or
 * a checksum mismatch in the entries table) or STORAGE_VERSION.
 */
export async function openSqliteStorage(
  path: string,
  opts: SqliteOptions = {},
): Promise<RaftStorage> {
  const limits = resolveLimits(opts);
  const file = resolveFile(path, opts);
  // One level at a time, as Node's recursive mkdir never returns under /proc (make-dirs.ts).
  makeDirs(dirname(file));
  const lock = await lockPath(`${file}.lock`);
  const worker = new Worker(new URL('./sqlite-worker.js', import.meta.url));
  const client = new WorkerClient(worker);
  try {
    const loaded = (await client.call({ type: 'open', file })) as SqliteLoaded;
    const index = new LogIndex(loaded.base, loaded.entries);
    return new SqliteStorage(client, index, loaded, limits, lock);
  } catch (err) {
    await client.terminate();
    await lock.release();
    throw err;
  }
}

/**
 * Whether SQLite storage at `path` holds anything (an entry, a snapshot or a term), read
 * without taking its lock or changing the file; false when there is no file. For a start about
 * to join a cluster, before it opens storage. A file that cannot be read as this storage's is
 * counted as holding something: it is not a new node's.
 */
export async function sqliteHoldsData(path: string, opts: SqliteOptions = {}): Promise<boolean> {
  const file = resolveFile(path, opts);
  if (!existsSync(file)) return false;
  const { default: Database } = await import('better-sqlite3');
  let db: InstanceType<typeof Database> | null = null;
  try {
    db = new Database(file, { readonly: true, fileMustExist: true });
    const tables = new Set(
      (
        db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as {
          name: string;
        }[]
      ).map((t) => t.name),
    );
    const any = (sql: string): boolean => db?.prepare(sql).get() !== undefined;
    return (
      (tables.has('entries') && any('SELECT 1 FROM entries LIMIT 1')) ||
      (tables.has('snapshot') && any('SELECT 1 FROM snapshot LIMIT 1')) ||
      (tables.has('state') && any('SELECT 1 FROM state WHERE term > 0'))
    );
  } catch {
    return true;
  } finally {
    db?.close();
  }
}
