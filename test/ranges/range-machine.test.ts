// A range's state machine (src/ranges/range-machine.ts): range 0 that never split is the
// key-value machine; every kind of command and read with a key outside the bounds is refused
// with WRONG_RANGE and changes nothing; splits are refused when stale or malformed; and a split
// leaves two halves that together are the unsplit store (split-check.ts), the right half built
// from the seed every replica makes, sessions included.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import type { Command } from '../../src/host/contracts.js';
import { encodeEnvelope } from '../../src/host/envelope.js';
import { SessionMachine } from '../../src/host/sessions.js';
import { collectSnapshot, snapshotChunks } from '../../src/host/snapshot-stream.js';
import type { Op } from '../../src/kv/kv-store.js';
import { KvStateMachine, type KvCommand } from '../../src/kv/machine.js';
import {
  RangeMachine,
  WHOLE_KEY_SPACE,
  WrongRangeError,
  type RangeCommand,
  type SplitApplied,
} from '../../src/ranges/range-machine.js';
import type { RangeDescriptor } from '../../src/ranges/types.js';
import { splitProblems } from './split-check.js';

const b = (s: string): Uint8Array => new TextEncoder().encode(s);
const limits = { maxKeyBytes: 1024, maxValueBytes: 4096 };
const nextTurn = (): Promise<void> => new Promise((r) => setImmediate(r));
const packr = new Packr({ useRecords: false, moreTypes: false });

const put = (key: string, value: string, lease = 0): KvCommand => ({
  compare: [],
  success: [
    { kind: 'put', key: b(key), value: b(value), prevKv: false, ...(lease ? { lease } : {}) },
  ],
  failure: [],
});
const del = (key: string, end: Uint8Array | null = null): KvCommand => ({
  compare: [],
  success: [{ kind: 'delete', range: { key: b(key), rangeEnd: end }, prevKv: false }],
  failure: [],
});
const split = (
  key: string,
  id: number,
  generation: number,
  replicas = [1, 2, 3],
): RangeCommand => ({
  split: { key: b(key), id, generation, replicas },
});

/** Applies commands to a machine at rising indexes, as a log would. */
class Log {
  private index = 0;
  constructor(readonly apply: (cs: Command[]) => unknown[]) {}
  run(...payloads: Uint8Array[]): unknown[] {
    return this.apply(
      payloads.map((payload) => ({ index: ++this.index, term: 1, timeMs: 0, payload })),
    );
  }
}

/** A range machine behind a session layer, as a node runs it, with its splits recorded. */
function sessioned(descriptor?: RangeDescriptor): {
  rm: RangeMachine;
  sm: SessionMachine;
  log: Log;
  splits: SplitApplied[];
} {
  const rm = new RangeMachine({ limits, ...(descriptor === undefined ? {} : { descriptor }) });
  const sm = new SessionMachine(rm);
  const splits: SplitApplied[] = [];
  rm.onSplit((s) => {
    splits.push(s);
    return Promise.resolve();
  });
  return { rm, sm, log: new Log((cs) => sm.apply(cs)), splits };
}

/**
 * A command in an envelope: with a session when `client` is given. One time for all, so the
 * session layer applies a batch's commands in one run wherever it may (a new time ends a run).
 */
function env(cmd: RangeCommand, client = '', seq = 0): Uint8Array {
  return encodeEnvelope({ client, seq, timeMs: 1_000, payload: RangeMachine.encode(cmd) });
}

async function* asyncOf(chunks: readonly Uint8Array[]): AsyncGenerator<Uint8Array> {
  for (const c of chunks) yield await Promise.resolve(c);
}

async function bytes(chunks: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  return collectSnapshot(chunks, nextTurn);
}

async function restoredFrom(data: Uint8Array): Promise<{ rm: RangeMachine; sm: SessionMachine }> {
  const rm = new RangeMachine({ limits });
  const sm = new SessionMachine(rm);
  await sm.restore(snapshotChunks(data));
  return { rm, sm };
}

const keyArb = fc.constantFrom('a', 'ab', 'b', 'c', 'm', 'n', 'x', 'zz');
const kvCommandArb: fc.Arbitrary<KvCommand> = fc.oneof(
  fc.tuple(keyArb, fc.string({ maxLength: 3 })).map(([k, v]) => put(k, v)),
  keyArb.map((k) => del(k)),
  keyArb.map((k) => del(k, new Uint8Array([0]))),
  fc.nat(8).map((n) => ({ compact: n + 1 })),
  fc.constant({ leaseGrant: { id: 0, ttl: 30 } }),
  fc.nat(12).map((n) => ({ leaseRevoke: n + 1 })),
);

void test('range 0 that never split answers and snapshots as the key-value machine alone', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(kvCommandArb, { maxLength: 40 }), async (cmds) => {
      const rm = new RangeMachine({ limits });
      const kv = new KvStateMachine(limits);
      const commands = cmds.map((c, i) => ({
        index: i + 1,
        term: 1,
        timeMs: 0,
        payload: RangeMachine.encode(c),
      }));
      assert.deepEqual(rm.apply(commands), kv.apply(commands));
      const ours = [];
      for await (const c of rm.snapshot()) ours.push(Buffer.from(c));
      const theirs = [];
      for await (const c of kv.snapshot()) theirs.push(Buffer.from(c));
      // Our header, then exactly the key-value machine's chunks.
      assert.deepEqual(ours.slice(1), theirs);
    }),
    { numRuns: 60 },
  );
});

void test('a snapshot written before ranges restores as range 0, the whole key space', async () => {
  const kv = new KvStateMachine(limits);
  new Log((cs) => kv.apply(cs)).run(KvStateMachine.encode(put('k', 'v')));
  const rm = new RangeMachine({
    limits,
    descriptor: { id: 7, start: b('x'), end: null, generation: 3, replicas: [1] },
  });
  assert.equal(rm.restoreCount(), 0);
  await rm.restore(kv.snapshot());
  assert.equal(rm.restoreCount(), 1, 'a restore is counted (the range load skips its jump)');
  assert.deepEqual(rm.descriptor(), WHOLE_KEY_SPACE);
  assert.deepEqual(rm.children(), []);
  assert.equal(
    rm.range({ range: { key: b('k'), rangeEnd: null }, limit: 0, countOnly: false }).count,
    1,
  );
});

void test('the descriptor and the children round-trip through a snapshot', async () => {
  const { sm, rm, log } = sessioned();
  log.run(
    env(put('a', '1')),
    env(put('q', '2')),
    env(split('m', 3, 0)),
    env(split('f', 4, 1, [2])),
  );
  assert.equal(rm.descriptor().generation, 2);
  const data = await bytes(sm.snapshot());
  const back = await restoredFrom(data);
  assert.deepEqual(back.rm.descriptor(), rm.descriptor());
  assert.deepEqual(back.rm.children(), rm.children());
  assert.deepEqual(
    rm.children().map((c) => [c.id, Buffer.from(c.start).toString(), c.generation, c.replicas]),
    [
      [3, 'm', 1, [1, 2, 3]],
      [4, 'f', 2, [2]],
    ],
  );
  // And it is the same bytes again.
  assert.deepEqual(await bytes(back.sm.snapshot()), data);
});

void test('every kind of command or read with a key outside the bounds is refused with WRONG_RANGE', () => {
  const d: RangeDescriptor = { id: 5, start: b('b'), end: b('d'), generation: 2, replicas: [1, 2] };
  const rm = new RangeMachine({ limits, descriptor: d });
  const log = new Log((cs) => rm.apply(cs));
  log.run(RangeMachine.encode(put('c', 'inside')));
  const rev = rm.kv.revision();
  const txn = (ops: Op[], compareKey?: string, failure: Op[] = []): KvCommand => ({
    compare:
      compareKey === undefined
        ? []
        : [{ key: b(compareKey), target: 'version', op: '=', value: 99 }],
    success: ops,
    failure,
  });
  const rangeOp = (key: string, end: Uint8Array | null): Op => ({
    kind: 'range',
    range: { key: b(key), rangeEnd: end },
    limit: 0,
    countOnly: false,
  });
  const outside: [string, KvCommand][] = [
    ['a put below the start', put('a', 'x')],
    ['a put at the end', put('d', 'x')],
    ['a delete of one key', del('e')],
    ['a delete of keys reaching past the end', del('c', b('e'))],
    ['a delete to the end of the key space', del('c', new Uint8Array([0]))],
    ['a range op in a transaction', txn([rangeOp('a', b('c'))])],
    ['a compare', txn([], 'z')],
    [
      'an op of the branch not taken',
      txn([], 'c', [{ kind: 'put', key: b('z'), value: b('x'), prevKv: false }]),
    ],
  ];
  for (const [what, cmd] of outside) {
    const [r] = log.run(RangeMachine.encode(cmd)) as [
      { kind: string; error?: { code: string; range: RangeDescriptor } },
    ];
    assert.equal(r.kind, 'error', what);
    assert.equal(r.error?.code, 'WRONG_RANGE', what);
    assert.deepEqual(r.error?.range, d, what);
    assert.equal(rm.kv.revision(), rev, `${what} changed nothing`);
  }
  // Reads: a range read and a watch's replay.
  for (const range of [
    { key: b('a'), rangeEnd: null },
    { key: b('c'), rangeEnd: b('e') },
    { key: b('c'), rangeEnd: new Uint8Array([0]) },
  ]) {
    assert.throws(
      () => rm.range({ range, limit: 0, countOnly: false }),
      (e: unknown) =>
        e instanceof WrongRangeError && e.code === 'WRONG_RANGE' && e.descriptor === d,
    );
    assert.throws(() => rm.changesSince(range, 1), WrongRangeError);
  }
  // Inside: the exact bounds, an empty range, a compaction and leases (no keys) all apply.
  const inside: KvCommand[] = [
    put('b', '1'),
    txn([rangeOp('b', b('d'))]),
    del('c', b('d')),
    txn([rangeOp('c', b('a'))]),
    { leaseGrant: { id: 9, ttl: 5 } },
    { leaseRevoke: 9 },
    { compact: 2 },
  ];
  for (const cmd of inside) {
    const [r] = log.run(RangeMachine.encode(cmd)) as [{ kind?: string; error?: unknown }];
    assert.equal(r.error, undefined, JSON.stringify(r));
  }
  assert.equal(
    rm.range({ range: { key: b('b'), rangeEnd: b('d') }, limit: 0, countOnly: false }).count,
    1,
  );
});

void test('a split is refused when stale or not strictly inside, and changes nothing', () => {
  const d: RangeDescriptor = { id: 5, start: b('b'), end: b('m'), generation: 2, replicas: [1, 2] };
  const { rm, log, splits } = sessioned(d);
  log.run(env(split('c', 3, 2)));
  const after = rm.descriptor();
  const cases: [string, RangeCommand, string][] = [
    ['an older generation', split('e', 6, 2), 'WRONG_RANGE'],
    ['a newer generation', split('e', 6, 9), 'WRONG_RANGE'],
    ['the start key', split('b', 6, 3), 'BAD_REQUEST'],
    ['a key below the start', split('a', 6, 3), 'BAD_REQUEST'],
    ['a key at the end (now the left end c)', split('c', 6, 3), 'BAD_REQUEST'],
    ['a key past the end', split('x', 6, 3), 'BAD_REQUEST'],
    ['a reserved id', split('bb', 2, 3), 'BAD_REQUEST'],
    ['its own id', split('bb', 5, 3), 'BAD_REQUEST'],
    ['a child id', split('bb', 3, 3), 'BAD_REQUEST'],
  ];
  for (const [what, cmd, code] of cases) {
    const [r] = log.run(env(cmd)) as [{ kind: string; error?: { code: string; message: string } }];
    assert.equal(r.kind, 'error', what);
    assert.equal(r.error?.code, code, `${what}: ${r.error?.message}`);
    assert.deepEqual(rm.descriptor(), after, what);
  }
  const bad = (x: unknown): Uint8Array =>
    encodeEnvelope({ client: '', seq: 0, timeMs: 0, payload: packr.pack(x) });
  for (const x of [
    { split: { key: b('e'), id: 6, generation: 3, replicas: [] } },
    { split: { key: new Uint8Array(0), id: 6, generation: 3, replicas: [1] } },
    { split: { key: b('e'), id: 6, generation: 3, replicas: [2, 1] } },
    { split: { key: b('e'), id: 6, generation: 3, replicas: [1] }, extra: 1 },
  ]) {
    const [r] = log.run(bad(x)) as [{ refused?: string }];
    assert.equal(r.refused, 'BAD_COMMAND', JSON.stringify(x));
  }
  assert.equal(splits.length, 1);
  assert.deepEqual(rm.descriptor(), after);
});

void test('a split that asks is refused while the store holds a lease; one written before the field splits as it did', () => {
  const { rm, log, splits } = sessioned();
  log.run(env({ leaseGrant: { id: 7, ttl: 60 } }), env(put('a', '1', 7)), env(put('x', '2', 7)));
  const before = rm.descriptor();
  const asks: RangeCommand = {
    split: { key: b('m'), id: 3, generation: 0, replicas: [1], noLeases: true },
  };
  const [r] = log.run(env(asks)) as [{ kind: string; error?: { code: string; message: string } }];
  assert.equal(r.kind, 'error');
  assert.equal(r.error?.code, 'LEASES_HELD', r.error?.message);
  assert.match(r.error?.message ?? '', /holds 1 lease\(s\) \(ids 7\)/);
  assert.deepEqual(rm.descriptor(), before, 'nothing changed');
  assert.equal(splits.length, 0);
  // The field round-trips, and a bad value is a bad command.
  const packed = packr.unpack(RangeMachine.encode(asks)) as { split: Record<string, unknown> };
  assert.deepEqual(
    { ...packed.split, key: [...(packed.split['key'] as Uint8Array)] },
    { key: [...b('m')], id: 3, generation: 0, replicas: [1], noLeases: true },
  );
  const [badField] = log.run(
    encodeEnvelope({
      client: '',
      seq: 0,
      timeMs: 0,
      payload: packr.pack({
        split: { key: b('m'), id: 3, generation: 0, replicas: [1], noLeases: 1 },
      }),
    }),
  ) as [{ refused?: string }];
  assert.equal(badField.refused, 'BAD_COMMAND');
  // Without the field (an entry of a release before it) the split applies as it always did.
  const [old] = log.run(env(split('m', 3, 0, [1]))) as [{ kind: string }];
  assert.equal(old.kind, 'split');
  // Once the lease is gone, a split that asks goes through.
  log.run(env({ leaseRevoke: 7 }));
  const [again] = log.run(
    env({ split: { key: b('f'), id: 4, generation: 1, replicas: [1], noLeases: true } }),
  ) as [{ kind: string }];
  assert.equal(again.kind, 'split');
});

void test('a replicas record sets the voters at generation plus one, is refused when stale, and survives a snapshot', async () => {
  const d: RangeDescriptor = {
    id: 5,
    start: b('b'),
    end: b('m'),
    generation: 2,
    replicas: [1, 2, 3],
  };
  const { rm, sm, log } = sessioned(d);
  log.run(env(put('c', '1')));
  const record = (generation: number, voters: number[]): RangeCommand => ({
    replicas: { generation, voters },
  });
  const [r] = log.run(env(record(2, [2, 3, 4]))) as [{ kind: string; range?: RangeDescriptor }];
  assert.equal(r.kind, 'replicas');
  const moved = { ...d, generation: 3, replicas: [2, 3, 4] };
  assert.deepEqual(rm.descriptor(), moved);
  assert.deepEqual(r.range, moved);
  // A repeat of the same record (a retry after a lost answer) and a stale one change nothing.
  for (const [what, cmd] of [
    ['the same record again', record(2, [2, 3, 4])],
    ['an older generation', record(1, [1, 2])],
    ['a newer generation', record(7, [1, 2])],
  ] as const) {
    const [x] = log.run(env(cmd)) as [{ kind: string; error?: { code: string } }];
    assert.equal(x.error?.code, 'WRONG_RANGE', what);
    assert.deepEqual(rm.descriptor(), moved, what);
  }
  // A split proposed against the generation before the record is refused too.
  const [s] = log.run(env(split('e', 6, 2))) as [{ error?: { code: string } }];
  assert.equal(s.error?.code, 'WRONG_RANGE');
  const bad = (x: unknown): Uint8Array =>
    encodeEnvelope({ client: '', seq: 0, timeMs: 0, payload: packr.pack(x) });
  for (const x of [
    { replicas: { generation: 3, voters: [] } },
    { replicas: { generation: 3, voters: [3, 2] } },
    { replicas: { generation: -1, voters: [1] } },
    { replicas: { generation: 3, voters: [1] }, extra: 1 },
  ]) {
    const [y] = log.run(bad(x)) as [{ refused?: string }];
    assert.equal(y.refused, 'BAD_COMMAND', JSON.stringify(x));
  }
  assert.deepEqual(rm.descriptor(), moved);
  // The snapshot carries the new descriptor; keys and values come back with it.
  const { rm: back } = await restoredFrom(await bytes(sm.snapshot()));
  assert.deepEqual(back.descriptor(), moved);
  assert.equal(back.kv.keyCount(), 1);
});

void test("a learner removal's mark: set at its generation, refused when stale, carried by a snapshot, cleared by a record or a split", async () => {
  const d: RangeDescriptor = {
    id: 5,
    start: b('b'),
    end: b('m'),
    generation: 2,
    replicas: [1, 2, 3],
  };
  const { rm, sm, log, splits } = sessioned(d);
  const mark = (generation: number): RangeCommand => ({ recordDue: { generation } });
  assert.equal(rm.recordDue(), false);
  for (const g of [1, 3]) {
    const [x] = log.run(env(mark(g))) as [{ error?: { code: string } }];
    assert.equal(x.error?.code, 'WRONG_RANGE', `generation ${g}`);
    assert.equal(rm.recordDue(), false, `generation ${g}`);
  }
  const [r] = log.run(env(mark(2))) as [{ kind: string; range?: RangeDescriptor }];
  assert.equal(r.kind, 'replicas');
  assert.deepEqual(r.range, d, 'a mark changes the descriptor');
  assert.equal(rm.recordDue(), true);
  // Carried by a snapshot (restored marked), and absent from one taken without it.
  const marked = await restoredFrom(await bytes(sm.snapshot()));
  assert.equal(marked.rm.recordDue(), true);
  assert.deepEqual(marked.rm.descriptor(), d);
  // A record of the voters clears it, at the next generation.
  log.run(env({ replicas: { generation: 2, voters: [1, 2, 3] } }));
  assert.equal(rm.recordDue(), false);
  assert.equal(rm.descriptor().generation, 3);
  assert.equal((await restoredFrom(await bytes(sm.snapshot()))).rm.recordDue(), false);
  // A split clears it too, and the right half starts unmarked.
  log.run(env(mark(3)));
  assert.equal(rm.recordDue(), true);
  log.run(env(split('e', 6, 3)));
  assert.equal(rm.recordDue(), false);
  const right = splits[0];
  assert.ok(right !== undefined, 'no split applied');
  const seeded = new RangeMachine({ limits });
  await new SessionMachine(seeded).restore(right.seed);
  assert.equal(seeded.recordDue(), false);
  // Malformed marks are refused and change nothing.
  const bad = (x: unknown): Uint8Array =>
    encodeEnvelope({ client: '', seq: 0, timeMs: 0, payload: packr.pack(x) });
  for (const x of [
    { recordDue: { generation: -1 } },
    { recordDue: { generation: 4, voters: [1] } },
    { recordDue: 4 },
    { recordDue: { generation: 4 }, extra: 1 },
  ]) {
    const [y] = log.run(bad(x)) as [{ refused?: string }];
    assert.equal(y.refused, 'BAD_COMMAND', JSON.stringify(x));
  }
  assert.equal(rm.recordDue(), false);
});

/** A state with history, deletions, a compaction and leases on both sides of 'm'. */
function busyLog(log: Log, reference: Log): void {
  const cmds: KvCommand[] = [
    { leaseGrant: { id: 40, ttl: 30 } },
    { leaseGrant: { id: 41, ttl: 60 } },
    put('a', '1'),
    put('n', '1', 40),
    put('c', '1', 40),
    put('n', '2'),
    put('x', '1', 41),
    put('z', '1'),
    del('z'),
    put('p', '1'),
    put('p', '2'),
    { compact: 7 },
    put('p', '3'),
    put('zz', '1', 40),
    del('o', b('q')),
    put('m', 'at the split key'),
    put('a', '2'),
  ];
  for (const c of cmds) {
    log.run(env(c));
    reference.run(KvStateMachine.encode(c));
  }
}

void test('the seed restores to exactly the right half: keys, versions, history, leases', async () => {
  const { rm, sm, log, splits } = sessioned();
  const reference = new KvStateMachine(limits);
  busyLog(log, new Log((cs) => reference.apply(cs)));
  const [r] = log.run(env(split('m', 3, 0))) as [{ kind: string; revision: number }];
  assert.equal(r.kind, 'split');
  assert.equal(r.revision, reference.revision());
  const s = splits[0] as SplitApplied;
  const right = await restoredFrom(await bytes(s.seed));
  assert.deepEqual(right.rm.descriptor(), {
    id: 3,
    start: b('m'),
    end: null,
    generation: 1,
    replicas: [1, 2, 3],
  });
  assert.deepEqual(right.rm.children(), []);
  assert.deepEqual(rm.descriptor().end, b('m'));
  assert.deepEqual(
    splitProblems(
      reference,
      { kv: rm.kv, descriptor: rm.descriptor() },
      {
        kv: right.rm.kv,
        descriptor: right.rm.descriptor(),
      },
    ),
    [],
  );
  assert.equal(right.sm.sessions(), sm.sessions());
  // Both continue from the split revision, independently.
  log.run(env(put('b', 'after')));
  const [w] = new Log((cs) => right.sm.apply(cs)).run(env(put('y', 'after'))) as [
    { revision: number },
  ];
  assert.equal(w.revision, r.revision + 1);
  assert.equal(rm.kv.revision(), r.revision + 1);
});

/** A seed whose key-value part lost its history: its header says no past, its pasts dropped. */
function withoutHistory(chunks: Uint8Array[]): Uint8Array[] {
  const at = chunks.findIndex((c) => {
    const x = packr.unpack(c) as { v?: number } | null;
    return x !== null && typeof x === 'object' && x.v === 4;
  });
  const header = packr.unpack(chunks[at] as Uint8Array) as { pastChunks: number };
  const kept = chunks.slice(0, chunks.length - header.pastChunks);
  kept[at] = packr.pack({ ...header, pastChunks: 0 });
  return kept;
}

void test('the split check catches a seed that drops the history and a key left in both halves', async () => {
  const { rm, log, splits } = sessioned();
  const reference = new KvStateMachine(limits);
  busyLog(log, new Log((cs) => reference.apply(cs)));
  const before = await bytes(rm.snapshot());
  log.run(env(split('m', 3, 0)));
  const seed: Uint8Array[] = [];
  for await (const c of (splits[0] as SplitApplied).seed) seed.push(c);
  const good = new RangeMachine({ limits });
  await new SessionMachine(good).restore(asyncOf(seed));
  const left = { kv: rm.kv, descriptor: rm.descriptor() };
  assert.deepEqual(
    splitProblems(reference, left, { kv: good.kv, descriptor: good.descriptor() }),
    [],
  );

  // Planted: the right half's seed without its history.
  const amnesiac = new RangeMachine({ limits });
  await new SessionMachine(amnesiac).restore(asyncOf(withoutHistory(seed)));
  const p1 = splitProblems(reference, left, { kv: amnesiac.kv, descriptor: amnesiac.descriptor() });
  assert.ok(
    p1.some((p) => p.startsWith('right at revision')),
    p1.join('\n'),
  );

  // Planted: a left half that kept the keys it handed over.
  const leaky = new RangeMachine({ limits });
  await leaky.restore(snapshotChunks(before));
  const p2 = splitProblems(
    reference,
    { kv: leaky.kv, descriptor: rm.descriptor() },
    {
      kv: good.kv,
      descriptor: good.descriptor(),
    },
  );
  assert.ok(
    p2.some((p) => p.includes('outside its bounds')),
    p2.join('\n'),
  );
});

void test('a write retried after the split is answered from the session table by either half', async () => {
  const { rm, log, splits } = sessioned();
  const first = log.run(env(put('x', 'once'), 'c1', 1))[0] as { revision: number };
  // In one batch: a write, then the split; then the split, then a write of a right key.
  const batch = log.run(
    env(put('y', 'once'), 'c1', 2),
    env(split('m', 3, 0)),
    env(put('z', 'refused here'), 'c1', 3),
  ) as [{ revision: number }, { kind: string }, { kind: string; error?: { code: string } }];
  assert.equal(batch[1].kind, 'split');
  assert.equal(batch[2].error?.code, 'WRONG_RANGE');
  const right = await restoredFrom(await bytes((splits[0] as SplitApplied).seed));
  const rlog = new Log((cs) => right.sm.apply(cs));
  // Retries of writes applied before the split: the first answers, nothing applied twice.
  assert.deepEqual(rlog.run(env(put('x', 'once'), 'c1', 1)), [first]);
  assert.deepEqual(rlog.run(env(put('y', 'once'), 'c1', 2)), [batch[0]]);
  assert.deepEqual(log.run(env(put('x', 'once'), 'c1', 1)), [first]);
  const x = right.rm.range({ range: { key: b('x'), rangeEnd: null }, limit: 0, countOnly: false });
  assert.equal(x.kvs[0]?.version, 1);
  // The write the left refused after the split applies at the right, once.
  const [z] = rlog.run(env(put('z', 'refused here'), 'c1', 3)) as [{ revision: number }];
  assert.equal(z.revision, right.rm.kv.revision());
  assert.deepEqual(rlog.run(env(put('z', 'refused here'), 'c1', 3)), [z]);
  assert.equal(
    rm.range({ range: { key: b('a'), rangeEnd: b('m') }, limit: 0, countOnly: false }).count,
    0,
  );
});

void test('a snapshot of the left waits until the right seed is durable', async () => {
  const rm = new RangeMachine({ limits });
  let durable!: () => void;
  rm.onSplit(() => new Promise<void>((resolve) => (durable = resolve)));
  new Log((cs) => rm.apply(cs)).run(
    RangeMachine.encode(put('a', '1')),
    RangeMachine.encode(split('m', 3, 0)),
  );
  let done = false;
  const taken = bytes(rm.snapshot()).then((d) => {
    done = true;
    return d;
  });
  for (let i = 0; i < 20; i++) await nextTurn();
  assert.equal(done, false, 'the snapshot was produced before the seed was durable');
  durable();
  const back = new RangeMachine({ limits });
  await back.restore(snapshotChunks(await taken));
  assert.deepEqual(back.descriptor().end, b('m'));

  // A seed that failed to be written fails every later snapshot.
  const failing = new RangeMachine({ limits });
  failing.onSplit(() => Promise.reject(new Error('EIO: seed not written')));
  new Log((cs) => failing.apply(cs)).run(RangeMachine.encode(split('m', 3, 0)));
  await assert.rejects(bytes(failing.snapshot()), /EIO/);
  await assert.rejects(bytes(failing.snapshot()), /EIO/);
});

void test('the seed outlives the snapshots taken before it is read; a discarded one keeps nothing', async () => {
  const { sm, log, splits } = sessioned();
  log.run(env(put('x', 'once'), 'c1', 1), env(split('m', 3, 0)));
  // More captures than a table keeps for snapshots: none of them may give the seed up.
  const snapshots = Array.from({ length: 6 }, () => sm.snapshot());
  log.run(env(put('a', 'later'), 'c1', 2));
  const right = await restoredFrom(await bytes((splits[0] as SplitApplied).seed));
  assert.equal(right.sm.sessions(), 1);
  // Of the snapshots, the table kept the last four (as before ranges existed).
  for (const s of snapshots.slice(2)) await bytes(s);
  await assert.rejects(bytes(snapshots[0] as AsyncIterable<Uint8Array>), /given up/);
  // Discarded unread: the table keeps no capture for it (a later change copies nothing).
  log.run(env(split('f', 4, 1)));
  (splits[1] as SplitApplied).discard();
  await assert.rejects(bytes((splits[1] as SplitApplied).seed), /given up/);
});

void test('any store split at any key: the halves are the store, and a snapshot read across the split is the one captured', async () => {
  const withLease = fc
    .tuple(keyArb, fc.string({ maxLength: 2 }), fc.integer({ min: 1, max: 30 }))
    .map(([k, v, lease]) => put(k, v, lease));
  const commandArb = fc.oneof(kvCommandArb, withLease, withLease);
  await fc.assert(
    fc.asyncProperty(
      fc.array(commandArb, { maxLength: 40 }),
      keyArb,
      fc.array(commandArb, { maxLength: 10 }),
      async (before, at, after) => {
        const { rm, log, splits } = sessioned();
        const reference = new KvStateMachine(limits);
        const refLog = new Log((cs) => reference.apply(cs));
        for (const c of before) {
          log.run(env(c));
          refLog.run(KvStateMachine.encode(c));
        }
        // A snapshot of the range captured before the split and read after it.
        const inflight = rm.kv.snapshot();
        const expected = await bytes(reference.snapshot());
        log.run(env(split(at, 3, 0)));
        const right = await restoredFrom(await bytes((splits[0] as SplitApplied).seed));
        const problems = splitProblems(
          reference,
          { kv: rm.kv, descriptor: rm.descriptor() },
          { kv: right.rm.kv, descriptor: right.rm.descriptor() },
        );
        assert.deepEqual(problems, []);
        for (const c of after) log.run(env(c));
        assert.deepEqual(await bytes(inflight), expected);
      },
    ),
    { numRuns: 150 },
  );
});
