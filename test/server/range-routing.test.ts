// Routing to ranges a node does not run (docs/DESIGN.md, "Ranges in a node"): four in-process
// nodes, a range split onto replicas [1, 2, 3], and every kind of request made through node 4,
// which does not run it: writes, reads at both levels, a transaction, a delete, a multi-range
// read spanning a range it runs and one it does not, CROSS_RANGE still refused, the range's
// leader stopped, a map that lags a split, and the binary protocol.

import assert from 'node:assert/strict';
import test from 'node:test';
import { encodeEnvelope } from '../../src/host/envelope.js';
import { RangeMachine } from '../../src/ranges/range-machine.js';
import { WireConnection } from '../../src/client/wire.js';
import { FlotillaClient } from '../../src/client/index.js';
import type { FlotillaNode } from '../../src/server/node.js';
import { TestNodes, postJson, until } from './nodes.js';

interface RangeJson {
  id: number;
  start: string;
  end: string | null;
  generation: number;
  replicas: number[];
  leader: number | null;
  keys: number | null;
}

interface KvJson {
  key: string;
  value: string;
}

const errorCode = (json: Record<string, unknown>): string | undefined =>
  (json['error'] as { code?: string } | undefined)?.code;

const memberOf = (json: Record<string, unknown>): number =>
  (json['header'] as { memberId: number }).memberId;

async function getRanges(url: string): Promise<RangeJson[] | null> {
  const res = await fetch(`${url}/v1/ranges`, { signal: AbortSignal.timeout(5_000) });
  if (res.status !== 200) return null;
  return ((await res.json()) as { ranges: RangeJson[] }).ranges;
}

/** The leader of range `id` that its replicas agree on, or null. */
function rangeLeader(c: TestNodes, id: number, replicas: readonly number[]): number | null {
  const seen = replicas.map((r) => c.node(r).lanes.lane(id)?.group.runtime.leaderId() ?? 0);
  const l = seen[0] ?? 0;
  return l !== 0 && seen.every((x) => x === l) ? l : null;
}

/**
 * Four nodes with the map bootstrapped, range 0 split at "m" onto nodes 1, 2, 3 (asked of node
 * 4), the new range led; answers its id.
 */
async function splitOntoThree(c: TestNodes): Promise<number> {
  await c.waitForLeader();
  await until('the range map on every node', async () => {
    const all = await Promise.all([1, 2, 3, 4].map((id) => getRanges(c.url(id))));
    return all.every((r) => r !== null) ? true : null;
  });
  const split = await postJson(
    `${c.url(4)}/v1/ranges/split`,
    { key: 'm', replicas: [3, 1, 2] },
    { timeoutMs: 15_000 },
  );
  assert.equal(split.status, 200, JSON.stringify(split.json));
  const left = split.json['left'] as RangeJson;
  const right = split.json['right'] as RangeJson;
  assert.deepEqual(left.replicas, [1, 2, 3, 4], 'the left range keeps every voter');
  assert.deepEqual(right.replicas, [1, 2, 3], 'the new range is on the replicas asked for');
  await until('the new range led, and in the map of node 4', async () => {
    const map = await getRanges(c.url(4));
    return map?.length === 2 && rangeLeader(c, right.id, [1, 2, 3]) !== null ? true : null;
  });
  return right.id;
}

function put(c: TestNodes, via: number, key: string, value: string) {
  return postJson(`${c.url(via)}/v1/kv/put`, { key, value }, { timeoutMs: 15_000 });
}

function get(c: TestNodes, via: number, key: string, extra: Record<string, unknown> = {}) {
  return postJson(`${c.url(via)}/v1/kv/range`, { key, ...extra }, { timeoutMs: 15_000 });
}

const values = (json: Record<string, unknown>): string[][] =>
  (json['kvs'] as KvJson[]).map((kv) => [kv.key, kv.value]);

/** Whether node `n` has no group of range `id`: it never ran it. */
const runsNot = (n: FlotillaNode, id: number): boolean =>
  n.lanes.lane(id) === undefined && n.host.group(id) === undefined;

void test('through a node that does not run a range: writes, reads, a transaction, a delete and a multi-range read', async () => {
  const c = await TestNodes.start({ nodes: 4 });
  try {
    const id = await splitOntoThree(c);
    assert.ok(runsNot(c.node(4), id), 'node 4 does not run the new range');
    // Replicas that are not the range's voters, or not node ids, are refused before any split.
    for (const replicas of [[1, 5], [], [2, 2], ['1']]) {
      const bad = await postJson(
        `${c.url(4)}/v1/ranges/split`,
        { key: 'f', replicas },
        { timeoutMs: 15_000 },
      );
      assert.equal(bad.status, 400, JSON.stringify(bad.json));
      assert.equal(errorCode(bad.json), 'BAD_REQUEST');
    }
    assert.equal((await getRanges(c.url(4)))?.length, 2, 'no split happened');
    for (const n of [1, 2, 3]) assert.ok(c.node(n).lanes.lane(id) !== undefined);

    // A write through node 4 reaches the range's leader (the header names who proposed it).
    const w = await put(c, 4, 'q', 'q1');
    assert.equal(w.status, 200, JSON.stringify(w.json));
    assert.equal(memberOf(w.json), rangeLeader(c, id, [1, 2, 3]));
    assert.equal((await put(c, 4, 'a', 'a1')).status, 200, 'range 0, run on node 4 too');

    // Reads at both levels are served by a replica of the range, never by node 4.
    const lin = await get(c, 4, 'q');
    assert.equal(lin.status, 200, JSON.stringify(lin.json));
    assert.deepEqual(values(lin.json), [['q', 'q1']]);
    assert.notEqual(memberOf(lin.json), 4);
    const ser = await get(c, 4, 'q', { consistency: 'serializable' });
    assert.equal(ser.status, 200, JSON.stringify(ser.json));
    assert.deepEqual(values(ser.json), [['q', 'q1']], 'served by the leader it learned of');
    assert.notEqual(memberOf(ser.json), 4);
    const prefix = await get(c, 4, 'q', { prefix: true, countOnly: true });
    assert.equal(prefix.json['count'], 1);

    // A transaction within the range, then a delete.
    const txn = await postJson(
      `${c.url(4)}/v1/kv/txn`,
      {
        compare: [{ key: 'q', target: 'value', op: '=', value: 'q1' }],
        success: [{ put: { key: 'r', value: 'r1' } }, { range: { key: 'q' } }],
        failure: [],
      },
      { timeoutMs: 15_000 },
    );
    assert.equal(txn.status, 200, JSON.stringify(txn.json));
    assert.equal(txn.json['succeeded'], true);
    const del = await postJson(
      `${c.url(4)}/v1/kv/delete`,
      { key: 'q', prevKv: true },
      { timeoutMs: 15_000 },
    );
    assert.equal(del.status, 200, JSON.stringify(del.json));
    assert.equal(del.json['deleted'], 1);
    assert.deepEqual(values(await get(c, 4, 'q').then((r) => r.json)), []);

    // Across the range node 4 runs and the one it does not: each part at its own revision.
    const across = await get(c, 4, 'a', { rangeEnd: 'zz', multiRange: true });
    assert.equal(across.status, 200, JSON.stringify(across.json));
    assert.deepEqual(values(across.json), [
      ['a', 'a1'],
      ['r', 'r1'],
    ]);
    assert.deepEqual(
      (across.json['ranges'] as { id: number }[]).map((r) => r.id),
      [0, id],
    );
    const limited = await get(c, 4, 'a', { rangeEnd: 'zz', multiRange: true, limit: 1 });
    assert.deepEqual(
      [values(limited.json), limited.json['count'], limited.json['more']],
      [[['a', 'a1']], 2, true],
    );

    // Keys in both ranges are still refused, from node 4 as from any node.
    const cross = await postJson(
      `${c.url(4)}/v1/kv/txn`,
      {
        compare: [{ key: 'a', target: 'version', op: '>', value: 0 }],
        success: [{ put: { key: 'r', value: 'x' } }],
      },
      { timeoutMs: 15_000 },
    );
    assert.equal(cross.status, 400);
    assert.equal(errorCode(cross.json), 'CROSS_RANGE');
    assert.equal(errorCode((await get(c, 4, 'a', { rangeEnd: 'zz' })).json), 'CROSS_RANGE');
    // Leases cover the whole store: refused on node 4 too, though it runs one range.
    const lease = await postJson(`${c.url(4)}/v1/lease/grant`, { ttl: 10 }, { timeoutMs: 10_000 });
    assert.equal(errorCode(lease.json), 'MULTIPLE_RANGES');

    // The map as node 4 shows it: the leader it learned of for the range it does not run.
    const map = await getRanges(c.url(4));
    const shown = map?.find((r) => r.id === id);
    assert.deepEqual(
      [shown?.replicas, shown?.leader, shown?.keys],
      [[1, 2, 3], rangeLeader(c, id, [1, 2, 3]), null],
    );
    assert.ok(runsNot(c.node(4), id), 'node 4 still does not run the range');
  } finally {
    await c.close();
  }
});

void test("the range's leader stops: a request through node 4 finds the new one", async () => {
  const c = await TestNodes.start({ nodes: 4 });
  try {
    const id = await splitOntoThree(c);
    assert.equal((await put(c, 4, 'q', 'before')).status, 200);
    const old = rangeLeader(c, id, [1, 2, 3]) as number;
    assert.equal(c.node(4).remote.leader(id), old, 'node 4 learned the leader from the answer');
    await c.node(old).close();
    const rest = [1, 2, 3].filter((r) => r !== old);
    const now = await until('a new leader of the range', () => {
      const l = rangeLeader(c, id, rest);
      return l !== null && l !== old ? l : null;
    });
    // One request each, no retry by the test: node 4 finds the new leader itself.
    const w = await put(c, 4, 'q', 'after');
    assert.equal(w.status, 200, JSON.stringify(w.json));
    assert.equal(memberOf(w.json), now);
    const r = await get(c, 4, 'q');
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.deepEqual(values(r.json), [['q', 'after']]);
    const s = await get(c, 4, 'q', { serializable: true });
    assert.equal(s.status, 200, JSON.stringify(s.json));
  } finally {
    await c.close();
  }
});

// The watch starts at the revision of a write made before it opens, so every write the test
// counts is one the watch must deliver. (Opened "from now" with writes made at once, it raced
// them: a write applied before the watch was created was counted but never delivered, and the
// test waited for it in vain.)
void test('a watch through node 4 is relayed from a replica, and resumes without a gap when that replica stops', async () => {
  const c = await TestNodes.start({ nodes: 4 });
  const watcher = new FlotillaClient({ endpoints: [c.url(4)], protocol: 'http' });
  const stop = new AbortController();
  try {
    const id = await splitOntoThree(c);
    const written: string[] = [];
    const write = async (via: number, value: string): Promise<number> => {
      const r = await put(c, via, 'w1', value);
      assert.equal(r.status, 200, JSON.stringify(r.json));
      written.push(`w1=${value}`);
      return (r.json['header'] as { revision: number }).revision;
    };
    const first = await write(1, 'v0');
    const seen: string[] = [];
    const watching = (async () => {
      for await (const batch of watcher.watch('w', {
        prefix: true,
        startRevision: first,
        signal: stop.signal,
        progressNotifyMs: 200,
      }))
        for (const e of batch.events) seen.push(`${e.kv.key}=${e.kv.value ?? ''}`);
    })().catch((err: unknown) => {
      if (!stop.signal.aborted) throw err;
    });
    const saw = (err: unknown): never => {
      throw new Error(
        `${(err as Error).message}: seen ${JSON.stringify(seen)}, written ${JSON.stringify(written)}`,
      );
    };
    await until('the first write relayed', () => (seen.length > 0 ? true : null)).catch(saw);
    await write(1, 'v1');
    assert.equal(c.node(4).kvPath.remoteWatches(), 1, 'node 4 relays the watch');
    // The replica the watch is relayed from stops; the watch goes on from another.
    const from = [1, 2, 3].find((r) => c.node(r).lanes.lane(id)?.watchHub.size() === 1) as number;
    assert.ok(from !== undefined, 'one replica serves the relayed watch');
    await c.node(from).close();
    const rest = [1, 2, 3].filter((r) => r !== from);
    await until('the range led without the stopped replica', () => rangeLeader(c, id, rest));
    for (let i = 0; i < 3; i++) await write(rest[0] as number, `after${i}`);
    // The relay notices the stopped replica, ends the watch WATCH_RESET and the client resumes
    // through node 4 from another replica (tried in turn, with a pause after each round).
    await until(
      'every change delivered',
      () => (seen.length >= written.length ? true : null),
      45_000,
    ).catch(saw);
    assert.deepEqual(seen, written, 'each change once, in order, across the relay moving');
    stop.abort();
    await watching;
  } finally {
    stop.abort();
    await watcher.close();
    await c.close();
  }
});

void test('a map that lags a split: a request routed by it through node 4 ends in the range that holds the key now', async () => {
  // Without the map's repair: the range's leader would record the split below in the map
  // within a second, and this test is of routing by a map that has not caught up.
  const c = await TestNodes.start({ nodes: 4, hooksOf: () => ({ mapRepair: false }) });
  try {
    const id = await splitOntoThree(c);
    assert.equal((await put(c, 4, 'x', 'x0')).status, 200);
    // Split the range at "t" in its own log only: the map, node 4's included, is never told.
    const leader = rangeLeader(c, id, [1, 2, 3]) as number;
    const metaLeader = await until(
      'a meta leader',
      () => c.nodes.find((n) => n.meta.runtime.isLeader()) ?? null,
    );
    const child = await metaLeader.meta.allocate();
    const lane = c.node(leader).lanes.lane(id);
    assert.ok(lane !== undefined);
    const payload = RangeMachine.encode({
      split: {
        key: new TextEncoder().encode('t'),
        id: child,
        generation: lane.group.range.descriptor().generation,
        replicas: [1, 2, 3],
      },
    });
    const r = (await lane.group.runtime.propose(
      encodeEnvelope({ client: '', seq: 0, timeMs: Date.now(), payload }),
    )) as { kind: string };
    assert.equal(r.kind, 'split');
    await until('the new range led', () => rangeLeader(c, child, [1, 2, 3]));
    const stale = c.node(4).meta.machine.map();
    assert.equal(stale?.get(child), undefined, "node 4's map does not know the split");
    assert.equal(stale?.lookup(new TextEncoder().encode('x'))?.id, id);

    // Routed by the stale map to the old range's replicas, which hold "x" in the new range.
    const w = await put(c, 4, 'x', 'x1');
    assert.equal(w.status, 200, JSON.stringify(w.json));
    const held = c.node(leader).lanes.lane(child)?.group.range.kv;
    assert.equal(held?.keyCount(), 1, 'the write is in the new range');
    const read = await get(c, 4, 'x');
    assert.deepEqual(values(read.json), [['x', 'x1']]);
    const across = await get(c, 4, 'a', { rangeEnd: 'zz', multiRange: true });
    assert.equal(across.status, 200, JSON.stringify(across.json));
    assert.deepEqual(values(across.json), [['x', 'x1']]);
    assert.deepEqual(
      (across.json['ranges'] as { id: number }[]).map((x) => x.id),
      [0, id, child],
      'the part routed to the old range was read range by range where it is now',
    );
    assert.equal(c.node(4).meta.machine.map()?.get(child), undefined, 'still stale');
  } finally {
    await c.close();
  }
});

void test('over the binary protocol: a write and reads through node 4 reach the range it does not run', async () => {
  const c = await TestNodes.start({ nodes: 4, clientProtocol: true });
  try {
    const id = await splitOntoThree(c);
    const conn = await WireConnection.connect({
      host: '127.0.0.1',
      port: c.binaryPort(4),
      timeoutMs: 5_000,
      clientId: 'wire-routing',
    });
    try {
      const w = (await conn.request(
        'put',
        { key: 'q', value: 'w1', seq: 1 },
        { read: false },
      )) as Record<string, unknown>;
      assert.equal(memberOf(w), rangeLeader(c, id, [1, 2, 3]));
      for (const consistency of ['linearizable', 'serializable']) {
        const r = (await conn.request(
          'range',
          { key: 'q', consistency },
          { read: true },
        )) as Record<string, unknown>;
        assert.deepEqual(values(r), [['q', 'w1']], consistency);
        assert.notEqual(memberOf(r), 4);
      }
      const across = (await conn.request(
        'range',
        { key: 'a', rangeEnd: 'zz', multiRange: true },
        { read: true },
      )) as Record<string, unknown>;
      assert.deepEqual(values(across), [['q', 'w1']]);
    } finally {
      conn.close();
    }
    assert.ok(runsNot(c.node(4), id));
  } finally {
    await c.close();
  }
});
