// The dashboard's event feed on a clock the test moves: what a page is sent when it starts
// following and on each look, that a silent or failing member shows within peerTimeoutMs
// without holding up the rest, the bound on streams and on a stream's unread bytes, and that
// closing (or the last page leaving) stops every timer and every question to the members.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FlotillaError } from '../../src/base/errors.js';
import type { Clock } from '../../src/host/contracts.js';
import type { EventSink } from '../../src/api/http.js';
import type { MemberView, TimelineEntry } from '../../src/api/dashboard-routes.js';
import type { NodeStatus } from '../../src/api/types.js';
import { DashboardFeed, RateSampler, type MemberRow } from '../../src/server/dashboard.js';

class FakeClock implements Clock {
  now = 0;
  private next = 1;
  readonly timers = new Map<number, { at: number; fn: () => void }>();
  nowMs(): number {
    return this.now;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.next++;
    this.timers.set(id, { at: this.now + ms, fn });
    return id;
  }
  clearTimeout(h: unknown): void {
    this.timers.delete(h as number);
  }
  /** Runs every timer due within `ms`, in order, letting promises settle after each. */
  async advance(ms: number): Promise<void> {
    const end = this.now + ms;
    for (;;) {
      await settle();
      const due = [...this.timers]
        .filter(([, t]) => t.at <= end)
        .sort((a, b) => a[1].at - b[1].at)[0];
      if (due === undefined) break;
      this.timers.delete(due[0]);
      this.now = due[1].at;
      due[1].fn();
      await settle();
    }
    this.now = end;
    await settle();
  }
}

async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
}

class Sink implements EventSink {
  readonly events: [string, unknown][] = [];
  readonly controller = new AbortController();
  lag = 0;
  get signal(): AbortSignal {
    return this.controller.signal;
  }
  send(event: string, data: unknown): void {
    this.events.push([event, data]);
  }
  buffered(): number {
    return this.lag;
  }
  of(event: string): unknown[] {
    return this.events.filter(([e]) => e === event).map(([, d]) => d);
  }
  lastCluster(): MemberRow[] {
    const c = this.of('cluster').at(-1) as { members: MemberRow[] } | undefined;
    assert.ok(c !== undefined, `no cluster event among ${this.events.map(([e]) => e).join(',')}`);
    return c.members;
  }
}

function status(id: number, role: NodeStatus['role'], term: number): NodeStatus {
  return {
    id,
    pid: 1,
    role,
    term,
    leader: 1,
    commit: 10,
    applied: 10,
    lastIndex: 10,
    firstIndex: 1,
    revision: 5,
    recovering: false,
    members: [],
    snapshotTransfers: [],
  };
}

function entry(node: number, atMs: number, kind: string): TimelineEntry {
  return {
    seq: 1,
    atMs,
    lastMs: atMs,
    count: 1,
    node,
    group: 0,
    kind,
    term: 2,
    peer: 0,
    reason: kind,
  };
}

interface Peer {
  answer: 'ok' | 'hang' | 'fail';
  asked: number;
  timeline: { version: number; entries: TimelineEntry[] };
}

function setup(o: { maxStreams?: number } = {}) {
  const clock = new FakeClock();
  const peers = new Map<string, Peer>([
    [
      'http://n2',
      {
        answer: 'ok',
        asked: 0,
        timeline: { version: 1, entries: [entry(2, 50, 'become-follower')] },
      },
    ],
    ['http://n3', { answer: 'ok', asked: 0, timeline: { version: 0, entries: [] } }],
  ]);
  let queues: unknown = { applied: 3, queues: [] };
  const sampler = new RateSampler(clock);
  const feed = new DashboardFeed({
    selfId: 1,
    clock,
    periodMs: 250,
    peerTimeoutMs: 750,
    maxStreams: o.maxStreams ?? 4,
    maxBufferedBytes: 1_000,
    timelineLines: 10,
    members: () => [
      { id: 1, client: 'http://n1' },
      { id: 2, client: 'http://n2' },
      { id: 3, client: 'http://n3' },
    ],
    local: (version) => ({
      status: status(1, 'leader', 2),
      leaderContactAgoMs: null,
      inflight: { '2': 0, '3': 1 },
      timeline: version === 7 ? null : { version: 7, entries: [entry(1, 40, 'become-leader')] },
    }),
    fetchMember: (client, version, signal) => {
      const p = peers.get(client) as Peer;
      p.asked++;
      if (p.answer === 'fail') return Promise.reject(new Error('connect ECONNREFUSED'));
      if (p.answer === 'hang')
        return new Promise((_, reject) =>
          signal.addEventListener('abort', () => reject(new Error('aborted')), { once: true }),
        );
      const view: MemberView = {
        status: status(Number(client.slice(-1)), 'follower', 2),
        leaderContactAgoMs: 20,
        inflight: {},
        timeline: version === p.timeline.version ? null : p.timeline,
      };
      return Promise.resolve(view);
    },
    queues: () => queues,
    sampler,
  });
  return { clock, peers, feed, sampler, setQueues: (q: unknown) => (queues = q) };
}

void test('a page gets the history at once, then every member, the merged timeline and the queues', async () => {
  const { clock, feed, sampler } = setup();
  sampler.write(2);
  sampler.sample();
  const page = new Sink();
  const done = feed.follow(page);
  assert.deepEqual(
    page.events.slice(0, 2).map(([e]) => e),
    ['hello', 'metrics'],
  );
  assert.equal((page.of('metrics')[0] as unknown[]).length, 1, 'the sample taken before it came');
  await clock.advance(250);
  const rows = page.lastCluster();
  assert.deepEqual(
    rows.map((r) => [r.id, r.error, r.view?.status.role]),
    [
      [1, null, 'leader'],
      [2, null, 'follower'],
      [3, null, 'follower'],
    ],
  );
  assert.equal(rows[0]?.view?.inflight['3'], 1);
  assert.ok(!('timeline' in (rows[1]?.view ?? {})), 'timelines travel apart from the members');
  const timeline = page.of('timeline').at(-1) as TimelineEntry[];
  assert.deepEqual(
    timeline.map((e) => [e.node, e.kind]),
    [
      [1, 'become-leader'],
      [2, 'become-follower'],
    ],
    'merged in time order',
  );
  feed.close();
  await done;
});

void test('sends the timeline and the queues only when they change; the members at each look', async () => {
  const { clock, feed, setQueues } = setup();
  const page = new Sink();
  const done = feed.follow(page);
  await clock.advance(1_000);
  const clusters = page.of('cluster').length;
  assert.ok(clusters >= 4, `a cluster event per look, got ${clusters}`);
  assert.equal(page.of('queues').length, 1);
  assert.equal(page.of('timeline').length, 2, 'this node first, then with node 2 merged');
  setQueues({ applied: 4, queues: [{ queue: 'mail', paused: false, counts: {}, totals: {} }] });
  await clock.advance(250);
  assert.equal(page.of('queues').length, 2);
  // A page arriving later gets what is known at once, without waiting for a look.
  const late = new Sink();
  const lateDone = feed.follow(late);
  assert.deepEqual(
    late.events.map(([e]) => e),
    ['hello', 'metrics', 'cluster', 'timeline', 'queues'],
  );
  feed.close();
  await Promise.all([done, lateDone]);
});

void test('a member that stops answering shows within peerTimeoutMs; one that refuses, at the next look; the others go on', async () => {
  const { clock, peers, feed } = setup();
  const page = new Sink();
  const done = feed.follow(page);
  await clock.advance(500);
  (peers.get('http://n2') as Peer).answer = 'hang';
  (peers.get('http://n3') as Peer).answer = 'fail';
  await clock.advance(500);
  let rows = page.lastCluster();
  assert.match(rows[2]?.error ?? '', /ECONNREFUSED/);
  assert.equal(rows[1]?.error, null, 'not yet: 750 ms have not passed');
  await clock.advance(500);
  rows = page.lastCluster();
  assert.match(rows[1]?.error ?? '', /^no answer for \d+ ms$/);
  assert.equal(rows[1]?.view?.status.role, 'follower', 'its last view is kept');
  assert.equal(rows[0]?.error, null);
  assert.equal(rows[0]?.answeredAgoMs, 0, 'this node is looked at every time');
  assert.equal(
    (peers.get('http://n2') as Peer).asked,
    4,
    'a member is asked again only once it answered',
  );
  // It answers again: shown healthy at the next look after its answer.
  (peers.get('http://n3') as Peer).answer = 'ok';
  await clock.advance(500);
  assert.equal(page.lastCluster()[2]?.error, null);
  feed.close();
  await done;
});

void test('streams are bounded; a page that stops reading is dropped; the last page leaving stops the looks', async () => {
  const { clock, peers, feed } = setup({ maxStreams: 2 });
  const a = new Sink();
  const b = new Sink();
  const aDone = feed.follow(a);
  const bDone = feed.follow(b);
  assert.throws(
    () => feed.checkRoom(),
    (e: unknown) => e instanceof FlotillaError && e.code === 'OVERLOADED',
  );
  assert.throws(
    () => void feed.follow(new Sink()),
    (e: unknown) => e instanceof FlotillaError && e.code === 'OVERLOADED',
  );
  b.lag = 5_000;
  await clock.advance(250);
  await bDone;
  assert.equal(feed.size(), 1, 'the lagging page was dropped');
  a.controller.abort();
  await aDone;
  assert.equal(feed.size(), 0);
  assert.equal(clock.timers.size, 0, 'no look is scheduled with nobody following');
  const asked = (peers.get('http://n2') as Peer).asked;
  await clock.advance(5_000);
  assert.equal((peers.get('http://n2') as Peer).asked, asked, 'nobody is asked anything');
});

void test('close ends every stream, aborts questions in flight, and refuses new pages', async () => {
  const { clock, peers, feed } = setup();
  (peers.get('http://n2') as Peer).answer = 'hang';
  const page = new Sink();
  const done = feed.follow(page);
  await clock.advance(250);
  feed.close();
  await done;
  assert.equal(clock.timers.size, 0);
  assert.throws(
    () => feed.checkRoom(),
    (e: unknown) => e instanceof FlotillaError && e.code === 'SHUTTING_DOWN',
  );
});

void test('the sampler closes each second into a sample of counts and latency percentiles, keeping the last few', () => {
  const clock = new FakeClock();
  const s = new RateSampler(clock, 3);
  const seen: number[] = [];
  s.onSample((x) => seen.push(x.writes));
  for (let i = 1; i <= 100; i++) s.write(i);
  s.read();
  s.appliedEntries(7);
  clock.now = 1_000;
  const first = s.sample();
  assert.deepEqual(first, {
    atMs: 1_000,
    writes: 100,
    reads: 1,
    applied: 7,
    writeP50Ms: 51,
    writeP99Ms: 100,
  });
  const quiet = s.sample();
  assert.equal(quiet.writes, 0);
  assert.equal(quiet.writeP99Ms, 0, "no writes: no latency, not the last second's");
  s.sample();
  s.sample();
  assert.equal(s.history().length, 3);
  assert.deepEqual(seen, [100, 0, 0, 0]);
  s.start();
  assert.equal(clock.timers.size, 1);
  s.stop();
  assert.equal(clock.timers.size, 0);
});
