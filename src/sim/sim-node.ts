// One simulated server: a RaftNode driven through the Ready loop exactly as the Ready doc
// comment orders it, a virtual disk that survives crashes, and the key/value state machine.
// The persist step takes virtual time; a crash while it runs loses the write.

import {
  createRng,
  type Entry,
  type Message,
  type RaftConfig,
  type RaftEvent,
  type RaftNode,
  type Ready,
  type Rng,
} from '../raft/index.js';
import type { LogView } from './checker.js';
import { VirtualDisk, type StoredSnapshot } from './disk.js';
import { SimError } from './errors.js';
import { decodeOp, KvStateMachine, type KvOp } from './kv.js';

/** What a node needs from the simulation around it. */
export interface NodeHost {
  /** Sends a message; `snapshot` carries the bytes of a `snapshot` message. */
  send(from: number, m: Message, snapshot: StoredSnapshot | null): void;
  /** Schedules completePersist(gen) after the virtual write latency. */
  schedulePersist(node: SimNode): void;
  onEvent(event: RaftEvent): void;
  onReady(node: SimNode, rd: Ready): void;
  /** A write is about to store `entry`; `afterPersist` follows once the write landed. */
  onPersist(node: SimNode, entry: Entry): void;
  afterPersist(node: SimNode): void;
  /** An entry was applied; `op` is its operation (null for no-ops) and whether it took effect. */
  onApply(node: SimNode, entry: Entry, op: KvOp | null, effective: boolean): void;
  onSnapshot(node: SimNode, index: number, image: Uint8Array): void;
  /** A ReadIndex read finished: `value` is only meaningful when `ok`. */
  onReadDone(node: SimNode, requestId: number, ok: boolean, value: string | undefined): void;
}

/** Bound on snapshot images a node holds between receiving and installing one. */
const MAX_RECEIVED_SNAPSHOTS = 8;

export type NodeFactory = (config: RaftConfig) => RaftNode;

/** A read this node is serving: asked, then (after its ReadState) waiting for apply. */
interface NodeRead {
  readonly key: string;
  index: number;
}

export interface SimNodeOptions {
  readonly id: number;
  readonly voters: readonly number[];
  readonly config: Omit<RaftConfig, 'id' | 'voters' | 'rng' | 'initial' | 'onEvent'>;
  readonly factory: NodeFactory;
  readonly seed: number;
  readonly snapshotEvery: number;
  readonly host: NodeHost;
}

export class SimNode implements LogView {
  readonly id: number;
  readonly disk = new VirtualDisk();
  /** Incarnation: bumped by every crash so events of a dead incarnation are ignored. */
  gen = 0;
  up = false;
  role = 'follower';
  leaderHint = 0;
  private raftNode: RaftNode | null = null;
  private sm = new KvStateMachine();
  private persisting: Ready | null = null;
  private appliedIndex = 0;
  private appliedTerm = 0;
  /** The newest snapshot this node can send: its own or one received from a leader. */
  private latest: StoredSnapshot | null = null;
  /**
   * Snapshot bytes received with `snapshot` messages, by index, until a Ready installs one.
   * Several may arrive (duplicates, retries, stale ones the core ignores) while a write is in
   * progress, so the Ready's snapshot is looked up by index rather than taken as the last one.
   */
  private readonly received = new Map<number, StoredSnapshot>();
  private readonly reads = new Map<number, NodeRead>();
  private readonly seeds: Rng;

  constructor(private readonly opts: SimNodeOptions) {
    this.id = opts.id;
    this.seeds = createRng(opts.seed);
  }

  get raft(): RaftNode {
    if (this.raftNode === null) throw new SimError('HARNESS', `node ${this.id} is down`);
    return this.raftNode;
  }

  /** Boots (or reboots) from whatever the disk holds. */
  start(): void {
    const initial = this.disk.initialState();
    const snap = this.disk.snapshot();
    this.raftNode = this.opts.factory({
      ...this.opts.config,
      id: this.id,
      voters: this.opts.voters,
      rng: createRng(this.seeds.int(0x100000000)),
      initial,
      ...(this.disk.recovery === null ? {} : { recovery: this.disk.recovery }),
      onEvent: (e) => this.opts.host.onEvent(e),
    });
    this.sm = snap === null ? new KvStateMachine() : KvStateMachine.decode(snap.bytes);
    this.appliedIndex = snap?.meta.index ?? 0;
    this.appliedTerm = snap?.meta.term ?? 0;
    this.latest = snap;
    this.received.clear();
    this.persisting = null;
    this.role = 'follower';
    this.leaderHint = 0;
    this.up = true;
  }

  /** Power loss: memory, the write in progress and the reads being served are gone. */
  crash(): number[] {
    this.gen++;
    this.up = false;
    this.raftNode = null;
    this.persisting = null;
    const lost = [...this.reads.keys()];
    this.reads.clear();
    return lost;
  }

  // LogView (read by the checkers).
  get firstIndex(): number {
    return this.raftNode?.status().firstIndex ?? 1;
  }
  get lastIndex(): number {
    return this.raftNode?.status().lastIndex ?? 0;
  }
  termAt(index: number): number | undefined {
    return this.raftNode?.entry(index)?.term;
  }
  entryAt(index: number): Entry | undefined {
    return this.raftNode?.entry(index);
  }

  deliver(m: Message, snapshot: StoredSnapshot | null): void {
    // The receiving side stores the bytes before stepping the message (core API contract).
    if (snapshot !== null) this.keepReceived(snapshot);
    this.raft.step(m);
    this.pump();
  }

  /** Asks for a linearizable read of `key`; false when the node refused at once. */
  read(requestId: number, key: string): boolean {
    const r = this.raft.readIndex(requestId);
    if (!r.ok) return false;
    this.reads.set(requestId, { key, index: -1 });
    this.pump();
    return true;
  }

  forgetRead(requestId: number): void {
    this.reads.delete(requestId);
  }

  /** Ready loop, first half: take a Ready, send `messages`, start the write. */
  pump(): void {
    if (!this.up || this.persisting !== null) return;
    const raft = this.raft;
    if (!raft.hasReady()) return;
    const rd = raft.ready();
    if (rd.softState !== null) {
      this.role = rd.softState.role;
      this.leaderHint = rd.softState.leader;
    }
    this.opts.host.onReady(this, rd);
    for (const m of rd.messages) this.send(m);
    this.persisting = rd;
    this.opts.host.schedulePersist(this);
  }

  /** Ready loop, second half, once the write is durable. */
  completePersist(gen: number): void {
    const rd = this.persisting;
    if (gen !== this.gen || rd === null) return;
    this.persisting = null;
    const snap = rd.snapshot === null ? null : (this.received.get(rd.snapshot.index) ?? null);
    if (rd.recovery !== null) this.disk.recovery = rd.recovery;
    this.disk.write(rd, snap, (e) => this.opts.host.onPersist(this, e));
    this.opts.host.afterPersist(this);
    for (const m of rd.messagesAfterPersist) this.send(m);
    if (snap !== null) this.installSnapshot(snap);
    for (const e of rd.committedEntries) this.apply(e);
    for (const rs of rd.readStates) {
      const read = this.reads.get(rs.requestId);
      if (read === undefined) continue;
      if (!rs.ok) this.finishRead(rs.requestId, false);
      else read.index = rs.index;
    }
    this.raft.advance(rd);
    this.serveReads();
    this.maybeSnapshot();
    this.pump();
  }

  private send(m: Message): void {
    if (m.type !== 'snapshot') {
      this.opts.host.send(this.id, m, null);
      return;
    }
    // The sending side attaches its newest snapshot's bytes (core API contract). The message
    // may name an older snapshot: it was queued while a write was in progress and the node
    // compacted further before this Ready. The newer image covers only committed entries,
    // so it is sent under its own name instead.
    const s = this.latest;
    if (s === null || s.meta.index < m.snapshot.index) {
      throw new SimError(
        'HARNESS',
        `node ${this.id} must send snapshot ${m.snapshot.term}/${m.snapshot.index} but holds ${s === null ? 'none' : `${s.meta.term}/${s.meta.index}`}`,
      );
    }
    const named = s.meta.index === m.snapshot.index ? m : { ...m, snapshot: s.meta };
    this.opts.host.send(this.id, named, s);
  }

  private keepReceived(s: StoredSnapshot): void {
    this.received.set(s.meta.index, s);
    if (this.received.size > MAX_RECEIVED_SNAPSHOTS) {
      this.received.delete(Math.min(...this.received.keys()));
    }
  }

  private installSnapshot(s: StoredSnapshot): void {
    for (const index of [...this.received.keys()])
      if (index <= s.meta.index) this.received.delete(index);
    this.sm = KvStateMachine.decode(s.bytes);
    this.appliedIndex = s.meta.index;
    this.appliedTerm = s.meta.term;
    this.latest = s;
    this.opts.host.onSnapshot(this, s.meta.index, s.bytes);
  }

  private apply(e: Entry): void {
    if (e.index !== this.appliedIndex + 1) {
      throw new SimError(
        'HARNESS',
        `node ${this.id} was handed entry ${e.index} to apply after ${this.appliedIndex}`,
      );
    }
    this.appliedIndex = e.index;
    this.appliedTerm = e.term;
    if (e.type === 'noop') {
      this.opts.host.onApply(this, e, null, false);
      return;
    }
    const op = decodeOp(e.data);
    this.opts.host.onApply(this, e, op, this.sm.apply(op));
  }

  private serveReads(): void {
    for (const [requestId, r] of this.reads) {
      if (r.index >= 0 && r.index <= this.appliedIndex) this.finishRead(requestId, true);
    }
  }

  private finishRead(requestId: number, ok: boolean): void {
    const r = this.reads.get(requestId);
    if (r === undefined) return;
    this.reads.delete(requestId);
    this.opts.host.onReadDone(this, requestId, ok, ok ? this.sm.get(r.key) : undefined);
  }

  /** Snapshots the state machine and compacts the log (paper §7), every so many entries. */
  private maybeSnapshot(): void {
    const every = this.opts.snapshotEvery;
    if (every === 0 || this.appliedIndex - this.disk.snapshotIndex() < every) return;
    const index = this.appliedIndex;
    const bytes = this.sm.encode();
    const snap: StoredSnapshot = {
      meta: { index, term: this.appliedTerm, voters: this.opts.voters },
      bytes,
    };
    this.opts.host.onSnapshot(this, index, bytes);
    // The snapshot file is durable before the log is cut (written, synced, renamed).
    this.disk.saveSnapshot(snap);
    this.latest = snap;
    this.raft.compact(index);
  }
}
