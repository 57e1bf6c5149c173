// The partial snapshot a follower keeps in its group directory: what a restart finds of it,
// and what it does with files a crash left half-written.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, truncateSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, test } from 'node:test';
import { FilePartialSnapshots } from '../../src/storage/index.js';
import type { SnapshotDescriptor } from '../../src/raft/index.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function dir(): string {
  const d = mkdtempSync(join(tmpdir(), 'flotilla-partial-'));
  dirs.push(d);
  return d;
}

const snap: SnapshotDescriptor = {
  meta: { index: 40, term: 3, voters: [1, 2, 3], learners: [4] },
  id: 'ab'.repeat(20),
  totalBytes: 10,
};

const bytes = (from: number, n: number) => Uint8Array.from({ length: n }, (_, i) => from + i);

void test('a restart finds the snapshot and the bytes written, and goes on from there', async () => {
  const d = dir();
  const a = new FilePartialSnapshots(d);
  assert.equal(await a.load(), null, 'nothing kept at first');
  await a.begin(snap);
  await a.write(0, bytes(0, 4));
  await a.write(4, bytes(4, 3));
  await assert.rejects(a.write(9, bytes(9, 1)), /holds 7 bytes; cannot write at 9/);
  const b = new FilePartialSnapshots(d);
  assert.deepEqual(await b.load(), { snapshot: snap, received: 7 });
  await b.write(7, bytes(7, 3));
  assert.deepEqual(await b.read(0, 10), bytes(0, 10));
  await assert.rejects(b.read(8, 4), /ends at 10/);
  await b.discard();
  assert.equal(await new FilePartialSnapshots(d).load(), null, 'discarded');
});

void test('a new snapshot replaces the partial one from byte 0', async () => {
  const d = dir();
  const a = new FilePartialSnapshots(d);
  await a.begin(snap);
  await a.write(0, bytes(0, 8));
  const other = { ...snap, id: 'cd'.repeat(20), totalBytes: 5 };
  await a.begin(other);
  await a.write(0, bytes(100, 2));
  assert.deepEqual(await new FilePartialSnapshots(d).load(), { snapshot: other, received: 2 });
  assert.deepEqual(await a.read(0, 2), bytes(100, 2));
});

void test('bytes lost in a crash are not reported; a descriptor that does not parse discards all', async () => {
  const d = dir();
  const a = new FilePartialSnapshots(d);
  await a.begin(snap);
  await a.write(0, bytes(0, 6));
  truncateSync(join(d, 'snapshot.partial'), 3);
  assert.equal((await new FilePartialSnapshots(d).load())?.received, 3);
  writeFileSync(join(d, 'snapshot.partial.json'), '{"meta":');
  assert.equal(await new FilePartialSnapshots(d).load(), null);
  assert.equal(existsSync(join(d, 'snapshot.partial')), false, 'its bytes are removed too');
});
