// A node that has known no leader for a long time says why it may be so, in its log and in
// /readyz. Elections settle within a few election timeouts; one that has not after
// `warnAfterMs` is stuck: members down or cut off, or members that lost their data. A member
// that lost its data votes for no one until a leader has caught it up (DESIGN.md, "A node that
// lost its data"), so a cluster whose majority lost its data waits for ever, safely, and only
// an operator can end it: with a backup, or with one made from a surviving member's data
// directory (`flotilla snapshot save --data-dir`). Nothing here acts; it only explains.

import type { Logger } from 'pino';
import type { Clock } from '../host/contracts.js';
import type { Recovery } from '../raft/index.js';
import { Periodic } from './periodic.js';

/** What the watch reads of the key-value group on this node. */
export interface LeaderlessStatus {
  readonly id: number;
  readonly leader: number;
  readonly recovery: Recovery;
  readonly voters: readonly number[];
}

export interface LeaderlessWatchOptions {
  readonly clock: Clock;
  readonly log: Logger;
  readonly status: () => LeaderlessStatus;
  /**
   * Messages this node has received from peer `id` since it started: a peer whose count moved
   * lately is heard from. An open connection is not enough: a frozen process, or a network
   * that drops packets, keeps one open and says nothing.
   */
  readonly received: (id: number) => number;
  /** How recently a peer must have been heard from to count (default 10 s). */
  readonly heardWithinMs?: number;
  /** How long without a leader before it is said (default 30 s). */
  readonly warnAfterMs?: number;
  /** How often it is said again while it lasts (default 60 s). */
  readonly repeatEveryMs?: number;
  readonly checkEveryMs?: number;
}

const RESTORE_HINT =
  'restore the cluster from a backup, or save one from the data directory of a member that kept its data ' +
  '(stopped first: flotilla snapshot save FILE --data-dir DIR) and restore that (docs/PRODUCTION.md, "Backups")';

/** Why a node may know no leader after `forMs`, as a person can act on it. */
export function leaderlessReason(
  s: LeaderlessStatus,
  heard: (id: number) => boolean,
  forMs: number,
): string {
  const secs = `no leader for ${Math.round(forMs / 1_000)} s`;
  if (s.recovery === 'recovering')
    return (
      `${secs} while this node recovers lost data: only a leader can catch it up, and a leader needs the votes ` +
      'of a majority of the voters, which members that lost their data do not give until caught up. ' +
      `If a majority of the members lost their data, none can be elected: ${RESTORE_HINT}`
    );
  if (!s.voters.includes(s.id))
    return `${secs}: this node is not a voter and waits for the voters (${s.voters.join(',')}) to elect one`;
  const majority = Math.floor(s.voters.length / 2) + 1;
  const reached = s.voters.filter((v) => v === s.id || heard(v));
  const unreached = s.voters.filter((v) => !reached.includes(v));
  if (reached.length < majority)
    return (
      `${secs}: a leader needs ${majority} of the voters ${s.voters.join(',')}, and this node hears from ` +
      `${reached.length} (itself${reached.length > 1 ? `, ${reached.filter((v) => v !== s.id).join(',')}` : ''}); ` +
      `${unreached.join(',')} ${unreached.length === 1 ? 'is' : 'are'} down, frozen or cut off from it: ` +
      'bring them back (nothing is lost while they are away)'
    );
  return (
    `${secs}, though this node hears from a majority of the voters (${reached.join(',')} of ${s.voters.join(',')}): ` +
    'members that lost their data vote for no one until a leader has caught them up (their logs say "this node lost its data"). ' +
    `If a majority of the members lost their data, none can be elected: ${RESTORE_HINT}`
  );
}

export class LeaderlessWatch {
  private readonly periodic: Periodic;
  private since: number | null = null;
  private saidAt: number | null = null;
  private readonly warnAfterMs: number;
  private readonly repeatEveryMs: number;
  private readonly heardWithinMs: number;
  /** Each peer's received count at the last check, and when it last moved. */
  private readonly counts = new Map<number, { count: number; movedAtMs: number | null }>();

  constructor(private readonly o: LeaderlessWatchOptions) {
    this.warnAfterMs = o.warnAfterMs ?? 30_000;
    this.repeatEveryMs = o.repeatEveryMs ?? 60_000;
    this.heardWithinMs = o.heardWithinMs ?? 10_000;
    this.periodic = new Periodic(o.clock, o.checkEveryMs ?? 1_000, () => this.check());
  }

  start(): void {
    this.periodic.start();
  }

  stop(): void {
    this.periodic.stop();
  }

  /** How long this node has known no leader, as of its last check (0 while it knows one). */
  leaderlessMs(): number {
    if (this.o.status().leader !== 0 || this.since === null) return 0;
    return this.o.clock.nowMs() - this.since;
  }

  /** The reason /readyz gives once no leader has been known for `warnAfterMs`; else null. */
  reason(): string | null {
    const s = this.o.status();
    if (s.leader !== 0 || this.since === null) return null;
    const forMs = this.o.clock.nowMs() - this.since;
    return forMs >= this.warnAfterMs ? leaderlessReason(s, this.heard, forMs) : null;
  }

  /**
   * Whether voter `id` of the key-value group sent this node anything in the last
   * `heardWithinMs`, as of the last check (about a second ago): the transport's view, which a
   * leader elected a moment ago has before its own replication progress has heard from anyone.
   */
  heardFrom(id: number): boolean {
    return this.heard(id);
  }

  private readonly heard = (id: number): boolean => {
    const moved = this.counts.get(id)?.movedAtMs ?? null;
    return moved !== null && this.o.clock.nowMs() - moved <= this.heardWithinMs;
  };

  /** Notes which voters' received counts moved since the last check. */
  private sample(voters: readonly number[], now: number): void {
    for (const id of voters) {
      const count = this.o.received(id);
      const was = this.counts.get(id);
      if (was === undefined) this.counts.set(id, { count, movedAtMs: count > 0 ? now : null });
      else if (count !== was.count) this.counts.set(id, { count, movedAtMs: now });
    }
  }

  check(): void {
    const s = this.o.status();
    const now = this.o.clock.nowMs();
    this.sample(s.voters, now);
    if (s.leader !== 0) {
      if (this.saidAt !== null && this.since !== null)
        this.o.log.info(
          { leader: s.leader, leaderlessMs: now - this.since },
          `leader ${s.leader} known again after ${Math.round((now - this.since) / 1_000)} s without one`,
        );
      this.since = null;
      this.saidAt = null;
      return;
    }
    this.since ??= now;
    const forMs = now - this.since;
    if (forMs < this.warnAfterMs) return;
    if (this.saidAt !== null && now - this.saidAt < this.repeatEveryMs) return;
    this.saidAt = now;
    this.o.log.error(
      { leaderlessMs: forMs, recovery: s.recovery, voters: s.voters },
      leaderlessReason(s, this.heard, forMs),
    );
  }
}
