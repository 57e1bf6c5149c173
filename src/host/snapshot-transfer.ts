// The runtime's side of a snapshot sent in chunks (DESIGN.md, "Snapshots in chunks"). The core
// names each chunk (snapshot id, offset, length) and tracks how much the follower holds; this
// module gives a snapshot its id, seals each chunk's bytes with a checksum for the trip, keeps a
// follower's partial snapshot with a running hash of it, and counts what each transfer moved
// for status and metrics.
//
// A chunk travels as its bytes followed by the CRC-32C of them (u32 little-endian). The
// transport's frames are checksummed too; this one also covers the copies between the
// leader's snapshot buffer and the follower's partial file.

import { crc32c } from '@node-rs/crc32';
import { createHash, type Hash } from 'node:crypto';
import type { SnapshotDescriptor, SnapshotMeta } from '../raft/index.js';
import type { PartialSnapshotStore } from './contracts.js';

/** Bytes hashed between two turns of the event loop. */
const HASH_BYTES_PER_TURN = 4 << 20;

/**
 * A running hash of a snapshot's identity: its index and term, then its bytes. The id is the
 * first 160 bits in hex: two snapshots with one id hold the same bytes at the same index, so
 * a transfer resumed under a new leader never splices two different snapshots.
 */
export function snapshotHash(meta: SnapshotMeta): Hash {
  return createHash('sha256').update(`flotilla snapshot ${meta.term}/${meta.index}\n`);
}

export function idOf(hash: Hash): string {
  return hash.copy().digest('hex').slice(0, 40);
}

/** The id of a whole snapshot, letting the event loop turn every few MB. */
export async function snapshotId(
  meta: SnapshotMeta,
  data: Uint8Array,
  nextTurn: () => Promise<void>,
): Promise<string> {
  const h = snapshotHash(meta);
  for (let at = 0; at < data.length; at += HASH_BYTES_PER_TURN) {
    h.update(data.subarray(at, at + HASH_BYTES_PER_TURN));
    if (at + HASH_BYTES_PER_TURN < data.length) await nextTurn();
  }
  return idOf(h);
}

/** A chunk's bytes with their checksum appended, as they travel. */
export function sealChunk(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(data.length + SEAL_BYTES);
  out.set(data, 0);
  return sealInPlace(out, data.length);
}

/** Bytes a sealed chunk adds to its data: the checksum. */
export const SEAL_BYTES = 4;

/**
 * Seals the chunk whose `length` bytes begin `buf`, writing the checksum into the SEAL_BYTES
 * after them (`buf` is that much longer): no copy of the chunk.
 */
export function sealInPlace(buf: Uint8Array, length: number): Uint8Array {
  if (buf.length !== length + SEAL_BYTES)
    throw new RangeError(
      `a sealed chunk of ${length} bytes takes ${length + SEAL_BYTES}, not ${buf.length}`,
    );
  const crc = crc32c(Buffer.from(buf.buffer, buf.byteOffset, length)) >>> 0;
  new DataView(buf.buffer, buf.byteOffset, buf.length).setUint32(length, crc, true);
  return buf;
}

/** The bytes of a sealed chunk of `length` bytes, or null when they do not match their checksum. */
export function openChunk(sealed: Uint8Array, length: number): Uint8Array | null {
  if (sealed.length !== length + 4) return null;
  const data = sealed.subarray(0, length);
  const view = new DataView(sealed.buffer, sealed.byteOffset, sealed.byteLength);
  const crc = crc32c(Buffer.from(data.buffer, data.byteOffset, data.byteLength)) >>> 0;
  return view.getUint32(length, true) === crc ? data : null;
}

/**
 * A partial snapshot kept in memory: for tests and the simulator, which keep the object across
 * a restart of the node to stand for its data directory. Not for production: a real node keeps
 * its partial snapshot in a file (src/storage/partial-snapshot.ts).
 */
export class MemoryPartialSnapshots implements PartialSnapshotStore {
  private snapshot: SnapshotDescriptor | null = null;
  private parts: Uint8Array[] = [];
  private held = 0;

  load(): Promise<{ snapshot: SnapshotDescriptor; received: number } | null> {
    const s = this.snapshot;
    return Promise.resolve(s === null ? null : { snapshot: s, received: this.held });
  }

  begin(snapshot: SnapshotDescriptor): Promise<void> {
    this.snapshot = snapshot;
    this.parts = [];
    this.held = 0;
    return Promise.resolve();
  }

  write(offset: number, data: Uint8Array): Promise<void> {
    if (this.snapshot === null || offset !== this.held)
      return Promise.reject(
        new Error(`Partial snapshot holds ${this.held} bytes; cannot write at ${offset}`),
      );
    this.parts.push(data.slice());
    this.held += data.length;
    return Promise.resolve();
  }

  read(offset: number, length: number): Promise<Uint8Array> {
    const all = Buffer.concat(this.parts);
    if (offset + length > all.length)
      return Promise.reject(new Error(`Partial snapshot holds ${all.length} bytes`));
    return Promise.resolve(new Uint8Array(all.subarray(offset, offset + length)));
  }

  discard(): Promise<void> {
    this.snapshot = null;
    this.parts = [];
    this.held = 0;
    return Promise.resolve();
  }
}

/** One snapshot transfer as status and metrics show it. */
export interface SnapshotTransfer {
  /** `send`: this leader sends to `peer`; `receive`: this node receives from `peer`. */
  readonly direction: 'send' | 'receive';
  readonly peer: number;
  readonly id: string;
  readonly index: number;
  readonly totalBytes: number;
  /** Bytes the follower holds (acknowledged, or written on the receiving side). */
  readonly bytesDone: number;
  /** Chunk bytes sent (or received) in this transfer, resent ones included. */
  readonly bytesMoved: number;
  /** Chunks sent (or received) in this transfer, resent ones included. */
  readonly chunks: number;
  /** The offset of the last chunk sent (or received). */
  readonly lastOffset: number;
  readonly startedMs: number;
  /** bytesMoved per second since the transfer started. */
  readonly bytesPerSec: number;
}

interface Counting {
  id: string;
  index: number;
  totalBytes: number;
  bytesMoved: number;
  chunks: number;
  lastOffset: number;
  startedMs: number;
}

/** Counts what each transfer moved; keyed by the peer at the other end. */
export class TransferCounters {
  private readonly sending = new Map<number, Counting>();
  private readonly receiving = new Map<number, Counting>();
  /** Chunks refused because their bytes did not match their checksum, since start. */
  corruptChunks = 0;
  /** Complete snapshots refused because their bytes did not match their id, since start. */
  refusedSnapshots = 0;
  /** Snapshot bytes sent, resent ones included, since start. */
  bytesSentTotal = 0;

  constructor(private readonly nowMs: () => number) {}

  sent(peer: number, d: SnapshotDescriptor, offset: number, length: number): void {
    this.count(this.sending, peer, d, offset, length);
    this.bytesSentTotal += length;
  }

  received(peer: number, d: SnapshotDescriptor, offset: number, length: number): void {
    this.count(this.receiving, peer, d, offset, length);
  }

  private count(
    m: Map<number, Counting>,
    peer: number,
    d: SnapshotDescriptor,
    offset: number,
    length: number,
  ): void {
    let c = m.get(peer);
    if (c === undefined || c.id !== d.id) {
      c = {
        id: d.id,
        index: d.meta.index,
        totalBytes: d.totalBytes,
        bytesMoved: 0,
        chunks: 0,
        lastOffset: 0,
        startedMs: this.nowMs(),
      };
      m.set(peer, c);
    }
    c.bytesMoved += length;
    c.chunks += 1;
    c.lastOffset = offset;
  }

  /**
   * The transfers in progress: sending ones the core still tracks (`acked` by peer), the
   * receiving one if the core holds an incoming snapshot. Finished ones are forgotten.
   */
  list(
    acked: ReadonlyMap<number, { id: string; acked: number }>,
    incoming: { id: string; received: number; from: number } | null,
  ): SnapshotTransfer[] {
    const out: SnapshotTransfer[] = [];
    for (const [peer, c] of this.sending) {
      const a = acked.get(peer);
      if (a === undefined || a.id !== c.id) {
        this.sending.delete(peer);
        continue;
      }
      out.push(this.view('send', peer, c, a.acked));
    }
    for (const [peer, c] of this.receiving) {
      // Only from the leader sending now: a transfer resumed under a new leader is counted
      // afresh from its first chunk.
      if (incoming === null || incoming.id !== c.id || incoming.from !== peer) {
        this.receiving.delete(peer);
        continue;
      }
      out.push(this.view('receive', peer, c, incoming.received));
    }
    return out;
  }

  private view(
    direction: 'send' | 'receive',
    peer: number,
    c: Counting,
    bytesDone: number,
  ): SnapshotTransfer {
    const elapsedMs = Math.max(1, this.nowMs() - c.startedMs);
    return {
      direction,
      peer,
      id: c.id,
      index: c.index,
      totalBytes: c.totalBytes,
      bytesDone,
      bytesMoved: c.bytesMoved,
      chunks: c.chunks,
      lastOffset: c.lastOffset,
      startedMs: c.startedMs,
      bytesPerSec: Math.round((c.bytesMoved * 1000) / elapsedMs),
    };
  }
}
