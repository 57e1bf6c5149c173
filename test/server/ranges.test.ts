// Ranges in a running node (docs/DESIGN.md, "Ranges"): three in-process nodes bootstrap the
// range map in the meta group, split range 0 through the API (asked of a node that does not
// lead it), then serve writes and reads on both sides through every node, refuse requests that
// span the ranges, answer a split at a range's start with that split, and refuse what a split store does not
// support (leases) rather than half-serve it.

import assert from 'node:assert/strict';
import { defaultLimits } from '../../src/base/limits.js';
import test from 'node:test';
import { META_GROUP } from '../../src/ranges/types.js';
import { FlotillaClient } from '../../src/client/index.js';
import { TestNodes, postJson, until } from './nodes.js';

interface RangeJson {
  id: number;
  start: string;
  end: string | null;
  generation: number;
  replicas: number[];
  leader: number | null;
  keys: number | null;
  applied: number | null;
}

async function getRanges(url: string): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${url}/v1/ranges`, { signal: AbortSignal.timeout(5_000) });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

/**
 * Once the range map bootstrapped: the leader of range 0 and a put through it, and a watch of
 * prefix "w" from `watcher` collecting `key=value` of each change into `seen` until `stop`.
 * The returned promise ends with the watch; its error goes to `onEnd` (a stop is no error).
 */
async function watchPrefixW(
  c: TestNodes,
  watcher: FlotillaClient,
  stop: AbortController,
  seen: string[],
  onEnd: (err: unknown) => void,
): Promise<{
  leader: number;
  put: (key: string, value: string) => ReturnType<typeof postJson>;
  watching: Promise<void>;
}> {
  const leader = await c.waitForLeader();
  await until('the range map bootstrapped', async () =>
    (await getRanges(c.url(leader))).status === 200 ? true : null,
  );
  const put = (key: string, value: string) =>
    postJson(`${c.url(leader)}/v1/kv/put`, { key, value }, { timeoutMs: 10_000 });
  const watching = (async () => {
    for await (const batch of watcher.watch('w', {
      prefix: true,
      signal: stop.signal,
      progressNotifyMs: 200,
    }))
      for (const e of batch.events) seen.push(`${e.kv.key}=${e.kv.value ?? ''}`);
  })().catch(onEnd);
  return { leader, put, watching };
}

function errorCode(json: Record<string, unknown>): string | undefined {
  return (json['error'] as { code?: string } | undefined)?.code;
}

function errorMessage(json: Record<string, unknown>): string {
  return (json['error'] as { message?: string } | undefined)?.message ?? '';
}

void test('a split through the API: two contiguous ranges, both served through every node, cross-range requests refused', async () => {
  const c = await TestNodes.start({ nodes: 3 });
  try {
    const leader = await c.waitForLeader();
    // The meta group's leader bootstraps the map: one range, the whole key space.
    const first = await until('the range map bootstrapped on every node', async () => {
      const all = await Promise.all([1, 2, 3].map((id) => getRanges(c.url(id))));
      return all.every((r) => r.status === 200) ? all[0] : null;
    });
    const ranges0 = first?.json['ranges'] as RangeJson[];
    assert.equal(ranges0.length, 1);
    assert.deepEqual(
      { start: ranges0[0]?.start, end: ranges0[0]?.end, replicas: ranges0[0]?.replicas },
      { start: '', end: null, replicas: [1, 2, 3] },
    );
    for (const n of c.nodes) assert.ok(n.host.group(META_GROUP) !== undefined);
    // The meta group led by another node than range 0: the split's leader sends its meta
    // proposals (allocate, record) to the meta group's leader.
    const metaLeader = await until(
      'a meta group leader',
      () => c.nodes.map((n) => n.meta.runtime.leaderId()).find((l) => l !== 0) ?? null,
    );
    if (metaLeader === leader) {
      const other = leader === 3 ? 2 : 3;
      c.node(leader).meta.runtime.transferLeadership(other);
      await until('the meta group led by another node than range 0', () =>
        c.nodes.every((n) => n.meta.runtime.leaderId() === other),
      );
    }

    const put = (id: number, key: string, value: string) =>
      postJson(`${c.url(id)}/v1/kv/put`, { key, value }, { timeoutMs: 10_000 });
    assert.equal((await put(1, 'a', 'a0')).status, 200);
    assert.equal((await put(1, 'z', 'z0')).status, 200);

    // Asked of a follower of range 0: forwarded to its leader.
    const via = leader === 1 ? 2 : 1;
    const split = await postJson(
      `${c.url(via)}/v1/ranges/split`,
      { key: 'm' },
      { timeoutMs: 15_000 },
    );
    assert.equal(split.status, 200, JSON.stringify(split.json));
    const left = split.json['left'] as RangeJson;
    const right = split.json['right'] as RangeJson;
    assert.deepEqual(
      [left.id, left.start, left.end, left.generation],
      [0, '', 'm', 1],
      'the left half keeps range 0 and its start',
    );
    assert.ok(right.id >= 3, `a new range id, got ${right.id}`);
    assert.deepEqual([right.start, right.end, right.generation], ['m', null, 1]);
    assert.deepEqual(right.replicas, [1, 2, 3]);

    // Every node runs both ranges and shows the map with both, meeting at "m".
    const after = await until('every node runs both ranges', async () => {
      if (!c.nodes.every((n) => n.lanes.count() === 2)) return null;
      const r = await getRanges(c.url(3));
      const list = r.json['ranges'] as RangeJson[];
      return list.length === 2 ? list : null;
    });
    assert.deepEqual(
      after.map((r) => [r.id, r.start, r.end]),
      [
        [0, '', 'm'],
        [right.id, 'm', null],
      ],
    );
    assert.equal(after[1]?.keys, 1, 'the right range holds "z" alone');

    // Writes on both sides through every node, read back through every node.
    for (const id of [1, 2, 3]) {
      assert.equal((await put(id, 'a', `a${id}`)).status, 200);
      assert.equal((await put(id, 'z', `z${id}`)).status, 200);
    }
    for (const id of [1, 2, 3])
      for (const key of ['a', 'z']) {
        const r = await postJson(`${c.url(id)}/v1/kv/range`, { key }, { timeoutMs: 10_000 });
        assert.equal(r.status, 200, JSON.stringify(r.json));
        const kvs = r.json['kvs'] as { value: string }[];
        assert.equal(kvs[0]?.value, `${key}3`, `node ${id} reads ${key}`);
      }

    // A transaction and a range read across "m" are refused, naming both ranges.
    const txn = await postJson(
      `${c.url(1)}/v1/kv/txn`,
      {
        compare: [{ key: 'a', target: 'version', op: '>', value: 0 }],
        success: [{ put: { key: 'z', value: 'x' } }],
      },
      { timeoutMs: 10_000 },
    );
    assert.equal(txn.status, 400);
    assert.equal(errorCode(txn.json), 'CROSS_RANGE');
    assert.match(errorMessage(txn.json), new RegExp(`0 \\[""[^)]*\\), ${right.id} \\["m"`));
    const read = await postJson(
      `${c.url(2)}/v1/kv/range`,
      { key: 'a', rangeEnd: 'zz' },
      { timeoutMs: 10_000 },
    );
    assert.equal(errorCode(read.json), 'CROSS_RANGE');
    // Asked for, a non-atomic read across the ranges: each range at its own revision.
    const across = await postJson(
      `${c.url(2)}/v1/kv/range`,
      { key: 'a', rangeEnd: 'zz', multiRange: true },
      { timeoutMs: 10_000 },
    );
    assert.equal(across.status, 200, JSON.stringify(across.json));
    assert.deepEqual(
      (across.json['kvs'] as { key: string; value: string }[]).map((kv) => [kv.key, kv.value]),
      [
        ['a', 'a3'],
        ['z', 'z3'],
      ],
    );
    assert.deepEqual(
      (across.json['ranges'] as { id: number }[]).map((r) => r.id),
      [0, right.id],
    );
    const limited = await postJson(
      `${c.url(3)}/v1/kv/range`,
      { key: 'a', rangeEnd: 'zz', multiRange: true, limit: 1 },
      { timeoutMs: 10_000 },
    );
    assert.deepEqual(
      [(limited.json['kvs'] as unknown[]).length, limited.json['count'], limited.json['more']],
      [1, 2, true],
    );
    // Range 0 holding more than maxRangeBytes stops short; the range after it is only counted,
    // so the keys answered stay a prefix of the interval (read on from the last one).
    const big = 'b'.repeat(defaultLimits.maxValueBytes);
    const bigKeys = Array.from(
      { length: Math.ceil(defaultLimits.maxRangeBytes / big.length) + 1 },
      (_, i) => `b${String(i).padStart(2, '0')}`,
    );
    for (const key of bigKeys) {
      const put = await postJson(
        `${c.url(1)}/v1/kv/put`,
        { key, value: big },
        { timeoutMs: 20_000 },
      );
      assert.equal(put.status, 200, JSON.stringify(put.json));
    }
    const short = await postJson(
      `${c.url(2)}/v1/kv/range`,
      { key: 'a', rangeEnd: 'zz', multiRange: true },
      { timeoutMs: 20_000 },
    );
    assert.equal(short.status, 200, JSON.stringify(short.json['error']));
    const got = (short.json['kvs'] as { key: string }[]).map((kv) => kv.key);
    const every = ['a', ...bigKeys, 'z'];
    assert.deepEqual([short.json['count'], short.json['more']], [every.length, true]);
    assert.ok(got.length > 1 && got.length < bigKeys.length, `answered ${got.length} keys`);
    assert.deepEqual(got, every.slice(0, got.length));

    // A split at a range's start (a retry of the split whose answer was lost) is answered that
    // split and changes nothing; with other replicas, or at the empty key, it is refused.
    const atStart = await postJson(
      `${c.url(1)}/v1/ranges/split`,
      { key: 'm' },
      { timeoutMs: 10_000 },
    );
    assert.equal(atStart.status, 200, JSON.stringify(atStart.json));
    const done = atStart.json as { left: RangeJson; right: RangeJson };
    assert.deepEqual(
      [done.left.id, done.left.end, done.right.id, done.right.start],
      [0, 'm', right.id, 'm'],
    );
    assert.equal(((await getRanges(c.url(2))).json['ranges'] as RangeJson[]).length, 2);
    const otherReplicas = await postJson(
      `${c.url(1)}/v1/ranges/split`,
      { key: 'm', replicas: [1] },
      { timeoutMs: 10_000 },
    );
    assert.equal(otherReplicas.status, 400, JSON.stringify(otherReplicas.json));
    assert.equal(errorCode(otherReplicas.json), 'BAD_REQUEST');
    const empty = await postJson(`${c.url(1)}/v1/ranges/split`, { key: '' }, { timeoutMs: 10_000 });
    assert.equal(errorCode(empty.json), 'KEY_EMPTY');

    // What covers the whole store is refused on a split one.
    const lease = await postJson(`${c.url(1)}/v1/lease/grant`, { ttl: 10 }, { timeoutMs: 10_000 });
    assert.equal(errorCode(lease.json), 'MULTIPLE_RANGES');
    assert.equal(c.node(1).nodeStatus().ranges, 2);
  } finally {
    await c.close();
  }
});

void test('the split ranges survive a restart of every node: the right-hand range starts from its own directory', async () => {
  const c = await TestNodes.start({ nodes: 3 });
  try {
    await c.waitForLeader();
    await until(
      'the range map bootstrapped',
      async () => (await getRanges(c.url(1))).status === 200,
    );
    const put = (key: string, value: string) =>
      postJson(`${c.url(1)}/v1/kv/put`, { key, value }, { timeoutMs: 10_000 });
    assert.equal((await put('b', 'b1')).status, 200);
    const split = await postJson(
      `${c.url(1)}/v1/ranges/split`,
      { key: 'k' },
      { timeoutMs: 15_000 },
    );
    assert.equal(split.status, 200, JSON.stringify(split.json));
    await until('every node runs both ranges', () => c.nodes.every((n) => n.lanes.count() === 2));
    assert.equal((await put('x', 'x1')).status, 200);
    await c.restartAll();
    await c.waitForLeader();
    await until('every node runs both ranges again', () =>
      c.nodes.every((n) => n.lanes.count() === 2),
    );
    for (const [key, value] of [
      ['b', 'b1'],
      ['x', 'x1'],
    ] as const) {
      const r = await until(`${key} read back after the restart`, async () => {
        const got = await postJson(`${c.url(2)}/v1/kv/range`, { key }, { timeoutMs: 10_000 });
        return got.status === 200 ? got : null;
      });
      assert.equal((r.json['kvs'] as { value: string }[])[0]?.value, value);
    }
  } finally {
    await c.close();
  }
});

void test('a watch of keys a split moves ends on the old range and goes on at the new one, every change once', async () => {
  const c = await TestNodes.start({ nodes: 3 });
  const watcher = new FlotillaClient({ endpoints: [1, 2, 3].map((id) => c.url(id)) });
  const stop = new AbortController();
  try {
    const seen: string[] = [];
    const { leader, put, watching } = await watchPrefixW(c, watcher, stop, seen, (err) => {
      if (!stop.signal.aborted) throw err;
    });
    // The watch is open once a write shows up in it.
    const written: string[] = [];
    await until('the watch open', async () => {
      const value = `v${written.length}`;
      assert.equal((await put('w1', value)).status, 200);
      written.push(`w1=${value}`);
      return seen.length > 0 ? true : null;
    });
    const split = await postJson(
      `${c.url(leader)}/v1/ranges/split`,
      { key: 'm' },
      { timeoutMs: 15_000 },
    );
    assert.equal(split.status, 200, JSON.stringify(split.json));
    // Every prefix key "w..." now lies in the right-hand range, whose group elects its first
    // leader once its replicas applied the split: until then a write is refused NO_LEADER
    // (definite; the client retries it), as in any election.
    await until('the right-hand range led', async () => {
      const r = await postJson(
        `${c.url(leader)}/v1/kv/range`,
        { key: 'w1' },
        { timeoutMs: 10_000 },
      );
      return r.status === 200 ? true : null;
    });
    for (let i = 0; i < 5; i++) {
      const value = `after${i}`;
      const r = await put('w1', value);
      assert.equal(r.status, 200, JSON.stringify(r.json));
      written.push(`w1=${value}`);
    }
    await until(
      'every change delivered',
      () => (seen.length >= written.length ? true : null),
      15_000,
    );
    assert.deepEqual(seen, written, 'each change, before and after the split, once and in order');
    stop.abort();
    await watching;
  } finally {
    stop.abort();
    await watcher.close();
    await c.close();
  }
});

void test('a watch whose keys a split cuts in two ends CROSS_RANGE, naming the revision each part resumes from', async () => {
  const c = await TestNodes.start({ nodes: 3 });
  const watcher = new FlotillaClient({ endpoints: [1, 2, 3].map((id) => c.url(id)) });
  const stop = new AbortController();
  try {
    const seen: string[] = [];
    let ended: unknown = null;
    const { leader, put, watching } = await watchPrefixW(c, watcher, stop, seen, (err) => {
      ended = err;
    });
    await until('the watch open', async () => {
      assert.equal((await put('w1', `v${seen.length}`)).status, 200);
      return seen.length > 0 ? true : null;
    });
    const split = await postJson(
      `${c.url(leader)}/v1/ranges/split`,
      { key: 'w5' },
      { timeoutMs: 15_000 },
    );
    assert.equal(split.status, 200, JSON.stringify(split.json));
    // Before, the watch resumed, was refused CROSS_RANGE for its whole prefix, and ended with
    // that refusal alone: nothing said a split had cut it, nor from where to watch on.
    await until('the watch ended', () => (ended !== null ? true : null), 15_000);
    await watching;
    assert.ok(ended instanceof Error, String(ended));
    assert.equal((ended as { code?: string }).code, 'CROSS_RANGE');
    const m = /Watch each range's part from revision (\d+) to miss no change/.exec(ended.message);
    assert.ok(m !== null, ended.message);
    const from = Number(m[1]);
    // Each part, watched from that revision, hears a change made after the split.
    await until('the right-hand range led', async () => {
      const r = await postJson(
        `${c.url(leader)}/v1/kv/range`,
        { key: 'w7' },
        { timeoutMs: 10_000 },
      );
      return r.status === 200 ? true : null;
    });
    assert.equal((await put('w1', 'left')).status, 200);
    assert.equal((await put('w7', 'right')).status, 200);
    for (const [key, rangeEnd, want] of [
      ['w', 'w5', 'w1=left'],
      ['w5', 'x', 'w7=right'],
    ] as const) {
      const got: string[] = [];
      for await (const batch of watcher.watch(key, {
        rangeEnd,
        startRevision: from,
        signal: AbortSignal.timeout(10_000),
      })) {
        for (const e of batch.events) got.push(`${e.kv.key}=${e.kv.value ?? ''}`);
        if (got.includes(want)) break;
      }
      assert.ok(got.includes(want), `${key}..${rangeEnd} from ${from}: ${got.join(', ')}`);
    }
  } finally {
    stop.abort();
    await watcher.close();
    await c.close();
  }
});
