// The store's past: reads at a past revision against a model that keeps a full copy of the
// store at every revision, compaction's refusals, and snapshots that carry the history.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { FlotillaError } from '../../src/base/errors.js';
import { KvStore, type KeyValue, type Op } from '../../src/kv/kv-store.js';
import { KvStateMachine } from '../../src/kv/machine.js';
import { chunkStream, type Command } from '../../src/host/contracts.js';

const b = (s: string): Uint8Array => new TextEncoder().encode(s);
const s = (u: Uint8Array): string => new TextDecoder().decode(u);
const put = (k: string, v: string): Op => ({ kind: 'put', key: b(k), value: b(v), prevKv: false });
const del = (k: string, end: string | null = null): Op => ({
  kind: 'delete',
  range: { key: b(k), rangeEnd: end === null ? null : b(end) },
  prevKv: false,
});
const txn = (...success: Op[]) => ({ compare: [], success, failure: [] });
const all = { key: b(''), rangeEnd: new Uint8Array([0]) };
const view = (kvs: readonly KeyValue[]): string[] =>
  kvs.map(
    (kv) => `${s(kv.key)}=${s(kv.value)}@${kv.createRevision}/${kv.modRevision}/${kv.version}`,
  );

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof FlotillaError) return err.code;
    throw err;
  }
  return 'no error';
}

void test('a range reads the store as it was at a past revision', () => {
  const kv = new KvStore();
  kv.apply(txn(put('a', '1'))); // 2
  kv.apply(txn(put('b', '1'))); // 3
  kv.apply(txn(put('a', '2'))); // 4
  kv.apply(txn(del('b'))); // 5
  kv.apply(txn(put('b', '2'))); // 6
  assert.deepEqual(view(kv.range(all, 0, false, 2).kvs), ['a=1@2/2/1']);
  assert.deepEqual(view(kv.range(all, 0, false, 3).kvs), ['a=1@2/2/1', 'b=1@3/3/1']);
  assert.deepEqual(view(kv.range(all, 0, false, 4).kvs), ['a=2@2/4/2', 'b=1@3/3/1']);
  assert.deepEqual(view(kv.range(all, 0, false, 5).kvs), ['a=2@2/4/2'], 'b is deleted at 5');
  assert.deepEqual(view(kv.range(all, 0, false, 6).kvs), ['a=2@2/4/2', 'b=2@6/6/1']);
  assert.deepEqual(view(kv.range({ key: b('b'), rangeEnd: null }, 0, false, 3).kvs), ['b=1@3/3/1']);
  assert.deepEqual(view(kv.range({ key: b('b'), rangeEnd: null }, 0, false, 5).kvs), []);
  const counted = kv.range(all, 1, false, 4);
  assert.deepEqual([counted.kvs.length, counted.count, counted.more], [1, 2, true]);
  assert.equal(kv.range(all, 0, true, 3).count, 2);
});

void test('compaction forgets what no later read sees, and refuses what it cannot do', () => {
  const kv = new KvStore();
  kv.apply(txn(put('a', '1'))); // 2
  kv.apply(txn(put('a', '2'))); // 3
  kv.apply(txn(put('g', '1'))); // 4
  kv.apply(txn(del('g'))); // 5
  kv.apply(txn(put('a', '3'))); // 6
  assert.equal(kv.historySize(), 4, 'a@2, a@3, g@4 and the tombstone of g');
  assert.equal(
    code(() => kv.compact(7)),
    'FUTURE_REVISION',
  );
  kv.compact(5);
  assert.equal(kv.compacted(), 5);
  // a@3 is what a read at 5 sees; a@2 and g (deleted at 5) are gone.
  assert.equal(kv.historySize(), 1);
  assert.deepEqual(view(kv.range(all, 0, false, 5).kvs), ['a=2@2/3/2']);
  assert.equal(
    code(() => kv.range(all, 0, false, 4)),
    'COMPACTED',
  );
  assert.equal(
    code(() => kv.range(all, 0, false, 8)),
    'FUTURE_REVISION',
  );
  assert.equal(
    code(() => kv.compact(5)),
    'COMPACTED',
    'a second compaction to the same revision',
  );
  kv.compact(6);
  assert.equal(kv.historySize(), 0, 'everything older than the current versions is gone');
  assert.deepEqual(view(kv.range(all, 0, false, 6).kvs), ['a=3@2/6/3']);
});

interface Step {
  readonly kind: 'put' | 'del' | 'delRange' | 'compact' | 'snapshot';
  readonly key: number;
  readonly end: number;
  readonly value: number;
  readonly back: number;
}

const step = fc.record({
  kind: fc.constantFrom<Step['kind']>(
    'put',
    'put',
    'put',
    'del',
    'delRange',
    'compact',
    'snapshot',
  ),
  key: fc.integer({ min: 0, max: 7 }),
  end: fc.integer({ min: 0, max: 8 }),
  value: fc.integer({ min: 0, max: 99 }),
  back: fc.integer({ min: 0, max: 6 }),
});

const keyOf = (i: number): string => `k${i}`;

void test('reads at every revision not compacted match a copy of the store taken at each', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 80 }), async (steps) => {
      let machine = new KvStateMachine({ maxKeyBytes: 64, maxValueBytes: 64 });
      // states[r]: the store's keys and values at revision r.
      const states = new Map<number, string[]>([[1, []]]);
      let index = 0;
      const run = (payload: Uint8Array): unknown => {
        index++;
        const cmd: Command = { index, term: 1, timeMs: 0, payload };
        return machine.apply([cmd])[0];
      };
      for (const st of steps) {
        if (st.kind === 'snapshot') {
          const chunks: Uint8Array[] = [];
          for await (const c of machine.snapshot()) chunks.push(c);
          machine = new KvStateMachine({ maxKeyBytes: 64, maxValueBytes: 64 });
          await machine.restore(chunkStream(() => chunks[Symbol.iterator]()));
          continue;
        }
        if (st.kind === 'compact') {
          const target = Math.max(1, machine.revision() - st.back);
          run(KvStateMachine.encode({ compact: target }));
          continue;
        }
        const op =
          st.kind === 'put'
            ? put(keyOf(st.key), String(st.value))
            : st.kind === 'del'
              ? del(keyOf(st.key))
              : del(keyOf(Math.min(st.key, st.end)), keyOf(Math.max(st.key, st.end)));
        run(KvStateMachine.encode(txn(op)));
        const now = machine.range({ range: all, limit: 0, countOnly: false });
        states.set(
          machine.revision(),
          now.kvs.map((kv) => `${s(kv.key)}=${s(kv.value)}`),
        );
      }
      const rev = machine.revision();
      const oldest = Math.max(1, machine.compacted());
      for (let r = oldest; r <= rev; r++) {
        // A revision at which nothing was written reads as the last one that was.
        let m = r;
        while (!states.has(m)) m--;
        const got = machine
          .range({ range: all, limit: 0, countOnly: false, revision: r })
          .kvs.map((kv) => `${s(kv.key)}=${s(kv.value)}`);
        assert.deepEqual(got, states.get(m), `range at revision ${r} (store at ${rev})`);
      }
      if (machine.compacted() > 1)
        assert.throws(
          () => machine.range({ range: all, limit: 0, countOnly: false, revision: oldest - 1 }),
          /compacted/,
        );
    }),
    { numRuns: 300 },
  );
});

void test('history stays bounded when compaction follows the writes', () => {
  const kv = new KvStore();
  for (let i = 0; i < 20_000; i++) {
    kv.apply(txn(put(keyOf(i % 100), String(i))));
    if (i % 7 === 0) kv.apply(txn(del(keyOf((i * 13) % 100))));
    if (kv.revision() > 500) {
      const target = kv.revision() - 500;
      if (target > kv.compacted()) kv.compact(target);
    }
  }
  // At most the 500 revisions kept, each of which wrote at most one version or tombstone, plus
  // the version each key had at the compacted revision.
  assert.ok(kv.historySize() <= 500 * 2 + 100, `history holds ${kv.historySize()} versions`);
});

/**
 * The history's bytes computed the slow way: every key's value at every revision from the
 * compacted one on, less what is live, counted once per distinct version.
 */
function historyBytesOf(ops: readonly Op[], compacted: number): number {
  // Replay: each version a key had, with the revision it was replaced at (Infinity: live).
  const versions: { bytes: number; mod: number; replacedAt: number }[] = [];
  const live = new Map<string, { bytes: number; mod: number; replacedAt: number }>();
  let rev = 1;
  for (const op of ops) {
    rev++;
    if (op.kind === 'put') {
      const k = s(op.key);
      const prev = live.get(k);
      if (prev !== undefined) prev.replacedAt = rev;
      const v = { bytes: op.key.length + op.value.length, mod: rev, replacedAt: Infinity };
      versions.push(v);
      live.set(k, v);
    } else if (op.kind === 'delete') {
      const from = s(op.range.key);
      const end = op.range.rangeEnd === null ? null : s(op.range.rangeEnd);
      let any = false;
      for (const [k, v] of live)
        if (end === null ? k === from : k >= from && k < end) {
          v.replacedAt = rev;
          live.delete(k);
          any = true;
        }
      if (!any) rev--; // a delete of nothing makes no revision
    }
  }
  // A replaced version is kept unless a read at the compacted revision or later cannot see
  // it: it was replaced at or below the compacted revision.
  return versions
    .filter((v) => v.replacedAt !== Infinity && v.replacedAt > compacted)
    .reduce((n, v) => n + v.bytes, 0);
}

void test('the history counts its bytes, and the revision found to fit a bound is the lowest that does', () => {
  const op = fc.oneof(
    fc
      .record({ k: fc.integer({ min: 0, max: 5 }), len: fc.integer({ min: 0, max: 300 }) })
      .map(({ k, len }): Op => put(keyOf(k), 'v'.repeat(len))),
    fc.integer({ min: 0, max: 5 }).map((k): Op => del(keyOf(k))),
    fc
      .record({ a: fc.integer({ min: 0, max: 5 }), b: fc.integer({ min: 0, max: 6 }) })
      .map(({ a, b: e }): Op => del(keyOf(Math.min(a, e)), keyOf(Math.max(a, e)))),
  );
  fc.assert(
    fc.property(
      fc.array(op, { minLength: 1, maxLength: 60 }),
      fc.integer({ min: 0, max: 3_000 }),
      (ops, bound) => {
        const fresh = (): KvStore => {
          const kv = new KvStore();
          for (const o of ops) kv.apply(txn(o));
          return kv;
        };
        const kv = fresh();
        assert.equal(kv.historyBytes(), historyBytesOf(ops, 0));
        const r = kv.historyRevisionToFit(bound);
        if (r === null) {
          assert.ok(kv.historyBytes() <= bound, `${kv.historyBytes()} bytes held, bound ${bound}`);
          return;
        }
        assert.ok(r >= 1 && r <= kv.revision(), `revision ${r} of ${kv.revision()}`);
        kv.compact(r);
        assert.equal(kv.historyBytes(), historyBytesOf(ops, r));
        assert.ok(kv.historyBytes() <= bound, `to ${r}: ${kv.historyBytes()} > ${bound}`);
        // One revision less would not do: the revision found is the lowest that fits.
        if (r > 1) {
          const less = fresh();
          less.compact(r - 1);
          assert.ok(less.historyBytes() > bound, `to ${r - 1} already fits ${bound}`);
        }
      },
    ),
    { numRuns: 300 },
  );
});

void test('a compaction command through the state machine answers its refusal as data', () => {
  const m = new KvStateMachine({ maxKeyBytes: 64, maxValueBytes: 64 });
  const apply = (payload: Uint8Array, index: number) =>
    m.apply([{ index, term: 1, timeMs: 0, payload }])[0];
  apply(KvStateMachine.encode(txn(put('a', '1'))), 1);
  assert.deepEqual(apply(KvStateMachine.encode({ compact: 9 }), 2), {
    kind: 'compact',
    revision: 2,
    compacted: 0,
    error: {
      code: 'FUTURE_REVISION',
      message: 'Cannot compact to revision 9: the store is at revision 2',
    },
  });
  assert.deepEqual(apply(KvStateMachine.encode({ compact: 2 }), 3), {
    kind: 'compact',
    revision: 2,
    compacted: 2,
  });
});
