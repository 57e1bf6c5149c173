// The model and checker of the simulated-crash property test (wal-sim-crash.test.ts).
//
// The WAL writes records in the order persist() was called and acknowledges in that order,
// so after a crash the store must hold exactly the state after some prefix of the issued
// operations, at least as long as the acknowledged prefix. The one partial state allowed is
// the last operation's entries without its hard state (the hard state record follows them in
// the same write, and a torn write can end between the two); that operation was never
// acknowledged. Every entry present must carry the bytes written for its index and term, so
// an unacknowledged write may be missing but never corrupted.
//
// One more partial state: a suffix replacement that reaches back past the start of the active
// segment opens a new segment whose header names the replacement point, and replay truncates
// the log there before the new entries are read. A crash after that header is durable and
// before the entries are leaves the log cut at the replacement point without them. Raft only
// replaces entries that conflict with a newer leader's, which are uncommitted, so losing them
// early is what the replacement was about to do (docs/STORAGE.md, "Recovery").

import type { Entry, HardState, SnapshotMeta } from '../../src/raft/index.js';
import type { RaftStorage } from '../../src/storage/types.js';
import { entry } from './helpers.js';

export interface Position {
  readonly index: number;
  readonly term: number;
}

/** A log and hard state: the base (compaction point) and the terms of the entries after it. */
export class LogState {
  constructor(
    readonly base: Position,
    readonly terms: readonly number[],
    readonly hs: HardState,
    /** The first index the operation that made this state replaced, if it replaced any. */
    readonly replacedFrom: number | null = null,
  ) {}

  static empty(): LogState {
    return new LogState({ index: 0, term: 0 }, [], { term: 0, vote: 0, commit: 0 });
  }

  last(): number {
    return this.base.index + this.terms.length;
  }

  termAt(index: number): number | undefined {
    if (index === this.base.index) return this.base.term;
    if (index < this.base.index) return undefined;
    return this.terms[index - this.base.index - 1];
  }

  /** The state after appending `entries` (replacing the suffix from the first) and `hs`. */
  append(entries: readonly Entry[], hs: HardState | null): LogState {
    const first = entries[0]?.index ?? this.last() + 1;
    const terms = this.terms.slice(0, first - this.base.index - 1);
    for (const e of entries) terms.push(e.term);
    return new LogState(this.base, terms, hs ?? this.hs, first <= this.last() ? first : null);
  }

  /** This state with the entries from `from` on dropped. */
  truncatedFrom(from: number): LogState {
    return new LogState(this.base, this.terms.slice(0, from - this.base.index - 1), this.hs);
  }

  /** A leader's snapshot replaced the whole log (paper §7). */
  install(meta: Position): LogState {
    return new LogState(meta, [], this.hs);
  }

  describe(): string {
    const runs: string[] = [];
    let k = 0;
    while (k < this.terms.length) {
      let j = k;
      while (j + 1 < this.terms.length && this.terms[j + 1] === this.terms[k]) j++;
      const lo = this.base.index + 1 + k;
      runs.push(`${lo}..${this.base.index + 1 + j}@${this.terms[k]}`);
      k = j + 1;
    }
    return `base ${this.base.index}@${this.base.term} [${runs.join(' ')}] hs ${JSON.stringify(this.hs)}`;
  }
}

/** Payload size of the entry at (index, term): varied, sometimes empty (a no-op). */
export function entryAt(index: number, term: number): Entry {
  return entry(index, term, (index * 37 + term * 11) % 301);
}

export function snapshotData(index: number, term: number): Uint8Array {
  const data = new Uint8Array(16 + (index % 97));
  for (let k = 0; k < data.length; k++) data[k] = (index * 13 + term * 5 + k) & 0xff;
  return data;
}

/** What a reopened store holds. */
export interface Recovered {
  readonly first: number;
  readonly last: number;
  /** The term at first - 1 (the compaction point; 0 when nothing is compacted). */
  readonly baseTerm: number;
  readonly entries: readonly Entry[];
  readonly hs: HardState;
  readonly snapshot: SnapshotMeta | null;
}

export function readRecovered(s: RaftStorage): Recovered {
  const first = s.log.firstIndex();
  const last = s.log.lastIndex();
  return {
    first,
    last,
    baseTerm: s.log.term(first - 1) ?? -1,
    entries: s.log.entries(first, last + 1),
    hs: s.stable.load(),
    snapshot: s.initialState().snapshot,
  };
}

function sameHs(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let k = 0; k < a.length; k++) if (a[k] !== b[k]) return false;
  return true;
}

/** Why `r` is not state `s` (its log, its snapshot), or null when it is. */
function logMismatch(r: Recovered, s: LogState, snapshots: ReadonlySet<string>): string | null {
  if (r.last !== s.last()) return `last index ${r.last}, model ${s.last()}`;
  for (const e of r.entries) {
    const term = s.termAt(e.index);
    if (term === undefined || e.index <= s.base.index)
      return `entry ${e.index} present, model has it compacted`;
    const want = entryAt(e.index, term);
    if (e.term !== term) return `entry ${e.index} has term ${e.term}, model ${term}`;
    if (e.type !== want.type || !sameBytes(e.data, want.data))
      return `entry ${e.index} term ${e.term} has corrupted data (${e.data.length} bytes)`;
  }
  const compactedThrough = r.first - 1;
  const snap = r.snapshot;
  if (snap === null)
    return compactedThrough === 0 ? null : `compacted through ${compactedThrough} with no snapshot`;
  if (!snapshots.has(`${snap.index}@${snap.term}`))
    return `snapshot ${snap.index}@${snap.term} was never saved`;
  if (compactedThrough !== snap.index)
    return `compacted through ${compactedThrough}, snapshot at ${snap.index}`;
  if (s.termAt(snap.index) !== snap.term)
    return `snapshot ${snap.index}@${snap.term} does not match the model's log`;
  return null;
}

/**
 * The index into `states` that `r` matches, or an explanation. `states[k]` is the state after
 * operation k (states[0]: before any); operations up to `acked` were acknowledged.
 */
export function matchRecovered(
  r: Recovered,
  states: readonly LogState[],
  acked: number,
  snapshots: ReadonlySet<string>,
): number | string {
  const why: string[] = [];
  for (let p = states.length - 1; p >= acked; p--) {
    const s = states[p] as LogState;
    const before = states[p - 1];
    const bad = logMismatch(r, s, snapshots);
    const hsOk =
      sameHs(r.hs, s.hs) || (p > acked && before !== undefined && sameHs(r.hs, before.hs));
    if (bad === null && hsOk) return p;
    why.push(`  after op ${p}: ${bad ?? `hard state ${JSON.stringify(r.hs)}`}`);
    if (p > acked && before !== undefined && s.replacedFrom !== null) {
      const cut = before.truncatedFrom(s.replacedFrom);
      const badCut = logMismatch(r, cut, snapshots);
      if (badCut === null && sameHs(r.hs, cut.hs)) return p - 1;
      why.push(
        `  op ${p - 1} cut at ${s.replacedFrom}: ${badCut ?? `hard state ${JSON.stringify(r.hs)}`}`,
      );
    }
  }
  return [
    `recovered log ${r.first}..${r.last}, hs ${JSON.stringify(r.hs)}, snapshot ${r.snapshot === null ? 'none' : `${r.snapshot.index}@${r.snapshot.term}`}`,
    `matches no state from the acknowledged op ${acked} to the last issued ${states.length - 1}:`,
    ...why.slice(0, 8),
  ].join('\n');
}

/** The state a recovered store holds, to continue the model from. */
export function stateOf(r: Recovered): LogState {
  return new LogState(
    { index: r.first - 1, term: r.baseTerm },
    r.entries.map((e) => e.term),
    r.hs,
  );
}
