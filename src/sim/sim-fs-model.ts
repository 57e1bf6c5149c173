// The state behind the simulated disk (sim-fs.ts): file contents as the page cache holds them
// and as the platter holds them, and the directory tree as an ordered metadata journal.
//
// Data: each file (inode) has `cache`, what reads see, and `durable`, what survives a crash.
// Writes and truncations land in the cache and are queued in `pending`; a sync replays the
// queue onto `durable`, in order. A failed sync drops the queue without replaying it: the
// kernel marks pages clean after a writeback error, so their data never reaches the disk even
// when a later fsync succeeds ("fsyncgate"), while reads keep seeing it until a crash.
//
// Metadata: creations, renames, removals and mkdirs apply to the cached tree at once and are
// appended to a journal; a directory fsync commits the journal up to the last operation that
// touched that directory. A crash keeps a random prefix of the uncommitted journal. That is an
// ordered-metadata file system (ext4 data=ordered, XFS): an operation is never durable while an
// earlier one is not, and a rename is one journal operation, so it is atomic.

import { posix } from 'node:path';
import { SimError } from './errors.js';

/** A growable byte array; bytes past the size read as zero, as a file's hole does. */
export class Bytes {
  private buf: Uint8Array;
  private length = 0;

  constructor(init?: Uint8Array) {
    this.buf = new Uint8Array(Math.max(64, init?.length ?? 0));
    if (init !== undefined) this.write(0, init);
  }

  get size(): number {
    return this.length;
  }

  /** Writes `src` at `at`, zero-filling any gap past the current end. */
  write(at: number, src: Uint8Array): void {
    this.resize(Math.max(this.length, at + src.length));
    this.buf.set(src, at);
  }

  /** Truncates or extends; extension reads as zeros. */
  resize(sizeBytes: number): void {
    if (sizeBytes > this.buf.length) {
      const next = new Uint8Array(Math.max(sizeBytes, this.buf.length * 2));
      next.set(this.buf.subarray(0, this.length));
      this.buf = next;
    }
    if (sizeBytes > this.length) this.buf.fill(0, this.length, sizeBytes);
    this.length = sizeBytes;
  }

  /** A view of the contents; valid until the next write or resize. */
  view(): Uint8Array {
    return this.buf.subarray(0, this.length);
  }

  clone(): Bytes {
    return new Bytes(this.view());
  }
}

/** A write or truncation that is in the cache but not yet durable. */
export type PendingOp =
  | { readonly kind: 'write'; readonly at: number; readonly data: Uint8Array }
  | { readonly kind: 'truncate'; readonly sizeBytes: number };

export interface TailWrite {
  readonly at: number;
  data: Uint8Array;
  /** Whether it reached the cache (a sync covers it only then; before, it is in flight). */
  landed: boolean;
}

export class Inode {
  /** What reads see. */
  cache = new Bytes();
  /** What a crash leaves. */
  durable = new Bytes();
  /** Invariant: replaying `pending` onto `durable` yields `cache`, unless a sync failed. */
  pending: PendingOp[] = [];
  /**
   * The most recent write that is not durable, finished or still in flight: the one a crash
   * may tear. Null once a sync covers it.
   */
  tail: TailWrite | null = null;

  constructor(readonly id: number) {}

  /** The pending operations reach the disk (fsync, fdatasync, or an O_DSYNC write). */
  makeDurable(): void {
    for (const op of this.pending) applyPending(this.durable, op);
    this.pending = [];
    if (this.tail?.landed === true) this.tail = null;
  }

  /** A sync failed: the pending operations will never reach the disk (see the file comment). */
  dropPending(): void {
    this.pending = [];
    if (this.tail?.landed === true) this.tail = null;
  }

  /** After a crash the cache holds what the disk holds. */
  reboot(): void {
    this.cache = this.durable.clone();
    this.pending = [];
    this.tail = null;
  }
}

function applyPending(b: Bytes, op: PendingOp): void {
  if (op.kind === 'write') b.write(op.at, op.data);
  else b.resize(op.sizeBytes);
}

/** Directory path -> (file name -> inode). The root "/" always exists. */
export type Tree = Map<string, Map<string, Inode>>;

export function newTree(): Tree {
  return new Map([['/', new Map<string, Inode>()]]);
}

export function cloneTree(t: Tree): Tree {
  const out: Tree = new Map();
  for (const [dir, files] of t) out.set(dir, new Map(files));
  return out;
}

export type MetaOp =
  | { readonly kind: 'mkdir'; readonly dir: string }
  /** Removes an empty directory. */
  | { readonly kind: 'rmdir'; readonly dir: string }
  | { readonly kind: 'link'; readonly dir: string; readonly name: string; readonly inode: Inode }
  | { readonly kind: 'unlink'; readonly dir: string; readonly name: string }
  | {
      readonly kind: 'rename';
      readonly fromDir: string;
      readonly fromName: string;
      readonly toDir: string;
      readonly toName: string;
    };

/** Whether a directory fsync of `dir` must make `op` durable. */
export function touches(op: MetaOp, dir: string): boolean {
  switch (op.kind) {
    case 'mkdir':
    case 'rmdir':
      return op.dir === dir || posix.dirname(op.dir) === dir;
    case 'link':
    case 'unlink':
      return op.dir === dir;
    case 'rename':
      return op.fromDir === dir || op.toDir === dir;
  }
}

/**
 * Applies a journal operation. The cached tree checks preconditions before journalling, and
 * the durable tree replays a prefix of the same sequence, so a failed precondition here is a
 * bug in the simulator.
 */
export function applyMeta(t: Tree, op: MetaOp): void {
  const dirOf = (dir: string): Map<string, Inode> => {
    const d = t.get(dir);
    if (d === undefined)
      throw new SimError('HARNESS', `sim fs journal: ${op.kind} in missing directory ${dir}`);
    return d;
  };
  switch (op.kind) {
    case 'mkdir':
      dirOf(posix.dirname(op.dir));
      if (!t.has(op.dir)) t.set(op.dir, new Map());
      return;
    case 'rmdir':
      if ((t.get(op.dir)?.size ?? 0) > 0 || [...t.keys()].some((d) => posix.dirname(d) === op.dir))
        throw new SimError('HARNESS', `sim fs journal: rmdir of non-empty ${op.dir}`);
      t.delete(op.dir);
      return;
    case 'link':
      dirOf(op.dir).set(op.name, op.inode);
      return;
    case 'unlink':
      dirOf(op.dir).delete(op.name);
      return;
    case 'rename': {
      const from = dirOf(op.fromDir);
      const inode = from.get(op.fromName);
      if (inode === undefined)
        throw new SimError(
          'HARNESS',
          `sim fs journal: rename of missing ${op.fromDir}/${op.fromName}`,
        );
      from.delete(op.fromName);
      dirOf(op.toDir).set(op.toName, inode);
      return;
    }
  }
}

/** Every inode a tree names. */
export function inodesOf(t: Tree): Set<Inode> {
  const out = new Set<Inode>();
  for (const files of t.values()) for (const inode of files.values()) out.add(inode);
  return out;
}
