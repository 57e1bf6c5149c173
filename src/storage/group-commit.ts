// Group commit: callers submit work items; while one flush (write + sync) is in flight, new
// items gather and go out together in the next flush, so N concurrent callers cost one sync.
// A failed flush latches: the disk's state is unknown after a failed fsync (a retried fsync
// can report success for data the kernel already dropped), so every later submit is refused.

import { StorageError, closedError, rejected } from './errors.js';

interface Pending<T> {
  readonly item: T;
  readonly resolve: () => void;
  readonly reject: (err: unknown) => void;
}

export class GroupCommitter<T> {
  private pending: Pending<T>[] = [];
  private draining: Promise<void> | null = null;
  private failure: StorageError | null = null;
  private closed = false;

  constructor(
    private readonly flush: (items: readonly T[]) => Promise<void>,
    private readonly what: string,
  ) {}

  /** The latched failure, if a flush ever failed. */
  failed(): StorageError | null {
    return this.failure;
  }

  /** Throws the latched failure or STORAGE_CLOSED. */
  checkWritable(): void {
    if (this.failure !== null) throw this.failure;
    if (this.closed) throw closedError(this.what);
  }

  submit(item: T): Promise<void> {
    try {
      this.checkWritable();
    } catch (err) {
      return rejected(err);
    }
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ item, resolve, reject });
      this.draining ??= this.drain();
    });
  }

  /** Refuses new items, waits for the queued ones to finish (or fail). */
  async close(): Promise<void> {
    this.closed = true;
    await this.draining;
  }

  /** Latches a failure found outside a flush (e.g. a snapshot's fsync). */
  fail(err: StorageError): void {
    this.failure ??= err;
  }

  private async drain(): Promise<void> {
    while (this.pending.length > 0) {
      const batch = this.pending;
      this.pending = [];
      try {
        if (this.failure !== null) throw this.failure;
        await this.flush(batch.map((p) => p.item));
        for (const p of batch) p.resolve();
      } catch (err) {
        this.failure ??=
          err instanceof StorageError
            ? err
            : new StorageError(
                'STORAGE_WRITE_FAILED',
                `${this.what} write failed: ${String(err)}`,
                { cause: err },
              );
        for (const p of batch) p.reject(this.failure);
      }
    }
    this.draining = null;
  }
}
