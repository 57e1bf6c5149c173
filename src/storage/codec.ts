// Binary helpers shared by the WAL and snapshot files. Integers in files are little-endian;
// indices and terms are stored in 8 bytes (two u32 halves) because JavaScript numbers hold
// integers exactly up to 2^53, which is also the largest index we accept.

export function writeU64(buf: Buffer, offset: number, n: number): void {
  buf.writeUInt32LE(n >>> 0, offset);
  buf.writeUInt32LE(Math.floor(n / 0x1_0000_0000), offset + 4);
}

/** Returns -1 when the value is not a safe integer (a damaged field, never a valid index). */
export function readU64(buf: Buffer, offset: number): number {
  const lo = buf.readUInt32LE(offset);
  const hi = buf.readUInt32LE(offset + 4);
  if (hi > 0x1f_ffff) return -1;
  return hi * 0x1_0000_0000 + lo;
}

export function asBuffer(u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

export function hex(n: number, width: number): string {
  return n.toString(16).padStart(width, '0');
}
