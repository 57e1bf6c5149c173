// CRC-32C of two byte strings joined, from the CRC of each and the second's length, without
// reading either again (the method of zlib's crc32_combine: appending n bytes multiplies the
// first CRC by x^(8n) modulo the polynomial). A snapshot file's CRC covers its header, which
// holds the data's length, and then the data: a snapshot written as it is encoded knows that
// length only at the end, and this joins the header's CRC to the data's instead of reading
// hundreds of megabytes back. @node-rs/crc32 computes CRCs but has no combine.

/** CRC-32C's polynomial, bit-reflected. */
const POLY = 0x82f63b78;
const TOP = 0x80000000;

/** a(x) * b(x) modulo the polynomial, both reflected. */
function multModP(a: number, b: number): number {
  let p = 0;
  for (let m = TOP; m !== 0; m >>>= 1) {
    if ((a & m) !== 0) {
      p ^= b;
      if ((a & (m - 1)) === 0) break;
    }
    b = (b & 1) !== 0 ? (b >>> 1) ^ POLY : b >>> 1;
  }
  return p >>> 0;
}

/** x^(2^k) modulo the polynomial, k = 0..31. */
const X2N: number[] = [];
for (let k = 0, p = TOP >>> 1; k < 32; k++, p = multModP(p, p)) X2N.push(p);

/** x^(n * 2^k) modulo the polynomial. */
function x2nModP(n: number, k: number): number {
  let p = TOP;
  for (; n > 0; n = Math.floor(n / 2), k++) if (n % 2 === 1) p = multModP(X2N[k % 32] as number, p);
  return p;
}

/** CRC-32C of A followed by B, given crcA = crc32c(A), crcB = crc32c(B) and B's length. */
export function crc32cCombine(crcA: number, crcB: number, lengthB: number): number {
  if (!Number.isSafeInteger(lengthB) || lengthB < 0)
    throw new RangeError(`length must be a non-negative integer, got ${lengthB}`);
  return (multModP(x2nModP(lengthB, 3), crcA >>> 0) ^ crcB) >>> 0;
}
