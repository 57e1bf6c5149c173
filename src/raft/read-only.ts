// The leader's queue of ReadIndex requests (thesis §6.4; etcd-io/raft's read_only.go).
//
// The leader numbers its heartbeat rounds (`seq`) and followers echo the number. A request
// takes the number of the next round and the commit index at its arrival; it is safe to serve
// once a quorum (the leader included) has echoed a number at least that large, because each of
// those followers acknowledged this leader's term after the request arrived, so no newer leader
// could have committed anything the read would miss. A round is sent at most once per Ready,
// so a burst of requests costs one round.
//
// The same rounds give the leader its lease (DESIGN.md, "Lease reads"): the module remembers
// the tick each round was sent at, so that a round a quorum acknowledged says since when those
// followers have promised not to vote for anyone else.
//
// This module only keeps the queue; whether a set of acknowledgements is a quorum is the
// tracker's decision, and answering is the leader's.

import type { Index, NodeId } from './types.js';

/** A request waiting at the leader for its heartbeat round to be acknowledged. */
export interface PendingRead {
  readonly requestId: number;
  /** The node that asked (the leader itself for local reads). */
  readonly from: NodeId;
  /** The commit index when the request arrived: the read point, once confirmed. */
  readonly index: Index;
  /** The heartbeat round whose acknowledgement by a quorum confirms the request. */
  readonly seq: number;
}

/** A request that arrived before the leader committed an entry of its own term. */
export interface EarlyRead {
  readonly requestId: number;
  readonly from: NodeId;
  /** Asked as a lease read (it may be answered from the lease once the term's entry commits). */
  readonly lease: boolean;
}

export class ReadOnly {
  private readonly self: NodeId;
  /** The number of the last heartbeat round sent. */
  seq = 0;
  /** A request waits for a round that has not been sent yet. */
  roundPending = false;
  /** The highest round each follower has echoed in this term. */
  private readonly acks = new Map<NodeId, number>();
  /** Invariant: in arrival order, so seq never decreases along it. */
  private pending: PendingRead[] = [];
  private early: EarlyRead[] = [];
  /**
   * The tick of the first round sent at each tick, oldest first: round s was sent at the tick
   * of the last entry whose seq is <= s. Invariant: seq and tick both strictly increase along
   * it; entries too old to give a lease are dropped, so it holds about one election timeout.
   */
  private sentAt: { seq: number; tick: number }[] = [];
  /** The first tick at which the lease no longer holds (0: no lease). */
  leaseEnd = 0;
  /**
   * The last round sent, the tick it went out at (seq 0: none in this term), and whether it
   * went to a quorum's worth of followers only (RaftConfig.readRoundsToQuorum).
   */
  private lastRound = { seq: 0, tick: 0, partial: false };

  constructor(self: NodeId) {
    this.self = self;
  }

  /** Queues a request confirmed by the next round, reading at `index`. */
  add(requestId: number, from: NodeId, index: Index): void {
    this.pending.push({ requestId, from, index, seq: this.seq + 1 });
    this.roundPending = true;
  }

  /** Holds a request until the leader's commit index is of its own term. */
  addEarly(requestId: number, from: NodeId, lease: boolean): void {
    this.early.push({ requestId, from, lease });
  }

  hasEarly(): boolean {
    return this.early.length > 0;
  }

  /** The held requests, removed: the leader has committed an entry of its term. */
  takeEarly(): EarlyRead[] {
    const out = this.early;
    this.early = [];
    return out;
  }

  /** A round goes out now, at `tick`, to every member or (`partial`) some: returns its number. */
  startRound(tick: number, partial = false): number {
    this.seq++;
    this.roundPending = false;
    this.lastRound = { seq: this.seq, tick, partial };
    const last = this.sentAt[this.sentAt.length - 1];
    if (last === undefined || last.tick < tick) this.sentAt.push({ seq: this.seq, tick });
    return this.seq;
  }

  /**
   * Whether the round waiting requests need may go out now (DESIGN.md, "ReadIndex rounds"):
   * not while the last round is unconfirmed and was sent in this tick. Requests that arrive
   * meanwhile wait for it to come back and then share the next one, so under load a round
   * carries every read that arrived during the last one's round trip (one message to each
   * follower and back per round trip, not per turn); a lost round delays them a tick at most.
   */
  roundDue(tick: number, confirmed: (seq: number) => boolean): boolean {
    if (!this.roundPending) return false;
    const last = this.lastRound;
    return last.seq === 0 || tick > last.tick || confirmed(last.seq);
  }

  /**
   * Whether the last round went to some members only and is not confirmed: the next round
   * then goes to every member. With `tick`, only if it was sent before that tick.
   */
  partialRoundUnconfirmed(confirmed: (seq: number) => boolean, tick = Infinity): boolean {
    const last = this.lastRound;
    return last.partial && last.tick < tick && !confirmed(last.seq);
  }

  /** Every member was sent the last round's number (a heartbeat to all carries it). */
  widenLastRound(): void {
    this.lastRound = { ...this.lastRound, partial: false };
  }

  /** The highest round `id` has echoed in this term (0: none). */
  lastAck(id: NodeId): number {
    return this.acks.get(id) ?? 0;
  }

  /** The tick round `seq` was sent at, or null when it is no longer remembered. */
  sentTick(seq: number): number | null {
    let tick: number | null = null;
    for (const e of this.sentAt) {
      if (e.seq > seq) break;
      tick = e.tick;
    }
    return tick;
  }

  /** Forgets the send ticks of rounds sent before `tick`: they can no longer give a lease. */
  forgetBefore(tick: number): void {
    let drop = 0;
    while (drop < this.sentAt.length && (this.sentAt[drop] as { tick: number }).tick < tick) drop++;
    if (drop > 0) this.sentAt = this.sentAt.slice(drop);
  }

  /**
   * Forgets the lease and the send ticks of every round so far: only rounds sent from now on
   * can give a lease (a leader waking from quiescence, whose tick count stood still).
   */
  forgetLease(): void {
    this.sentAt = [];
    this.leaseEnd = 0;
  }

  /** Whether a read waits for a round or for the term's first commit. */
  busy(): boolean {
    return this.roundPending || this.pending.length > 0 || this.early.length > 0;
  }

  /** The highest round each member has acknowledged (candidates for the lease's round). */
  ackedRounds(): number[] {
    return [...this.acks.values()];
  }

  /** `from` echoed round `seq`; returns whether that is news. */
  recvAck(from: NodeId, seq: number): boolean {
    if (seq <= (this.acks.get(from) ?? 0)) return false;
    this.acks.set(from, seq);
    return true;
  }

  /** Whether `id` has acknowledged round `seq`; the leader acknowledges its own rounds. */
  acked(id: NodeId, seq: number): boolean {
    return id === this.self || (this.acks.get(id) ?? 0) >= seq;
  }

  /**
   * Removes and returns the requests now confirmed, oldest first. `confirmed(seq)` says
   * whether round `seq` is acknowledged by a quorum; the first one that is not stops the
   * scan, since later requests wait for the same round or a later one.
   */
  takeConfirmed(confirmed: (seq: number) => boolean): PendingRead[] {
    let done = 0;
    for (const r of this.pending) {
      if (!confirmed(r.seq)) break;
      done++;
    }
    if (done === 0) return [];
    const out = this.pending.slice(0, done);
    this.pending = this.pending.slice(done);
    return out;
  }

  /**
   * Empties the queue for a new term or role: returns the requests to refuse (those waiting
   * for a round, then those held for the term's first commit) and forgets every
   * acknowledgement. Round numbers keep growing across terms.
   */
  reset(): { pending: PendingRead[]; early: EarlyRead[] } {
    const out = { pending: this.pending, early: this.early };
    this.pending = [];
    this.early = [];
    this.roundPending = false;
    this.acks.clear();
    this.lastRound = { seq: 0, tick: 0, partial: false };
    this.sentAt = [];
    this.leaseEnd = 0;
    return out;
  }
}
