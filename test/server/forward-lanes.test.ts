// A follower forwards key-value writes and job-queue requests to their leaders over HTTP. A
// claim with `waitMs` holds its forwarded request open until a job arrives (up to 30 s), so
// idle workers long-polling through a follower keep that many requests open at the queue
// leader. When the two groups share a leader, those claims must not take the connections the
// follower's key-value writes need: a write waiting for one would fail FORWARD_FAILED, as
// indefinite, without ever having been sent.

import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { TestNodes, until } from './nodes.js';

// A follower forwards at most this many requests of one group at once (member-pools.ts); claims have
// a lane of their own, with a limit of its own.
const forwardLimit = 128;
const requestTimeoutMs = 1_000;
let cluster: TestNodes;
let leader: number;
let follower: number;

before(async () => {
  cluster = await TestNodes.start({ nodes: 3, requestTimeoutMs });
  const queueLeader = await cluster.waitForQueueLeader();
  leader = await cluster.waitForLeader();
  // Both groups led by one node, so that both forward to the same member.
  let why = '';
  leader = await until(
    () => `leadership moved to node ${queueLeader} (${why})`,
    async () => {
      const now = await cluster.waitForLeader();
      if (now === queueLeader) return now;
      try {
        // Refused until the leader has heard from the target since it was elected.
        cluster.node(now).runtime.transferLeadership(queueLeader);
      } catch (err) {
        why = (err as Error).message;
      }
      return null;
    },
    10_000,
  );
  follower = [1, 2, 3].find((id) => id !== leader) as number;
});

after(async () => {
  await cluster.close();
});

async function forwardedClaims(id: number): Promise<number> {
  const m = await cluster.node(id).metrics.forwarded.get();
  return m.values.find((v) => v.labels.path === '/v1/queue/claim')?.value ?? 0;
}

void it("a follower's long-polling claims leave its forwarded writes their connections", async () => {
  const stop = new AbortController();
  const base = cluster.url(follower);
  const before = await forwardedClaims(follower);
  const claims = Array.from({ length: forwardLimit }, () =>
    fetch(`${base}/v1/queue/claim`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ queue: 'lanes-idle', waitMs: 5_000 }),
      signal: stop.signal,
    }).then(
      (r) => r.status,
      () => 0,
    ),
  );
  try {
    let open = 0;
    await until(
      () => `all ${forwardLimit} claims forwarded (${open} were)`,
      async () => (open = (await forwardedClaims(follower)) - before) >= forwardLimit,
      10_000,
    );
    // Every claim is open at the leader now, waiting for a job that does not come.
    const started = performance.now();
    const res = await fetch(`${base}/v1/kv/put`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ key: 'lanes/w', value: 'v' }),
    });
    const body = await res.text();
    assert.equal(res.status, 200, body);
    assert.ok(
      performance.now() - started < requestTimeoutMs,
      `the write took ${Math.round(performance.now() - started)} ms`,
    );
    // The queue's other writes have connections of their own too: claims go in a lane of
    // theirs (up to 1,024), so an add through the same follower is not refused behind them.
    const add = await fetch(`${base}/v1/queue/add`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ queue: 'lanes-other', name: 'n' }),
    });
    const addBody = await add.text();
    assert.equal(add.status, 200, addBody);
  } finally {
    stop.abort();
    await Promise.all(claims);
  }
});
