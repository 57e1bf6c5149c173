// Range routing against a running cluster (docs/CLIENT.md, "Range routing"): three in-process
// nodes split into four ranges whose leaders sit on different nodes. A routing client must
// land nearly every request on its range's leader, counted on the nodes themselves (requests
// they forwarded, reads they served without leading the range), while a client without
// routing, given the same load, is forwarded most of the time (so the count can tell them
// apart). After a further split and a leader change the routing client goes on without an
// error, converges on the new leaders, and every write it was told succeeded reads back. Over
// HTTP and over the binary protocol.

import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { FlotillaClient, FlotillaError } from '../../src/client/index.js';
import { TestNodes, postJson, until } from '../server/nodes.js';

/** The keys written, one group per range once split at g, n, u (and later at r). */
const keys = ['a1', 'b2', 'c3', 'h1', 'i2', 'k3', 'o1', 'p2', 'q3', 's1', 'v1', 'w2', 'y3'];

async function counted(c: TestNodes): Promise<{ forwarded: number; followerReads: number }> {
  let forwarded = 0;
  let followerReads = 0;
  for (const n of c.nodes) {
    for (const v of (await n.metrics.forwarded.get()).values)
      if (String(v.labels['path']).startsWith('/v1/kv/')) forwarded += v.value;
    for (const v of (await n.metrics.followerReads.get()).values) followerReads += v.value;
  }
  return { forwarded, followerReads };
}

/** The range ids of the map, in key order, once every node runs `count` ranges. */
async function rangesOnEveryNode(c: TestNodes, count: number): Promise<number[]> {
  return until(`every node runs ${count} ranges and the map lists them`, async () => {
    if (!c.nodes.every((n) => n.lanes.count() === count)) return null;
    const res = await fetch(`${c.url(1)}/v1/ranges`, { signal: AbortSignal.timeout(5_000) });
    const json = (await res.json()) as { ranges?: { id: number }[] };
    return json.ranges?.length === count ? json.ranges.map((r) => r.id) : null;
  });
}

async function split(c: TestNodes, key: string): Promise<void> {
  const r = await postJson(`${c.url(1)}/v1/ranges/split`, { key }, { timeoutMs: 15_000 });
  assert.equal(r.status, 200, JSON.stringify(r.json));
}

/** Moves range `id`'s leadership to node `to` and waits until every node sees it there. */
async function lead(c: TestNodes, id: number, to: number): Promise<void> {
  await until(`range ${id} led by node ${to}`, () => {
    const leaders = c.nodes.map((n) => n.ranges.group(id)?.runtime.leaderId() ?? 0);
    if (leaders.every((l) => l === to)) return true;
    const from = leaders.find((l) => l !== 0);
    if (from !== undefined && from !== to) {
      try {
        c.node(from).ranges.group(id)?.runtime.transferLeadership(to);
      } catch (err) {
        // Refused for now (the target not heard from yet, a transfer under way): again later.
        if (!(err instanceof FlotillaError)) throw err;
      }
    }
    return null;
  });
}

/**
 * `rounds` of a put, a linearizable get, a one-range transaction and a delete on each key,
 * eight keys at a time; returns the requests made. `written` keeps each key's last value.
 */
async function load(
  client: FlotillaClient,
  rounds: number,
  tag: string,
  written: Map<string, string | null>,
): Promise<number> {
  let requests = 0;
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < keys.length; i += 8) {
      await Promise.all(
        keys.slice(i, i + 8).map(async (key) => {
          const value = `${tag}-${round}`;
          await client.put(key, value);
          assert.equal((await client.get(key))?.value, value, `${key} reads back`);
          const swapped = await client.txn(
            [{ key, target: 'value', op: '=', value }],
            [{ put: { key, value: `${value}!` } }],
          );
          assert.ok(swapped.succeeded, `the transaction on ${key} held`);
          const other = `${key}-gone`;
          await client.delete(other);
          written.set(key, `${value}!`);
          requests += 4;
        }),
      );
    }
  }
  return requests;
}

/** How many of `requests` did not land on their range's leader, by the nodes' counts. */
async function offLeader(
  c: TestNodes,
  before: { forwarded: number; followerReads: number },
): Promise<number> {
  const now = await counted(c);
  return now.forwarded - before.forwarded + (now.followerReads - before.followerReads);
}

for (const protocol of ['http', 'binary'] as const) {
  void describe(`range routing over ${protocol}`, () => {
    let c: TestNodes | null = null;
    after(async () => {
      await c?.close();
    });

    void it('sends nearly every request to its range leader, and keeps working across a split and a leader change', async (t) => {
      c = await TestNodes.start({ nodes: 3, clientProtocol: protocol === 'binary' });
      await c.waitForLeader();
      await until('the range map bootstrapped', async () => {
        const res = await fetch(`${c?.url(1)}/v1/ranges`);
        await res.body?.cancel();
        return res.status === 200;
      });
      for (const k of ['g', 'n', 'u']) await split(c, k);
      const ids = await rangesOnEveryNode(c, 4);
      // Leaders spread: range i led by node i mod 3 + 1, so no one node leads them all.
      for (const [i, id] of ids.entries()) await lead(c, id, (i % 3) + 1);

      const endpoints = [1, 2, 3].map((id) => (c as TestNodes).url(id));
      const written = new Map<string, string | null>();
      const opts = protocol === 'http' ? { protocol: 'http' as const } : {};
      const routed = new FlotillaClient({ endpoints, ...opts });
      const plain = new FlotillaClient({ endpoints, rangeRouting: false, ...opts });
      try {
        assert.equal(routed.rangeRoutingState().on, true, 'on by default with three endpoints');
        assert.equal(plain.rangeRoutingState().on, false);
        // Warm-up: the map fetched, the binary ports learned.
        await load(routed, 2, 'warm', written);
        await load(plain, 1, 'warm-plain', written);
        if (protocol === 'binary')
          for (const url of endpoints) {
            assert.ok(routed.usesBinary(url), `the routed client speaks binary to ${url}`);
          }

        let before = await counted(c);
        let requests = await load(routed, 6, 'routed', written);
        let missed = await offLeader(c, before);
        t.diagnostic(`routed: ${missed} of ${requests} requests missed their range's leader`);
        assert.ok(
          missed <= requests * 0.05,
          `routed: ${missed} of ${requests} requests missed their range's leader`,
        );

        // Without routing, the same load goes through endpoint 1, which leads one range of four.
        before = await counted(c);
        requests = await load(plain, 2, 'plain', written);
        const plainMissed = await offLeader(c, before);
        t.diagnostic(`unrouted: ${plainMissed} of ${requests} missed their range's leader`);
        assert.ok(
          plainMissed >= requests * 0.4,
          `unrouted: only ${plainMissed} of ${requests} requests missed their range's leader`,
        );

        // A split the client does not know of, and a leader change: it keeps working...
        const fetchedBefore = routed.rangeRoutingState().fetched;
        await split(c, 'r');
        const ids5 = await rangesOnEveryNode(c, 5);
        const r0 = ids5[0] as number;
        const leader0 = c.node(1).ranges.group(r0)?.runtime.leaderId() ?? 0;
        await lead(c, r0, leader0 === 3 ? 2 : 3);
        await load(routed, 2, 'changed', written);
        assert.ok(
          routed.rangeRoutingState().fetched > fetchedBefore,
          'the client fetched the map again',
        );
        assert.equal(routed.rangeRoutingState().version, 5, 'the map with the new range');
        // ...and lands on the leaders again.
        before = await counted(c);
        requests = await load(routed, 4, 'after', written);
        missed = await offLeader(c, before);
        t.diagnostic(`after the change: ${missed} of ${requests} missed their range's leader`);
        assert.ok(
          missed <= requests * 0.05,
          `after the change: ${missed} of ${requests} requests missed their range's leader`,
        );

        // Nothing lost: every acknowledged write reads back through another client.
        for (const [key, value] of written)
          assert.equal((await plain.get(key))?.value ?? null, value, key);
      } finally {
        await routed.close();
        await plain.close();
      }
    });
  });
}
