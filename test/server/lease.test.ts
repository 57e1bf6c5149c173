// Leases on real in-process nodes: granted and kept alive through a follower (forwarded to
// the leader), a key attached expires with its lease once keep-alives stop, and across a
// leader change a lease is neither expired early nor forgotten.

import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import { FlotillaClient, FlotillaError } from '../../src/client/index.js';
import { TestNodes } from './nodes.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function start() {
  const nodes = await TestNodes.start({ nodes: 3 });
  cleanups.push(() => nodes.close());
  const leader = await nodes.waitForLeader();
  return { nodes, leader, followers: [1, 2, 3].filter((id) => id !== leader) };
}

async function until(
  what: string | (() => string),
  cond: () => Promise<boolean>,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline)
      throw new Error(`${typeof what === 'string' ? what : what()}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

void test('a lease kept alive through a follower holds its key; left alone it takes it away', async () => {
  const { nodes, followers } = await start();
  const c = new FlotillaClient({ endpoints: [nodes.url(followers[0] as number)] });
  cleanups.push(() => c.close());
  const { id, ttl } = await c.leaseGrant(1);
  assert.equal(ttl, 1);
  await c.put('session/a', 'here', { lease: id });
  assert.equal((await c.get('session/a'))?.lease, id);
  const ttlNow = await c.leaseTimeToLive(id, { keys: true });
  assert.deepEqual(ttlNow.keys, ['session/a']);
  // Kept alive for three times its time to live: the key stays.
  const keptUntil = Date.now() + 3_000;
  let lastSent = 0;
  while (Date.now() < keptUntil) {
    lastSent = Date.now();
    await c.leaseKeepAlive(id);
    assert.notEqual(
      await c.get('session/a', { serializable: true }),
      null,
      'the key is still there',
    );
    await new Promise((r) => setTimeout(r, 250));
  }
  await until(
    'the key goes with the lease',
    async () => (await c.get('session/a')) === null,
    10_000,
  );
  // The leader set the deadline when the last keep-alive reached it, after it was sent.
  const lived = Date.now() - lastSent;
  assert.ok(lived >= 1_000, `not before its time to live (${lived} ms after the last keep-alive)`);
  await assert.rejects(
    c.leaseKeepAlive(id),
    (e: unknown) => e instanceof FlotillaError && e.code === 'LEASE_NOT_FOUND',
  );
  await assert.rejects(
    c.put('x', 'y', { lease: id }),
    (e: unknown) => e instanceof FlotillaError && e.code === 'LEASE_NOT_FOUND',
  );
});

void test('across a leader change a lease is not expired early, nor forgotten', async () => {
  const { nodes, leader, followers } = await start();
  const c = new FlotillaClient({ endpoints: followers.map((f) => nodes.url(f)) });
  cleanups.push(() => c.close());
  const { id } = await c.leaseGrant(2);
  await c.put('lock/owner', 'me', { lease: id });
  await c.leaseKeepAlive(id);
  const renewed = Date.now();
  await nodes.node(leader).close(); // a new leader is elected among the others
  // The new leader gives the lease its whole time to live again (plus an election timeout),
  // so it is still there 2 s after the last keep-alive the old leader took...
  await until(
    'a new leader',
    () => Promise.resolve(followers.some((f) => nodes.node(f).runtime.isLeader())),
    10_000,
  );
  const left = await c.leaseTimeToLive(id);
  assert.ok(left.ttl >= 1, `the new leader gives it time (${left.ttl} s left)`);
  // The old leader stopped right after acknowledging the put, maybe before telling the others
  // its commit (sent at its next tick): the new leader commits it in its term, and the other
  // member applies it when told. The reads below are local to whichever member serves them.
  const key = new TextEncoder().encode('lock/owner');
  const holding = () =>
    followers.filter(
      (f) =>
        nodes.node(f).kv.range({ range: { key, rangeEnd: null }, limit: 0, countOnly: true })
          .count === 1,
    );
  await until(
    () =>
      `both members apply the put: held on [${holding().join(', ')}] of [${followers.join(', ')}]`,
    () => Promise.resolve(holding().length === followers.length),
    5_000,
  );
  while (Date.now() - renewed < 2_000) {
    assert.notEqual(await c.get('lock/owner', { serializable: true }), null, 'not expired early');
    await new Promise((r) => setTimeout(r, 100));
  }
  // ...and, with no keep-alive, it still expires.
  await until(
    'the lease expires under the new leader',
    async () => (await c.get('lock/owner')) === null,
    10_000,
  );
  assert.deepEqual((await c.leases()).leases, []);
});
