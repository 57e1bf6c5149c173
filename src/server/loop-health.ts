// How promptly this node's event loop serves Raft. A leader keeps its followers only while its
// heartbeats and appends leave, and their answers are read, well within an election timeout
// (150 ms at the defaults); everything a node does runs on one event loop, so a loop busy with
// client requests delays both. These measurements say by how much:
//
//   - event-loop delay (perf_hooks.monitorEventLoopDelay): how late a 10 ms timer fires, the
//     same lateness the tick timer suffers;
//   - heartbeat round trip, on a leader: from a heartbeat handed to the transport to its
//     answer stepped into the core (the follower's answer waits in the leader's socket until
//     the leader's loop reads it, so this includes the leader's own delay twice);
//   - leader silence, on a follower: the gap between two messages from the leader, which is
//     what the follower's election timer measures.

import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import type { Message } from '../raft/index.js';

export interface LoopDelaySnapshot {
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

/** Event-loop delay since start (or the last reset), in milliseconds beyond the timer's period. */
export class LoopDelayMonitor implements Disposable {
  private readonly histogram: IntervalHistogram;

  constructor(private readonly resolutionMs = 10) {
    this.histogram = monitorEventLoopDelay({ resolution: resolutionMs });
    this.histogram.enable();
  }

  snapshot(): LoopDelaySnapshot {
    const h = this.histogram;
    // The histogram records the whole interval between two checks; the delay is what exceeds
    // the period it was asked for.
    const late = (ns: number): number =>
      h.count === 0 ? 0 : Math.max(0, ns / 1e6 - this.resolutionMs);
    return { p50Ms: late(h.percentile(50)), p99Ms: late(h.percentile(99)), maxMs: late(h.max) };
  }

  reset(): void {
    this.histogram.reset();
  }

  [Symbol.dispose](): void {
    this.histogram.disable();
  }
}

/** Most heartbeats remembered per peer while their answers are awaited. */
const maxOutstandingPerPeer = 64;

/**
 * Times heartbeat rounds and gaps between messages from the leader. Fed with every message
 * sent and received; calls `onRoundTrip` and `onLeaderGap` with milliseconds.
 */
export class HeartbeatTimer {
  /** Per peer: heartbeat seq -> when it was sent. Bounded by maxOutstandingPerPeer. */
  private readonly sent = new Map<number, Map<number, number>>();
  private lastFromLeaderMs = 0;
  private lastLeader = 0;

  constructor(
    private readonly nowMs: () => number,
    private readonly onRoundTrip: (ms: number) => void,
    private readonly onLeaderGap: (ms: number) => void,
  ) {}

  sending(m: Message): void {
    if (m.type !== 'heartbeat') return;
    let bySeq = this.sent.get(m.to);
    if (bySeq === undefined) this.sent.set(m.to, (bySeq = new Map<number, number>()));
    if (bySeq.has(m.seq)) return; // a resend of the same round: time the first
    bySeq.set(m.seq, this.nowMs());
    if (bySeq.size > maxOutstandingPerPeer) {
      const oldest = bySeq.keys().next().value as number;
      bySeq.delete(oldest);
    }
  }

  received(m: Message): void {
    if (m.type === 'heartbeat-resp') {
      const bySeq = this.sent.get(m.from);
      const at = bySeq?.get(m.seq);
      if (bySeq === undefined || at === undefined) return;
      this.onRoundTrip(this.nowMs() - at);
      // Rounds are numbered upwards: older ones still unanswered never will be counted.
      for (const seq of bySeq.keys()) if (seq <= m.seq) bySeq.delete(seq);
      return;
    }
    if (m.type !== 'append' && m.type !== 'heartbeat') return;
    const now = this.nowMs();
    if (m.from === this.lastLeader && this.lastFromLeaderMs > 0)
      this.onLeaderGap(now - this.lastFromLeaderMs);
    this.lastLeader = m.from;
    this.lastFromLeaderMs = now;
  }
}
