// A deadline for one HTTP exchange, as an AbortSignal that surely fires.
//
// `AbortSignal.any([signal, AbortSignal.timeout(ms)])` looks like the same thing but is not on
// Node.js 20: the composite holds its sources only weakly, and the timeout signal's timer holds
// only a weak reference too, so once nothing else refers to the timeout signal a garbage
// collection can take it and the composite never aborts (nodejs/node#57736, fixed in Node.js
// 24). Forwarded writes hung past their deadline that way. Here an ordinary timer holds the
// controller strongly until it fires or the deadline is disposed.

export class Deadline implements Disposable {
  private readonly controller = new AbortController();
  private readonly timer: ReturnType<typeof setTimeout>;
  private readonly parent: AbortSignal | undefined;
  private readonly onParentAbort = (): void => this.controller.abort(this.parent?.reason);
  private expired = false;

  /** Aborts after `timeoutMs`, or when `parent` aborts, whichever comes first. */
  constructor(
    readonly timeoutMs: number,
    parent?: AbortSignal,
  ) {
    this.parent = parent;
    this.timer = setTimeout(() => {
      this.expired = true;
      this.controller.abort(new DOMException(`No answer within ${timeoutMs} ms`, 'TimeoutError'));
    }, timeoutMs);
    if (parent?.aborted) this.onParentAbort();
    else parent?.addEventListener('abort', this.onParentAbort, { once: true });
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** True once the time ran out (rather than the parent aborting). */
  get timedOut(): boolean {
    return this.expired;
  }

  /** Aborts now with `reason` (e.g. the leader this request waits on was replaced). */
  abort(reason: unknown): void {
    this.controller.abort(reason);
  }

  /** Stops the timer and forgets the parent; call when the exchange is over. */
  [Symbol.dispose](): void {
    clearTimeout(this.timer);
    this.parent?.removeEventListener('abort', this.onParentAbort);
  }
}
