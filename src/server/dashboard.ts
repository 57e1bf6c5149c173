// What the dashboard's event stream carries, and how this node gathers it.
//
// `DashboardFeed` is this node's view of the cluster for the pages following it. While at
// least one page follows, it looks every `periodMs` (250 ms) at itself and at what each other
// member last told it (`GET /v1/dashboard/member`, asked again as soon as the previous answer
// came), and pushes to every page what changed: the members (`cluster`), the election timeline
// merged from every member's (`timeline`), the job queues' counts (`queues`), the ranges with
// this node's figures of each (`ranges`). A member that
// has not answered for `peerTimeoutMs` is shown as not answering, without waiting for its
// request to end, so a member that died or froze shows within a second, and a slow member
// never holds up the others' updates. With no page following, it asks nobody anything.
//
// `RateSampler` keeps this node's throughput and write latency, one sample a second for the
// last five minutes, for the charts; a page gets the whole history when it starts following,
// then each sample as it is taken (`sample`).
//
// Both are bounded: streams (`maxStreams`, one more is refused OVERLOADED), the bytes a stream
// may leave unread (a page that stops reading is dropped), the samples, the timeline lines.

import { FlotillaError } from '../base/errors.js';
import type { Clock } from '../host/contracts.js';
import { Deadline } from '../api/deadline.js';
import type { EventSink } from '../api/http.js';
import type { MemberView, TimelineEntry } from '../api/dashboard-routes.js';

export interface RateSample {
  readonly atMs: number;
  /** Writes this node proposed that applied, in the second before `atMs`. */
  readonly writes: number;
  /** Reads this node served. */
  readonly reads: number;
  /** Log entries of the key-value group this node applied. */
  readonly applied: number;
  /** Proposal-to-applied latency of those writes: median and 99th percentile, 0 when none. */
  readonly writeP50Ms: number;
  readonly writeP99Ms: number;
}

/** Latencies kept per second for the percentiles; past it, later ones overwrite earlier. */
const latenciesPerSample = 4_096;

export class RateSampler {
  private writes = 0;
  private reads = 0;
  private applied = 0;
  private latencies: number[] = [];
  private seen = 0;
  private readonly samples: RateSample[] = [];
  private timer: unknown = null;
  private readonly listeners = new Set<(s: RateSample) => void>();

  constructor(
    private readonly clock: Clock,
    /** Samples kept: 300 is five minutes. */
    private readonly keep = 300,
    private readonly everyMs = 1_000,
  ) {}

  write(latencyMs: number): void {
    this.writes++;
    if (this.latencies.length < latenciesPerSample) this.latencies.push(latencyMs);
    else this.latencies[this.seen % latenciesPerSample] = latencyMs;
    this.seen++;
  }

  read(): void {
    this.reads++;
  }

  appliedEntries(n: number): void {
    this.applied += n;
  }

  history(): readonly RateSample[] {
    return this.samples;
  }

  onSample(fn: (s: RateSample) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Closes the current second into a sample (the timer calls it; tests may too). */
  sample(): RateSample {
    const sorted = this.latencies.sort((a, b) => a - b);
    const at = (q: number) =>
      sorted.length === 0
        ? 0
        : (sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number);
    const s: RateSample = {
      atMs: this.clock.nowMs(),
      writes: this.writes,
      reads: this.reads,
      applied: this.applied,
      writeP50Ms: round2(at(0.5)),
      writeP99Ms: round2(at(0.99)),
    };
    this.writes = this.reads = this.applied = this.seen = 0;
    this.latencies = [];
    this.samples.push(s);
    if (this.samples.length > this.keep) this.samples.shift();
    for (const fn of this.listeners) fn(s);
    return s;
  }

  start(): void {
    if (this.timer !== null) return;
    this.timer = this.clock.setTimeout(() => {
      this.timer = null;
      this.sample();
      this.start();
    }, this.everyMs);
  }

  stop(): void {
    if (this.timer !== null) this.clock.clearTimeout(this.timer);
    this.timer = null;
  }
}

function round2(ms: number): number {
  return Math.round(ms * 100) / 100;
}

export interface DashboardFeedOptions {
  readonly selfId: number;
  readonly clock: Clock;
  readonly periodMs: number;
  /** A member silent this long is shown as not answering. */
  readonly peerTimeoutMs: number;
  /** Pages following this node at once; one more is refused OVERLOADED. */
  readonly maxStreams: number;
  /** Bytes a page may leave unread before it is dropped (it reconnects and starts afresh). */
  readonly maxBufferedBytes: number;
  /** Timeline lines sent to a page: the newest of all members' merged. */
  readonly timelineLines: number;
  members(): readonly { readonly id: number; readonly client: string }[];
  /** This node's view, with its timeline if it changed since `timelineVersion`. */
  local(timelineVersion: number): MemberView;
  /** Another member's view, asked over HTTP. */
  fetchMember(client: string, timelineVersion: number, signal: AbortSignal): Promise<MemberView>;
  /** The job queues as this node applied them. */
  queues(): unknown;
  /** The range map with this node's figures of each range (null before it is bootstrapped). */
  ranges?(): unknown;
  readonly sampler: RateSampler;
}

/** What the feed knows of one member. */
interface MemberState {
  client: string;
  view: MemberView | null;
  /** The member's timeline as last received (a member sends it only when it changed). */
  timeline: { version: number; entries: TimelineEntry[] };
  pendingSinceMs: number | null;
  error: string | null;
  answeredAtMs: number | null;
}

/** One member as the `cluster` event shows it. */
export interface MemberRow {
  readonly id: number;
  readonly client: string;
  /** Null while it answers; what went wrong otherwise (its last view, if any, is kept). */
  readonly error: string | null;
  /** Milliseconds since its last answer (0 for this node), or null if it never answered. */
  readonly answeredAgoMs: number | null;
  readonly view: Omit<MemberView, 'timeline'> | null;
}

/** The events sent only when they change. */
type Pushed = 'cluster' | 'timeline' | 'queues' | 'ranges';

interface Stream {
  readonly out: EventSink;
  readonly done: () => void;
}

export class DashboardFeed {
  private readonly states = new Map<number, MemberState>();
  private readonly streams = new Set<Stream>();
  private timer: unknown = null;
  private closed = false;
  private readonly stop = new AbortController();
  /** The JSON last sent of each event, so that an unchanged one is not sent again. */
  private readonly last: Record<Pushed, string> = {
    cluster: '',
    timeline: '',
    queues: '',
    ranges: '',
  };
  private readonly unsample: () => void;

  constructor(private readonly o: DashboardFeedOptions) {
    this.unsample = o.sampler.onSample((s) => this.broadcast('sample', s));
  }

  /** Pages following now. */
  size(): number {
    return this.streams.size;
  }

  checkRoom(): void {
    if (this.closed) throw new FlotillaError('SHUTTING_DOWN', 'The node is shutting down');
    if (this.streams.size >= this.o.maxStreams)
      throw new FlotillaError(
        'OVERLOADED',
        `This node streams to ${this.streams.size} dashboards, its limit; close one or open the dashboard of another member`,
      );
  }

  /** Streams to `out` until it aborts, lags too far, or the node closes. */
  follow(out: EventSink): Promise<void> {
    this.checkRoom();
    return new Promise<void>((resolve) => {
      const stream: Stream = {
        out,
        done: () => {
          if (!this.streams.delete(stream)) return;
          // The signal may be the client connection's, which outlives this stream.
          out.signal.removeEventListener('abort', stream.done);
          resolve();
          if (this.streams.size === 0) this.idle();
        },
      };
      this.streams.add(stream);
      if (out.signal.aborted) {
        stream.done();
        return;
      }
      out.signal.addEventListener('abort', stream.done, { once: true });
      out.send('hello', { node: this.o.selfId, periodMs: this.o.periodMs });
      out.send('metrics', this.o.sampler.history());
      // What is known now goes at once; the rest follows from the next look.
      for (const [event, json] of Object.entries(this.last))
        if (json !== '') out.send(event, JSON.parse(json) as unknown);
      if (this.timer === null) this.cycle();
    });
  }

  /** Ends every stream and stops looking. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.stop.abort();
    this.unsample();
    this.idle();
    for (const s of [...this.streams]) s.done();
  }

  /**
   * Nobody follows: stop looking, and forget what was seen, so that the next page is not shown
   * a cluster as it was minutes ago.
   */
  private idle(): void {
    if (this.timer !== null) this.o.clock.clearTimeout(this.timer);
    this.timer = null;
    this.states.clear();
    this.last.cluster = this.last.timeline = this.last.queues = this.last.ranges = '';
  }

  /** One look: start asking the members that are not being asked, then push what changed. */
  private cycle(): void {
    this.timer = null;
    if (this.closed || this.streams.size === 0) return;
    const now = this.o.clock.nowMs();
    const members = this.o.members();
    for (const m of members) {
      const st = this.stateOf(m.id, m.client);
      if (m.id === this.o.selfId) this.take(st, this.o.local(st.timeline.version), now);
      else if (st.pendingSinceMs === null) this.ask(st);
    }
    for (const id of this.states.keys())
      if (!members.some((m) => m.id === id)) this.states.delete(id);
    this.push('cluster', { atMs: now, self: this.o.selfId, members: this.rows(members, now) });
    this.push('timeline', this.mergedTimeline());
    this.push('queues', this.o.queues());
    if (this.o.ranges !== undefined) this.push('ranges', this.o.ranges());
    this.timer = this.o.clock.setTimeout(() => this.cycle(), this.o.periodMs);
  }

  private stateOf(id: number, client: string): MemberState {
    let st = this.states.get(id);
    if (st === undefined || st.client !== client) {
      st = {
        client,
        view: null,
        timeline: { version: 0, entries: [] },
        pendingSinceMs: null,
        error: null,
        answeredAtMs: null,
      };
      this.states.set(id, st);
    }
    return st;
  }

  private take(st: MemberState, view: MemberView, now: number): void {
    if (view.timeline !== null) st.timeline = view.timeline;
    st.view = view;
    st.error = null;
    st.answeredAtMs = now;
  }

  private ask(st: MemberState): void {
    st.pendingSinceMs = this.o.clock.nowMs();
    // Longer than peerTimeoutMs: a slow answer still lands, though the member already shows
    // as not answering meanwhile.
    const deadline = new Deadline(4 * this.o.peerTimeoutMs, this.stop.signal);
    this.o
      .fetchMember(st.client, st.timeline.version, deadline.signal)
      .then(
        (view) => this.take(st, view, this.o.clock.nowMs()),
        (err: unknown) => {
          st.error = deadline.timedOut
            ? `no answer within ${deadline.timeoutMs} ms`
            : ((err as Error).message ?? String(err));
        },
      )
      .finally(() => {
        deadline[Symbol.dispose]();
        st.pendingSinceMs = null;
      });
  }

  private rows(members: readonly { id: number; client: string }[], now: number): MemberRow[] {
    return members.map((m) => {
      const st = this.states.get(m.id) as MemberState;
      const silentMs = st.pendingSinceMs === null ? 0 : now - st.pendingSinceMs;
      const error =
        st.error ??
        (silentMs >= this.o.peerTimeoutMs ? `no answer for ${Math.round(silentMs)} ms` : null);
      let view: MemberRow['view'] = null;
      if (st.view !== null) {
        const { timeline: _sentApart, ...rest } = st.view;
        view = rest;
      }
      return {
        id: m.id,
        client: m.client,
        error,
        answeredAgoMs: st.answeredAtMs === null ? null : now - st.answeredAtMs,
        view,
      };
    });
  }

  private mergedTimeline(): TimelineEntry[] {
    const all: TimelineEntry[] = [];
    for (const st of this.states.values()) all.push(...st.timeline.entries);
    all.sort((a, b) => a.atMs - b.atMs || a.node - b.node || a.seq - b.seq);
    return all.slice(-this.o.timelineLines);
  }

  /** Sends `data` as `event` to every page, if it differs from what was sent last. */
  private push(event: Pushed, data: unknown): void {
    const json = JSON.stringify(data);
    if (json === this.last[event]) return;
    this.last[event] = json;
    this.broadcast(event, data);
  }

  private broadcast(event: string, data: unknown): void {
    for (const s of [...this.streams]) {
      s.out.send(event, data);
      // A page that stopped reading is dropped rather than held in memory; it reconnects.
      if (s.out.buffered() > this.o.maxBufferedBytes) s.done();
    }
  }
}
