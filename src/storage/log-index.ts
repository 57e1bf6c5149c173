// The in-memory copy of the log after the snapshot, shared by every backend. It owns the
// log's rules (contiguity, suffix replacement, compaction, snapshot reset) so the WAL, SQLite
// and memory stores cannot disagree about them; the backends only make its changes durable.

import { ownedEntries, type Entry, type HardState, type SnapshotMeta } from '../raft/index.js';
import { invalid } from './errors.js';

const MAX_SAFE = Number.MAX_SAFE_INTEGER;

function isCount(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= MAX_SAFE;
}

export function checkEntryShape(e: Entry): void {
  if (!isCount(e.index) || e.index < 1) throw invalid(`Entry index must be >= 1, got ${e.index}`);
  if (!isCount(e.term) || e.term < 1)
    throw invalid(`Entry ${e.index} has term ${e.term}: terms of entries are >= 1`);
  if (e.type !== 'normal' && e.type !== 'noop' && e.type !== 'conf-change')
    throw invalid(
      `Entry ${e.index} has type ${String(e.type)}: expected normal, noop or conf-change`,
    );
  if (!(e.data instanceof Uint8Array)) throw invalid(`Entry ${e.index} data is not a Uint8Array`);
}

export function checkHardState(hs: HardState, prev: HardState): void {
  if (!isCount(hs.term) || !isCount(hs.vote) || !isCount(hs.commit))
    throw invalid(
      `Hard state fields must be safe non-negative integers, got ${JSON.stringify(hs)}`,
    );
  // A term never goes back and a vote is cast once per term (paper Figure 2): a caller that
  // breaks this is about to vote twice, the classic lost-vote bug, so refuse it here too.
  if (hs.term < prev.term)
    throw invalid(`Cannot save hard state: term ${hs.term} is below the stored term ${prev.term}`);
  if (hs.term === prev.term && prev.vote !== 0 && hs.vote !== prev.vote)
    throw invalid(
      `Cannot save hard state: vote for ${hs.vote} in term ${hs.term}, already voted for ${prev.vote}`,
    );
}

export function checkSnapshotMeta(meta: SnapshotMeta): void {
  if (!isCount(meta.index) || meta.index < 1 || !isCount(meta.term) || meta.term < 1)
    throw invalid(`Snapshot index and term must be >= 1, got ${meta.index}/${meta.term}`);
  if (!Array.isArray(meta.voters) || meta.voters.length > 1024 || !meta.voters.every(isCount))
    throw invalid(`Snapshot voters must be up to 1024 node ids, got ${String(meta.voters)}`);
  for (const k of ['learners', 'outgoing', 'learnersNext'] as const) {
    const ids = meta[k];
    if (ids === undefined) continue;
    if (!Array.isArray(ids) || ids.length > 1024 || !ids.every(isCount))
      throw invalid(`Snapshot ${k} must be up to 1024 node ids, got ${String(ids)}`);
  }
  if (meta.autoLeave !== undefined && typeof meta.autoLeave !== 'boolean')
    throw invalid(`Snapshot autoLeave must be a boolean, got ${String(meta.autoLeave)}`);
}

export type SnapshotOutcome = 'stale' | 'compacted' | 'reset';

/**
 * An append of at least this many entries is kept as a chunk of its own; smaller ones extend
 * the last chunk, so the chunk count stays small for one-entry appends.
 */
const OWN_CHUNK_ENTRIES = 64;

function firstOf(chunk: readonly Entry[]): number {
  return (chunk[0] as Entry).index;
}

export class LogIndex {
  /**
   * The entries after the base, in chunks (one per large append). Pushing thousands of
   * freshly allocated entries one by one into a long-lived array costs a GC write barrier
   * per entry (old array, young objects); copying a batch into a new array of its own does
   * not, and compaction drops whole chunks instead of copying the rest of the log.
   * Invariant: chunks are non-empty and hold baseIndex + 1 .. baseIndex + count in order,
   * contiguous, with terms that never decrease.
   */
  private chunks: Entry[][] = [];
  private count = 0;
  private baseIndex = 0;
  private baseTerm = 0;

  /** Takes ownership of `entries`, which must be contiguous from base.index + 1. */
  constructor(
    base: { index: number; term: number } = { index: 0, term: 0 },
    entries: Entry[] = [],
  ) {
    this.baseIndex = base.index;
    this.baseTerm = base.term;
    if (entries.length > 0) this.chunks.push(entries);
    this.count = entries.length;
  }

  firstIndex(): number {
    return this.baseIndex + 1;
  }

  lastIndex(): number {
    return this.baseIndex + this.count;
  }

  base(): { index: number; term: number } {
    return { index: this.baseIndex, term: this.baseTerm };
  }

  term(index: number): number | undefined {
    if (index === this.baseIndex) return this.baseTerm;
    return this.at(index)?.term;
  }

  private at(index: number): Entry | undefined {
    if (!(index > this.baseIndex && index <= this.lastIndex())) return undefined;
    const chunk = this.chunks[this.chunkOf(index)] as Entry[];
    return chunk[index - firstOf(chunk)];
  }

  /** The position in `chunks` of the chunk holding `index` (which must be in the log). */
  private chunkOf(index: number): number {
    let lo = 0;
    let hi = this.chunks.length - 1;
    // Most lookups are near the end of the log (the last term, the append point).
    if (firstOf(this.chunks[hi] as Entry[]) <= index) return hi;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (firstOf(this.chunks[mid] as Entry[]) <= index) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  entries(lo: number, hiExclusive: number): Entry[] {
    if (!Number.isInteger(lo) || !Number.isInteger(hiExclusive) || lo > hiExclusive)
      throw invalid(`Cannot read entries [${lo}, ${hiExclusive}): not a range`);
    if (lo < this.firstIndex() || hiExclusive > this.lastIndex() + 1)
      throw invalid(
        `Cannot read entries [${lo}, ${hiExclusive}): the log holds [${this.firstIndex()}, ${this.lastIndex() + 1})`,
      );
    const out: Entry[] = [];
    if (lo === hiExclusive) return out;
    for (let k = this.chunkOf(lo); out.length < hiExclusive - lo; k++) {
      const chunk = this.chunks[k] as Entry[];
      const from = Math.max(lo - firstOf(chunk), 0);
      const to = Math.min(hiExclusive - firstOf(chunk), chunk.length);
      for (let i = from; i < to; i++) out.push(chunk[i] as Entry);
    }
    return out;
  }

  /** Every entry after the base, in a new array. */
  all(): Entry[] {
    return this.chunks.flat();
  }

  /** Throws STORAGE_INVALID_ARGUMENT unless `entries` may be appended (nothing changes). */
  checkAppend(entries: readonly Entry[]): void {
    const first = entries[0];
    if (first === undefined) return;
    let prevTerm = this.term(first.index - 1);
    if (first.index < this.firstIndex() || prevTerm === undefined)
      throw invalid(
        `Cannot append at index ${first.index}: the log holds [${this.firstIndex()}, ${this.lastIndex() + 1}) and may only be extended or have its suffix replaced`,
      );
    let expected = first.index;
    for (const e of entries) {
      checkEntryShape(e);
      if (e.index !== expected)
        throw invalid(
          `Cannot append: entries are not contiguous, expected ${expected}, got ${e.index}`,
        );
      if (e.term < prevTerm)
        throw invalid(
          `Cannot append entry ${e.index}: term ${e.term} is below the previous term ${prevTerm}`,
        );
      prevTerm = e.term;
      expected++;
    }
  }

  /** Applies a checked append; returns the index from which the old suffix was replaced, or null. */
  append(entries: readonly Entry[]): number | null {
    const first = entries[0];
    if (first === undefined) return null;
    let replacedFrom: number | null = null;
    if (first.index <= this.lastIndex()) {
      replacedFrom = first.index;
      this.truncateAfter(first.index - 1);
    }
    // The log keeps its entries' own bytes (ownedEntries): the core's log copied what it
    // appended already; entries handed in directly are checked here too.
    const kept = ownedEntries(entries);
    const last = this.chunks[this.chunks.length - 1];
    if (last !== undefined && kept.length < OWN_CHUNK_ENTRIES) for (const e of kept) last.push(e);
    else this.chunks.push(kept);
    this.count += entries.length;
    return replacedFrom;
  }

  /** Drops entries after `index` (base <= index <= lastIndex). */
  truncateAfter(index: number): void {
    if (index < this.baseIndex || index > this.lastIndex())
      throw invalid(
        `Cannot truncate after ${index}: the log holds [${this.firstIndex()}, ${this.lastIndex() + 1})`,
      );
    if (index === this.lastIndex()) return;
    if (index === this.baseIndex) {
      this.chunks = [];
    } else {
      const k = this.chunkOf(index);
      const chunk = this.chunks[k] as Entry[];
      chunk.length = index - firstOf(chunk) + 1;
      this.chunks.length = k + 1;
    }
    this.count = index - this.baseIndex;
  }

  /** Drops entries <= index (index must be within the log). */
  compact(index: number): void {
    if (index <= this.baseIndex) return;
    const term = this.term(index);
    if (term === undefined)
      throw invalid(`Cannot compact through ${index}: the log ends at ${this.lastIndex()}`);
    const k = this.chunkOf(index);
    const chunk = this.chunks[k] as Entry[];
    const rest = chunk.slice(index - firstOf(chunk) + 1);
    const later = this.chunks.slice(k + 1);
    this.chunks = rest.length > 0 ? [rest, ...later] : later;
    this.count = this.lastIndex() - index;
    this.baseIndex = index;
    this.baseTerm = term;
  }

  /** Discards the whole log: it now starts after (index, term). */
  reset(index: number, term: number): void {
    this.chunks = [];
    this.count = 0;
    this.baseIndex = index;
    this.baseTerm = term;
  }

  /** What installing a snapshot does to the log (etcd's raftLog.restore; paper §7). */
  outcomeOf(meta: SnapshotMeta): SnapshotOutcome {
    if (meta.index <= this.baseIndex) return 'stale';
    return this.term(meta.index) === meta.term ? 'compacted' : 'reset';
  }

  applySnapshot(meta: SnapshotMeta): SnapshotOutcome {
    const outcome = this.outcomeOf(meta);
    if (outcome === 'compacted') this.compact(meta.index);
    else if (outcome === 'reset') this.reset(meta.index, meta.term);
    return outcome;
  }
}
