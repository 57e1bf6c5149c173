// A framed snapshot read back in pieces of any size (host/snapshot-stream.ts): unframeSnapshot
// gives back exactly the chunks collectSnapshot framed, wherever the pieces cut the frames, and
// refuses a stream that is not framed or ends inside a frame. A paced snapshot (pacedChunks)
// spends at most its share of the time encoding.

import assert from 'node:assert/strict';
import test from 'node:test';
import fc from 'fast-check';
import { chunkStream } from '../../src/host/contracts.js';
import {
  collectSnapshot,
  pacedChunks,
  unframeSnapshot,
  type SnapshotPace,
} from '../../src/host/snapshot-stream.js';

const noWait = (): Promise<void> => Promise.resolve();

function streamOf(parts: readonly Uint8Array[]): AsyncIterable<Uint8Array> {
  return chunkStream(() => parts[Symbol.iterator]());
}

/** `data` cut at `cuts` (offsets, any order, repeats allowed): pieces, some of them empty. */
function cut(data: Uint8Array, cuts: readonly number[]): Uint8Array[] {
  const at = [...cuts.map((c) => c % (data.length + 1)), data.length].sort((a, b) => a - b);
  const pieces: Uint8Array[] = [];
  let from = 0;
  for (const to of at) {
    pieces.push(data.subarray(from, to));
    from = to;
  }
  return pieces;
}

async function unframed(pieces: readonly Uint8Array[]): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  // Copies: a chunk may be a view into a piece.
  for await (const c of unframeSnapshot(streamOf(pieces))) out.push(Uint8Array.from(c));
  return out;
}

void test('the chunks come back whole wherever the pieces cut the frames', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 12 }),
      fc.array(fc.nat(), { maxLength: 20 }),
      async (chunks, cuts) => {
        const framed = await collectSnapshot(streamOf(chunks), noWait);
        const got = await unframed(cut(framed, cuts));
        assert.deepEqual(
          got,
          chunks.map((c) => Uint8Array.from(c)),
        );
      },
    ),
    { numRuns: 300 },
  );
});

void test('a chunk within one piece is not copied; one across pieces is', async () => {
  const chunks = [new Uint8Array(10).fill(1), new Uint8Array(10).fill(2)];
  const framed = await collectSnapshot(streamOf(chunks), noWait);
  // The first piece holds the marker, the first frame and half of the second.
  const first = framed.subarray(0, 4 + 4 + 10 + 4 + 5);
  const second = framed.subarray(first.length);
  const seen: Uint8Array[] = [];
  for await (const c of unframeSnapshot(streamOf([first, second]))) seen.push(c);
  assert.equal(seen.length, 2);
  assert.equal(seen[0]?.buffer, framed.buffer, 'the chunk within the piece was copied');
  assert.notEqual(seen[1]?.buffer, framed.buffer, 'the chunk across pieces is a view');
  assert.deepEqual(Array.from(seen[1] ?? []), Array.from(chunks[1] ?? []));
});

void test('a stream that is not framed, or ends inside a frame, is refused', async () => {
  const framed = await collectSnapshot(streamOf([new Uint8Array([7, 7, 7])]), noWait);
  await assert.rejects(unframed([]), /does not begin with the FSN1 frame marker/);
  await assert.rejects(unframed([framed.subarray(0, 3)]), /does not begin/);
  await assert.rejects(unframed([new Uint8Array([1, 2, 3, 4, 0, 0, 0, 0])]), /does not begin/);
  for (const end of [5, 8, 9, 10])
    await assert.rejects(unframed(cut(framed.subarray(0, end), [2, 6])), /truncated/, `at ${end}`);
  // The marker alone is a snapshot of no chunks; the whole, its one chunk.
  assert.deepEqual(await unframed([framed.subarray(0, 4)]), []);
  assert.deepEqual(await unframed(cut(framed, [1, 5, 9])), [new Uint8Array([7, 7, 7])]);
});

/**
 * A clock that moves only when told: each chunk's encoding takes `costs[k]` ms of it, and a
 * sleep moves it by what was asked. Records the sleeps.
 */
function pacedRun(costs: readonly number[]): {
  source: AsyncIterable<Uint8Array> & { closed: boolean };
  clock: { now: number; sleeps: number[] };
  pace: SnapshotPace;
} {
  const clock = { now: 1_000, sleeps: [] as number[] };
  const source = {
    closed: false,
    [Symbol.asyncIterator]: () => {
      let k = 0;
      return {
        next: (): Promise<IteratorResult<Uint8Array>> => {
          if (k >= costs.length) return Promise.resolve({ done: true, value: undefined });
          clock.now += costs[k] as number;
          return Promise.resolve({ done: false, value: new Uint8Array([k++]) });
        },
        return: (): Promise<IteratorResult<Uint8Array>> => {
          source.closed = true;
          return Promise.resolve({ done: true, value: undefined });
        },
      };
    },
  };
  const pace: SnapshotPace = {
    share: 0.25,
    nowMs: () => clock.now,
    sleep: (ms) => {
      clock.sleeps.push(ms);
      clock.now += ms;
      return Promise.resolve();
    },
  };
  return { source, clock, pace };
}

void test('a paced snapshot takes at most its share of the time, each chunk whole', async () => {
  const costs = [10, 4, 0, 30, 7, 7, 1];
  const { source, clock, pace } = pacedRun(costs);
  const start = clock.now;
  const got: number[] = [];
  let busy = 0;
  for await (const c of pacedChunks(source, pace)) {
    got.push(c[0] as number);
    busy += costs[c[0] as number] as number;
    // After each chunk is handed on, at most the share of the time so far was encoding,
    // counting the chunk just made (it is never cut short).
    const elapsed = clock.now - start;
    const before = elapsed - (costs[c[0] as number] as number);
    assert.ok(
      busy - (costs[c[0] as number] as number) <= 0.25 * before + 1e-9,
      `at ${got.join(',')}`,
    );
  }
  assert.deepEqual(got, [0, 1, 2, 3, 4, 5, 6]);
  // 59 ms of encoding at a quarter of the time: 236 ms in all, the rest in waits.
  assert.equal(clock.now - start, 4 * costs.reduce((a, b) => a + b, 0));
  assert.deepEqual(clock.sleeps, [30, 12, 90, 21, 21, 3]);
});

void test('a paced snapshot waits for nothing when encoding takes no time (the simulator)', async () => {
  const { source, clock, pace } = pacedRun([0, 0, 0, 0]);
  let n = 0;
  for await (const _ of pacedChunks(source, pace)) n++;
  assert.equal(n, 4);
  assert.deepEqual(clock.sleeps, []);
});

void test('a paced snapshot stopped early closes its source (a capture lets go)', async () => {
  const { source, pace } = pacedRun([5, 5, 5]);
  for await (const _ of pacedChunks(source, pace)) break;
  assert.equal(source.closed, true);
});

void test('a hurried pace waits no more (a closing node waits for its snapshot)', async () => {
  const { source, clock, pace } = pacedRun([10, 10, 10, 10]);
  let hurried = false;
  let n = 0;
  for await (const _ of pacedChunks(source, { ...pace, hurried: () => hurried })) {
    if (++n === 2) hurried = true;
  }
  assert.equal(n, 4);
  assert.deepEqual(clock.sleeps, [30]);
});
