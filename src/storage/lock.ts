// One process per data directory. Node has no flock(), so the lock is a file created with
// O_EXCL holding the owner's pid. A lock left by a process that died (kill -9, power loss) is
// taken over once that pid is gone; a lock naming our own pid that this process did not take
// is also stale (containers often restart the server as the same pid). Limits: the check is
// local to one host (no NFS), and a recycled pid of an unrelated live process is reported as
// STORAGE_LOCKED until the operator removes the file, which errs on the safe side.

import { readFile, rm, writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { StorageError } from './errors.js';

/** The lock's name inside a data directory. */
export const LOCK_FILE = 'LOCK';
const heldHere = new Set<string>();

/** Whether a process by that pid runs (one owned by another user counts). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export interface DirLock {
  readonly path: string;
  release(): Promise<void>;
}

export async function lockPath(path: string): Promise<DirLock> {
  const key = resolve(path);
  if (heldHere.has(key))
    throw new StorageError('STORAGE_LOCKED', `${path} is already open in this process`, {
      file: path,
    });
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await writeFile(path, `${process.pid}\n`, { flag: 'wx', mode: 0o644 });
      heldHere.add(key);
      return { path, release: () => release(key) };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const owner = Number.parseInt((await readFile(path, 'utf8').catch(() => '')).trim(), 10);
    if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && pidAlive(owner))
      throw new StorageError('STORAGE_LOCKED', `${path} is held by live process ${owner}`, {
        file: path,
      });
    await rm(path, { force: true });
  }
  throw new StorageError('STORAGE_LOCKED', `${path} could not be taken (contended)`, {
    file: path,
  });
}

async function release(key: string): Promise<void> {
  if (!heldHere.delete(key)) return;
  await rm(key, { force: true });
}
