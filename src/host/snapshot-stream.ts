// A state machine streams its snapshot as chunks; storage and the peer transport still hold a
// snapshot as one buffer (chunked transfer that resumes is a later step). The host frames the
// chunks into that buffer so they come back out exactly as they went in:
//
//   "FSN1", then for each chunk: u32 little-endian length, that many bytes

import { chunkStream } from './contracts.js';

const MAGIC = new Uint8Array([0x46, 0x53, 0x4e, 0x31]); // "FSN1"
/** Bytes gathered between two turns of the event loop while collecting. */
const BYTES_PER_TURN = 4 << 20;

/**
 * Reads every chunk of `chunks` into one framed buffer, letting the event loop turn
 * (`nextTurn`) between chunks and every few MB, so heartbeats and client requests keep being
 * served while a large state is encoded.
 */
export async function collectSnapshot(
  chunks: AsyncIterable<Uint8Array>,
  nextTurn: () => Promise<void>,
): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let total = MAGIC.length;
  for await (const c of chunks) {
    parts.push(c);
    total += 4 + c.length;
    await nextTurn();
  }
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  out.set(MAGIC, 0);
  let at = MAGIC.length;
  let sinceTurn = 0;
  for (const c of parts) {
    view.setUint32(at, c.length, true);
    out.set(c, at + 4);
    at += 4 + c.length;
    sinceTurn += c.length;
    // Touching tens of MB of fresh memory at once costs page faults enough to block for
    // hundreds of milliseconds on a busy machine.
    if (sinceTurn >= BYTES_PER_TURN) {
      sinceTurn = 0;
      await nextTurn();
    }
  }
  return out;
}

/** The chunks of a buffer `collectSnapshot` made; throws on a malformed one. */
export function snapshotChunks(data: Uint8Array): AsyncIterable<Uint8Array> {
  const chunks = splitFramed(data);
  return chunkStream(() => chunks[Symbol.iterator]());
}

function splitFramed(data: Uint8Array): Uint8Array[] {
  if (data.length < MAGIC.length || MAGIC.some((b, i) => data[i] !== b))
    throw new Error('Snapshot does not begin with the FSN1 frame marker');
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const chunks: Uint8Array[] = [];
  let at = MAGIC.length;
  while (at < data.length) {
    if (at + 4 > data.length) throw new Error(`Snapshot frame truncated at byte ${at}`);
    const n = view.getUint32(at, true);
    if (at + 4 + n > data.length) throw new Error(`Snapshot frame truncated at byte ${at}`);
    chunks.push(data.subarray(at + 4, at + 4 + n));
    at += 4 + n;
  }
  return chunks;
}
