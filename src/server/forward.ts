// Forwarding a write from a follower to the leader over HTTP, so that any node accepts any
// write. Three rules keep a forwarded request from waiting longer than it must:
//
//   - no leader known (an election is under way): wait for one, briefly, rather than refuse;
//     if this node wins, it answers the request itself;
//   - a definite refusal from the node we took for the leader (NOT_LEADER, NO_LEADER: it did
//     not propose the write) or a refused connection (nothing was sent) is safe to send again:
//     the request goes to the leader this node knows next, or the one the refusal names;
//   - the leader it waits on is replaced (this node learned of a newer one): the old leader may
//     be paused or cut off and never answer, so the node stops waiting. A write that carries an
//     exactly-once session (clientId, seq) is sent to the new leader: if the first copy commits
//     too, the state machine applies only one of them (Raft thesis §6.3). Any other request
//     waits a little longer (a leader that is only slow then refuses it, definitely, and it
//     goes to the new leader), then fails as indefinite (it may have been proposed), and the
//     client retries.
//
// Every forwarded request has one deadline for all of this (`timeoutMs`).

import { FlotillaError } from '../base/errors.js';
import { Deadline } from '../api/deadline.js';
import type { Json } from '../api/validate.js';
import { errorFromWire } from '../api/wire-codec.js';
import type { Member } from './config.js';

export interface ForwardAnswer {
  readonly status: number;
  readonly json: unknown;
}

/** What the forwarder needs to know of the node's view of the leader (the runtime has it). */
export interface LeaderView {
  /** The leader this node knows (its own id when it leads; 0 when none). */
  leaderId(): number;
  /**
   * Resolves with the leader's id once one other than `other` is known (at once if it is);
   * rejects after a bounded wait, or when `signal` aborts.
   */
  waitForLeader(o: { readonly other?: number; readonly signal?: AbortSignal }): Promise<number>;
  /** Calls `listener` with the new leader (0: none) on every change; returns the unsubscribe. */
  onLeaderChange(listener: (leader: number) => void): () => void;
}

/**
 * Sends one request to `url` + `path`, marked as forwarded, with the caller's Authorization
 * header (if it had one: the leader checks it again); throws when there is no answer.
 */
export type SendFn = (
  url: string,
  path: string,
  rawBody: string,
  signal: AbortSignal,
  authorization?: string,
) => Promise<ForwardAnswer>;

export interface ForwarderOptions {
  readonly selfId: number;
  readonly members: readonly Member[];
  readonly leaders: LeaderView;
  readonly send: SendFn;
  /** The whole budget of one forwarded request: leader waits and every hop included. */
  readonly timeoutMs: number;
  /**
   * How long a request without a session still waits for a replaced leader's answer: a leader
   * that is only slow answers with a definite refusal, and the request can go to the new one.
   * Default 0.
   */
  readonly replacedLeaderGraceMs?: number;
  /** Hops to a new leader after definite refusals. Default 3. */
  readonly maxHops?: number;
  /**
   * Requests forwarded at once. One more waits for a slot (`slotWaitMs`), before anything is
   * sent and before its deadline starts, rather than queue behind the others for a connection
   * with its deadline running (it would then fail as indefinite). Default: no limit.
   */
  readonly maxInFlight?: number;
  /**
   * How long a request past `maxInFlight` waits for a slot, in arrival order, before it is
   * refused OVERLOADED (definite: nothing was sent). 0, the default: refused at once. At most
   * four times `maxInFlight` wait at once; one more is refused at once.
   */
  readonly slotWaitMs?: number;
}

/** A request waiting for a forwarding slot. */
interface SlotWaiter {
  /** Hands it the slot a finished request left. */
  grant(): void;
}

/** Why a forward stopped waiting for the leader it was sent to. */
class LeaderReplaced extends Error {
  constructor(readonly to: number) {
    super(`node ${to} leads now`);
  }
}

export class Forwarder {
  private readonly maxHops: number;
  private inFlight = 0;
  /** Requests waiting for a slot, oldest first. */
  private readonly slotWaiters: SlotWaiter[] = [];

  constructor(private readonly o: ForwarderOptions) {
    this.maxHops = o.maxHops ?? 3;
  }

  /**
   * Sends the request to the leader and returns its answer unchanged, or null when this node
   * must answer the request itself: it leads, or no leader could be found in time (it then
   * refuses with NO_LEADER). `authorization` is the caller's credential, passed on unchanged:
   * a forwarded request never carries this node's own.
   */
  async forward(
    path: string,
    rawBody: string,
    signal: AbortSignal,
    authorization?: string,
  ): Promise<ForwardAnswer | null> {
    if (this.o.leaders.leaderId() === this.o.selfId) return null; // the common case: no timer
    await this.takeSlot(signal);
    const budget = new Deadline(this.o.timeoutMs, signal);
    try {
      let tried = 0;
      let hint = 0;
      // The last failure that allows sending again, answered if no other leader turns up.
      let refusal: ForwardAnswer | FlotillaError | null = null;
      // Set once a copy went to a leader that was replaced before answering.
      let maybeApplied: FlotillaError | null = null;
      for (let hop = 0; hop <= this.maxHops; hop++) {
        const leader = await this.nextLeader(tried, hint, budget);
        // This node leads now: it answers the request itself, unless a copy went to a replaced
        // leader. Then the copy may still commit, and a definite refusal of the request here
        // (leadership moving on before it was proposed) would say it did not: it fails as
        // indefinite, and the client retries it under its session.
        if (leader === this.o.selfId && maybeApplied === null) return null;
        if (leader === 0 || leader === this.o.selfId) break;
        const r = await this.sendTo(leader, { path, rawBody, authorization }, budget);
        if (r.resend === null) return r.answer;
        tried = leader;
        hint = r.resend.leader;
        refusal = r.answer;
        if (r.answer instanceof FlotillaError && r.answer.indefinite) maybeApplied = r.answer;
      }
      // A refusal of a later copy does not undo an earlier copy that may have been applied.
      if (maybeApplied !== null) throw maybeApplied;
      if (refusal instanceof FlotillaError) throw refusal;
      return refusal;
    } finally {
      this.giveSlot();
      budget[Symbol.dispose]();
    }
  }

  /**
   * Takes a forwarding slot: at once when one is free and nobody waits, else after the requests
   * ahead (bounded by `slotWaitMs`); OVERLOADED, definite, when none comes in time. The slot
   * a finished request gives back goes straight to the oldest waiter.
   */
  private takeSlot(signal: AbortSignal): Promise<void> {
    const max = this.o.maxInFlight ?? Infinity;
    if (this.inFlight < max && this.slotWaiters.length === 0) {
      this.inFlight++;
      return Promise.resolve();
    }
    const waitMs = this.o.slotWaitMs ?? 0;
    const refused = (why: string): FlotillaError =>
      new FlotillaError(
        'OVERLOADED',
        `Node ${this.o.selfId} already forwards ${this.inFlight} requests to the leader, its ` +
          `limit, ${why}; nothing was done`,
        false,
      );
    if (waitMs <= 0) return Promise.reject(refused('and waits for no slot'));
    if (this.slotWaiters.length >= 4 * max)
      return Promise.reject(refused(`and ${this.slotWaiters.length} more wait for a slot`));
    if (signal.aborted)
      return Promise.reject(new FlotillaError('ABORTED', 'The client left', false));
    return new Promise<void>((resolve, reject) => {
      const leave = (): void => {
        const i = this.slotWaiters.indexOf(waiter);
        if (i >= 0) this.slotWaiters.splice(i, 1);
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
      };
      const waiter: SlotWaiter = {
        grant: () => {
          leave();
          resolve();
        },
      };
      const timer = setTimeout(() => {
        leave();
        reject(refused(`and none came free within ${waitMs} ms`));
      }, waitMs);
      const onAbort = (): void => {
        leave();
        reject(
          new FlotillaError('ABORTED', 'The client left while waiting to be forwarded', false),
        );
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.slotWaiters.push(waiter);
    });
  }

  private giveSlot(): void {
    const next = this.slotWaiters[0];
    if (next === undefined) this.inFlight--;
    else next.grant();
  }

  /**
   * The leader to try next: the one this node knows if it has not refused us, else the one the
   * refusal named, else the next one elected (bounded wait). 0 when none turned up in time.
   */
  private async nextLeader(tried: number, hint: number, budget: Deadline): Promise<number> {
    const known = this.o.leaders.leaderId();
    if (known !== 0 && known !== tried) return known;
    if (hint !== 0 && hint !== tried && hint !== this.o.selfId && this.member(hint) !== undefined)
      return hint;
    try {
      return await this.o.leaders.waitForLeader({ other: tried, signal: budget.signal });
    } catch {
      return 0;
    }
  }

  /**
   * One hop. `resend` is set when the answer says the request surely was not proposed and
   * another leader may take it; its `leader` is the one the refusal named (0: none).
   */
  private async sendTo(
    leader: number,
    {
      path,
      rawBody,
      authorization,
    }: { path: string; rawBody: string; authorization: string | undefined },
    budget: Deadline,
  ): Promise<
    | { answer: ForwardAnswer; resend: null }
    | { answer: ForwardAnswer | FlotillaError; resend: { leader: number } }
  > {
    const url = this.member(leader)?.client;
    if (url === undefined)
      throw new FlotillaError('FORWARD_FAILED', `Leader ${leader} is not among the members`, false);
    // This hop ends with the budget, or when a newer leader is known (after the grace).
    const hop = new AbortController();
    const onBudget = (): void => hop.abort(budget.signal.reason);
    budget.signal.addEventListener('abort', onBudget, { once: true });
    let grace: ReturnType<typeof setTimeout> | undefined;
    const off = this.o.leaders.onLeaderChange((now) => {
      if (now === 0 || now === leader || grace !== undefined) return;
      const graceMs = hasSession(rawBody) ? 0 : (this.o.replacedLeaderGraceMs ?? 0);
      grace = setTimeout(() => hop.abort(new LeaderReplaced(now)), graceMs);
    });
    try {
      if (budget.signal.aborted) onBudget();
      const answer = await this.o.send(url, path, rawBody, hop.signal, authorization);
      const refusal = definiteRefusal(answer);
      return refusal === null ? { answer, resend: null } : { answer, resend: refusal };
    } catch (err) {
      if (isConnectionRefused(err)) {
        // Nothing was sent: as safe to send elsewhere as a definite refusal.
        const answer = new FlotillaError(
          'FORWARD_FAILED',
          `Forwarding to the leader (node ${leader} at ${url}) failed: the connection was ` +
            `refused (is it down?), and no other leader was elected in time; nothing was sent`,
          false,
        );
        return { answer, resend: { leader: 0 } };
      }
      const failure = this.failure(leader, url, err, budget);
      const reason = hopAbortReason(err);
      if (reason instanceof LeaderReplaced && hasSession(rawBody))
        return { answer: failure, resend: { leader: reason.to } };
      throw failure;
    } finally {
      off();
      clearTimeout(grace);
      budget.signal.removeEventListener('abort', onBudget);
    }
  }

  private failure(leader: number, url: string, err: unknown, budget: Deadline): FlotillaError {
    const reason = hopAbortReason(err);
    const why =
      reason instanceof LeaderReplaced
        ? `node ${reason.to} was elected leader while node ${leader} held the request`
        : budget.timedOut
          ? `no answer within ${this.o.timeoutMs} ms`
          : (err as Error).message;
    return new FlotillaError(
      'FORWARD_FAILED',
      `Forwarding to the leader (node ${leader} at ${url}) failed: ${why}; the request may ` +
        `have been applied (retry with the same session sequence number)`,
      true,
      reason instanceof LeaderReplaced ? reason.to : 0,
    );
  }

  private member(id: number): Member | undefined {
    return this.o.members.find((m) => m.id === id);
  }
}

/** NOT_LEADER or NO_LEADER, marked definite: the node did not propose the request. */
function definiteRefusal(a: ForwardAnswer): { leader: number } | null {
  if (a.status !== 421 && a.status !== 503) return null;
  const e = (a.json as { error?: { code?: unknown; indefinite?: unknown; leader?: unknown } })
    .error;
  if (e === undefined || e.indefinite !== false) return null;
  if (e.code !== 'NOT_LEADER' && e.code !== 'NO_LEADER') return null;
  return { leader: typeof e.leader === 'number' ? e.leader : 0 };
}

/** Whether the body carries an exactly-once session, so that a second copy applies at most once. */
function hasSession(rawBody: string): boolean {
  try {
    const o = JSON.parse(rawBody) as { clientId?: unknown; seq?: unknown } | null;
    return typeof o?.clientId === 'string' && Number.isSafeInteger(o.seq) && (o.seq as number) > 0;
  } catch {
    return false;
  }
}

function isConnectionRefused(err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === 'ECONNREFUSED';
}

/** undici rejects an aborted request with the signal's reason, or wraps it. */
function hopAbortReason(err: unknown): unknown {
  if (err instanceof LeaderReplaced) return err;
  const cause = (err as { cause?: unknown } | null)?.cause;
  return cause instanceof LeaderReplaced ? cause : err;
}

/**
 * Runs `local` when this node leads the meta group, else sends `body` to `path` on its leader
 * through `forwarder` (with the caller's credential) and answers what it answered, or throws its
 * error.
 */
export async function onMetaLeader(
  forwarder: Pick<Forwarder, 'forward'>,
  path: string,
  body: Json,
  w: { readonly signal: AbortSignal; readonly authorization: string | undefined },
  local: () => Promise<Json>,
): Promise<Json> {
  const fwd = await forwarder.forward(path, JSON.stringify(body), w.signal, w.authorization);
  if (fwd === null) return local();
  if (fwd.status !== 200)
    throw errorFromWire((fwd.json as { error?: unknown } | null)?.error, true);
  return fwd.json as Json;
}
