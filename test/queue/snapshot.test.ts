// The queue machine's snapshots as the host uses them: captured when taken while commands keep
// applying or another state is restored, refused when malformed, and carried through the host's session wrapper, whose
// exactly-once rule keeps a retried claim from taking a second job.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { chunkStream } from '../../src/host/contracts.js';
import { encodeEnvelope } from '../../src/host/envelope.js';
import { SessionMachine } from '../../src/host/sessions.js';
import { collectSnapshot, snapshotChunks } from '../../src/host/snapshot-stream.js';
import { QueueStateMachine, type ClaimResult } from '../../src/queue/index.js';
import { Harness, bytes } from './harness.js';

async function drain(stream: AsyncIterable<Uint8Array>): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for await (const c of stream) out.push(c);
  return out;
}

const fromChunks = (chunks: Uint8Array[]) => chunkStream(() => chunks[Symbol.iterator]());

void test('a snapshot holds the state as of the call, whatever applies while it is read', async () => {
  const h = new Harness();
  for (let i = 0; i < 5_000; i++)
    h.m.apply([h.command({ op: 'add', queue: 'q', name: 'n', payload: bytes(`${i}`) })]);
  const c = h.claimOne('q');
  const atSnapshot = h.m.dump();
  const stream = h.m.snapshot();
  // Change jobs the capture holds, in every way, before a single chunk is read.
  h.ok({ op: 'complete', queue: 'q', id: c.job.id, token: c.token });
  h.claim('q', { max: 10 });
  h.ok({ op: 'delete', queue: 'q', id: '#7' });
  h.ok({ op: 'cancel', queue: 'q', id: '#4000' });
  h.add('q', { id: 'late' });
  h.tick(10 * 60_000); // every lease expires
  const chunks = await drain(stream);
  assert.ok(chunks.length > 3, 'jobs come in several chunks');
  const restored = new QueueStateMachine();
  await restored.restore(fromChunks(chunks));
  assert.deepStrictEqual(restored.dump(), atSnapshot);
  assert.deepEqual(restored.checkInvariants(), []);
  assert.equal(restored.getJob('q', 'late'), null);
  assert.equal(restored.getJob('q', '#7')?.state, 'waiting');
});

void test('a snapshot read while another state is restored still holds the state as of the call', async () => {
  const h = new Harness();
  for (let i = 0; i < 5_000; i++)
    h.m.apply([h.command({ op: 'add', queue: 'q', name: 'n', payload: bytes(`${i}`) })]);
  h.claim('q', { max: 3 });
  const atSnapshot = h.m.dump();
  const stream = h.m.snapshot()[Symbol.asyncIterator]();
  const chunks: Uint8Array[] = [];
  const first = await stream.next();
  if (first.done !== true) chunks.push(first.value);
  const other = new Harness();
  other.add('elsewhere');
  await h.m.restore(fromChunks(await drain(other.m.snapshot())));
  h.add('elsewhere');
  for (let r = await stream.next(); r.done !== true; r = await stream.next()) chunks.push(r.value);
  const restored = new QueueStateMachine();
  await restored.restore(fromChunks(chunks));
  assert.deepStrictEqual(restored.dump(), atSnapshot);
});

void test('a fifth snapshot in progress closes the oldest, whose reader then fails', async () => {
  const h = new Harness();
  h.add('q');
  const streams = [1, 2, 3, 4, 5].map(() => h.m.snapshot());
  const [first, ...rest] = streams;
  assert.ok(first !== undefined);
  await assert.rejects(drain(first), /superseded/);
  for (const s of rest) assert.ok((await drain(s)).length > 0);
});

void test('a malformed snapshot is refused with what is wrong', async () => {
  const h = new Harness();
  h.add('q');
  h.add('r', { delayMs: 5 });
  const good = await drain(h.m.snapshot());
  const m = new QueueStateMachine();
  const { Packr } = await import('msgpackr');
  const packr = new Packr({ useRecords: false, moreTypes: false });
  const header = packr.unpack(good[0] as Uint8Array) as Record<string, unknown>;
  const cases: [Uint8Array[], RegExp][] = [
    [[], /ends before its header/],
    [[packr.pack({ ...header, v: 9 }), ...good.slice(1)], /version 9/],
    [good.slice(0, -1), /ends before job chunk 1/],
    [[...good, packr.pack([])], /chunks past its end/],
    [[packr.pack({ ...header, nowMs: 'soon' }), ...good.slice(1)], /bad nowMs/],
    [[...good.slice(0, -1), packr.pack([[0, 'x']])], /wrong shape/],
  ];
  for (const [chunks, why] of cases) await assert.rejects(m.restore(fromChunks(chunks)), why);
  await m.restore(fromChunks(good));
  assert.deepStrictEqual(m.dump(), h.m.dump());
});

void test('behind the host session wrapper, a retried claim returns its first result', async () => {
  const sm = new SessionMachine(new QueueStateMachine());
  let index = 0;
  const entry = (
    client: string,
    seq: number,
    cmd: Parameters<typeof QueueStateMachine.encode>[0],
  ) => ({
    index: ++index,
    term: 1,
    timeMs: 1_000,
    payload: encodeEnvelope({ client, seq, timeMs: 1_000, payload: QueueStateMachine.encode(cmd) }),
  });
  sm.apply([entry('', 0, { op: 'add', queue: 'q', name: 'a', payload: bytes('1') })]);
  sm.apply([entry('', 0, { op: 'add', queue: 'q', name: 'b', payload: bytes('2') })]);
  const claim = { op: 'claim', queue: 'q' } as const;
  const [first] = sm.apply([entry('worker-1', 1, claim)]) as ClaimResult[];
  // The worker timed out and sent the claim again: the same job, and the other one still waits.
  const [again] = sm.apply([entry('worker-1', 1, claim)]) as ClaimResult[];
  assert.deepStrictEqual(again, first);
  const inner = sm.inner as QueueStateMachine;
  assert.deepEqual(inner.stats('q')?.counts.waiting, 1);
  // The whole wrapper's snapshot, framed as the host stores it, restores the same.
  const data = await collectSnapshot(sm.snapshot(), () => Promise.resolve());
  const copy = new SessionMachine(new QueueStateMachine());
  await copy.restore(snapshotChunks(data));
  assert.deepStrictEqual((copy.inner as QueueStateMachine).dump(), inner.dump());
  const [third] = copy.apply([entry('worker-1', 1, claim)]) as ClaimResult[];
  assert.deepStrictEqual(third, first, 'the session survived the snapshot');
});
