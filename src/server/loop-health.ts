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
//     what the follower's election timer measures;
//   - stalls: each stretch in which the loop ran nothing for long enough to cost an election,
//     with when it ended, so that an election can be told apart from a fault (LoopStallWatch).

import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import type { Clock } from '../host/contracts.js';
import type { Message } from '../raft/index.js';
import { Periodic } from './periodic.js';

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

/** One stretch in which the event loop ran nothing. */
export interface LoopStall {
  /** When the loop ran again (the clock's milliseconds). */
  readonly endMs: number;
  /** How much later than asked the watch's timer fired: the stall, to within one period. */
  readonly stalledMs: number;
}

export interface LoopStallWatchOptions {
  readonly clock: Clock;
  /** How often the watch's timer asks to run; the precision of a stall's length. */
  readonly periodMs: number;
  /** The shortest stall reported. */
  readonly thresholdMs: number;
  readonly onStall: (stall: LoopStall) => void;
}

/**
 * Reports every stall of the event loop of at least `thresholdMs`: a timer asks to run every
 * `periodMs`, and fires late by as long as nothing ran, whether the loop was busy (a long
 * synchronous task, garbage collection) or the whole process was not scheduled (a machine with
 * more runnable work than cores). The delay monitor above says how often timers are late; this
 * says when, so that an election can be matched with the stall that caused it.
 */
export class LoopStallWatch {
  private readonly timer: Periodic;
  private lastMs = 0;
  /** Stalls reported since start. */
  stalls = 0;
  /** The longest stall reported since start, in ms (0 before one). */
  longestMs = 0;

  constructor(private readonly o: LoopStallWatchOptions) {
    if (!(o.periodMs > 0) || !(o.thresholdMs > 0))
      throw new RangeError(
        `A loop stall watch needs a period and a threshold above 0 ms, got ${o.periodMs} and ${o.thresholdMs}`,
      );
    this.timer = new Periodic(o.clock, o.periodMs, () => this.check());
  }

  start(): void {
    this.lastMs = this.o.clock.nowMs();
    this.timer.start();
  }

  stop(): void {
    this.timer.stop();
  }

  private check(): void {
    const now = this.o.clock.nowMs();
    const stalledMs = now - this.lastMs - this.o.periodMs;
    this.lastMs = now;
    if (stalledMs < this.o.thresholdMs) return;
    this.stalls++;
    this.longestMs = Math.max(this.longestMs, stalledMs);
    this.o.onStall({ endMs: now, stalledMs });
  }
}
