// The session layer's batching is invisible: whatever way committed commands are split into
// batches (replicas split them differently, one Ready at a time), the results and the state,
// sessions included, are those of applying the commands one at a time, with and without the
// clients' acknowledgement marks.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { chunkStream, type Command, type StateMachine } from '../../src/host/contracts.js';
import { encodeEnvelope } from '../../src/host/envelope.js';
import { SessionMachine, type SessionLimits } from '../../src/host/sessions.js';

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A counter per key: enough state for a retry applied twice to show. */
class Counters implements StateMachine {
  private readonly counts = new Map<string, number>();
  apply(commands: readonly Command[]): unknown[] {
    return commands.map((c) => {
      const key = dec.decode(c.payload);
      const n = (this.counts.get(key) ?? 0) + 1;
      this.counts.set(key, n);
      return { key, n, at: c.timeMs };
    });
  }
  snapshot(): AsyncIterable<Uint8Array> {
    const data = enc.encode(JSON.stringify([...this.counts].sort()));
    return chunkStream(() => [data][Symbol.iterator]());
  }
  async restore(chunks: AsyncIterable<Uint8Array>): Promise<void> {
    for await (const c of chunks)
      for (const [k, n] of JSON.parse(dec.decode(c)) as [string, number][]) this.counts.set(k, n);
  }
}

const limits: SessionLimits = { ttlMs: 50, maxSessions: 3, window: 4 };

async function image(sm: SessionMachine): Promise<string> {
  const parts: string[] = [];
  for await (const c of sm.snapshot()) parts.push(Buffer.from(c).toString('hex'));
  return parts.join('|');
}

const commandArb = fc.record({
  client: fc.integer({ min: 0, max: 5 }), // 0: no session
  seq: fc.integer({ min: 1, max: 12 }),
  dt: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 40 })),
  key: fc.constantFrom('a', 'b', 'c'),
  // The acknowledgement mark, as a share of seq (0: none): any mark from 1 to seq is valid.
  mark: fc.oneof(fc.constant(0), fc.double({ min: 0, max: 1, noNaN: true })),
});

void test('any split into batches gives the results and state of one-at-a-time', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(commandArb, { minLength: 1, maxLength: 60 }),
      fc.array(fc.integer({ min: 1, max: 8 }), { minLength: 1, maxLength: 60 }),
      async (spec, cuts) => {
        let t = 1000;
        const commands: Command[] = spec.map((s, i) => {
          t += s.dt;
          const payload = encodeEnvelope({
            client: s.client === 0 ? '' : `c${s.client}`,
            seq: s.client === 0 ? 0 : s.seq,
            timeMs: t,
            payload: enc.encode(s.key),
            ...(s.client === 0 || s.mark === 0
              ? {}
              : { ackedBelow: Math.max(1, Math.ceil(s.mark * s.seq)) }),
          });
          return { index: i + 1, term: 1, timeMs: 0, payload };
        });
        const one = new SessionMachine(new Counters(), limits);
        const single = commands.flatMap((c) => one.apply([c]));
        const batched = new SessionMachine(new Counters(), limits);
        const results: unknown[] = [];
        let at = 0;
        for (let i = 0; at < commands.length; i++) {
          const n = cuts[i % cuts.length] as number;
          results.push(...batched.apply(commands.slice(at, at + n)));
          at += n;
        }
        assert.deepEqual(results, single);
        assert.equal(await image(batched), await image(one));
      },
    ),
    { numRuns: 400 },
  );
});
