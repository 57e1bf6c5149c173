// A snapshot a follower is receiving, kept in its group's directory so that a transfer cut by a
// restart resumes where the file ends rather than from byte 0 (DESIGN.md, "Snapshots in
// chunks"). Two files:
//
//   snapshot.partial.json   which snapshot: metadata, id, total bytes (written atomically)
//   snapshot.partial        its first bytes, in order
//
// Chunks are appended without a sync: a crash may lose the tail, or leave garbage in it, and the
// leader then resumes from what `load` reports. The whole is checked against its id before it
// is installed, so garbage is caught there and the transfer starts over. The installed snapshot
// is written by the group's storage (write, fsync, rename); this file is then removed.

import { constants } from 'node:fs';
import { open, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { SnapshotDescriptor, SnapshotMeta } from '../raft/index.js';
import { Syncer, writeFileAtomic } from './fsutil.js';
import { nodeFs } from './fs.js';

const DATA = 'snapshot.partial';
const META = 'snapshot.partial.json';

export class FilePartialSnapshots {
  private readonly syncer = new Syncer(nodeFs, undefined);
  private snapshot: SnapshotDescriptor | null = null;
  private held = 0;

  constructor(private readonly dir: string) {}

  /** The partial snapshot kept and how many of its bytes the file holds, or null. */
  async load(): Promise<{ snapshot: SnapshotDescriptor; received: number } | null> {
    let snapshot: SnapshotDescriptor;
    try {
      snapshot = parseMeta(await readFile(join(this.dir, META), 'utf8'));
    } catch {
      // None, or one written by a crash halfway (the rename never happened): start clean.
      await this.discard();
      return null;
    }
    let size = 0;
    try {
      size = (await stat(join(this.dir, DATA))).size;
    } catch {
      size = 0;
    }
    this.snapshot = snapshot;
    this.held = Math.min(size, snapshot.totalBytes);
    return { snapshot, received: this.held };
  }

  async begin(snapshot: SnapshotDescriptor): Promise<void> {
    await rm(join(this.dir, DATA), { force: true });
    const json = JSON.stringify({
      meta: snapshot.meta,
      id: snapshot.id,
      totalBytes: snapshot.totalBytes,
    });
    await writeFileAtomic(this.syncer, this.dir, join(this.dir, META), [Buffer.from(json)]);
    this.snapshot = snapshot;
    this.held = 0;
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    if (this.snapshot === null || offset !== this.held)
      throw new Error(`Partial snapshot holds ${this.held} bytes; cannot write at ${offset}`);
    // Opened for each chunk: a chunk is large, and no handle is left open when the node stops.
    // After a restart the file may hold a tail past `held` (load capped it at the total),
    // which these writes overwrite.
    const fh = await open(join(this.dir, DATA), constants.O_RDWR | constants.O_CREAT, 0o644);
    try {
      let done = 0;
      while (done < data.length) {
        const { bytesWritten } = await fh.write(data, done, data.length - done, offset + done);
        if (bytesWritten <= 0)
          throw new Error(`write returned ${bytesWritten} at ${offset + done}`);
        done += bytesWritten;
      }
    } finally {
      await fh.close();
    }
    this.held += data.length;
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    const fh = await open(join(this.dir, DATA), 'r');
    try {
      const out = new Uint8Array(length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await fh.read(out, done, length - done, offset + done);
        if (bytesRead === 0)
          throw new Error(`Partial snapshot ends at ${offset + done}, read of ${length} asked`);
        done += bytesRead;
      }
      return out;
    } finally {
      await fh.close();
    }
  }

  async discard(): Promise<void> {
    this.snapshot = null;
    this.held = 0;
    await rm(join(this.dir, META), { force: true });
    await rm(join(this.dir, DATA), { force: true });
  }
}

function parseMeta(text: string): SnapshotDescriptor {
  const o = JSON.parse(text) as { meta?: SnapshotMeta; id?: unknown; totalBytes?: unknown };
  const meta = o.meta;
  if (
    meta === undefined ||
    typeof o.id !== 'string' ||
    typeof o.totalBytes !== 'number' ||
    !Number.isSafeInteger(o.totalBytes) ||
    o.totalBytes < 1 ||
    !Number.isSafeInteger(meta.index) ||
    !Number.isSafeInteger(meta.term) ||
    !Array.isArray(meta.voters)
  )
    throw new Error('malformed partial snapshot metadata');
  return { meta, id: o.id, totalBytes: o.totalBytes };
}
