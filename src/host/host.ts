// The host: everything one process shares among the Raft groups it runs. One ticker drives
// every group; one transport carries every group's messages, each tagged with its group, and
// a router hands each to its group's runtime; each group keeps its own storage behind the
// GroupStorage contract. The host owns that I/O: it opens nothing itself (the assembly hands
// it what it opened) but it closes everything, after every group stopped. A group's runtime
// owns only its Ready loop, so a fault in one group (a failed disk, a stalled apply) stops that
// group and no other.

import type { Message, NodeId } from '../raft/index.js';
import type { Clock, GroupId, HostTransport, LivenessReporter } from './contracts.js';
import { RaftRuntime, type RuntimeEvent, type RuntimeOptions } from './runtime.js';

/** Every group's leadership is told to the liveness lane at least this often, in ticks. */
const LEADING_SWEEP_TICKS = 100;

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
  'id' | 'group' | 'send' | 'flush' | 'clock' | 'tickMs' | 'onEvent' | 'onLeadingChange'
>;

export interface HostStats {
  readonly groups: number;
  /** Messages that named a group this host does not run (yet): dropped, Raft resends. */
  readonly unrouted: number;
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
  /** Ticks since the start, for the liveness lane's periodic full report. */
  private ticks = 0;
  /** Groups whose leadership may have changed since the lane was last told (reportLeading). */
  private readonly leadingChanged = new Set<GroupId>();

  constructor(private readonly o: HostOptions) {
    this.tickMs = o.tickMs ?? 10;
    o.transport.onMessage((msg, attachment, group) => this.route(msg, attachment, group));
    this.scheduleTick();
  }

  get id(): NodeId {
    return this.o.id;
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
    if (!Number.isSafeInteger(group) || group < 0)
      throw new RangeError(`A group id is a non-negative integer, got ${group}`);
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
        send: (msg, attachment) => this.o.transport.send(msg, attachment, group),
        flush: () => this.flush(),
        onEvent: (e) => this.o.onEvent?.(group, e),
        onLeadingChange: () => this.leadingChanged.add(group),
      });
      this.runtimes.set(group, rt);
      this.leadingChanged.add(group);
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
    return { groups: this.runtimes.size, unrouted: this.unrouted };
  }

  /** Stops one group (a leader hands off first) and closes its storage. */
  async removeGroup(group: GroupId, handoffTimeoutMs = 2_000): Promise<void> {
    const rt = this.runtimes.get(group);
    if (rt === undefined) return;
    await rt.close(handoffTimeoutMs);
    this.runtimes.delete(group);
    this.leadingChanged.delete(group);
    this.o.transport.liveness?.lead(group, null);
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
    await this.o.transport.close();
    const errors: unknown[] = [];
    for (const rt of runtimes) {
      try {
        await rt.storage.close();
      } catch (err) {
        errors.push(err);
      }
    }
    this.runtimes.clear();
    if (errors.length > 0) throw errors[0];
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  private route(msg: Message, attachment: Uint8Array | null, group: GroupId): void {
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

  /** Ticks every group, with one clock reading, and writes what they sent in one go. */
  private tickAll(): void {
    const nowMs = this.o.clock.nowMs();
    this.ticking = true;
    try {
      for (const rt of this.runtimes.values()) rt.tick(nowMs);
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
    this.ticks += 1;
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
