// The virtual network: which directed links are cut (LinkTable), and the wire that carries
// each message (SimNetwork), dropping, delaying and duplicating it as the seed's network
// stream draws.

import type { Message, Rng } from '../raft/index.js';
import { healedDelayMaxMs, type Profile } from './profile.js';
import type { SimNode } from './sim-node.js';
import type { SimEvent, SimStats } from './types.js';

export class LinkTable {
  /** Invariant: a key `from*1000+to` is present iff messages from->to are dropped. */
  private readonly cut = new Set<number>();

  constructor(private readonly maxNodeId: number) {}

  blocked(from: number, to: number): boolean {
    return this.cut.has(from * 1000 + to);
  }

  cutOneWay(from: number, to: number): void {
    if (from !== to) this.cut.add(from * 1000 + to);
  }

  /** Splits the nodes into two sides that cannot talk to each other in either direction. */
  split(side: ReadonlySet<number>): void {
    for (let a = 1; a <= this.maxNodeId; a++) {
      for (let b = 1; b <= this.maxNodeId; b++) {
        if (side.has(a) !== side.has(b)) this.cutOneWay(a, b);
      }
    }
  }

  healAll(): void {
    this.cut.clear();
  }

  describe(): string {
    const links = [...this.cut]
      .sort((a, b) => a - b)
      .map((k) => `${Math.floor(k / 1000)}->${k % 1000}`);
    return links.length === 0 ? 'none' : links.join(' ');
  }
}

/** What the network needs from the simulation. */
export interface NetworkHost {
  /** The faults have healed: no message is dropped or duplicated, and none is slow. */
  readonly inLiveness: boolean;
  node(id: number): SimNode;
  schedule(delayMs: number, event: SimEvent): void;
}

export interface NetworkOptions {
  readonly profile: Profile;
  readonly links: LinkTable;
  /** The seed's network stream: every draw of a drop, delay or duplicate. */
  readonly rng: Rng;
  readonly stats: SimStats;
}

export class SimNetwork {
  /** The first chunk (offset 0) of a transfer each leader>follower pair sent last (stats). */
  private readonly firstChunks = new Map<string, { id: string; length: number }>();

  constructor(
    private readonly host: NetworkHost,
    private readonly o: NetworkOptions,
  ) {}

  send(from: number, m: Message, attachment: Uint8Array | null, group = 0): void {
    const stats = this.o.stats;
    stats.messages++;
    if (m.type === 'snapshot') stats.snapshotChunks++;
    // A follower's answer to a leader's first chunk (offset 0) that says it holds more: the
    // transfer resumes past byte 0 (after a restart, a leader change or a retry).
    if (m.type === 'snapshot-resp') {
      const first = this.firstChunks.get(`${m.to}>${from}`);
      if (first !== undefined && first.id === m.id && m.received > first.length)
        stats.snapshotResumes++;
      this.firstChunks.delete(`${m.to}>${from}`);
    }
    if (m.type === 'snapshot' && m.offset === 0)
      this.firstChunks.set(`${from}>${m.to}`, { id: m.id, length: m.length });
    const p = this.o.profile;
    const faulty = !this.host.inLiveness;
    if (this.o.links.blocked(from, m.to) || (faulty && this.o.rng.float() < p.dropRate)) {
      stats.dropped++;
      return;
    }
    // A slow network is a fault too: once healed, a round trip fits well inside an election
    // timeout, as Raft's timing requirement asks (paper §5.6, broadcastTime << electionTimeout).
    const maxMs = faulty
      ? p.delayMaxMs
      : Math.min(p.delayMaxMs, Math.max(p.delayMinMs, healedDelayMaxMs(p)));
    const span = maxMs - p.delayMinMs + 1;
    const toGen = this.host.node(m.to).gen;
    const deliver: SimEvent = {
      kind: 'deliver',
      msg: m,
      attachment,
      toGen,
      ...(group === 0 ? {} : { group }),
    };
    this.host.schedule(p.delayMinMs + this.o.rng.int(span), deliver);
    if (faulty && this.o.rng.float() < p.dupRate) {
      this.host.schedule(p.delayMinMs + this.o.rng.int(span), deliver);
    }
  }

  deliver(m: Message, attachment: Uint8Array | null, toGen: number, group: number): void {
    const n = this.host.node(m.to);
    // A partition that began while the message was in flight also stops it, and so does a
    // crash of the receiver (its connections die with it; the transport drops what it had
    // queued for the dead process).
    if (!n.up || n.gen !== toGen || this.o.links.blocked(m.from, m.to)) {
      this.o.stats.dropped++;
      return;
    }
    n.deliver(m, attachment, group);
  }
}
