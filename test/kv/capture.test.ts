// The copy-on-write snapshot capture (src/kv/capture.ts) against the whole-state copy it
// replaces: whatever commands apply while a capture is read chunk by chunk (puts, deletes of
// keys and ranges, compactions, lease revocations, a restore of another state), it reads
// exactly what `snapshotState()` copied at the moment of the capture. And a key-value
// machine's snapshot is the same bytes whether read at once or with writes in between.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { prefixEnd } from '../../src/api/routes.js';
import { collectSnapshot } from '../../src/host/snapshot-stream.js';
import { bytesOf, KvStore, type Op, type StoreState } from '../../src/kv/kv-store.js';
import { KvStateMachine } from '../../src/kv/machine.js';
import { isTombstone } from '../../src/kv/history.js';
import { toKeyValue } from '../../src/kv/key-value.js';
import { SessionMachine, SessionTable } from '../../src/host/sessions.js';
import { encodeWrite } from '../../src/server/kv-service.js';

const b = (s: string): Uint8Array => new TextEncoder().encode(s);

type Action =
  | { kind: 'put'; key: string; value: string; lease: boolean }
  | { kind: 'del'; key: string }
  | { kind: 'delPrefix'; key: string }
  | { kind: 'compact'; back: number }
  | { kind: 'revoke' };

const keyArb = fc.constantFrom('a', 'ab', 'abc', 'b', 'ba', 'c', 'd', 'da', 'e', 'zz');
const actionArb: fc.Arbitrary<Action> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('put' as const),
      key: keyArb,
      value: fc.string({ maxLength: 3 }),
      lease: fc.boolean(),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('del' as const), key: keyArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('delPrefix' as const), key: keyArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('compact' as const), back: fc.nat(6) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('revoke' as const) }) },
);

/** Applies one action; leases are granted on demand so puts can attach to one. */
function act(kv: KvStore, a: Action, leases: number[]): void {
  const txn = (op: Op) => kv.apply({ compare: [], success: [op], failure: [] });
  switch (a.kind) {
    case 'put': {
      if (a.lease && leases.length === 0) leases.push(kv.grant(0, 60, 1).id);
      const lease = a.lease ? leases[leases.length - 1] : undefined;
      txn({
        kind: 'put',
        key: b(a.key),
        value: b(a.value),
        prevKv: false,
        ...(lease === undefined ? {} : { lease }),
      });
      return;
    }
    case 'del':
      txn({ kind: 'delete', range: { key: b(a.key), rangeEnd: null }, prevKv: false });
      return;
    case 'delPrefix':
      txn({
        kind: 'delete',
        range: { key: b(a.key), rangeEnd: prefixEnd(b(a.key)) },
        prevKv: false,
      });
      return;
    case 'compact': {
      const rev = kv.revision() - a.back;
      if (rev > kv.compacted() && rev >= 1) kv.compact(rev);
      return;
    }
    case 'revoke': {
      const id = leases.shift();
      if (id !== undefined) kv.revoke(id);
      return;
    }
  }
}

/** Reads a capture with `between(i)` run before each chunk; returns what it read. */
function readCapture(kv: KvStore, n: number, between: (i: number) => void): StoreState {
  const { revision, compacted, leases, capture } = kv.capture();
  const kvs = [];
  const pasts = [];
  let i = 0;
  for (const part of capture.kvs(n)) {
    kvs.push(...part.map(toKeyValue));
    between(i++);
  }
  for (const part of capture.pasts(n)) {
    pasts.push(
      ...part.map(([key, versions]) => ({
        key: bytesOf(key),
        versions: versions.map((v) => (isTombstone(v) ? v : toKeyValue(v))),
      })),
    );
    between(i++);
  }
  capture.close();
  return { revision, compacted, kvs, pasts, leases };
}

void test('a capture read while commands apply reads the state as of the capture', () => {
  fc.assert(
    fc.property(
      fc.array(actionArb, { maxLength: 60 }),
      fc.array(fc.array(actionArb, { maxLength: 4 }), { maxLength: 30 }),
      fc.integer({ min: 1, max: 4 }),
      (before, during, n) => {
        const kv = new KvStore();
        const leases: number[] = [];
        for (const a of before) act(kv, a, leases);
        const expected = kv.snapshotState();
        const got = readCapture(kv, n, (i) => {
          for (const a of during[i] ?? []) act(kv, a, leases);
        });
        assert.deepEqual(got, expected);
      },
    ),
    { numRuns: 400 },
  );
});

void test('a capture read while the store is replaced by a restore still reads the captured state', () => {
  const kv = new KvStore();
  const leases: number[] = [];
  for (const [i, key] of ['a', 'b', 'c', 'd', 'e', 'f'].entries()) {
    act(kv, { kind: 'put', key, value: `v${i}`, lease: false }, leases);
    act(kv, { kind: 'put', key, value: `w${i}`, lease: false }, leases);
  }
  act(kv, { kind: 'del', key: 'c' }, leases);
  const expected = kv.snapshotState();
  const other = new KvStore();
  act(other, { kind: 'put', key: 'q', value: 'other', lease: false }, []);
  const got = readCapture(kv, 2, (i) => {
    if (i === 1) kv.restoreState(other.snapshotState());
  });
  assert.deepEqual(got, expected);
  assert.equal(kv.get(b('q'))?.modRevision, 2, 'the restore itself took effect');
});

void test('a capture superseded by four newer ones fails when read, rather than read wrong', () => {
  const kv = new KvStore();
  act(kv, { kind: 'put', key: 'a', value: '1', lease: false }, []);
  const first = kv.capture().capture;
  for (let i = 0; i < 4; i++) kv.capture();
  assert.throws(() => [...first.kvs(1)], /given up/);
});

/** A machine with `keys` keys written twice (each has a past), through the session layer. */
function machineWith(keys: number): { sm: SessionMachine; write: (i: number, v: string) => void } {
  const sm = new SessionMachine(new KvStateMachine({ maxKeyBytes: 1024, maxValueBytes: 1024 }));
  let index = 0;
  const write = (i: number, v: string): void => {
    index++;
    const payload = encodeWrite(
      {
        compare: [],
        success: [{ kind: 'put', key: b(`key-${i}`), value: b(v), prevKv: false }],
        failure: [],
      },
      { clientId: 'c', seq: index },
      index,
      Infinity,
    );
    sm.apply([{ term: 1, index, timeMs: 0, payload }]);
  };
  for (let i = 0; i < keys; i++) write(i, 'first');
  for (let i = 0; i < keys; i++) write(i, 'second');
  return { sm, write };
}

void test('a machine snapshot is the same bytes whether writes apply while it is read or not', async () => {
  const quiet = machineWith(3_000);
  const busy = machineWith(3_000);
  const a = await collectSnapshot(quiet.sm.snapshot(), () => Promise.resolve());
  let turn = 0;
  // Between every two chunks: overwrite old keys and create new ones.
  const b2 = await collectSnapshot(busy.sm.snapshot(), () => {
    for (let j = 0; j < 50; j++) busy.write((turn * 97 + j * 13) % 4_000, `during-${turn}`);
    turn++;
    return Promise.resolve();
  });
  assert.ok(turn > 4, `writes applied between ${turn} chunks`);
  assert.deepEqual(Buffer.from(b2), Buffer.from(a));
});

void test('a session capture read while writes are recorded reads the table as of the capture', () => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.nat(5), fc.integer({ min: 1, max: 3 })), { maxLength: 80 }),
      fc.array(fc.tuple(fc.nat(7), fc.integer({ min: 1, max: 3 }), fc.nat(200)), {
        maxLength: 40,
      }),
      (before, during) => {
        const t = new SessionTable({ ttlMs: 100, maxSessions: 5, window: 4 });
        const seqs = new Map<string, number>();
        const write = (client: number, step: number, time: number): void => {
          const id = `c${client}`;
          const seq = (seqs.get(id) ?? 0) + step;
          seqs.set(id, seq);
          t.tick(time);
          if (t.check(id, seq).kind === 'apply') t.record(id, seq, { seq, time });
        };
        let time = 0;
        for (const [c, step] of before) write(c, step, (time += 3));
        const expected = t.save();
        const capture = t.capture();
        const rows = [];
        for (let i = 0; i < capture.count; i++) {
          rows.push(...capture.rows(i, i + 1));
          for (const [c, step, dt] of during.slice(i * 4, i * 4 + 4)) write(c, step, (time += dt));
        }
        capture.close();
        assert.deepEqual({ clockMs: capture.clockMs, sessions: rows }, expected);
      },
    ),
    { numRuns: 300 },
  );
});
