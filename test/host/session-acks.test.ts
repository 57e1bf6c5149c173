// The session table keeps only what a client may still retry (Raft thesis §6.3): a write that
// carries its client's acknowledgement mark (`ackedBelow`, the lowest sequence number the
// client still awaits) makes the session forget the results below it and refuse those sequence
// numbers from then on; writes still in flight, in any order, are each applied once; a write
// without a mark keeps today's window; and the envelope carries the mark only as it must.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Packr } from 'msgpackr';
import { features } from '../../src/base/features.js';
import { chunkStream, type Command, type StateMachine } from '../../src/host/contracts.js';
import { decodeEnvelope, encodeEnvelope } from '../../src/host/envelope.js';
import { SessionMachine, type SessionLimits } from '../../src/host/sessions.js';
import { sessionAtLevel } from '../../src/server/feature-gate.js';

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Counts the commands applied per key: a write applied twice shows as a count too high. */
class Counters implements StateMachine {
  readonly counts = new Map<string, number>();
  apply(commands: readonly Command[]): unknown[] {
    return commands.map((c) => {
      const key = dec.decode(c.payload);
      const n = (this.counts.get(key) ?? 0) + 1;
      this.counts.set(key, n);
      return { key, n };
    });
  }
  snapshot(): AsyncIterable<Uint8Array> {
    const data = enc.encode(JSON.stringify([...this.counts]));
    return chunkStream(() => [data][Symbol.iterator]());
  }
  async restore(chunks: AsyncIterable<Uint8Array>): Promise<void> {
    for await (const c of chunks)
      for (const [k, n] of JSON.parse(dec.decode(c)) as [string, number][]) this.counts.set(k, n);
  }
}

const limits: SessionLimits = { ttlMs: 3_600_000, maxSessions: 100, window: 256 };

let index = 0;
/** Client `c`'s write `seq` of key `key`, with its mark when given. */
function write(c: string, seq: number, ackedBelow?: number, key = `${c}/${seq}`): Command {
  const payload = encodeEnvelope({
    client: c,
    seq,
    timeMs: 1_000,
    payload: enc.encode(key),
    ...(ackedBelow === undefined ? {} : { ackedBelow }),
  });
  return { index: ++index, term: 1, timeMs: 0, payload };
}

function machine(): { sm: SessionMachine; counters: Counters } {
  const counters = new Counters();
  return { sm: new SessionMachine(counters, limits), counters };
}

const refusedCode = (r: unknown): string | undefined => (r as { refused?: string }).refused;

void test('a client that says its mark keeps one result per write in flight; one that does not keeps its window', () => {
  const { sm } = machine();
  for (let seq = 1; seq <= 1_000; seq++) {
    // One write at a time: each awaits only itself.
    sm.apply([write('acks', seq, seq)]);
    assert.equal(sm.resultsOf('acks'), 1, `after seq ${seq}`);
    sm.apply([write('plain', seq)]);
    assert.equal(sm.resultsOf('plain'), Math.min(seq, limits.window), `after seq ${seq}`);
  }
  // Eight in flight at a time: the mark is the oldest of them.
  for (let seq = 1; seq <= 1_000; seq++) {
    sm.apply([write('eight', seq, Math.max(1, seq - 7))]);
    assert.ok(sm.resultsOf('eight') <= 8, `after seq ${seq}: ${sm.resultsOf('eight')}`);
  }
  assert.equal(sm.resultsOf('eight'), 8);
  assert.equal(sm.resultsHeld(), 1 + limits.window + 8);
});

void test('a retry below the mark is refused, a retry at or above it answers its first result', () => {
  const { sm, counters } = machine();
  const [first] = sm.apply([write('c', 3, 1, 'k')]);
  sm.apply([write('c', 4, 1, 'x'), write('c', 5, 4, 'y')]);
  // 3 was acknowledged by the mark 4: its copy now is refused, and applies nothing.
  const [stale] = sm.apply([write('c', 3, 3, 'k')]);
  assert.equal(refusedCode(stale), 'SESSION_STALE_SEQUENCE');
  assert.match((stale as { message: string }).message, /up to 3 are refused/);
  assert.equal(counters.counts.get('k'), 1);
  assert.deepEqual(first, { key: 'k', n: 1 });
  // 4 and 5 are still awaited: a retry gets the first result and applies nothing.
  assert.deepEqual(sm.apply([write('c', 4, 4, 'x')]), [{ key: 'x', n: 1 }]);
  assert.deepEqual(sm.apply([write('c', 5, 5, 'y')]), [{ key: 'y', n: 1 }]);
  assert.equal(counters.counts.get('x'), 1);
  // Below the mark but never applied (1 and 2): refused too, the client no longer awaits them.
  assert.equal(refusedCode(sm.apply([write('c', 2, 2, 'z')])[0]), 'SESSION_STALE_SEQUENCE');
  assert.equal(counters.counts.get('z'), undefined);
});

void test('writes in flight reach the log out of order and each applies once; a late lower mark changes nothing', () => {
  const { sm, counters } = machine();
  // Writes 1 to 6 sent together (mark 1), reaching the log as 4, 2, 6, 1, then 5 and 3 later.
  const order = [4, 2, 6, 1];
  const results = sm.apply(order.map((s) => write('c', s, 1, `k${s}`)));
  assert.deepEqual(
    results,
    order.map((s) => ({ key: `k${s}`, n: 1 })),
  );
  // The client got 1 and 2 back and sends 7 with mark 3; 3 and 5 are still in flight.
  sm.apply([write('c', 7, 3, 'k7')]);
  assert.equal(sm.resultsOf('c'), 3, 'results of 4, 6 and 7 are kept, 1 and 2 forgotten');
  // 5 and 3 arrive now, carrying the mark 1 of when they were sent: applied once each.
  assert.deepEqual(sm.apply([write('c', 5, 1, 'k5'), write('c', 3, 1, 'k3')]), [
    { key: 'k5', n: 1 },
    { key: 'k3', n: 1 },
  ]);
  // Retries of every write still awaited answer the first result; nothing applies twice.
  for (const s of [3, 4, 5, 6, 7]) {
    const [again] = sm.apply([write('c', s, 3, `k${s}`)]);
    assert.deepEqual(again, { key: `k${s}`, n: 1 }, `retry of ${s}`);
  }
  for (const [k, n] of counters.counts) assert.equal(n, 1, `${k} applied ${n} times`);
  // 1 was answered and acknowledged: a stale copy of it is refused, not applied again.
  assert.equal(refusedCode(sm.apply([write('c', 1, 1, 'k1')])[0]), 'SESSION_STALE_SEQUENCE');
  assert.equal(counters.counts.get('k1'), 1);
  // A retry carries the client's mark as it is now: it trims too, though it applies nothing.
  assert.deepEqual(sm.apply([write('c', 7, 6, 'k7')]), [{ key: 'k7', n: 1 }]);
  assert.equal(sm.resultsOf('c'), 2, 'results of 6 and 7 are kept');
});

void test('the floor and the trimmed results survive a snapshot, in the format of before', async () => {
  const { sm } = machine();
  for (let seq = 1; seq <= 40; seq++) sm.apply([write('c', seq, seq - 1 || 1)]);
  assert.equal(sm.resultsOf('c'), 2);
  const chunks: Uint8Array[] = [];
  for await (const c of sm.snapshot()) chunks.push(c);
  const header = new Packr({ useRecords: false }).unpack(chunks[0] as Uint8Array) as object;
  assert.equal((header as { v: number }).v, 1, 'the session snapshot version is unchanged');
  const restored = machine();
  await restored.sm.restore(chunkStream(() => chunks[Symbol.iterator]()));
  assert.equal(restored.sm.resultsOf('c'), 2);
  assert.equal(
    refusedCode(restored.sm.apply([write('c', 38, 38)])[0]),
    'SESSION_STALE_SEQUENCE',
    'the floor came back',
  );
  assert.deepEqual(restored.sm.apply([write('c', 40, 40)]), sm.apply([write('c', 40, 40)]));
});

void test('the envelope carries a mark only from 1 to seq and only with a session; bad ones are BAD_COMMAND', () => {
  const env = { client: 'c', seq: 5, timeMs: 1, payload: enc.encode('k') };
  assert.equal(decodeEnvelope(encodeEnvelope(env)).ackedBelow, undefined);
  assert.equal(decodeEnvelope(encodeEnvelope({ ...env, ackedBelow: 5 })).ackedBelow, 5);
  const bad: [string, Parameters<typeof encodeEnvelope>[0], RegExp][] = [
    ['above seq', { ...env, ackedBelow: 6 }, /above the sequence number 5/],
    ['zero', { ...env, ackedBelow: 0 }, /bad acknowledgement mark 0/],
    ['no session', { ...env, client: '', seq: 0, ackedBelow: 1 }, /without a client session/],
    ['not an integer', { ...env, ackedBelow: 1.5 }, /bad acknowledgement mark 1.5/],
  ];
  const { sm, counters } = machine();
  for (const [what, e, message] of bad) {
    const payload = encodeEnvelope(e);
    assert.throws(() => decodeEnvelope(payload), message, what);
    const [r] = sm.apply([{ index: ++index, term: 1, timeMs: 0, payload }]);
    assert.equal(refusedCode(r), 'BAD_COMMAND', what);
  }
  assert.equal(counters.counts.size, 0);
  assert.equal(sm.sessions(), 0);
});

void test('below the level of the feature a session goes into the log without its mark', () => {
  const s = { clientId: 'c', seq: 9, ackedBelow: 4 };
  const below = features.sessionAcks.level - 1;
  assert.deepEqual(sessionAtLevel(s, below), { clientId: 'c', seq: 9 });
  assert.equal(sessionAtLevel(s, features.sessionAcks.level), s);
  assert.equal(sessionAtLevel(null, below), null);
  const plain = { clientId: 'c', seq: 9 };
  assert.equal(sessionAtLevel(plain, below), plain);
});
