// A framed snapshot read back in pieces of any size (host/snapshot-stream.ts): unframeSnapshot
// gives back exactly the chunks collectSnapshot framed, wherever the pieces cut the frames, and
// refuses a stream that is not framed or ends inside a frame.

import assert from 'node:assert/strict';
import test from 'node:test';
import fc from 'fast-check';
import { chunkStream } from '../../src/host/contracts.js';
import { collectSnapshot, unframeSnapshot } from '../../src/host/snapshot-stream.js';

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
