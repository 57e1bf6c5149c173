// Everyone waiting on a group's runtime: proposals until their entry applies, reads until the
// leader confirmed their index and the state machine reached it, and callers waiting for a
// leader. Every wait has a deadline on the injected clock and may be aborted by the caller's
// signal; how each ends (resolved, refused definitely or indefinitely) is the runtime's call.

import { FlotillaError } from '../base/errors.js';
import type { Clock } from './contracts.js';

export interface WaitOptions {
  readonly signal?: AbortSignal;
  readonly timeoutMs?: number;
}

export interface Waiter<T> {
  resolve(value: T): void;
  reject(error: FlotillaError): void;
  timer: unknown;
  /** Takes the wait's listener off the caller's signal (set while one is on it). */
  unhook?: (() => void) | undefined;
}

export interface ProposalWaiter extends Waiter<unknown> {
  readonly term: number;
}

export interface ReadWaiter extends Waiter<void> {
  /** The core's request id; a new one each time the read is re-sent to a new leader. */
  requestId: number;
  /** The leader the read index was asked of (this node's id when it led). */
  askedOf: number;
  /** Set once the leader answered: resolve when the state machine reaches it. */
  index: number;
  /** Asked as a lease read: asked again of a new leader as one too. */
  readonly lease: boolean;
}

export interface LeaderWaiter extends Waiter<number> {
  /** Resolve only for a leader other than this one (0: any leader). */
  readonly other: number;
}

export class Waiters {
  /** By log index. */
  readonly proposals = new Map<number, ProposalWaiter>();
  /** By the core's request id. */
  readonly reads = new Map<number, ReadWaiter>();
  readonly leaders = new Set<LeaderWaiter>();
  /** Reads confirmed by the leader, waiting for apply to reach their index (sorted by index). */
  private readonly readsByIndex: { index: number; id: number }[] = [];

  constructor(
    private readonly clock: Clock,
    /** The deadline of a wait that names none. */
    private readonly defaultTimeoutMs: number,
  ) {}

  size(): number {
    return this.proposals.size + this.reads.size + this.leaders.size;
  }

  /**
   * Gives `waiter` its deadline and hooks the caller's signal: either ends the wait (after
   * `remove` took it out of its table) with TIMEOUT (or `timeoutCode`) or ABORTED.
   */
  arm<T>(
    waiter: Waiter<T>,
    w: WaitOptions,
    remove: () => void,
    indefinite: boolean,
    what: string,
    timeoutCode: 'TIMEOUT' | 'NO_LEADER' = 'TIMEOUT',
  ): void {
    const timeoutMs = w.timeoutMs ?? this.defaultTimeoutMs;
    waiter.timer = this.clock.setTimeout(() => {
      remove();
      this.unhook(waiter);
      const message =
        timeoutCode === 'TIMEOUT'
          ? `${what} timed out after ${timeoutMs} ms`
          : `${what} for ${timeoutMs} ms in vain; retry`;
      waiter.reject(new FlotillaError(timeoutCode, message, indefinite));
    }, timeoutMs);
    const signal = w.signal;
    if (signal !== undefined) {
      const onAbort = (): void => {
        waiter.unhook = undefined;
        remove();
        this.clock.clearTimeout(waiter.timer);
        waiter.reject(new FlotillaError('ABORTED', `${what} aborted by the caller`, indefinite));
      };
      if (signal.aborted) onAbort();
      else {
        signal.addEventListener('abort', onAbort, { once: true });
        // Off again when the wait ends otherwise: a signal that outlives many waits (a
        // connection's, a loop's) would otherwise gather a listener per wait, each one making
        // the next addEventListener slower (it scans them) and keeping its waiter alive.
        waiter.unhook = () => signal.removeEventListener('abort', onAbort);
      }
    }
  }

  /** Cancels a waiter's deadline and its signal's listener; the caller resolves or rejects it. */
  settle<T>(waiter: Waiter<T>): void {
    this.clock.clearTimeout(waiter.timer);
    this.unhook(waiter);
  }

  private unhook<T>(waiter: Waiter<T>): void {
    const unhook = waiter.unhook;
    if (unhook === undefined) return;
    waiter.unhook = undefined;
    unhook();
  }

  /** The leader confirmed read `id` at `index`: it resolves once `applied` reaches it. */
  confirmRead(id: number, index: number, applied: number): void {
    const w = this.reads.get(id);
    if (w === undefined) return;
    w.index = index;
    let i = this.readsByIndex.length;
    while (i > 0 && (this.readsByIndex[i - 1] as { index: number }).index > index) i--;
    this.readsByIndex.splice(i, 0, { index, id });
    this.releaseReads(applied);
  }

  /** Resolves every confirmed read whose index the state machine reached. */
  releaseReads(applied: number): void {
    let n = 0;
    while (
      n < this.readsByIndex.length &&
      (this.readsByIndex[n] as { index: number }).index <= applied
    ) {
      const { id } = this.readsByIndex[n] as { id: number };
      const w = this.reads.get(id);
      if (w !== undefined) {
        this.reads.delete(id);
        this.settle(w);
        w.resolve();
      }
      n++;
    }
    if (n > 0) this.readsByIndex.splice(0, n);
  }

  /** Resolves every leader wait `leader` ends: all but those waiting for another than it. */
  releaseLeaders(leader: number): void {
    for (const w of this.leaders) {
      if (w.other === leader) continue;
      this.leaders.delete(w);
      this.settle(w);
      w.resolve(leader);
    }
  }

  /**
   * Fails every waiter with `err`: proposals as `err` says (they may have been proposed),
   * reads and leader waits definitely (nothing was changed by them).
   */
  failAll(err: FlotillaError): void {
    for (const [, w] of this.proposals) {
      this.settle(w);
      w.reject(err);
    }
    this.proposals.clear();
    const definite = (): FlotillaError =>
      new FlotillaError(err.code, err.message, false, err.leader);
    for (const [, w] of this.reads) {
      this.settle(w);
      w.reject(definite());
    }
    this.reads.clear();
    this.readsByIndex.length = 0;
    for (const w of this.leaders) {
      this.settle(w);
      w.reject(definite());
    }
    this.leaders.clear();
  }
}
