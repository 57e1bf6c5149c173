// The meta group's state machine as the host drives it: encoded commands with increasing log
// indexes. Each command's results and refusals; bytes that are no command answered BAD_COMMAND;
// snapshots that round-trip exactly (thousands of ranges, several chunks), hold the state as of
// the call, and are refused when malformed; and determinism: machines fed the same log, however
// batched, or restored from a snapshot taken anywhere in it, give identical results and
// identical snapshot bytes (a planted difference in one command shows the comparison can fail).
// Draining marks nodes (with or without a map), is kept in snapshots, and a snapshot of the
// format before draining existed still restores.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { chunkStream, isRefusal, type Command } from '../../src/host/contracts.js';
import {
  MetaStateMachine,
  type MetaCommand,
  type MetaLimits,
  type MetaResult,
} from '../../src/ranges/meta-machine.js';
import { checkRangeMap, type RangeMap } from '../../src/ranges/range-map.js';
import type { RangeDescriptor } from '../../src/ranges/types.js';
import { desc, plain, RangeLogs, type RangeEvent } from './harness.js';

const packr = new Packr({ useRecords: false, moreTypes: false });

class Harness {
  index = 0;
  readonly m: MetaStateMachine;

  constructor(limits: Partial<MetaLimits> = {}) {
    this.m = new MetaStateMachine(limits);
  }

  command(payload: Uint8Array): Command {
    return { index: ++this.index, term: 1, timeMs: 0, payload };
  }

  raw(payload: Uint8Array): unknown {
    return this.m.apply([this.command(payload)])[0];
  }

  run(c: MetaCommand): MetaResult {
    const r = this.raw(MetaStateMachine.encode(c));
    assert.ok(!isRefusal(r), `refused as bytes: ${JSON.stringify(r)}`);
    const map = this.m.map();
    if (map !== null) assert.deepEqual(checkRangeMap(map), []);
    return r as MetaResult;
  }

  outcome(c: MetaCommand, outcome: MetaResult['outcome'], code?: string): MetaResult {
    const r = this.run(c);
    assert.equal(r.outcome, outcome, JSON.stringify(r));
    if (code !== undefined) assert.equal((r as { code: string }).code, code);
    return r;
  }

  allocate(): number {
    const r = this.outcome({ op: 'allocate' }, 'applied');
    return (r as { range: number }).range;
  }
}

async function drain(stream: AsyncIterable<Uint8Array>): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for await (const c of stream) out.push(c);
  return out;
}

const fromChunks = (chunks: readonly Uint8Array[]) => chunkStream(() => chunks[Symbol.iterator]());

const concat = (chunks: readonly Uint8Array[]): Uint8Array => Buffer.concat(chunks);

function recordOf(e: RangeEvent): MetaCommand {
  return e.kind === 'split'
    ? { op: 'recordSplit', left: e.left, right: e.right }
    : { op: 'recordReplicas', range: e.range };
}

void test('bootstrap makes the first map once; nothing else runs before it', () => {
  const h = new Harness();
  assert.equal(h.m.map(), null);
  assert.equal(h.m.version, 0);
  h.outcome({ op: 'allocate' }, 'refused', 'NO_MAP');
  h.outcome({ op: 'recordReplicas', range: desc(0, '', null, 1) }, 'refused', 'NO_MAP');
  const r = h.outcome({ op: 'bootstrap', replicas: [1, 2, 3] }, 'applied');
  assert.equal(r.version, 1);
  assert.deepEqual(h.m.map()?.ranges().map(plain), [plain(desc(0, '', null, 0))]);
  const again = h.outcome({ op: 'bootstrap', replicas: [4, 5, 6] }, 'refused', 'MAP_EXISTS');
  assert.equal(again.version, 1);
  assert.deepEqual(h.m.map()?.get(0)?.replicas, [1, 2, 3]);
});

void test('range ids are allocated from 3 upwards and a split must use one', () => {
  const h = new Harness();
  h.run({ op: 'bootstrap', replicas: [1, 2, 3] });
  assert.deepEqual([h.allocate(), h.allocate(), h.allocate()], [3, 4, 5]);
  assert.equal(h.m.nextRangeId, 6);
  const split = (id: number): MetaCommand => ({
    op: 'recordSplit',
    left: desc(0, '', 'm', 1),
    right: desc(id, 'm', null, 1),
  });
  const r = h.outcome(split(6), 'refused', 'NOT_ALLOCATED');
  assert.match(
    (r as { message: string }).message,
    /Range id 6 was never allocated \(the next is 6\)/,
  );
  assert.equal(h.outcome(split(4), 'applied').version, 2);
  assert.equal(h.outcome(split(4), 'known').version, 2);
  // The map's own refusals come through with their codes.
  h.outcome(
    { op: 'recordSplit', left: desc(4, 'm', 'q', 2), right: desc(5, 'q', 'x', 2) },
    'refused',
    'NOT_CONTIGUOUS',
  );
  h.outcome({ op: 'recordReplicas', range: desc(4, 'm', null, 2, [2, 3, 4]) }, 'applied');
  h.outcome({ op: 'recordReplicas', range: desc(4, 'm', null, 2, [1, 2, 3]) }, 'known');
  h.outcome({ op: 'recordReplicas', range: desc(7, 'm', null, 2) }, 'refused', 'UNKNOWN_RANGE');
  assert.equal(h.m.version, 3);
  assert.deepEqual(h.m.map()?.get(4)?.replicas, [2, 3, 4]);
});

void test('the map stops growing at maxRanges', () => {
  const h = new Harness({ maxRanges: 2 });
  h.run({ op: 'bootstrap', replicas: [1] });
  const [a, b] = [h.allocate(), h.allocate()];
  h.outcome(
    { op: 'recordSplit', left: desc(0, '', 'm', 1, [1]), right: desc(a, 'm', null, 1, [1]) },
    'applied',
  );
  const r = h.outcome(
    { op: 'recordSplit', left: desc(0, '', 'f', 2, [1]), right: desc(b, 'f', 'm', 2, [1]) },
    'refused',
    'TOO_MANY_RANGES',
  );
  assert.match((r as { message: string }).message, /holds 2 ranges, its limit/);
  assert.equal(h.m.map()?.size, 2);
  assert.throws(
    () => new MetaStateMachine({ maxRanges: 0 }),
    /maxRanges must be a positive integer, got 0/,
  );
});

void test('bytes that are no valid command are answered BAD_COMMAND and change nothing', () => {
  const h = new Harness({ maxKeyBytes: 8 });
  h.run({ op: 'bootstrap', replicas: [1, 2, 3] });
  h.allocate();
  const d = { id: 3, start: new Uint8Array([0x6d]), end: null, generation: 1, replicas: [1, 2, 3] };
  const left = { ...d, id: 0, start: new Uint8Array(0), end: new Uint8Array([0x6d]) };
  const cases: [unknown, RegExp][] = [
    [{ op: 'merge' }, /unknown meta command "merge"/],
    [{ op: 'allocate', count: 2 }, /unknown field "count"/],
    [{ op: 'bootstrap' }, /lacks the field "replicas"/],
    [{ op: 'bootstrap', replicas: [] }, /list of 1 to 15 node ids/],
    [{ op: 'bootstrap', replicas: [3, 2] }, /ascending without repeats, got \[3, 2\]/],
    [{ op: 'bootstrap', replicas: [1, 1.5] }, /"replicas\[1\]" must be an integer/],
    [{ op: 'recordSplit', left, right: { ...d, start: 'm' } }, /"right.start" must be bytes/],
    [{ op: 'recordSplit', left, right: { ...d, generation: -1 } }, /"right.generation"/],
    [
      { op: 'recordSplit', left, right: { ...d, extra: 1 } },
      /"right" has an unknown field "extra"/,
    ],
    [{ op: 'recordSplit', left }, /lacks the field "right"/],
    [{ op: 'recordReplicas', range: { ...d, end: new Uint8Array(9) } }, /9 bytes; the limit is 8/],
    [{ op: 'recordReplicas', range: [1, 2] }, /"range" is not a map/],
  ];
  for (const [raw, message] of cases) {
    const r = h.raw(packr.pack(raw));
    assert.ok(isRefusal(r), JSON.stringify(r));
    assert.equal(r.refused, 'BAD_COMMAND');
    assert.match(r.message, message);
    assert.match(r.message, /^Entry \d+ holds no valid meta command/);
  }
  const r = h.raw(new Uint8Array([0x92, 0x01]));
  assert.ok(isRefusal(r) && /not msgpack/.test(r.message), JSON.stringify(r));
  assert.equal(h.m.version, 1);
  assert.equal(h.m.nextRangeId, 4);
});

void test('by property: no bytes make apply throw or break the map', () => {
  const valid = [
    MetaStateMachine.encode({ op: 'allocate' }),
    MetaStateMachine.encode({
      op: 'recordSplit',
      left: desc(0, '', 'm', 1),
      right: desc(3, 'm', null, 1),
    }),
    MetaStateMachine.encode({ op: 'recordReplicas', range: desc(3, 'm', null, 2, [2, 3, 4]) }),
  ];
  // Valid commands with bytes flipped, msgpack of anything, and raw bytes.
  const payload = fc.oneof(
    fc
      .record({ which: fc.nat(valid.length - 1), at: fc.nat(200), to: fc.nat(255) })
      .map(({ which, at, to }) => {
        const b = new Uint8Array(valid[which] as Uint8Array);
        b[at % b.length] = to;
        return b;
      }),
    fc.anything().map((v) => packr.pack(v)),
    fc.uint8Array({ maxLength: 64 }),
  );
  fc.assert(
    fc.property(fc.array(payload, { minLength: 1, maxLength: 30 }), (payloads) => {
      const h = new Harness();
      h.run({ op: 'bootstrap', replicas: [1, 2, 3] });
      for (const p of payloads) {
        const r = h.raw(p);
        assert.ok(
          isRefusal(r) || ['applied', 'known', 'refused'].includes((r as MetaResult).outcome),
        );
        assert.deepEqual(checkRangeMap(h.m.map() as RangeMap), []);
      }
    }),
    { numRuns: 500, seed: 18 },
  );
});

/** A machine whose map has `n` ranges, made by splitting as ranges would. */
function machineWith(n: number): { h: Harness; logs: RangeLogs } {
  const h = new Harness();
  const logs = new RangeLogs([1, 2, 3]);
  h.run({ op: 'bootstrap', replicas: [1, 2, 3] });
  for (let i = 0; logs.ranges.length < n; i++) {
    const at = new TextEncoder().encode(`key-${String((i * 7_919) % 1_000_003).padStart(7, '0')}`);
    const e = logs.split(at);
    if (e === null) continue;
    const records = [{ op: 'allocate' } as const, recordOf(e)];
    if (i % 5 === 0) records.push(recordOf(logs.changeReplicas(i, [2, 3, 4 + (i % 3)])));
    // Straight to the machine: checking the whole map after each record would make this O(n²).
    const results = h.m.apply(records.map((c) => h.command(MetaStateMachine.encode(c))));
    const expected = e.kind === 'split' ? e.right.id : -1;
    assert.deepEqual(results[0], {
      outcome: 'applied',
      version: h.m.version - records.length + 1,
      range: expected,
    });
    for (const r of results) assert.equal((r as MetaResult).outcome, 'applied', JSON.stringify(r));
  }
  assert.deepEqual(checkRangeMap(h.m.map() as RangeMap), []);
  assert.deepEqual(h.m.map()?.ranges().map(plain), logs.ranges.map(plain));
  return { h, logs };
}

void test('a snapshot of thousands of ranges restores to the same map, byte for byte', async () => {
  const { h, logs } = machineWith(5_000);
  const chunks = await drain(h.m.snapshot());
  assert.ok(chunks.length > 3, `the ranges come in several chunks (${chunks.length})`);
  const restored = new MetaStateMachine();
  await restored.restore(fromChunks(chunks));
  const map = restored.map();
  assert.ok(map !== null);
  assert.deepEqual(checkRangeMap(map), []);
  assert.equal(map.version, h.m.version);
  assert.equal(restored.nextRangeId, h.m.nextRangeId);
  assert.deepEqual(map.ranges().map(plain), logs.ranges.map(plain));
  assert.deepEqual(concat(await drain(restored.snapshot())), concat(chunks));
  // The restored machine goes on as the original would.
  const next = restored.apply([
    { index: 1, term: 1, timeMs: 0, payload: MetaStateMachine.encode({ op: 'allocate' }) },
  ]);
  assert.deepEqual(next, [{ outcome: 'applied', version: h.m.version, range: h.m.nextRangeId }]);
});

void test('a snapshot holds the state as of the call, and the empty state round-trips', async () => {
  const { h } = machineWith(50);
  const before = concat(await drain(h.m.snapshot()));
  const stream = h.m.snapshot();
  const last = h.m.map()?.ranges().at(-1) as RangeDescriptor;
  h.outcome(
    {
      op: 'recordReplicas',
      range: { ...last, generation: last.generation + 1, replicas: [7, 8, 9] },
    },
    'applied',
  );
  h.allocate();
  assert.deepEqual(concat(await drain(stream)), before);

  const empty = new MetaStateMachine();
  const chunks = await drain(empty.snapshot());
  assert.equal(chunks.length, 1);
  await h.m.restore(fromChunks(chunks));
  assert.equal(h.m.map(), null);
  assert.equal(h.m.version, 0);
  assert.equal(h.m.nextRangeId, 3);
});

void test('a malformed snapshot is refused and the state is kept', async () => {
  const { h } = machineWith(3_000);
  const good = await drain(h.m.snapshot());
  const header = packr.unpack(good[0] as Uint8Array) as Record<string, number>;
  const firstChunk = packr.unpack(good[1] as Uint8Array) as unknown[][];
  const withHeader = (patch: Record<string, number>) => [
    packr.pack({ ...header, ...patch }),
    ...good.slice(1),
  ];
  const withFirst = (tuples: unknown[][]) => [
    good[0] as Uint8Array,
    packr.pack(tuples),
    ...good.slice(2),
  ];
  const gap = firstChunk.map((t, i) =>
    i === 1 ? [t[0], new Uint8Array([0x20]), ...t.slice(2)] : t,
  );
  const cases: [Uint8Array[], RegExp][] = [
    [good.slice(0, -1), /ends before descriptor chunk/],
    [[...good, good[1] as Uint8Array], /chunks past its end/],
    [withHeader({ v: 4 }), /Unsupported meta snapshot version 4/],
    [withHeader({ v: 0 }), /Unsupported meta snapshot version 0/],
    [withHeader({ nextRange: 2 }), /next range id 2 is reserved/],
    [withHeader({ nextRange: 5 }), /is in the map but the next id is 5/],
    [withHeader({ version: 0 }), /version 0 with 3000 ranges/],
    [withFirst([[0, 'x', null, 0, [1]], ...firstChunk.slice(1)]), /"range.start" must be bytes/],
    [withFirst([[0, new Uint8Array(0)], ...firstChunk.slice(1)]), /descriptor has the wrong shape/],
    [withFirst(gap), /Not a valid range map/],
  ];
  const version = h.m.version;
  for (const [chunks, message] of cases) {
    await assert.rejects(new MetaStateMachine().restore(fromChunks(chunks)), message);
    await assert.rejects(h.m.restore(fromChunks(chunks)), message);
    assert.equal(h.m.version, version);
  }
});

type Step = {
  split?: string;
  replicas?: number;
  junk?: boolean;
  alloc?: boolean;
  drain?: number;
  force?: number;
  undrain?: number;
};

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  fc.stringMatching(/^[a-d]{1,3}$/).map((split) => ({ split })),
  fc.nat(20).map((replicas) => ({ replicas })),
  fc.constant({ junk: true }),
  fc.constant({ alloc: true }),
  fc.integer({ min: 1, max: 5 }).map((drain) => ({ drain })),
  fc.integer({ min: 1, max: 5 }).map((force) => ({ force })),
  fc.integer({ min: 1, max: 5 }).map((undrain) => ({ undrain })),
);

/** A log for the meta group from random range changes, records shuffled and repeated. */
function logOf(steps: readonly Step[], picks: readonly number[]): Uint8Array[] {
  const logs = new RangeLogs([1, 2, 3]);
  const log = [MetaStateMachine.encode({ op: 'bootstrap', replicas: [1, 2, 3] })];
  for (const [i, s] of steps.entries()) {
    if (s.split !== undefined && logs.split(new TextEncoder().encode(s.split)) !== null)
      log.push(MetaStateMachine.encode({ op: 'allocate' }));
    else if (s.replicas !== undefined)
      logs.changeReplicas(s.replicas, [1, 2, 4 + (s.replicas % 3)]);
    else if (s.junk === true) log.push(new Uint8Array([0x81, 0xa2, 0x6f, 0x70, i]));
    else if (s.alloc === true) log.push(MetaStateMachine.encode({ op: 'allocate' }));
    else if (s.drain !== undefined)
      log.push(MetaStateMachine.encode({ op: 'drain', node: s.drain }));
    else if (s.force !== undefined)
      log.push(MetaStateMachine.encode({ op: 'drain', node: s.force, force: true }));
    else if (s.undrain !== undefined)
      log.push(MetaStateMachine.encode({ op: 'undrain', node: s.undrain }));
    const pick = picks[i] ?? 0;
    if (logs.events.length > 0)
      log.push(
        MetaStateMachine.encode(recordOf(logs.events[pick % logs.events.length] as RangeEvent)),
      );
  }
  return log;
}

/**
 * Applies `log` in batches cut at `cuts`; at `restoreAt` (if given), snapshots the machine and
 * goes on with a new one restored from it. Returns the results and the final snapshot's bytes.
 */
async function replay(
  log: readonly Uint8Array[],
  cuts: readonly number[],
  restoreAt = -1,
): Promise<{ results: unknown[]; bytes: Uint8Array }> {
  let m = new MetaStateMachine();
  const commands = log.map((payload, i): Command => ({
    index: i + 1,
    term: 1,
    timeMs: 0,
    payload,
  }));
  const results: unknown[] = [];
  let at = 0;
  const ends = [...cuts, restoreAt, commands.length].filter((c) => c >= 0).sort((x, y) => x - y);
  for (const cut of ends) {
    const end = Math.min(cut, commands.length);
    results.push(...m.apply(commands.slice(at, end)));
    at = end;
    if (cut === restoreAt) {
      const restored = new MetaStateMachine();
      await restored.restore(fromChunks(await drain(m.snapshot())));
      m = restored;
    }
  }
  const map = m.map();
  assert.ok(map !== null, 'the log starts with bootstrap');
  assert.deepEqual(checkRangeMap(map), []);
  return { results, bytes: concat(await drain(m.snapshot())) };
}

void test('machines fed the same log agree on every result and on the snapshot bytes', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(stepArb, { minLength: 5, maxLength: 80, size: 'max' }),
      fc.array(fc.nat(), { minLength: 80, maxLength: 80 }),
      fc.array(fc.nat(200), { maxLength: 6 }),
      fc.nat(200),
      async (steps, picks, cuts, restoreAt) => {
        const log = logOf(steps, picks);
        const one = await replay(log, []);
        const batched = await replay(log, cuts);
        assert.deepEqual(batched.results, one.results);
        assert.deepEqual(batched.bytes, one.bytes);
        // A replica that caught up from a snapshot taken anywhere ends the same.
        const caughtUp = await replay(log, [], Math.min(restoreAt, log.length));
        assert.deepEqual(caughtUp.results, one.results);
        assert.deepEqual(caughtUp.bytes, one.bytes);
      },
    ),
    { numRuns: 150, seed: 18 },
  );
});

void test('planted: a replica that applied one command differently is caught by its snapshot', async () => {
  const log = [
    MetaStateMachine.encode({ op: 'bootstrap', replicas: [1, 2, 3] }),
    MetaStateMachine.encode({ op: 'allocate' }),
    MetaStateMachine.encode({
      op: 'recordSplit',
      left: desc(0, '', 'm', 1),
      right: desc(3, 'm', null, 1),
    }),
  ];
  const other = [
    ...log.slice(0, 2),
    MetaStateMachine.encode({
      op: 'recordSplit',
      left: desc(0, '', 'n', 1),
      right: desc(3, 'n', null, 1),
    }),
  ];
  const a = await replay(log, []);
  const b = await replay(other, []);
  assert.deepEqual(a.results, b.results, 'both applied: the results alone do not tell');
  assert.notDeepEqual(a.bytes, b.bytes);
});

void test('drain marks a node, undrain clears it; both before bootstrap too, and repeats are known', () => {
  const h = new Harness({ maxDraining: 2 });
  assert.deepEqual(h.m.draining(), []);
  h.outcome({ op: 'drain', node: 5 }, 'applied');
  const again = h.outcome({ op: 'drain', node: 5 }, 'known');
  assert.match((again as { message: string }).message, /Node 5 is already being drained/);
  h.run({ op: 'bootstrap', replicas: [1, 2, 3] });
  h.outcome({ op: 'drain', node: 2 }, 'applied');
  assert.deepEqual(h.m.draining(), [2, 5]);
  const full = h.outcome({ op: 'drain', node: 3 }, 'refused', 'TOO_MANY_DRAINING');
  assert.match((full as { message: string }).message, /2 nodes are being drained, the limit/);
  h.outcome({ op: 'undrain', node: 5 }, 'applied');
  const not = h.outcome({ op: 'undrain', node: 5 }, 'known');
  assert.match((not as { message: string }).message, /Node 5 is not being drained/);
  assert.deepEqual(h.m.draining(), [2]);
  // Draining leaves the map alone.
  assert.equal(h.m.version, 1);
  for (const [raw, message] of [
    [{ op: 'drain' }, /lacks the field "node"/],
    [{ op: 'drain', node: 0 }, /"node" must be an integer of at least 1, got 0/],
    [{ op: 'undrain', node: 2 ** 31 + 1 }, /"node" must be a node id of at most 2147483648/],
    [{ op: 'drain', node: 3, why: 'x' }, /unknown field "why"/],
  ] as const) {
    const r = h.raw(packr.pack(raw));
    assert.ok(isRefusal(r) && r.refused === 'BAD_COMMAND', JSON.stringify(r));
    assert.match(r.message, message);
  }
  assert.deepEqual(h.m.draining(), [2]);
});

void test('the draining nodes round-trip through a snapshot, with the map and without one', async () => {
  const { h } = machineWith(10);
  h.outcome({ op: 'drain', node: 4 }, 'applied');
  h.outcome({ op: 'drain', node: 1 }, 'applied');
  const chunks = await drain(h.m.snapshot());
  // Captured at the call: a later undrain does not reach the snapshot taken before it.
  h.outcome({ op: 'undrain', node: 4 }, 'applied');
  const restored = new MetaStateMachine();
  await restored.restore(fromChunks(chunks));
  assert.deepEqual(restored.draining(), [1, 4]);
  assert.equal(restored.version, h.m.version);
  assert.deepEqual(concat(await drain(restored.snapshot())), concat(chunks));

  const noMap = new MetaStateMachine();
  noMap.apply([
    { index: 1, term: 1, timeMs: 0, payload: MetaStateMachine.encode({ op: 'drain', node: 7 }) },
  ]);
  const back = new MetaStateMachine();
  await back.restore(fromChunks(await drain(noMap.snapshot())));
  assert.deepEqual(back.draining(), [7]);
  assert.equal(back.map(), null);
});

void test('a format 1 snapshot (before draining existed) restores with no node draining', async () => {
  const { h } = machineWith(20);
  const chunks = await drain(h.m.snapshot());
  const header = packr.unpack(chunks[0] as Uint8Array) as Record<string, unknown>;
  assert.equal(header['v'], 2);
  const v1: Record<string, unknown> = { ...header, v: 1 };
  delete v1['draining'];
  const old = [packr.pack(v1), ...chunks.slice(1)];
  const restored = new MetaStateMachine();
  await restored.restore(fromChunks(old));
  assert.deepEqual(restored.draining(), []);
  assert.equal(restored.version, h.m.version);
  assert.deepEqual(restored.map()?.ranges().map(plain), h.m.map()?.ranges().map(plain));
  // Written again in the current format, byte for byte what the original writes.
  assert.deepEqual(concat(await drain(restored.snapshot())), concat(chunks));

  const bad: [unknown, RegExp][] = [
    [undefined, /draining must be a list of at most 64 node ids/],
    [[3, 2], /draining nodes \[3, 2\] are not ascending and unique/],
    [[1, 1], /not ascending and unique/],
    [[0], /"draining\[0\]" must be an integer of at least 1/],
    [Array.from({ length: 65 }, (_, i) => i + 1), /at most 64 node ids/],
  ];
  for (const [draining, message] of bad) {
    const withDraining = [packr.pack({ ...header, draining }), ...chunks.slice(1)];
    await assert.rejects(new MetaStateMachine().restore(fromChunks(withDraining)), message);
  }
});

void test('a forced drain marks the node forced too; a plain drain after it is known; undrain clears both', async () => {
  const { h } = machineWith(10);
  // Plain, then forced: the mark of force is added to the drain under way.
  h.outcome({ op: 'drain', node: 4 }, 'applied');
  assert.deepEqual(h.m.forced(), []);
  h.outcome({ op: 'drain', node: 4, force: true }, 'applied');
  assert.deepEqual([h.m.draining(), h.m.forced()], [[4], [4]]);
  const known = h.outcome({ op: 'drain', node: 4 }, 'known');
  assert.match(
    (known as { message: string }).message,
    /Node 4 is already being drained \(forced\)/,
  );
  h.outcome({ op: 'drain', node: 4, force: true }, 'known');
  h.outcome({ op: 'drain', node: 2, force: true }, 'applied');
  assert.deepEqual(
    [h.m.draining(), h.m.forced()],
    [
      [2, 4],
      [2, 4],
    ],
  );

  // A plain drain is the same bytes as before forced drains; `force` is true or absent.
  assert.deepEqual(packr.unpack(MetaStateMachine.encode({ op: 'drain', node: 2 })), {
    op: 'drain',
    node: 2,
  });
  for (const raw of [
    { op: 'drain', node: 3, force: false },
    { op: 'undrain', node: 2, force: true },
  ]) {
    const r = h.raw(packr.pack(raw));
    assert.ok(isRefusal(r) && r.refused === 'BAD_COMMAND', JSON.stringify(r));
  }

  // Format 3 while a drain is forced, read back the same.
  const chunks = await drain(h.m.snapshot());
  assert.equal((packr.unpack(chunks[0] as Uint8Array) as { v: number }).v, 3);
  const restored = new MetaStateMachine();
  await restored.restore(fromChunks(chunks));
  assert.deepEqual(
    [restored.draining(), restored.forced()],
    [
      [2, 4],
      [2, 4],
    ],
  );
  assert.deepEqual(concat(await drain(restored.snapshot())), concat(chunks));
  const header = packr.unpack(chunks[0] as Uint8Array) as Record<string, unknown>;
  const notDraining = [packr.pack({ ...header, forced: [2, 3] }), ...chunks.slice(1)];
  await assert.rejects(
    new MetaStateMachine().restore(fromChunks(notDraining)),
    /forced node 3 is not among the draining/,
  );

  // Undrained, the node is neither; with no forced drain left the snapshot is format 2 again.
  h.outcome({ op: 'undrain', node: 2 }, 'applied');
  h.outcome({ op: 'undrain', node: 4 }, 'applied');
  assert.deepEqual([h.m.draining(), h.m.forced()], [[], []]);
  h.outcome({ op: 'drain', node: 4 }, 'applied');
  assert.deepEqual(h.m.forced(), [], 'a drain after an undrain is plain');
  const plain2 = await drain(h.m.snapshot());
  const head = packr.unpack(plain2[0] as Uint8Array) as Record<string, unknown>;
  assert.equal(head['v'], 2);
  assert.equal('forced' in head, false);
});
