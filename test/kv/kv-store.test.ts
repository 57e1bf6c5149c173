// The key-value store against etcd's rules, a naive model, and its own snapshots; the
// exactly-once session table; and the command envelope's refusal of bad bytes.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { prefixEnd } from '../../src/api/routes.js';
import { KvStore, k, type Op } from '../../src/kv/kv-store.js';
import { FlotillaError } from '../../src/base/errors.js';
import { httpStatus } from '../../src/api/errors.js';
import { chunkStream, isRefusal, type Command } from '../../src/host/contracts.js';
import { encodeWrite } from '../../src/server/kv-service.js';
import { encodeEnvelope } from '../../src/host/envelope.js';
import { defaultLimits } from '../../src/base/limits.js';
import { KvStateMachine, maxWriteEnvelopeBytes, type TxnCommand } from '../../src/kv/machine.js';
import { SessionMachine, SessionTable } from '../../src/host/sessions.js';

const b = (s: string): Uint8Array => new TextEncoder().encode(s);
const s = (u: Uint8Array): string => new TextDecoder().decode(u);
const put = (k: string, v: string): Op => ({ kind: 'put', key: b(k), value: b(v), prevKv: true });
const del = (k: string, end: string | null = null): Op => ({
  kind: 'delete',
  range: { key: b(k), rangeEnd: end === null ? null : b(end) },
  prevKv: true,
});
const txn = (...success: Op[]) => ({ compare: [], success, failure: [] });

void test('revisions, versions and create revisions follow etcd', () => {
  const kv = new KvStore();
  assert.equal(kv.revision(), 1, 'an empty store is at revision 1');
  assert.equal(kv.apply(txn(put('a', '1'))).revision, 2);
  kv.apply(txn(put('a', '2')));
  const a = kv.get(b('a'));
  assert.deepEqual([a?.createRevision, a?.modRevision, a?.version], [2, 3, 2]);
  const r = kv.apply(txn(del('a')));
  assert.equal(r.revision, 4);
  assert.equal(r.results[0]?.kind === 'delete' && r.results[0].deleted, 1);
  assert.equal(kv.apply(txn(del('a'))).revision, 4, 'deleting nothing does not raise the revision');
  kv.apply(txn(put('a', '3')));
  const again = kv.get(b('a'));
  assert.deepEqual([again?.createRevision, again?.version], [5, 1], 'version resets after delete');
  assert.equal(
    kv.apply(txn(put('x', '1'), put('y', '2'))).revision,
    6,
    'one revision per transaction',
  );
});

void test('ranges: prefix, limit, count, more, byte order including 0xff', () => {
  const kv = new KvStore();
  for (const k of ['b/2', 'b/1', 'a', 'b/10', 'c']) kv.apply(txn(put(k, k)));
  const pre = kv.range({ key: b('b/'), rangeEnd: prefixEnd(b('b/')) }, 0, false);
  assert.deepEqual(
    pre.kvs.map((x) => s(x.key)),
    ['b/1', 'b/10', 'b/2'],
  );
  const lim = kv.range({ key: b('b/'), rangeEnd: prefixEnd(b('b/')) }, 2, false);
  assert.deepEqual([lim.kvs.length, lim.count, lim.more], [2, 3, true]);
  const cnt = kv.range({ key: b('a'), rangeEnd: new Uint8Array([0]) }, 0, true);
  assert.deepEqual([cnt.kvs.length, cnt.count], [0, 5]);
  const hi = new Uint8Array([0xff, 0xff]);
  kv.apply(txn({ kind: 'put', key: hi, value: b('v'), prevKv: false }));
  assert.deepEqual(
    prefixEnd(new Uint8Array([0xff])),
    new Uint8Array([0]),
    'an all-0xff prefix ranges to the end',
  );
  assert.equal(
    kv.range({ key: new Uint8Array([0xff]), rangeEnd: prefixEnd(new Uint8Array([0xff])) }, 0, false)
      .count,
    1,
  );
});

void test('a range answers at most maxRangeBytes of keys and values, whatever its limit; paging reads the rest', () => {
  // Before, a range with no limit over large values answered them all: 600 values of 1 MiB
  // made a JSON answer past V8's longest string, 500 INTERNAL after a 5 s stall of the node.
  const kv = new KvStore();
  const big = new Uint8Array(defaultLimits.maxValueBytes).fill(0x68);
  const n = Math.ceil(defaultLimits.maxRangeBytes / big.length) + 4;
  const key = (i: number) => `big/${String(i).padStart(3, '0')}`;
  for (let i = 0; i < n; i++)
    kv.apply(txn({ kind: 'put', key: b(key(i)), value: big, prevKv: false }));
  const all = { key: b('big/'), rangeEnd: prefixEnd(b('big/')) };
  const rev = kv.revision();
  kv.apply(txn(put('other', 'x'))); // so that a read at `rev` takes the path of the past
  for (const at of [0, rev]) {
    const seen: string[] = [];
    let from = all.key;
    for (let page = 0; page < n; page++) {
      const r = kv.range({ key: from, rangeEnd: all.rangeEnd }, 0, false, at);
      const bytes = r.kvs.reduce((t, x) => t + x.key.length + x.value.length, 0);
      assert.ok(r.kvs.length >= 1, `page ${page} at ${at} answered nothing`);
      assert.ok(r.kvs.length === 1 || bytes <= defaultLimits.maxRangeBytes, `${bytes} bytes`);
      assert.equal(r.more, seen.length + r.kvs.length < n, `page ${page} at ${at}: more`);
      assert.equal(r.count, n - seen.length);
      seen.push(...r.kvs.map((x) => s(x.key)));
      if (!r.more) break;
      from = new Uint8Array([...(r.kvs.at(-1) as { key: Uint8Array }).key, 0]);
    }
    assert.deepEqual(
      seen,
      Array.from({ length: n }, (_, i) => key(i)),
      `at ${at}`,
    );
  }
  // A value larger than the budget alone is still answered, alone.
  const huge = new Uint8Array(defaultLimits.maxRangeBytes + 1);
  kv.apply(txn({ kind: 'put', key: b('big/000'), value: huge, prevKv: false }));
  const first = kv.range(all, 0, false);
  assert.deepEqual([first.kvs.length, first.more], [1, true]);
  // The ranges of one transaction share the budget: their answer is one.
  const half = Math.ceil(n / 2);
  const ranges = ['big/0', 'big/0', 'big/0'].map((p) => ({
    range: { key: b(p), rangeEnd: prefixEnd(b(p)) },
  }));
  const r = kv.apply({
    compare: [],
    success: ranges.map((x) => ({ kind: 'range' as const, ...x, limit: half, countOnly: false })),
    failure: [],
  });
  const parts = r.results.map((x) => (x.kind === 'range' ? x : assert.fail(x.kind)));
  const total = parts.flatMap((x) => x.kvs).reduce((t, x) => t + x.key.length + x.value.length, 0);
  assert.ok(total <= defaultLimits.maxRangeBytes + huge.length, `${total} bytes in one txn`);
  assert.deepEqual(
    parts.map((x) => x.more),
    [true, true, true],
  );
  assert.equal(parts[2]?.kvs.length, 0);
});

void test('txn compares choose the branch (compare-and-swap)', () => {
  const kv = new KvStore();
  kv.apply(txn(put('k', 'old')));
  const cas = (expected: string, next: string) =>
    kv.apply({
      compare: [{ key: b('k'), target: 'value', op: '=', value: b(expected) }],
      success: [put('k', next)],
      failure: [],
    });
  assert.equal(cas('stale', 'x').succeeded, false);
  assert.equal(cas('old', 'new').succeeded, true);
  assert.equal(s(kv.get(b('k'))?.value ?? b('')), 'new');
  const absent = kv.apply({
    compare: [{ key: b('none'), target: 'version', op: '=', value: 0 }],
    success: [put('none', '1')],
    failure: [],
  });
  assert.equal(absent.succeeded, true, 'version 0 means absent');
  const missingValue = kv.apply({
    compare: [{ key: b('ghost'), target: 'value', op: '!=', value: b('x') }],
    success: [],
    failure: [],
  });
  assert.equal(missingValue.succeeded, false, 'a value compare on a missing key is false');
});

type ModelOp =
  { t: 'put'; k: string; v: string } | { t: 'del'; k: string } | { t: 'delp'; k: string };

void test('property: the store matches a naive sorted map, and snapshots restore exactly', () => {
  const key = fc.constantFrom('a', 'ab', 'abc', 'b', 'ba', 'c', '\u00ff', 'a\u0000');
  const op: fc.Arbitrary<ModelOp> = fc.oneof(
    fc.record({ t: fc.constant('put' as const), k: key, v: fc.string({ maxLength: 4 }) }),
    fc.record({ t: fc.constant('del' as const), k: key }),
    fc.record({ t: fc.constant('delp' as const), k: key }),
  );
  fc.assert(
    fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
      const kv = new KvStore();
      const model = new Map<string, string>();
      for (const o of ops) {
        if (o.t === 'put') {
          kv.apply(txn(put(o.k, o.v)));
          model.set(o.k, o.v);
        } else if (o.t === 'del') {
          kv.apply(txn(del(o.k)));
          model.delete(o.k);
        } else {
          const p = b(o.k);
          kv.apply(
            txn({ kind: 'delete', range: { key: p, rangeEnd: prefixEnd(p) }, prevKv: false }),
          );
          for (const mk of [...model.keys()])
            if (Buffer.from(b(mk)).subarray(0, p.length).equals(Buffer.from(p))) model.delete(mk);
        }
      }
      const all = kv.range({ key: new Uint8Array([0]), rangeEnd: new Uint8Array([0]) }, 0, false);
      const expected = [...model.entries()].sort((x, y) =>
        Buffer.compare(Buffer.from(b(x[0])), Buffer.from(b(y[0]))),
      );
      assert.deepEqual(
        all.kvs.map((x) => [s(x.key), s(x.value)]),
        expected,
      );
      const copy = new KvStore();
      copy.restoreState(kv.snapshotState());
      assert.equal(copy.revision(), kv.revision());
      assert.deepEqual(copy.snapshotState(), kv.snapshotState());
    }),
    { numRuns: 200 },
  );
});

void test('sessions: a retried seq returns the first result; old seqs refused; idle sessions expire by log time', () => {
  const t = new SessionTable({ ttlMs: 1000, maxSessions: 2, window: 3 });
  t.tick(0);
  assert.equal(t.check('c', 1).kind, 'apply');
  t.record('c', 1, 'r1');
  assert.deepEqual(t.check('c', 1), { kind: 'duplicate', result: 'r1' });
  for (const seq of [2, 3, 4]) t.record('c', seq, `r${seq}`);
  assert.equal(t.check('c', 1).kind, 'stale', 'seq 1 fell out of the window of 3');
  assert.equal(t.check('c', 5).kind, 'apply');
  t.tick(500);
  t.record('d', 1, 'x');
  t.tick(1400);
  assert.equal(t.check('c', 4).kind, 'apply', 'c idled past the ttl and was forgotten');
  assert.deepEqual(t.check('d', 1), { kind: 'duplicate', result: 'x' });
  t.tick(100);
  assert.deepEqual(
    t.check('d', 1),
    { kind: 'duplicate', result: 'x' },
    'the session clock never goes backwards',
  );
  t.record('e', 1, 'y');
  t.record('f', 1, 'z');
  assert.equal(t.size(), 2, 'the least recently used session is evicted past maxSessions');
  const copy = new SessionTable({ ttlMs: 1000, maxSessions: 2, window: 3 });
  copy.load(t.save());
  assert.deepEqual(copy.save(), t.save());
});

void test('sessions: a window of sequence numbers ending at the highest, in any order inside it', () => {
  const t = new SessionTable({ ttlMs: 1000, maxSessions: 10, window: 4 });
  t.tick(0);
  t.record('c', 5, 'r5');
  assert.equal(t.check('c', 4).kind, 'apply', 'seq 4 overtaken by 5 is still in flight: apply');
  assert.equal(t.check('c', 2).kind, 'apply', 'the window of 4 ending at 5 holds 2..5');
  assert.deepEqual(t.check('c', 1), { kind: 'stale', floor: 1 }, 'seq 1 is below the window');
  t.record('c', 3, 'r3');
  assert.deepEqual(t.check('c', 3), { kind: 'duplicate', result: 'r3' });
  assert.deepEqual(t.check('c', 5), { kind: 'duplicate', result: 'r5' });
  t.record('c', 100, 'r100');
  for (const seq of [3, 5, 96])
    assert.equal(t.check('c', seq).kind, 'stale', `seq ${seq} is below the window 97..100`);
  assert.equal(t.check('c', 97).kind, 'apply');
  assert.equal(t.check('c', 101).kind, 'apply');
  assert.equal(t.save().sessions[0]?.[3].length, 1, 'results below the window are forgotten');
  assert.throws(() => t.record('c', 100, 'again'), /was not checked/, 'a result is recorded once');
  assert.throws(() => t.record('c', 50, 'late'), /was not checked/, 'never below the window');
});

void test('property: every replica answers a stream of sequence numbers the same way, exactly once', () => {
  // Model: a sequence number applies at most once, is remembered while inside the window, and
  // is refused once the client's highest is `window` or more above it.
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 1, max: 40 }), { maxLength: 200 }), (seqs) => {
      const window = 8;
      const replicas = [new SessionTable({ ttlMs: 1e9, maxSessions: 10, window })];
      replicas.push(new SessionTable({ ttlMs: 1e9, maxSessions: 10, window }));
      const applied = new Set<number>();
      let highest = 0;
      seqs.forEach((seq, i) => {
        if (i === seqs.length >> 1) replicas[1]?.load(structuredClone(replicas[1].save()));
        const answers = replicas.map((t) => {
          const c = t.check('c', seq);
          if (c.kind === 'apply') t.record('c', seq, `r${seq}`);
          return c.kind;
        });
        assert.equal(answers[0], answers[1], 'replicas agree');
        const expected = applied.has(seq)
          ? seq > highest - window
            ? 'duplicate'
            : 'stale'
          : seq > highest - window
            ? 'apply'
            : 'stale';
        assert.equal(answers[0], expected, `seq ${seq} after ${[...applied].join(',')}`);
        if (expected === 'apply') {
          applied.add(seq);
          highest = Math.max(highest, seq);
        }
      });
    }),
    { numRuns: 300 },
  );
});

/** The key-value machine inside exactly-once sessions, as a node runs it. */
function machine(limits: { maxKeyBytes: number; maxValueBytes: number }) {
  const kv = new KvStateMachine(limits);
  return { kv, sm: new SessionMachine(kv) };
}

function envelope(
  txn: TxnCommand,
  session: { clientId: string; seq: number; ackedBelow?: number } | null,
  timeMs: number,
) {
  return encodeEnvelope({
    client: session?.clientId ?? '',
    seq: session?.seq ?? 0,
    timeMs,
    payload: KvStateMachine.encode(txn),
    ...(session?.ackedBelow === undefined ? {} : { ackedBelow: session.ackedBelow }),
  });
}

const command = (index: number, payload: Uint8Array): Command => ({
  index,
  term: 1,
  timeMs: 0,
  payload,
});

async function collect(chunks: AsyncIterable<Uint8Array>): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for await (const c of chunks) out.push(c);
  return out;
}

function replay(chunks: readonly Uint8Array[]): AsyncIterable<Uint8Array> {
  return chunkStream(() => chunks[Symbol.iterator]());
}

void test('the proposal limit is the largest single write, exactly, at every msgpack size class', () => {
  const sizes = [1, 255, 256, 65_535, 65_536, 70_000];
  for (const maxKeyBytes of [1, 255, 256, 1024]) {
    for (const maxValueBytes of sizes) {
      const limit = maxWriteEnvelopeBytes({ maxKeyBytes, maxValueBytes });
      const key = new Uint8Array(maxKeyBytes).fill(0x6b);
      const session = {
        clientId: '\uffff'.repeat(defaultLimits.maxClientIdChars),
        seq: 2 ** 53 - 1,
        ackedBelow: 2 ** 53 - 1,
      };
      const ops: Op[] = [
        {
          kind: 'put',
          key,
          value: new Uint8Array(maxValueBytes),
          prevKv: true,
          lease: Number.MAX_SAFE_INTEGER,
        },
        {
          kind: 'delete',
          range: { key, rangeEnd: key },
          prevKv: true,
          prevKvBytesMax: Number.MAX_SAFE_INTEGER,
        },
      ];
      const sizesSeen = ops.map(
        (op) => envelope({ compare: [], success: [op], failure: [] }, session, 2 ** 53).length,
      );
      assert.equal(
        Math.max(...sizesSeen),
        limit,
        `key ${maxKeyBytes}, value ${maxValueBytes}: the worst write is exactly the limit`,
      );
    }
  }
});

void test('a transaction that does not fit one log entry is refused with TXN_TOO_LARGE', () => {
  const limit = maxWriteEnvelopeBytes({ maxKeyBytes: 16, maxValueBytes: 100 });
  const op = (k: string): Op => ({
    kind: 'put',
    key: b(k),
    value: new Uint8Array(100),
    prevKv: false,
  });
  const ops = (n: number) => Array.from({ length: n }, (_, i) => op(`k${i}`));
  const fits = encodeWrite({ compare: [], success: ops(4), failure: [] }, null, 0, limit);
  assert.ok(fits.length <= limit, 'four small puts fit');
  assert.throws(
    () => encodeWrite({ compare: [], success: ops(8), failure: [] }, null, 0, limit),
    (e: unknown) =>
      e instanceof FlotillaError &&
      e.code === 'TXN_TOO_LARGE' &&
      httpStatus(e) === 413 &&
      !e.indefinite,
  );
});

void test('the state machine applies a retried command once and refuses bad bytes deterministically', async () => {
  const { kv, sm } = machine({ maxKeyBytes: 16, maxValueBytes: 16 });
  const w = {
    compare: [],
    success: [{ kind: 'put' as const, key: b('k'), value: b('v'), prevKv: false }],
    failure: [],
  };
  const data = envelope(w, { clientId: 'c1', seq: 7 }, 1000);
  const [first] = sm.apply([command(1, data)]);
  const [second] = sm.apply([command(2, data)]);
  assert.deepEqual(second, first, 'the retry returns the first result');
  assert.equal(kv.revision(), 2, 'and did not apply again');
  const [bad] = sm.apply([command(3, new Uint8Array([0xc1, 0x00, 0xff]))]);
  assert.equal(isRefusal(bad) && bad.refused, 'BAD_COMMAND');
  const big = envelope(
    {
      compare: [],
      success: [{ kind: 'put', key: b('k'.repeat(17)), value: b('v'), prevKv: false }],
      failure: [],
    },
    null,
    0,
  );
  const [r] = sm.apply([command(4, big)]);
  assert.equal(isRefusal(r) && r.refused, 'BAD_COMMAND', 'limits are enforced again at apply');
  const restored = machine({ maxKeyBytes: 16, maxValueBytes: 16 });
  await restored.sm.restore(replay(await collect(sm.snapshot())));
  assert.equal(restored.kv.revision(), kv.revision());
  assert.deepEqual(restored.sm.apply([command(5, data)]), [first], 'sessions survive a snapshot');
});

function putEntry(sm: SessionMachine, index: number, key: string, value: string) {
  const data = envelope(
    {
      compare: [],
      success: [{ kind: 'put', key: b(key), value: b(value), prevKv: false }],
      failure: [],
    },
    { clientId: `c${index % 7}`, seq: index },
    index,
  );
  return sm.apply([command(index, data)])[0];
}

void test('a snapshot is the state at the call, even while entries apply during its encoding', async () => {
  const { kv, sm } = machine({ maxKeyBytes: 64, maxValueBytes: 64 });
  // Enough keys for several chunks, so applies really interleave with the reading.
  const n = 10_000;
  for (let i = 1; i <= n; i++) putEntry(sm, i, `k${i}`, `v${i}`);
  const revisionAtCall = kv.revision();
  const chunks: Uint8Array[] = [];
  let applied = 0;
  for await (const c of sm.snapshot()) {
    chunks.push(c);
    applied++;
    putEntry(sm, n + applied, `k${applied}`, 'changed'); // overwrite old keys
    putEntry(sm, n + 10_000 + applied, `new${applied}`, 'x'); // and add new ones
  }
  assert.ok(chunks.length > 3, `several chunks (${chunks.length})`);
  assert.ok(kv.revision() > revisionAtCall, 'entries were applied while the snapshot was read');
  const restored = machine({ maxKeyBytes: 64, maxValueBytes: 64 });
  await restored.sm.restore(replay(chunks));
  assert.equal(restored.kv.revision(), revisionAtCall);
  const all = restored.kv.range({
    range: { key: new Uint8Array([0]), rangeEnd: new Uint8Array([0]) },
    limit: 0,
    countOnly: false,
  });
  assert.equal(all.count, n);
  for (const kv of all.kvs) assert.equal(s(kv.value), `v${s(kv.key).slice(1)}`);
});

void test('a damaged snapshot is refused, not half restored', async () => {
  const { sm } = machine({ maxKeyBytes: 64, maxValueBytes: 64 });
  for (let i = 1; i <= 3000; i++) putEntry(sm, i, `k${i}`, `v${i}`);
  const chunks = await collect(sm.snapshot());
  const target = machine({ maxKeyBytes: 64, maxValueBytes: 64 });
  await assert.rejects(
    target.sm.restore(replay(chunks.slice(0, -1))),
    /Key-value snapshot ends before chunk/,
  );
  await assert.rejects(
    target.sm.restore(replay([...chunks, chunks[chunks.length - 1] as Uint8Array])),
    /chunks past its end/,
  );
  await assert.rejects(target.sm.restore(replay([new Uint8Array([0x90])])), /version undefined/);
  assert.equal(target.kv.revision(), 1, 'nothing was restored');
});

void test('k: one char per byte for short and long keys, so string order is byte order', () => {
  const latin1 = (b: Uint8Array) => Buffer.from(b).toString('latin1');
  for (const len of [0, 1, 63, 64, 65, 4096, 4097, 9000]) {
    const b = Uint8Array.from({ length: len }, (_, i) => (i * 37 + len) & 0xff);
    assert.equal(k(b), latin1(b), `length ${len}`);
  }
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 80 }), fc.uint8Array({ maxLength: 80 }), (a, b) => {
      assert.equal(k(a), latin1(a));
      assert.equal(Math.sign(Buffer.compare(a, b)), k(a) < k(b) ? -1 : k(a) > k(b) ? 1 : 0);
    }),
  );
});

void test('the store keeps copies of its own, not views into the log entry it applied', () => {
  const m = new KvStateMachine({ maxKeyBytes: 64, maxValueBytes: 64 });
  const encoded = KvStateMachine.encode(txn(put('key', 'value')));
  // A Buffer, as an entry read from the WAL or a socket is: its `slice` is a view, not a copy.
  const payload = Buffer.from(encoded);
  m.apply([{ index: 1, term: 1, timeMs: 0, payload }]);
  payload.fill(0);
  const got = m.range({ range: { key: b('key'), rangeEnd: null }, limit: 0, countOnly: false });
  assert.equal(got.kvs.length, 1, 'the key was stored');
  const kv = got.kvs[0];
  assert.ok(kv !== undefined);
  assert.equal(s(kv.key), 'key');
  assert.equal(s(kv.value), 'value');
  assert.notEqual(kv.value.buffer, payload.buffer, 'the value shares no memory with the entry');
  assert.notEqual(kv.key.buffer, payload.buffer, 'the key shares no memory with the entry');
});
