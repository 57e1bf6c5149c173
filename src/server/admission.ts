// Admission of client requests: at most `maxRequests` requests, holding at most `maxBytes` of
// body, are in a node at once (from arrival until answered); one more is refused at once with
// OVERLOADED (HTTP 429, Retry-After), before its body is read or parsed, and is certainly not
// applied.
//
// Why a node needs this: everything it does runs on one event loop, and the work of the
// requests in flight arrives there in bursts: each turn of the loop parses the requests that
// arrived, and each applied batch answers them all. Unbounded, 1,024 closed-loop clients kept a
// leader's loop busy for over an election timeout at a time on a loaded machine; its heartbeats
// left late, its followers elected another leader, and every write in flight failed
// (BENCHMARKS.md, "Overload: why the leader lost its quorum"). Bounding what is in flight bounds
// each burst, and a refusal costs a few microseconds where a request costs a parse, a proposal,
// an apply and an answer. A latency target follows too: a request waits behind at most the
// limit's worth of others.

export interface AdmissionLimits {
  /** Client requests in flight at once. */
  readonly maxRequests: number;
  /**
   * Declared body bytes of the requests in flight. A request is admitted whatever its size
   * when nothing else is in flight, so one at the body limit always gets through.
   */
  readonly maxBytes: number;
}

export interface AdmissionState {
  readonly requests: number;
  readonly bytes: number;
}

/** Releases an admitted request's slot; calling it again does nothing. */
export type Release = () => void;

export class Admission {
  private requests = 0;
  private bytes = 0;

  constructor(
    readonly limits: AdmissionLimits,
    private readonly onOutcome: (admitted: boolean) => void = () => undefined,
  ) {
    if (!Number.isInteger(limits.maxRequests) || limits.maxRequests < 1)
      throw new RangeError(`maxRequests must be an integer >= 1, got ${limits.maxRequests}`);
    if (!Number.isInteger(limits.maxBytes) || limits.maxBytes < 1)
      throw new RangeError(`maxBytes must be an integer >= 1, got ${limits.maxBytes}`);
  }

  /** A slot for a request with `bodyBytes` of body, or null when it must be refused now. */
  tryAcquire(bodyBytes: number): Release | null {
    const size = Number.isFinite(bodyBytes) && bodyBytes > 0 ? bodyBytes : 0;
    const full =
      this.requests >= this.limits.maxRequests ||
      (this.requests > 0 && this.bytes + size > this.limits.maxBytes);
    this.onOutcome(!full);
    if (full) return null;
    this.requests += 1;
    this.bytes += size;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.requests -= 1;
      this.bytes -= size;
    };
  }

  state(): AdmissionState {
    return { requests: this.requests, bytes: this.bytes };
  }

  /** Why a request was refused, for the OVERLOADED message. */
  describe(): string {
    return (
      `${this.requests} requests (${this.bytes} bytes) in flight; the limits are ` +
      `${this.limits.maxRequests} requests and ${this.limits.maxBytes} bytes`
    );
  }
}
