// `flotilla snapshot restore`: a fresh data directory for one member of a NEW cluster that
// starts from a backup's state (DESIGN.md, "Backups"). Run once per member with the same file;
// `flotilla start` on each then forms the cluster. Nothing is written until the whole file
// checked out (magic, format, checksum, counts), and nothing appears at the target until every
// group's state loaded and was stored: the directory is built beside the target and renamed
// into place.

import { createReadStream } from 'node:fs';
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { APPLY_LIMITS, defaultLimits } from '../base/limits.js';
import { chunkStream, type GroupStorage, type StateMachine } from '../host/contracts.js';
import { SessionMachine, sessionHeaderWithoutDirectory } from '../host/sessions.js';
import { collectSnapshot, snapshotChunks } from '../host/snapshot-stream.js';
import { RangeMachine } from '../ranges/range-machine.js';
import { QueueStateMachine } from '../queue/index.js';
import { nodeFs, openSqliteStorage, openWalStorage } from '../storage/index.js';
import { BackupError, readBackup, type BackupHeader, type BackupSummary } from './backup-format.js';
import { groupDir, writeIdentity, type StorageKind } from './data-dir.js';
import { makeDirs } from '../storage/make-dirs.js';
import { KV_GROUP, QUEUE_GROUP } from './node-setup.js';
import { META_GROUP } from '../ranges/types.js';

export interface RestoreOptions {
  readonly file: string;
  readonly dataDir: string;
  /** This member's id in the new cluster. */
  readonly id: number;
  /** The new cluster's initial members (voters of both groups). */
  readonly members: readonly number[];
  readonly clusterId: string;
  readonly storage: StorageKind;
}

export interface RestoreReport {
  readonly dataDir: string;
  readonly clusterId: string;
  readonly memberId: number;
  readonly members: readonly number[];
  readonly sha256: string;
  readonly savedFrom: {
    readonly clusterId: string;
    readonly savedBy: number;
    readonly savedAt: string;
  };
  readonly groups: readonly { group: number; index: number; term: number; bytes: number }[];
}

/** Reads the whole file and checks it; returns its header and summary. Writes nothing. */
export async function verifyBackupFile(
  file: string,
): Promise<{ header: BackupHeader; summary: BackupSummary; sha256: string; bytes: number }> {
  let header: BackupHeader | null = null;
  const bytes = (await statOrFail(file)).size;
  // "truncated: it ends at byte 0, inside the header" said it of a file that holds nothing.
  if (bytes === 0)
    throw new BackupError('BACKUP_CORRUPT', `Backup ${file} is empty (0 bytes)${useAnother}`);
  try {
    for await (const r of readBackup(readFile(file))) {
      if (r.kind === 'header') header = r.header;
      else if (r.kind === 'end')
        return { header: header as BackupHeader, summary: r.summary, sha256: r.sha256, bytes };
    }
  } catch (err) {
    // The damage, then what to do about it: no repair is possible, only another copy.
    if (err instanceof BackupError && err.code === 'BACKUP_CORRUPT')
      throw new BackupError('BACKUP_CORRUPT', `${err.message}${useAnother}`);
    throw err;
  }
  throw new Error('readBackup ended without its end record');
}

const useAnother =
  '; nothing was written: restore from another copy of the backup, or save a new one (flotilla snapshot save)';

export async function restoreBackup(o: RestoreOptions): Promise<RestoreReport> {
  const members = [...new Set(o.members)].sort((a, b) => a - b);
  if (!members.includes(o.id))
    throw new BackupError(
      'RESTORE_INVALID',
      `Member ${o.id} is not in the initial cluster (${members.join(', ')}): restore writes the directory of one of its members`,
    );
  const target = resolve(o.dataDir);
  await checkEmptyTarget(target);
  // First pass: the file is whole and unchanged, or nothing happens.
  const checked = await verifyBackupFile(o.file);
  const groups = checked.header.groups.map((g) => g.group);
  if (groups.join(',') !== `${KV_GROUP},${QUEUE_GROUP}`)
    throw new BackupError(
      'BACKUP_UNSUPPORTED',
      `Backup holds groups ${groups.join(', ')}; this release runs groups ${KV_GROUP} and ${QUEUE_GROUP}`,
    );
  const work = join(dirname(target), `.${basename(target)}.restoring-${process.pid}`);
  await rm(work, { recursive: true, force: true });
  // The parents follow the umask; the data directory (renamed from this) is its owner's alone.
  try {
    // One level at a time: Node's recursive mkdir never returns under /proc (make-dirs.ts).
    makeDirs(dirname(work));
    await mkdir(work, { mode: 0o700 });
  } catch (err) {
    // Said of the directory asked for: the work directory's name means nothing to the user.
    throw unwritable(target, err);
  }
  try {
    const stored = await storeGroups(o, work, members, checked.sha256);
    // A backup holds no meta group (the new cluster's range map starts afresh); its storage is
    // made empty here, as a first start makes it: a blank group directory beside groups that
    // hold a log is what a node that lost part of its data shows (node-setup.ts).
    await (await openStorage(o.storage, groupDir(work, META_GROUP))).close();
    writeIdentity(work, {
      clusterId: o.clusterId,
      memberId: o.id,
      members,
      storage: o.storage,
      recovery: 'none',
    });
    await checkEmptyTarget(target);
    // An empty target directory is replaced by the rename (POSIX allows it); a missing one made.
    await rename(work, target);
    await nodeFs.syncDir(dirname(target));
    return {
      dataDir: target,
      clusterId: o.clusterId,
      memberId: o.id,
      members,
      sha256: checked.sha256,
      savedFrom: {
        clusterId: checked.header.clusterId,
        savedBy: checked.header.savedBy,
        savedAt: checked.header.savedAt,
      },
      groups: stored,
    };
  } catch (err) {
    await rm(work, { recursive: true, force: true });
    throw err;
  }
}

/**
 * Second pass: each group's chunks become its stored snapshot, one group in memory at a time,
 * after they loaded into a fresh state machine (a state the node could not load is refused
 * here, not at its first start). The file is checked again as it is read: one changed since
 * the first pass is refused.
 */
async function storeGroups(
  o: RestoreOptions,
  work: string,
  members: readonly number[],
  sha256: string,
): Promise<{ group: number; index: number; term: number; bytes: number }[]> {
  let header: BackupHeader | null = null;
  let current: { group: number; chunks: Uint8Array[] } | null = null;
  const done: { group: number; index: number; term: number; bytes: number }[] = [];
  const finish = async (): Promise<void> => {
    if (current === null || header === null) return;
    const { group, chunks } = current;
    current = null;
    const g = header.groups.find((x) => x.group === group);
    if (g === undefined) throw new Error(`Group ${group} is not in the header`);
    const data = await collectSnapshot(
      chunkStream(() => chunks[Symbol.iterator]()),
      () => Promise.resolve(),
    );
    await checkLoads(group, data);
    const storage = await openStorage(o.storage, groupDir(work, group));
    try {
      // The new cluster's voters; the saved index and term, so the log goes on from there and
      // no new leader's entry can ever sort below the saved state's (Figure 2's log matching).
      await storage.saveSnapshot({ index: g.index, term: g.term, voters: members }, data);
      await storage.persist([], { term: g.term, vote: 0, commit: g.index });
    } finally {
      await storage.close();
    }
    done.push({ group, index: g.index, term: g.term, bytes: data.length });
  };
  for await (const r of readBackup(readFile(o.file))) {
    if (r.kind === 'header') header = r.header;
    else if (r.kind === 'chunk') {
      if (current !== null && current.group !== r.group) await finish();
      // The old cluster's member directory stays behind: the new members are the ones given.
      if (current === null)
        current = {
          group: r.group,
          chunks: [sessionHeaderWithoutDirectoryOrFail(r.group, r.data)],
        };
      else current.chunks.push(r.data);
    } else {
      if (r.sha256 !== sha256)
        throw new BackupError('BACKUP_CORRUPT', `Backup ${o.file} changed while it was restored`);
      await finish();
    }
  }
  const missing = [KV_GROUP, QUEUE_GROUP].filter((g) => !done.some((d) => d.group === g));
  if (missing.length > 0)
    throw new BackupError(
      'BACKUP_STATE_INVALID',
      `Backup holds no state for group ${missing.join(', ')}`,
    );
  return done;
}

function sessionHeaderWithoutDirectoryOrFail(group: number, chunk: Uint8Array): Uint8Array {
  try {
    return sessionHeaderWithoutDirectory(chunk);
  } catch (err) {
    throw new BackupError('BACKUP_STATE_INVALID', `Group ${group}: ${(err as Error).message}`);
  }
}

/** Loads a group's snapshot into a fresh state machine, as the node will at its start. */
async function checkLoads(group: number, data: Uint8Array): Promise<void> {
  const inner: StateMachine =
    // Range 0's machine: it loads its own snapshots and those written before ranges existed.
    group === KV_GROUP ? new RangeMachine({ limits: APPLY_LIMITS }) : new QueueStateMachine();
  try {
    await new SessionMachine(inner).restore(snapshotChunks(data));
  } catch (err) {
    throw new BackupError(
      'BACKUP_STATE_INVALID',
      `Group ${group}'s state in the backup does not load: ${(err as Error).message}`,
    );
  }
}

function openStorage(kind: StorageKind, dir: string): Promise<GroupStorage> {
  const limits = {
    maxEntryBytes: defaultLimits.maxEntryBytes,
    maxSnapshotBytes: defaultLimits.maxSnapshotBytes,
  };
  return kind === 'sqlite'
    ? openSqliteStorage(dir, limits)
    : openWalStorage(dir, { ...limits, snapshotsCoverCompaction: true });
}

async function checkEmptyTarget(target: string): Promise<void> {
  let names: string[];
  try {
    const st = await stat(target);
    if (!st.isDirectory())
      throw new BackupError('RESTORE_DIR_NOT_EMPTY', `${target} exists and is not a directory`);
    names = await readdir(target);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    if (err instanceof BackupError) throw err;
    throw unwritable(target, err);
  }
  if (names.length > 0)
    throw new BackupError(
      'RESTORE_DIR_NOT_EMPTY',
      `Data directory ${target} is not empty (${names.slice(0, 3).join(', ')}${names.length > 3 ? ', ...' : ''}): restore writes only a fresh one`,
    );
}

function unwritable(target: string, err: unknown): BackupError {
  const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
  // The component that failed, when it is a parent the restore had to create first.
  const failed = (err as NodeJS.ErrnoException).path;
  const missing =
    typeof failed === 'string' && failed !== target && !failed.includes('.restoring-')
      ? failed
      : null;
  const why =
    code === 'ENOTDIR'
      ? 'a directory on its path is a file'
      : missing !== null
        ? `${dirname(missing)} does not let this user create ${missing} (${code})`
        : `${dirname(target)} does not let this user create it (${code})`;
  return new BackupError(
    'RESTORE_DIR_UNWRITABLE',
    `Cannot create the data directory ${target}: ${why}; give --data-dir a path this user can create; nothing was written`,
  );
}

async function statOrFail(file: string): Promise<{ size: number }> {
  let st;
  try {
    st = await stat(file);
  } catch (err) {
    throw new BackupError(
      'BACKUP_UNREADABLE',
      `Cannot read backup ${file}: ${(err as Error).message}`,
    );
  }
  // Read as a file, a directory failed with a bare EISDIR and no code of a backup's.
  if (st.isDirectory())
    throw new BackupError(
      'BACKUP_UNREADABLE',
      `Cannot read backup ${file}: it is a directory; give the file \`flotilla snapshot save\` wrote`,
    );
  return st;
}

/** The file's bytes; a failure to read them (no permission, an I/O error) is BACKUP_UNREADABLE. */
async function* readFile(file: string): AsyncGenerator<Uint8Array> {
  try {
    for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 }))
      yield chunk as Uint8Array;
  } catch (err) {
    throw new BackupError(
      'BACKUP_UNREADABLE',
      `Cannot read backup ${file}: ${(err as Error).message}`,
    );
  }
}
