// The simulator's parts alone: the event queue's order, the disk's durability model and the
// storage over it, the link table, the clients' writes and the option checks.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Command } from '../../src/host/contracts.js';
import { SessionMachine } from '../../src/host/sessions.js';
import { KvStateMachine } from '../../src/kv/machine.js';
import { createRng, type Entry } from '../../src/raft/index.js';
import { encodeWrite } from '../../src/server/kv-service.js';
import { VirtualDisk } from '../../src/sim/disk.js';
import { EventQueue } from '../../src/sim/event-queue.js';
import { LinkTable } from '../../src/sim/network.js';
import {
  clientSession,
  decodeWrite,
  readValue,
  writeTxn,
  SIM_KV_LIMITS,
} from '../../src/sim/ops.js';
import { VirtualDiskStore } from '../../src/sim/sim-storage.js';
import { drawProfile, runSeed, SimError } from '../../src/sim/index.js';

void test('the event queue pops by time, then by scheduling order', () => {
  const rng = createRng(5);
  const q = new EventQueue<number>();
  const pushed: { t: number; i: number }[] = [];
  for (let i = 0; i < 2000; i++) {
    const t = rng.int(50);
    q.push(t, i);
    pushed.push({ t, i });
  }
  pushed.sort((a, b) => a.t - b.t || a.i - b.i);
  const popped: number[] = [];
  for (let item = q.pop(); item !== undefined; item = q.pop()) popped.push(item.event);
  assert.deepEqual(
    popped,
    pushed.map((p) => p.i),
  );
  assert.equal(q.size, 0);
});

function entry(index: number, term: number): Entry {
  return { index, term, type: 'normal', data: new Uint8Array([index]) };
}

void test('the disk replaces a stored suffix, keeps snapshots, and refuses gaps', () => {
  const d = new VirtualDisk();
  const seen: number[] = [];
  const hs = (term: number) => ({ term, vote: 1, commit: 0 });
  d.persist([entry(1, 1), entry(2, 1), entry(3, 1)], hs(1), (e) => seen.push(e.index));
  d.persist([entry(2, 2)], hs(2), (e) => seen.push(e.index));
  assert.deepEqual(seen, [1, 2, 3, 2]);
  assert.equal(d.lastIndex(), 2);
  assert.equal(d.holds(2, 2), true);
  assert.equal(d.holds(2, 1), false);
  d.saveSnapshot({ meta: { index: 2, term: 2, voters: [1] }, bytes: new Uint8Array() });
  assert.equal(d.holds(1, 7), true, 'a snapshot covers every index up to it');
  const init = d.initialState();
  assert.deepEqual(init.entries, []);
  assert.equal(init.applied, 2);
  assert.equal(init.hardState.term, 2);
  assert.throws(
    () => d.persist([entry(9, 2)], null, () => undefined),
    (err: unknown) => err instanceof SimError && err.code === 'HARNESS',
  );
});

void test('a snapshot the log does not lead up to replaces the whole log', () => {
  const d = new VirtualDisk();
  d.persist([entry(1, 1), entry(2, 1), entry(3, 1)], null, () => undefined);
  d.saveSnapshot({ meta: { index: 2, term: 1, voters: [1] }, bytes: new Uint8Array() });
  assert.equal(d.lastIndex(), 3, 'own snapshot: the suffix after it is kept');
  d.saveSnapshot({ meta: { index: 5, term: 3, voters: [1] }, bytes: new Uint8Array() });
  assert.equal(d.lastIndex(), 5);
  assert.equal(d.holds(3, 1), true);
  assert.deepEqual(d.initialState().entries, []);
});

void test('storage writes land only when their completion runs; power loss drops the rest', async () => {
  const store = new VirtualDiskStore();
  const pending: (() => void)[] = [];
  const storage = store.open({
    later: (done) => pending.push(done),
    onEntry: () => undefined,
    afterWrite: () => undefined,
    onSnapshot: () => undefined,
  });
  let durable = false;
  const first = storage.persist([entry(1, 1)], { term: 1, vote: 1, commit: 0 }).then(() => {
    durable = true;
  });
  await Promise.resolve();
  assert.equal(durable, false);
  assert.equal(store.hasLog(), false, 'nothing is on the disk before the write completes');
  (pending.shift() as () => void)();
  await first;
  assert.equal(store.holds(1, 1), true);
  void storage.persist([entry(2, 1)], null);
  store.crash();
  pending.length = 0; // the node lost power: this completion never runs
  assert.equal(store.holds(2, 1), false);
  assert.deepEqual(
    store
      .open({
        later: () => undefined,
        onEntry: () => undefined,
        afterWrite: () => undefined,
        onSnapshot: () => undefined,
      })
      .initialState().entries,
    [entry(1, 1)],
  );
  store.wipe();
  assert.equal(store.isBlank(), true);
});

void test('the link table cuts both ways for splits and one way on request', () => {
  const l = new LinkTable(5);
  l.split(new Set([1, 2]));
  assert.equal(l.blocked(1, 3), true);
  assert.equal(l.blocked(3, 1), true);
  assert.equal(l.blocked(1, 2), false);
  assert.equal(l.blocked(3, 4), false);
  l.healAll();
  l.cutOneWay(2, 4);
  assert.equal(l.blocked(2, 4), true);
  assert.equal(l.blocked(4, 2), false);
  assert.equal(l.describe(), '2->4');
});

void test("the clients' writes go through the product's state machine and its sessions", () => {
  const kv = new KvStateMachine(SIM_KV_LIMITS);
  const sm = new SessionMachine(kv);
  const put = (s: number, index: number): Command => {
    const w = { c: 1, s, k: 'a', v: `c1.${s}` };
    return {
      index,
      term: 1,
      timeMs: 0,
      payload: encodeWrite(writeTxn(w), clientSession(w), 1000, Infinity),
    };
  };
  const first = put(1, 1);
  assert.deepEqual(decodeWrite(first.payload), { c: 1, s: 1, k: 'a', v: 'c1.1' });
  sm.apply([first]);
  sm.apply([put(2, 2)]);
  const revision = kv.revision();
  sm.apply([put(1, 3)]); // a retry of write #1 whose answer was lost
  assert.equal(kv.revision(), revision, 'a retried write applies once');
  assert.equal(readValue(kv, 'a'), 'c1.2');
  assert.equal(readValue(kv, 'b'), undefined);
  assert.equal(decodeWrite(new Uint8Array([0xc0])), null, 'msgpack nil is no client write');
});

void test('bad options are typed errors naming the value', () => {
  const code = (c: string) => (err: unknown) => err instanceof SimError && err.code === c;
  assert.throws(
    () => drawProfile(createRng(1), { dropRate: 2 }),
    /dropRate must be in \[0, 0.9\], got 2/,
  );
  assert.throws(() => runSeed({ seed: -1 }), code('INVALID_OPTION'));
});
