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

/**
 * A snapshot taken by the release before jobs counted their releases (job records of 23 fields,
 * queue records without maxReleases), base64 chunk by chunk: queue q (keepDead 5) with job a
 * released once then completed, b failed once (maxAttempts 2), c waiting.
 */
const beforeReleaseCounts = [
  [
    '3gAKoXYBpW5vd01zzQj8p25leHRTZXEEq2ZpbmlzaFN0YW1wAaZxdWV1ZXORmaFxwsAAAMDeAAKlY291bnTNA+il',
    'YWdlTXMA3gACpWNvdW50BaVhZ2VNcwDeAAalYWRkZWQDp2NsYWltZWQDqWNvbXBsZXRlZAGmZmFpbGVkAaRkZWFk',
    'AKxsZWFzZUV4cGlyZWQAq3JlcGVhdGFibGVzkKhldmVudExvZ94AA6d0cmltbWVkAKtsYXN0VHJpbW1lZN4AAqVp',
    'bmRleACjc2VxAKRsYXN03gACpWluZGV4CaNzZXEBq2V2ZW50Q2h1bmtzAatkZWR1cENodW5rcwGpam9iQ2h1bmtz',
    'AQ==',
  ].join(''),
  [
    'md4AB6VpbmRleAGmdGltZU1zzQPopHR5cGWlYWRkZWSlcXVldWWhcaNqb2KhYaZkZXRhaWzAo3NlcQHeAAelaW5k',
    'ZXgCpnRpbWVNc80D6KR0eXBlpWFkZGVkpXF1ZXVloXGjam9ioWKmZGV0YWlswKNzZXEB3gAHpWluZGV4A6Z0aW1l',
    'TXPNA+ikdHlwZaVhZGRlZKVxdWV1ZaFxo2pvYqFjpmRldGFpbMCjc2VxAd4AB6VpbmRleAWmdGltZU1zzQfQpHR5',
    'cGWmYWN0aXZlpXF1ZXVloXGjam9ioWGmZGV0YWlswKNzZXEB3gAHpWluZGV4BqZ0aW1lTXPNCDSkdHlwZad3YWl0',
    'aW5npXF1ZXVloXGjam9ioWGmZGV0YWlswKNzZXEB3gAHpWluZGV4B6Z0aW1lTXPNCJikdHlwZaZhY3RpdmWlcXVl',
    'dWWhcaNqb2KhYaZkZXRhaWzAo3NlcQHeAAelaW5kZXgHpnRpbWVNc80ImKR0eXBlpmFjdGl2ZaVxdWV1ZaFxo2pv',
    'YqFipmRldGFpbMCjc2VxAt4AB6VpbmRleAimdGltZU1zzQj8pHR5cGWmZmFpbGVkpXF1ZXVloXGjam9ioWKmZGV0',
    'YWlspGJvb22jc2VxAd4AB6VpbmRleAmmdGltZU1zzQj8pHR5cGWpY29tcGxldGVkpXF1ZXVloXGjam9ioWGmZGV0',
    'YWlswKNzZXEB',
  ].join(''),
  ['k5OhcaFhzgA28miToXGhYs4ANvJok6FxoWPOADbyaA=='].join(''),
  [
    'k9wAFwChYQGhbsQDImEiAAPeAAOka2luZKtleHBvbmVudGlhbKdkZWxheU1zzQPoqm1heERlbGF5TXPN6mDNdTDN',
    'A+jAqWNvbXBsZXRlZAHNCDQHzX3IoXcAAc0I/MDAwtwAFwChYgKhbsQDImIiAALeAAOka2luZKtleHBvbmVudGlh',
    'bKdkZWxheU1zzQPoqm1heERlbGF5TXPN6mDNdTDNA+jApmZhaWxlZAHNDOQHzX3IoXcAAADApGJvb23C3AAXAKFj',
    'A6FuxAMiYyIAA94AA6RraW5kq2V4cG9uZW50aWFsp2RlbGF5TXPNA+iqbWF4RGVsYXlNc83qYM11MM0D6MCnd2Fp',
    'dGluZwDNA+gAAMAAAADAwMI=',
  ].join(''),
];

void test('a snapshot from before releases were counted loads: no releases, the default cap', async () => {
  const m = new QueueStateMachine();
  await m.restore(
    fromChunks(beforeReleaseCounts.map((c) => new Uint8Array(Buffer.from(c, 'base64')))),
  );
  assert.deepEqual(m.checkInvariants(), []);
  const stats = m.stats('q');
  assert.deepEqual(
    [stats?.counts.waiting, stats?.counts.failed, stats?.counts.completed, stats?.keepDead.count],
    [1, 1, 1, 5],
  );
  assert.equal(stats?.maxReleases, 3);
  const a = m.getJob('q', 'a');
  const b = m.getJob('q', 'b');
  assert.deepEqual([a?.state, a?.attempts, a?.releases], ['completed', 1, 0]);
  assert.deepEqual([b?.state, b?.error, b?.releases], ['failed', 'boom', 0]);
  // It goes on as any state does: a counted release of c is its first.
  const h = new Harness();
  await h.m.restore(fromChunks(await drain(m.snapshot())));
  h.index = 100;
  const c = h.claimOne('q');
  h.ok({
    op: 'fail',
    queue: 'q',
    id: c.job.id,
    token: c.token,
    error: 'r',
    release: true,
    counted: true,
  });
  assert.equal(h.m.getJob('q', c.job.id)?.releases, 1);
});

void test("a job's releases and a queue's maxReleases survive a snapshot; none written while 0", async () => {
  const { Packr } = await import('msgpackr');
  const packr = new Packr({ useRecords: false, moreTypes: false });
  const h = new Harness();
  h.add('q', { id: 'a' });
  h.add('q', { id: 'b' });
  // No release counted yet: job records keep the 23 fields every release reads.
  const plain = await drain(h.m.snapshot());
  const records = packr.unpack(plain.at(-1) as Uint8Array) as unknown[][];
  assert.deepEqual(
    records.map((r) => r.length),
    [23, 23],
  );
  h.ok({ op: 'configure', queue: 'q', maxReleases: 7 });
  const c = h.claimOne('q');
  h.ok({
    op: 'fail',
    queue: 'q',
    id: c.job.id,
    token: c.token,
    error: 'r',
    release: true,
    counted: true,
  });
  const restored = new QueueStateMachine();
  await restored.restore(fromChunks(await drain(h.m.snapshot())));
  assert.deepStrictEqual(restored.dump(), h.m.dump());
  assert.equal(restored.getJob('q', 'a')?.releases, 1);
  assert.equal(restored.stats('q')?.maxReleases, 7);
});

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
