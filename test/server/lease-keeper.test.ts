// The leader's lease deadlines on a clock the test drives: a lease runs out after its time to
// live unless kept alive; a new leader gives every lease its time to live plus the election
// timeout (never early); a follower revokes nothing and refuses keep-alives.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from '../support/manual-clock.js';
import { LeaseKeeper } from '../../src/server/lease-keeper.js';
import { FlotillaError } from '../../src/base/errors.js';

/** A keeper on a manual clock; `revoke` (default: applied at once) stands for the log. */
function keeper(revoke?: (id: number, leases: Map<number, number>) => Promise<void>) {
  const clock = new ManualClock();
  const state = {
    leader: true,
    leases: new Map<number, number>(),
    revoked: [] as number[],
    // Grants committed but not yet applied here; applied() applies them.
    unapplied: new Map<number, number>(),
    barriers: 0,
  };
  const k = new LeaseKeeper({
    clock,
    isLeader: () => state.leader,
    leases: () => [...state.leases].map(([id, ttlSeconds]) => ({ id, ttlSeconds })),
    lease: (id) =>
      state.leases.has(id) ? { ttlSeconds: state.leases.get(id) as number } : undefined,
    extendMs: 300,
    checkEveryMs: 100,
    applied: () => {
      state.barriers++;
      for (const [id, ttl] of state.unapplied) state.leases.set(id, ttl);
      state.unapplied.clear();
      return Promise.resolve();
    },
    revoke: (id) => {
      state.revoked.push(id);
      if (revoke !== undefined) return revoke(id, state.leases);
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
  await runUntil(k, clock, 2_100);
  assert.deepEqual(state.revoked, []);
  k.keepAlive(1); // at 2.2 s: lease 1 now lives to 4.2 s
  assert.deepEqual(k.timeToLive(1), { id: 1, ttlSeconds: 2, grantedTtlSeconds: 2 });
  await runUntil(k, clock, 2_300);
  assert.deepEqual(state.revoked, [2], 'lease 2 ran out at 2.3 s');
  await runUntil(k, clock, 4_100);
  assert.deepEqual(state.revoked, [2]);
  await runUntil(k, clock, 4_300);
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

void test('a keep-alive at or after the deadline is refused, before and while the revocation applies', async () => {
  // The revocation applies when the test says: until then the lease is still in the table.
  let apply: () => void = () => undefined;
  const { k, clock, state } = keeper(
    (id, leases) =>
      new Promise<void>((resolve) => {
        apply = () => {
          leases.delete(id);
          resolve();
        };
      }),
  );
  state.leases.set(3, 1);
  k.check(); // the first look as leader: deadline at 1.3 s (extension 0.3 s)
  clock.now = 1_350; // past it, before the next look
  const expired = (e: unknown) => e instanceof FlotillaError && e.code === 'LEASE_NOT_FOUND';
  assert.throws(() => k.keepAlive(3), expired, 'not brought back to life between two looks');
  clock.now = 1_400;
  k.check();
  assert.deepEqual(state.revoked, [3], 'the revocation is proposed');
  assert.throws(() => k.keepAlive(3), expired, 'nor while its revocation is in flight');
  apply();
  await settle();
  assert.throws(() => k.keepAlive(3), expired);
  // A lease kept alive before its deadline is not touched by this.
  state.leases.set(4, 1);
  k.check(); // deadline at 2.4 s
  clock.now += 900;
  assert.deepEqual(k.keepAlive(4), { id: 4, ttlSeconds: 1 });
  assert.deepEqual(state.revoked, [3]);
});

void test('a new leader finds a lease its predecessor granted before answering it not found', async () => {
  const { k, state } = keeper();
  // Granted, committed and answered by the old leader; this one has it in its log, not applied.
  state.unapplied.set(9, 5);
  assert.deepEqual(await k.keepAliveApplied(9), { id: 9, ttlSeconds: 5 });
  state.unapplied.set(10, 5);
  // Not looked at yet by this leader: its whole time to live plus the extension (5.3 s).
  assert.deepEqual(await k.timeToLiveApplied(10), { id: 10, ttlSeconds: 6, grantedTtlSeconds: 5 });
  assert.equal(state.barriers, 2);
  // A lease known here costs no barrier; one that does not exist is still not found.
  await k.keepAliveApplied(9);
  assert.equal(state.barriers, 2);
  await assert.rejects(
    k.keepAliveApplied(11),
    (e: unknown) => e instanceof FlotillaError && e.code === 'LEASE_NOT_FOUND',
  );
});

void test('a lease granted under a leader of long standing reports its time to live, no more', () => {
  // Asked before the next look, it said the extension a new leader gives as well: ttl 2
  // answered 3 (an etcd user's find).
  const { k, clock, state } = keeper();
  k.check(); // leading from here on
  clock.now += 1_000;
  state.leases.set(5, 2);
  assert.deepEqual(k.timeToLive(5), { id: 5, ttlSeconds: 2, grantedTtlSeconds: 2 });
  k.check();
  assert.deepEqual(k.timeToLive(5), { id: 5, ttlSeconds: 2, grantedTtlSeconds: 2 });
});
