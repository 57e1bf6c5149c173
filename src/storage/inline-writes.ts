// When a WAL write asked for on the calling thread (PersistOptions.inline) is made there. One
// policy may serve every store on a disk (a node's groups), so that a slow write to any of them
// pauses the inline writes of all.

/** The largest inline write by default: this small, it takes about as long as the hand-offs. */
export const INLINE_WRITE_MAX_BYTES = 64 * 1024;
/** A write slower than this pauses inline writes: the disk is busy, and may stall. */
export const INLINE_SLOW_WRITE_MS = 10;
/** For this long after a slow write, every write goes through the thread pool. */
export const INLINE_PAUSE_MS = 1_000;

/**
 * When a write asked for on the calling thread (PersistOptions.inline) is made there: when it
 * is small, and while the disk is fast. The thread is blocked for as long as the write takes,
 * and a follower's heartbeat answers with it (the leader's check-quorum counts them), so after
 * any write, made either way, slower than INLINE_SLOW_WRITE_MS, none is made inline for
 * INLINE_PAUSE_MS: a disk that stays slow blocks the thread for one write a second at most.
 */
export class InlineWrites {
  private pausedUntil = Number.NEGATIVE_INFINITY;

  constructor(
    readonly maxBytes = INLINE_WRITE_MAX_BYTES,
    /** Times the writes, in ms. */
    private readonly nowMs: () => number = () => performance.now(),
  ) {}

  allows(bytes: number): boolean {
    return bytes <= this.maxBytes && this.nowMs() >= this.pausedUntil;
  }

  start(): number {
    return this.nowMs();
  }

  /** A write begun at `started` has ended. */
  end(started: number): void {
    const now = this.nowMs();
    if (now - started > INLINE_SLOW_WRITE_MS) this.pausedUntil = now + INLINE_PAUSE_MS;
  }
}
