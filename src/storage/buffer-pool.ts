// Reusable buffers for encoding WAL records. A fresh 1 MiB Buffer costs far more than filling
// it: its pages are new to the process (one page fault each) and V8 counts it as external
// memory, which schedules extra garbage collections. Measured on a 4,096 x 256-byte batch:
// 5.6 ms to encode into a fresh buffer, 0.4 ms into a reused one. So encode buffers are taken
// from here and handed back once the write that used them has completed.

const MIN_POOLED_BYTES = 64 * 1024;

export class BufferPool {
  private readonly free: Buffer[] = [];
  /** Memory this pool allocated: anything else handed to `give` is ignored, never reused. */
  private readonly owned = new WeakSet<ArrayBufferLike>();

  /**
   * @param maxPooledBytes buffers larger than this are allocated per use and not kept
   * @param maxBuffers how many idle buffers are kept (bounds the memory held while idle)
   */
  constructor(
    private readonly maxPooledBytes: number,
    private readonly maxBuffers: number,
  ) {}

  /** A buffer of exactly `bytes` (a view of a pooled one when one is big enough). */
  take(bytes: number): Buffer {
    const k = this.free.findIndex((b) => b.length >= bytes);
    if (k >= 0) {
      const [whole] = this.free.splice(k, 1);
      if (whole !== undefined) return whole.subarray(0, bytes);
    }
    // allocUnsafeSlow: an ArrayBuffer of our own, never a slice of Node's shared small pool,
    // so `give` can safely reuse all of it.
    const whole = Buffer.allocUnsafeSlow(sizeClass(bytes, this.maxPooledBytes));
    this.owned.add(whole.buffer);
    return whole.subarray(0, bytes);
  }

  /** Hands back a buffer from `take` whose contents are no longer needed by anyone. */
  give(buf: Buffer): void {
    const whole = buf.buffer;
    if (!this.owned.has(whole) || whole.byteLength > this.maxPooledBytes) return;
    if (this.free.length >= this.maxBuffers || this.free.some((b) => b.buffer === whole)) return;
    this.free.push(Buffer.from(whole, 0, whole.byteLength));
  }
}

/** Power-of-two sizes (at least 64 KiB) so that batches of similar size reuse one buffer. */
function sizeClass(bytes: number, maxPooledBytes: number): number {
  if (bytes > maxPooledBytes) return bytes;
  let size = MIN_POOLED_BYTES;
  while (size < bytes) size *= 2;
  return Math.min(size, maxPooledBytes);
}
