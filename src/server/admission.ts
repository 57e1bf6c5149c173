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
//
// A request past the limits may wait for a slot instead (`maxWaitMs`), in the order requests
// arrived, its body unread: a burst of new clients (a thousand writing once each at the same
// moment) is then served as slots free, rather than told to come back after a Retry-After of
// seconds. A waiting request costs the node a queue entry and a timer, no parse and no work on
// the event loop, so the bound on what is in flight, and with it the heartbeats' time, holds.
// The wait is bounded in time and in number (`maxWaiting`); past either it is refused as before.

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
  /** How long a request the limits refuse may wait for a slot (0, the default: refused at once). */
  readonly maxWaitMs?: number;
  /** Requests waiting for a slot at once; one more is refused at once. */
  readonly maxWaiting?: number;
}

export interface AdmissionState {
  readonly requests: number;
  readonly bytes: number;
  /** Requests waiting for a slot. */
  readonly waiting: number;
}

/** Timers for the waits (a simulated node passes its own). */
export interface AdmissionTimers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const systemTimers: AdmissionTimers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/** A request waiting for a slot. */
interface Waiter {
  readonly size: number;
  readonly timer: unknown;
  /** Ends the wait with a slot, or refused (null); removes the waiter's abort listener. */
  readonly settle: (ticket: Ticket | null) => void;
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
  /** Requests waiting for a slot, oldest first (a Set keeps the order and removes in O(1)). */
  private readonly waiting = new Set<Waiter>();

  constructor(
    readonly limits: AdmissionLimits,
    private readonly onOutcome: (admitted: boolean) => void = () => undefined,
    private readonly nowMs: () => number = () => performance.now(),
    private readonly timers: AdmissionTimers = systemTimers,
  ) {
    if (!Number.isInteger(limits.maxRequests) || limits.maxRequests < 1)
      throw new RangeError(`maxRequests must be an integer >= 1, got ${limits.maxRequests}`);
    if (!Number.isInteger(limits.maxBytes) || limits.maxBytes < 1)
      throw new RangeError(`maxBytes must be an integer >= 1, got ${limits.maxBytes}`);
    if (!(limits.maxAgeMs > 0))
      throw new RangeError(`maxAgeMs must be positive, got ${limits.maxAgeMs}`);
    const wait = limits.maxWaitMs ?? 0;
    if (!(Number.isFinite(wait) && wait >= 0))
      throw new RangeError(`maxWaitMs must be a number >= 0, got ${wait}`);
    const most = limits.maxWaiting ?? 0;
    if (!Number.isInteger(most) || most < 0)
      throw new RangeError(`maxWaiting must be an integer >= 0, got ${most}`);
  }

  /**
   * A slot for a request with `bodyBytes` of body, or null when it must be refused now. Never
   * ahead of a request waiting for one.
   */
  tryAcquire(bodyBytes: number): Ticket | null {
    const size = sizeOf(bodyBytes);
    const ticket = this.waiting.size > 0 ? null : this.take(size);
    this.counted(ticket !== null);
    return ticket;
  }

  /** Whether a request refused now may wait for a slot (`acquire` would wait, not refuse). */
  canWait(): boolean {
    return (this.limits.maxWaitMs ?? 0) > 0 && this.waiting.size < (this.limits.maxWaiting ?? 0);
  }

  /**
   * A slot for a request with `bodyBytes` of body: at once when one is free and nobody waits;
   * otherwise, while fewer than maxWaiting wait, once the requests ahead of it got theirs and
   * the limits admit it, within maxWaitMs; null (refused) past that, when too many wait, or
   * when `signal` aborts (the client went away) first.
   */
  acquire(bodyBytes: number, signal?: AbortSignal): Ticket | null | Promise<Ticket | null> {
    const size = sizeOf(bodyBytes);
    if (this.waiting.size === 0) {
      const ticket = this.take(size);
      if (ticket !== null || !this.canWait()) {
        this.counted(ticket !== null);
        return ticket;
      }
    } else if (!this.canWait()) {
      this.counted(false);
      return null;
    }
    if (signal?.aborted === true) {
      this.counted(false);
      return null;
    }
    return new Promise<Ticket | null>((resolve) => {
      const aborted = (): void => waiter.settle(null);
      const waiter: Waiter = {
        size,
        timer: this.timers.setTimeout(() => waiter.settle(null), this.limits.maxWaitMs ?? 0),
        settle: (ticket) => {
          if (!this.waiting.delete(waiter)) return;
          this.timers.clearTimeout(waiter.timer);
          signal?.removeEventListener('abort', aborted);
          this.counted(ticket !== null);
          resolve(ticket);
          // One that left the head of the line (refused) may have held back those behind it.
          if (ticket === null) this.admitWaiting();
        },
      };
      this.waiting.add(waiter);
      signal?.addEventListener('abort', aborted, { once: true });
    });
  }

  /** Gives freed slots to the requests waiting, oldest first, while the limits admit them. */
  private admitWaiting(): void {
    for (const w of this.waiting) {
      const ticket = this.take(w.size);
      if (ticket === null) return;
      w.settle(ticket);
    }
  }

  private counted(admitted: boolean): void {
    this.onOutcome(admitted);
    this.roll();
    if (!admitted) this.rate.refused += 1;
  }

  /** A slot if the limits admit one more request of `size` bytes now, else null. */
  private take(size: number): Ticket | null {
    const full =
      this.requests >= this.limits.maxRequests ||
      (this.requests > 0 && this.bytes + size > this.limits.maxBytes) ||
      this.oldestAgeMs() > this.limits.maxAgeMs;
    if (full) return null;
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
        if (this.waiting.size > 0) this.admitWaiting();
      },
    };
  }

  state(): AdmissionState {
    return { requests: this.requests, bytes: this.bytes, waiting: this.waiting.size };
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
    const waitMs = this.limits.maxWaitMs ?? 0;
    return (
      `${this.requests} requests (${this.bytes} bytes) in flight, the oldest for ` +
      `${Math.round(this.oldestAgeMs())} ms` +
      (waitMs > 0 ? `, ${this.waiting.size} waiting` : '') +
      `; the limits are ${this.limits.maxRequests} requests, ${this.limits.maxBytes} bytes and ` +
      `${this.limits.maxAgeMs} ms` +
      (waitMs > 0 ? `, with ${this.limits.maxWaiting ?? 0} waiting up to ${waitMs} ms` : '')
    );
  }
}

function sizeOf(bodyBytes: number): number {
  return Number.isFinite(bodyBytes) && bodyBytes > 0 ? bodyBytes : 0;
}
