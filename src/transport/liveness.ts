// The liveness lane, the side in the node's main thread. A leader's heartbeats come from its
// Raft tick, which runs on the main thread between client work, disk completions and garbage
// collection. When that thread is not run for longer than an election timeout (a loaded
// machine's scheduler shares the cores by fairness, and the leader is the busiest process; a
// full garbage collection stops it too), the followers hear nothing and elect a new leader,
// though the old one is alive and was about to go on. A separate thread that sleeps almost
// always is run promptly even then: measured on a 2-core machine shared by five members, the
// load generator and two CPU-bound processes, the main threads went up to 400-700 ms between
// ticks while a 50 ms timer in a worker thread of the same processes was at most 142-194 ms
// apart (docs/BENCHMARKS.md, "Overload: the leader starved of CPU").
//
// So each node runs a small worker thread (liveness-thread.ts) with its own connection to each
// peer (HELLO lane "liveness"). The main thread records that it is alive at every tick and
// tells the thread which groups it leads, in which term, and to whom. When the main thread has
// not ticked for a heartbeat interval, the thread sends those followers a heartbeat of that
// term: it carries commit 0 and round 0, so it commits nothing and confirms no read and no
// lease; it only says that the leader of that term is still there. The followers answer on
// their main connections, which the leader reads when its main thread runs again.
//
// A leader whose main thread is stuck for good (a bug, a hung disk call) must still be
// replaced: past `graceMs` without a tick the thread stops sending, and the followers elect
// after their election timeout as before. A leader that stepped down says so at its next
// tick; a heartbeat of an old term sent meanwhile is answered with the newer term. With
// quiescing on, the host reports its node heartbeat (term 0, host.ts NODE_BEAT_GROUP) as a led
// group too, so a stalled node's peers keep hearing from it and leave its quiesced groups asleep.

import { Worker } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';
import type { NodeId, Term } from '../raft/types.js';
import type { LivenessOptions, PeerAddress, ResolvedTcpOptions } from './options.js';
import type { PeerTlsOptions } from './tls.js';
import type { TransportEvent } from './types.js';

/** What a leader tells the lane each tick about one group. */
export interface Leading {
  readonly term: Term;
  readonly followers: readonly NodeId[];
}

/** Messages from the main thread to the lane's thread. */
export type ToLane =
  | { readonly kind: 'peer'; readonly id: NodeId; readonly address: PeerAddress }
  | { readonly kind: 'remove'; readonly id: NodeId }
  /** The peer dialled this node's main transport: a lane link waiting out a backoff redials. */
  | { readonly kind: 'alive'; readonly id: NodeId }
  | { readonly kind: 'lead'; readonly group: number; readonly leading: Leading | null }
  | { readonly kind: 'tls'; readonly material: PeerTlsOptions };

/** Messages from the lane's thread: a transport event worth logging (refusals, errors). */
export type FromLane = { readonly kind: 'event'; readonly event: TransportEvent };

/** What the lane's thread starts with. */
export interface LaneData {
  readonly opts: ResolvedTcpOptions;
  readonly tls: PeerTlsOptions | null;
  readonly liveness: LivenessOptions;
  /** [0]: when the main thread last ticked (ms since the epoch); [1]: heartbeats sent. */
  readonly shared: SharedArrayBuffer;
}

/** Milliseconds since the epoch, monotonic within a thread, comparable across threads. */
export function laneNowMs(): number {
  return performance.timeOrigin + performance.now();
}

export class LivenessLane {
  private readonly worker: Worker;
  private readonly shared = new Float64Array(new SharedArrayBuffer(16));
  /** What the thread was last told per group, so a tick posts only changes. */
  private readonly told = new Map<number, string>();
  private closed = false;

  constructor(
    opts: ResolvedTcpOptions,
    tls: PeerTlsOptions | null,
    readonly options: LivenessOptions,
    onEvent: (e: TransportEvent) => void,
  ) {
    this.alive();
    // Functions do not cross threads: the lane resolves names with the system's resolver and
    // says nothing of the log in its HELLO, nor the client URL in its ACCEPT (only the main
    // connection's do).
    const data: LaneData = {
      opts: { ...opts, hasLog: null, lookup: null, clientUrlOf: null },
      tls,
      liveness: options,
      shared: this.shared.buffer,
    };
    this.worker = new Worker(new URL('./liveness-thread.js', import.meta.url), {
      workerData: data,
      // A few connections and a timer: a small heap is plenty, and a small heap collects fast.
      resourceLimits: { maxOldGenerationSizeMb: 32, maxYoungGenerationSizeMb: 4 },
    });
    this.worker.unref();
    this.worker.on('message', (m: FromLane) => onEvent(m.event));
    this.worker.on('error', (e) =>
      onEvent({ kind: 'handler-error', peer: 0, message: `liveness lane: ${e.message}` }),
    );
  }

  /** The main thread ran a tick now. */
  alive(): void {
    this.shared[0] = laneNowMs();
  }

  /** Whether, and in which term and to whom, this node leads `group` now. */
  lead(group: number, leading: Leading | null): void {
    const key = leading === null ? '' : `${leading.term}:${leading.followers.join(',')}`;
    if ((this.told.get(group) ?? '') === key) return;
    this.told.set(group, key);
    this.post({ kind: 'lead', group, leading });
  }

  setPeer(id: NodeId, address: PeerAddress): void {
    this.post({ kind: 'peer', id, address });
  }

  removePeer(id: NodeId): void {
    this.post({ kind: 'remove', id });
  }

  /**
   * Peer `id` is up (its HELLO was accepted): the lane's link to it redials now if it waits out
   * a backoff, as the main link does, so a leader stalled soon after a peer (re)started still
   * has its lane to that peer.
   */
  peerAlive(id: NodeId): void {
    this.post({ kind: 'alive', id });
  }

  setTls(material: PeerTlsOptions): void {
    this.post({ kind: 'tls', material });
  }

  /** Heartbeats the lane sent for a silent main thread, since start. */
  get sent(): number {
    return this.shared[1] ?? 0;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.worker.terminate();
  }

  private post(m: ToLane): void {
    if (!this.closed) this.worker.postMessage(m);
  }
}
