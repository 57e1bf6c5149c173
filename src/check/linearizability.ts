// The linearizability search, generic over a sequential model (model.ts).
//
// Algorithm: Wing & Gong's search for a linearization ("Testing and verifying concurrent
// objects", J. Parallel Distrib. Comput. 1993) with Lowe's memoisation ("Testing for
// linearizability", Concurrency and Computation 2017, §3), as Porcupine applies it. Calls and
// returns form one list in time order. Walking it from the head, a call is a candidate to
// linearize next: if the model accepts it, the operation is "lifted" out of the list (call and
// return) and the walk restarts at the head. Reaching a return means the operation it closes
// was not linearized before its response, so no order extends the current prefix: undo the last
// choice and try the call after it. A (linearized set, model state) pair seen before cannot
// lead anywhere new (what remains depends only on that pair), so each is explored at most once.
//
// The search is iterative (an explicit stack of choices) and bounded by a step count, a
// deadline and the bytes of its memo, answering 'unknown' rather than running on: the problem
// is NP-complete (Gibbons & Korach 1997), and a pathological history must not hang a test run.

import { Xoshiro128 } from '../raft/rng.js';
import type { Model } from './model.js';

export interface TimedOp<Op> {
  readonly op: Op;
  readonly callMs: number;
  /** Infinity for an operation whose outcome is unknown: it may take effect at any later time. */
  readonly returnMs: number;
}

export interface SearchBudget {
  /** Give up once `now()` passes this instant. */
  readonly deadlineMs: number;
  readonly maxSteps: number;
  /** Bytes the memo may hold (bit sets of linearized operations plus bookkeeping). */
  readonly maxMemoBytes: number;
  readonly now: () => number;
}

export type UnknownReason = 'time-budget' | 'step-budget' | 'memory-budget';

export type SearchOutcome =
  | { readonly verdict: 'ok'; readonly steps: number }
  | { readonly verdict: 'unknown'; readonly steps: number; readonly reason: UnknownReason }
  | {
      readonly verdict: 'violation';
      readonly steps: number;
      /** Indexes into the ops, in linearization order: the longest prefix the search found. */
      readonly prefix: readonly number[];
      /** Operations that were candidates at the deepest point, where none could go next. */
      readonly candidates: readonly number[];
      /** model.key of the state after the prefix. */
      readonly stateKey: string;
    };

const NIL = -1;
/** How many steps pass between two looks at the clock. */
const clockStrideSteps = 1024;
/** A rough per-entry cost of a memo entry besides its bit set (Map slot, array, key string). */
const memoOverheadBytes = 48;

/**
 * A doubly linked list of call (2i) and return (2i + 1) entries in time order, with a head
 * sentinel at 2n. Lifting removes an operation's two entries; unlifting in reverse order puts
 * them back (Knuth's dancing links), so backtracking is O(1).
 */
class EntryList {
  readonly head: number;
  readonly next: Int32Array;
  private readonly prev: Int32Array;

  constructor(ops: readonly TimedOp<unknown>[]) {
    const n = ops.length;
    this.head = 2 * n;
    this.next = new Int32Array(2 * n + 1).fill(NIL);
    this.prev = new Int32Array(2 * n + 1).fill(NIL);
    const time = (e: number): number => (e & 1 ? ops[e >> 1]!.returnMs : ops[e >> 1]!.callMs);
    const order = Array.from({ length: 2 * n }, (_, e) => e);
    // Equal times put calls first: operations that touch at an instant count as concurrent,
    // which never invents a violation. Compare with < because Infinity - Infinity is NaN.
    order.sort((a, b) => {
      const ta = time(a);
      const tb = time(b);
      if (ta !== tb) return ta < tb ? -1 : 1;
      return (a & 1) - (b & 1) || a - b;
    });
    let last = this.head;
    for (const e of order) {
      this.next[last] = e;
      this.prev[e] = last;
      last = e;
    }
  }

  lift(call: number): void {
    this.remove(call);
    this.remove(call + 1);
  }

  unlift(call: number): void {
    this.restore(call + 1);
    this.restore(call);
  }

  private remove(e: number): void {
    const p = this.prev[e]!;
    const q = this.next[e]!;
    this.next[p] = q;
    if (q !== NIL) this.prev[q] = p;
  }

  private restore(e: number): void {
    const p = this.prev[e]!;
    const q = this.next[e]!;
    this.next[p] = e;
    if (q !== NIL) this.prev[q] = e;
  }
}

/** A bit set of linearized operations with an incremental 64-bit Zobrist hash. */
class LinearizedSet {
  readonly words: Uint32Array;
  h1 = 0;
  h2 = 0;
  private readonly z: Uint32Array;

  constructor(n: number) {
    this.words = new Uint32Array(Math.ceil(n / 32));
    this.z = new Uint32Array(2 * n);
    const rng = new Xoshiro128(0x5eed);
    for (let i = 0; i < this.z.length; i++) this.z[i] = rng.nextU32();
  }

  toggle(i: number): void {
    this.words[i >>> 5]! ^= 1 << (i & 31);
    this.h1 ^= this.z[2 * i]!;
    this.h2 ^= this.z[2 * i + 1]!;
  }
}

/**
 * The (linearized set, state key) pairs already explored, Lowe §3. Bit sets are copied into one
 * growing arena rather than one array each, which keeps a long search from drowning in garbage
 * collection; the map goes from a 53-bit slice of the Zobrist hash to arena slots.
 */
class Memo {
  private readonly slotsByHash = new Map<number, number[]>();
  private readonly stateKeys: string[] = [];
  private arena: Uint32Array;
  private bytes = 0;

  constructor(
    private readonly wordsPerSet: number,
    private readonly maxBytes: number,
  ) {
    this.arena = new Uint32Array(Math.max(1, wordsPerSet) * 64);
  }

  /** 'new' if the pair was not there (and now is), 'seen' if it was, 'full' if out of room. */
  add(set: LinearizedSet, stateKey: string): 'new' | 'seen' | 'full' {
    const hash = set.h1 * 0x200000 + (set.h2 & 0x1fffff);
    const slots = this.slotsByHash.get(hash);
    // The hash only narrows the search: equality is decided on the bits and the state key, so
    // a collision can cost time but never hide a linearization.
    if (slots?.some((slot) => this.stateKeys[slot] === stateKey && this.sameBits(slot, set))) {
      return 'seen';
    }
    const cost = this.wordsPerSet * 4 + memoOverheadBytes + 2 * stateKey.length;
    if (this.bytes + cost > this.maxBytes) return 'full';
    this.bytes += cost;
    const slot = this.stateKeys.length;
    this.stateKeys.push(stateKey);
    this.store(slot, set.words);
    if (slots) slots.push(slot);
    else this.slotsByHash.set(hash, [slot]);
    return 'new';
  }

  private store(slot: number, words: Uint32Array): void {
    const end = (slot + 1) * this.wordsPerSet;
    if (end > this.arena.length) {
      // Doubling, but never past the budget: the arena must not be what breaks the memory limit.
      const capWords = Math.max(end, Math.floor(this.maxBytes / 4));
      const grown = new Uint32Array(Math.min(Math.max(end, this.arena.length * 2), capWords));
      grown.set(this.arena);
      this.arena = grown;
    }
    this.arena.set(words, slot * this.wordsPerSet);
  }

  private sameBits(slot: number, set: LinearizedSet): boolean {
    const base = slot * this.wordsPerSet;
    const words = set.words;
    for (let i = 0; i < words.length; i++) if (this.arena[base + i] !== words[i]) return false;
    return true;
  }
}

interface Deepest {
  depth: number;
  /** Stack entries below this depth are unchanged since the last record (see recordDeepest). */
  lowWater: number;
  prefix: number[];
  candidates: number[];
  stateKey: string;
}

/**
 * Searches for a linearization of `ops` under `model`. Every op must have callMs <= returnMs.
 * Returns 'ok' with a witness found, 'violation' when no order exists, 'unknown' when the budget
 * ran out first.
 */
export function searchLinearization<State, Op>(
  model: Model<State, Op>,
  ops: readonly TimedOp<Op>[],
  budget: SearchBudget,
): SearchOutcome {
  const list = new EntryList(ops);
  const set = new LinearizedSet(ops.length);
  const memo = new Memo(set.words.length, budget.maxMemoBytes);
  const stackCall = new Int32Array(ops.length);
  const stackState: State[] = [];
  const deepest: Deepest = { depth: -1, lowWater: 0, prefix: [], candidates: [], stateKey: '' };
  let depth = 0;
  let state = model.init();
  let entry = list.next[list.head]!;
  let steps = 0;
  while (list.next[list.head] !== NIL) {
    steps++;
    if (steps > budget.maxSteps) return { verdict: 'unknown', steps, reason: 'step-budget' };
    if (steps % clockStrideSteps === 0 && budget.now() > budget.deadlineMs) {
      return { verdict: 'unknown', steps, reason: 'time-budget' };
    }
    if ((entry & 1) === 0) {
      const i = entry >> 1;
      const result = model.step(state, ops[i]!.op);
      if (result.ok) {
        set.toggle(i);
        const added = memo.add(set, model.key(result.next));
        if (added === 'full') return { verdict: 'unknown', steps, reason: 'memory-budget' };
        if (added === 'new') {
          stackCall[depth] = entry;
          stackState[depth] = state;
          depth++;
          state = result.next;
          list.lift(entry);
          entry = list.next[list.head]!;
          continue;
        }
        set.toggle(i);
      }
      entry = list.next[entry]!;
      continue;
    }
    // A return: the operation it closes cannot be linearized after the current prefix.
    if (depth > deepest.depth)
      recordDeepest(deepest, { list, stackCall, depth, entry }, model.key(state));
    if (depth === 0) return { verdict: 'violation', steps, ...withoutDepth(deepest) };
    depth--;
    if (depth < deepest.lowWater) deepest.lowWater = depth;
    const call = stackCall[depth]!;
    state = stackState[depth]!;
    set.toggle(call >> 1);
    list.unlift(call);
    entry = list.next[call]!;
  }
  return { verdict: 'ok', steps };
}

interface DeadEnd {
  readonly list: EntryList;
  readonly stackCall: Int32Array;
  readonly depth: number;
  /** The first return in the list: every entry before it is a call that was tried. */
  readonly entry: number;
}

/**
 * Remembers the deepest dead end for the violation report. Copying the whole prefix each time
 * the record grows would cost O(depth) per backtrack, quadratic over a long history; only the
 * part of the stack that changed since the last record (above lowWater) is copied, so the total
 * cost is bounded by the number of pushes.
 */
function recordDeepest(deepest: Deepest, at: DeadEnd, stateKey: string): void {
  deepest.depth = at.depth;
  deepest.prefix.length = Math.min(deepest.prefix.length, deepest.lowWater);
  for (let d = deepest.prefix.length; d < at.depth; d++) deepest.prefix.push(at.stackCall[d]! >> 1);
  deepest.lowWater = at.depth;
  deepest.candidates = [];
  for (let e = at.list.next[at.list.head]!; e !== at.entry; e = at.list.next[e]!) {
    deepest.candidates.push(e >> 1);
  }
  deepest.stateKey = stateKey;
}

function withoutDepth(d: Deepest): Omit<Deepest, 'depth' | 'lowWater'> {
  return { prefix: d.prefix, candidates: d.candidates, stateKey: d.stateKey };
}
