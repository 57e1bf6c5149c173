// The rounds of a traced queue group (queue-trace.ts): from every member's trace points
// (src/host/trace.ts), each write of the leader is one round, timed step by step from the first
// entry proposed in it to the answers written, then the client's part up to the next request.

import type { TraceEvent } from '../../src/host/trace.js';
import { NODES, type Point } from './members.js';

/** The position of the first of the ascending `xs` at or above `x` (their length if none). */
function firstAtLeast(xs: readonly number[], x: number): number {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((xs[mid] as number) >= x) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/** A series of one node's points of one event (and peer), in time order. */
class Series {
  private readonly t: number[] = [];
  private readonly index: number[] = [];
  /** The highest index seen up to each point: when an index was first covered. */
  private readonly covered: number[] = [];

  push(p: Point): void {
    this.t.push(p.t);
    this.index.push(p.index);
    this.covered.push(Math.max(p.index, this.covered[this.covered.length - 1] ?? 0));
  }

  get length(): number {
    return this.t.length;
  }

  pointAt(i: number): { t: number; index: number } {
    return { t: this.t[i] as number, index: this.index[i] as number };
  }

  /** The first time a point of the series covered `index` (an index at or above it). */
  covering(index: number): number | undefined {
    return this.t[firstAtLeast(this.covered, index)];
  }

  /** The first point at or after `t`. */
  after(t: number): number | undefined {
    return this.t[this.firstAtOrAfter(t)];
  }

  /** The last point before `t`. */
  before(t: number): number | undefined {
    const i = this.firstAtOrAfter(t) - 1;
    return i >= 0 ? this.t[i] : undefined;
  }

  private firstAtOrAfter(t: number): number {
    return firstAtLeast(this.t, t);
  }
}

/** Every node's points, as series by node, event and peer. */
class Timeline {
  private readonly series = new Map<string, Series>();

  constructor(points: readonly Point[]) {
    const sorted = [...points].sort((a, b) => a.t - b.t);
    for (const p of sorted) this.of(p.node, p.event, p.peer).push(p);
  }

  of(node: number, event: TraceEvent, peer = 0): Series {
    const key = `${node}:${event}:${peer}`;
    let s = this.series.get(key);
    if (s === undefined) this.series.set(key, (s = new Series()));
    return s;
  }
}

export const QUEUE_STEPS = [
  'request read -> proposed',
  'first proposal -> leader write start',
  'leader write',
  'first proposal -> append sent',
  'append sent -> follower received',
  'append received -> follower write start',
  'follower write',
  'follower write end -> ack received',
  'max(ack, leader write end) -> committed',
  'committed -> applied',
  'applied -> answers written',
  'round: first proposal -> answers written',
  'answers written -> next request read (client)',
] as const;

export interface QueueRounds {
  readonly steps: Map<string, number[]>;
  readonly rounds: number;
  /** Rounds whose first entry was proposed while the leader's previous write was in flight. */
  readonly waited: number;
  /** Rounds whose leader write ended after the first follower's acknowledgement arrived. */
  readonly leaderLast: number;
  /**
   * For each round whose second follower's acknowledgement arrived before the leader's write
   * ended: how much sooner (ms) a commit on the followers' writes alone (thesis §10.2.1) would
   * have been ready than the one the leader waited for (its write and the first ack).
   */
  readonly followersSooner: number[];
  /**
   * For every round: how much sooner (ms, 0 when not at all) its commit would have been ready
   * had the leader's write started with the round's first append, as a second write beside the
   * one in flight, rather than behind it, each write taking as long as it did. An estimate of
   * what pipelined leader writes would save (two writes in flight share the disk and the cores,
   * so it is an upper bound).
   */
  readonly pipelinedSooner: number[];
  readonly seconds: number;
}

/** Each leader write's steps, in ms, from the trace points of the queue group's members. */
export function queueRounds(points: readonly Point[], leader: number): QueueRounds {
  const tl = new Timeline(points);
  const steps = new Map<string, number[]>(QUEUE_STEPS.map((s) => [s, []]));
  const add = (
    step: (typeof QUEUE_STEPS)[number],
    a: number | undefined,
    b: number | undefined,
  ) => {
    if (a !== undefined && b !== undefined && Number.isFinite(a - b)) steps.get(step)?.push(a - b);
  };
  const followers = Array.from({ length: NODES }, (_, i) => i + 1).filter((id) => id !== leader);
  const L = (e: TraceEvent, peer = 0) => tl.of(leader, e, peer);
  const starts = L('persist-start');
  const ends = L('persist-end');
  const proposed = L('proposed');
  const received = L('wire-received');
  const answered = L('wire-answered');
  let waited = 0;
  let leaderLast = 0;
  const followersSooner: number[] = [];
  const pipelinedSooner: number[] = [];
  let rounds = 0;
  // The highest index written so far: a write of the hard state alone (index 0) or of nothing
  // new starts no round, and the next round's entries follow the last ones written.
  let prevLast = starts.length > 0 ? starts.pointAt(0).index : 0;
  for (let k = 1; k < starts.length; k++) {
    const { t: start, index: last } = starts.pointAt(k);
    if (last <= prevLast) continue;
    const written = prevLast;
    prevLast = last;
    const firstProposed = proposed.covering(written + 1);
    const end = ends.covering(last);
    if (firstProposed === undefined || firstProposed > start || end === undefined) continue;
    rounds++;
    if (firstProposed < (ends.covering(written) ?? -Infinity)) waited++;
    add('request read -> proposed', firstProposed, received.before(firstProposed));
    add('first proposal -> leader write start', start, firstProposed);
    add('leader write', end, start);
    // The follower whose acknowledgement of the round came first made it commit.
    const acks = followers
      .map((id) => ({ id, t: L('ack-received', id).covering(last) ?? Infinity }))
      .sort((a, b) => a.t - b.t);
    const f = acks[0];
    if (f === undefined || f.t === Infinity) continue;
    const second = acks[1]?.t ?? Infinity;
    if (second < Math.max(f.t, end)) followersSooner.push(Math.max(f.t, end) - second);
    const F = (e: TraceEvent, peer = 0) => tl.of(f.id, e, peer);
    const firstSent = L('append-sent', f.id).covering(written + 1);
    if (firstSent !== undefined) {
      const wait = Math.max(0, start - firstSent);
      pipelinedSooner.push(Math.max(f.t, end) - Math.max(f.t, end - wait));
    }
    const sent = L('append-sent', f.id).covering(last);
    const got = F('append-received', leader).covering(last);
    const fStart = F('persist-start').covering(last);
    const fEnd = F('persist-end').covering(last);
    add('first proposal -> append sent', firstSent, firstProposed);
    add('append sent -> follower received', got, sent);
    add('append received -> follower write start', fStart, got);
    add('follower write', fEnd, fStart);
    add('follower write end -> ack received', f.t, fEnd);
    const committed = L('committed').covering(last);
    if (end > f.t) leaderLast++;
    add('max(ack, leader write end) -> committed', committed, Math.max(f.t, end));
    const applied = L('applied').covering(last);
    add('committed -> applied', applied, committed);
    const out = applied === undefined ? undefined : answered.after(applied);
    add('applied -> answers written', out, applied);
    add('round: first proposal -> answers written', out, firstProposed);
    if (out !== undefined)
      add('answers written -> next request read (client)', received.after(out), out);
  }
  const first = starts.length > 0 ? starts.pointAt(0).t : 0;
  const lastT = starts.length > 0 ? starts.pointAt(starts.length - 1).t : 0;
  return {
    steps,
    rounds,
    waited,
    leaderLast,
    followersSooner,
    pipelinedSooner,
    seconds: (lastT - first) / 1000,
  };
}
