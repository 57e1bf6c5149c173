// `flotilla snapshot save FILE --data-dir DIR`: a backup made from a stopped member's data
// directory instead of a running cluster (DESIGN.md, "Backups"). It is the way out when no
// cluster can serve a backup: a majority of the members lost their data, so no leader can be
// elected and the members left wait for one for ever, or a cluster that is gone for good. The
// file is the one `save` writes from a running cluster, so `flotilla snapshot restore` starts a
// new cluster from it.
//
// Each group is rebuilt as the node would rebuild it on restart (replayStorage: its snapshot,
// then its log through the commit index it recorded) from copies of its files (group-copy.ts),
// and captured at the index it reached. The recorded commit index may lag what the cluster
// committed: entries past it may be acknowledged writes, or writes that never committed. By
// default they are left out and counted; `uncommitted` applies them too (etcd's
// force-new-cluster keeps a survivor's whole log likewise).

import { statSync } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, resolve } from 'node:path';
import { FlotillaError } from '../base/errors.js';
import { APPLY_LIMITS, type Limits } from '../base/limits.js';
import type { GroupStorage, StateMachine } from '../host/contracts.js';
import { replayStorage, type Replayed } from '../host/replay.js';
import { defaultSessionLimits, SessionMachine } from '../host/sessions.js';
import { QueueStateMachine } from '../queue/index.js';
import { createRng, RaftNode } from '../raft/index.js';
import { RangeMachine } from '../ranges/range-machine.js';
import { nodeFs } from '../storage/index.js';
import {
  BackupError,
  BackupWriter,
  partFile,
  type BackupGroupHeader,
  type BackupSaveReport,
  type SavedGroup,
  savedGroups,
} from './backup-format.js';
import { DataDirError, readIdentity, readLimits } from './data-dir.js';
import { copyGroups } from './group-copy.js';
import { KV_GROUP, QUEUE_GROUP } from './node-setup.js';

export interface OfflineSaveOptions {
  /** The stopped member's data directory. */
  readonly dataDir: string;
  /** The backup file to write (replaced atomically). */
  readonly file: string;
  /** Apply the entries past the commit index the member recorded as well. */
  readonly uncommitted?: boolean;
  /** Called with the bytes written so far, at most every `progressEveryMs`. */
  readonly onProgress?: (bytes: number) => void;
  readonly progressEveryMs?: number;
}

export type OfflineSaveReport = BackupSaveReport<
  SavedGroup & {
    /** The last entry applied to the state saved (`index` is the last entry held, at least). */
    readonly stateIndex: number;
    /** Entries past the member's recorded commit index: applied only when asked. */
    readonly uncommitted: number;
    readonly uncommittedApplied: boolean;
  }
>;

interface Rebuilt extends BackupGroupHeader {
  readonly machine: StateMachine;
  readonly replayed: Replayed;
}

/**
 * Writes a backup of the stopped member at `o.dataDir` to `o.file`: both groups rebuilt from
 * copies of its storage, then written to a temporary file beside FILE, synced and renamed into
 * place. Refuses (before writing anything) a directory that is not a member's, one whose member
 * was recovering lost data or was removed, a store split into more than one range, and a
 * member still running (its storage is locked).
 */
export async function saveFromDataDir(
  o: OfflineSaveOptions,
  checkWritable: (file: string) => Promise<void>,
): Promise<OfflineSaveReport> {
  const file = resolve(o.file);
  const kind = statSync(o.dataDir, { throwIfNoEntry: false });
  if (kind === undefined || !kind.isDirectory())
    throw new DataDirError(
      'DATA_DIR_INVALID',
      `${o.dataDir} ${kind === undefined ? 'does not exist' : 'is not a directory'}`,
      o.dataDir,
    );
  const identity = readIdentity(o.dataDir);
  if (identity === null)
    throw new DataDirError(
      'DATA_DIR_INVALID',
      `${o.dataDir} holds no member's identity file: not a Flotilla data directory, or its node never started`,
      o.dataDir,
    );
  if (identity.removed === true)
    throw new DataDirError(
      'DATA_DIR_REMOVED',
      `${o.dataDir} belongs to member ${identity.memberId}, which was removed from its cluster: its state stopped following the cluster then; save from a member that was not removed`,
      o.dataDir,
    );
  if (identity.recovery === 'recovering')
    throw new DataDirError(
      'DATA_DIR_INVALID',
      `${o.dataDir} belongs to member ${identity.memberId}, which lost its data and had not caught up with a leader since: it holds only part of the cluster's state; save from a member that did not lose its data`,
      o.dataDir,
    );
  await checkWritable(file);
  const limits = readLimits(o.dataDir);
  const copies = await copyGroups(
    o.dataDir,
    [
      { group: KV_GROUP, what: 'key-value group' },
      { group: QUEUE_GROUP, what: 'queue group' },
    ],
    limits,
  ).catch((err: unknown) => {
    // Only a failure in TMPDIR is the temporary directory's: one in the member's directory
    // (its lock on a read-only mount, say) is said as it came.
    const at = err as NodeJS.ErrnoException & { dest?: string };
    const inTmp = [at.path, at.dest].some((p) => typeof p === 'string' && p.startsWith(tmpdir()));
    if (!inTmp) throw err;
    throw fileSystemError(
      err,
      `Cannot copy the member's groups into the temporary directory ${tmpdir()} (TMPDIR; it needs as much free space as the groups take)`,
    );
  });
  let rebuilt: Rebuilt[];
  try {
    rebuilt = [];
    for (const group of [KV_GROUP, QUEUE_GROUP]) {
      const storage = await copies.open(group);
      try {
        rebuilt.push(await rebuild(group, storage, identity.memberId, identity.members, limits, o));
      } finally {
        await storage.close();
      }
    }
  } finally {
    await copies.release();
  }
  return write(file, rebuilt, identity.clusterId, identity.memberId, o);
}

async function rebuild(
  group: number,
  storage: GroupStorage,
  id: number,
  members: readonly number[],
  limits: Limits,
  o: OfflineSaveOptions,
): Promise<Rebuilt> {
  // The machines as the node builds them: commands decoded under the limits every node applies
  // them with (APPLY_LIMITS), sessions under those it last started with, so a command is
  // decoded and applied here exactly as it was there.
  const range = group === KV_GROUP ? new RangeMachine({ limits: APPLY_LIMITS }) : null;
  const machine = new SessionMachine(range ?? new QueueStateMachine(), {
    ...defaultSessionLimits,
    maxSessions: limits.maxSessions,
    window: limits.sessionWindow,
  });
  const replayed = await replayStorage(storage, machine, { uncommitted: o.uncommitted === true });
  if (range !== null && range.descriptor().end !== null)
    throw new FlotillaError(
      'MULTIPLE_RANGES',
      'The store had split into more than one range: a backup is not supported on a split store, and this member holds range 0 alone',
    );
  // The core, built on the copy as the node builds it, knows the term and the configuration
  // at any index from its snapshot on.
  const initial = storage.initialState();
  const core = new RaftNode({
    id,
    voters: members,
    rng: createRng(id),
    initial: { ...initial, applied: initial.snapshot?.index ?? 0 },
  });
  // The state is as of the entry applied last; the backup is recorded at the last entry held,
  // past it when entries were left out: the restored log goes on after that index, so the
  // queue's fencing tokens (log indexes) it hands out are above every one this member saw.
  const applied = replayed.appliedIndex;
  const index = Math.max(applied, initial.entries.at(-1)?.index ?? 0);
  const term = core.termAt(index);
  if (term === undefined)
    throw new Error(`Group ${group}: no term known for index ${index} in the member's log`);
  return {
    group,
    index,
    term,
    voters: core.confStateAt(applied).voters,
    machine,
    replayed,
  };
}

async function write(
  file: string,
  groups: readonly Rebuilt[],
  clusterId: string,
  savedBy: number,
  o: OfflineSaveOptions,
): Promise<OfflineSaveReport> {
  // A random part: two saves of one name (two containers, both pid 1) never share it.
  const tmp = partFile(file);
  const fh = await open(tmp, 'wx', 0o600);
  const w = new BackupWriter();
  let written = 0;
  let lastProgress = Date.now();
  const everyMs = o.progressEveryMs ?? 2_000;
  const put = async (bytes: Uint8Array): Promise<void> => {
    await fh.write(bytes);
    written += bytes.length;
    if (o.onProgress !== undefined && Date.now() - lastProgress >= everyMs) {
      lastProgress = Date.now();
      o.onProgress(written);
    }
  };
  const savedAt = new Date().toISOString();
  try {
    await put(
      w.header({
        clusterId,
        savedBy,
        savedAt,
        groups: groups.map(({ group, index, term, voters }) => ({ group, index, term, voters })),
      }),
    );
    for (const g of groups)
      for await (const c of g.machine.snapshot()) await put(w.chunk(g.group, c));
    const end = w.end();
    await put(end.bytes);
    await fh.sync();
    await fh.close();
    await rename(tmp, file);
    await nodeFs.syncDir(dirname(file));
    return {
      file,
      bytes: written,
      sha256: end.sha256,
      from: o.dataDir,
      clusterId,
      savedBy,
      savedAt,
      groups: savedGroups(groups, end.summary).map((g, i) => ({
        ...g,
        stateIndex: groups[i]?.replayed.appliedIndex ?? 0,
        uncommitted: groups[i]?.replayed.uncommitted ?? 0,
        uncommittedApplied: o.uncommitted === true,
      })),
    };
  } catch (err) {
    await fh.close().catch(() => undefined);
    await rm(tmp, { force: true });
    throw fileSystemError(err, `Cannot write the backup to ${file}; nothing was saved`);
  }
}

/**
 * A file system's refusal (no space, no such directory, no access) as a BackupError naming
 * what could not be done; any other error as it came.
 */
function fileSystemError(err: unknown, what: string): unknown {
  // A system call's failure carries the call's name; the project's own errors do not.
  if (!(err instanceof Error) || typeof (err as NodeJS.ErrnoException).syscall !== 'string')
    return err;
  return new BackupError('BACKUP_UNWRITABLE', `${what}: ${err.message}`);
}
