// File-system steps that durability depends on, each routed through the optional sync hook so
// tests can make them fail. A new file or a rename is durable only once its directory is
// fsynced (the directory entry is separate metadata; see ext4's and POSIX's fsync notes).

import { ioFailure } from './errors.js';
import type { StorageFile, StorageFs } from './fs.js';

/**
 * Test hook: replaces the durability barrier. Called for every fdatasync/fsync the WAL issues,
 * with the path being synced; when it throws (or rejects) the sync counts as failed. `sync`
 * performs the real call. Off (undefined) in production.
 */
export type SyncHook = (path: string, sync: () => Promise<void>) => Promise<void>;

export class Syncer {
  constructor(
    readonly fs: StorageFs,
    private readonly hook: SyncHook | undefined,
  ) {}

  /** fdatasync: data and the metadata needed to read it back (the file size), not mtime. */
  async datasync(fh: StorageFile, path: string): Promise<void> {
    await this.run(path, () => fh.datasync());
  }

  async fsync(fh: StorageFile, path: string): Promise<void> {
    await this.run(path, () => fh.sync());
  }

  async fsyncDir(dir: string): Promise<void> {
    await this.run(dir, () => this.fs.syncDir(dir));
  }

  private async run(path: string, sync: () => Promise<void>): Promise<void> {
    try {
      if (this.hook === undefined) await sync();
      else await this.hook(path, sync);
    } catch (err) {
      throw ioFailure('STORAGE_FSYNC_FAILED', `fsync of ${path}`, err);
    }
  }
}

/** Writes a whole file durably under a temporary name, then renames it into place. */
export async function writeFileAtomic(
  syncer: Syncer,
  dir: string,
  finalPath: string,
  parts: readonly Uint8Array[],
): Promise<void> {
  await writeFileAtomicWith(syncer, dir, finalPath, async (fh) => {
    try {
      let position = 0;
      for (const part of parts) {
        await writeFully(fh, part, position);
        position += part.length;
      }
    } catch (err) {
      throw ioFailure('STORAGE_WRITE_FAILED', `writing ${finalPath}.tmp`, err);
    }
  });
}

/**
 * The same with the bytes written by `write` into the temporary file; if it throws, the
 * temporary file is removed and the error passed on as it is (a refusal of the caller's, not
 * a failed write, stays what it was).
 */
export async function writeFileAtomicWith(
  syncer: Syncer,
  dir: string,
  finalPath: string,
  write: (fh: StorageFile) => Promise<void>,
): Promise<void> {
  const fs = syncer.fs;
  const tmp = `${finalPath}.tmp`;
  const fh = await fs.open(tmp, { create: 'truncate' });
  try {
    await write(fh);
  } catch (err) {
    await fh.close();
    await fs.rm(tmp);
    throw err;
  }
  try {
    await syncer.fsync(fh, tmp);
  } catch (err) {
    await fh.close();
    await fs.rm(tmp);
    throw ioFailure('STORAGE_WRITE_FAILED', `writing ${tmp}`, err);
  }
  await fh.close();
  await fs.rename(tmp, finalPath);
  await syncer.fsyncDir(dir);
}

/** FileHandle.write may write less than asked: loop until all bytes are down. */
export async function writeFully(
  fh: StorageFile,
  data: Uint8Array,
  position: number,
): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await fh.write(data, done, data.length - done, position + done);
    if (bytesWritten <= 0) throw new Error(`write returned ${bytesWritten} at ${position + done}`);
    done += bytesWritten;
  }
}

/**
 * writevFully on the calling thread (StorageFs.writevNow): the bytes written, all of them, or
 * null when the file cannot be written so and nothing was written.
 */
export function writevFullyNow(
  fs: StorageFs,
  fh: StorageFile,
  bufs: Buffer[],
  position: number,
): number | null {
  if (fs.writevNow === undefined) return null;
  const total = bufs.reduce((n, b) => n + b.length, 0);
  let done = fs.writevNow(fh, bufs, position);
  if (done === null) return null;
  while (done < total) {
    // Rare short write: the rest, from where it stopped.
    const n = fs.writevNow(fh, [Buffer.concat(bufs).subarray(done)], position + done);
    if (n === null || n <= 0) throw new Error(`write returned ${n} at ${position + done}`);
    done += n;
  }
  return total;
}

export async function writevFully(
  fh: StorageFile,
  bufs: Buffer[],
  position: number,
): Promise<number> {
  const total = bufs.reduce((n, b) => n + b.length, 0);
  const { bytesWritten } = await fh.writev(bufs, position);
  if (bytesWritten < total) {
    // Rare short write: finish the remainder byte-exactly with plain writes.
    const rest = Buffer.concat(bufs).subarray(bytesWritten);
    await writeFully(fh, rest, position + bytesWritten);
  }
  return total;
}
