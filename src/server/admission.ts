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
  /**
   * Frees the slot; calling it again does nothing. `refused`: its answer was a refusal all the
   * same (a follower passing on the leader's 429), counted as one for the Retry-After.
   */
  release(refused?: boolean): void;
}

/** The longest Retry-After a refusal asks for, in seconds. */
export const maxRetryAfterSeconds = 10;

export class Admission {
  private requests = 0;
  private bytes = 0;
  private nextId = 1;
  /** Refusals and answers counted in the current second and the one before it. */
  private readonly rate = { startMs: 0, refused: 0, answered: 0, lastRefused: 0, lastAnswered: 0 };
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
    this.roll();
    if (full) {
      this.rate.refused += 1;
      return null;
    }
    this.requests += 1;
    this.bytes += size;
    const id = this.nextId++;
    let released = false;
    return {
      begin: () => {
        if (!released && !this.begun.has(id)) this.begun.set(id, this.nowMs());
      },
      release: (refused = false) => {
        if (released) return;
        released = true;
        this.begun.delete(id);
        this.requests -= 1;
        this.bytes -= size;
        this.roll();
        if (refused) this.rate.refused += 1;
        else this.rate.answered += 1;
      },
    };
  }

  state(): AdmissionState {
    return { requests: this.requests, bytes: this.bytes };
  }

  /**
   * When a refused client should come back, in whole seconds: the refusals of the last second
   * over the requests answered in it, at least 1 and at most maxRetryAfterSeconds. Clients
   * refused together then return spread over as many seconds as the node needs to serve them,
   * rather than all in the next second: with 3,000 clients and Retry-After 1, refused retries
   * were most of what the nodes parsed, and parsing them is work the event loop owes Raft.
   *
   * The answers counted are at least what the limits promise: while the oldest request is
   * younger than maxAgeMs the node takes new ones, so a node that is refusing answers about
   * maxRequests per maxAgeMs. Without that floor, a burst that arrives at a node that has
   * answered nothing for a second (idle, or its first requests still in progress) was told
   * the longest wait: 1,000 new clients writing once each to an idle leader were asked to
   * come back in 10 s, and with the client's 15 s deadline 4 in 10 of them gave up.
   */
  retryAfterSeconds(): number {
    this.roll();
    const r = this.rate;
    const refused = Math.max(r.refused, r.lastRefused);
    const promised = (this.limits.maxRequests * 1_000) / this.limits.maxAgeMs;
    const answered = Math.max(r.answered, r.lastAnswered, promised, 1);
    return Math.min(maxRetryAfterSeconds, Math.max(1, Math.ceil(refused / answered)));
  }

  private roll(): void {
    const now = this.nowMs();
    const r = this.rate;
    if (now - r.startMs < 1_000) return;
    const adjacent = now - r.startMs < 2_000;
    r.lastRefused = adjacent ? r.refused : 0;
    r.lastAnswered = adjacent ? r.answered : 0;
    r.refused = 0;
    r.answered = 0;
    r.startMs = now;
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
