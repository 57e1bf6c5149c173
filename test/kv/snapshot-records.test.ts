// The key-value snapshot's record chunks written by hand (src/kv/snapshot-records.ts): the very
// bytes msgpackr writes for the same records (so every release reads them, and replicas of one
// state still write the same snapshot), read straight back, and anything else left to msgpackr,
// never misread.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { chunkStream } from '../../src/host/contracts.js';
import { isTombstone, type Version } from '../../src/kv/history.js';
import {
  toKeyValue,
  toStored,
  bytesOf,
  type KeyValue,
  type StoredKv,
} from '../../src/kv/key-value.js';
import type { Op } from '../../src/kv/kv-store.js';
import { KvStateMachine } from '../../src/kv/machine.js';
import {
  readPastChunk,
  readRecordChunk,
  writePastChunk,
  writeRecordChunk,
} from '../../src/kv/snapshot-records.js';

// As the key-value machine's own codec is made.
const packr = new Packr({ useRecords: false, moreTypes: false });

/** Numbers near every boundary where msgpack's integer forms change. */
const numberArb = fc.oneof(
  fc.constantFrom(
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x100,
    0xffff,
    0x10000,
    0xffffffff,
    0x100000000,
    Number.MAX_SAFE_INTEGER,
  ),
  fc.nat(),
  fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
);

/** Bytes as the store keeps them (one char per byte), near every bin length boundary. */
const latin1Arb = fc
  .oneof(
    fc.uint8Array({ maxLength: 80 }),
    fc.constantFrom(63, 64, 65, 255, 256, 65535, 65536).map((n) => new Uint8Array(n).fill(0xe9)),
  )
  .map((u) => Buffer.from(u).toString('latin1'));

const recordArb: fc.Arbitrary<StoredKv> = fc
  .record({
    key: latin1Arb,
    value: latin1Arb,
    createRevision: numberArb,
    modRevision: numberArb,
    version: numberArb,
    lease: fc.option(numberArb, { nil: undefined }),
  })
  .map((r) => {
    const { lease, ...rest } = r;
    return lease === undefined ? rest : { ...rest, lease };
  });

const versionArb: fc.Arbitrary<Version> = fc.oneof(
  recordArb,
  numberArb.map((modRevision) => ({ modRevision, deleted: true as const })),
);

const pastsArb = fc.array(fc.tuple(latin1Arb, fc.array(versionArb, { maxLength: 4 })), {
  maxLength: 20,
});

function packedRecords(records: readonly StoredKv[]): Uint8Array {
  return packr.pack(records.map(toKeyValue));
}

function packedPasts(pasts: readonly [string, Version[]][]): Uint8Array {
  return packr.pack(
    pasts.map(([key, versions]) => ({
      key: bytesOf(key),
      versions: versions.map((v) => (isTombstone(v) ? v : toKeyValue(v))),
    })),
  );
}

void test('property: record chunks are the bytes msgpackr writes, and read back exactly', () => {
  fc.assert(
    fc.property(fc.array(recordArb, { maxLength: 40 }), (records) => {
      const mine = writeRecordChunk(records);
      assert.ok(mine !== null);
      assert.deepEqual(Buffer.from(mine), Buffer.from(packedRecords(records)));
      assert.deepEqual(readRecordChunk(mine), records);
    }),
    { numRuns: 300 },
  );
});

void test('property: history chunks are the bytes msgpackr writes, and read back exactly', () => {
  fc.assert(
    fc.property(pastsArb, (pasts) => {
      const mine = writePastChunk(pasts);
      assert.ok(mine !== null);
      assert.deepEqual(Buffer.from(mine), Buffer.from(packedPasts(pasts)));
      assert.deepEqual(readPastChunk(mine), pasts);
    }),
    { numRuns: 300 },
  );
});

void test('arrays of 16 and of 65,536 records take the longer array headers, as msgpackr writes them', () => {
  const record = (i: number): StoredKv => ({
    key: `k${i}`,
    value: 'v',
    createRevision: i + 1,
    modRevision: i + 1,
    version: 1,
  });
  for (const n of [15, 16, 65_535, 65_536]) {
    const records = Array.from({ length: n }, (_, i) => record(i));
    const mine = writeRecordChunk(records);
    assert.ok(mine !== null);
    assert.equal(Buffer.compare(Buffer.from(mine), Buffer.from(packedRecords(records))), 0, `${n}`);
    assert.equal(readRecordChunk(mine)?.length, n);
  }
});

void test('a record with a number the writer does not handle is left to msgpackr (null)', () => {
  const base = { key: 'k', value: 'v', createRevision: 1, modRevision: 1, version: 1 };
  for (const bad of [{ version: -1 }, { modRevision: 1.5 }, { lease: 2 ** 60 }])
    assert.equal(writeRecordChunk([{ ...base, ...bad }]), null, JSON.stringify(bad));
  assert.equal(writePastChunk([['k', [{ modRevision: -3, deleted: true }]]]), null);
});

void test('any other layout reads as null, never as other records', () => {
  const record = { key: 'k', value: 'v', createRevision: 1, modRevision: 2, version: 3 };
  const good = writeRecordChunk([record]);
  assert.ok(good !== null);
  const others: [string, Uint8Array][] = [
    // Plain maps of another size form, as a packer with variableMapSize writes them.
    ['fixmap', new Packr({ useRecords: false, variableMapSize: true }).pack([toKeyValue(record)])],
    [
      'fields in another order',
      packr.pack([
        { value: bytesOf('v'), key: bytesOf('k'), createRevision: 1, modRevision: 2, version: 3 },
      ]),
    ],
    ['a string where a bin is', packr.pack([{ ...toKeyValue(record), key: 'k' }])],
    ['a negative number', packr.pack([{ ...toKeyValue(record), version: -1 }])],
    ['a fraction', packr.pack([{ ...toKeyValue(record), version: 1.5 }])],
    ['an unknown field', packr.pack([{ ...toKeyValue(record), extra: 1 }])],
    ['a map, not an array', packr.pack({ a: 1 })],
    ['truncated', good.subarray(0, good.length - 1)],
    ['trailing bytes', Buffer.concat([good, Buffer.from([0xc0])])],
    ['empty', new Uint8Array(0)],
    ['a number, not an array', Uint8Array.from([0x00, 0x00])],
  ];
  for (const [what, bytes] of others) assert.equal(readRecordChunk(bytes), null, what);
  assert.equal(readPastChunk(good), null, 'a record chunk is no history chunk');
  const past = writePastChunk([['k', [{ modRevision: 4, deleted: true }]]]);
  assert.ok(past !== null);
  assert.equal(readRecordChunk(past), null, 'a history chunk is no record chunk');
  // A tombstone whose mark is not `true`.
  const falseMark = packr.pack([
    { key: bytesOf('k'), versions: [{ modRevision: 4, deleted: false }] },
  ]);
  assert.equal(readPastChunk(falseMark), null);
});

/** A machine's snapshot, chunk by chunk. */
async function snapshotChunks(m: KvStateMachine): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for await (const c of m.snapshot()) out.push(c);
  return out;
}

function replay(chunks: readonly Uint8Array[]): AsyncIterable<Uint8Array> {
  return chunkStream(() => chunks[Symbol.iterator]());
}

function machineWith(writes: number): KvStateMachine {
  const m = new KvStateMachine({ maxKeyBytes: 64, maxValueBytes: 64 });
  const enc = new TextEncoder();
  for (let i = 0; i < writes; i++) {
    // 700 keys, the first 300 written twice so that they have a past; every 10th write
    // deletes the key written five writes before instead, which leaves a tombstone in the past
    // of a key written again later.
    const op: Op =
      i % 10 === 9
        ? {
            kind: 'delete',
            range: { key: enc.encode(`key-${(i - 5) % 700}`), rangeEnd: null },
            prevKv: false,
          }
        : {
            kind: 'put',
            key: enc.encode(`key-${i % 700}`),
            value: enc.encode(`v${i}`),
            prevKv: false,
          };
    const payload = KvStateMachine.encode({ compare: [], success: [op], failure: [] });
    m.apply([{ term: 1, index: i + 1, timeMs: 0, payload }]);
  }
  return m;
}

const hex = (cs: readonly Uint8Array[]): string[] => cs.map((c) => Buffer.from(c).toString('hex'));

void test('a machine reads its own chunks the fast way, and chunks in any other valid layout through msgpackr, to the same state', async () => {
  const source = machineWith(1_000);
  const chunks = await snapshotChunks(source);
  // Header, one record chunk, one history chunk (with tombstones).
  assert.equal(chunks.length, 3);
  assert.ok(readRecordChunk(chunks[1] as Uint8Array) !== null, 'records in the fast layout');
  const pasts = readPastChunk(chunks[2] as Uint8Array);
  assert.ok(pasts !== null, 'history in the fast layout');
  assert.ok(
    pasts.some(([, vs]) => vs.some(isTombstone)),
    'the history holds tombstones',
  );
  // The same state with every chunk after the header in another valid layout (fixmaps), which
  // only msgpackr reads.
  const loose = new Packr({ useRecords: false, variableMapSize: true });
  const relaid = chunks.map((c, i) => (i === 0 ? c : loose.pack(packr.unpack(c))));
  assert.equal(readRecordChunk(relaid[1] as Uint8Array), null, 'the other layout is not fast');
  assert.equal(readPastChunk(relaid[2] as Uint8Array), null, 'the other layout is not fast');
  for (const input of [chunks, relaid]) {
    const copy = new KvStateMachine({ maxKeyBytes: 64, maxValueBytes: 64 });
    await copy.restore(replay(input));
    assert.deepEqual(hex(await snapshotChunks(copy)), hex(chunks), 'restored to the same bytes');
  }
});

/** What the slow path makes of a chunk: msgpackr's reading, as the machine's fallback. */
function slowRecords(bytes: Uint8Array): StoredKv[] | null {
  try {
    const part = packr.unpack(bytes) as KeyValue[];
    return Array.isArray(part) ? part.map((kv) => toStored(kv)) : null;
  } catch {
    return null;
  }
}

void test('property: a damaged chunk reads as null or as exactly what msgpackr reads, never as other records', () => {
  const good = writeRecordChunk([
    { key: 'key-1', value: 'x'.repeat(70), createRevision: 1, modRevision: 300, version: 2 },
    {
      key: 'key-2',
      value: 'y',
      createRevision: 2 ** 33,
      modRevision: 2 ** 33,
      version: 1,
      lease: 0,
    },
  ]);
  assert.ok(good !== null);
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.nat({ max: good.length - 1 }), fc.integer({ min: 0, max: 255 })), {
        minLength: 1,
        maxLength: 3,
      }),
      fc.nat({ max: good.length }),
      (flips, keep) => {
        const bytes = Buffer.from(good).subarray(0, keep === 0 ? good.length : keep);
        const damaged = Buffer.from(bytes);
        for (const [at, b] of flips) if (at < damaged.length) damaged[at] = b;
        const fast = readRecordChunk(damaged);
        if (fast === null) return;
        assert.deepEqual(fast, slowRecords(damaged));
      },
    ),
    { numRuns: 2_000 },
  );
});
