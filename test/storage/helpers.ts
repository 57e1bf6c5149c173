// Shared helpers for the storage tests.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Entry } from '../../src/raft/index.js';
import { StorageError } from '../../src/storage/errors.js';

/** Entries [from, to] in `term`, each carrying a payload derived from (index, term). */
export function ents(from: number, to: number, term: number, sizeBytes = 8): Entry[] {
  const out: Entry[] = [];
  for (let i = from; i <= to; i++) out.push(entry(i, term, sizeBytes));
  return out;
}

export function entry(index: number, term: number, sizeBytes = 8): Entry {
  const data = new Uint8Array(sizeBytes);
  for (let k = 0; k < sizeBytes; k++) data[k] = (index * 31 + term * 7 + k) & 0xff;
  return { index, term, type: sizeBytes === 0 ? 'noop' : 'normal', data };
}

/** A fresh temporary directory, removed by the returned cleanup. */
export async function tempDir(
  prefix = 'flotilla-storage-',
): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** Asserts that `fn` throws or rejects with a StorageError of this code; returns it. */
export async function rejectsCode(fn: () => unknown, code: string): Promise<StorageError> {
  try {
    await fn();
  } catch (err) {
    if (err instanceof StorageError && err.code === code) return err;
    throw new Error(`expected StorageError ${code}, got ${String(err)}`, { cause: err });
  }
  throw new Error(`expected StorageError ${code}, but nothing was thrown`);
}

export function plain(
  entries: readonly Entry[],
): { index: number; term: number; type: string; data: number[] }[] {
  return entries.map((e) => ({ index: e.index, term: e.term, type: e.type, data: [...e.data] }));
}
