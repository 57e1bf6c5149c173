// The host: everything one process shares among the Raft groups it runs. One ticker drives
// every group; one transport carries every group's messages, each tagged with its group, and
// a router hands each to its group's runtime; each group keeps its own storage behind the
// GroupStorage contract. The host owns that I/O: it opens nothing itself (the assembly hands
// it what it opened) but it closes everything, after every group stopped. A group's runtime
// owns only its Ready loop, so a fault in one group (a failed disk, a stalled apply) stops that
// group and no other.

import type { Message, NodeId } from '../raft/index.js';
import type { Clock, GroupId, HostTransport, LivenessReporter } from './contracts.js';
import { RaftRuntime } from './runtime.js';
import type { RuntimeEvent, RuntimeOptions } from './runtime-options.js';

/** Every group's leadership is told to the liveness lane at least this often, in ticks. */
const LEADING_SWEEP_TICKS = 100;

/**
 * The group id of the node-level heartbeat (quiescing, DESIGN.md "Quiescing idle groups"): a
 * heartbeat of term 0 that no group runs under, which says only that its sender's host is
 * alive. A node without quiescing drops it as it drops any message for a group it does not run.
 */
export const NODE_BEAT_GROUP = 0xffff_ffff;

export interface HostOptions {
  readonly id: NodeId;
  readonly transport: HostTransport;
  readonly clock: Clock;
  /** Milliseconds per Raft tick, for every group. Default 10. */
  readonly tickMs?: number;
  /** Every group's runtime events, tagged with the group. */
  readonly onEvent?: (group: GroupId, event: RuntimeEvent) => void;
}

/** A group's own settings; the host supplies the node id, clock, ticker and transport. */
export type GroupOptions = Omit<
  RuntimeOptions,
  | 'id'
  | 'group'
  | 'send'
  | 'flush'
  | 'clock'
  | 'tickMs'
  | 'onEvent'
  | 'onLeadingChange'
  | 'mayBlock'
>;

export interface HostStats {
  readonly groups: number;
  /** Messages that named a group this host does not run (yet): dropped, Raft resends. */
  readonly unrouted: number;
  /** Groups quiesced here now (RaftConfig.quiesce): not ticked until they wake. */
  readonly quiesced: number;
  /** Groups woken by the node-level failure detection, since start. */
  readonly wokenBySilence: number;
  /** Groups stopped by a storage failure (RaftRuntime.failure): they wait for a restart. */
  readonly stopped: number;
}

export class Host implements AsyncDisposable {
  private readonly runtimes = new Map<GroupId, RaftRuntime>();
  /** Groups being added: their messages are dropped until the runtime exists. */
  private readonly adding = new Set<GroupId>();
  private readonly tickMs: number;
  private tickTimer: unknown = null;
  /** When the next tick is due, so late timers do not accumulate drift. */
  private nextTickAtMs = 0;
  private unrouted = 0;
  private closed = false;
  /** Inside the ticker's run over every group: flushes wait for its end (flush()). */
  private ticking = false;
  private flushWanted = false;
  /** Ticks run since the start: the liveness lane's periodic report, the peers' silence. */
  private ticks = 0;
  /** Groups whose leadership may have changed since the lane was last told (reportLeading). */
  private readonly leadingChanged = new Set<GroupId>();
  /** The groups this node leads, as their runtimes tell (onLeads): leadsBusyBesides asks only them. */
  private readonly led = new Set<GroupId>();
  /**
   * Quiescing (DESIGN.md, "Quiescing idle groups"): groups added with raft.quiesce. While
   * there are any, the host sends each peer node a node-level heartbeat every `beatTicks` and
   * watches each peer's silence: a quiesced group's own timers stand still, so its failure
   * detection is the node's.
   */
  private readonly quiescing = new Set<GroupId>();
  /** The shortest heartbeat interval of the quiescing groups, in ticks. */
  private beatTicks = Number.POSITIVE_INFINITY;
  /** The shortest election timeout of the quiescing groups: a peer this silent is down. */
  private silenceTicks = Number.POSITIVE_INFINITY;
  /** Each peer node sent to or heard from, and the tick it was last heard from. */
  private readonly heardAt = new Map<NodeId, number>();
  /** Peers silent for silenceTicks; the groups quiesced under them as leader were woken. */
  private readonly silentPeers = new Set<NodeId>();
  private wokenBySilence = 0;
  /** How many peers the liveness lane was last given for the node heartbeat (reportNodeBeat). */
  private nodeBeatPeersTold = 0;

  constructor(private readonly o: HostOptions) {
    this.tickMs = o.tickMs ?? 10;
    o.transport.onMessage((msg, attachment, group) => this.route(msg, attachment, group));
    this.scheduleTick();
  }

  get id(): NodeId {
    return this.o.id;
  }

  /**
   * Whether this node leads a group other than `group` with work outstanding: then a follower
   * write of `group` must not block the thread that work runs on. Asked once per follower
   * write; a look at each group this node leads, a few field reads each.
   */
  private leadsBusyBesides(group: GroupId): boolean {
    for (const g of this.led)
      if (g !== group && this.runtimes.get(g)?.leadsBusy() === true) return true;
    return false;
  }

  /**
   * Starts a group on `storage` (which the host now owns and will close) with `stateMachine`.
   * Refused if the group runs already or the host is closing.
   */
  async addGroup(
    group: GroupId,
    g: GroupOptions,
    /** What builds the runtime: a subclass only in tests (the simulator's planted bugs). */
    runtime: Pick<typeof RaftRuntime, 'start'> = RaftRuntime,
  ): Promise<RaftRuntime> {
    if (!Number.isSafeInteger(group) || group < 0 || group >= NODE_BEAT_GROUP)
      throw new RangeError(
        `A group id is an integer 0..${NODE_BEAT_GROUP - 1} (${NODE_BEAT_GROUP} is the node's heartbeat), got ${group}`,
      );
    if (this.closed) throw new Error(`Host ${this.o.id} is closed`);
    if (this.runtimes.has(group) || this.adding.has(group))
      throw new Error(`Group ${group} already runs on host ${this.o.id}`);
    this.adding.add(group);
    try {
      const rt = await runtime.start({
        ...g,
        id: this.o.id,
        group,
        clock: this.o.clock,
        tickMs: this.tickMs,
        send: (msg, attachment) => {
          if (this.quiescing.size > 0 && !this.heardAt.has(msg.to))
            this.heardAt.set(msg.to, this.ticks);
          this.o.transport.send(msg, attachment, group);
        },
        flush: () => this.flush(),
        onEvent: (e) => this.o.onEvent?.(group, e),
        onLeadingChange: () => this.leadingChanged.add(group),
        mayBlock: () => !this.leadsBusyBesides(group),
        onLeads: (leads) => (leads ? this.led.add(group) : this.led.delete(group)),
      });
      this.runtimes.set(group, rt);
      this.leadingChanged.add(group);
      if (g.raft?.quiesce === true) {
        const t = rt.timing();
        this.quiescing.add(group);
        this.beatTicks = Math.min(this.beatTicks, t.heartbeatTicks);
        this.silenceTicks = Math.min(this.silenceTicks, t.electionTicks);
      }
      return rt;
    } finally {
      this.adding.delete(group);
    }
  }

  group(group: GroupId): RaftRuntime | undefined {
    return this.runtimes.get(group);
  }

  groups(): readonly RaftRuntime[] {
    return [...this.runtimes.values()];
  }

  stats(): HostStats {
    let quiesced = 0;
    let stopped = 0;
    for (const rt of this.runtimes.values()) {
      if (rt.failure() !== null) stopped++;
      else if (rt.quiesced()) quiesced++;
    }
    return {
      groups: this.runtimes.size,
      unrouted: this.unrouted,
      quiesced,
      wokenBySilence: this.wokenBySilence,
      stopped,
    };
  }

  /** The groups stopped by a storage failure, in group order, with the failure's message. */
  stoppedGroups(): { readonly group: GroupId; readonly error: string }[] {
    const out: { group: GroupId; error: string }[] = [];
    for (const rt of this.runtimes.values()) {
      const err = rt.failure();
      if (err !== null) out.push({ group: rt.group, error: err.message });
    }
    return out.sort((a, b) => a.group - b.group);
  }

  /** Stops one group (a leader hands off first) and closes its storage. */
  async removeGroup(group: GroupId, handoffTimeoutMs = 2_000): Promise<void> {
    const rt = this.runtimes.get(group);
    if (rt === undefined) return;
    await rt.close(handoffTimeoutMs);
    this.runtimes.delete(group);
    this.leadingChanged.delete(group);
    this.led.delete(group);
    // The beat interval and silence bound stay the shortest any group had: waking is safe.
    this.quiescing.delete(group);
    this.o.transport.liveness?.lead(group, null);
    if (this.quiescing.size === 0 && this.nodeBeatPeersTold > 0) {
      // watchPeers sends no more node beats: neither does the lane.
      this.nodeBeatPeersTold = 0;
      this.o.transport.liveness?.lead(NODE_BEAT_GROUP, null);
    }
    await rt.storage.close();
  }

  /**
   * Stops every group (leaders hand off, all at once), then the ticker, the transport and
   * every group's storage. The ticker runs until the hand-offs are done: they need ticks.
   */
  async close(handoffTimeoutMs = 2_000): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const runtimes = [...this.runtimes.values()];
    await Promise.all(runtimes.map((rt) => rt.close(handoffTimeoutMs)));
    if (this.tickTimer !== null) this.o.clock.clearTimeout(this.tickTimer);
    this.tickTimer = null;
    this.closeStage = 'closing the peer transport';
    await this.o.transport.close();
    const errors: unknown[] = [];
    for (const rt of runtimes) {
      this.closeStage = `closing the storage of group ${rt.group}`;
      try {
        await rt.storage.close();
      } catch (err) {
        errors.push(err);
      }
    }
    this.runtimes.clear();
    this.closeStage = null;
    if (errors.length > 0) throw errors[0];
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** Past its groups, what close() waits for. */
  private closeStage: string | null = null;

  /** What close() waits for: each group still closing (RaftRuntime.closeStage), then the host. */
  closing(): { group: GroupId | null; stage: string }[] {
    const out: { group: GroupId | null; stage: string }[] = [];
    if (this.closeStage !== null) out.push({ group: null, stage: this.closeStage });
    for (const [group, rt] of this.runtimes)
      if (rt.closeStage !== null && rt.closeStage !== 'closed')
        out.push({ group, stage: rt.closeStage });
    return out;
  }

  private route(msg: Message, attachment: Uint8Array | null, group: GroupId): void {
    if (this.quiescing.size > 0) this.heardAt.set(msg.from, this.ticks);
    if (group === NODE_BEAT_GROUP) return;
    const rt = this.runtimes.get(group);
    if (rt === undefined) {
      this.unrouted++;
      return;
    }
    rt.receive(msg, attachment);
  }

  /**
   * A runtime asks that what it sent be written now (its appends before its own write). Inside
   * the ticker's run the host writes once at the end instead: a tick's heartbeats to one peer,
   * of every group this host leads, then leave together, and a transport that coalesces them
   * (PROTOCOL.md, version 4) sends one frame where it sent one per group.
   */
  private flush(): void {
    if (this.ticking) this.flushWanted = true;
    else this.o.transport.flush?.();
  }

  /**
   * Ticks every group that is not quiesced, with one clock reading, and writes what they sent
   * in one go.
   */
  private tickAll(): void {
    const nowMs = this.o.clock.nowMs();
    this.ticks += 1;
    this.ticking = true;
    try {
      if (this.quiescing.size > 0) this.watchPeers();
      for (const rt of this.runtimes.values()) if (!rt.quiesced()) rt.tick(nowMs);
    } finally {
      this.ticking = false;
    }
    if (this.flushWanted) {
      this.flushWanted = false;
      this.o.transport.flush?.();
    }
    const lane = this.o.transport.liveness;
    if (lane !== undefined && lane !== null) {
      lane.alive();
      this.reportLeading(lane);
      this.reportNodeBeat(lane);
    }
  }

  /**
   * Tells the liveness lane the leadership of the groups whose runtime said it may have
   * changed (the core's leader moved, a new term, a membership change, a stop). Asking every
   * group every tick cost an object, an array and a string per group per tick, a tenth of an
   * idle node's CPU with 1,000 groups (BENCHMARKS.md, "Idle groups"). Once a second every
   * group is asked regardless, should a change have slipped by.
   */
  private reportLeading(lane: LivenessReporter): void {
    if (this.ticks % LEADING_SWEEP_TICKS === 0)
      for (const group of this.runtimes.keys()) this.leadingChanged.add(group);
    for (const group of this.leadingChanged) {
      const rt = this.runtimes.get(group);
      if (rt === undefined) continue;
      rt.takeLeadingChange();
      lane.lead(group, rt.leading());
    }
    this.leadingChanged.clear();
  }

  /**
   * Tells the liveness lane to send the node heartbeat too, while the main thread is silent: it
   * is told as if this node led a group NODE_BEAT_GROUP in term 0 with every peer the beat goes
   * to as follower, so the lane sends exactly the beat watchPeers sends, for as long as it
   * speaks for the led groups (its grace). Without it a stall of an election timeout silenced
   * this node to its peers, and they woke every group quiesced under it as leader. The peers
   * only ever grow (heardAt keeps each peer), so a change is a new size.
   */
  private reportNodeBeat(lane: LivenessReporter): void {
    if (this.quiescing.size === 0 || this.heardAt.size === this.nodeBeatPeersTold) return;
    this.nodeBeatPeersTold = this.heardAt.size;
    const peers = [...this.heardAt.keys()].sort((a, b) => a - b);
    lane.lead(NODE_BEAT_GROUP, { term: 0, followers: peers });
  }

  /**
   * The node-level failure detection of quiesced groups (DESIGN.md, "Quiescing idle groups").
   * Every beatTicks each peer is sent a node heartbeat (NODE_BEAT_GROUP), so a peer hears from
   * this host even when every group is quiesced. A peer not heard from, in any group or beat,
   * for an election timeout is down: the groups quiesced here under it as leader wake, and
   * elect as usual if it stays silent. A peer heard again after that came back (a restart, a
   * healed partition): the groups quiesced here that it is a member of and this node leads
   * wake, so it hears from their leader at once.
   */
  private watchPeers(): void {
    if (this.ticks % this.beatTicks === 0) {
      for (const to of this.heardAt.keys()) {
        const beat = {
          type: 'heartbeat',
          from: this.o.id,
          to,
          term: 0,
          commit: 0,
          seq: 0,
        } as const;
        this.o.transport.send(beat, undefined, NODE_BEAT_GROUP);
      }
      this.flushWanted = true;
    }
    for (const [peer, at] of this.heardAt) {
      const silent = this.ticks - at >= this.silenceTicks;
      if (silent === this.silentPeers.has(peer)) continue;
      if (silent) {
        this.silentPeers.add(peer);
        this.wakeGroups(peer, false, `node ${peer} silent for ${this.ticks - at} ticks`);
      } else {
        this.silentPeers.delete(peer);
        this.wakeGroups(peer, true, `node ${peer} is heard again`);
      }
    }
  }

  /**
   * Wakes the quiesced groups led by `peer` (`back` false), or those this node leads that have
   * `peer` as a member (`back` true). Rare (a peer's state changed): it may ask for status.
   */
  private wakeGroups(peer: NodeId, back: boolean, reason: string): void {
    for (const rt of this.runtimes.values()) {
      if (!rt.quiesced()) continue;
      if (back) {
        if (!rt.isLeader()) continue;
        const s = rt.status();
        if (!s.voters.includes(peer) && !s.learners.includes(peer)) continue;
      } else if (rt.leaderId() !== peer) continue;
      rt.wake(reason);
      this.wokenBySilence += 1;
    }
  }

  /**
   * Ticks at a fixed rate: each timer aims at the next due time rather than "tickMs from now",
   * so a late timer does not push every later tick back (which stretched election timeouts on
   * a loaded machine). Ticks missed during a stall are not replayed in a burst: messages that
   * arrived meanwhile must be processed before the clock moves on, or a leader would conclude
   * it lost its quorum while the proof sat unread in its socket buffers.
   */
  private scheduleTick(): void {
    const now = this.o.clock.nowMs();
    if (this.nextTickAtMs === 0 || now - this.nextTickAtMs > this.tickMs) this.nextTickAtMs = now;
    this.nextTickAtMs += this.tickMs;
    this.tickTimer = this.o.clock.setTimeout(
      () => {
        this.tickAll();
        if (this.tickTimer !== null) this.scheduleTick();
      },
      Math.max(0, this.nextTickAtMs - now),
    );
  }
}
