// The queue's metrics over GET /metrics of real nodes: jobs per state and the totals move with
// what happens to jobs, every node reports the same numbers once it applied the same log, and
// the leader shows a claim that waits for a job while it waits.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { TestNodes, postJson } from './nodes.js';

type Json = Record<string, unknown>;

let nodes: TestNodes;

before(async () => {
  nodes = await TestNodes.start({ nodes: 3 });
});

after(async () => {
  await nodes.close();
});

function queueLeader(timeoutMs = 10_000): Promise<number> {
  return nodes.waitForQueueLeader(timeoutMs);
}

async function ok(id: number, path: string, body: Json): Promise<Json> {
  const r = await postJson(`${nodes.url(id)}/v1/queue/${path}`, body, { timeoutMs: 15_000 });
  assert.equal(r.status, 200, `${path} ${JSON.stringify(body)}: ${JSON.stringify(r.json)}`);
  return r.json;
}

/** The queue's samples a node exports, by metric and labels without the node's, e.g.
 * `flotilla_queue_jobs{queue="m",state="waiting"}` -> 2. */
async function queueSamples(id: number): Promise<Map<string, number>> {
  const text = await (await fetch(`${nodes.url(id)}/metrics`)).text();
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line.startsWith('flotilla_queue_')) continue;
    const at = line.lastIndexOf(' ');
    const key = line
      .slice(0, at)
      .replace(/,?node="\d+"/, '')
      .replace('{,', '{')
      .replace('{}', '');
    out.set(key, Number(line.slice(at + 1)));
  }
  return out;
}

/** Polls until `pred` holds of node `id`'s samples; fails with the last ones seen. */
async function waitForSamples(
  id: number,
  pred: (s: Map<string, number>) => boolean,
  what: string,
  timeoutMs = 10_000,
): Promise<Map<string, number>> {
  const deadline = Date.now() + timeoutMs;
  let last = new Map<string, number>();
  while (Date.now() < deadline) {
    last = await queueSamples(id);
    if (pred(last)) return last;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(
    `${what} not seen on node ${id} in ${timeoutMs} ms: ${JSON.stringify([...last])}`,
  );
}

const total = (name: string, queue: string): string =>
  `flotilla_queue_${name}_total{queue="${queue}"}`;
const jobs = (queue: string, state: string): string =>
  `flotilla_queue_jobs{queue="${queue}",state="${state}"}`;

void test('jobs per state and the totals move with the jobs, the same on every node', async () => {
  const leader = await queueLeader();
  const q = 'metered';
  for (let i = 0; i < 4; i++)
    await ok(leader, 'add', { queue: q, name: `j${i}`, maxAttempts: 1, id: `j${i}` });
  const claimed = (await ok(leader, 'claim', { queue: q, max: 3 }))['jobs'] as {
    job: Json;
    token: number;
  }[];
  assert.equal(claimed.length, 3);
  const [c0, c1] = claimed;
  await ok(leader, 'complete', { queue: q, id: c0?.job['id'], token: c0?.token });
  await ok(leader, 'fail', { queue: q, id: c1?.job['id'], token: c1?.token, error: 'no' });
  // The third claim's lease ends at once: the leader's next tick expires it (dead: one attempt).
  await ok(leader, 'claim', { queue: q, leaseMs: 1 });
  const expected: [string, number][] = [
    [total('added', q), 4],
    [total('claimed', q), 4],
    [total('completed', q), 1],
    [total('failed', q), 2],
    [total('dead', q), 2],
    [total('lease_expired', q), 1],
    [jobs(q, 'waiting'), 0],
    [jobs(q, 'active'), 1],
    [jobs(q, 'completed'), 1],
    [jobs(q, 'dead'), 2],
  ];
  const matches = (s: Map<string, number>): boolean => expected.every(([k, v]) => s.get(k) === v);
  const seen = await waitForSamples(leader, matches, 'the expected queue metrics');
  // Followers apply the same entries: once at the leader's applied index, the same numbers.
  const index = seen.get('flotilla_queue_applied_index') ?? 0;
  for (const n of nodes.nodes) {
    const s = await waitForSamples(
      n.config.id,
      (x) => (x.get('flotilla_queue_applied_index') ?? 0) >= index && matches(x),
      'the leader’s queue metrics',
    );
    for (const [k, v] of expected) assert.equal(s.get(k), v, `${k} on node ${n.config.id}`);
  }
});

void test('a claim waiting for a job shows as a claim waiter on the leader until it gets one', async () => {
  const leader = await queueLeader();
  const waiters = 'flotilla_queue_claim_waiters';
  assert.equal((await queueSamples(leader)).get(waiters), 0);
  const waiting = ok(leader, 'claim', { queue: 'idle', waitMs: 20_000 });
  await waitForSamples(leader, (s) => s.get(waiters) === 1, 'one claim waiter');
  await ok(leader, 'add', { queue: 'idle', name: 'wake' });
  const r = await waiting;
  assert.equal((r['jobs'] as unknown[]).length, 1, JSON.stringify(r));
  await waitForSamples(leader, (s) => s.get(waiters) === 0, 'no claim waiter');
});
