// The log keeps its entries' own bytes (src/raft/owned.ts): data handed in as a view into a
// larger buffer (an encoder's shared output, a frame read from a peer) is copied, so that the
// log does not keep the whole buffer alive, nor see it change when its owner reuses it.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AssertionError } from '../../src/raft/errors.js';
import { RaftLog } from '../../src/raft/log.js';
import { RaftNode } from '../../src/raft/node.js';
import { ownedData } from '../../src/raft/owned.js';
import { createRng } from '../../src/raft/rng.js';
import type { Entry } from '../../src/raft/types.js';

/** `bytes` written into a 1 MiB buffer at `at`, returned as a view. */
function viewIn(shared: Uint8Array, at: number, bytes: number[]): Uint8Array {
  shared.set(bytes, at);
  return shared.subarray(at, at + bytes.length);
}

void test('ownedData copies views into one buffer and leaves whole buffers alone', () => {
  const whole = [new Uint8Array([1]), new Uint8Array([2, 3])];
  assert.equal(ownedData(whole), whole, 'nothing to copy: the same array');
  const shared = new Uint8Array(1 << 20);
  const got = ownedData([viewIn(shared, 7, [1, 2]), new Uint8Array([3]), viewIn(shared, 900, [4])]);
  shared.fill(0);
  assert.deepEqual(
    got.map((d) => [...d]),
    [[1, 2], [3], [4]],
  );
  for (const d of got) assert.equal(d.buffer.byteLength, 4, 'one buffer of the batch');
});

void test('ownedData refuses what is not bytes, naming it', () => {
  for (const [bad, what] of [
    ['text', 'string'],
    [null, 'null'],
    [[1, 2], 'an array'],
    [{ byteLength: 1 }, 'object'],
  ] as const)
    assert.throws(
      () => ownedData([new Uint8Array([1]), bad as unknown as Uint8Array]),
      (e: unknown) =>
        e instanceof AssertionError && e.message === `ownedData takes Uint8Arrays, got ${what}`,
    );
});

void test('a leader keeps its own bytes of a proposal given as a view', () => {
  const node = new RaftNode({ id: 1, voters: [1], rng: createRng(1) });
  node.campaign();
  node.advance(node.ready());
  const shared = new Uint8Array(1 << 20);
  const r = node.proposeBatch([viewIn(shared, 100, [5, 6, 7]), viewIn(shared, 5_000, [8])]);
  assert.ok(r.ok);
  shared.fill(0);
  for (const index of [r.value.firstIndex, r.value.firstIndex + 1]) {
    const e = node.entry(index) as Entry;
    assert.ok(
      e.data.buffer.byteLength <= 4,
      `entry ${index} keeps ${e.data.buffer.byteLength} bytes`,
    );
  }
  assert.deepEqual([...(node.entry(r.value.firstIndex) as Entry).data], [5, 6, 7]);
});

void test('a follower keeps its own bytes of entries decoded from a frame', () => {
  const log = new RaftLog();
  const frame = new Uint8Array(1 << 16);
  const sent: Entry[] = [
    { term: 1, index: 1, type: 'normal', data: viewIn(frame, 40, [1, 2]) },
    { term: 1, index: 2, type: 'normal', data: viewIn(frame, 60, [3]) },
  ];
  assert.equal(log.maybeAppend(0, 0, sent), 2);
  frame.fill(0); // the transport reuses its read buffer
  const kept = log.unstableEntries();
  assert.deepEqual(
    kept.map((e) => [...e.data]),
    [[1, 2], [3]],
  );
  for (const e of kept) assert.equal(e.data.buffer.byteLength, 3);
});
