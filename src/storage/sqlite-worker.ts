// The SQLite side of SqliteStorage, run in a worker thread so that a commit's fsync (WAL mode,
// synchronous=FULL) blocks this thread, not the runtime's event loop. One transaction per
// flush: the main thread's group commit hands over every op gathered during the previous one.

import { crc32c } from '@node-rs/crc32';
import Database from 'better-sqlite3';
import type { Database as Db } from 'better-sqlite3';
import { parentPort } from 'node:worker_threads';
import type { Entry, HardState, SnapshotMeta } from '../raft/index.js';
import { decodeConfJson, encodeConfJson, entryTypeCode, entryTypeOf, writeU64 } from './codec.js';
import { StorageError, corrupt } from './errors.js';
import type { SqliteLoaded, SqliteOp, SqliteRequest, SqliteResponse } from './sqlite-protocol.js';

export const SQLITE_FORMAT_VERSION = 1;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS entries (idx INTEGER PRIMARY KEY, term INTEGER NOT NULL, noop INTEGER NOT NULL, data BLOB NOT NULL, crc INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS state (id INTEGER PRIMARY KEY CHECK (id = 1), term INTEGER NOT NULL, vote INTEGER NOT NULL, commit_index INTEGER NOT NULL, base_index INTEGER NOT NULL, base_term INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS snapshot (id INTEGER PRIMARY KEY CHECK (id = 1), idx INTEGER NOT NULL, term INTEGER NOT NULL, voters TEXT NOT NULL, data BLOB NOT NULL, crc INTEGER NOT NULL);
INSERT OR IGNORE INTO state VALUES (1, 0, 0, 0, 0, 0);
`;

/** CRC32C over (index, term, type, data): SQLite pages carry no checksum of their own. */
function entryCrc(e: Entry): number {
  const head = Buffer.allocUnsafe(17);
  writeU64(head, 0, e.index);
  writeU64(head, 8, e.term);
  head.writeUInt8(entryTypeCode(e.type), 16);
  return crc32c(e.data, crc32c(head));
}

interface EntryRow {
  idx: number;
  term: number;
  noop: number;
  data: Buffer;
  crc: number;
}

class SqliteLog {
  private readonly db: Db;
  private readonly insert;
  private readonly write;

  constructor(private readonly file: string) {
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    const version = Number(this.db.pragma('user_version', { simple: true }));
    const hasTables = this.db
      .prepare("SELECT count(*) AS n FROM sqlite_master WHERE name = 'entries'")
      .get() as { n: number };
    if (hasTables.n === 0) this.db.pragma(`user_version = ${SQLITE_FORMAT_VERSION}`);
    else if (version !== SQLITE_FORMAT_VERSION)
      throw new StorageError(
        'STORAGE_VERSION',
        `${file} has format version ${version}; this build reads ${SQLITE_FORMAT_VERSION}`,
        { file },
      );
    this.db.exec(SCHEMA);
    this.insert = this.db.prepare('INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?)');
    this.write = this.db.transaction((ops: readonly SqliteOp[]) => {
      for (const op of ops) this.apply(op);
    });
  }

  private apply(op: SqliteOp): void {
    switch (op.kind) {
      case 'append': {
        const first = op.entries[0];
        if (first !== undefined)
          this.db.prepare('DELETE FROM entries WHERE idx >= ?').run(first.index);
        for (const e of op.entries)
          this.insert.run(e.index, e.term, entryTypeCode(e.type), e.data, entryCrc(e));
        return;
      }
      case 'hardState':
        this.db
          .prepare('UPDATE state SET term = ?, vote = ?, commit_index = ? WHERE id = 1')
          .run(op.hardState.term, op.hardState.vote, op.hardState.commit);
        return;
      case 'compact':
      case 'reset':
        this.db
          .prepare(
            op.kind === 'reset' ? 'DELETE FROM entries' : 'DELETE FROM entries WHERE idx <= ?',
          )
          .run(...(op.kind === 'reset' ? [] : [op.index]));
        this.db
          .prepare('UPDATE state SET base_index = ?, base_term = ? WHERE id = 1')
          .run(op.index, op.term);
        return;
      case 'snapshot': {
        const head = Buffer.allocUnsafe(16);
        writeU64(head, 0, op.meta.index);
        writeU64(head, 8, op.meta.term);
        const crc = crc32c(op.data, crc32c(head));
        this.db
          .prepare('INSERT OR REPLACE INTO snapshot VALUES (1, ?, ?, ?, ?, ?)')
          .run(op.meta.index, op.meta.term, encodeConfJson(op.meta), op.data, crc);
        return;
      }
    }
  }

  writeOps(ops: readonly SqliteOp[]): void {
    this.write(ops);
  }

  load(): SqliteLoaded {
    const st = this.db.prepare('SELECT * FROM state WHERE id = 1').get() as {
      term: number;
      vote: number;
      commit_index: number;
      base_index: number;
      base_term: number;
    };
    const hardState: HardState = { term: st.term, vote: st.vote, commit: st.commit_index };
    const snap = this.db.prepare('SELECT idx, term, voters FROM snapshot WHERE id = 1').get() as
      { idx: number; term: number; voters: string } | undefined;
    const snapshot: SnapshotMeta | null =
      snap === undefined ? null : this.snapshotMeta(snap.idx, snap.term, snap.voters);
    const entries: Entry[] = [];
    let expected = st.base_index + 1;
    for (const row of this.db
      .prepare('SELECT * FROM entries ORDER BY idx')
      .iterate() as IterableIterator<EntryRow>) {
      // The `noop` column holds the entry's type code (codec.ts), 0 and 1 as ever.
      const type = entryTypeOf(row.noop);
      if (type === null)
        throw corrupt(this.file, row.idx, 'an entry type 0, 1 or 2', `type ${row.noop}`);
      const e: Entry = { index: row.idx, term: row.term, type, data: new Uint8Array(row.data) };
      if (row.idx !== expected)
        throw corrupt(
          this.file,
          row.idx,
          `entry ${expected} (the log is contiguous)`,
          `entry ${row.idx}`,
        );
      if (entryCrc(e) !== row.crc)
        throw corrupt(
          this.file,
          row.idx,
          `entry crc ${row.crc.toString(16)}`,
          `crc ${entryCrc(e).toString(16)}`,
        );
      entries.push(e);
      expected++;
    }
    return { hardState, base: { index: st.base_index, term: st.base_term }, snapshot, entries };
  }

  loadSnapshot(): { meta: SnapshotMeta; data: Uint8Array } | null {
    const row = this.db.prepare('SELECT * FROM snapshot WHERE id = 1').get() as
      { idx: number; term: number; voters: string; data: Buffer; crc: number } | undefined;
    if (row === undefined) return null;
    const head = Buffer.allocUnsafe(16);
    writeU64(head, 0, row.idx);
    writeU64(head, 8, row.term);
    if (crc32c(row.data, crc32c(head)) !== row.crc)
      throw corrupt(this.file, row.idx, `snapshot crc ${row.crc.toString(16)}`, 'a different crc');
    return {
      meta: this.snapshotMeta(row.idx, row.term, row.voters),
      data: new Uint8Array(row.data),
    };
  }

  private snapshotMeta(index: number, term: number, confJson: string): SnapshotMeta {
    const conf = decodeConfJson(confJson);
    if (conf === null)
      throw corrupt(this.file, index, 'a snapshot configuration', JSON.stringify(confJson));
    return { index, term, ...conf };
  }

  close(): void {
    this.db.close();
  }
}

let log: SqliteLog | null = null;

function handle(req: SqliteRequest): unknown {
  if (req.type === 'open') {
    log = new SqliteLog(req.file);
    return log.load();
  }
  if (log === null) throw new StorageError('STORAGE_CLOSED', 'SQLite worker has no open database');
  if (req.type === 'write') return log.writeOps(req.ops);
  if (req.type === 'loadSnapshot') return log.loadSnapshot();
  log.close();
  log = null;
  return null;
}

function reply(req: SqliteRequest): SqliteResponse {
  try {
    return { id: req.id, ok: true, value: handle(req) };
  } catch (err) {
    if (err instanceof StorageError) {
      const { code, message } = err;
      return {
        id: req.id,
        ok: false,
        error: {
          code,
          message,
          ...(err.file === undefined ? {} : { file: err.file }),
          ...(err.offset === undefined ? {} : { offset: err.offset }),
          ...(err.expected === undefined ? {} : { expected: err.expected }),
        },
      };
    }
    const code = req.type === 'write' ? 'STORAGE_WRITE_FAILED' : 'STORAGE_CORRUPT';
    return {
      id: req.id,
      ok: false,
      error: {
        code,
        message: `SQLite ${req.type} failed: ${err instanceof Error ? err.message : String(err)}`,
      },
    };
  }
}

parentPort?.on('message', (req: SqliteRequest) => parentPort?.postMessage(reply(req)));
