// A delete with `prevKv` bounded by `maxRangeBytes` (DESIGN.md, "Deletes with prevKv"): the
// state machine refuses a branch whose deletes with `prevKv` and a bound would answer more,
// deleting nothing, the same on every replica; a command without the bound (proposed before
// the feature level that brought it) deletes as before; the proposer's early check answers
// what the apply would.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { prefixEnd } from '../../src/api/routes.js';
import { FlotillaError } from '../../src/base/errors.js';
import type { Command } from '../../src/host/contracts.js';
import { KvStore, type Op } from '../../src/kv/kv-store.js';
import { KvStateMachine, type ApplyResult, type TxnCommand } from '../../src/kv/machine.js';
import { SortedKeys } from '../../src/kv/sorted-keys.js';

const b = (s: string): Uint8Array => new TextEncoder().encode(s);
const put = (key: string, value: string): Op => ({
  kind: 'put',
  key: b(key),
  value: b(value),
  prevKv: false,
});
const delPrefix = (prefix: string, prevKvBytesMax?: number, prevKv = true): Op => ({
  kind: 'delete',
  range: { key: b(prefix), rangeEnd: prefixEnd(b(prefix)) },
  prevKv,
  ...(prevKvBytesMax === undefined ? {} : { prevKvBytesMax }),
});
const txn = (...success: Op[]): TxnCommand => ({ compare: [], success, failure: [] });

/** A machine fed entries one by one, as a replica applies its log. */
function replica(): { m: KvStateMachine; apply: (cmd: TxnCommand) => ApplyResult } {
  const m = new KvStateMachine({ maxKeyBytes: 64, maxValueBytes: 1024 });
  let index = 0;
  return {
    m,
    apply: (cmd) => {
      const c: Command = {
        index: ++index,
        term: 1,
        timeMs: 0,
        payload: KvStateMachine.encode(cmd),
      };
      return m.apply([c])[0] as ApplyResult;
    },
  };
}

/** Ten keys `a/0`..`a/9` of 3 + 7 bytes each: 100 bytes under `a/`, and `b/x` outside it. */
function filled(): ReturnType<typeof replica> {
  const r = replica();
  for (let i = 0; i < 10; i++) r.apply(txn(put(`a/${i}`, 'v'.repeat(7))));
  r.apply(txn(put('b/x', 'w')));
  return r;
}

const refused = (r: ApplyResult): string =>
  (r as { kind: string }).kind === 'error'
    ? (r as { error: { code: string } }).error.code
    : `not refused: ${JSON.stringify(r)}`;

/** A delete's answer: how many it deleted and how many previous records it answered. */
function deleted(r: ApplyResult): [number, number] {
  const res = (r as unknown as { results: { deleted: number; prevKvs: unknown[] }[] }).results[0];
  assert.ok(res !== undefined, JSON.stringify(r));
  return [res.deleted, res.prevKvs.length];
}

void test('a bounded delete with prevKv over more than its bound is refused and deletes nothing; at the bound it deletes', () => {
  const { m, apply } = filled();
  const rev = m.revision();
  const r = apply(txn(delPrefix('a/', 99)));
  assert.equal(refused(r), 'PREV_KV_TOO_LARGE');
  assert.match((r as { error: { message: string } }).error.message, /more than 99 bytes/);
  assert.equal(m.revision(), rev, 'the revision did not move');
  assert.equal(m.keyCount(), 11, 'nothing was deleted');
  // A transaction applies whole or not at all: a put before the refused delete is not applied.
  assert.equal(refused(apply(txn(put('c', '1'), delPrefix('a/', 99)))), 'PREV_KV_TOO_LARGE');
  assert.equal(m.keyCount(), 11, 'the put of the refused transaction did not apply');
  // Without prevKv the bound is moot: nothing is answered.
  const exact = apply(txn(delPrefix('a/', 100)));
  assert.equal((exact as { kind?: string }).kind, undefined, JSON.stringify(exact));
  assert.deepEqual(deleted(exact), [10, 10], 'exactly the bound is answered');
  assert.equal(m.keyCount(), 1);
});

void test('the deletes with prevKv of one branch share the bound; the branch not taken does not count', () => {
  const { m, apply } = filled();
  // Two halves of 50 bytes each, under a bound of 60 each but 100 together.
  const half = (from: string, to: string, prevKv = true): Op => ({
    kind: 'delete',
    range: { key: b(from), rangeEnd: b(to) },
    prevKv,
    prevKvBytesMax: 60,
  });
  assert.equal(refused(apply(txn(half('a/0', 'a/5'), half('a/5', 'a/:')))), 'PREV_KV_TOO_LARGE');
  assert.equal(m.keyCount(), 11);
  // A delete without prevKv in the same branch answers nothing and is not counted.
  const mixed = apply(txn(half('a/0', 'a/5'), half('a/5', 'a/:', false)));
  assert.equal((mixed as { succeeded?: boolean }).succeeded, true, JSON.stringify(mixed));
  assert.equal(m.keyCount(), 1);
  // The failure branch, not taken, may hold any delete.
  const { m: m2, apply: apply2 } = filled();
  const r = apply2({
    compare: [{ key: b('b/x'), target: 'value', op: '=', value: b('w') }],
    success: [put('c', '1')],
    failure: [delPrefix('a/', 1)],
  });
  assert.equal((r as { succeeded?: boolean }).succeeded, true, JSON.stringify(r));
  assert.equal(m2.keyCount(), 12);
});

void test('a delete without the bound (proposed below the feature level) deletes as before', () => {
  const { m, apply } = filled();
  const r = apply(txn(delPrefix('a/')));
  assert.deepEqual(deleted(r), [10, 10]);
  assert.equal(m.keyCount(), 1);
});

void test('every replica decides the same from the same log', () => {
  const log: TxnCommand[] = [];
  for (let i = 0; i < 10; i++) log.push(txn(put(`a/${i}`, 'v'.repeat(7))));
  log.push(txn(delPrefix('a/', 99)), txn(put('a/x', '')), txn(delPrefix('a/', 103)));
  log.push(txn(delPrefix('a/', 102)));
  const answers = [replica(), replica(), replica()].map(({ m, apply }) => ({
    results: log.map((c) => JSON.stringify(apply(c))),
    keys: m.keyCount(),
  }));
  assert.deepEqual(answers[1], answers[0]);
  assert.deepEqual(answers[2], answers[0]);
  const codes = (answers[0]?.results ?? []).slice(10).map((x) => {
    const o = JSON.parse(x) as { kind?: string; error?: { code: string } };
    return o.error?.code ?? 'applied';
  });
  // 100 bytes, then 103 with a/x: over 99 and 102, within 103.
  assert.deepEqual(codes, ['PREV_KV_TOO_LARGE', 'applied', 'applied', 'applied']);
  assert.equal(answers[0]?.keys, 0);
});

void test('a bad bound is refused when decoded, the same on every replica', () => {
  for (const bad of [0, -1, 1.5, 'x', null]) {
    const { m } = replica();
    const payload = KvStateMachine.encode(
      txn({ ...delPrefix('a/'), prevKvBytesMax: bad } as unknown as Op),
    );
    const r = m.apply([{ index: 1, term: 1, timeMs: 0, payload }])[0];
    assert.equal(
      (r as { refused?: string }).refused ?? JSON.stringify(r),
      'BAD_COMMAND',
      `bound ${String(bad)}`,
    );
  }
});

void test("the proposer's early check refuses what the apply would, from the branch the compares choose", () => {
  const { m } = filled();
  const over = (): void => m.checkPrevKv(txn(delPrefix('a/')), 99);
  assert.throws(over, (e: unknown) => e instanceof FlotillaError && e.code === 'PREV_KV_TOO_LARGE');
  m.checkPrevKv(txn(delPrefix('a/')), 100);
  m.checkPrevKv(txn(delPrefix('a/', undefined, false)), 1);
  m.checkPrevKv(
    {
      compare: [{ key: b('b/x'), target: 'value', op: '=', value: b('other') }],
      success: [delPrefix('a/')],
      failure: [put('c', '1')],
    },
    1,
  );
  assert.equal(m.keyCount(), 11, 'checking changes nothing');
  // The store's own check counts a single key too.
  const kv = new KvStore();
  kv.apply(txn(put('k', 'v'.repeat(10))));
  const one: Op = { kind: 'delete', range: { key: b('k'), rangeEnd: null }, prevKv: true };
  assert.throws(() => kv.checkPrevKv(txn(one), 10), /more than 10 bytes/);
  kv.checkPrevKv(txn(one), 11);
});

void test('SortedKeys.walk visits [from, to) in order across chunks and stops when asked', () => {
  const keys = Array.from({ length: 50 }, (_, i) => `k${String(i).padStart(2, '0')}`);
  const sk = new SortedKeys(4);
  for (const key of [...keys].reverse()) sk.insert(key);
  const seen = (from: string, to: string | null, stopAfter = Infinity): string[] => {
    const out: string[] = [];
    sk.walk(from, to, (key) => {
      out.push(key);
      return out.length < stopAfter;
    });
    return out;
  };
  assert.deepEqual(seen('k00', null), keys);
  assert.deepEqual(seen('k07', 'k31'), keys.slice(7, 31));
  assert.deepEqual(seen('k07', 'k31', 5), keys.slice(7, 12));
  assert.deepEqual(seen('k31', 'k07'), []);
  assert.deepEqual(seen('k495', null), []);
  assert.deepEqual(seen('', 'k00'), []);
});
