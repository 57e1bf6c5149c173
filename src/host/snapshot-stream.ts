// A state machine streams its snapshot as chunks; the host frames them into one byte stream, which
// storage writes as it comes (or gathers into one buffer) and the transfer to a follower sends
// in chunks of its own, so they come back out exactly as they went in:
//
//   "FSN1", then for each chunk: u32 little-endian length, that many bytes

import { chunkStream } from './contracts.js';

const MAGIC = new Uint8Array([0x46, 0x53, 0x4e, 0x31]); // "FSN1"
/** Bytes gathered between two turns of the event loop while collecting. */
const BYTES_PER_TURN = 4 << 20;

/**
 * The framed snapshot's bytes, piece by piece: the marker, then each chunk's length and the
 * chunk. The event loop turns (`nextTurn`) before each chunk is pulled, so heartbeats and
 * client requests keep being served while a large state is encoded. Storage that writes the
 * pieces as they come never holds the whole snapshot (GroupStorage.saveSnapshotFrom).
 */
export async function* framedSnapshot(
  chunks: AsyncIterable<Uint8Array>,
  nextTurn: () => Promise<void>,
): AsyncGenerator<Uint8Array, void, undefined> {
  yield MAGIC;
  for await (const c of chunks) {
    const length = new Uint8Array(4);
    new DataView(length.buffer).setUint32(0, c.length, true);
    yield length;
    yield c;
    await nextTurn();
  }
}

/** How fast a snapshot is encoded (RuntimeOptions.snapshotEncodeShare). */
export interface SnapshotPace {
  /** The largest share, in (0, 1], of the time since it began that encoding may take. */
  readonly share: number;
  readonly nowMs: () => number;
  /** Resolves after `ms` (on the injected clock, so the simulator controls it too). */
  readonly sleep: (ms: number) => Promise<void>;
  /** True once the rest should go as fast as it can (the node is closing and waits for it). */
  readonly hurried?: () => boolean;
}

/**
 * `chunks`, pulled no faster than `pace.share` of the time allows: the time spent pulling each
 * chunk (encoding it) is added up, and before the next pull this waits until that total is at
 * most `share` of the time since the first. A snapshot is background work: encoding it as fast
 * as the event loop allows took half of the loop from the requests while it ran, on all
 * members at once (they snapshot at the same indexes), and showed in their tail latency
 * (BENCHMARKS.md, "Snapshots paced"). Each pull is still done whole, so a chunk's size bounds
 * how long one blocks the loop. A clock that does not move while a chunk is encoded (the
 * simulator's) makes no wait at all, and neither does a hurried pace (a node closing waits for
 * its snapshot to be saved, and a paced one would hold its shutdown up four times as long).
 */
export async function* pacedChunks(
  chunks: AsyncIterable<Uint8Array>,
  pace: SnapshotPace,
): AsyncGenerator<Uint8Array, void, undefined> {
  const start = pace.nowMs();
  let busy = 0;
  let pulled = start;
  for await (const c of chunks) {
    busy += pace.nowMs() - pulled;
    yield c;
    const owed = busy / pace.share - (pace.nowMs() - start);
    if (owed >= 1 && pace.hurried?.() !== true) await pace.sleep(owed);
    pulled = pace.nowMs();
  }
}

/**
 * Reads every chunk of `chunks` into one framed buffer, letting the event loop turn
 * (`nextTurn`) between chunks and every few MB. Holding the pieces and then the whole costs
 * fresh memory twice the snapshot's size: at a million keys that was most of a snapshot's
 * time (BENCHMARKS.md, "Snapshots written as they are encoded"), so the runtime streams to
 * storage where it can and this serves the rest (in-memory and SQLite storage, backups).
 */
export async function collectSnapshot(
  chunks: AsyncIterable<Uint8Array>,
  nextTurn: () => Promise<void>,
): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let total = 0;
  for await (const p of framedSnapshot(chunks, nextTurn)) {
    parts.push(p);
    total += p.length;
  }
  const out = new Uint8Array(total);
  let at = 0;
  let sinceTurn = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
    sinceTurn += p.length;
    // Touching tens of MB of fresh memory at once costs page faults enough to block for
    // hundreds of milliseconds on a busy machine.
    if (sinceTurn >= BYTES_PER_TURN) {
      sinceTurn = 0;
      await nextTurn();
    }
  }
  return out;
}

/**
 * The chunks of a framed snapshot that comes as pieces of any size (a file read a few MB at a
 * time), so that a snapshot is restored without being held whole. A chunk that lies within one
 * piece is a view into it; one that straddles pieces is copied into a buffer of its own. Throws,
 * as `snapshotChunks` does, on a stream that is not framed or ends inside a frame.
 */
export async function* unframeSnapshot(
  pieces: AsyncIterable<Uint8Array>,
): AsyncGenerator<Uint8Array, void, undefined> {
  // The marker or a length being read, byte by byte across pieces: `head` holds `headFill` of
  // its 4 bytes. A chunk being filled across pieces: `body` holds `bodyFill` of its bytes.
  const head = new Uint8Array(4);
  let headFill = 0;
  let marked = false;
  let body: Uint8Array | null = null;
  let bodyFill = 0;
  let total = 0;
  for await (const piece of pieces) {
    total += piece.length;
    let p = 0;
    while (p < piece.length) {
      if (body !== null) {
        const n = Math.min(body.length - bodyFill, piece.length - p);
        body.set(piece.subarray(p, p + n), bodyFill);
        bodyFill += n;
        p += n;
        if (bodyFill < body.length) continue;
        yield body;
        body = null;
        continue;
      }
      const n = Math.min(4 - headFill, piece.length - p);
      head.set(piece.subarray(p, p + n), headFill);
      headFill += n;
      p += n;
      if (headFill < 4) continue;
      headFill = 0;
      if (!marked) {
        if (MAGIC.some((b, i) => head[i] !== b))
          throw new Error('Snapshot does not begin with the FSN1 frame marker');
        marked = true;
        continue;
      }
      const length = new DataView(head.buffer).getUint32(0, true);
      if (p + length <= piece.length) {
        // Whole within this piece: no copy.
        yield piece.subarray(p, p + length);
        p += length;
      } else {
        body = new Uint8Array(length);
        bodyFill = 0;
      }
    }
  }
  if (!marked) throw new Error('Snapshot does not begin with the FSN1 frame marker');
  if (headFill !== 0 || body !== null)
    throw new Error(`Snapshot frame truncated: the stream ends at byte ${total}, inside a frame`);
}

/** The chunks of a buffer `collectSnapshot` made, as views into it; throws on a malformed one. */
export function snapshotChunks(data: Uint8Array): AsyncIterable<Uint8Array> {
  return unframeSnapshot(chunkStream(() => [data][Symbol.iterator]()));
}
