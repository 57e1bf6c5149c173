// Bytes held as strings of one char per byte (latin1: ISO-8859-1, one UTF-16 code unit per
// byte, not the web's windows-1252), and back. The key-value store keeps its keys and values
// this way and the job queue its payloads: a string is one object on the V8 heap that a
// collection marks without looking inside, where a Uint8Array is a view and an ArrayBuffer
// (about 190 bytes of heap beside its contents) and, past 64 bytes, a block outside the heap
// each collection accounts for. String order is byte order.

/** Up to this many bytes, a loop beats a call into Buffer's native code. */
export const SHORT = 64;

/** The bytes as a string of one char per byte; a copy, never a view of `bytes`. */
export function latin1String(bytes: Uint8Array): string {
  // A loop is 2-5 times faster than Buffer's decoding for the short keys most are; past them
  // Buffer's decoding is one native copy (spreading the bytes into String.fromCharCode cost 25
  // to 40 times as much: BENCHMARKS.md, "What one job costs each member").
  if (bytes.length <= SHORT) {
    let s = '';
    for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i] as number);
    return s;
  }
  const b = Buffer.isBuffer(bytes)
    ? bytes
    : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return b.toString('latin1');
}

/** A string of one char per byte back to its bytes: a fresh array (the inverse of latin1String). */
export function latin1Bytes(s: string): Uint8Array {
  // Long ones come from Buffer's pool: a fresh Uint8Array past 64 bytes is a block allocated
  // outside the heap, about 1 µs against 0.2.
  if (s.length > SHORT) return Buffer.from(s, 'latin1');
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}
