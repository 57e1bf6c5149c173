// Every write carries this client's exactly-once session: its id, and a sequence number that
// a retry reuses (Raft thesis §6.3), so a write retried after a lost answer applies once.
//
// The cluster remembers results for a window of each client's recent sequence numbers (256),
// and refuses a sequence number that fell behind it. A write is therefore sent only while its
// number is within `writeWindow` of the oldest write still in flight; more writes wait their
// turn in the client rather than be refused with SESSION_STALE_SEQUENCE.
//
// Each write also says the oldest sequence number still in flight (`ackedBelow`): the client
// has every answer below it and will not send them again, so the cluster forgets their results
// (API.md, "Exactly-once writes") and holds about one per write in flight. A node of a release
// that does not know the field refuses it (UNKNOWN_FIELD, nothing applied); the client then
// sends the write again without it, and leaves the mark out of the next `markRetryWrites`
// writes before it tries it again: a rolling upgrade ends, and a long-lived client must not go
// on without marks (the session table would hold a whole window of results per client) for
// the rest of its life. Each try that an older node still refuses costs one refused attempt.

import { FlotillaError } from '../base/errors.js';
import type { Caller } from './caller.js';
import type { ClientSettings } from './options.js';

export class WriteSession {
  readonly clientId: string;
  private seq = 0;
  private readonly writeWindow: number;
  /** Sequence numbers handed out and not yet finished. */
  private readonly writesInFlight = new Set<number>();
  /** Invariant: no write in flight has a lower sequence number. */
  private oldestInFlight = 1;
  /** Whether writes say `ackedBelow`; off for `markRetryWrites` writes after a refusal. */
  private sendAcks = true;
  private readonly markRetryWrites: number;
  /** While marks are off: the writes still to go without one before the next try. */
  private writesUntilMark = 0;
  /** Writes waiting for their sequence number to come within the window. */
  private readonly windowWaiters: (() => void)[] = [];
  private readonly deadlineMs: number;

  constructor(
    s: ClientSettings,
    private readonly caller: Caller,
  ) {
    this.clientId = s.clientId;
    // A name given by the caller may be the one an earlier run of the same program used (a
    // service's name is the natural choice): its sequence numbers start where that run's
    // cannot have reached, so the session does not answer this run's writes with that run's
    // results and apply nothing (it did, silently). Time in units of 1/1024 ms: an earlier run
    // would have needed over a million writes a second, all its life, to get there.
    if (s.clientIdGiven) {
      this.seq = Date.now() * 1024;
      this.oldestInFlight = this.seq + 1;
    }
    this.markRetryWrites = s.markRetryWrites;
    this.writeWindow = s.writeWindow;
    this.deadlineMs = s.deadlineMs;
  }

  /** A write: one session sequence number for all its attempts. */
  async write<T>(
    path: string,
    body: Record<string, unknown>,
    signal?: AbortSignal,
    /** Longer than usual each attempt may take: a claim that waits for a job waits this long. */
    extraMs = 0,
  ): Promise<T> {
    const deadline = Date.now() + this.deadlineMs + extraMs;
    const seq = await this.takeSeq(deadline, signal);
    const send = (mark: boolean): Promise<T> => {
      const acked = mark ? { ackedBelow: this.oldestInFlight } : {};
      const session = { clientId: this.clientId, seq, ...acked };
      return this.caller.call<T>('POST', path, { ...body, ...session }, signal, deadline, extraMs);
    };
    try {
      const mark = this.markThisWrite();
      try {
        return await send(mark);
      } catch (err) {
        // A node of an older release: the write was refused whole (definite), so it is sent
        // again, with the same seq, without the mark, and the marks wait for a while.
        if (!mark || !refusedMark(err)) throw err;
        this.sendAcks = false;
        this.writesUntilMark = this.markRetryWrites;
        return await send(false);
      }
    } finally {
      this.finishSeq(seq);
    }
  }

  /**
   * Whether this write carries the mark: yes unless a refusal turned marks off, and then again
   * once `markRetryWrites` writes went without (the upgrade may have ended since).
   */
  private markThisWrite(): boolean {
    if (this.sendAcks) return true;
    if (this.writesUntilMark-- > 0) return false;
    this.sendAcks = true;
    return true;
  }

  /** The next sequence number, once it is within the window of the oldest write in flight. */
  private async takeSeq(deadline: number, signal?: AbortSignal): Promise<number> {
    while (this.seq + 1 >= this.oldestInFlight + this.writeWindow) {
      if (signal?.aborted) throw new FlotillaError('ABORTED', 'Aborted by the caller', false);
      const waitMs = deadline - Date.now();
      if (waitMs <= 0)
        throw new FlotillaError(
          'TIMEOUT',
          `The write waited ${this.deadlineMs} ms for one of the ${this.writeWindow} writes ` +
            `in flight to finish; it was never sent`,
          false,
        );
      await new Promise<void>((resolve) => {
        const wake = (): void => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', wake);
          const i = this.windowWaiters.indexOf(wake);
          if (i >= 0) this.windowWaiters.splice(i, 1);
          resolve();
        };
        const timer = setTimeout(wake, waitMs);
        signal?.addEventListener('abort', wake, { once: true });
        this.windowWaiters.push(wake);
      });
    }
    const seq = ++this.seq;
    this.writesInFlight.add(seq);
    return seq;
  }

  private finishSeq(seq: number): void {
    this.writesInFlight.delete(seq);
    while (this.oldestInFlight <= this.seq && !this.writesInFlight.has(this.oldestInFlight))
      this.oldestInFlight++;
    // Wake, oldest first, as many waiters as the window now has room for; each re-checks.
    const room = this.oldestInFlight + this.writeWindow - 1 - this.seq;
    for (const wake of this.windowWaiters.slice(0, Math.max(0, room))) wake();
  }
}

/** A refusal of the `ackedBelow` field by a node of a release that does not know it. */
function refusedMark(err: unknown): boolean {
  return (
    err instanceof FlotillaError && err.code === 'UNKNOWN_FIELD' && /"ackedBelow"/.test(err.message)
  );
}
