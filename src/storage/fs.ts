// The file-system operations the WAL, its snapshot files and its lock use, and nothing more,
// so that a simulated disk (src/sim/sim-fs.ts) can stand in for the real one and crash the real
// recovery code from a seed. `nodeFs` is the default and hands out node:fs/promises FileHandles
// unchanged, so the production write path pays nothing for the indirection.
//
// What each durability step promises is POSIX's: a write is durable after fdatasync/fsync of
// its file (or at once on a file opened with O_DSYNC); a creation, rename or removal is durable
// after an fsync of the directory holding it. A rename replaces its target atomically.

import { constants, writevSync } from 'node:fs';
import { open, readFile, readdir, rename, rm } from 'node:fs/promises';
import type { DirLock } from './lock.js';
import { lockPath } from './lock.js';
import { makeDirs } from './make-dirs.js';

export type { DirLock };

/** An open file. Writes name their position; nothing uses a file offset. */
export interface StorageFile {
  /** Writes `length` bytes of `data` from `offset` at `position`; may write fewer (a short write). */
  write(
    data: Uint8Array,
    offset: number,
    length: number,
    position: number,
  ): Promise<{ bytesWritten: number }>;
  /**
   * Reads up to `length` bytes at `position` into `buffer` from `offset` (the page cache's
   * bytes, durable or not); fewer at the end of the file.
   */
  read(
    buffer: Uint8Array,
    offset: number,
    length: number,
    position: number,
  ): Promise<{ bytesRead: number }>;
  /** Writes the buffers back to back at `position`; may write fewer bytes than they hold. */
  writev(buffers: Buffer[], position: number): Promise<{ bytesWritten: number }>;
  /** fdatasync: the data and the metadata needed to read it back (the size), not times. */
  datasync(): Promise<void>;
  /** fsync: everything about the file, including a new size after truncate. */
  sync(): Promise<void>;
  /** ftruncate; durable after sync(). */
  truncate(sizeBytes: number): Promise<void>;
  close(): Promise<void>;
}

export interface OpenOptions {
  /**
   * 'no': the file must exist (read and write). 'exclusive': create it; fails with EEXIST if
   * it exists (read and write). 'truncate': create it or empty it (write only).
   */
  readonly create: 'no' | 'exclusive' | 'truncate';
  /** O_DSYNC: each write returns only once its data is durable. */
  readonly dsync?: boolean;
}

/** The file system as the WAL sees it. Errors are Node-style, with an errno `code`. */
export interface StorageFs {
  /** mkdir -p. */
  mkdirp(dir: string): Promise<void>;
  /** Names in `dir`, in no particular order. */
  readdir(dir: string): Promise<string[]>;
  /** The whole file as the page cache holds it (durable or not). */
  readFile(path: string): Promise<Buffer>;
  open(path: string, opts: OpenOptions): Promise<StorageFile>;
  /** Atomic: afterwards `to` names the file `from` named, and any old `to` is gone. */
  rename(from: string, to: string): Promise<void>;
  /** Removes a file; no error when it does not exist. */
  rm(path: string): Promise<void>;
  /** fsync of a directory: its creations, renames and removals become durable. */
  syncDir(dir: string): Promise<void>;
  /** Takes the lock file at `path` for this process; STORAGE_LOCKED while another holds it. */
  lock(path: string): Promise<DirLock>;
  /**
   * Writes the buffers back to back at `position` of `file` on the calling thread, blocking it
   * until the write returns (durable at once on an O_DSYNC file), and answers the bytes written
   * (maybe fewer: a short write); null when this file cannot be written so (then use
   * `writev`). Optional: a file system without it is always written through `writev`.
   */
  writevNow?(file: StorageFile, buffers: Buffer[], position: number): number | null;
}

const MODE = 0o644;

function openFlags(opts: OpenOptions): number {
  const dsync = opts.dsync === true ? constants.O_DSYNC : 0;
  switch (opts.create) {
    case 'no':
      return constants.O_RDWR | dsync;
    case 'exclusive':
      return constants.O_RDWR | constants.O_CREAT | constants.O_EXCL | dsync;
    case 'truncate':
      return constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | dsync;
  }
}

/** The real file system (node:fs/promises). */
export const nodeFs: StorageFs = {
  // The directory is the caller's (a node's group directory, or any a program opens storage
  // in): one level at a time, as Node's recursive mkdir never returns under /proc.
  mkdirp: (dir) =>
    // What makeDirs throws becomes the promise's rejection.
    new Promise<void>((resolve) => {
      makeDirs(dir);
      resolve();
    }),
  readdir: (dir) => readdir(dir),
  readFile: (path) => readFile(path),
  open: (path, opts) => open(path, openFlags(opts), MODE),
  rename: (from, to) => rename(from, to),
  rm: (path) => rm(path, { force: true }),
  syncDir: async (dir) => {
    const fh = await open(dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  },
  lock: (path) => lockPath(path),
  writevNow: (file, buffers, position) => {
    // A FileHandle of node:fs/promises; a file some wrapper hands out instead has no fd.
    const fd = (file as { readonly fd?: unknown }).fd;
    return typeof fd === 'number' ? writevSync(fd, buffers, position) : null;
  },
};
