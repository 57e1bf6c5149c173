// Entry data as the log keeps it. Data handed to the log is often a view into a much larger
// buffer (an encoder's shared output, a frame read from a peer), which the log would otherwise
// keep whole for as long as it keeps the entry: a group that appends an entry now and then
// pinned a busy group's 15 MB encoder buffer with each of its entries until its next
// compaction (BENCHMARKS.md, "A log entry that pinned megabytes").

import { AssertionError } from './errors.js';
import type { Entry } from './types.js';

/**
 * `datas` unchanged when each one is its buffer's whole; otherwise all of them copied into one
 * new buffer (one allocation per batch) and returned as views into it, in order.
 */
export function ownedData(datas: readonly Uint8Array[]): readonly Uint8Array[] {
  let bytes = 0;
  let views = false;
  for (const d of datas) {
    // Exported: an embedder's array of something else was a TypeError on `d.buffer`.
    if (!(d instanceof Uint8Array))
      throw new AssertionError(`ownedData takes Uint8Arrays, got ${describe(d)}`);
    bytes += d.byteLength;
    if (d.byteLength !== d.buffer.byteLength) views = true;
  }
  if (!views) return datas;
  const block = new Uint8Array(bytes);
  let at = 0;
  return datas.map((d) => {
    block.set(d, at);
    return block.subarray(at, (at += d.byteLength));
  });
}

/** `entries` (a new array) with their data owned (ownedData); entries owning theirs are kept. */
export function ownedEntries(entries: readonly Entry[]): Entry[] {
  const own = ownedData(entries.map((e) => e.data));
  return entries.map((e, i) =>
    own[i] === e.data
      ? e
      : { term: e.term, index: e.index, type: e.type, data: own[i] as Uint8Array },
  );
}

function describe(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v;
}
