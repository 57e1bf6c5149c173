// The leader guesses of ranges not run here are bounded (src/server/range-remote.ts): at most
// `maxKept` ranges keep a guess and a forwarder, and the one least recently routed to goes
// first. Each write's answer (scripted: the range's leader is node 10 + the range's id % 3)
// teaches the node that range's leader, so `leader(id)` shows which ranges are still kept.

import assert from 'node:assert/strict';
import test from 'node:test';
import { writePaths } from '../../src/api/requests.js';
import { systemClock } from '../../src/host/contracts.js';
import type { RangeDescriptor } from '../../src/ranges/types.js';
import type { ForwardAnswer } from '../../src/server/forward.js';
import { RemoteRanges, remoteKeptMax } from '../../src/server/range-remote.js';

const members = [1, 10, 11, 12].map((id) => ({
  id,
  peer: `127.0.0.1:${7000 + id}`,
  client: `http://n${id}`,
}));

const leaderOf = (range: number): number => 10 + (range % 3);

function descriptor(id: number): RangeDescriptor {
  return { id, start: new Uint8Array([id]), end: null, generation: 1, replicas: [10, 11, 12] };
}

/** Node 1, which runs no range; every write is answered by the range's leader. */
function remote(maxKept?: number): { ranges: RemoteRanges; sent: number[] } {
  const sent: number[] = [];
  const ranges = new RemoteRanges({
    selfId: 1,
    members,
    clock: systemClock,
    timeoutMs: 5_000,
    maxInFlight: 4,
    knowledge: () => ({ running: [], children: [], map: null }),
    isRunning: () => false,
    refresh: () => Promise.resolve(),
    send: (url, _path, rawBody): Promise<ForwardAnswer> => {
      const to = members.find((m) => m.client === url)?.id ?? 0;
      const range = (JSON.parse(rawBody) as { range: number }).range;
      sent.push(to);
      // Any replica but the leader refuses, naming it, as a follower does.
      if (to !== leaderOf(range))
        return Promise.resolve({
          status: 421,
          json: { error: { code: 'NOT_LEADER', indefinite: false, leader: leaderOf(range) } },
        });
      return Promise.resolve({ status: 200, json: { header: { memberId: to, revision: 1 } } });
    },
    ...(maxKept === undefined ? {} : { maxKept }),
  });
  return { ranges, sent };
}

async function write(ranges: RemoteRanges, id: number): Promise<void> {
  const d = descriptor(id);
  assert.equal(ranges.targetOf(d).local, false);
  const answer = await ranges.forwardTo(
    d,
    { path: writePaths.put, rawBody: JSON.stringify({ range: id }) },
    AbortSignal.timeout(5_000),
    undefined,
  );
  assert.equal(answer.status, 200, JSON.stringify(answer.json));
}

const known = (ranges: RemoteRanges, ids: readonly number[]): number[] =>
  ids.filter((id) => ranges.leader(id) !== 0);

void test('at most maxKept ranges keep a leader guess; the oldest goes first', async () => {
  const { ranges } = remote(3);
  for (const id of [20, 21, 22]) await write(ranges, id);
  assert.equal(ranges.kept(), 3);
  assert.deepEqual(known(ranges, [20, 21, 22]), [20, 21, 22]);
  assert.equal(ranges.leader(21), leaderOf(21), 'learned from the answer');
  for (const id of [23, 24]) await write(ranges, id);
  assert.equal(ranges.kept(), 3, 'never more than maxKept');
  assert.deepEqual(known(ranges, [20, 21, 22, 23, 24]), [22, 23, 24]);
});

void test('a range routed to again is kept before one routed to longer ago', async () => {
  const { ranges, sent } = remote(3);
  for (const id of [20, 21, 22]) await write(ranges, id);
  await write(ranges, 20);
  await write(ranges, 23);
  assert.deepEqual(known(ranges, [20, 21, 22, 23]), [20, 22, 23], '21 was the least recent');
  // A dropped range starts again from its replicas: node 1 asks one, which names the leader.
  sent.length = 0;
  await write(ranges, 21);
  assert.equal(sent.at(-1), leaderOf(21));
  assert.ok(sent.length >= 1 && sent.length <= 2, `sent to ${JSON.stringify(sent)}`);
  assert.deepEqual(known(ranges, [20, 21, 22, 23]), [20, 21, 23]);
  // Reading the guess (leader()) is not routing: it does not keep a range longer.
  assert.equal(ranges.leader(20), leaderOf(20));
  await write(ranges, 24);
  assert.deepEqual(known(ranges, [20, 21, 23, 24]), [21, 23, 24]);
});

void test('by default 1,024 ranges are kept; a maxKept below 1 is refused', async () => {
  const { ranges } = remote();
  for (let id = 100; id < 100 + remoteKeptMax + 50; id++) ranges.targetOf(descriptor(id));
  assert.equal(remoteKeptMax, 1_024);
  assert.equal(ranges.kept(), 1_024);
  await write(ranges, 100 + remoteKeptMax + 49);
  assert.equal(ranges.kept(), 1_024);
  for (const bad of [0, -1, 1.5, Number.NaN])
    assert.throws(() => remote(bad), /maxKept must be an integer >= 1/);
});
