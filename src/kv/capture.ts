// A key-value snapshot taken in O(1) and read while commands keep applying (copy-on-write).
//
// Copying the whole state when a snapshot is taken blocked the event loop for 300-580 ms at
// 256,000 keys with one past version each (bench/kv/snapshot-bench.ts), and every member
// takes its snapshot at the same log index: a leader silent that long loses its term. So a
// capture copies nothing when taken. It remembers the revision and the counts, and the store
// hands it each key's pre-image (its current version and its past, as they were) the first
// time a command changes that key after the capture. Reading then walks the keys in byte order,
// taking the pre-image of a changed key and the live state of any other. Records are immutable
// (a put makes a new one), so the live record of an unchanged key is the captured one.
//
// Which keys to walk: a key live at the capture is live now unless something changed it (then
// it has a pre-image); a key with a past at the capture and unchanged since still has that
// past. So walking the live keys and the changed keys, in order, meets every key-value the
// capture holds, and walking the keys with a past and the changed keys every past.

import type { History, Version } from './history.js';
import type { StoredKv } from './key-value.js';
import { SortedKeys } from './sorted-keys.js';

/** What a capture reads of the live store. */
export interface LiveKeys {
  /** Up to `limit` live keys above `after` (null: from the start), in order. */
  keysAfter(after: string | null, limit: number): string[];
  current(key: string): StoredKv | undefined;
  readonly history: Pick<History, 'versionsOf' | 'withPast'>;
}

interface Preimage {
  readonly kv: StoredKv | undefined;
  readonly past: readonly Version[] | undefined;
}

/** Keys fetched from each source per step of a walk. */
const STEP = 1_024;

export class StoreCapture {
  private readonly before = new Map<string, Preimage>();
  private readonly changed = new SortedKeys();
  /** The live store was replaced: every key the capture holds has its pre-image. */
  private detached = false;
  /** Reading finished or was given up: the capture keeps nothing more. */
  closed = false;

  constructor(
    private readonly live: LiveKeys,
    /** Live keys at the capture. */
    readonly kvCount: number,
    /** Keys with a past at the capture. */
    readonly pastCount: number,
  ) {}

  /** Called before the store changes `key` (its version or its past): keeps them, once. */
  preserve(key: string): void {
    if (this.closed || this.detached || this.before.has(key)) return;
    const past = this.live.history.versionsOf(key);
    this.before.set(key, {
      kv: this.live.current(key),
      past: past === undefined ? undefined : [...past],
    });
    this.changed.insert(key);
  }

  /** The live store is about to be replaced whole: keep every key it holds first. */
  detach(keys: Iterable<string>): void {
    if (this.closed || this.detached) return;
    for (const key of keys) this.preserve(key);
    this.detached = true;
  }

  close(): void {
    this.closed = true;
    this.before.clear();
  }

  /** The live key-values as of the capture, in key order, `n` at a time. */
  *kvs(n: number): Generator<StoredKv[]> {
    const sources = [(a: string | null, l: number) => this.live.keysAfter(a, l)];
    yield* this.records(n, this.kvCount, sources, (key) => {
      const pre = this.before.get(key);
      return pre === undefined ? this.live.current(key) : pre.kv;
    });
  }

  /** The keys' pasts as of the capture, in key order, `n` at a time. */
  *pasts(n: number): Generator<[string, readonly Version[]][]> {
    const sources = [(a: string | null, l: number) => this.live.history.withPast.keysAfter(a, l)];
    yield* this.records(n, this.pastCount, sources, (key) => {
      const pre = this.before.get(key);
      const past = pre === undefined ? this.live.history.versionsOf(key) : pre.past;
      return past === undefined || past.length === 0 ? undefined : [key, past];
    });
  }

  /**
   * Walks the keys of `sources` and of the changed keys in order, and yields the records
   * `recordOf` finds, `n` at a time; exactly `expected` of them, or it throws (the capture
   * lost track of the state: a bug, and a snapshot that must not be written).
   */
  private *records<T>(
    n: number,
    expected: number,
    sources: readonly ((after: string | null, limit: number) => string[])[],
    recordOf: (key: string) => T | undefined,
  ): Generator<T[]> {
    let last: string | null = null;
    let found = 0;
    let done = false;
    while (!done) {
      if (this.closed) throw new Error('Key-value snapshot was given up while being read');
      // One chunk per pull, made synchronously: the walk starts again after `last` each time,
      // so what changed between two pulls is seen.
      const part: T[] = [];
      while (part.length < n) {
        const step = this.step(last, this.detached ? [] : sources);
        if (step.length === 0) {
          done = true;
          break;
        }
        for (const key of step) {
          last = key;
          const r = recordOf(key);
          if (r === undefined) continue;
          part.push(r);
          if (part.length === n) break;
        }
      }
      found += part.length;
      if (part.length > 0) yield part;
    }
    if (found !== expected)
      throw new Error(`Key-value snapshot found ${found} records where it captured ${expected}`);
  }

  /**
   * The next keys above `after` of every source and of the changed keys, merged without
   * duplicates; only up to the smallest last key of a source that may hold more, so no key of
   * another source is skipped.
   */
  private step(
    after: string | null,
    sources: readonly ((after: string | null, limit: number) => string[])[],
  ): string[] {
    const lists = [...sources.map((s) => s(after, STEP)), this.changed.keysAfter(after, STEP)];
    let bound: string | null = null;
    for (const l of lists)
      if (l.length === STEP) {
        const top = l[STEP - 1] as string;
        if (bound === null || top < bound) bound = top;
      }
    // Each list is sorted already (code-unit order, as `<` compares): merge them, a key that
    // several lists hold taken once, rather than sorting all of them again.
    const at = lists.map(() => 0);
    const out: string[] = [];
    for (;;) {
      let min: string | undefined;
      for (let i = 0; i < lists.length; i++) {
        const key = (lists[i] as string[])[at[i] as number];
        if (key !== undefined && (min === undefined || key < min)) min = key;
      }
      if (min === undefined || (bound !== null && min > bound)) return out;
      out.push(min);
      for (let i = 0; i < lists.length; i++)
        if ((lists[i] as string[])[at[i] as number] === min) at[i] = (at[i] as number) + 1;
    }
  }
}
