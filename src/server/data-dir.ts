// What a data directory is: which cluster, which member and which storage it belongs to, and
// whether the node in it is recovering lost data (DESIGN.md, "A node that lost its data").
// Written once on first start, then only when the recovery state changes, as a small JSON file
// beside the log: `flotilla-node.json`. A node refuses to open a directory that belongs to
// another cluster, member or storage kind, rather than start with a term and vote it never had.

import {
  closeSync,
  fsyncSync,
  openSync,
  readFileSync,
  readdirSync,
  renameSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { checkLimits, defaultLimits, type Limits } from '../base/limits.js';
import { nodeLimitEncodings } from './config.js';
import type { Recovery } from '../raft/index.js';
import { SEGMENT_HEAD_BYTES } from '../storage/records.js';

export const IDENTITY_FILE = 'flotilla-node.json';
/**
 * 2: each Raft group's storage in its own directory (groupDir), entries hold versioned command
 * envelopes, snapshots are framed chunk streams. Format 1 directories are refused: their log
 * holds commands this release does not read.
 */
const FORMAT = 2;

/** Where one Raft group's storage lives inside a node's data directory. */
export function groupDir(dataDir: string, group: number): string {
  return join(dataDir, `group-${group}`);
}

export type StorageKind = 'wal' | 'sqlite';

export interface DataDirIdentity {
  readonly format: number;
  readonly clusterId: string;
  readonly memberId: number;
  /** The voter ids of the initial cluster, sorted. */
  readonly members: readonly number[];
  readonly storage: StorageKind;
  readonly recovery: Recovery;
  /** The node joined a running cluster (`join`): `members` are that cluster's initial ones. */
  readonly joined?: boolean;
  /** The member was removed from its cluster: the directory must never start a node again. */
  readonly removed?: boolean;
}

export type DataDirErrorCode =
  /** The directory belongs to another cluster, member or storage kind. */
  | 'DATA_DIR_MISMATCH'
  /** The identity file cannot be read or is not one this version writes. */
  | 'DATA_DIR_INVALID'
  /** The directory belongs to a member that was removed from its cluster. */
  | 'DATA_DIR_REMOVED';

export class DataDirError extends Error {
  override readonly name = 'DataDirError';
  constructor(
    readonly code: DataDirErrorCode,
    message: string,
    readonly file: string,
  ) {
    super(message);
  }
}

/** The identity recorded in `dir`, or null when there is none yet. */
export function readIdentity(dir: string): DataDirIdentity | null {
  const file = join(dir, IDENTITY_FILE);
  const v = readJson(file, ['ENOENT']);
  return v === absent ? null : parseIdentity(v, file);
}

const absent = Symbol('absent');

/**
 * The JSON in `file`, or `absent` when reading it fails with one of `missing` (no such file);
 * any other failure, or text that is not JSON, is a DataDirError naming the file.
 */
function readJson(file: string, missing: readonly string[]): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if (missing.includes((err as NodeJS.ErrnoException).code ?? '')) return absent;
    throw new DataDirError(
      'DATA_DIR_INVALID',
      `Cannot read ${file}: ${(err as Error).message}`,
      file,
    );
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new DataDirError(
      'DATA_DIR_INVALID',
      `${file} is not valid JSON: ${(err as Error).message}`,
      file,
    );
  }
}

function parseIdentity(v: unknown, file: string): DataDirIdentity {
  const bad = (what: string): DataDirError =>
    new DataDirError('DATA_DIR_INVALID', `${file}: ${what}`, file);
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad('expected an object');
  const o = v as Record<string, unknown>;
  if (o['format'] === 1)
    throw bad(
      'format 1 was written by Flotilla 0.1, whose log and snapshots this release cannot read; ' +
        'run this node from an empty data directory (it recovers from its peers once they run this release) ' +
        'or keep running 0.1 on it',
    );
  const format = o['format'];
  if (typeof format === 'number' && Number.isInteger(format) && format > FORMAT)
    throw bad(
      `format ${format} was written by a newer release of Flotilla than this one, which reads ` +
        `format ${FORMAT}: run the newer release on it`,
    );
  if (format !== FORMAT)
    throw bad(
      `format ${JSON.stringify(format)} is not one Flotilla writes (this release reads ${FORMAT})`,
    );
  const { clusterId, memberId, members, storage, recovery, joined, removed } = o;
  if (joined !== undefined && typeof joined !== 'boolean') throw bad('joined must be a boolean');
  if (removed !== undefined && typeof removed !== 'boolean') throw bad('removed must be a boolean');
  if (typeof clusterId !== 'string' || clusterId === '') throw bad('clusterId must be a string');
  if (!Number.isSafeInteger(memberId) || (memberId as number) < 1)
    throw bad('memberId must be a positive integer');
  if (!Array.isArray(members) || !members.every((m) => Number.isSafeInteger(m) && m > 0))
    throw bad('members must be a list of positive integers');
  if (storage !== 'wal' && storage !== 'sqlite') throw bad('storage must be "wal" or "sqlite"');
  if (recovery !== 'recovering' && recovery !== 'none')
    throw bad('recovery must be "recovering" or "none"');
  return {
    format: FORMAT,
    clusterId,
    memberId: memberId as number,
    members: members as number[],
    storage,
    recovery,
    ...(joined === true ? { joined } : {}),
    ...(removed === true ? { removed } : {}),
  };
}

/** Refuses the directory of a member removed from its cluster. */
export function checkNotRemoved(dir: string, found: DataDirIdentity): void {
  if (found.removed !== true) return;
  const file = join(dir, IDENTITY_FILE);
  throw new DataDirError(
    'DATA_DIR_REMOVED',
    `Data directory ${dir} belongs to member ${found.memberId}, which was removed from cluster ${JSON.stringify(found.clusterId)} (${file}). ` +
      'A removed member never starts again: to bring this machine back, give it a new id and an empty data directory, and join it with --join.',
    file,
  );
}

/** Writes the identity durably: a temporary file, fsync, rename, fsync of the directory. */
export function writeIdentity(dir: string, id: Omit<DataDirIdentity, 'format'>): void {
  writeDurably(
    join(dir, IDENTITY_FILE),
    `${JSON.stringify({ format: FORMAT, ...id, members: [...id.members].sort((a, b) => a - b) }, null, 2)}\n`,
  );
}

/**
 * The size limits the node last started with (`node-limits.json`, written at every start):
 * its storage held entries and snapshots, and its session tables, under them, so a look at its
 * data after it stopped (`queue inspect`, `snapshot save --data-dir`) opens and replays them
 * under the same ones. (Commands themselves decode under APPLY_LIMITS on every node.)
 */
export const LIMITS_FILE = 'node-limits.json';

export function writeLimits(dir: string, limits: Limits): void {
  writeDurably(join(dir, LIMITS_FILE), `${JSON.stringify(limits, null, 2)}\n`);
}

/**
 * The limits recorded in `dir` over the defaults (a directory from before the file existed
 * has none: the defaults, which it could not have changed then without the file). A file that
 * is not what this release writes is a DataDirError.
 */
export function readLimits(dir: string): Limits {
  const file = join(dir, LIMITS_FILE);
  const raw = readJson(file, ['ENOENT', 'ENOTDIR']);
  if (raw === absent) return defaultLimits;
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw))
    throw new DataDirError('DATA_DIR_INVALID', `${file} is not an object of limits`, file);
  const out: Record<string, number> = { ...defaultLimits };
  for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
    if (!(k in defaultLimits)) continue; // a limit of a later release: nothing here reads it
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1)
      throw new DataDirError(
        'DATA_DIR_INVALID',
        `${file}: ${k} is not a count, got ${JSON.stringify(v)}`,
        file,
      );
    out[k] = v;
  }
  const limits = out as unknown as Limits;
  try {
    checkLimits(limits, nodeLimitEncodings);
  } catch (err) {
    throw new DataDirError('DATA_DIR_INVALID', `${file}: ${(err as Error).message}`, file);
  }
  return limits;
}

/** A temporary file, fsync, rename, fsync of the directory. */
function writeDurably(file: string, body: string): void {
  const dir = dirname(file);
  const tmp = `${file}.tmp`;
  const fd = openSync(tmp, 'w', 0o644);
  try {
    writeFileSync(fd, body);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
  const dfd = openSync(dir, 'r');
  try {
    fsyncSync(dfd);
  } finally {
    closeSync(dfd);
  }
}

/** What this node was started as, to compare with what the directory records. */
export interface ExpectedIdentity {
  readonly clusterId: string;
  readonly memberId: number;
  readonly members: readonly number[];
  readonly storage: StorageKind;
}

/**
 * Refuses a directory recorded for another cluster, member, initial cluster or storage kind,
 * naming every difference and what to do.
 */
export function checkIdentity(dir: string, found: DataDirIdentity, want: ExpectedIdentity): void {
  const diffs: string[] = [];
  if (found.clusterId !== want.clusterId)
    diffs.push(
      `cluster id ${JSON.stringify(found.clusterId)}, not ${JSON.stringify(want.clusterId)}`,
    );
  if (found.memberId !== want.memberId)
    diffs.push(`member id ${found.memberId}, not ${want.memberId}`);
  const sorted = [...want.members].sort((a, b) => a - b);
  if (found.members.join(',') !== sorted.join(','))
    diffs.push(`initial cluster members ${found.members.join(',')}, not ${sorted.join(',')}`);
  if (found.storage !== want.storage) diffs.push(`storage ${found.storage}, not ${want.storage}`);
  if (diffs.length === 0) return;
  const file = join(dir, IDENTITY_FILE);
  // The same node started with another storage flag is not another node: say which flag.
  if (diffs.length === 1 && found.storage !== want.storage)
    throw new DataDirError(
      'DATA_DIR_MISMATCH',
      `Data directory ${dir} holds this node's data in ${found.storage} storage, and it was ` +
        `started with ${want.storage} (${file}): start it with --storage ${found.storage}.`,
      file,
    );
  throw new DataDirError(
    'DATA_DIR_MISMATCH',
    `Data directory ${dir} belongs to another node: it records ${diffs.join('; ')} (${file}). ` +
      'Start with the settings it records, or give this node an empty data directory.',
    file,
  );
}

/** Which storage kind's files a directory holds (null when neither's). */
export function storageFilesIn(dir: string): StorageKind | null {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return null;
  }
  return storageKindOf(names);
}

/** The kind of storage a directory holding files named `names` holds, if any. */
export function storageKindOf(names: readonly string[]): StorageKind | null {
  if (names.some((n) => /^wal-[0-9a-f]+\.seg$/.test(n) || /^snap-\d+\.snap$/.test(n))) return 'wal';
  if (names.some((n) => n.startsWith('raft.sqlite'))) return 'sqlite';
  return null;
}

/**
 * Whether WAL storage in `dir` holds anything, judged by its files without opening them: a
 * snapshot, or a segment longer than a segment's head (a first start that stopped early leaves
 * heads only). For a start about to join a cluster, before it opens storage (node-setup.ts).
 */
export function walFilesHoldData(dir: string): boolean {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return false;
  }
  return names.some(
    (n) =>
      /^snap-\d+\.snap$/.test(n) ||
      (/^wal-[0-9a-f]+\.seg$/.test(n) && statSync(join(dir, n)).size > SEGMENT_HEAD_BYTES),
  );
}
