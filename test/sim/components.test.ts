// The simulator's parts alone: the event queue's order, the disk's durability model, the
// link table, the state machine and the option checks.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createRng, type Entry, type Ready } from '../../src/raft/index.js';
import { VirtualDisk } from '../../src/sim/disk.js';
import { EventQueue } from '../../src/sim/event-queue.js';
import { decodeOp, encodeOp, KvStateMachine } from '../../src/sim/kv.js';
import { LinkTable } from '../../src/sim/network.js';
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

function ready(entries: Entry[], term = 1): Ready {
  return {
    softState: null,
    hardState: { term, vote: 1, commit: 0 },
    snapshot: null,
    entries,
    messages: [],
    messagesAfterPersist: [],
    committedEntries: [],
    readStates: [],
    recovery: null,
  };
}

void test('the disk replaces a stored suffix, keeps snapshots, and refuses gaps', () => {
  const d = new VirtualDisk();
  const seen: number[] = [];
  d.write(ready([entry(1, 1), entry(2, 1), entry(3, 1)]), null, (e) => seen.push(e.index));
  d.write(ready([entry(2, 2)], 2), null, (e) => seen.push(e.index));
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
    () => d.write(ready([entry(9, 2)]), null, () => undefined),
    (err: unknown) => err instanceof SimError && err.code === 'HARNESS',
  );
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

void test('the state machine dedupes retried operations and round-trips snapshots', () => {
  const sm = new KvStateMachine();
  assert.equal(sm.apply({ c: 1, s: 1, k: 'a', v: 'x' }), true);
  assert.equal(sm.apply({ c: 1, s: 2, k: 'a', v: 'y' }), true);
  assert.equal(sm.apply(decodeOp(encodeOp({ c: 1, s: 1, k: 'a', v: 'x' }))), false);
  assert.equal(sm.get('a'), 'y');
  const copy = KvStateMachine.decode(sm.encode());
  assert.equal(copy.get('a'), 'y');
  assert.equal(copy.apply({ c: 1, s: 2, k: 'a', v: 'z' }), false);
  assert.deepEqual(copy.encode(), sm.encode());
});

void test('malformed operations, snapshots and options are typed errors naming the value', () => {
  const code = (c: string) => (err: unknown) => err instanceof SimError && err.code === c;
  assert.throws(() => decodeOp(new TextEncoder().encode('{"c":1}')), code('BAD_OPERATION'));
  assert.throws(() => decodeOp(new Uint8Array(2000)), code('BAD_OPERATION'));
  assert.throws(() => KvStateMachine.decode(new TextEncoder().encode('[')), code('BAD_SNAPSHOT'));
  assert.throws(
    () => drawProfile(createRng(1), { dropRate: 2 }),
    /dropRate must be in \[0, 0.9\], got 2/,
  );
  assert.throws(() => runSeed({ seed: -1 }), code('INVALID_OPTION'));
});
