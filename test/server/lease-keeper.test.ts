// The leader's lease deadlines on a clock the test drives: a lease runs out after its time to
// live unless kept alive; a new leader gives every lease its time to live plus the election
// timeout (never early); a follower revokes nothing and refuses keep-alives.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from '../support/manual-clock.js';
import { LeaseKeeper } from '../../src/server/lease-keeper.js';
import { FlotillaError } from '../../src/base/errors.js';

function keeper() {
  const clock = new ManualClock();
  const state = { leader: true, leases: new Map<number, number>(), revoked: [] as number[] };
  const k = new LeaseKeeper({
    clock,
    isLeader: () => state.leader,
    leases: () => [...state.leases].map(([id, ttlSeconds]) => ({ id, ttlSeconds })),
    lease: (id) =>
      state.leases.has(id) ? { ttlSeconds: state.leases.get(id) as number } : undefined,
    extendMs: 300,
    checkEveryMs: 100,
    revoke: (id) => {
      state.revoked.push(id);
      state.leases.delete(id);
      return Promise.resolve();
    },
    onError: (_id, err) => {
      throw err;
    },
  });
  return { k, clock, state };
}

const settle = () => new Promise((r) => setImmediate(r));

async function runUntil(k: LeaseKeeper, clock: ManualClock, toMs: number): Promise<void> {
  for (; clock.now <= toMs; clock.now += 100) {
    k.check();
    await settle();
  }
}

void test('a lease kept alive lives; left alone, it is revoked after its time to live', async () => {
  const { k, clock, state } = keeper();
  state.leases.set(1, 2).set(2, 2);
  k.check(); // the first look as leader: the extension applies (deadlines 2.3 s)
  await runUntil(k, clock, 2_200);
  assert.deepEqual(state.revoked, []);
  k.keepAlive(1); // at 2.3 s: lease 1 now lives to 4.3 s
  assert.deepEqual(k.timeToLive(1), { id: 1, ttlSeconds: 2, grantedTtlSeconds: 2 });
  await runUntil(k, clock, 2_300);
  assert.deepEqual(state.revoked, [2], 'lease 2 ran out at 2.3 s');
  await runUntil(k, clock, 4_200);
  assert.deepEqual(state.revoked, [2]);
  await runUntil(k, clock, 4_400);
  assert.deepEqual(state.revoked, [2, 1]);
  assert.throws(
    () => k.keepAlive(1),
    (e: unknown) => e instanceof FlotillaError && e.code === 'LEASE_NOT_FOUND',
  );
});

void test('a new leader never expires a lease early; a follower revokes nothing', async () => {
  const { k, clock, state } = keeper();
  state.leases.set(7, 1);
  state.leader = false;
  await runUntil(k, clock, 5_000);
  assert.deepEqual(state.revoked, [], 'a follower revokes nothing');
  assert.throws(
    () => k.keepAlive(7),
    (e: unknown) => e instanceof FlotillaError && e.code === 'NOT_LEADER',
  );
  state.leader = true;
  const elected = clock.now;
  await runUntil(k, clock, elected + 1_200);
  assert.deepEqual(state.revoked, [], 'within ttl + extension of the election');
  await runUntil(k, clock, elected + 1_400);
  assert.deepEqual(state.revoked, [7], 'and no later than the next look after it');
});
