// The wire framing of the peer protocol (docs/PROTOCOL.md). Every frame is
//
//   u32 BE  payload length (bytes after this 9-byte header)
//   u32 BE  CRC32C over the type byte and the payload
//   u8      frame type
//   ...     payload
//
// The length is checked against the limit in force before any buffer is allocated for the
// payload, so a hostile or broken peer cannot make us reserve more than one limit's worth.

import { crc32c } from '@node-rs/crc32';
import { TransportError, hexPreview } from './errors.js';

export const HEADER_BYTES = 9;
/** Sent by the dialler before its first frame: "FLOT". */
export const PREFACE = Buffer.from('FLOT', 'latin1');

export const FrameType = {
  hello: 1,
  accept: 2,
  refuse: 3,
  message: 4,
  chunk: 5,
  messageWithAttachment: 6,
  /** Heartbeats and heartbeat answers of many groups (protocol version 4; coalesced.ts). */
  heartbeats: 7,
  /** The sender is stopping cleanly and closes the connection next (protocol version 5). */
  goodbye: 8,
} as const;
export type FrameTypeCode = (typeof FrameType)[keyof typeof FrameType];

const knownTypes = new Set<number>(Object.values(FrameType));

export interface Frame {
  readonly type: FrameTypeCode;
  readonly payload: Buffer;
}

/**
 * Encodes one frame from one or more payload parts. Returns the parts to write (header first)
 * so that large payloads, such as snapshot chunks, are written without being copied.
 */
export function encodeFrame(type: FrameTypeCode, parts: readonly Uint8Array[]): Buffer[] {
  const header = Buffer.allocUnsafe(HEADER_BYTES);
  let length = 0;
  let crc = crc32c(Buffer.of(type));
  for (const p of parts) {
    length += p.byteLength;
    crc = crc32c(p, crc);
  }
  header.writeUInt32BE(length, 0);
  header.writeUInt32BE(crc >>> 0, 4);
  header.writeUInt8(type, 8);
  return [
    header,
    ...parts.map((p) =>
      Buffer.isBuffer(p) ? p : Buffer.from(p.buffer, p.byteOffset, p.byteLength),
    ),
  ];
}

/** Encodes a frame with a small payload into one contiguous buffer (one write, no writev). */
export function encodeSmallFrame(type: FrameTypeCode, payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(HEADER_BYTES + payload.byteLength);
  out.set(payload, HEADER_BYTES);
  out.writeUInt32BE(payload.byteLength, 0);
  out.writeUInt8(type, 8);
  out.writeUInt32BE(crc32c(out.subarray(8)) >>> 0, 4);
  return out;
}

/**
 * Incremental decoder: push() what the socket delivers, then pull frames with next() until it
 * returns null. After an error the decoder is poisoned: the connection must be closed, since
 * there is no way to find the next frame boundary in a corrupt stream.
 */
export class FrameDecoder {
  private readonly chunks: Buffer[] = [];
  private buffered = 0;
  private failed: TransportError | null = null;

  /** @param maxFrameBytes largest payload accepted; may be raised after the handshake. */
  constructor(public maxFrameBytes: number) {}

  get bufferedBytes(): number {
    return this.buffered;
  }

  push(chunk: Buffer): void {
    if (this.failed !== null || chunk.length === 0) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
  }

  /** Takes exactly `n` raw bytes (used for the connection preface), or null if not yet here. */
  take(n: number): Buffer | null {
    if (this.buffered < n) return null;
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const head = this.chunks[0] as Buffer;
      const used = Math.min(head.length, n - filled);
      head.copy(out, filled, 0, used);
      filled += used;
      if (used === head.length) this.chunks.shift();
      else this.chunks[0] = head.subarray(used);
    }
    this.buffered -= n;
    return out;
  }

  next(): Frame | TransportError | null {
    if (this.failed !== null) return this.failed;
    if (this.buffered < HEADER_BYTES) return null;
    const header = this.peekHeader();
    const length = header.readUInt32BE(0);
    const type = header.readUInt8(8);
    if (length > this.maxFrameBytes)
      return this.fail(
        'TRANSPORT_FRAME_TOO_LARGE',
        `frame of ${length} bytes exceeds limit ${this.maxFrameBytes}`,
      );
    if (!knownTypes.has(type))
      return this.fail(
        'TRANSPORT_BAD_FRAME',
        `unknown frame type ${type} (header ${hexPreview(header)})`,
      );
    if (this.buffered < HEADER_BYTES + length) return null;
    this.take(HEADER_BYTES);
    const payload = length === 0 ? Buffer.alloc(0) : (this.take(length) as Buffer);
    const crc = crc32c(payload, crc32c(Buffer.of(type))) >>> 0;
    const expected = header.readUInt32BE(4);
    if (crc !== expected)
      return this.fail(
        'TRANSPORT_CHECKSUM_MISMATCH',
        `frame type ${type} of ${length} bytes has crc32c ${crc.toString(16)}, header says ${expected.toString(16)}`,
      );
    return { type: type as FrameTypeCode, payload };
  }

  private peekHeader(): Buffer {
    const head = this.chunks[0] as Buffer;
    if (head.length >= HEADER_BYTES) return head.subarray(0, HEADER_BYTES);
    // Rare: the header straddles socket reads. Copy just its bytes, never the whole backlog.
    const out = Buffer.allocUnsafe(HEADER_BYTES);
    let filled = 0;
    for (const c of this.chunks) {
      filled += c.copy(out, filled, 0, Math.min(c.length, HEADER_BYTES - filled));
      if (filled === HEADER_BYTES) break;
    }
    return out;
  }

  private fail(code: TransportError['code'], message: string): TransportError {
    this.failed = new TransportError(code, message);
    this.chunks.length = 0;
    this.buffered = 0;
    return this.failed;
  }
}
