// A follower's side of a snapshot sent in chunks (DESIGN.md, "Snapshots in chunks"): the bytes
// of chunks received until the core accepts them, the partial snapshot they are written to
// (PartialSnapshotStore) with a running hash of it, the check of the whole against its id,
// and the read of the whole to install it.

import type { Hash } from 'node:crypto';
import type {
  IncomingSnapshot,
  Message,
  SnapshotChunk,
  SnapshotDescriptor,
  SnapshotMeta,
} from '../raft/index.js';
import type { PartialSnapshotStore } from './contracts.js';
import { idOf, openChunk, snapshotHash } from './snapshot-transfer.js';

/**
 * Bytes read from the store at once: between two hash updates when a restart rehashes it, and
 * per piece when a complete snapshot is installed from it.
 */
const READ_STEP_BYTES = 4 << 20;

/** Chunks received and not yet accepted that are kept: one is needed, a few allow reordering. */
const KEPT_CHUNKS_MAX = 4;

export class SnapshotReceiver {
  /** Bytes of snapshot chunks received, by `id@offset`, until the core hands them out. */
  private readonly chunkBytes = new Map<string, Uint8Array>();
  /** A complete incoming snapshot to check against its id once its Ready is advanced. */
  pendingCheck: string | null = null;

  private constructor(
    private readonly store: PartialSnapshotStore,
    /** The partial snapshot the store holds, and a running hash of its bytes. */
    private partial: { snapshot: SnapshotDescriptor; received: number; hash: Hash } | null,
  ) {}

  /** Opens what `store` kept, rehashing its bytes (a restart of the node). */
  static async open(store: PartialSnapshotStore): Promise<SnapshotReceiver> {
    const kept = await store.load();
    if (kept === null) return new SnapshotReceiver(store, null);
    const hash = snapshotHash(kept.snapshot.meta);
    for (let at = 0; at < kept.received; at += READ_STEP_BYTES)
      hash.update(await store.read(at, Math.min(READ_STEP_BYTES, kept.received - at)));
    return new SnapshotReceiver(store, { ...kept, hash });
  }

  /** The snapshot being received when the node stopped (InitialState.incoming), or null. */
  incoming(): IncomingSnapshot | null {
    const p = this.partial;
    return p === null ? null : { ...p.snapshot, received: p.received };
  }

  /**
   * Keeps a chunk's bytes until the core hands the chunk out to write. Returns false for one
   * to drop before the core sees it: no bytes, or bytes that do not match their checksum.
   */
  keep(m: Message & { type: 'snapshot' }, attachment: Uint8Array | null): boolean {
    const bytes = attachment === null ? null : openChunk(attachment, m.length);
    if (bytes === null) return false;
    if (m.length > 0) {
      // A copy: the transport may reuse the buffer it reassembled the chunk in.
      this.chunkBytes.set(`${m.id}@${m.offset}`, bytes.slice());
      for (const k of this.chunkBytes.keys()) {
        if (this.chunkBytes.size <= KEPT_CHUNKS_MAX) break;
        this.chunkBytes.delete(k);
      }
    }
    return true;
  }

  /** Writes a chunk the core accepted to the partial snapshot (a chunk at 0 starts a new one). */
  async write(c: SnapshotChunk): Promise<void> {
    if (c.length > 0) {
      const key = `${c.id}@${c.offset}`;
      const bytes = this.chunkBytes.get(key);
      if (bytes === undefined)
        throw new Error(`Snapshot chunk ${key} accepted by the core was never received`);
      this.chunkBytes.delete(key);
      if (c.offset === 0) {
        const snapshot: SnapshotDescriptor = { meta: c.meta, id: c.id, totalBytes: c.totalBytes };
        await this.store.begin(snapshot);
        this.partial = { snapshot, received: 0, hash: snapshotHash(c.meta) };
      }
      const p = this.partial;
      if (p === null || p.snapshot.id !== c.id || p.received !== c.offset)
        throw new Error(
          `Snapshot chunk ${key} does not continue the partial snapshot (${p?.snapshot.id ?? 'none'}, ${p?.received ?? 0} bytes)`,
        );
      await this.store.write(c.offset, bytes);
      p.hash.update(bytes);
      p.received += bytes.length;
    }
    if (c.last) this.pendingCheck = c.id;
  }

  /**
   * Checks the complete snapshot `id` against its id. A bad one is discarded; returns whether
   * it was good, and the index it claimed.
   */
  async check(id: string): Promise<{ good: boolean; index: number }> {
    this.pendingCheck = null;
    const p = this.partial;
    const good =
      p !== null &&
      p.snapshot.id === id &&
      p.received === p.snapshot.totalBytes &&
      idOf(p.hash) === id;
    if (!good) {
      this.partial = null;
      await this.store.discard();
    }
    return { good, index: p?.snapshot.meta.index ?? 0 };
  }

  /** The whole checked snapshot the core asked to install, and its id. */
  async whole(meta: SnapshotMeta, id: string | null): Promise<{ data: Uint8Array; id: string }> {
    const p = this.received(meta, id);
    return { data: await this.store.read(0, p.snapshot.totalBytes), id: p.snapshot.id };
  }

  /**
   * The whole checked snapshot the core asked to install, read from the partial copy a few MB
   * at a time each time `pieces` is iterated (so it is never held whole), its id and size.
   */
  complete(
    meta: SnapshotMeta,
    id: string | null,
  ): {
    id: string;
    totalBytes: number;
    pieces: () => AsyncIterable<Uint8Array>;
  } {
    const p = this.received(meta, id);
    const { store } = this;
    const totalBytes = p.snapshot.totalBytes;
    async function* pieces(): AsyncGenerator<Uint8Array, void, undefined> {
      for (let at = 0; at < totalBytes; at += READ_STEP_BYTES)
        yield await store.read(at, Math.min(READ_STEP_BYTES, totalBytes - at));
    }
    return { id: p.snapshot.id, totalBytes, pieces };
  }

  /** The partial snapshot, which must be `meta`'s (and snapshot `id`, when named) and complete. */
  private received(
    meta: SnapshotMeta,
    id: string | null,
  ): {
    snapshot: SnapshotDescriptor;
    received: number;
    hash: Hash;
  } {
    const p = this.partial;
    if (
      p === null ||
      p.snapshot.meta.index !== meta.index ||
      p.snapshot.meta.term !== meta.term ||
      (id !== null && p.snapshot.id !== id) ||
      p.received !== p.snapshot.totalBytes
    )
      throw new Error(
        `Snapshot ${id ?? ''} ${meta.term}/${meta.index} requested by the core was never received whole`,
      );
    return p;
  }

  /** The snapshot was installed: its partial copy is removed. */
  async installed(): Promise<void> {
    this.partial = null;
    await this.store.discard();
  }
}
