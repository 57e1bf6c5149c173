// A stopped node's Raft groups, read from its data directory without touching it (`flotilla
// queue inspect`, `flotilla snapshot save --data-dir`). Each group's storage is locked as a
// node locks it (so a running node is refused, and a node cannot start meanwhile), copied, and
// the copy is opened. Opening a log may repair it (cut a torn tail, start a segment); that
// happens to the copy, and the node repairs its own log when it next starts. The copy costs
// the groups' size in temporary space. A node run with walSync "shared" may have stopped with
// its last writes only in its node journal: the journal files are copied beside the groups and
// redone into the copies, as the node would redo them into its own logs when it next starts.

import { cpSync, existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { defaultLimits, type Limits } from '../base/limits.js';
import type { GroupStorage } from '../host/contracts.js';
import {
  LOCK_FILE,
  nodeFs,
  openSqliteStorage,
  openWalStorage,
  replayJournal,
  type DirLock,
} from '../storage/index.js';
import { JOURNAL_NAME } from '../storage/journal.js';
import {
  DataDirError,
  groupDir,
  readIdentity,
  storageFilesIn,
  type StorageKind,
} from './data-dir.js';

const SQLITE_FILE = 'raft.sqlite';

/** Copies not released yet: a command stopped by a signal removes them (releaseCopiesSync). */
const live = new Set<string>();

/**
 * Removes every copy not released yet, synchronously: for a command stopped by a signal, whose
 * pending work never reaches its `release` (the copies are as large as the groups). The locks
 * go with the process (a lock whose process is gone is taken over).
 */
export function releaseCopiesSync(): void {
  for (const dir of live) rmSync(dir, { recursive: true, force: true });
  live.clear();
}

/** Copies of a stopped node's groups, opened one at a time; `release` removes them. */
export interface GroupCopies {
  readonly storage: StorageKind;
  /** Opens the copy of `group` as the node opens its groups; the caller closes it. */
  open(group: number): Promise<GroupStorage>;
  /** Removes the copies and frees the node's locks. */
  release(): Promise<void>;
}

/**
 * Locks and copies `groups` of the stopped node whose data directory is `dataDir`. Throws a
 * DataDirError (DATA_DIR_INVALID) for a directory that holds no such group, naming it as
 * `what` says, and the storage's STORAGE_LOCKED while a running node holds it.
 */
export async function copyGroups(
  dataDir: string,
  groups: readonly { readonly group: number; readonly what: string }[],
  /** The node's limits (readLimits): its storage opens with its own entry and snapshot bounds. */
  limits: Pick<Limits, 'maxEntryBytes' | 'maxSnapshotBytes'> = defaultLimits,
): Promise<GroupCopies> {
  if (!existsSync(dataDir) || !statSync(dataDir).isDirectory())
    throw new DataDirError('DATA_DIR_INVALID', `${dataDir} is not a directory`, dataDir);
  const kinds = groups.map((g) => storageKind(dataDir, g.group, g.what));
  const storage = kinds[0] ?? 'wal';
  const locks: DirLock[] = [];
  const copy = mkdtempSync(join(tmpdir(), 'flotilla-copy-'));
  live.add(copy);
  const release = async (): Promise<void> => {
    rmSync(copy, { recursive: true, force: true });
    live.delete(copy);
    for (const l of locks.splice(0)) await l.release();
  };
  try {
    for (const { group } of groups) locks.push(await lockGroup(groupDir(dataDir, group), storage));
    for (const { group } of groups) {
      const dir = groupDir(dataDir, group);
      cpSync(dir, join(copy, basename(dir)), {
        recursive: true,
        filter: (src) => !isLockFile(src),
      });
    }
    if (storage === 'wal') await redoJournalInto(dataDir, copy);
  } catch (err) {
    await release();
    throw err;
  }
  return {
    storage,
    // A fault found in the copy is reported with the member's own file, which is what the
    // operator can look at (the copy is gone once released).
    open: (group) =>
      openGroup(join(copy, basename(groupDir(dataDir, group))), storage, limits).catch(
        (err: unknown) => {
          throw namingOriginal(err, copy, dataDir);
        },
      ),
    release,
  };
}

/** `err` with the copy's paths in its message (and file) replaced by the data directory's. */
function namingOriginal(err: unknown, copy: string, dataDir: string): unknown {
  if (!(err instanceof Error) || !err.message.includes(copy)) return err;
  err.message = err.message.split(copy).join(dataDir);
  const e = err as { file?: unknown };
  if (typeof e.file === 'string' && e.file.startsWith(copy))
    Object.defineProperty(err, 'file', { value: dataDir + e.file.slice(copy.length) });
  return err;
}

/** The storage kind of `group` in `dataDir`, or a DataDirError saying why there is none. */
function storageKind(dataDir: string, group: number, what: string): StorageKind {
  const dir = groupDir(dataDir, group);
  const found = storageFilesIn(dir);
  if (found === null)
    throw new DataDirError(
      'DATA_DIR_INVALID',
      `${dataDir} holds no ${what}: ${dir} has no WAL or SQLite files (not a Flotilla ` +
        `data directory, or its node never started)`,
      dir,
    );
  // The identity file, when there is one, says which kind the node wrote.
  const recorded = readIdentity(dataDir)?.storage;
  if (recorded !== undefined && recorded !== found)
    throw new DataDirError(
      'DATA_DIR_MISMATCH',
      `${dataDir} says its node used ${recorded} storage, but ${dir} holds ${found} files`,
      dir,
    );
  return found;
}

/**
 * Copies the node journal's files of `dataDir` (if any) into `copy` and redoes them there: the
 * writes they hold for the groups copied land in their copies; those for groups not copied are
 * skipped, as writes to a deleted segment are.
 */
async function redoJournalInto(dataDir: string, copy: string): Promise<void> {
  const files = readdirSync(dataDir).filter((n) => JOURNAL_NAME.test(n));
  if (files.length === 0) return;
  for (const name of files) cpSync(join(dataDir, name), join(copy, name));
  await replayJournal(copy);
}

/** The lock a node takes on the group's storage: held while we read, refused while it runs. */
function lockGroup(dir: string, storage: StorageKind): Promise<DirLock> {
  return nodeFs.lock(storage === 'wal' ? join(dir, LOCK_FILE) : `${join(dir, SQLITE_FILE)}.lock`);
}

function isLockFile(path: string): boolean {
  return path.endsWith(`/${LOCK_FILE}`) || path.endsWith(`${SQLITE_FILE}.lock`);
}

/** Opens a copy as the node opens its groups (the node's own storage options). */
async function openGroup(
  dir: string,
  storage: StorageKind,
  l: Pick<Limits, 'maxEntryBytes' | 'maxSnapshotBytes'>,
): Promise<GroupStorage> {
  const limits = { maxEntryBytes: l.maxEntryBytes, maxSnapshotBytes: l.maxSnapshotBytes };
  if (storage === 'sqlite') return openSqliteStorage(dir, limits);
  return openWalStorage(dir, { ...limits, snapshotsCoverCompaction: true });
}
