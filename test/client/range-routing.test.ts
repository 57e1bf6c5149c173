// The client's range cache (src/client/range-routing.ts) on its own: the range a request's
// keys lie in must be the one a node would route it to (checked against the node's routeSpans
// on random maps and spans, and shown to catch a planted mistake); the spans of each request
// body; and the cache's refreshes: lazy and single-flight, after the age bound, after the
// signs of a stale map (an answer from another node, NOT_LEADER, WRONG_RANGE, a node down),
// never more often than the minimum interval, backing off after failures, and never taking a
// malformed map or an older one.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { FlotillaError } from '../../src/base/errors.js';
import {
  RangeRouting,
  rangeOfSpans,
  spansOfBody,
  type KeySpan,
  type RangeMapSnapshot,
} from '../../src/client/range-routing.js';
import { RangeMap } from '../../src/ranges/range-map.js';
import type { RangeDescriptor } from '../../src/ranges/types.js';
import { routeSpans } from '../../src/server/range-router.js';

const b = (s: string): Uint8Array => new TextEncoder().encode(s);
const b64 = (s: string): string => Buffer.from(s).toString('base64');

/** A map cut at `cuts` (sorted, distinct, non-empty), range i on replicas [1, 2, 3]. */
function mapAt(cuts: readonly Uint8Array[], version = 1): RangeMap {
  const bounds = [new Uint8Array(0), ...cuts];
  const list: RangeDescriptor[] = bounds.map((start, i) => ({
    id: i === 0 ? 0 : i + 2,
    start,
    end: cuts[i] ?? null,
    generation: cuts.length,
    replicas: [1, 2, 3],
  }));
  return RangeMap.fromDescriptors(version, list);
}

/** The node's answer for spans: the range id, or null when it refuses (CROSS_RANGE, WRONG_RANGE). */
function nodeRoutes(map: RangeMap, spans: readonly KeySpan[]): number | null {
  try {
    return routeSpans(map.ranges(), spans, 'request');
  } catch (err) {
    assert.ok(err instanceof FlotillaError);
    assert.ok(err.code === 'CROSS_RANGE' || err.code === 'WRONG_RANGE', err.code);
    return null;
  }
}

const keyArb = fc
  .array(fc.integer({ min: 0x61, max: 0x64 }), { minLength: 0, maxLength: 3 })
  .map((a) => Uint8Array.from(a));
const cutsArb = fc
  .uniqueArray(
    keyArb.filter((k) => k.length > 0),
    { maxLength: 5, selector: (k) => Buffer.from(k).toString('hex') },
  )
  .map((ks) => [...ks].sort((x, y) => Buffer.compare(x, y)));
const spanArb: fc.Arbitrary<KeySpan> = fc.record({
  key: keyArb,
  rangeEnd: fc.oneof(fc.constant(null), fc.constant(Uint8Array.of(0)), keyArb),
});

type Router = (map: RangeMap, spans: readonly KeySpan[]) => number | null;

function agreesWithNode(router: Router): fc.IProperty<[Uint8Array[], KeySpan[]]> {
  return fc.property(cutsArb, fc.array(spanArb, { minLength: 1, maxLength: 3 }), (cuts, spans) => {
    const map = mapAt(cuts);
    assert.equal(router(map, spans), nodeRoutes(map, spans));
  });
}

const clientRouter: Router = (map, spans) => rangeOfSpans(map, spans)?.id ?? null;

void describe('the range of a request, as the client sees it', () => {
  void it('is the range a node routes the request to, or none when the node would refuse it', () => {
    fc.assert(agreesWithNode(clientRouter), { numRuns: 2_000 });
  });

  void it('catches a router that takes an interval for its first key', () => {
    const planted: Router = (map, spans) =>
      clientRouter(
        map,
        spans.map((s) => ({ key: s.key, rangeEnd: null })),
      );
    assert.throws(() => fc.assert(agreesWithNode(planted), { numRuns: 2_000 }));
  });

  void it('reads the spans of each request body: put, delete, range, prefix, txn, base64', () => {
    const show = (spans: KeySpan[] | null): string[] | null =>
      spans?.map(
        (s) =>
          `${Buffer.from(s.key).toString()}..${s.rangeEnd === null ? '' : Buffer.from(s.rangeEnd).toString('hex')}`,
      ) ?? null;
    assert.deepEqual(show(spansOfBody('/v1/kv/put', { key: 'a', value: 'x' })), ['a..']);
    assert.deepEqual(show(spansOfBody('/v1/kv/range', { key: 'a', rangeEnd: 'c' })), ['a..63']);
    assert.deepEqual(show(spansOfBody('/v1/kv/delete', { key: 'ab', prefix: true })), ['ab..6163']);
    assert.deepEqual(show(spansOfBody('/v1/kv/put', { key: b64('q'), encoding: 'base64' })), [
      'q..',
    ]);
    assert.deepEqual(
      show(
        spansOfBody('/v1/kv/txn', {
          compare: [{ key: 'a', target: 'version', op: '=', value: 0 }],
          success: [{ put: { key: 'b', value: 'x' } }],
          failure: [{ range: { key: 'c', prefix: true } }, { delete: { key: 'd' } }],
        }),
      ),
      ['a..', 'b..', 'c..64', 'd..'],
    );
    // Not a key-value request, or one the node will refuse: not routed.
    assert.equal(spansOfBody('/v1/queue/add', { key: 'a' }), null);
    assert.equal(spansOfBody('/v1/kv/put', { value: 'x' }), null);
    assert.equal(spansOfBody('/v1/kv/put', { key: 'a', encoding: 'hex' }), null);
    assert.equal(spansOfBody('/v1/kv/txn', { compare: [], success: [] }), null);
  });
});

/** A snapshot of `map` as GET /v1/ranges?encoding=base64 and the members answer it. */
function snapshot(map: RangeMap, leaders: Record<number, number>): RangeMapSnapshot {
  return {
    ranges: {
      version: map.version,
      ranges: map.ranges().map((d) => ({
        id: d.id,
        start: Buffer.from(d.start).toString('base64'),
        end: d.end === null ? null : Buffer.from(d.end).toString('base64'),
        generation: d.generation,
        replicas: [...d.replicas],
        leader: leaders[d.id] ?? 0,
        keys: 0,
        bytes: 0,
        writesPerSec: 0,
        readsPerSec: 0,
        applied: 0,
      })),
      node: 1,
    },
    members: [1, 2, 3].map((id) => ({ id, client: `http://node${id}:80/` })),
  };
}

/** A cache over a scripted fetch and a clock the test moves. */
function harness(answers: (() => RangeMapSnapshot)[]) {
  const clock = { now: 1_000 };
  let fetches = 0;
  let release: (() => void) | null = null;
  let gate: Promise<void> | null = null;
  const routing = new RangeRouting({
    fetch: async () => {
      fetches++;
      if (gate !== null) await gate;
      const next = answers.shift();
      if (next === undefined) throw new FlotillaError('CONNECTION', 'no answer scripted');
      return next();
    },
    now: () => clock.now,
    maxAgeMs: 10_000,
    minRefreshIntervalMs: 100,
    maxBackoffMs: 1_000,
    downMs: 500,
    maxNodes: 8,
  });
  return {
    routing,
    clock,
    fetches: () => fetches,
    /** Holds fetches until the returned function is called. */
    hold: (): (() => void) => {
      gate = new Promise<void>((r) => (release = r));
      return () => {
        gate = null;
        release?.();
      };
    },
  };
}

const key = (k: string): KeySpan[] => [{ key: b(k), rangeEnd: null }];

function must<T>(v: T | null): T {
  assert.ok(v !== null, 'a target');
  return v;
}

void describe('the range cache', () => {
  const two = mapAt([b('m')]);
  const three = mapAt([b('m'), b('t')], 2);

  void it('fetches the map at the first request, once for all the requests waiting for it', async () => {
    const h = harness([() => snapshot(two, { 0: 2, 3: 3 })]);
    const release = h.hold();
    const waiting = [h.routing.target(key('a'), 0), h.routing.target(key('z'), 0)];
    release();
    const [a, z] = await Promise.all(waiting);
    assert.equal(h.fetches(), 1);
    assert.deepEqual([a?.range, a?.node, a?.url, a?.leader], [0, 2, 'http://node2:80', true]);
    assert.deepEqual([z?.range, z?.node, z?.url], [3, 3, 'http://node3:80']);
    // Keys in two ranges: not routed.
    assert.equal(await h.routing.target([{ key: b('a'), rangeEnd: b('z') }], 0), null);
  });

  void it('without a leader, tries the replicas in turn', async () => {
    const h = harness([() => snapshot(two, {})]);
    const nodes = [];
    for (let attempt = 0; attempt < 4; attempt++)
      nodes.push((await h.routing.target(key('a'), attempt))?.node);
    assert.deepEqual(nodes, [1, 2, 3, 1]);
  });

  void it('routes nothing while no map can be had, and backs off between failed fetches', async () => {
    const h = harness([]);
    assert.equal(await h.routing.target(key('a'), 0), null);
    assert.equal(h.routing.lastError?.code, 'CONNECTION');
    assert.equal(await h.routing.target(key('a'), 0), null);
    assert.equal(h.fetches(), 1, 'no second fetch within the back-off');
    h.clock.now += 1_000;
    await h.routing.target(key('a'), 0);
    assert.equal(h.fetches(), 2);
  });

  void it('refuses a malformed map and keeps the one it has', async () => {
    const broken = snapshot(two, {});
    const gap = {
      ...broken,
      ranges: { ...broken.ranges, ranges: broken.ranges.ranges.slice(1) },
    };
    const h = harness([() => snapshot(two, { 0: 1 }), () => gap]);
    assert.equal((await h.routing.target(key('a'), 0))?.node, 1);
    h.clock.now += 20_000;
    await h.routing.refresh();
    assert.equal(h.routing.lastError?.code, 'BAD_RESPONSE');
    assert.match(h.routing.lastError?.message ?? '', /not valid/);
    assert.equal(h.routing.version, 1);
    assert.equal((await h.routing.target(key('a'), 0))?.node, 1);
  });

  void it('refreshes a map past its age without holding up the request', async () => {
    const h = harness([() => snapshot(two, { 0: 1 }), () => snapshot(three, { 0: 1 })]);
    await h.routing.target(key('p'), 0);
    h.clock.now += 10_001;
    const stale = await h.routing.target(key('p'), 0);
    assert.equal(stale?.range, 3, 'answered from the map it had');
    await h.routing.refresh();
    assert.equal(h.routing.version, 2);
    assert.equal((await h.routing.target(key('p'), 0))?.range, 3);
    assert.equal((await h.routing.target(key('u'), 0))?.range, 4);
    assert.equal(h.fetches(), 2);
  });

  void it('replaces a planted stale map when a node answers WRONG_RANGE, and waits for it', async () => {
    const h = harness([() => snapshot(two, { 3: 2 }), () => snapshot(three, { 3: 2, 4: 3 })]);
    const t = must(await h.routing.target(key('u'), 0));
    assert.deepEqual([t.range, t.node], [3, 2]);
    h.clock.now += 100;
    const wait = h.routing.failed(t, new FlotillaError('WRONG_RANGE', 'split'));
    assert.ok(wait !== null, 'WRONG_RANGE is waited on');
    await wait;
    const again = await h.routing.target(key('u'), 1);
    assert.deepEqual([again?.range, again?.node], [4, 3]);
    // A second failure of a choice made from the old map asks for nothing more.
    await h.routing.failed(t, new FlotillaError('WRONG_RANGE', 'split'));
    assert.equal(h.fetches(), 2);
  });

  void it('learns a leader from an answer by another node and from NOT_LEADER, and refreshes', async () => {
    const h = harness([
      () => snapshot(two, { 0: 1 }),
      () => snapshot(two, { 0: 2 }),
      () => snapshot(two, { 0: 3 }),
    ]);
    const t = must(await h.routing.target(key('a'), 0));
    assert.equal(t.node, 1);
    // Answered by the node asked: nothing learned, nothing fetched.
    h.routing.answered(t, 1);
    assert.equal(h.fetches(), 1);
    h.routing.answered(t, 2);
    assert.equal(h.routing.leaderOf(0), 2, 'learned at once');
    assert.equal(h.fetches(), 1, 'not before the minimum interval');
    h.clock.now += 100;
    const u = must(await h.routing.target(key('a'), 0));
    assert.equal(u.node, 2);
    void h.routing.failed(u, new FlotillaError('NOT_LEADER', 'moved', false, 3));
    assert.equal(h.routing.leaderOf(0), 3);
    await h.routing.refresh();
    assert.equal(h.fetches(), 2);
  });

  void it('learns the leader from a write that the replica asked applied itself', async () => {
    // The leader unknown, the first replica hung (a frozen process: its connections open,
    // unanswered): had the cache not learned that the second replica leads, every write
    // would try the hung one first and wait out a whole attempt.
    const h = harness([() => snapshot(two, {})]);
    const t = must(await h.routing.target(key('a'), 0));
    assert.deepEqual([t.node, t.leader], [1, false]);
    void h.routing.failed(t, new FlotillaError('TIMEOUT', 'no answer'));
    const u = must(await h.routing.target(key('a'), 1));
    assert.equal(u.node, 2);
    // A read served by the replica asked says nothing about who leads.
    h.routing.answered(u, 2, { write: false });
    assert.equal(h.routing.leaderOf(0), 0);
    h.routing.answered(u, 2, { write: true });
    assert.equal(h.routing.leaderOf(0), 2);
    const next = must(await h.routing.target(key('a'), 0));
    assert.deepEqual([next.node, next.leader], [2, true]);
  });

  void it('passes over a node whose connection failed, for a while', async () => {
    const h = harness([() => snapshot(two, { 0: 1 }), () => snapshot(two, { 0: 1 })]);
    const t = must(await h.routing.target(key('a'), 0));
    assert.equal(t.node, 1);
    void h.routing.failed(t, new FlotillaError('CONNECTION', 'refused'));
    await h.routing.refresh();
    const next = await h.routing.target(key('a'), 1);
    assert.ok(next !== null && next.node !== 1, `another node, got ${next?.node}`);
    h.clock.now += 501;
    assert.equal((await h.routing.target(key('a'), 0))?.node, 1, 'back once its time is up');
  });

  void it('keeps a newer map when a lagging node answers an older one', async () => {
    const h = harness([() => snapshot(three, { 0: 1 }), () => snapshot(two, { 0: 2 })]);
    await h.routing.target(key('a'), 0);
    h.clock.now += 20_000;
    await h.routing.refresh();
    assert.equal(h.routing.version, 2);
    assert.equal((await h.routing.target(key('u'), 0))?.range, 4);
    assert.equal(h.routing.leaderOf(0), 2, "its leaders are this moment's news");
  });
});
