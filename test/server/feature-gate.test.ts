// The version gate of a rolling upgrade (DESIGN.md, "Upgrades"): three in-process nodes, node 3
// playing a release before the gate (feature level 0). Commands of a higher level (a report
// with `next`, a bulk add, a split) are refused FEATURE_NOT_ENABLED before anything is
// proposed; once node 3 runs this release the cluster's level rises and they work; the level
// survives a restart of every node and does not go down when a member says a lower one.

import assert from 'node:assert/strict';
import test from 'node:test';
import { FEATURE_LEVEL } from '../../src/base/features.js';
import type { NodeStatus } from '../../src/api/types.js';
import { TestNodes, postJson, until } from './nodes.js';

const Q = 'gate';

async function status(url: string): Promise<NodeStatus> {
  const res = await fetch(`${url}/v1/status`, { signal: AbortSignal.timeout(5_000) });
  return (await res.json()) as NodeStatus;
}

function post(c: TestNodes, path: string, body: unknown) {
  return postJson(`${c.url(1)}${path}`, body, { timeoutMs: 15_000 });
}

/** Adds a job and claims it; returns its id and claim token. */
async function claimedJob(c: TestNodes, name: string): Promise<{ id: string; token: number }> {
  const add = await post(c, '/v1/queue/add', { queue: Q, name });
  assert.equal(add.status, 200, JSON.stringify(add.json));
  const claim = await post(c, '/v1/queue/claim', { queue: Q, max: 1 });
  assert.equal(claim.status, 200, JSON.stringify(claim.json));
  const [first] = claim.json['jobs'] as { job: { id: string }; token: number }[];
  assert.ok(first !== undefined, `nothing claimed: ${JSON.stringify(claim.json)}`);
  return { id: first.job.id, token: first.token };
}

async function jobState(c: TestNodes, id: string): Promise<string> {
  const r = await post(c, '/v1/queue/get', { queue: Q, id });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  return (r.json['job'] as { state: string }).state;
}

/**
 * The gate's check: a report with `next` is answered FEATURE_NOT_ENABLED naming member 3, and
 * was not proposed (the job is still active, its report not applied). Throws otherwise.
 */
async function assertNextRefused(c: TestNodes, job: { id: string; token: number }): Promise<void> {
  const r = await post(c, '/v1/queue/complete', { queue: Q, ...job, next: { max: 1 } });
  const err = r.json['error'] as { code: string; message: string } | undefined;
  assert.equal(r.status, 409, JSON.stringify(r.json));
  assert.equal(err?.code, 'FEATURE_NOT_ENABLED');
  assert.match(err.message, /member 3 runs level 0/);
  assert.equal(await jobState(c, job.id), 'active', 'the refused report must not have applied');
}

void test('a member of an older release holds new commands back until it is upgraded; the level then rises, survives restarts and never goes down', async () => {
  const c = await TestNodes.start({
    nodes: 3,
    featureLevelOf: (id) => (id === 3 ? 0 : undefined),
  });
  try {
    await c.waitForLeader();
    await c.waitForQueueLeader();
    // Every node heard node 3 say level 0; the cluster stays at 0.
    await until('every node heard every member', async () => {
      const all = await Promise.all([1, 2, 3].map((id) => status(c.url(id))));
      return all.every((s) => s.featureLevel?.members.every((m) => m.level !== null)) ? all : null;
    });
    const s1 = await status(c.url(1));
    assert.deepEqual(s1.featureLevel, {
      node: FEATURE_LEVEL,
      active: 0,
      members: [
        { id: 1, level: FEATURE_LEVEL },
        { id: 2, level: FEATURE_LEVEL },
        { id: 3, level: 0 },
      ],
    });

    const job = await claimedJob(c, 'first');
    await assertNextRefused(c, job);
    const bulk = await post(c, '/v1/queue/add-bulk', { queue: Q, jobs: [{ name: 'b' }] });
    assert.equal(bulk.status, 409, JSON.stringify(bulk.json));
    assert.equal((bulk.json['error'] as { code: string }).code, 'FEATURE_NOT_ENABLED');
    const split = await post(c, '/v1/ranges/split', { key: 'm' });
    assert.equal(split.status, 409, JSON.stringify(split.json));
    assert.equal((split.json['error'] as { code: string }).code, 'FEATURE_NOT_ENABLED');
    // A report without `next` is known to every release: served.
    const done = await post(c, '/v1/queue/complete', { queue: Q, ...job });
    assert.equal(done.status, 200, JSON.stringify(done.json));

    // The planted bug: a node that proposes without asking the gate. The check above must
    // catch it (the report applies, on a member that would not know it).
    const planted = await claimedJob(c, 'planted');
    const saved = c.nodes.map((n) => n.gate.require.bind(n.gate));
    for (const n of c.nodes) n.gate.require = () => Promise.resolve();
    await assert.rejects(assertNextRefused(c, planted), assert.AssertionError);
    c.nodes.forEach((n, i) => (n.gate.require = saved[i] as typeof n.gate.require));

    // Node 3 upgraded: the level rises to this release's on every node.
    await c.restartAt(3, undefined);
    await until(
      `the active level at ${FEATURE_LEVEL} on every node`,
      async () => {
        const all = await Promise.all([1, 2, 3].map((id) => status(c.url(id))));
        return all.every((s) => s.featureLevel?.active === FEATURE_LEVEL);
      },
      20_000,
    );
    const next = await claimedJob(c, 'second');
    await post(c, '/v1/queue/add', { queue: Q, name: 'third' });
    const withNext = await post(c, '/v1/queue/complete', { queue: Q, ...next, next: { max: 1 } });
    assert.equal(withNext.status, 200, JSON.stringify(withNext.json));
    const bulk2 = await post(c, '/v1/queue/add-bulk', { queue: Q, jobs: [{ name: 'b' }] });
    assert.equal(bulk2.status, 200, JSON.stringify(bulk2.json));
    // The range map is bootstrapped now that the meta group's commands are enabled; then a split.
    const split2 = await until('a split served', async () => {
      const r = await post(c, '/v1/ranges/split', { key: 'm' });
      return r.status === 200 ? r : null;
    });
    assert.ok(split2.json['right'] !== undefined, JSON.stringify(split2.json));

    // Every node restarted, node 3 now saying level 1: the level stays where the log put it.
    await c.restartAt(3, 1);
    await c.restartAll();
    await c.waitForLeader();
    await until(`the active level still ${FEATURE_LEVEL} after a restart`, async () => {
      const all = await Promise.all([1, 2, 3].map((id) => status(c.url(id))));
      return all.every((s) => s.featureLevel?.active === FEATURE_LEVEL) ? all : null;
    });
    for (const n of c.nodes) assert.equal(n.gate.active(), FEATURE_LEVEL);
  } finally {
    await c.close();
  }
});
