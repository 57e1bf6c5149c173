// Membership changes of a node's cluster (DESIGN.md, "Membership"): adding, promoting and
// removing members in both Raft groups, the address book every node's transport and forwarder
// use, and the periodic work that keeps the other groups' membership (the queue group's, the
// meta group's) following the key-value group's and promotes joined learners once caught up.
//
// The key-value group (0) is the authority: the API changes its configuration and the member
// directory (its replicated address book, host/directory.ts). The queue group (1) follows: the
// node that leads it makes its configuration match group 0's, one change at a time (a member
// is added to it as a learner and promoted once caught up). So a change that applied in group
// 0 and not yet in group 1 (its leader was being elected, say) is finished by the next check
// rather than left half done, and a retry of the request is never needed for group 1. Every
// other group every member runs (the meta group, 2) follows group 0 the same way.

import type { Logger } from 'pino';
import { FlotillaError } from '../base/errors.js';
import type { Clock } from '../host/contracts.js';
import {
  encodeDirectoryChange,
  isDirectoryRefusal,
  type DirectoryChange,
  type MemberDirectory,
} from '../host/directory.js';
import { KIND_DIRECTORY, encodeEnvelope } from '../host/envelope.js';
import type { RaftRuntime } from '../host/runtime.js';
import type { ConfChangeSingle, ConfState } from '../raft/index.js';
import type { Member } from './config.js';
import type {
  GroupMembership,
  MemberReplication,
  MemberRole,
  MemberView,
  SnapshotTransfer,
  MembersResponse as MembersAnswer,
} from '../api/types.js';
import { Periodic } from './periodic.js';
import { samePeerAddress } from '../transport/peer.js';

export interface MembershipOptions {
  readonly selfId: number;
  /** The members the cluster was bootstrapped with (config or the join answer). */
  readonly bootstrap: readonly Member[];
  readonly kv: RaftRuntime;
  readonly queue: RaftRuntime;
  /** More groups that follow the key-value group's membership as the queue group does. */
  readonly followers?: readonly FollowerGroup[];
  readonly directory: MemberDirectory;
  readonly clock: Clock;
  readonly learnerPromoteLagEntries: number;
  readonly checkEveryMs: number;
  /** How long a change waits for the queue group to follow before it answers anyway. */
  readonly followWaitMs: number;
  /** Tells a removed member it was removed (best effort; it may be gone). */
  readonly notifyRemoved: (m: Member) => Promise<void>;
  /** Called after the address book may have changed. */
  readonly onBookChanged: () => void;
  /** Called (once per check) when this node was removed and its removal is in force. */
  readonly onSelfRemoved: () => void;
  /**
   * The snapshot transfer in progress to a member of the key-value group, for status and
   * metrics; absent or null: only that one is being sent is known.
   */
  readonly snapshotTransfer?: (peer: number) => SnapshotTransfer | null;
  /**
   * The ranges split off range 0 that hold a replica on member `id` (the range map as this
   * node applied it); absent: none. A member holding some is removed only with `force`.
   */
  readonly holdsRanges?: (id: number) => readonly number[];
  /**
   * Whether member `id` sent this node anything lately (the transport's view); with the
   * leader's replication progress, it says which members a change may count on as live.
   */
  readonly heardFrom?: (id: number) => boolean;
  readonly log: Logger;
}

/** A group whose membership follows the key-value group's. */
export interface FollowerGroup {
  readonly group: number;
  /** For logs: "queue", "meta". */
  readonly name: string;
  readonly runtime: RaftRuntime;
}

export class Membership {
  private readonly periodic: Periodic;
  private checking = false;
  /**
   * The addresses of every member this node has seen in the book. A removal takes a member
   * out of the directory at once, before the configuration changes that remove it commit, and
   * a member that joined is in no other list: without these, its peers dropped it as soon as
   * the removal began, and a removed leader lost its followers before it could commit its own
   * removal (it stepped down on check-quorum, the removal answered LEADERSHIP_LOST).
   */
  private readonly seen = new Map<number, Member>();
  /** The queue group first, then the other followers. */
  private readonly followers: readonly FollowerGroup[];

  constructor(private readonly o: MembershipOptions) {
    this.followers = [{ group: 1, name: 'queue', runtime: o.queue }, ...(o.followers ?? [])];
    this.periodic = new Periodic(o.clock, o.checkEveryMs, () => void this.check());
  }

  start(): void {
    this.periodic.start();
  }

  stop(): void {
    this.periodic.stop();
  }

  /**
   * The members removed from the cluster, each with the last client URL this node knew it at
   * (seen in its book, or bootstrapped with it), or null: a removal takes the address out of
   * the directory, so a member added and removed before this node last started is unknown.
   */
  removedMembers(): { id: number; client: string | null }[] {
    return this.o.directory.removed().map((id) => ({
      id,
      client: (this.seen.get(id) ?? this.o.bootstrap.find((m) => m.id === id))?.client ?? null,
    }));
  }

  /** Every member's addresses: the bootstrap ones, then the directory's, which override them. */
  book(): Member[] {
    const byId = new Map<number, Member>(this.o.bootstrap.map((m) => [m.id, m]));
    for (const m of this.o.directory.list())
      byId.set(m.id, { id: m.id, peer: m.peer, client: m.client });
    return [...byId.values()].sort((a, b) => a.id - b.id);
  }

  /**
   * The members a node talks to: every one in the book except those removed and out of every
   * group's configuration (a removed member stays reachable until its removal took effect).
   */
  reachable(): Member[] {
    const inConf = this.inAnyConf();
    return this.known(inConf).filter((m) => !this.o.directory.isRemoved(m.id) || inConf.has(m.id));
  }

  /** The ids in the configuration of the key-value group or of any group this node follows. */
  private inAnyConf(): Set<number> {
    return new Set(
      [0, ...this.followers.map((f) => f.group)].flatMap((g) => [...confMembers(this.conf(g))]),
    );
  }

  /** The book, and the members this node has seen that left it but are in a configuration. */
  private known(inConf: ReadonlySet<number>): Member[] {
    const book = this.book();
    for (const m of book) this.seen.set(m.id, m);
    const departing = [...this.seen.values()].filter(
      (m) => inConf.has(m.id) && !book.some((b) => b.id === m.id),
    );
    return [...book, ...departing].sort((a, b) => a.id - b.id);
  }

  list(): MembersAnswer {
    const kvStatus = this.o.kv.status();
    const c0 = this.conf(0);
    const c1 = this.conf(1);
    const members = this.known(this.inAnyConf())
      .filter((m) => confMembers(c0).has(m.id) || !this.outOfFollowers(m.id))
      .map((m): MemberView => {
        const p = kvStatus.progress[m.id];
        const rep =
          p === undefined
            ? {}
            : {
                match: p.match,
                // The leader's own match is its durable index: a write of its own in flight
                // is no lag behind itself (it showed as LAG 1 under load).
                lag: m.id === this.o.selfId ? 0 : Math.max(0, kvStatus.lastIndex - p.match),
                replication: p.state,
              };
        return {
          ...m,
          role: roleIn(c0, m.id),
          queueRole: roleIn(c1, m.id),
          autoPromote: this.o.directory.get(m.id)?.autoPromote ?? false,
          ...rep,
        };
      });
    return {
      memberId: this.o.selfId,
      leader: this.o.kv.leaderId(),
      groups: [
        groupView(0, c0),
        ...this.followers.map((f) => groupView(f.group, this.conf(f.group))),
      ],
      members,
      removed: this.o.directory.removed(),
      queueGroupFollows: this.followDone(),
    };
  }

  /** Each other member's replication in the key-value group; empty unless this node leads. */
  replication(): MemberReplication[] {
    const s = this.o.kv.status();
    return Object.entries(s.progress)
      .map(([key, p]) => ({ id: Number(key), p }))
      .filter(({ id }) => id !== this.o.selfId)
      .map(({ id, p }) => ({
        id,
        learner: p.learner,
        match: p.match,
        lag: Math.max(0, s.lastIndex - p.match),
        state: p.state,
        snapshot: p.state === 'snapshot' ? (this.o.snapshotTransfer?.(id) ?? {}) : null,
      }));
  }

  /**
   * Adds a member to the key-value group (a voter, or a learner), having recorded its addresses
   * in the directory first so that every node can reach it once it is a member, then waits a
   * while for the queue group to follow. Must run on the key-value group's leader.
   */
  async add(
    m: Member,
    o: { learner: boolean; autoPromote: boolean; signal: AbortSignal },
  ): Promise<MembersAnswer> {
    this.checkAddable(m);
    const role = roleIn(this.conf(0), m.id);
    const known = this.book().find((b) => b.id === m.id);
    const sameAddresses = known?.peer === m.peer && known.client === m.client;
    // A join retried after its first attempt applied (the answer was lost) finds itself added,
    // and so does an add retried so: the client's attempt timed out while the request waited
    // for the queue group, and its retry was refused as if the add had failed.
    if (o.autoPromote && role !== 'none' && sameAddresses) return this.list();
    if (role === (o.learner ? 'learner' : 'voter') && sameAddresses) return this.list();
    if (role !== 'none')
      throw new FlotillaError(
        'MEMBERSHIP_ALREADY_MEMBER',
        `Node ${m.id} is already a ${role} (at ${known?.peer ?? 'an unknown address'})`,
      );
    if (!o.learner) this.checkQuorumAfter([...this.conf(0).voters, m.id], `adding voter ${m.id}`);
    await this.changeDirectory({ op: 'set', member: { ...m, autoPromote: o.autoPromote } }, o);
    await this.o.kv.proposeConfChange(
      { changes: [{ kind: o.learner ? 'add-learner' : 'add-voter', node: m.id }] },
      { signal: o.signal },
    );
    this.o.onBookChanged();
    this.o.log.info({ member: m.id, learner: o.learner }, `member ${m.id} added`);
    return this.afterChange(o.signal);
  }

  /**
   * Makes a learner of the key-value group a voter, once caught up as the automatic promotion
   * requires: a voter that is down or far behind counts toward every quorum at once, so a
   * cluster of three that promoted a learner never started would stop at its next failure.
   */
  async promote(id: number, signal: AbortSignal): Promise<MembersAnswer> {
    const role = roleIn(this.conf(0), id);
    if (role === 'none')
      throw new FlotillaError('MEMBERSHIP_UNKNOWN_MEMBER', `Node ${id} is not a member`);
    if (role === 'learner' && !this.caughtUp(this.o.kv, id)) {
      const s = this.o.kv.status();
      const p = s.progress[id];
      const seen =
        p === undefined || p.match === 0
          ? 'the leader has not heard from it (is it started, with flotilla start --join?)'
          : `its log is at ${p.match}, ${s.lastIndex - p.match} entries behind the leader's`;
      throw new FlotillaError(
        'MEMBERSHIP_LEARNER_BEHIND',
        `Cannot promote learner ${id}: ${seen}; it may vote once within ${this.o.learnerPromoteLagEntries} entries. Retry when member list shows it caught up`,
      );
    }
    if (role === 'learner')
      this.checkQuorumAfter([...this.conf(0).voters, id], `promoting learner ${id}`);
    await this.o.kv.proposeConfChange({ changes: [{ kind: 'add-voter', node: id }] }, { signal });
    this.o.log.info({ member: id }, `member ${id} promoted to voter`);
    return this.afterChange(signal);
  }

  /**
   * Removes a member: marks its id removed in the directory (so it can never come back under
   * it, and so it refuses to start again once it learns), then removes it from the key-value
   * group; the queue group follows. The mark comes first because a leader that removes itself
   * leads no more once the removal applied.
   *
   * A member that still holds replicas of ranges split off range 0 is refused
   * (MEMBER_HOLDS_RANGES): its ranges would be a replica short until moved, and a range of
   * three on it and on one more failed node would lose its quorum. It is drained first; `force`
   * removes it anyway (it is gone for good) and the placement loop then re-replicates.
   */
  async remove(
    id: number,
    signal: AbortSignal,
    o: { readonly force?: boolean } = {},
  ): Promise<MembersAnswer> {
    if (roleIn(this.conf(0), id) === 'none') {
      // A retry of a removal that took effect finds it done: its answer may have been lost
      // (a leader that removes itself stops answering, and the client tries another node).
      if (this.o.directory.isRemoved(id)) return this.list();
      throw new FlotillaError('MEMBERSHIP_UNKNOWN_MEMBER', `Node ${id} is not a member`);
    }
    const c = this.conf(0);
    if (c.voters.length === 1 && c.voters[0] === id)
      throw new FlotillaError(
        'MEMBERSHIP_NO_VOTERS',
        `Node ${id} is the only voter: removing it would leave the cluster without one`,
      );
    const held = this.o.holdsRanges?.(id) ?? [];
    if (held.length > 0 && o.force !== true) {
      const shown = held.slice(0, 10).join(', ') + (held.length > 10 ? ', ...' : '');
      throw new FlotillaError(
        'MEMBER_HOLDS_RANGES',
        `Node ${id} still holds replicas of ${held.length} range(s) (${shown}): drain it first ` +
          `(flotilla node drain ${id}) and remove it once it holds none, or remove it with ` +
          'force if it is gone for good (its ranges are then re-replicated elsewhere)',
      );
    }
    if (held.length > 0)
      this.o.log.warn(
        { member: id, ranges: held.length },
        `member ${id} removed by force while holding replicas of ${held.length} range(s)`,
      );
    if (c.voters.includes(id))
      this.checkQuorumAfter(
        c.voters.filter((v) => v !== id),
        `removing voter ${id}`,
        o.force === true,
      );
    const member = this.book().find((m) => m.id === id);
    await this.changeDirectory({ op: 'remove', id }, { signal });
    await this.o.kv.proposeConfChange({ changes: [{ kind: 'remove', node: id }] }, { signal });
    this.o.log.warn({ member: id }, `member ${id} removed`);
    const answer = await this.afterChange(signal);
    // Told only once the following groups removed it too: stopped before, it would leave one
    // a voter short (and without a quorum if another was down). If one has not followed yet,
    // the member learns when its peers drop it and refuse its handshakes.
    if (member !== undefined && id !== this.o.selfId && this.outOfFollowers(id))
      this.o
        .notifyRemoved(member)
        .catch((err: unknown) =>
          this.o.log.warn(
            { member: id, err: (err as Error).message },
            'could not tell the removed member; it learns at its next contact or refuses at restart',
          ),
        );
    return answer;
  }

  /**
   * Refuses a change whose voters (`voters`, as it leaves them) would not hold a quorum of
   * members this leader heard from within an election timeout, itself included when it stays
   * a voter (etcd's strict reconfiguration check): the group would stop at once, until the
   * silent ones came back. A voter added before its node runs is silent. With `force` the
   * change goes ahead, logged: a removal of members gone for good.
   */
  private checkQuorumAfter(voters: readonly number[], change: string, force = false): void {
    const progress = this.o.kv.status().progress;
    // Either view will do: a leader elected a moment ago has heard from no one yet in its
    // replication progress, while the transport heard the votes that elected it.
    const heard = voters.filter(
      (v) =>
        v === this.o.selfId ||
        progress[v]?.heardRecently === true ||
        this.o.heardFrom?.(v) === true,
    );
    const quorum = Math.floor(voters.length / 2) + 1;
    if (heard.length >= quorum) return;
    const silent = voters.filter((v) => !heard.includes(v));
    const why =
      `${change} leaves voters ${voters.join(', ')}, and the leader heard lately from ` +
      `${heard.length === 0 ? 'none of them' : heard.join(', ')}: ${heard.length} of the ` +
      `${quorum} a quorum needs (silent: ${silent.join(', ')})`;
    if (force) {
      this.o.log.warn({ voters, silent }, `by force: ${why}`);
      return;
    }
    throw new FlotillaError(
      'MEMBERSHIP_QUORUM_AT_RISK',
      `${why}. Nothing could be written until they answer: bring them back first, ` +
        'add a learner rather than a voter, or remove with force a member gone for good',
    );
  }

  /**
   * Records the bootstrap members' addresses in the directory, where they are missing: a node
   * that joins knows the others from the replicated directory alone (its own configuration
   * names only itself), also after a restart.
   */
  async seedDirectory(signal: AbortSignal): Promise<void> {
    for (const m of this.o.bootstrap) {
      if (this.o.directory.get(m.id) !== undefined || this.o.directory.isRemoved(m.id)) continue;
      await this.changeDirectory({ op: 'set', member: { ...m, autoPromote: false } }, { signal });
    }
  }

  private checkAddable(m: Member): void {
    if (this.o.directory.isRemoved(m.id))
      throw new FlotillaError(
        'MEMBER_REMOVED',
        `Member ${m.id} was removed from the cluster; its id cannot be used again: give the node a new id`,
      );
    const live = this.reachable();
    const clash = live.find((b) => b.id !== m.id && (b.peer === m.peer || b.client === m.client));
    if (clash !== undefined)
      throw new FlotillaError(
        'MEMBERSHIP_INVALID',
        `Member ${clash.id} already uses ${clash.peer === m.peer ? `peer address ${m.peer}` : `client URL ${m.client}`}`,
      );
  }

  private async changeDirectory(c: DirectoryChange, o: { signal?: AbortSignal }): Promise<void> {
    const data = encodeEnvelope({
      kind: KIND_DIRECTORY,
      client: '',
      seq: 0,
      timeMs: this.o.clock.nowMs(),
      payload: encodeDirectoryChange(c),
    });
    const r = await this.o.kv.propose(data, o.signal === undefined ? {} : { signal: o.signal });
    if (isDirectoryRefusal(r))
      throw new FlotillaError(r.refused === 'MEMBER_REMOVED' ? r.refused : 'INTERNAL', r.message);
  }

  /** Runs the follower check now, then waits a while for the queue group to follow. */
  private async afterChange(signal: AbortSignal): Promise<MembersAnswer> {
    const until = this.o.clock.nowMs() + this.o.followWaitMs;
    while (!this.followDone() && this.o.clock.nowMs() < until && !signal.aborted) {
      await this.check();
      await new Promise((resolve) => this.o.clock.setTimeout(() => resolve(undefined), 50));
    }
    return this.list();
  }

  private conf(group: number): ConfState {
    if (group === 0) return this.o.kv.status().conf;
    const f = this.followers.find((x) => x.group === group);
    if (f === undefined) throw new Error(`Group ${group} does not follow the key-value group`);
    return f.runtime.status().conf;
  }

  /**
   * Why a group that follows the key-value group's membership does not serve through member
   * `self` yet (`/readyz`): it has the member in another role than the key-value group does
   * (its change follows a few checks later), knows no leader, holds no log, or trails its
   * commit by more than `applyLag`. Null: every such group serves through it.
   */
  followerNotReady(self: number, applyLag: number): string | null {
    const role0 = roleIn(this.conf(0), self);
    for (const f of this.followers) {
      const s = f.runtime.status();
      const role = roleIn(s.conf, self);
      if (role !== role0)
        return `the ${f.name} group has this member as ${roleName(role)}, the key-value group as ${roleName(role0)}: it follows once the member caught up in that group`;
      if (role === 'none') continue;
      if (s.recovery === 'recovering')
        return `the ${f.name} group is recovering lost data: holds ${s.lastIndex} entries, commit ${s.commit}`;
      if (s.leader === 0) return `the ${f.name} group knows no leader`;
      if (s.lastIndex === 0) return `waiting for the ${f.name} group's log from leader ${s.leader}`;
      const applied = f.runtime.appliedIndex();
      if (applied + applyLag < s.commit)
        return `applying the ${f.name} group: ${applied} of ${s.commit}`;
    }
    return null;
  }

  /** Whether member `id` is in no following group's configuration. */
  private outOfFollowers(id: number): boolean {
    return this.followers.every((f) => roleIn(this.conf(f.group), id) === 'none');
  }

  /** Whether every following group has every member of the key-value group in the same role. */
  private followDone(): boolean {
    const c0 = this.conf(0);
    return this.followers.every((f) => {
      const c1 = this.conf(f.group);
      const ids = new Set([...confMembers(c0), ...confMembers(c1)]);
      return [...ids].every((id) => roleIn(c0, id) === roleIn(c1, id));
    });
  }

  /** The address mismatch last logged (ownAddressMismatch), so it is said once. */
  private addressesSaid: string | null = null;

  /**
   * What is wrong when the cluster's directory records this node at other addresses than its
   * configuration gives it (restarted with a changed --initial-cluster entry or --advertise-*):
   * the members send to the recorded ones, so it hears nothing at the new ones. Null: they agree
   * (or either is not known yet).
   */
  ownAddressMismatch(): string | null {
    const self = this.o.selfId;
    const own = this.o.bootstrap.find((m) => m.id === self);
    const rec = this.o.directory.get(self);
    if (own === undefined || rec === undefined) return null;
    if (samePeerAddress(own.peer, rec.peer) && sameUrl(own.client, rec.client)) return null;
    return (
      `the cluster records node ${self} at peer ${rec.peer}, client ${rec.client}, but it was ` +
      `started at peer ${own.peer}, client ${own.client}: the members send to the recorded ` +
      'addresses, so it may hear nothing here. Start it with the recorded addresses; to move a ' +
      'member, add a new one at the new addresses (flotilla member add, then start it with ' +
      '--join) and remove this one (flotilla member remove ID)'
    );
  }

  /** The periodic work: promote caught-up joined learners, make the queue group follow. */
  async check(): Promise<void> {
    if (this.checking) return;
    this.checking = true;
    try {
      const self = this.o.selfId;
      const moved = this.ownAddressMismatch();
      if (moved !== this.addressesSaid) {
        this.addressesSaid = moved;
        if (moved !== null) this.o.log.error({ member: self }, moved);
      }
      // Out of every group: stopping while a following group still counts it would leave that
      // group a voter short.
      if (
        this.o.directory.isRemoved(self) &&
        roleIn(this.conf(0), self) === 'none' &&
        this.outOfFollowers(self)
      )
        this.o.onSelfRemoved();
      // Every node, not only the one that made a change: once a removed member is out of both
      // groups its peers drop it and refuse its handshakes, which is how it learns it was
      // removed when it never applied its removal and the leader's notice did not reach it.
      this.o.onBookChanged();
      if (this.o.kv.isLeader()) await this.finishRemovals();
      if (this.o.kv.isLeader()) await this.promoteCaughtUp();
      if (this.o.kv.isLeader()) await this.markVotersHoldingLogs();
      for (const f of this.followers) if (f.runtime.isLeader()) await this.followIn(f);
    } catch (err) {
      this.o.log.debug({ err: (err as Error).message }, 'membership check failed; will retry');
    } finally {
      this.checking = false;
    }
  }

  /**
   * Whether the leader of `rt`'s group has heard from `id` and its log is within the lag
   * allowed. A learner whose node is not running yet has match 0, which a young log's last
   * index minus the lag would not tell from caught up: it must have answered an append
   * (replicate state, match above 0) first, or it would vote before it can.
   */
  private caughtUp(rt: RaftRuntime, id: number): boolean {
    const s = rt.status();
    const p = s.progress[id];
    return (
      p !== undefined &&
      p.state === 'replicate' &&
      p.match > 0 &&
      p.match >= s.lastIndex - this.o.learnerPromoteLagEntries
    );
  }

  /**
   * A removal is two entries: the directory's mark, then the configuration change. One whose
   * second step never happened (its leader died between them, the request gave up) leaves a
   * member marked removed, which refuses to start again, still a voter: finished here, one
   * change at a time, as the operator asked (chaos seed 701 lost a voter that way for good).
   */
  private async finishRemovals(): Promise<void> {
    const c = this.conf(0);
    if (c.outgoing.length > 0) return;
    for (const id of this.o.directory.removed()) {
      if (roleIn(c, id) === 'none') continue;
      if (c.voters.length === 1 && c.voters[0] === id) continue;
      this.o.log.warn(
        { member: id },
        `member ${id} is marked removed but still in the configuration: finishing its removal`,
      );
      await this.o.kv.proposeConfChange({ changes: [{ kind: 'remove', node: id }] });
      return;
    }
  }

  /**
   * Records, for each voter the leader has heard acknowledge an entry, that it holds a log, so
   * that a join under its id comes from a member that lost it (member-node.ts, `recover`). The
   * mark is the directory's `autoPromote`, which a member that joined with `--join` has
   * already and which on a voter promotes nothing: set here for a learner promoted by hand and
   * for a voter added with `member add` once it ran. Judged by the leader's own view rather
   * than at a join or a promotion: a join retried after its answer was lost must not make a
   * voter that never ran recover, and a promotion retried after its first attempt applied
   * would have left the mark unset. One change at a time, as the other checks.
   */
  private async markVotersHoldingLogs(): Promise<void> {
    const progress = this.o.kv.status().progress;
    for (const id of this.conf(0).voters) {
      const d = this.o.directory.get(id);
      if (d === undefined || d.autoPromote || this.o.directory.isRemoved(id)) continue;
      if ((progress[id]?.match ?? 0) === 0) continue;
      await this.changeDirectory({ op: 'set', member: { ...d, autoPromote: true } }, {});
      this.o.log.info({ member: id }, `member ${id} holds a log: it recovers if it loses it`);
      return;
    }
  }

  private async promoteCaughtUp(): Promise<void> {
    const c = this.conf(0);
    if (c.outgoing.length > 0) return;
    for (const id of c.learners) {
      const d = this.o.directory.get(id);
      if (d?.autoPromote !== true || this.o.directory.isRemoved(id)) continue;
      if (!this.caughtUp(this.o.kv, id)) continue;
      await this.o.kv.proposeConfChange({ changes: [{ kind: 'add-voter', node: id }] });
      this.o.log.info({ member: id }, `learner ${id} caught up: promoted to voter`);
      return;
    }
  }

  /** One change that brings a following group's configuration closer to the key-value group's. */
  private async followIn(f: FollowerGroup): Promise<void> {
    const c0 = this.conf(0);
    const c1 = this.conf(f.group);
    if (c1.outgoing.length > 0) return;
    const change = nextFollowChange(c0, c1, (id) => this.caughtUp(f.runtime, id));
    if (change === null) return;
    // A node whose view of group 0 is behind must not add back a member removed meanwhile.
    if (change.kind !== 'remove' && this.o.directory.isRemoved(change.node)) return;
    await f.runtime.proposeConfChange({ changes: [change] });
    this.o.onBookChanged();
    this.o.log.info(
      { group: f.group, member: change.node, change: change.kind },
      `${f.name} group follows: ${change.kind} ${change.node}`,
    );
  }
}

/**
 * The next single change that makes `c1` follow `c0`, or null when it does: remove a member
 * `c0` no longer has, add a new one as a learner, promote a voter of `c0` that is a learner in
 * `c1` once `caughtUp`, demote a learner of `c0` that votes in `c1`. Removals first, so the
 * group never grows past the size the operator chose.
 */
export function nextFollowChange(
  c0: ConfState,
  c1: ConfState,
  caughtUp: (id: number) => boolean,
): ConfChangeSingle | null {
  const m0 = confMembers(c0);
  const m1 = confMembers(c1);
  for (const id of m1) if (!m0.has(id)) return { kind: 'remove', node: id };
  for (const id of m0) if (!m1.has(id)) return { kind: 'add-learner', node: id };
  for (const id of m0) {
    const want = roleIn(c0, id);
    const have = roleIn(c1, id);
    if (want === 'voter' && have === 'learner' && caughtUp(id))
      return { kind: 'add-voter', node: id };
    if (want === 'learner' && have === 'voter') return { kind: 'add-learner', node: id };
  }
  return null;
}

function confMembers(c: ConfState): Set<number> {
  return new Set([...c.voters, ...c.outgoing, ...c.learners]);
}

function roleIn(c: ConfState, id: number): MemberRole {
  if (c.voters.includes(id) || c.outgoing.includes(id)) return 'voter';
  if (c.learners.includes(id)) return 'learner';
  return 'none';
}

function roleName(r: MemberRole): string {
  return r === 'none' ? 'no member' : `a ${r}`;
}

function groupView(group: number, c: ConfState): GroupMembership {
  return { group, voters: c.voters, learners: c.learners, outgoing: c.outgoing };
}

/** Whether two URLs name one endpoint (case of the host, a trailing slash aside). */
function sameUrl(a: string, b: string): boolean {
  const norm = (x: string): string => {
    try {
      return new URL(x).href.replace(/\/$/, '');
    } catch {
      return x;
    }
  };
  return norm(a) === norm(b);
}
