// In-memory transport and network, for tests and in-process clusters. NOT for production: no
// process boundary, no encoding. It honours the Transport contract (send never blocks or throws,
// bounded in-flight messages, drops counted, validation of every message) and adds seeded fault
// injection — message loss, delay (which also reorders), and partitions — in the spirit of the
// simulated networks of FoundationDB and TigerBeetle.

import { createRng, type Rng } from '../raft/rng.js';
import type { Message, NodeId } from '../raft/types.js';
import { TransportError } from './errors.js';
import { messageSizeBytes } from './sendqueue.js';
import { ErrorCounters, PeerCounters, buildStats } from './stats.js';
import {
  systemTransportClock,
  type PeerStats,
  type Transport,
  type TransportClock,
  type TransportEvent,
  type TransportStats,
} from './types.js';
import { validateMessage } from './validate.js';

export interface MemoryNetworkOptions {
  readonly clock?: TransportClock;
  /** Seeds loss and delay decisions. */
  readonly rng?: Rng;
  /** Most messages in flight on one directed link; more are dropped. Default 4,096. */
  readonly maxInFlightPerLink?: number;
}

type Handler = (msg: Message, attachment: Uint8Array | null, group: number) => void;

export class MemoryNetwork {
  private readonly clock: TransportClock;
  private readonly rng: Rng;
  private readonly maxInFlight: number;
  private readonly nodes = new Map<NodeId, MemoryTransport>();
  private readonly cut = new Set<string>();
  private dropRate = 0;
  private delay = { minMs: 0, maxMs: 0 };

  constructor(options: MemoryNetworkOptions = {}) {
    this.clock = options.clock ?? systemTransportClock;
    this.rng = options.rng ?? createRng(1);
    this.maxInFlight = options.maxInFlightPerLink ?? 4096;
    if (!(this.maxInFlight >= 1))
      throw new TransportError(
        'TRANSPORT_INVALID_CONFIG',
        `maxInFlightPerLink must be >= 1, got ${this.maxInFlight}`,
      );
  }

  /** Creates the transport of node `id`; every other node of this network is its peer. */
  connect(id: NodeId): MemoryTransport {
    if (!Number.isSafeInteger(id) || id <= 0 || this.nodes.has(id))
      throw new TransportError(
        'TRANSPORT_INVALID_CONFIG',
        `node id must be a new positive integer, got ${id}`,
      );
    const t = new MemoryTransport(id, this);
    this.nodes.set(id, t);
    return t;
  }

  /** Each message is lost with probability `p` (0..1). */
  setDropRate(p: number): void {
    if (!(p >= 0 && p <= 1))
      throw new TransportError('TRANSPORT_INVALID_CONFIG', `drop rate must be in [0, 1], got ${p}`);
    this.dropRate = p;
  }

  /** Each message is delivered after a uniform delay in [minMs, maxMs]. */
  setDelay(minMs: number, maxMs: number): void {
    if (!(minMs >= 0 && maxMs >= minMs))
      throw new TransportError(
        'TRANSPORT_INVALID_CONFIG',
        `delay needs 0 <= minMs <= maxMs, got ${minMs}..${maxMs}`,
      );
    this.delay = { minMs, maxMs };
  }

  /** Cuts every link between nodes of different groups (both directions). */
  partition(...groups: readonly (readonly NodeId[])[]): void {
    for (const [i, a] of groups.entries())
      for (const [j, b] of groups.entries()) {
        if (i === j) continue;
        for (const x of a) for (const y of b) this.cut.add(`${x}>${y}`);
      }
  }

  /** Cuts one directed link (asymmetric partitions). */
  cutLink(from: NodeId, to: NodeId): void {
    this.cut.add(`${from}>${to}`);
  }

  /** Cuts `id` off from every other node. */
  isolate(id: NodeId): void {
    const others = [...this.nodes.keys()].filter((n) => n !== id);
    this.partition([id], others);
  }

  heal(): void {
    this.cut.clear();
  }

  /** @internal Routes one message; returns the drop reason or null when it was scheduled. */
  route(
    from: MemoryTransport,
    msg: Message,
    attachment: Uint8Array | null,
    group: number,
  ): 'disconnected' | 'queueFull' | null {
    const target = this.nodes.get(msg.to);
    if (target === undefined || target.isClosed) return 'disconnected';
    if (this.cut.has(`${msg.from}>${msg.to}`) || this.rng.float() < this.dropRate)
      return 'disconnected';
    if (from.inFlight(msg.to) >= this.maxInFlight) return 'queueFull';
    const span = this.delay.maxMs - this.delay.minMs;
    const delayMs = this.delay.minMs + (span > 0 ? this.rng.int(span + 1) : 0);
    from.schedule(msg.to, delayMs, () => {
      // Links cut while the message was in flight lose it, as a real partition would.
      if (this.cut.has(`${msg.from}>${msg.to}`) || target.isClosed) return from.countLate(msg.to);
      target.receive(msg, attachment, group);
    });
    return null;
  }

  /** @internal */
  forget(id: NodeId): void {
    this.nodes.delete(id);
  }

  /** @internal */
  get timerClock(): TransportClock {
    return this.clock;
  }
}

export class MemoryTransport implements Transport {
  private handler: Handler = () => undefined;
  private eventHandler: (e: TransportEvent) => void = () => undefined;
  private readonly counters = new Map<NodeId, PeerCounters>();
  private readonly timers = new Map<NodeId, Set<unknown>>();
  private readonly anonymous = new ErrorCounters();
  private closed = false;

  constructor(
    readonly nodeId: NodeId,
    private readonly network: MemoryNetwork,
  ) {}

  get isClosed(): boolean {
    return this.closed;
  }

  send(msg: Message, attachment?: Uint8Array, group = 0): void {
    const c = this.peer(msg.to);
    if (this.closed) return c.countDrop('closed');
    const valid = validateMessage(msg);
    if (
      valid instanceof TransportError ||
      msg.from !== this.nodeId ||
      (attachment !== undefined && msg.type !== 'snapshot')
    ) {
      c.countDrop('invalid');
      const message =
        valid instanceof TransportError ? valid.message : `bad sender or attachment on ${msg.type}`;
      this.emit({
        kind: 'protocol-error',
        peer: msg.to,
        code: 'TRANSPORT_BAD_MESSAGE',
        remote: 'memory',
        message,
      });
      return;
    }
    const dropped = this.network.route(this, msg, attachment ?? null, group);
    if (dropped !== null) return c.countDrop(dropped);
    c.countSent(msg.type, messageSizeBytes(msg, attachment ?? null));
  }

  onMessage(handler: Handler): void {
    this.handler = handler;
  }

  onEvent(handler: (event: TransportEvent) => void): void {
    this.eventHandler = handler;
  }

  stats(): TransportStats {
    const rows = [...this.counters].map(([id, c]): [NodeId, PeerStats] => [
      id,
      c.snapshot(!this.closed, this.inFlight(id)),
    ]);
    return buildStats(rows, this.anonymous);
  }

  close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      const clock = this.network.timerClock;
      for (const [id, set] of this.timers) {
        this.peer(id).countDrop('closed', set.size);
        for (const h of set) clock.clearTimeout(h);
      }
      this.timers.clear();
      this.network.forget(this.nodeId);
    }
    return Promise.resolve();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** @internal */
  inFlight(to: NodeId): number {
    return this.timers.get(to)?.size ?? 0;
  }

  /** @internal */
  schedule(to: NodeId, delayMs: number, deliver: () => void): void {
    let set = this.timers.get(to);
    if (set === undefined) this.timers.set(to, (set = new Set()));
    const s = set;
    const h = this.network.timerClock.setTimeout(() => {
      s.delete(h);
      deliver();
    }, delayMs);
    s.add(h);
  }

  /** @internal */
  countLate(to: NodeId): void {
    this.peer(to).countDrop('disconnected');
  }

  /** @internal */
  receive(msg: Message, attachment: Uint8Array | null, group: number): void {
    this.peer(msg.from).countReceived(msg.type, messageSizeBytes(msg, attachment));
    try {
      this.handler(msg, attachment, group);
    } catch (e) {
      this.emit({
        kind: 'handler-error',
        peer: msg.from,
        message: e instanceof Error ? e.message : String(e),
      });
    }
  }

  private peer(id: NodeId): PeerCounters {
    let c = this.counters.get(id);
    if (c === undefined) this.counters.set(id, (c = new PeerCounters()));
    return c;
  }

  private emit(e: TransportEvent): void {
    try {
      this.eventHandler(e);
    } catch {
      // A broken log sink must not break the transport.
    }
  }
}
