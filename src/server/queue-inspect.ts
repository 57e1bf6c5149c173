// `flotilla queue inspect`: the job queue of a stopped node, read from its data directory. The
// queue is rebuilt as the node would rebuild it on restart (replayStorage: the snapshot, then
// the committed entries through the same SessionMachine wrapper the runtime applies them
// with), so what it shows is what the node holds, not a second reading of the format.
//
// Read-only: the queue group's storage is locked as a node locks it (so a running node is
// refused, and a node cannot start meanwhile), copied, and the copy is opened. Opening a log
// may repair it (cut a torn tail, start a segment); that happens to the copy, and the node
// repairs its own log when it next starts. The copy costs the group's size in temporary space.
// A node run with walSync "shared" may have stopped with the queue's last writes only in its
// node journal: the journal files are copied beside the group and redone into the copy, as
// the node would redo them into its own logs when it next starts.

import { cpSync, existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { defaultLimits } from '../base/limits.js';
import { replayStorage } from '../host/replay.js';
import { defaultSessionLimits, SessionMachine } from '../host/sessions.js';
import type { GroupStorage } from '../host/contracts.js';
import {
  jobStates,
  QueueStateMachine,
  type JobState,
  type JobView,
  type QueueStats,
} from '../queue/index.js';
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
import { QUEUE_GROUP } from './node.js';

const SQLITE_FILE = 'raft.sqlite';

export interface QueueInspection {
  readonly dataDir: string;
  readonly storage: StorageKind;
  /** The snapshot the queue was restored from (0: none). */
  readonly snapshotIndex: number;
  /** The last entry applied: the commit index the node recorded. */
  readonly appliedIndex: number;
  /** Entries past it, not applied: the node did not know them committed when it stopped. */
  readonly uncommitted: number;
  /** The queue machine's clock: the time of the last command applied. */
  readonly timeMs: number;
  readonly queues: readonly QueueStats[];
  /** The jobs of those queues (in `state` only, when given), by queue, state, then age. */
  readonly jobs: readonly JobView[];
}

/**
 * Rebuilds the queue of the stopped node whose data directory is `dataDir`. Throws a
 * DataDirError (DATA_DIR_INVALID) for a directory that holds no queue group, and the
 * storage's STORAGE_LOCKED while a running node holds it.
 */
export async function inspectQueue(
  dataDir: string,
  o: { queue?: string; state?: JobState } = {},
): Promise<QueueInspection> {
  const dir = groupDir(dataDir, QUEUE_GROUP);
  const storage = queueStorageKind(dataDir, dir);
  const lock = await lockGroup(dir, storage);
  const copy = mkdtempSync(join(tmpdir(), 'flotilla-inspect-'));
  try {
    const groupCopy = join(copy, basename(dir));
    cpSync(dir, groupCopy, { recursive: true, filter: (src) => !isLockFile(src) });
    if (storage === 'wal') await redoJournalInto(dataDir, copy);
    const queue = new QueueStateMachine();
    const machine = new SessionMachine(queue, {
      ...defaultSessionLimits,
      maxSessions: defaultLimits.maxSessions,
      window: defaultLimits.sessionWindow,
    });
    const opened = await openGroup(groupCopy, storage);
    const replayed = await replayStorage(opened, machine).finally(() => opened.close());
    const names = queue.queueNames().filter((n) => o.queue === undefined || n === o.queue);
    const queues = names.flatMap((n) => queue.stats(n) ?? []);
    const jobs: JobView[] = [];
    for (const name of names)
      for (const state of o.state === undefined ? jobStates : [o.state])
        for (let after: number | null = 0; after !== null;) {
          const page = queue.list(name, state, { after, limit: 1_000 });
          jobs.push(...page.jobs);
          after = page.next;
        }
    return { dataDir, storage, ...replayed, timeMs: queue.timeMs(), queues, jobs };
  } finally {
    rmSync(copy, { recursive: true, force: true });
    await lock.release();
  }
}

/** The storage kind of the queue group in `dir`, or a DataDirError saying why there is none. */
function queueStorageKind(dataDir: string, dir: string): StorageKind {
  if (!existsSync(dataDir) || !statSync(dataDir).isDirectory())
    throw new DataDirError('DATA_DIR_INVALID', `${dataDir} is not a directory`, dataDir);
  const found = storageFilesIn(dir);
  if (found === null)
    throw new DataDirError(
      'DATA_DIR_INVALID',
      `${dataDir} holds no queue group: ${dir} has no WAL or SQLite files (not a Flotilla ` +
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
 * writes they hold for the queue group land in its copy; those for groups not copied are
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

/** Opens the copy as the node opens its groups (the node's own storage options). */
async function openGroup(dir: string, storage: StorageKind): Promise<GroupStorage> {
  const limits = {
    maxEntryBytes: defaultLimits.maxEntryBytes,
    maxSnapshotBytes: defaultLimits.maxSnapshotBytes,
  };
  if (storage === 'sqlite') return openSqliteStorage(dir, limits);
  return openWalStorage(dir, { ...limits, snapshotsCoverCompaction: true });
}
