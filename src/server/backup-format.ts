// The backup file (`flotilla snapshot save`, DESIGN.md "Backups"): both Raft groups' state as
// of one moment, written as it streams out of a node and checked whole before anything is
// restored from it. The layout, all integers little-endian:
//
//   "FLBK"  u16 format (1)  u32 n  header: n bytes of JSON
//   records, each  u8 kind  u8 group  u32 n  n bytes
//     kind 1: a chunk of the group's snapshot, in the order the state machine produced them
//     kind 2: the end: the group is 0 and the n bytes are the summary JSON (chunks and bytes
//             per group), then 32 bytes of SHA-256 over every byte before them
//
// The header says what was captured (cluster, member, each group's applied index, term and
// voters) and can be written before the first chunk; the sizes are known only once the last
// chunk has streamed, so they are in the summary, which the reader checks against what it
// read. The checksum covers the header, every record and the summary: a truncated file lacks
// it, a flipped byte fails it.

import { createHash, randomBytes, type Hash } from 'node:crypto';

const MAGIC = Buffer.from('FLBK', 'latin1');
export const BACKUP_FORMAT = 1;
const KIND_CHUNK = 1;
const KIND_END = 2;
const CHECKSUM_BYTES = 32;
/** A chunk larger than this is not one a state machine produced: the length is damaged. */
export const MAX_BACKUP_CHUNK_BYTES = 64 << 20;
/** The header and the summary are a few hundred bytes; this bounds what a damaged length costs. */
const MAX_JSON_BYTES = 1 << 20;

/**
 * The temporary file a save of `file` writes before renaming it into place: a random part, so
 * two saves of one name (two containers, both pid 1) never share it, and one per process, so a
 * signal handler can remove it.
 */
export function partFile(file: string): string {
  return `${file}.part-${process.pid}-${partSuffix}`;
}
const partSuffix = randomBytes(4).toString('hex');

export type BackupErrorCode =
  /** The file is damaged: truncated, a byte changed, or records that do not add up. */
  | 'BACKUP_CORRUPT'
  /** The backup file cannot be opened or read. */
  | 'BACKUP_UNREADABLE'
  /** A save's stream from the node broke off or failed: nothing was written. */
  | 'BACKUP_INCOMPLETE'
  /** A save's file cannot be written there (no such directory, not a directory, no access). */
  | 'BACKUP_UNWRITABLE'
  /** Not a Flotilla backup, or one of a format this release does not read. */
  | 'BACKUP_UNSUPPORTED'
  /** The file is sound but a group's state in it does not load (restore checks before writing). */
  | 'BACKUP_STATE_INVALID'
  /** Restore refuses a data directory that holds anything. */
  | 'RESTORE_DIR_NOT_EMPTY'
  /** Restore cannot create the data directory there (a parent not a directory, no access). */
  | 'RESTORE_DIR_UNWRITABLE'
  /** Restore was asked for something that cannot be: a member id not in the initial cluster. */
  | 'RESTORE_INVALID';

/** What a save wrote, as `flotilla snapshot save` prints it. */
export interface BackupSaveReport<G extends SavedGroup = SavedGroup> {
  readonly file: string;
  readonly bytes: number;
  readonly sha256: string;
  /** The endpoint that served it, or the data directory it was made from. */
  readonly from: string;
  readonly clusterId: string;
  readonly savedBy: number;
  readonly savedAt: string;
  readonly groups: readonly G[];
}

/** One group of a save's report. */
export interface SavedGroup {
  readonly group: number;
  readonly index: number;
  readonly term: number;
  readonly chunks: number;
  readonly bytes: number;
}

/** Each group of a header with what the summary counted of it, for a save's report. */
export function savedGroups(
  groups: readonly BackupGroupHeader[],
  summary: BackupSummary,
): SavedGroup[] {
  return groups.map((g) => {
    const s = summary.groups.find((x) => x.group === g.group);
    return {
      group: g.group,
      index: g.index,
      term: g.term,
      chunks: s?.chunks ?? 0,
      bytes: s?.bytes ?? 0,
    };
  });
}

export class BackupError extends Error {
  override readonly name = 'BackupError';
  constructor(
    readonly code: BackupErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export interface BackupGroupHeader {
  readonly group: number;
  /** The index the group's state machine had applied when captured. */
  readonly index: number;
  /** The term of the entry at that index. */
  readonly term: number;
  /** The group's voters then (for the record; a restore names the new cluster's). */
  readonly voters: readonly number[];
}

export interface BackupHeader {
  readonly format: number;
  readonly clusterId: string;
  /** The member that captured the state. */
  readonly savedBy: number;
  /** When it was captured (ISO 8601, the member's clock; informative only). */
  readonly savedAt: string;
  readonly groups: readonly BackupGroupHeader[];
}

export interface BackupGroupSummary {
  readonly group: number;
  readonly chunks: number;
  /** Bytes of the group's chunks (their records' framing not counted). */
  readonly bytes: number;
}

export interface BackupSummary {
  readonly groups: readonly BackupGroupSummary[];
}

export type BackupRecord =
  | { readonly kind: 'header'; readonly header: BackupHeader }
  | { readonly kind: 'chunk'; readonly group: number; readonly data: Uint8Array }
  /** The last record: the file checked out whole (checksum, counts, nothing after it). */
  | { readonly kind: 'end'; readonly summary: BackupSummary; readonly sha256: string };

/**
 * Encodes a backup as it is produced: `header` first, then each group's chunks in the header's
 * group order, then `end`. Each call returns the bytes to write; nothing is held but counts and
 * the running checksum.
 */
export class BackupWriter {
  private readonly hash: Hash = createHash('sha256');
  private readonly counts = new Map<number, { chunks: number; bytes: number }>();
  private order: number[] = [];
  private at = 0;
  private ended = false;

  header(h: Omit<BackupHeader, 'format'>): Buffer {
    if (this.order.length > 0 || this.ended) throw new Error('Backup header written twice');
    const full: BackupHeader = { format: BACKUP_FORMAT, ...h };
    this.order = h.groups.map((g) => g.group);
    for (const g of this.order) this.counts.set(g, { chunks: 0, bytes: 0 });
    const json = Buffer.from(JSON.stringify(full), 'utf8');
    const head = Buffer.alloc(MAGIC.length + 2 + 4);
    MAGIC.copy(head, 0);
    head.writeUInt16LE(BACKUP_FORMAT, 4);
    head.writeUInt32LE(json.length, 6);
    return this.out(Buffer.concat([head, json]));
  }

  chunk(group: number, data: Uint8Array): Buffer {
    const c = this.counts.get(group);
    if (c === undefined || this.ended)
      throw new Error(`Backup chunk of group ${group} out of place`);
    // Groups in header order: once a later group began, an earlier one is finished.
    const pos = this.order.indexOf(group);
    if (pos < this.at) throw new Error(`Backup chunk of group ${group} after the next group began`);
    this.at = pos;
    if (data.length > MAX_BACKUP_CHUNK_BYTES)
      throw new Error(`Snapshot chunk of ${data.length} bytes exceeds ${MAX_BACKUP_CHUNK_BYTES}`);
    c.chunks += 1;
    c.bytes += data.length;
    return this.out(Buffer.concat([recordHead(KIND_CHUNK, group, data.length), data]));
  }

  /** The summary and the checksum; nothing may follow. */
  end(): { bytes: Buffer; summary: BackupSummary; sha256: string } {
    if (this.ended) throw new Error('Backup ended twice');
    this.ended = true;
    const summary: BackupSummary = {
      groups: this.order.map((group) => {
        const c = this.counts.get(group) ?? { chunks: 0, bytes: 0 };
        return { group, chunks: c.chunks, bytes: c.bytes };
      }),
    };
    const json = Buffer.from(JSON.stringify(summary), 'utf8');
    const body = this.out(Buffer.concat([recordHead(KIND_END, 0, json.length), json]));
    const digest = this.hash.digest();
    return { bytes: Buffer.concat([body, digest]), summary, sha256: digest.toString('hex') };
  }

  private out(b: Buffer): Buffer {
    this.hash.update(b);
    return b;
  }
}

function recordHead(kind: number, group: number, length: number): Buffer {
  const b = Buffer.alloc(6);
  b.writeUInt8(kind, 0);
  b.writeUInt8(group, 1);
  b.writeUInt32LE(length, 2);
  return b;
}

/** Pulls exact byte counts out of a stream of buffers of any size, hashing what it hands out. */
class ByteReader {
  private buf: Buffer = Buffer.alloc(0);
  private readonly it: AsyncIterator<Uint8Array>;
  private done = false;
  /** Bytes handed out so far (for messages). */
  offset = 0;
  readonly hash: Hash = createHash('sha256');

  constructor(source: AsyncIterable<Uint8Array>) {
    this.it = source[Symbol.asyncIterator]();
  }

  /** Up to `n` bytes ahead, not taken: fewer only where the stream ends. */
  async peek(n: number): Promise<Buffer> {
    await this.fill(n);
    return this.buf.subarray(0, n);
  }

  private async fill(n: number): Promise<void> {
    while (this.buf.length < n && !this.done) {
      const r = await this.it.next();
      if (r.done === true) this.done = true;
      else
        this.buf =
          this.buf.length === 0 ? Buffer.from(r.value) : Buffer.concat([this.buf, r.value]);
    }
  }

  /** Exactly `n` bytes; throws BACKUP_CORRUPT naming `what` if the stream ends first. */
  async take(n: number, what: string, hashed = true): Promise<Buffer> {
    await this.fill(n);
    if (this.buf.length < n)
      throw new BackupError(
        'BACKUP_CORRUPT',
        `Backup is truncated: it ends at byte ${this.offset + this.buf.length}, inside ${what}`,
      );
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    this.offset += n;
    if (hashed) this.hash.update(out);
    return out;
  }

  /** Whether any byte follows. */
  async atEnd(): Promise<boolean> {
    while (this.buf.length === 0 && !this.done) {
      const r = await this.it.next();
      if (r.done === true) this.done = true;
      else this.buf = Buffer.from(r.value);
    }
    return this.buf.length === 0;
  }
}

/**
 * Reads a backup, checking it as it goes: the magic and format first (so that another kind of
 * file is named as such, not as damage), every length against the limits, the groups' order,
 * and at the end the summary's counts and the checksum. Records are yielded as they are read,
 * so a caller must not act on any before the `end` record arrived: only then is the file known
 * to be whole and unchanged.
 */
export async function* readBackup(source: AsyncIterable<Uint8Array>): AsyncGenerator<BackupRecord> {
  const r = new ByteReader(source);
  // The magic before any length: a short file of another kind (a few bytes of text) is named
  // as such, not as a truncated backup. An empty one, or the start of the magic, is one.
  const magic = await r.peek(MAGIC.length);
  if (!MAGIC.subarray(0, magic.length).equals(magic))
    throw new BackupError(
      'BACKUP_UNSUPPORTED',
      `Not a Flotilla backup: it begins with ${JSON.stringify(magic.toString('latin1'))}, not "FLBK"`,
    );
  const head = await r.take(MAGIC.length + 2 + 4, 'the header');
  const format = head.readUInt16LE(4);
  if (format !== BACKUP_FORMAT)
    throw new BackupError(
      'BACKUP_UNSUPPORTED',
      `Backup format ${format} is not one this release reads (it reads ${BACKUP_FORMAT})${format > BACKUP_FORMAT + 16 ? ': a format this far ahead is more likely a damaged file than a newer release' : ''}`,
    );
  const header = parseHeader(await takeJson(r, head.readUInt32LE(6), 'the header'));
  yield { kind: 'header', header };
  const order = header.groups.map((g) => g.group);
  const counts = new Map(order.map((g) => [g, { chunks: 0, bytes: 0 }]));
  let at = 0;
  for (;;) {
    const rec = await r.take(6, 'a record header');
    const kind = rec.readUInt8(0);
    const group = rec.readUInt8(1);
    const length = rec.readUInt32LE(2);
    if (kind === KIND_END) {
      const summary = parseSummary(await takeJson(r, length, 'the summary'));
      const digest = r.hash.digest();
      const stored = await r.take(CHECKSUM_BYTES, 'the checksum', false);
      if (!digest.equals(stored))
        throw new BackupError(
          'BACKUP_CORRUPT',
          `Backup checksum does not match: the file says ${stored.toString('hex')}, its bytes hash to ${digest.toString('hex')} (damaged)`,
        );
      if (!(await r.atEnd()))
        throw new BackupError(
          'BACKUP_CORRUPT',
          `Backup has bytes after its checksum (at ${r.offset})`,
        );
      checkSummary(summary, order, counts);
      yield { kind: 'end', summary, sha256: digest.toString('hex') };
      return;
    }
    const c = counts.get(group);
    if (kind !== KIND_CHUNK || c === undefined)
      throw new BackupError(
        'BACKUP_CORRUPT',
        `Backup record at byte ${r.offset - 6} is of kind ${kind}, group ${group}: not one the header announced`,
      );
    const pos = order.indexOf(group);
    if (pos < at)
      throw new BackupError(
        'BACKUP_CORRUPT',
        `Backup chunk of group ${group} after the next group began`,
      );
    at = pos;
    if (length > MAX_BACKUP_CHUNK_BYTES)
      throw new BackupError(
        'BACKUP_CORRUPT',
        `Backup chunk at byte ${r.offset - 6} claims ${length} bytes, over the limit of ${MAX_BACKUP_CHUNK_BYTES}`,
      );
    const data = await r.take(length, `a chunk of group ${group}`);
    c.chunks += 1;
    c.bytes += length;
    yield { kind: 'chunk', group, data };
  }
}

async function takeJson(r: ByteReader, length: number, what: string): Promise<unknown> {
  if (length > MAX_JSON_BYTES)
    throw new BackupError(
      'BACKUP_CORRUPT',
      `Backup ${what} claims ${length} bytes, over ${MAX_JSON_BYTES}`,
    );
  const bytes = await r.take(length, what);
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes)) as unknown;
  } catch (err) {
    throw new BackupError(
      'BACKUP_CORRUPT',
      `Backup ${what} is not JSON: ${(err as Error).message}`,
    );
  }
}

const isIndex = (v: unknown): v is number =>
  typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const isId = (v: unknown): v is number => isIndex(v) && v > 0;

function parseHeader(v: unknown): BackupHeader {
  const bad = (what: string) => new BackupError('BACKUP_CORRUPT', `Backup header: ${what}`);
  if (typeof v !== 'object' || v === null) throw bad('not an object');
  const o = v as Record<string, unknown>;
  if (o['format'] !== BACKUP_FORMAT)
    throw bad(`format ${String(o['format'])} is not ${BACKUP_FORMAT}`);
  if (typeof o['clusterId'] !== 'string') throw bad('clusterId is not a string');
  if (!isId(o['savedBy'])) throw bad('savedBy is not a member id');
  if (typeof o['savedAt'] !== 'string') throw bad('savedAt is not a string');
  const groups = o['groups'];
  if (!Array.isArray(groups) || groups.length === 0) throw bad('groups is not a list of groups');
  const seen = new Set<number>();
  for (const g of groups as unknown[]) {
    const x = g as Record<string, unknown> | null;
    if (
      x === null ||
      typeof x !== 'object' ||
      !isIndex(x['group']) ||
      x['group'] > 255 ||
      !isIndex(x['index']) ||
      !isIndex(x['term']) ||
      !Array.isArray(x['voters']) ||
      !(x['voters'] as unknown[]).every(isId) ||
      seen.has(x['group'])
    )
      throw bad(`malformed group ${JSON.stringify(g)}`);
    seen.add(x['group']);
  }
  return v as BackupHeader;
}

function parseSummary(v: unknown): BackupSummary {
  const groups = (v as { groups?: unknown } | null)?.groups;
  if (
    !Array.isArray(groups) ||
    !groups.every(
      (g: Record<string, unknown> | null) =>
        g !== null && isIndex(g['group']) && isIndex(g['chunks']) && isIndex(g['bytes']),
    )
  )
    throw new BackupError('BACKUP_CORRUPT', `Backup summary is malformed: ${JSON.stringify(v)}`);
  return v as BackupSummary;
}

function checkSummary(
  s: BackupSummary,
  order: readonly number[],
  counts: ReadonlyMap<number, { chunks: number; bytes: number }>,
): void {
  const said = s.groups.map((g) => `${g.group}:${g.chunks}/${g.bytes}`).join(' ');
  const read = order.map((g) => `${g}:${counts.get(g)?.chunks}/${counts.get(g)?.bytes}`).join(' ');
  if (said !== read)
    throw new BackupError(
      'BACKUP_CORRUPT',
      `Backup summary says group:chunks/bytes ${said}, the file holds ${read}`,
    );
}
