// A simulated disk for the real WAL (src/storage/wal*.ts): a StorageFs with a volatile page
// cache, a crash that keeps only what was made durable (and, from the seed, a torn version of
// a file's last unsynced write), and a hook through which the simulator gives every operation
// virtual time or makes it fail. No real I/O, timers or clock: everything random comes from
// the Rng it is given, so a seed replays exactly. What is and is not modelled is listed in
// docs/STORAGE.md, "The simulated disk"; the data model is in sim-fs-model.ts.
//
// Use (one disk per simulated node; one mount per process lifetime):
//
//   const disk = new SimDisk({ rng: createRng(seed) });
//   const wal = await openWalStorage('/data', { fs: disk.mount(), segmentBytes: 4096 });
//   const acked = wal.persist(entries, hardState);    // durable once it resolves
//   disk.crash();              // the process dies: its pending operations never settle
//   const again = await openWalStorage('/data', { fs: disk.mount() });   // recovery runs
//
// With `schedule`, each operation waits for the promise it returns (the simulator resolves it
// from its event queue) and fails with its rejection; without it, operations take effect at
// the moment they are called and return resolved promises.

import { posix } from 'node:path';
import type { Rng } from '../raft/index.js';
import { StorageError } from '../storage/errors.js';
import type { DirLock, OpenOptions, StorageFile, StorageFs } from '../storage/fs.js';
import type { DirsFs } from '../server/range-dirs.js';
import { SimError } from './errors.js';
import { Inode, applyMeta, cloneTree, inodesOf, newTree, touches } from './sim-fs-model.js';
import type { MetaOp, TailWrite, Tree } from './sim-fs-model.js';

export type SimIoKind =
  | 'mkdir'
  | 'readdir'
  | 'read'
  | 'open'
  | 'write'
  | 'datasync'
  | 'fsync'
  | 'truncate'
  | 'close'
  | 'rename'
  | 'unlink'
  | 'syncdir'
  | 'lock'
  | 'unlock';

/** One operation, as the schedule hook sees it. */
export interface SimIo {
  readonly kind: SimIoKind;
  /** The file or directory; for a rename, the source. */
  readonly path: string;
  /** Bytes a write carries; 0 for everything else. */
  readonly bytes: number;
  /** Which mount (simulated process lifetime) issued it. */
  readonly mount: number;
}

export type SimFsErrorCode =
  'ENOENT' | 'EEXIST' | 'EISDIR' | 'ENOTDIR' | 'ENOTEMPTY' | 'EBUSY' | 'EBADF' | 'EIO' | 'ENOSPC';

/** A Node-style file-system error: `code`, `syscall`, `path`. */
export class SimFsError extends Error {
  override readonly name = 'SimFsError';

  constructor(
    readonly code: SimFsErrorCode,
    readonly syscall: string,
    readonly path: string,
    why: string = code,
  ) {
    super(`${code}: ${why}, ${syscall} '${path}'`);
  }
}

/** The error a schedule hook rejects with to make `io` fail as a device error would. */
export function simIoError(code: 'EIO' | 'ENOSPC', io: SimIo): SimFsError {
  const why = code === 'EIO' ? 'i/o error (injected)' : 'no space left on device (injected)';
  return new SimFsError(code, io.kind, io.path, why);
}

export interface SimDiskOptions {
  readonly rng: Rng;
  /**
   * Chance that a crash leaves a torn copy of a file's last unsynced write: the sectors before
   * some boundary inside it reach the disk, and by default the file ends there. Default 0.5.
   */
  readonly tornWriteProbability?: number;
  /**
   * Of torn writes, the share followed by zeros up to the write's end instead: the new size
   * reached the disk but those sectors did not (ext4 data=writeback, preallocated space).
   * Default 0.
   */
  readonly tornZerosProbability?: number;
  /**
   * Of torn writes, the share followed by one sector of garbage: the sector being written
   * when the power failed. Default 0.
   */
  readonly tornGarbageProbability?: number;
  /**
   * The unit a device writes whole, so tears fall on its boundaries. Default 512; 1 tears at
   * any byte.
   */
  readonly sectorBytes?: number;
  /** Chance that a write or writev writes only part of what it was given. Default 0. */
  readonly shortWriteProbability?: number;
  /** Called before each operation takes effect; see the file comment. */
  readonly schedule?: (io: SimIo) => Promise<void>;
}

/** What the disk has done, for tests and the simulator's statistics. */
export interface SimDiskStats {
  crashes: number;
  /** Crashes that left a torn write behind (any prefix, clean, zeroed or with garbage). */
  tornWrites: number;
  /** Writes or truncations that were in the cache, not durable, when a crash came. */
  lostPendingOps: number;
  /** Uncommitted metadata operations a crash dropped / kept. */
  lostMetadataOps: number;
  keptMetadataOps: number;
  shortWrites: number;
}

function probability(name: string, v: number | undefined, fallback: number): number {
  const p = v ?? fallback;
  if (!(p >= 0 && p <= 1))
    throw new SimError(
      'INVALID_OPTION',
      `SimDisk option ${name} must be in [0, 1], got ${String(v)}`,
    );
  return p;
}

/** A promise that never settles: what a dead process's operations return. */
function never<T>(): Promise<T> {
  return new Promise<T>(() => undefined);
}

export class SimDisk {
  private readonly rng: Rng;
  private readonly tornP: number;
  private readonly zerosP: number;
  private readonly garbageP: number;
  private readonly sectorBytes: number;
  private readonly shortP: number;
  readonly schedule: ((io: SimIo) => Promise<void>) | undefined;
  /** The directory tree as reads see it, and as a crash would leave it. */
  private cacheTree: Tree = newTree();
  private durableTree: Tree = newTree();
  /** Metadata operations applied to cacheTree but not yet to durableTree, oldest first. */
  private journal: MetaOp[] = [];
  private nextInode = 1;
  /** Inodes whose data a crash must settle: those the durable tree names, and newer ones. */
  private inodes = new Set<Inode>();
  private generation = 0;
  private nextMount = 1;
  private readonly locks = new Map<string, number>();
  readonly stats: SimDiskStats = {
    crashes: 0,
    tornWrites: 0,
    lostPendingOps: 0,
    lostMetadataOps: 0,
    keptMetadataOps: 0,
    shortWrites: 0,
  };

  constructor(opts: SimDiskOptions) {
    this.rng = opts.rng;
    this.tornP = probability('tornWriteProbability', opts.tornWriteProbability, 0.5);
    this.zerosP = probability('tornZerosProbability', opts.tornZerosProbability, 0);
    this.garbageP = probability('tornGarbageProbability', opts.tornGarbageProbability, 0);
    if (this.zerosP + this.garbageP > 1)
      throw new SimError(
        'INVALID_OPTION',
        `SimDisk options tornZerosProbability + tornGarbageProbability must be <= 1, got ${this.zerosP + this.garbageP}`,
      );
    this.sectorBytes = opts.sectorBytes ?? 512;
    if (!Number.isInteger(this.sectorBytes) || this.sectorBytes < 1)
      throw new SimError(
        'INVALID_OPTION',
        `SimDisk option sectorBytes must be a positive integer, got ${this.sectorBytes}`,
      );
    this.shortP = probability('shortWriteProbability', opts.shortWriteProbability, 0);
    this.schedule = opts.schedule;
  }

  /** A file system for one process lifetime: it dies, with its locks, at the next crash. */
  mount(): SimFs {
    return new SimFs(this, this.generation, this.nextMount++);
  }

  /** Whether a mount made in `generation` still belongs to a live process. */
  isLive(generation: number): boolean {
    return generation === this.generation;
  }

  /**
   * Power loss: every mount dies (its pending operations never settle, its locks are gone),
   * a random prefix of the uncommitted metadata survives, and every file is left as its last
   * sync left it, except that its last unsynced write may survive torn.
   */
  crash(): void {
    this.generation++;
    this.stats.crashes++;
    this.locks.clear();
    const kept = this.rng.int(this.journal.length + 1);
    for (const op of this.journal.slice(0, kept)) applyMeta(this.durableTree, op);
    this.stats.keptMetadataOps += kept;
    this.stats.lostMetadataOps += this.journal.length - kept;
    this.journal = [];
    for (const inode of this.inodes) {
      this.stats.lostPendingOps += inode.pending.length;
      if (inode.tail !== null && this.rng.float() < this.tornP) this.tear(inode, inode.tail);
      inode.reboot();
    }
    this.cacheTree = cloneTree(this.durableTree);
    this.inodes = inodesOf(this.durableTree);
  }

  /**
   * The sectors of the write before some boundary reach the disk (a sector is written whole,
   * so the one holding an unaligned start counts as a boundary too); then the file ends, or
   * zeros follow up to the write's end, or the next sector holds garbage.
   */
  private tear(inode: Inode, w: TailWrite): void {
    this.stats.tornWrites++;
    const sector = this.sectorBytes;
    const end = w.at + w.data.length;
    const cuts = [w.at];
    for (let b = (Math.floor(w.at / sector) + 1) * sector; b < end; b += sector) cuts.push(b);
    cuts.push(end);
    const cut = cuts[this.rng.int(cuts.length)] as number;
    inode.durable.write(w.at, w.data.subarray(0, cut - w.at));
    if (cut === end) return;
    const shape = this.rng.float();
    if (shape < this.zerosP) {
      inode.durable.resize(Math.max(inode.durable.size, end));
    } else if (shape < this.zerosP + this.garbageP) {
      const sectorEnd = Math.min(end, (Math.floor(cut / sector) + 1) * sector);
      const garbage = new Uint8Array(sectorEnd - cut);
      for (let k = 0; k < garbage.length; k++) garbage[k] = this.rng.int(256);
      inode.durable.write(cut, garbage);
    }
  }

  /** The data directory is lost (the simulator's wipe fault): nothing is left at all. */
  wipe(): void {
    this.crash();
    this.cacheTree = newTree();
    this.durableTree = newTree();
    this.inodes = new Set();
  }

  /** File paths, sorted, as reads see them (durable: as a crash now would leave them, before tearing). */
  files(which: 'cache' | 'durable' = 'cache'): string[] {
    const tree = which === 'cache' ? this.cacheTree : this.durableTree;
    const out: string[] = [];
    for (const [dir, files] of tree) for (const name of files.keys()) out.push(join(dir, name));
    return out.sort();
  }

  /** A copy of a file's bytes as reads see them, or as they are durable; undefined if absent. */
  contents(path: string, which: 'cache' | 'durable' = 'cache'): Uint8Array | undefined {
    const p = normalize(path);
    const tree = which === 'cache' ? this.cacheTree : this.durableTree;
    const inode = tree.get(posix.dirname(p))?.get(posix.basename(p));
    if (inode === undefined) return undefined;
    return (which === 'cache' ? inode.cache : inode.durable).view().slice();
  }

  // --- operations, called by SimFs and SimFile once the schedule lets them through ---

  /** The short length a write of `length` bytes ends up with (its full length, usually). */
  writeLength(length: number): number {
    if (length < 2 || this.shortP === 0 || this.rng.float() >= this.shortP) return length;
    this.stats.shortWrites++;
    return 1 + this.rng.int(length - 1);
  }

  lookup(path: string, syscall: string): Inode {
    const dir = this.cacheTree.get(posix.dirname(path));
    if (dir === undefined) throw new SimFsError('ENOENT', syscall, path, 'no such directory');
    const inode = dir.get(posix.basename(path));
    if (inode === undefined) {
      if (this.cacheTree.has(path)) throw new SimFsError('EISDIR', syscall, path);
      throw new SimFsError('ENOENT', syscall, path, 'no such file or directory');
    }
    return inode;
  }

  find(path: string): Inode | undefined {
    return this.cacheTree.get(posix.dirname(path))?.get(posix.basename(path));
  }

  private log(op: MetaOp): void {
    applyMeta(this.cacheTree, op);
    this.journal.push(op);
  }

  create(path: string, syscall: string): Inode {
    const dir = posix.dirname(path);
    if (!this.cacheTree.has(dir))
      throw new SimFsError('ENOENT', syscall, path, 'no such directory');
    if (this.cacheTree.has(path)) throw new SimFsError('EISDIR', syscall, path);
    const inode = new Inode(this.nextInode++);
    this.inodes.add(inode);
    this.log({ kind: 'link', dir, name: posix.basename(path), inode });
    return inode;
  }

  mkdirp(dir: string): void {
    if (this.cacheTree.has(dir)) return;
    const parent = posix.dirname(dir);
    if (this.find(dir) !== undefined) throw new SimFsError('ENOTDIR', 'mkdir', dir);
    this.mkdirp(parent);
    this.log({ kind: 'mkdir', dir });
  }

  hasDir(dir: string): boolean {
    return this.cacheTree.has(dir);
  }

  readdir(dir: string): string[] {
    const files = this.cacheTree.get(dir);
    if (files === undefined) {
      if (this.find(dir) !== undefined) throw new SimFsError('ENOTDIR', 'scandir', dir);
      throw new SimFsError('ENOENT', 'scandir', dir, 'no such file or directory');
    }
    const names = [...files.keys()];
    for (const d of this.cacheTree.keys())
      if (d !== dir && posix.dirname(d) === dir) names.push(posix.basename(d));
    return names.sort();
  }

  rename(from: string, to: string): void {
    this.lookup(from, 'rename');
    if (!this.cacheTree.has(posix.dirname(to)))
      throw new SimFsError('ENOENT', 'rename', to, 'no such directory');
    if (this.cacheTree.has(to)) throw new SimFsError('EISDIR', 'rename', to);
    this.log({
      kind: 'rename',
      fromDir: posix.dirname(from),
      fromName: posix.basename(from),
      toDir: posix.dirname(to),
      toName: posix.basename(to),
    });
  }

  rm(path: string): void {
    if (this.cacheTree.has(path)) throw new SimFsError('EISDIR', 'rm', path);
    if (this.find(path) === undefined) return;
    this.log({ kind: 'unlink', dir: posix.dirname(path), name: posix.basename(path) });
  }

  /** Commits the journal through the last operation that touched `dir`. */
  syncDir(dir: string): void {
    if (!this.cacheTree.has(dir)) throw new SimFsError('ENOENT', 'fsync', dir, 'no such directory');
    let through = -1;
    for (const [k, op] of this.journal.entries()) if (touches(op, dir)) through = k;
    for (const op of this.journal.slice(0, through + 1)) applyMeta(this.durableTree, op);
    this.journal = this.journal.slice(through + 1);
  }

  /** Removes the empty directory `dir`. */
  rmdir(dir: string): void {
    if (dir === '/') throw new SimFsError('EBUSY', 'rmdir', dir);
    if (this.readdir(dir).length > 0) throw new SimFsError('ENOTEMPTY', 'rmdir', dir);
    this.log({ kind: 'rmdir', dir });
  }

  lock(path: string, mount: number): void {
    const holder = this.locks.get(path);
    if (holder !== undefined)
      throw new StorageError(
        'STORAGE_LOCKED',
        holder === mount
          ? `${path} is already open in this process`
          : `${path} is held by live simulated process ${holder}`,
        { file: path },
      );
    this.locks.set(path, mount);
  }

  unlock(path: string, mount: number): void {
    if (this.locks.get(path) === mount) this.locks.delete(path);
  }
}

function normalize(path: string): string {
  return posix.resolve('/', path);
}

function join(dir: string, name: string): string {
  return dir === '/' ? `/${name}` : `${dir}/${name}`;
}

/** One process's view of a SimDisk; dead (every call pending forever) after a crash. */
export class SimFs implements StorageFs {
  constructor(
    private readonly disk: SimDisk,
    private readonly generation: number,
    readonly mountId: number,
  ) {}

  get live(): boolean {
    return this.disk.isLive(this.generation);
  }

  /**
   * Runs `effect` once the schedule lets `io` through, if this process is still alive. The
   * effect is synchronous, so nothing can interleave with it.
   */
  run<T>(kind: SimIoKind, path: string, bytes: number, effect: () => T): Promise<T> {
    if (!this.live) return never();
    const schedule = this.disk.schedule;
    if (schedule === undefined) {
      try {
        return Promise.resolve(effect());
      } catch (err) {
        return Promise.reject(err instanceof Error ? err : new Error(String(err)));
      }
    }
    return schedule({ kind, path, bytes, mount: this.mountId }).then(
      () => (this.live ? effect() : never<T>()),
      (err: unknown) =>
        this.live
          ? Promise.reject(err instanceof Error ? err : new Error(String(err)))
          : never<T>(),
    );
  }

  mkdirp(dir: string): Promise<void> {
    const p = normalize(dir);
    return this.run('mkdir', p, 0, () => this.disk.mkdirp(p));
  }

  readdir(dir: string): Promise<string[]> {
    const p = normalize(dir);
    return this.run('readdir', p, 0, () => this.disk.readdir(p));
  }

  readFile(path: string): Promise<Buffer> {
    const p = normalize(path);
    return this.run('read', p, 0, () => Buffer.from(this.disk.lookup(p, 'open').cache.view()));
  }

  open(path: string, opts: OpenOptions): Promise<StorageFile> {
    const p = normalize(path);
    return this.run('open', p, 0, () => {
      const existing = this.disk.find(p);
      let inode: Inode;
      if (opts.create === 'no') inode = this.disk.lookup(p, 'open');
      else if (existing === undefined) inode = this.disk.create(p, 'open');
      else if (opts.create === 'exclusive') throw new SimFsError('EEXIST', 'open', p);
      else {
        inode = existing;
        inode.cache.resize(0);
        inode.pending.push({ kind: 'truncate', sizeBytes: 0 });
      }
      return new SimFile(this, this.disk, inode, p, opts.dsync === true);
    });
  }

  rename(from: string, to: string): Promise<void> {
    const f = normalize(from);
    const t = normalize(to);
    return this.run('rename', f, 0, () => this.disk.rename(f, t));
  }

  rm(path: string): Promise<void> {
    const p = normalize(path);
    return this.run('unlink', p, 0, () => this.disk.rm(p));
  }

  syncDir(dir: string): Promise<void> {
    const p = normalize(dir);
    return this.run('syncdir', p, 0, () => this.disk.syncDir(p));
  }

  /**
   * The same disk through synchronous calls, as node:fs's *Sync functions reach it: they take
   * effect at once, outside the schedule (no virtual time, no injected failure). What a process
   * that has died calls changes nothing.
   */
  dirsFs(): DirsFs {
    const disk = this.disk;
    const alive = (): boolean => this.live;
    const removeTree = (dir: string): void => {
      if (!disk.hasDir(dir)) {
        disk.rm(dir); // a file, or nothing
        return;
      }
      for (const name of disk.readdir(dir)) removeTree(join(dir, name));
      disk.rmdir(dir);
    };
    return {
      readText: (path) => {
        const inode = disk.find(normalize(path));
        return inode === undefined ? null : Buffer.from(inode.cache.view()).toString('utf8');
      },
      writeSynced: (path, text) => {
        if (!alive()) return;
        const p = normalize(path);
        const inode = disk.find(p) ?? disk.create(p, 'open');
        const data = Buffer.from(text, 'utf8');
        inode.cache.resize(0);
        inode.pending.push({ kind: 'truncate', sizeBytes: 0 });
        inode.cache.write(0, data);
        inode.pending.push({ kind: 'write', at: 0, data });
        inode.makeDurable();
      },
      rename: (from, to) => {
        if (alive()) disk.rename(normalize(from), normalize(to));
      },
      syncDir: (dir) => {
        if (alive()) disk.syncDir(normalize(dir));
      },
      readdir: (dir) => disk.readdir(normalize(dir)),
      removeTree: (dir) => {
        if (alive()) removeTree(normalize(dir));
      },
    };
  }

  lock(path: string): Promise<DirLock> {
    const p = normalize(path);
    return this.run('lock', p, 0, () => {
      this.disk.lock(p, this.mountId);
      return {
        path,
        release: () => this.run('unlock', p, 0, () => this.disk.unlock(p, this.mountId)),
      };
    });
  }
}

/** An open file on a SimDisk. */
class SimFile implements StorageFile {
  private closed = false;

  constructor(
    private readonly fs: SimFs,
    private readonly disk: SimDisk,
    private readonly inode: Inode,
    private readonly path: string,
    private readonly dsync: boolean,
  ) {}

  write(
    data: Uint8Array,
    offset: number,
    length: number,
    position: number,
  ): Promise<{ bytesWritten: number }> {
    return this.writeAt(data.slice(offset, offset + length), position);
  }

  writev(buffers: Buffer[], position: number): Promise<{ bytesWritten: number }> {
    return this.writeAt(Buffer.concat(buffers), position);
  }

  read(
    buffer: Uint8Array,
    offset: number,
    length: number,
    position: number,
  ): Promise<{ bytesRead: number }> {
    return this.fs.run('read', this.path, 0, () => {
      this.checkOpen('read');
      const bytes = this.inode.cache.view().subarray(position, position + length);
      buffer.set(bytes, offset);
      return { bytesRead: bytes.length };
    });
  }

  /**
   * The write becomes the file's tail as it is issued (copied, as the kernel copies it), so a
   * crash while it is in flight may tear it too.
   */
  private writeAt(data: Uint8Array, position: number): Promise<{ bytesWritten: number }> {
    if (!this.fs.live) return never();
    const tail: TailWrite = { at: position, data, landed: false };
    this.inode.tail = tail;
    return this.fs.run('write', this.path, data.length, () => {
      this.checkOpen('write');
      const n = this.disk.writeLength(data.length);
      tail.data = data.subarray(0, n);
      tail.landed = true;
      this.inode.cache.write(position, tail.data);
      this.inode.pending.push({ kind: 'write', at: position, data: tail.data });
      // O_DSYNC: durable when it returns, together with what was written before it.
      if (this.dsync) this.inode.makeDurable();
      return { bytesWritten: n };
    });
  }

  datasync(): Promise<void> {
    return this.syncAs('datasync');
  }

  sync(): Promise<void> {
    return this.syncAs('fsync');
  }

  private syncAs(kind: 'datasync' | 'fsync'): Promise<void> {
    const done = this.fs.run(kind, this.path, 0, () => {
      this.checkOpen(kind);
      this.inode.makeDurable();
    });
    // A failed sync loses what it was to make durable, for good (fsyncgate).
    return done.catch((err: unknown) => {
      if (this.fs.live) this.inode.dropPending();
      throw err;
    });
  }

  truncate(sizeBytes: number): Promise<void> {
    return this.fs.run('truncate', this.path, 0, () => {
      this.checkOpen('ftruncate');
      this.inode.cache.resize(sizeBytes);
      this.inode.pending.push({ kind: 'truncate', sizeBytes });
    });
  }

  close(): Promise<void> {
    return this.fs.run('close', this.path, 0, () => {
      this.checkOpen('close');
      this.closed = true;
    });
  }

  private checkOpen(syscall: string): void {
    if (this.closed) throw new SimFsError('EBADF', syscall, this.path, 'file already closed');
  }
}
