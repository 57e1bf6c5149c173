// A node's side of membership (DESIGN.md, "Membership"): its address book, which the transport
// and the forwarders follow; what it does when it learns it was removed (mark the data
// directory, stop); how it finds out when no one told it; and the backend of the membership
// routes. The changes themselves and the periodic checks are membership.ts's.

import type { Logger } from 'pino';
import type { Pool } from 'undici';
import { Deadline } from '../api/deadline.js';
import { toFlotillaError } from '../api/errors.js';
import type { MemberBackend } from '../api/member-routes.js';
import { FlotillaError } from '../base/errors.js';
import type { Clock } from '../host/contracts.js';
import type { RaftRuntime } from '../host/runtime.js';
import { successors } from '../raft/index.js';
import type { SessionMachine } from '../host/sessions.js';
import type { TcpTransport } from '../transport/index.js';
import type { Member, NodeConfig } from './config.js';
import { writeIdentity, type DataDirIdentity } from './data-dir.js';
import { Membership, type FollowerGroup } from './membership.js';
import { parseHostPort, splitHostPort } from '../base/host-port.js';
import { memberAuthHeaders } from './auth-tokens.js';

/**
 * At most this many members learned (from handshakes and peers' lists) that this node's own
 * directory does not name. The peer port authenticates no one, so a stream of handshakes in
 * invented names must not grow the address book without bound: past the cap the member
 * learned longest ago is forgotten (its peer dropped), which costs a real newcomer at most a
 * refused handshake and a fresh question about the membership.
 */
export const MAX_LEARNED_MEMBERS = 32;

export interface NodeMembersOptions {
  readonly config: NodeConfig;
  readonly identity: Omit<DataDirIdentity, 'format' | 'recovery'>;
  readonly runtime: RaftRuntime;
  readonly queueRuntime: RaftRuntime;
  /** The groups besides the queue group whose membership follows the key-value group's. */
  readonly followers?: readonly FollowerGroup[];
  readonly kvSessions: SessionMachine;
  readonly transport: TcpTransport;
  readonly pool: (url: string) => Pool;
  /** Forwards a request to the key-value group's leader (null: handle it here). */
  readonly forward: MemberBackend['forward'];
  readonly log: Logger;
  readonly clock: Clock;
  readonly isClosing: () => boolean;
  /** Stops the node (it was removed). */
  readonly stop: () => void;
  /** The ranges split off range 0 with a replica on member `id` (membership.ts). */
  readonly holdsRanges?: (id: number) => readonly number[];
  /** Whether member `id` sent this node anything lately (membership.ts, `heardFrom`). */
  readonly heardFrom?: (id: number) => boolean;
}

interface PeerMemberList {
  readonly removed: readonly number[];
  readonly members: readonly Member[];
  /** Every id in any group's configuration (voters, learners, outgoing voters). */
  readonly inGroups: readonly number[];
}

/** One member of a peer's list, or nothing when any address is missing or malformed. */
function asMember(v: unknown): Member[] {
  if (typeof v !== 'object' || v === null) return [];
  const { id, peer, client } = v as Record<string, unknown>;
  if (typeof id !== 'number' || !Number.isSafeInteger(id) || id <= 0) return [];
  if (typeof peer !== 'string' || typeof client !== 'string') return [];
  if (parseHostPort(peer, 1) === null) return [];
  if (!URL.canParse(client)) return [];
  return [{ id, peer, client }];
}

export class NodeMembers {
  /**
   * Every member's addresses (membership.ts, `reachable`), kept current in place: the
   * forwarders and the status read this array.
   */
  readonly book: Member[];
  readonly membership: Membership;
  private removalHandled = false;
  private lastAskMs = -Infinity;
  /** Which peer the next question about the membership goes to: each in turn. */
  private askTurn = 0;
  /**
   * Members a peer's member list named that this node's own directory does not (yet): a node
   * whose directory is behind (wiped, or down while members joined) would otherwise refuse
   * their handshakes, and so never hear from a leader among them.
   */
  private readonly learned = new Map<number, Member>();

  constructor(private readonly o: NodeMembersOptions) {
    const { config, log } = o;
    this.book = [...config.members];
    this.membership = new Membership({
      selfId: config.id,
      bootstrap: config.members,
      kv: o.runtime,
      queue: o.queueRuntime,
      ...(o.followers === undefined ? {} : { followers: o.followers }),
      ...(o.holdsRanges === undefined ? {} : { holdsRanges: o.holdsRanges }),
      ...(o.heardFrom === undefined ? {} : { heardFrom: o.heardFrom }),
      directory: o.kvSessions.directory,
      clock: o.clock,
      learnerPromoteLagEntries: config.learnerPromoteLagEntries,
      checkEveryMs: 500,
      followWaitMs: config.requestTimeoutMs,
      // The key-value group's transfer to `peer`, as its replication line shows it.
      snapshotTransfer: (peer) => {
        const t = o.runtime
          .snapshotTransfers()
          .find((x) => x.direction === 'send' && x.peer === peer);
        return t === undefined
          ? null
          : {
              index: t.index,
              bytesSent: t.bytesMoved,
              bytesTotal: t.totalBytes,
              chunksSent: t.chunks,
              bytesPerSecond: t.bytesPerSec,
            };
      },
      notifyRemoved: (m) => this.notifyRemoved(m),
      onBookChanged: () => this.refreshBook(),
      onSelfRemoved: () => this.onRemoved('its removal from the cluster took effect'),
      log,
    });
    o.kvSessions.directory.onChange(() => {
      this.refreshBook();
      if (o.kvSessions.directory.isRemoved(config.id)) this.markRemoved();
    });
  }

  /**
   * Hands leadership to the best voter that will take it when a transfer names none, as the
   * leader sees it: one heard from lately, then the most caught up (`successors`), past any the
   * core refuses (silent, or leaving the voters with a change in flight). Refused
   * INVALID_REQUEST when there is none (this node does not lead, or leads alone), else with
   * the last voter's refusal.
   */
  transferToBest(): void {
    const s = this.o.runtime.status();
    const order = s.role === 'leader' ? successors(s) : [];
    if (order.length === 0)
      throw new FlotillaError(
        'INVALID_REQUEST',
        `Node ${this.o.config.id} knows no other voter to hand leadership to (it leads: ${s.role === 'leader'})`,
      );
    let refusal: unknown = null;
    for (const to of order) {
      try {
        this.o.runtime.transferLeadership(to);
        return;
      } catch (err) {
        refusal = err;
      }
    }
    throw refusal;
  }

  /** Makes the address book, the transport's peers and the forwarders follow the membership. */
  refreshBook(): void {
    const next = this.membership.reachable();
    const directory = this.o.kvSessions.directory;
    for (const [id, m] of this.learned) {
      if (directory.isRemoved(id) || next.some((n) => n.id === id)) this.learned.delete(id);
      else next.push(m);
    }
    next.sort((a, b) => a.id - b.id);
    const gone = this.book.filter((m) => !next.some((n) => n.id === m.id));
    this.book.splice(0, this.book.length, ...next);
    for (const m of next)
      if (m.id !== this.o.config.id) this.o.transport.setPeer(m.id, splitHostPort(m.peer));
    for (const m of gone) {
      if (m.id === this.o.config.id) continue;
      this.o.transport.removePeer(m.id);
      this.o.log.info({ peer: m.id }, `member ${m.id} is gone: no longer a peer`);
    }
  }

  /** Marks the data directory of a removed member, once: it refuses to start from then on. */
  markRemoved(): void {
    if (this.removalHandled) return;
    this.removalHandled = true;
    writeIdentity(this.o.config.dataDir, {
      ...this.o.identity,
      recovery: this.o.runtime.status().recovery,
      removed: true,
    });
    this.o.log.error(
      { member: this.o.config.id, dataDir: this.o.config.dataDir },
      'this member was removed from the cluster: its data directory is marked and will not start again',
    );
  }

  /** The removal took effect (or the cluster said so): mark the directory and stop serving. */
  private onRemoved(why: string): void {
    this.markRemoved();
    if (this.o.isClosing()) return;
    this.o.log.error({ why }, 'removed from the cluster: stopping');
    this.o.stop();
  }

  /**
   * A refused handshake means this node's membership is behind the cluster's. A member removed
   * while it was down or cut off never applies its removal, and the leader's notice may not
   * reach it: the others refuse its handshakes from then on. A node whose directory lacks
   * members that joined since (its data directory was wiped, or it was down while they joined)
   * refuses theirs, and a leader among them is never heard. On such a refusal (at most every
   * second) it asks a peer, each in turn, for the member list: it stops if the list names it
   * removed, and learns the addresses of members it did not know.
   */
  askPeerForMembers(): void {
    const now = this.o.clock.nowMs();
    // Not skipped once the directory is marked: a member marked removed runs on until its
    // removal took effect in every group, and may never apply the last of those changes (a
    // removed leader steps down first; its peers drop it once they applied it). Their refusals
    // bring it here, and the list tells it to stop.
    if (this.o.isClosing() || now - this.lastAskMs < 1_000) return;
    this.lastAskMs = now;
    // The members it knows, then the URLs it joined through: a joined node restarted before
    // its log brought the directory knows no member but itself.
    const targets = this.book
      .filter((m) => m.id !== this.o.config.id)
      .map((m) => ({ url: m.client, who: `member ${m.id}` }));
    for (const url of this.o.config.join)
      if (!targets.some((t) => t.url === url)) targets.push({ url, who: url });
    const target = targets[this.askTurn++ % Math.max(1, targets.length)];
    if (target === undefined) return;
    void this.memberList(target.url).then(
      (list) => {
        if (list === null || this.o.isClosing()) return;
        // Listed removed, and a member of neither group any more (the list names the members
        // of both): its removal took effect.
        const self = this.o.config.id;
        if (
          list.removed.includes(self) &&
          !list.members.some((m) => m.id === self) &&
          !list.inGroups.includes(self)
        )
          return this.onRemoved(`${target.who} lists this member as removed`);
        this.learn(list, target.who);
      },
      (err: unknown) =>
        this.o.log.debug(
          { peer: target.who, err: (err as Error).message },
          'membership check failed',
        ),
    );
  }

  /** Adds the members of a peer's list that this node knows nothing of. */
  private learn(list: PeerMemberList, from: string): void {
    let added = false;
    for (const m of list.members)
      if (!this.book.some((b) => b.id === m.id) && this.remember(m, `the member list of ${from}`))
        added = true;
    if (added) this.refreshBook();
  }

  /**
   * A dialler this node does not know, at the addresses its handshake gave: let in (made a
   * peer) unless it is this node, was removed, or gave no usable client URL.
   */
  admit(id: number, peer: string, client: string | null): boolean {
    const m = asMember({ id, peer, client });
    if (m.length === 0 || !this.remember(m[0] as Member, 'its handshake')) return false;
    this.refreshBook();
    return this.book.some((b) => b.id === id);
  }

  private remember(m: Member, from: string): boolean {
    if (m.id === this.o.config.id || this.o.kvSessions.directory.isRemoved(m.id)) return false;
    this.learned.delete(m.id);
    this.learned.set(m.id, m);
    for (const id of this.learned.keys()) {
      if (this.learned.size <= MAX_LEARNED_MEMBERS) break;
      this.learned.delete(id);
      this.o.log.warn(
        { member: id, cap: MAX_LEARNED_MEMBERS },
        `forgot learned member ${id}: more than ${MAX_LEARNED_MEMBERS} members learned`,
      );
    }
    this.o.log.info(
      { member: m.id, peer: m.peer, client: m.client },
      `learned member ${m.id} from ${from}`,
    );
    return true;
  }

  /** A peer's member list, checked field by field (null: the answer was not a list). */
  private async memberList(url: string): Promise<PeerMemberList | null> {
    const deadline = new Deadline(2_000);
    try {
      const res = await this.o.pool(url).request({
        method: 'POST',
        path: '/v1/cluster/members/list',
        headers: { 'content-type': 'application/json', ...memberAuthHeaders(this.o.config.auth) },
        body: '{}',
        signal: deadline.signal,
      });
      const json = JSON.parse(await res.body.text()) as {
        removed?: unknown;
        members?: unknown;
        groups?: unknown;
      };
      if (res.statusCode !== 200) return null;
      const ids = (v: unknown): number[] =>
        Array.isArray(v) ? v.filter((x): x is number => typeof x === 'number') : [];
      const removed = ids(json.removed);
      const members = Array.isArray(json.members) ? json.members.flatMap(asMember) : [];
      // Every member of every group's configuration, as the peer sees them: a member marked
      // removed stops only once it is in none (a peer that restarted since the mark may not
      // list its addresses among the members, but its groups still name it).
      const inGroups = (Array.isArray(json.groups) ? (json.groups as unknown[]) : []).flatMap(
        (g) => {
          if (g === null || typeof g !== 'object') return [];
          const c = g as { voters?: unknown; learners?: unknown; outgoing?: unknown };
          return [...ids(c.voters), ...ids(c.learners), ...ids(c.outgoing)];
        },
      );
      return { removed, members, inGroups };
    } finally {
      deadline[Symbol.dispose]();
    }
  }

  /** Tells a removed member so, at its client URL (it may be down or cut off: best effort). */
  private async notifyRemoved(m: Member): Promise<void> {
    const deadline = new Deadline(2_000);
    try {
      const res = await this.o.pool(m.client).request({
        method: 'POST',
        path: '/v1/cluster/removed',
        headers: { 'content-type': 'application/json', ...memberAuthHeaders(this.o.config.auth) },
        body: JSON.stringify({ clusterId: this.o.config.clusterId, id: m.id }),
        signal: deadline.signal,
      });
      await res.body.text();
    } finally {
      deadline[Symbol.dispose]();
    }
  }

  /** The membership backend the membership routes serve through. */
  backend(): MemberBackend {
    const refusal = (err: unknown): never => {
      throw toFlotillaError(err);
    };
    return {
      forward: (path, rawBody, signal, authorization) =>
        this.o.forward(path, rawBody, signal, authorization),
      list: () => this.membership.list(),
      add: (m, o) => this.membership.add(m, o).catch(refusal),
      promote: (id, signal) => this.membership.promote(id, signal).catch(refusal),
      remove: (id, signal, force) => this.membership.remove(id, signal, { force }).catch(refusal),
      join: async (m, signal) => {
        try {
          await this.membership.seedDirectory(signal);
          const before = this.membership.list().members.find((x) => x.id === m.id);
          const members = await this.membership.add(m, {
            learner: true,
            autoPromote: true,
            signal,
          });
          // A voter that held a log asking to join again has lost it (its data directory is
          // empty, or it would not ask): coming back as a full voter, it could vote for a
          // leader that lacks entries it acknowledged, or (an initial member, whose first
          // configuration has itself as a voter) win an election alone. A member added with
          // `member add` and never started is left out: it never voted, and recovering would
          // count it in no quorum while the cluster may need it for every one. Once the leader
          // heard it acknowledge an entry, the directory records that it holds a log
          // (Membership.markVotersHoldingLogs), as for a learner promoted by hand.
          const recover =
            before?.role === 'voter' &&
            (this.o.identity.members.includes(m.id) || before.autoPromote);
          return {
            clusterId: this.o.config.clusterId,
            initialMembers: this.o.identity.members,
            book: this.membership.book(),
            members,
            recover,
          };
        } catch (err) {
          return refusal(err);
        }
      },
      clusterId: this.o.config.clusterId,
      removed: (clusterId, id) => {
        if (clusterId !== this.o.config.clusterId || id !== this.o.config.id)
          throw new FlotillaError(
            'INVALID_REQUEST',
            `This is member ${this.o.config.id} of cluster ${JSON.stringify(this.o.config.clusterId)}, not member ${id} of ${JSON.stringify(clusterId)}`,
          );
        this.onRemoved('the leader said this member was removed');
      },
    };
  }
}
