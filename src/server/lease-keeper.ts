// When leases expire, decided by the leader alone, as etcd does. The leases themselves (id,
// time to live, attached keys) are replicated state; when each one runs out is not: it is the
// leader's clock, and keep-alives go to the leader and only move its deadline in memory. When
// a deadline passes the leader proposes the revocation, so every replica deletes the same keys
// at the same revision. A new leader does not know the old one's deadlines: it gives every
// lease its whole time to live again plus an election timeout (the longest its predecessor's
// keep-alives may have been unanswerable), so a lease never expires early because leadership
// moved; it may live up to that much longer than asked.

import { FlotillaError } from '../base/errors.js';
import type { Clock } from '../host/contracts.js';
import { Periodic } from './periodic.js';

export interface LeaseKeeperOptions {
  readonly clock: Clock;
  readonly isLeader: () => boolean;
  /** The replicated leases: id and time to live in seconds. */
  readonly leases: () => readonly { readonly id: number; readonly ttlSeconds: number }[];
  /** One replicated lease, or undefined. */
  readonly lease: (id: number) => { readonly ttlSeconds: number } | undefined;
  /** What a new leader adds to every deadline: the election timeout. */
  readonly extendMs: number;
  /** How often the leader looks for expired leases. */
  readonly checkEveryMs: number;
  /**
   * Resolves once this node has applied everything committed when it was called (a ReadIndex
   * barrier); rejects when that cannot be known here (not the leader).
   */
  readonly applied: () => Promise<void>;
  /** Proposes a lease's revocation; resolves once applied. */
  readonly revoke: (id: number) => Promise<void>;
  readonly onError: (id: number, err: unknown) => void;
}

export class LeaseKeeper {
  private readonly deadlines = new Map<number, number>();
  private readonly revoking = new Set<number>();
  private leading = false;
  private readonly periodic: Periodic;

  constructor(private readonly o: LeaseKeeperOptions) {
    this.periodic = new Periodic(o.clock, o.checkEveryMs, () => this.check());
  }

  start(): void {
    this.periodic.start();
  }

  stop(): void {
    this.periodic.stop();
  }

  /** One look: follows leadership and the lease table, and revokes what has run out. */
  check(): void {
    if (!this.o.isLeader()) {
      this.leading = false;
      this.deadlines.clear();
      return;
    }
    const now = this.o.clock.nowMs();
    const leases = this.o.leases();
    const extend = this.leading ? 0 : this.o.extendMs;
    this.leading = true;
    const present = new Set<number>();
    for (const l of leases) {
      present.add(l.id);
      // Granted since the last look (or everything, for a new leader): a whole time to live.
      if (!this.deadlines.has(l.id)) this.deadlines.set(l.id, now + l.ttlSeconds * 1000 + extend);
    }
    for (const id of [...this.deadlines.keys()]) if (!present.has(id)) this.deadlines.delete(id);
    for (const [id, deadline] of this.deadlines) {
      if (deadline > now || this.revoking.has(id)) continue;
      this.revoking.add(id);
      this.o.revoke(id).then(
        () => this.revoking.delete(id),
        (err: unknown) => {
          this.revoking.delete(id);
          // LEASE_NOT_FOUND: revoked meanwhile by a client; nothing to do.
          if (!(err instanceof FlotillaError && err.code === 'LEASE_NOT_FOUND'))
            this.o.onError(id, err);
        },
      );
    }
  }

  /**
   * A keep-alive: the lease's deadline moves to a whole time to live from now. Only the leader
   * keeps deadlines (`NOT_LEADER` elsewhere; the API forwards keep-alives to it).
   */
  keepAlive(id: number): { id: number; ttlSeconds: number } {
    const lease = this.lease(id);
    const now = this.o.clock.nowMs();
    // A lease past its deadline is expired even before its revocation applies: moving the
    // deadline now would answer "alive for ttl" while the revocation (proposed, or due at the
    // next look) deletes its keys. etcd's Renew refuses an expired lease the same way.
    const deadline = this.deadlines.get(id);
    if (this.revoking.has(id) || (deadline !== undefined && deadline <= now))
      throw new FlotillaError(
        'LEASE_NOT_FOUND',
        `Lease ${id} expired ${now - (deadline ?? now)} ms ago; its revocation is under way`,
      );
    this.deadlines.set(id, now + lease.ttlSeconds * 1000);
    return { id, ttlSeconds: lease.ttlSeconds };
  }

  /**
   * A keep-alive as a client sends it: `keepAlive`, except that a lease this leader does not
   * know is looked for again once it has applied what was committed. A leader elected a moment
   * ago may not have applied a grant its predecessor committed and answered (it applies it only
   * after committing an entry of its own term); calling such a lease not found would tell its
   * holder it lost it.
   */
  async keepAliveApplied(id: number): Promise<{ id: number; ttlSeconds: number }> {
    if (this.o.lease(id) === undefined && this.o.isLeader()) await this.o.applied();
    return this.keepAlive(id);
  }

  /** `timeToLive` as a client asks for it: a lease not known yet is looked for once applied. */
  async timeToLiveApplied(
    id: number,
  ): Promise<{ id: number; ttlSeconds: number; grantedTtlSeconds: number }> {
    if (this.o.lease(id) === undefined && this.o.isLeader()) await this.o.applied();
    return this.timeToLive(id);
  }

  /** Seconds left before the lease expires (rounded up), as this leader sees it. */
  timeToLive(id: number): { id: number; ttlSeconds: number; grantedTtlSeconds: number } {
    const lease = this.lease(id);
    // Not seen by a check yet: the deadline the next check gives it (no allowance for a
    // leader change on a leader that has led since before the grant).
    const deadline =
      this.deadlines.get(id) ??
      this.o.clock.nowMs() + lease.ttlSeconds * 1000 + (this.leading ? 0 : this.o.extendMs);
    const left = Math.max(0, Math.ceil((deadline - this.o.clock.nowMs()) / 1000));
    return { id, ttlSeconds: left, grantedTtlSeconds: lease.ttlSeconds };
  }

  private lease(id: number): { id: number; ttlSeconds: number } {
    if (!this.o.isLeader())
      throw new FlotillaError('NOT_LEADER', 'Lease deadlines are kept by the leader');
    const lease = this.o.lease(id);
    if (lease === undefined)
      throw new FlotillaError(
        'LEASE_NOT_FOUND',
        `Lease ${id} does not exist (never granted, revoked or expired)`,
      );
    return { id, ttlSeconds: lease.ttlSeconds };
  }
}
