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
// limit's worth of others; and when the oldest request in flight has been waiting longer than
// `maxAgeMs` (the node is serving slower than the limit assumes), new ones are refused too,
// until the backlog drains: latency stays near that bound rather than growing to the request
// timeout, where writes would fail as indefinite.

export interface AdmissionLimits {
  /** Client requests in flight at once. */
  readonly maxRequests: number;
  /**
   * Declared body bytes of the requests in flight. A request is admitted whatever its size
   * when nothing else is in flight, so one at the body limit always gets through.
   */
  readonly maxBytes: number;
  /**
   * Refuse while the oldest request has been in progress (body received) longer than this.
   * A request still sending its body does not count, so a slow sender cannot close the node.
   */
  readonly maxAgeMs: number;
}

export interface AdmissionState {
  readonly requests: number;
  readonly bytes: number;
}

/** An admitted request's slot. */
export interface Ticket {
  /** Its body has arrived and its work starts: from now on its age counts. */
  begin(): void;
  /** Frees the slot; calling it again does nothing. */
  release(): void;
}

export class Admission {
  private requests = 0;
  private bytes = 0;
  private nextId = 1;
  /** Requests begun and not released, by id, in the order they began: the first is the oldest. */
  private readonly begun = new Map<number, number>();

  constructor(
    readonly limits: AdmissionLimits,
    private readonly onOutcome: (admitted: boolean) => void = () => undefined,
    private readonly nowMs: () => number = () => performance.now(),
  ) {
    if (!Number.isInteger(limits.maxRequests) || limits.maxRequests < 1)
      throw new RangeError(`maxRequests must be an integer >= 1, got ${limits.maxRequests}`);
    if (!Number.isInteger(limits.maxBytes) || limits.maxBytes < 1)
      throw new RangeError(`maxBytes must be an integer >= 1, got ${limits.maxBytes}`);
    if (!(limits.maxAgeMs > 0))
      throw new RangeError(`maxAgeMs must be positive, got ${limits.maxAgeMs}`);
  }

  /** A slot for a request with `bodyBytes` of body, or null when it must be refused now. */
  tryAcquire(bodyBytes: number): Ticket | null {
    const size = Number.isFinite(bodyBytes) && bodyBytes > 0 ? bodyBytes : 0;
    const full =
      this.requests >= this.limits.maxRequests ||
      (this.requests > 0 && this.bytes + size > this.limits.maxBytes) ||
      this.oldestAgeMs() > this.limits.maxAgeMs;
    this.onOutcome(!full);
    if (full) return null;
    this.requests += 1;
    this.bytes += size;
    const id = this.nextId++;
    let released = false;
    return {
      begin: () => {
        if (!released && !this.begun.has(id)) this.begun.set(id, this.nowMs());
      },
      release: () => {
        if (released) return;
        released = true;
        this.begun.delete(id);
        this.requests -= 1;
        this.bytes -= size;
      },
    };
  }

  state(): AdmissionState {
    return { requests: this.requests, bytes: this.bytes };
  }

  /** How long the oldest request in progress has been (0: none). */
  oldestAgeMs(): number {
    for (const began of this.begun.values()) return Math.max(0, this.nowMs() - began);
    return 0;
  }

  /** Why a request was refused, for the OVERLOADED message. */
  describe(): string {
    return (
      `${this.requests} requests (${this.bytes} bytes) in flight, the oldest for ` +
      `${Math.round(this.oldestAgeMs())} ms; the limits are ${this.limits.maxRequests} ` +
      `requests, ${this.limits.maxBytes} bytes and ${this.limits.maxAgeMs} ms`
    );
  }
}
