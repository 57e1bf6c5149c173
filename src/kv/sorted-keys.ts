// The key-value store's ordered index: a sorted set of keys (latin1 strings, so string order
// is byte order) kept in chunks of at most 1,024 keys. With one flat sorted array every new
// key is a splice that moves half the array on average: 7,000-13,000 new keys per second at a
// million keys on our machine (bench/kv/index-bench.ts). With chunks an insert moves at most
// 1,024 references after a binary search over the chunks: 53,000-123,000 per second at a
// million keys. A range walks the chunks it spans. Pure and deterministic like the rest of
// the state machine.

/** A chunk that grows past this is split in two (tests use small values to force splits). */
const DEFAULT_CHUNK_MAX = 1024;

/** A place in the order: chunk `c`, offset `i`; `c === chunks.length` is the end. */
interface Cursor {
  readonly c: number;
  readonly i: number;
}

export class SortedKeys {
  /**
   * Invariant: every chunk is non-empty, sorted, without duplicates,
   * at most chunkMax long, and the last key of chunk c is below the first key of chunk c + 1.
   */
  private chunks: string[][] = [];
  private total = 0;

  constructor(private readonly chunkMax = DEFAULT_CHUNK_MAX) {
    if (!Number.isSafeInteger(chunkMax) || chunkMax < 2)
      throw new RangeError('chunkMax must be >= 2');
  }

  /** Builds the index from keys already sorted ascending without duplicates (not checked). */
  static fromSorted(keys: readonly string[], chunkMax = DEFAULT_CHUNK_MAX): SortedKeys {
    const out = new SortedKeys(chunkMax);
    const half = chunkMax >> 1;
    for (let i = 0; i < keys.length; i += half) out.chunks.push(keys.slice(i, i + half));
    out.total = keys.length;
    return out;
  }

  /**
   * Builds the index from `keys`, without duplicates, sorting them (in place) only when they are
   * not in order already: a snapshot's arrive in order, and sorting them again took longer than
   * reading them.
   */
  static fromKeys(keys: string[], chunkMax = DEFAULT_CHUNK_MAX): SortedKeys {
    return SortedKeys.fromSorted(ascending(keys) ? keys : keys.sort(), chunkMax);
  }

  get size(): number {
    return this.total;
  }

  /** Adds `key`, which must not be present. */
  insert(key: string): void {
    if (this.chunks.length === 0) {
      this.chunks.push([key]);
      this.total = 1;
      return;
    }
    // The first chunk whose last key is >= key, or the last chunk when key is the largest.
    const c = Math.min(this.chunkFor(key), this.chunks.length - 1);
    const chunk = this.chunks[c] as string[];
    chunk.splice(lowerBound(chunk, key), 0, key);
    this.total++;
    if (chunk.length > this.chunkMax) {
      const half = chunk.length >> 1;
      this.chunks.splice(c, 1, chunk.slice(0, half), chunk.slice(half));
    }
  }

  /** Removes `key`; returns whether it was present. */
  remove(key: string): boolean {
    const at = this.lowerBound(key);
    const chunk = this.chunks[at.c];
    if (chunk === undefined || chunk[at.i] !== key) return false;
    chunk.splice(at.i, 1);
    this.total--;
    if (chunk.length === 0) this.chunks.splice(at.c, 1);
    return true;
  }

  /** How many keys lie in [from, to); `to` null means to the end. */
  count(from: string, to: string | null): number {
    const [lo, hi] = this.bounds(from, to);
    return this.distance(lo, hi);
  }

  /** The first `limit` keys in [from, to) (all of them when limit is 0), and how many there are. */
  scan(from: string, to: string | null, limit: number): { keys: string[]; count: number } {
    const [lo, hi] = this.bounds(from, to);
    const count = this.distance(lo, hi);
    const n = limit > 0 ? Math.min(limit, count) : count;
    const keys: string[] = [];
    for (let c = lo.c, i = lo.i; keys.length < n; c++, i = 0) {
      const chunk = this.chunks[c] as string[];
      const end = Math.min(chunk.length, i + n - keys.length);
      for (; i < end; i++) keys.push(chunk[i] as string);
    }
    return { keys, count };
  }

  /**
   * Calls `visit` with each key in [from, to) in order until it answers false; allocates
   * nothing, so a caller can stop early in a range of millions of keys.
   */
  walk(from: string, to: string | null, visit: (key: string) => boolean): void {
    const [lo, hi] = this.bounds(from, to);
    for (let c = lo.c, i = lo.i; c <= hi.c && c < this.chunks.length; c++, i = 0) {
      const chunk = this.chunks[c] as string[];
      const end = c === hi.c ? hi.i : chunk.length;
      for (; i < end; i++) if (!visit(chunk[i] as string)) return;
    }
  }

  /** Removes every key in [from, to) and returns them in order. */
  removeRange(from: string, to: string | null): string[] {
    const [lo, hi] = this.bounds(from, to);
    if (lo.c === hi.c) {
      const chunk = this.chunks[lo.c];
      if (chunk === undefined || hi.i <= lo.i) return [];
      const removed = chunk.splice(lo.i, hi.i - lo.i);
      this.afterRemoval(removed.length, lo.c, lo.c);
      return removed;
    }
    const removed = (this.chunks[lo.c] as string[]).splice(lo.i);
    for (let c = lo.c + 1; c < hi.c; c++)
      for (const key of this.chunks[c] as string[]) removed.push(key);
    const last = this.chunks[hi.c];
    if (last !== undefined) for (const key of last.splice(0, hi.i)) removed.push(key);
    // Chunks strictly between the two ends are now unreferenced: drop them.
    this.chunks.splice(lo.c + 1, hi.c - lo.c - 1);
    this.afterRemoval(removed.length, lo.c, lo.c + 1);
    return removed;
  }

  /** Up to `limit` keys above `after` (null: from the first), in order. */
  keysAfter(after: string | null, limit: number): string[] {
    let { c, i } = after === null ? { c: 0, i: 0 } : this.lowerBound(after);
    if (after !== null && this.chunks[c]?.[i] === after) i++;
    const keys: string[] = [];
    for (; c < this.chunks.length && keys.length < limit; c++, i = 0) {
      const chunk = this.chunks[c] as string[];
      for (; i < chunk.length && keys.length < limit; i++) keys.push(chunk[i] as string);
    }
    return keys;
  }

  /** The key at position `i` in order (0: the first), or undefined outside [0, size). */
  at(i: number): string | undefined {
    if (!Number.isSafeInteger(i) || i < 0 || i >= this.total) return undefined;
    // Walks the chunks' lengths, not the keys: O(chunks).
    let left = i;
    for (const chunk of this.chunks) {
      if (left < chunk.length) return chunk[left];
      left -= chunk.length;
    }
    return undefined;
  }

  /** Every key, in order, in a new array. */
  all(): string[] {
    return this.chunks.flat();
  }

  /** Drops chunks in [first, last] that a removal left empty. */
  private afterRemoval(n: number, first: number, last: number): void {
    this.total -= n;
    for (let c = Math.min(last, this.chunks.length - 1); c >= first; c--) {
      if ((this.chunks[c] as string[]).length === 0) this.chunks.splice(c, 1);
    }
  }

  private bounds(from: string, to: string | null): [Cursor, Cursor] {
    const lo = this.lowerBound(from);
    if (to !== null && to <= from) return [lo, lo];
    const hi = to === null ? { c: this.chunks.length, i: 0 } : this.lowerBound(to);
    return [lo, hi];
  }

  /** Keys from `lo` (inclusive) to `hi` (exclusive); `lo` must not be after `hi`. */
  private distance(lo: Cursor, hi: Cursor): number {
    if (lo.c === hi.c) return hi.i - lo.i;
    let n = (this.chunks[lo.c] as string[]).length - lo.i;
    for (let c = lo.c + 1; c < hi.c; c++) n += (this.chunks[c] as string[]).length;
    return n + hi.i;
  }

  /** The place of the first key >= key. */
  private lowerBound(key: string): Cursor {
    const c = this.chunkFor(key);
    if (c === this.chunks.length) return { c, i: 0 };
    return { c, i: lowerBound(this.chunks[c] as string[], key) };
  }

  /** The first chunk whose last key is >= key; chunks.length if there is none. */
  private chunkFor(key: string): number {
    let lo = 0;
    let hi = this.chunks.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const chunk = this.chunks[mid] as string[];
      if ((chunk[chunk.length - 1] as string) < key) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

/** First position in `sorted` whose key is >= key. */
export function lowerBound(sorted: readonly string[], key: string): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((sorted[mid] as string) < key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Whether `keys` are in strictly ascending order (code units: byte order for latin1). */
function ascending(keys: readonly string[]): boolean {
  for (let i = 1; i < keys.length; i++)
    if ((keys[i - 1] as string) >= (keys[i] as string)) return false;
  return true;
}
