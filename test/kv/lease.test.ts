// Leases in the replicated store: keys attached to a lease go with it, in one revision; a put
// naming an unknown lease changes nothing; overwriting or deleting a key detaches it; the lease
// compare; snapshots keep leases and attachments.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { chunkStream, type Command } from '../../src/host/contracts.js';
import { KvStore, type Op } from '../../src/kv/kv-store.js';
import { KvStateMachine, type ApplyResult } from '../../src/kv/machine.js';
import { FlotillaError } from '../../src/base/errors.js';

const b = (s: string): Uint8Array => new TextEncoder().encode(s);
const put = (k: string, lease = 0): Op => ({
  kind: 'put',
  key: b(k),
  value: b('v'),
  prevKv: false,
  lease,
});
const txn = (...success: Op[]) => ({ compare: [], success, failure: [] });
const all = { key: b(''), rangeEnd: new Uint8Array([0]) };
const keys = (kv: KvStore, rev = 0): string[] =>
  kv.range(all, 0, false, rev).kvs.map((x) => new TextDecoder().decode(x.key));

void test('revoking a lease deletes its keys in one revision, and only them', () => {
  const kv = new KvStore();
  const lease = kv.grant(0, 10, 7);
  assert.deepEqual(lease, { id: 7, ttlSeconds: 10 }, 'the id suggested when none is asked for');
  kv.apply(txn(put('a', 7), put('b', 7), put('c')));
  kv.apply(txn(put('b'))); // overwritten without the lease: detached
  kv.apply(txn(put('d', 7)));
  kv.apply(txn({ kind: 'delete', range: { key: b('d'), rangeEnd: null }, prevKv: false }));
  const before = kv.revision();
  const r = kv.revoke(7);
  assert.deepEqual(r, { revision: before + 1, deleted: 1 }, 'one revision, for key a only');
  assert.deepEqual(keys(kv), ['b', 'c']);
  assert.deepEqual(kv.leaseList(), []);
  assert.throws(
    () => kv.revoke(7),
    (e: unknown) => e instanceof FlotillaError && e.code === 'LEASE_NOT_FOUND',
  );
});

void test('a put naming an unknown lease is refused whole; a taken id is refused', () => {
  const kv = new KvStore();
  kv.grant(5, 10, 1);
  assert.throws(
    () => kv.apply(txn(put('x'), put('y', 99))),
    (e: unknown) => e instanceof FlotillaError && e.code === 'LEASE_NOT_FOUND',
  );
  assert.equal(kv.revision(), 1, 'nothing applied');
  assert.deepEqual(keys(kv), []);
  assert.throws(
    () => kv.grant(5, 3, 1),
    (e: unknown) => e instanceof FlotillaError && e.code === 'LEASE_EXISTS',
  );
  assert.equal(kv.grant(0, 3, 5).id, 6, 'the next free id from the one suggested');
});

void test('the lease compare sees the key’s lease', () => {
  const kv = new KvStore();
  kv.grant(3, 10, 1);
  kv.apply(txn(put('k', 3)));
  const r = kv.apply({
    compare: [{ key: b('k'), target: 'lease', op: '=', value: 3 }],
    success: [put('ok')],
    failure: [],
  });
  assert.equal(r.succeeded, true);
  const r2 = kv.apply({
    compare: [{ key: b('nope'), target: 'lease', op: '=', value: 0 }],
    success: [],
    failure: [],
  });
  assert.equal(r2.succeeded, true, 'a missing key has lease 0');
});

void test('through the state machine: grant, attach, snapshot, restore, revoke', async () => {
  const m = new KvStateMachine({ maxKeyBytes: 64, maxValueBytes: 64 });
  let index = 0;
  const apply = (cmd: Parameters<typeof KvStateMachine.encode>[0]): ApplyResult => {
    const c: Command = { index: ++index, term: 1, timeMs: 0, payload: KvStateMachine.encode(cmd) };
    return m.apply([c])[0] as ApplyResult;
  };
  const g = apply({ leaseGrant: { id: 0, ttl: 30 } });
  assert.equal((g as { kind: string }).kind, 'lease-grant');
  const id = (g as { id: number }).id;
  apply(txn(put('a', id), put('b')));
  assert.deepEqual(apply(txn(put('c', id + 100))), {
    kind: 'error',
    revision: 2,
    error: {
      code: 'LEASE_NOT_FOUND',
      message: `Lease ${id + 100} does not exist (never granted, revoked or expired)`,
    },
  });
  const chunks: Uint8Array[] = [];
  for await (const c of m.snapshot()) chunks.push(c);
  const copy = new KvStateMachine({ maxKeyBytes: 64, maxValueBytes: 64 });
  await copy.restore(chunkStream(() => chunks[Symbol.iterator]()));
  assert.deepEqual(copy.leases(), [{ id, ttlSeconds: 30 }]);
  assert.deepEqual(
    copy.lease(id)?.keys.map((k) => new TextDecoder().decode(k)),
    ['a'],
  );
  const r = copy.apply([
    { index: ++index, term: 1, timeMs: 0, payload: KvStateMachine.encode({ leaseRevoke: id }) },
  ])[0];
  assert.deepEqual(r, { kind: 'lease-revoke', revision: 3, deleted: 1 });
  assert.deepEqual(copy.range({ range: all, limit: 0, countOnly: false }).kvs.length, 1);
});
