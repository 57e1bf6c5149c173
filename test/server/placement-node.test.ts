// Placement in running nodes (docs/DESIGN.md, "Placement"): three in-process nodes, a range
// split off range 0. Draining is asked of any node and lands in the meta group (every node
// shows it); a drain of a non-member and one that would leave no member are refused; a drain
// that would leave the range with fewer than three replicas waits and says why, until forced;
// the loop runs on the meta group's leader alone and acts on the forced drain (its step goes
// through the range routes); removing a member that holds ranges is refused MEMBER_HOLDS_RANGES until forced.
// The placement status and the CLI's rendering of it; the configuration's placement options.

import assert from 'node:assert/strict';
import test from 'node:test';
import { FlotillaClient, FlotillaError, type PlacementResponse } from '../../src/client/index.js';
import { renderPlacement } from '../../src/cli/placement.js';
import { resolveNodeConfig } from '../../src/server/config.js';
import { httpExecutor, rangesInMap } from '../../src/server/placement-node.js';
import { RangeMap } from '../../src/ranges/range-map.js';
import { desc } from '../ranges/harness.js';
import { TestNodes, postJson, until } from './nodes.js';

const code = (json: Record<string, unknown>): string | undefined =>
  (json['error'] as { code?: string } | undefined)?.code;
const message = (json: Record<string, unknown>): string =>
  (json['error'] as { message?: string } | undefined)?.message ?? '';

void test('drain, the loop on the meta leader, and removal refused while a member holds ranges', async () => {
  const c = await TestNodes.start({ nodes: 3, config: { placement: 'on', placementEveryMs: 200 } });
  const client = new FlotillaClient({ endpoints: [c.url(1), c.url(2), c.url(3)] });
  try {
    await c.waitForLeader();
    const metaLeader = await until('a meta group leader with a map', () => {
      const l = c.node(1).meta.runtime.leaderId();
      return l !== 0 && c.nodes.every((n) => n.meta.machine.map() !== null) ? l : null;
    });
    const split = await postJson(
      `${c.url(1)}/v1/ranges/split`,
      { key: 'm' },
      { timeoutMs: 15_000 },
    );
    assert.equal(split.status, 200, JSON.stringify(split.json));
    const range = (split.json['right'] as { id: number }).id;

    // Asked of a node that does not lead the meta group: forwarded to the one that does.
    const other = metaLeader === 1 ? 2 : 1;
    const first = await new FlotillaClient({ endpoints: [c.url(other)] }).placement();
    assert.equal(first.enabled, true);
    assert.equal(first.active, true, JSON.stringify(first));
    assert.equal(first.leader, metaLeader);
    assert.deepEqual(first.draining, []);
    assert.equal(first.replicasPerRange, 3);

    const unknown = await postJson(
      `${c.url(other)}/v1/nodes/drain`,
      { node: 9 },
      { timeoutMs: 10_000 },
    );
    assert.equal(unknown.status, 400);
    assert.equal(code(unknown.json), 'MEMBERSHIP_UNKNOWN_MEMBER');
    assert.match(message(unknown.json), /Node 9 is not a member \(members: 1, 2, 3\)/);
    const bad = await postJson(
      `${c.url(other)}/v1/nodes/drain`,
      { node: 0 },
      { timeoutMs: 10_000 },
    );
    assert.equal(code(bad.json), 'BAD_REQUEST');
    const extra = await postJson(
      `${c.url(1)}/v1/nodes/drain`,
      { node: 1, why: 1 },
      { timeoutMs: 10_000 },
    );
    assert.equal(code(extra.json), 'UNKNOWN_FIELD');

    // Removing a member that holds a replica of the new range: refused, naming it.
    const refused = await postJson(
      `${c.url(1)}/v1/cluster/members/remove`,
      { id: 3 },
      { timeoutMs: 10_000 },
    );
    assert.equal(refused.status, 409, JSON.stringify(refused.json));
    assert.equal(code(refused.json), 'MEMBER_HOLDS_RANGES');
    assert.match(
      message(refused.json),
      new RegExp(`1 range\\(s\\) \\(${range}\\): drain it first`),
    );

    const drained = await client.drainNode(3);
    assert.deepEqual(drained.draining, [3]);
    // Three members, three replicas per range: the drain would take one away, so it waits.
    assert.deepEqual(drained.forced, []);
    assert.equal(drained.drainBlocked?.reason, 'REPLICATION_FACTOR', JSON.stringify(drained));
    assert.deepEqual(drained.drainBlocked?.nodes, [3]);
    assert.deepEqual([drained.drainBlocked?.wanted, drained.drainBlocked?.available], [3, 2]);
    assert.match(
      drained.drainBlocked?.message ?? '',
      /^the drain of node 3 is blocked: ranges keep 3 replicas and only 2 members are not being drained \(1, 2\)/,
    );
    await until('every node applied the drain', () =>
      c.nodes.every((n) => n.meta.machine.draining().join() === '3'),
    );
    // Draining the other two would leave no member to hold ranges.
    await client.drainNode(2);
    await assert.rejects(client.drainNode(1), (e: unknown) => {
      assert.ok(e instanceof FlotillaError);
      assert.equal(e.code, 'INVALID_REQUEST');
      assert.match(e.message, /would leave no member to hold ranges \(draining: 1, 2, 3\)/);
      return true;
    });
    await client.undrainNode(2);
    await until('every node applied the undrain', () =>
      c.nodes.every((n) => n.meta.machine.draining().join() === '3'),
    );

    // The loop plans and takes no step while the drain is blocked (it planned: the phase is
    // set, over the two members left, with the three replicas the range keeps). A plan made
    // while node 2 was still draining (over node 1 alone) may be the one shown at first: the
    // loop plans again at its next round.
    const waiting = await until('the loop planned over the blocked drain', async () => {
      const p = await client.placement();
      return p.phase !== null && p.nodes?.join() === '1,2' ? p : null;
    });
    assert.equal(waiting.last, null, JSON.stringify(waiting));
    assert.equal(waiting.phase, 'none');
    assert.deepEqual([waiting.nodes, waiting.target], [[1, 2], 3]);
    assert.deepEqual(waiting.drainBlocked?.nodes, [3]);

    // Forced, the loop on the meta group's leader takes a step for the range on node 3: with
    // two members left, a replica less (whether the range routes carry it out is theirs).
    const forcedDrain = await client.drainNode(3, { force: true });
    assert.deepEqual([forcedDrain.draining, forcedDrain.forced], [[3], [3]]);
    assert.equal(forcedDrain.drainBlocked, null);
    const stepped = await until('the loop took a step', async () => {
      const p = await client.placement();
      return p.last !== null ? p : null;
    });
    assert.deepEqual(stepped.last?.step, { kind: 'remove', range, from: 3 });
    assert.deepEqual(stepped.nodes, [1, 2]);
    assert.equal(stepped.target, 2);
    const metrics = await (await fetch(`${c.url(metaLeader)}/metrics`)).text();
    assert.match(
      metrics,
      /flotilla_placement_steps_total\{kind="remove",outcome="(done|failed)",node="\d+"\} [1-9]/,
    );

    const undrained = await client.undrainNode(3);
    assert.deepEqual(undrained.draining, []);
    // Undraining a node that is not draining is no error.
    assert.deepEqual((await client.undrainNode(3)).draining, []);

    // Gone for good: removed by force while it still holds the range's replica.
    if (c.nodes.some((n) => n.meta.machine.map()?.get(range)?.replicas.includes(3) === true)) {
      const badForce = await postJson(
        `${c.url(1)}/v1/cluster/members/remove`,
        { id: 3, force: 'yes' },
        { timeoutMs: 10_000 },
      );
      assert.equal(code(badForce.json), 'BAD_REQUEST');
      const forced = await client.removeMember(3, { force: true });
      assert.ok(!forced.members.some((m) => m.id === 3 && m.role === 'voter'));
    }
  } finally {
    await client.close();
    await c.close();
  }
});

void test('the placement status as the CLI prints it', () => {
  const p: PlacementResponse = {
    enabled: true,
    active: true,
    leader: 2,
    replicasPerRange: 3,
    draining: [4],
    forced: [],
    drainBlocked: null,
    nodes: [1, 2, 3],
    target: 3,
    phase: 'rebalance',
    pending: 5,
    ready: false,
    current: { kind: 'move', range: 7, from: 4, to: 1 },
    running: [
      { kind: 'move', range: 7, from: 4, to: 1 },
      { kind: 'move', range: 8, from: 4, to: 2 },
    ],
    last: {
      step: { kind: 'move', range: 6, from: 4, to: 3 },
      outcome: 'failed',
      error: 'no leader',
      atMs: 0,
      tookMs: 12,
    },
    blocked: ['range 9 has 4 replicas, 3 wanted: removing one is not available'],
    backingOff: [{ range: 6, failures: 1, retryInMs: 400 }],
    stepsDone: 3,
    stepsFailed: 1,
  };
  assert.equal(
    renderPlacement(p),
    [
      'placement loop: running on node 2',
      'replicas per range: 3',
      'draining: 4',
      'placing on: 1, 2, 3',
      'pending steps: 5 (rebalance)',
      'now: move range 7 from 4 to 1',
      'now: move range 8 from 4 to 2',
      'last: move range 6 from 4 to 3: failed in 12 ms (no leader)',
      'steps: 3 done, 1 failed',
      'range 6: 1 failed steps, tried again in 400 ms',
      'blocked: range 9 has 4 replicas, 3 wanted: removing one is not available',
      '',
    ].join('\n'),
  );
  const off = renderPlacement({
    ...p,
    enabled: false,
    active: false,
    current: null,
    running: [],
    last: null,
  });
  assert.doesNotMatch(off, /now:/);
  // Steps pending and none to take, none under way: said to wait, not left to look stalled.
  const idle = renderPlacement({ ...p, phase: 'leaders', pending: 2, current: null, running: [] });
  assert.match(
    idle,
    /\npending steps: 2 \(leaders\), none to take now: each touches a range changed lately or backing off, or would not even the counts\n/,
  );
  assert.match(
    renderPlacement({ ...p, running: [], current: null, ready: true }),
    /\npending steps: 5 \(rebalance\)\n/,
  );
  const { ready: _r, ...unsaid } = p;
  assert.match(
    renderPlacement({ ...unsaid, running: [], current: null }),
    /\npending steps: 5 \(rebalance\)\n/,
  );
  // A node of an earlier release says only `current`.
  const { running: _, ...older } = p;
  assert.match(renderPlacement(older), /\nnow: move range 7 from 4 to 1\nlast:/);
  assert.match(off, /^placement loop: off\n/);
  assert.doesNotMatch(off, /pending steps/);
  assert.doesNotMatch(renderPlacement(p), /BLOCKED/);

  // A drain that waits for want of members is said plainly, with its stable reason.
  const stalled = renderPlacement({
    ...p,
    draining: [3, 4],
    forced: [4],
    drainBlocked: {
      reason: 'REPLICATION_FACTOR',
      nodes: [3],
      wanted: 3,
      available: 2,
      message: 'the drain of node 3 is blocked: ...',
    },
  });
  assert.match(
    stalled,
    /\ndraining: 3, 4 \(forced: 4\)\nDRAIN BLOCKED \(REPLICATION_FACTOR\): the drain of node 3 is blocked: \.\.\.\n/,
  );
});

void test('placement options: defaults, on and off, bounds', () => {
  const base = {
    id: 1,
    dataDir: '/tmp/x',
    initialCluster: '1=127.0.0.1:7001@http://127.0.0.1:8001',
  };
  const d = resolveNodeConfig(base);
  assert.deepEqual(
    [d.placement, d.placementEveryMs, d.placementStepTimeoutMs, d.replicasPerRange],
    ['on', 5_000, 120_000, 3],
  );
  assert.equal(resolveNodeConfig({ ...base, placement: 'off' }).placement, 'off');
  assert.equal(resolveNodeConfig({ ...base, placement: false }).placement, 'off');
  assert.equal(resolveNodeConfig({ ...base, placement: 'true' }).placement, 'on');
  assert.throws(
    () => resolveNodeConfig({ ...base, placement: 'maybe' }),
    /placement must be on or off, got "maybe"/,
  );
  assert.throws(
    () => resolveNodeConfig({ ...base, replicasPerRange: 16 }),
    /replicasPerRange must be an integer in \[1, 15\]/,
  );
  assert.throws(
    () => resolveNodeConfig({ ...base, placementEveryMs: 10 }),
    /placementEveryMs must be an integer in \[100/,
  );
});

void test('a step goes to the range leader first, then its replicas, following NOT_LEADER hints', async () => {
  const sent: string[] = [];
  const answers: Record<string, () => { status: number; json: unknown }> = {
    'http://n2': () => {
      throw new Error('connection refused');
    },
    'http://n3': () => ({
      status: 421,
      json: { error: { code: 'NOT_LEADER', message: 'holds none', indefinite: false, leader: 5 } },
    }),
    'http://n5': () => ({ status: 200, json: { range: {} } }),
    'http://n6': () => ({
      status: 409,
      json: { error: { code: 'INVALID_REQUEST', message: 'node 4 holds one', indefinite: false } },
    }),
  };
  const ex = httpExecutor(
    { nodesOf: (range) => (range === 7 ? [2, 3, 4] : [6, 5]), url: (id) => `http://n${id}` },
    (url, method, path, body) => {
      sent.push(`${method} ${url}${path} ${body ?? ''}`);
      const a = answers[url];
      if (a === undefined) throw new Error(`no route to ${url}`);
      return Promise.resolve(a());
    },
  );
  await ex.move(7, 1, 4, new AbortController().signal);
  assert.deepEqual(sent, [
    'POST http://n2/v1/ranges/move {"range":7,"from":1,"to":4}',
    'POST http://n3/v1/ranges/move {"range":7,"from":1,"to":4}',
    'POST http://n5/v1/ranges/move {"range":7,"from":1,"to":4}',
  ]);
  sent.length = 0;
  // Any other refusal is the step's answer: not tried elsewhere.
  await assert.rejects(
    ex.addReplica?.(8, 4, new AbortController().signal) ?? Promise.resolve(),
    (e: unknown) => e instanceof FlotillaError && e.code === 'INVALID_REQUEST',
  );
  assert.deepEqual(sent, ['POST http://n6/v1/ranges/replicas {"range":8,"add":4}']);
  // Nobody holding it answers: the last failure is the step's, as UNAVAILABLE naming the node
  // and the step (not the HTTP client's bare message: undici says only "other side closed").
  const none = httpExecutor({ nodesOf: () => [2], url: (id) => `http://n${id}` }, () =>
    Promise.reject(new Error('other side closed')),
  );
  await assert.rejects(
    none.removeReplica?.(9, 2, new AbortController().signal) ?? Promise.resolve(),
    (e: unknown) =>
      e instanceof FlotillaError &&
      e.code === 'UNAVAILABLE' &&
      e.indefinite &&
      e.message ===
        "Could not ask node 2 to remove range 9's replica from node 2 (at http://n2): other side closed; the change resumes where it stopped when retried",
  );
  const dropped = httpExecutor({ nodesOf: () => [3], url: (id) => `http://n${id}` }, () =>
    Promise.reject(new Error('other side closed')),
  );
  await assert.rejects(
    dropped.move(9, 2, 4, new AbortController().signal),
    (e: unknown) =>
      e instanceof FlotillaError &&
      e.code === 'UNAVAILABLE' &&
      /^Could not ask node 3 to move range 9's replica from node 2 to node 4 \(at http:\/\/n3\): other side closed;/.test(
        e.message,
      ),
  );
  // A leader transfer takes the same way, to its own route.
  sent.length = 0;
  await ex.transferLeader?.(7, 3, new AbortController().signal);
  assert.deepEqual(sent, [
    'POST http://n2/v1/ranges/transfer-leadership {"range":7,"to":3}',
    'POST http://n3/v1/ranges/transfer-leadership {"range":7,"to":3}',
    'POST http://n5/v1/ranges/transfer-leadership {"range":7,"to":3}',
  ]);
});

void test('rangesInMap: range 0 by membership (its record is the bootstrap replicas), others by the map', () => {
  const map = RangeMap.fromDescriptors(3, [
    desc(0, '', 'f', 1, [1, 2, 3]),
    desc(3, 'f', 'm', 2, [2, 3, 4]),
    desc(4, 'm', null, 1, [1, 2, 3]),
  ]);
  // Node 4 joined after the bootstrap: a member, so it holds range 0, and range 3 moved to it.
  assert.deepEqual(rangesInMap(map, 4, true), [0, 3]);
  assert.deepEqual(rangesInMap(map, 1, true), [0, 4]);
  // Not (or no longer) a member of range 0's group: only what the map names.
  assert.deepEqual(rangesInMap(map, 1, false), [4]);
  assert.deepEqual(rangesInMap(map, 5, false), []);
  assert.deepEqual(rangesInMap(null, 1, true), []);
});
