// Range leadership (docs/API.md, "Ranges"; docs/DESIGN.md, "Placement"): a range's leadership
// handed to another of its voters through POST /v1/ranges/transfer-leadership, asked of a node
// that holds no replica of the range (sent to the replicas, then to their leader), of a replica
// that does not lead (forwarded), and through `flotilla range transfer`; the refusals (the job
// queue's and the meta group's ids, an unknown range, a target that is no voter, bad input);
// a move asked of a node holding no replica, which takes the same way; range 0's leadership.
// Then the placement loop in running nodes: every range's leadership piled on one node is
// spread over the members by the loop's own transfers, and a member drained and removed loses
// its drain mark. Against a fake cluster: the loop does not hand a range's leadership back and
// forth while an election keeps putting the old leader back. Against fake members: how a node
// holding no replica gets a request to the range's leader, and when it does not send it on.

import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { pino } from 'pino';
import { FlotillaClient, FlotillaError } from '../../src/client/index.js';
import { RangeMap } from '../../src/ranges/range-map.js';
import type { RangeId } from '../../src/ranges/types.js';
import {
  PlacementLoop,
  planPlacement,
  transferMemoryPeriods,
  type PlacementExecutor,
} from '../../src/server/placement-loop.js';
import type { FlotillaNode } from '../../src/server/node.js';
import { RangeLeaderRoute } from '../../src/server/range-leader-route.js';
import { runCli, stopAll } from '../cli/run.js';
import { desc } from '../ranges/harness.js';
import { TimerClock } from '../support/timer-clock.js';
import { TestNodes, postJson, until } from './nodes.js';

after(async () => {
  await stopAll();
});

const code = (json: Record<string, unknown>): string | undefined =>
  (json['error'] as { code?: string } | undefined)?.code;
const message = (json: Record<string, unknown>): string =>
  (json['error'] as { message?: string } | undefined)?.message ?? '';

/** The one node that leads range `id` among `nodes` as they say it; null while not one. */
function leaderOf(nodes: readonly FlotillaNode[], id: number): number | null {
  const leading = nodes.filter((n) => n.ranges.group(id)?.runtime.isLeader() === true);
  if (leading.length !== 1) return null;
  const l = (leading[0] as FlotillaNode).config.id;
  // Every replica follows it: the transfer finished, not only started.
  const followers = nodes.filter((n) => n.ranges.group(id) !== undefined);
  return followers.every((n) => n.ranges.group(id)?.runtime.leaderId() === l) ? l : null;
}

/**
 * What is wrong with how the leaders of `ranges` are spread over `nodes` (all replicas of
 * each): empty when no node leads two more than another.
 */
function leaderSpreadProblems(
  leaders: ReadonlyMap<number, number | null>,
  nodes: readonly number[],
): string[] {
  const problems: string[] = [];
  const led = new Map(nodes.map((n) => [n, 0]));
  for (const [range, l] of leaders) {
    if (l === null || !led.has(l)) problems.push(`range ${range} has no leader among the nodes`);
    else led.set(l, (led.get(l) as number) + 1);
  }
  const counts = [...led.values()];
  if (Math.max(...counts) - Math.min(...counts) > 1)
    problems.push(`leaders per node uneven: ${JSON.stringify([...led])}`);
  return problems;
}

void test('the leader-spread checker names a pile-up and a range without leader (planted)', () => {
  assert.deepEqual(
    leaderSpreadProblems(
      new Map([
        [3, 1],
        [4, 2],
        [5, 3],
      ]),
      [1, 2, 3],
    ),
    [],
  );
  assert.deepEqual(
    leaderSpreadProblems(
      new Map([
        [3, 1],
        [4, 1],
        [5, null],
      ]),
      [1, 2, 3],
    ),
    ['range 5 has no leader among the nodes', 'leaders per node uneven: [[1,2],[2,0],[3,0]]'],
  );
});

void test('a range leader is handed over through the API and the CLI, from any node; refusals', async () => {
  const c = await TestNodes.start({ nodes: 4 });
  // Node 4 holds no replica of the range: it sends every request on.
  const viaOutsider = new FlotillaClient({ endpoints: [c.url(4)] });
  try {
    await c.waitForLeader();
    await until('the range map bootstrapped', () =>
      c.nodes.every((n) => n.meta.machine.map() !== null),
    );
    const split = await postJson(
      `${c.url(1)}/v1/ranges/split`,
      { key: 'm', replicas: [1, 2, 3] },
      { timeoutMs: 20_000 },
    );
    assert.equal(split.status, 200, JSON.stringify(split.json));
    const range = (split.json['right'] as { id: number }).id;
    await until('node 4 knows the range', () => c.node(4).meta.machine.map()?.get(range));
    const first = await until('a leader of the range', () => leaderOf(c.nodes, range));
    const to = [1, 2, 3].find((n) => n !== first) as number;

    const r = await viaOutsider.transferRangeLeader(range, to);
    assert.deepEqual(r, { range, leader: to });
    assert.equal(await until('the transfer settled', () => leaderOf(c.nodes, range)), to);
    // Again: it happened, so nothing changes.
    assert.deepEqual(await viaOutsider.transferRangeLeader(range, to), { range, leader: to });

    // Asked of a replica that does not lead: forwarded to the one that does.
    const back = [1, 2, 3].find((n) => n !== to) as number;
    // The new leader refuses a transfer to a voter it has not heard from since it took over
    // (PEER_INACTIVE, retryable): ask again until it has.
    const a = await until('the second transfer accepted', async () => {
      const x = await postJson(
        `${c.url(back)}/v1/ranges/transfer-leadership`,
        { range, to: back },
        { timeoutMs: 20_000 },
      );
      return x.status === 503 && code(x.json) === 'PEER_INACTIVE' ? null : x;
    });
    assert.equal(a.status, 200, JSON.stringify(a.json));
    assert.deepEqual(a.json, { range, leader: back });
    assert.equal(await until('the second transfer settled', () => leaderOf(c.nodes, range)), back);

    // Refusals, asked of the outsider and of a replica.
    const ask = (at: number, body: unknown) =>
      postJson(`${c.url(at)}/v1/ranges/transfer-leadership`, body, { timeoutMs: 20_000 });
    for (const at of [4, back]) {
      for (const reserved of [1, 2]) {
        const x = await ask(at, { range: reserved, to: 1 });
        assert.equal(x.status, 400, JSON.stringify(x.json));
        assert.equal(code(x.json), 'INVALID_REQUEST');
        assert.match(message(x.json), reserved === 1 ? /job queue/ : /meta group/);
      }
      const unknown = await ask(at, { range: 99, to: 1 });
      assert.equal(unknown.status, 404, JSON.stringify(unknown.json));
      assert.equal(code(unknown.json), 'RANGE_NOT_FOUND');
      const notVoter = await ask(at, { range, to: 4 });
      assert.equal(notVoter.status, 400, JSON.stringify(notVoter.json));
      assert.equal(code(notVoter.json), 'NOT_RANGE_VOTER');
      assert.match(
        message(notVoter.json),
        new RegExp(`Node 4 is not a voter of range ${range} \\(voters \\[1, 2, 3\\]\\)`),
      );
      assert.equal(code((await ask(at, { range, to: 0 })).json), 'BAD_REQUEST');
      assert.equal(code((await ask(at, { range, to: 1, from: 2 })).json), 'UNKNOWN_FIELD');
    }
    await assert.rejects(viaOutsider.transferRangeLeader(2, 1), (e: unknown) => {
      assert.ok(e instanceof FlotillaError);
      assert.equal(e.code, 'INVALID_REQUEST');
      return true;
    });

    // The command line, at the outsider.
    const bound = 30_000;
    const cli = await runCli(
      ['range', '--endpoints', c.url(4), 'transfer', String(range), '--to', String(to)],
      bound,
    );
    assert.equal(cli.code, 0, cli.stderr);
    assert.equal(cli.stdout, `range ${range} is led by node ${to}\n`);
    assert.equal(await until('the CLI transfer settled', () => leaderOf(c.nodes, range)), to);
    const json = await runCli(
      ['range', '--endpoints', c.url(4), 'transfer', String(range), '--to', String(to), '--json'],
      bound,
    );
    assert.equal(json.code, 0, json.stderr);
    assert.deepEqual(JSON.parse(json.stdout), { range, leader: to });
    const refused = await runCli(
      ['range', '--endpoints', c.url(4), 'transfer', String(range), '--to', '4'],
      bound,
    );
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /NOT_RANGE_VOTER/);

    // A move asked of the outsider takes the same way (it used to be answered NOT_LEADER):
    // the range's replica on a follower moves to the outsider itself.
    const from = [1, 2, 3].find((n) => n !== to) as number;
    const moved = await viaOutsider.moveRange(range, from, 4);
    assert.deepEqual(
      moved.range.replicas,
      [1, 2, 3, 4].filter((n) => n !== from),
    );

    // Range 0 is the key-value group's first range: its leadership moves the same way.
    const kvLeader = await c.waitForLeader();
    const kvTo = kvLeader === 4 ? 1 : 4;
    assert.deepEqual(await viaOutsider.transferRangeLeader(0, kvTo), { range: 0, leader: kvTo });
    assert.equal(await c.waitForLeader(), kvTo);
  } finally {
    await viaOutsider.close();
    await c.close();
  }
});

void test('the placement loop spreads leaders piled on one node; a removed member loses its drain mark', async () => {
  const c = await TestNodes.start({
    nodes: 3,
    config: { placement: 'on', placementEveryMs: 200 },
  });
  const client = new FlotillaClient({ endpoints: [1, 2, 3].map((id) => c.url(id)) });
  try {
    await c.waitForLeader();
    await until('the range map bootstrapped', () =>
      c.nodes.every((n) => n.meta.machine.map() !== null),
    );
    const ranges: number[] = [];
    for (const key of ['f', 'm', 't']) {
      const a = await postJson(`${c.url(1)}/v1/ranges/split`, { key }, { timeoutMs: 20_000 });
      assert.equal(a.status, 200, JSON.stringify(a.json));
      ranges.push((a.json['right'] as { id: number }).id);
    }
    const leaders = () => new Map(ranges.map((id) => [id, leaderOf(c.nodes, id)]));
    await until('every range has a leader', () => [...leaders().values()].every((l) => l !== null));
    // Every leadership to node 1 (the loop may hand some away meanwhile: that is its job).
    for (const id of ranges) await client.transferRangeLeader(id, 1);
    const show = async () =>
      JSON.stringify({ leaders: [...leaders()], p: await client.placement() });
    await until(
      'the loop spread the leaders',
      () => leaderSpreadProblems(leaders(), [1, 2, 3]).length === 0,
      30_000,
    ).catch(async (err: unknown) => {
      throw new Error(`${(err as Error).message}: ${await show()}`);
    });
    const metaLeader = c.node(1).meta.runtime.leaderId();
    const metrics = await (await fetch(`${c.url(metaLeader)}/metrics`)).text();
    assert.match(
      metrics,
      /flotilla_placement_steps_total\{kind="transfer",outcome="done",node="\d+"\} [1-9]/,
      await show(),
    );

    // Drained, then removed for good (by force: it still holds replicas): the mark goes.
    assert.deepEqual((await client.drainNode(3)).draining, [3]);
    await client.removeMember(3, { force: true });
    await until(
      'the removed member is no longer marked draining',
      () => [1, 2].every((n) => c.node(n).meta.machine.draining().length === 0),
      20_000,
    ).catch(async (err: unknown) => {
      throw new Error(`${(err as Error).message}: ${await show()}`);
    });
    assert.deepEqual((await client.placement()).draining, []);
  } finally {
    await client.close();
    await c.close();
  }
});

/** One range on nodes 1-3 and an executor whose transfers an election undoes at once. */
function flipping(): {
  executor: PlacementExecutor;
  calls: number[];
  leaders: Map<RangeId, number>;
} {
  const leaders = new Map<RangeId, number>([
    [3, 1],
    [4, 1],
  ]);
  const calls: number[] = [];
  const executor: PlacementExecutor = {
    move: () => Promise.reject(new Error('no moves here')),
    transferLeader: (range) => {
      calls.push(range);
      // Done, and at once the old leader wins an election again.
      leaders.set(range, 1);
      return Promise.resolve();
    },
  };
  return { executor, calls, leaders };
}

void test('a range whose leadership the loop handed over is not handed over again for a while', async () => {
  const map = RangeMap.fromDescriptors(1, [
    desc(0, '', 'a', 1, [1, 2, 3]),
    desc(3, 'a', 'b', 1, [1, 2, 3]),
    desc(4, 'b', null, 1, [1, 2, 3]),
  ]);
  const f = flipping();
  const clock = new TimerClock();
  const everyMs = 1_000;
  const loop = new PlacementLoop({
    clock,
    enabled: true,
    everyMs,
    replicasPerRange: 3,
    stepTimeoutMs: 10_000,
    leads: () => true,
    leader: () => 1,
    map: () => map,
    draining: () => [],
    members: () => [1, 2, 3],
    leaders: () => Promise.resolve(new Map(f.leaders)),
    executor: f.executor,
    log: pino({ level: 'silent' }),
  });
  // Two ranges led by node 1, none by 2 or 3: one transfer helps (leaderPlan's: range 3's).
  // Each round for the memory's span: the range is not handed over again, though the leaders
  // look as before (without the memory, it would be once a period).
  const rounds = transferMemoryPeriods;
  for (let i = 0; i < rounds; i++) {
    await loop.check();
    clock.advance(everyMs);
  }
  assert.deepEqual(f.calls, [3], `transfers in ${rounds} periods`);
  // Past the memory, the loop tries again (the leaders still need spreading).
  await loop.check();
  assert.deepEqual(f.calls, [3, 3]);

  // The plan itself: a range transferred lately is left out of the leaders phase.
  const input = {
    map,
    members: [1, 2, 3],
    draining: [],
    replicasPerRange: 3,
    skip: () => false,
    can: { add: false, remove: false, transfer: true },
    leaders: () => new Map(f.leaders),
  };
  assert.equal(planPlacement(input).next?.kind, 'transfer');
  assert.equal(planPlacement({ ...input, transferredLately: () => true }).next, null);
});

void test('a node holding no replica sends a request to the replicas, following the leaders they name', async () => {
  const sent: string[] = [];
  const answers: Record<number, () => { status: number; json: unknown }> = {
    2: () => {
      throw new Error('connection refused');
    },
    3: () => ({
      status: 421,
      json: { error: { code: 'NOT_LEADER', message: 'not me', indefinite: false, leader: 5 } },
    }),
    5: () => ({ status: 200, json: { range: 7, leader: 5 } }),
    6: () => ({
      status: 400,
      json: { error: { code: 'NOT_RANGE_VOTER', message: 'no voter', indefinite: false } },
    }),
  };
  const replicas: Record<number, number[]> = { 7: [2, 3], 8: [6, 5], 9: [2] };
  const route = new RangeLeaderRoute({
    selfId: 1,
    lanes: { lane: () => undefined },
    mapped: (id) => (replicas[id] === undefined ? undefined : desc(id, '', null, 1, replicas[id])),
    forwarderFor: () => assert.fail('no forwarder without a replica here'),
    clientUrl: (id) => `http://n${id}`,
    send: (url, path, body, _signal, authorization) => {
      sent.push(`${url}${path} ${body} ${authorization ?? '-'}`);
      const a = answers[Number(url.slice('http://n'.length))];
      if (a === undefined) throw new Error(`no route to ${url}`);
      return Promise.resolve(a());
    },
  });
  const signal = new AbortController().signal;
  const ask = (range: number, w: { forwarded?: boolean } = {}) =>
    route.run(
      range,
      { path: '/p', body: { range } },
      { signal, authorization: 'Bearer t', ...w },
      () => assert.fail('this node leads nothing'),
      (json) => json,
    );
  assert.deepEqual(await ask(7), { range: 7, leader: 5 });
  assert.deepEqual(sent, [
    'http://n2/p {"range":7} Bearer t',
    'http://n3/p {"range":7} Bearer t',
    'http://n5/p {"range":7} Bearer t',
  ]);
  // Any other refusal is the answer, not tried elsewhere.
  sent.length = 0;
  await assert.rejects(
    ask(8),
    (e: unknown) => e instanceof FlotillaError && e.code === 'NOT_RANGE_VOTER',
  );
  assert.equal(sent.length, 1);
  // Nobody answers: NO_LEADER, naming the replicas.
  await assert.rejects(
    ask(9),
    /holds no replica of range 9; its replicas are \[2\], and none of them answered/,
  );
  // Forwarded here by another node: not sent on again, a replica named instead.
  sent.length = 0;
  await assert.rejects(ask(7, { forwarded: true }), (e: unknown) => {
    assert.ok(e instanceof FlotillaError);
    assert.equal(e.code, 'NOT_LEADER');
    assert.equal(e.leader, 2);
    return true;
  });
  assert.deepEqual(sent, []);
  await assert.rejects(
    ask(99),
    (e: unknown) => e instanceof FlotillaError && e.code === 'RANGE_NOT_FOUND',
  );
});
