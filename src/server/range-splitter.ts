// Automatic splits (docs/DESIGN.md, "Automatic splits"): on each range's leader, a range that
// grew past `rangeSplitKeys` keys or `rangeSplitBytes` bytes, or whose writes stayed above
// `rangeSplitWritesPerSec` for `rangeSplitLoadWindowMs`, is split through the same path as a
// split asked for over the API (range-admin.ts): an id from the meta group, the split in the
// range's log, both halves recorded in the map.
//
// Where: for size, at the key that halves the range by count (KvStateMachine.middleKey, found
// from the index's chunk lengths without walking the keys); for load, at the key that best
// halves the keys of its latest writes (`loadSplitKey`), and not at all when no key does (one
// hot key: a split would move the load, not share it).
//
// Bounds: one split at a time on a node; a range split (or found unsplittable) is left alone
// for `rangeSplitCooldownMs`, and so is the new range, so that a range still over a threshold
// right after its split (its load rate decays, it does not reset) does not split again at
// once. The cool-down after a split holds on every node, not only the one that split: each
// node watches every range it runs (led or not) and starts a range's cool-down when it sees
// the range appear or its generation change, so the new range's leader, or the next leader of
// either half, waits too. Each look costs a few comparisons per range this node runs and one
// middle-key lookup.
// A split key is checked against the range's bounds before anything is proposed; the range's
// log would refuse one outside them anyway.

import type { Logger } from 'pino';
import type { Clock } from '../host/contracts.js';
import { compareBytes } from '../kv/kv-store.js';
import type { RangeDescriptor, RangeId } from '../ranges/types.js';
import { Periodic } from './periodic.js';
import { split, type RangeAdminOptions } from './range-admin.js';
import type { RangeLanes } from './range-lanes.js';

export interface SplitThresholds {
  /** Split a range holding at least this many keys; 0: never for keys. */
  readonly keys: number;
  /** Split a range holding at least this many bytes of keys and values; 0: never for bytes. */
  readonly bytes: number;
  /** Split a range whose writes per second stay above this; 0: never for load. */
  readonly writesPerSec: number;
  /** How long the writes must stay above `writesPerSec`. */
  readonly loadWindowMs: number;
  /** How long a range split (or found unsplittable) here is left alone, and its new half too. */
  readonly cooldownMs: number;
}

export type SplitReason = 'keys' | 'bytes' | 'load';

/** What the splitter reads of one range this node runs. */
export interface SplitCandidate {
  readonly id: RangeId;
  /** Whether this node leads the range now. */
  leads(): boolean;
  descriptor(): RangeDescriptor;
  keys(): number;
  bytes(): number;
  writesPerSec(): number;
  /** The key that halves the range by count; null below two keys. */
  middleKey(): Uint8Array | null;
  /** The keys of the latest writes this node proposed in the range (prefixes of them). */
  writtenKeys(): readonly Uint8Array[];
}

/** One automatic split, for the log. */
export interface AutoSplit {
  readonly range: RangeId;
  readonly reason: SplitReason;
  readonly key: Uint8Array;
  readonly keys: number;
  readonly bytes: number;
  readonly writesPerSec: number;
}

export interface RangeSplitterOptions {
  readonly clock: Clock;
  readonly checkEveryMs: number;
  readonly thresholds: SplitThresholds;
  /** The ranges this node runs. */
  readonly ranges: () => readonly SplitCandidate[];
  /** Splits range `range` at `key` (range-admin.ts); answers the right half's id. */
  readonly split: (range: RangeId, key: Uint8Array) => Promise<{ readonly right: RangeId }>;
  /** Told of every split started (before) and of how each ended. */
  readonly onSplit: (s: AutoSplit, outcome: { right: RangeId } | { error: Error }) => void;
  /** Told when a range over a threshold is left alone, and why. */
  readonly onSkip: (s: Omit<AutoSplit, 'key'> & { key: Uint8Array | null }, why: string) => void;
  /**
   * Chooses the split key in place of the rules above. Tests use it to plant a wrong choice
   * and show that it is refused before anything is proposed.
   */
  readonly chooseKey?: (c: SplitCandidate, reason: SplitReason) => Uint8Array | null;
}

/** Fewer written keys than this in the range say too little of where its load is. */
export const minWrittenKeysForLoadSplit = 16;

export class RangeSplitter {
  private readonly periodic: Periodic;
  private inFlight = false;
  /** Per range: no automatic split before this time. */
  private readonly quietUntilMs = new Map<RangeId, number>();
  /** Per range led here: since when its writes per second have been above the threshold. */
  private readonly loadAboveSinceMs = new Map<RangeId, number>();
  /**
   * Per range running here: its generation as last seen, and when this node saw it change (or
   * the range appear); -Infinity for what the first look found, which no split here made.
   */
  private readonly changedAtMs = new Map<RangeId, { generation: number; atMs: number }>();
  private looked = false;

  constructor(private readonly o: RangeSplitterOptions) {
    const t = o.thresholds;
    for (const [name, v] of Object.entries(t))
      if (!Number.isFinite(v) || v < 0)
        throw new RangeError(`Split threshold ${name} must be a number >= 0, got ${v}`);
    this.periodic = new Periodic(o.clock, o.checkEveryMs, () => this.check());
  }

  /** Whether any threshold is set (all 0: automatic splits are off). */
  get enabled(): boolean {
    const t = this.o.thresholds;
    return t.keys > 0 || t.bytes > 0 || t.writesPerSec > 0;
  }

  /** Whether a split is being carried out now. */
  get splitting(): boolean {
    return this.inFlight;
  }

  start(): void {
    if (this.enabled) this.periodic.start();
  }

  stop(): void {
    this.periodic.stop();
  }

  /**
   * One look: finds the first range this node leads that is over a threshold and out of its
   * cool-down, and starts its split. Answers the split started, or null.
   */
  check(): AutoSplit | null {
    const now = this.o.clock.nowMs();
    const ranges = this.o.ranges();
    this.forgetGone(ranges);
    let started: AutoSplit | null = null;
    for (const c of ranges) {
      const generation = c.descriptor().generation;
      if (this.changedAtMs.get(c.id)?.generation !== generation)
        this.changedAtMs.set(c.id, { generation, atMs: this.looked ? now : -Infinity });
    }
    this.looked = true;
    for (const c of ranges) {
      if (!c.leads()) {
        // A new leader measures the load afresh.
        this.loadAboveSinceMs.delete(c.id);
        continue;
      }
      const reason = this.reasonOf(c, now);
      if (reason === null || this.inFlight || started !== null) continue;
      if (now < (this.quietUntilMs.get(c.id) ?? 0)) continue;
      // Split, or made by a split, lately (here or by another node): still cooling down.
      if (now - (this.changedAtMs.get(c.id)?.atMs ?? -Infinity) < this.o.thresholds.cooldownMs)
        continue;
      started = this.begin(c, reason, now);
    }
    return started;
  }

  /** Why range `c` should split now, or null (also keeps its load window up to date). */
  private reasonOf(c: SplitCandidate, now: number): SplitReason | null {
    const t = this.o.thresholds;
    let loadHeld = false;
    if (t.writesPerSec > 0) {
      if (c.writesPerSec() > t.writesPerSec) {
        const since = this.loadAboveSinceMs.get(c.id) ?? now;
        this.loadAboveSinceMs.set(c.id, since);
        loadHeld = now - since >= t.loadWindowMs;
      } else this.loadAboveSinceMs.delete(c.id);
    }
    if (t.keys > 0 && c.keys() >= t.keys) return 'keys';
    if (t.bytes > 0 && c.bytes() >= t.bytes) return 'bytes';
    return loadHeld ? 'load' : null;
  }

  private begin(c: SplitCandidate, reason: SplitReason, now: number): AutoSplit | null {
    const figures = {
      range: c.id,
      reason,
      keys: c.keys(),
      bytes: c.bytes(),
      writesPerSec: Math.round(c.writesPerSec() * 10) / 10,
    };
    const desc = c.descriptor();
    const key = this.o.chooseKey?.(c, reason) ?? chooseSplitKey(c, reason);
    // Whatever happens next, this range is left alone for a while: a split storm, or a look
    // every second at a range no key splits, is what the cool-down is for.
    this.quietUntilMs.set(c.id, now + this.o.thresholds.cooldownMs);
    if (key === null) {
      // Too few written keys yet is no verdict: look again at the next check.
      if (reason === 'load' && inBounds(c.writtenKeys(), desc).length < minWrittenKeysForLoadSplit)
        this.quietUntilMs.delete(c.id);
      else this.o.onSkip({ ...figures, key }, noKeyWhy(reason));
      return null;
    }
    const bad = splitKeyProblem(desc, key);
    if (bad !== null) {
      this.o.onSkip({ ...figures, key }, bad);
      return null;
    }
    const s: AutoSplit = { ...figures, key };
    this.inFlight = true;
    this.loadAboveSinceMs.delete(c.id);
    this.o.split(c.id, key).then(
      (r) => {
        this.inFlight = false;
        const until = this.o.clock.nowMs() + this.o.thresholds.cooldownMs;
        this.quietUntilMs.set(c.id, until);
        this.quietUntilMs.set(r.right, until);
        this.o.onSplit(s, { right: r.right });
      },
      (err: unknown) => {
        this.inFlight = false;
        this.o.onSplit(s, { error: err instanceof Error ? err : new Error(String(err)) });
      },
    );
    return s;
  }

  /** Drops what is kept of ranges no longer running here. */
  private forgetGone(ranges: readonly SplitCandidate[]): void {
    const kept = this.quietUntilMs.size + this.loadAboveSinceMs.size + this.changedAtMs.size;
    if (kept <= 3 * ranges.length) return;
    const ids = new Set(ranges.map((c) => c.id));
    for (const m of [this.quietUntilMs, this.loadAboveSinceMs, this.changedAtMs])
      for (const id of [...m.keys()]) if (!ids.has(id)) m.delete(id);
  }
}

function noKeyWhy(reason: SplitReason): string {
  return reason === 'load'
    ? 'no key halves the latest writes: they go to one key, or nearly (a split would move the load, not share it)'
    : 'the range holds fewer than two keys';
}

/** The split key the rules give: the middle by count for size, of the written keys for load. */
export function chooseSplitKey(c: SplitCandidate, reason: SplitReason): Uint8Array | null {
  if (reason !== 'load') return c.middleKey();
  return loadSplitKey(inBounds(c.writtenKeys(), c.descriptor()));
}

/** The keys that lie in range `d`. */
function inBounds(keys: readonly Uint8Array[], d: RangeDescriptor): Uint8Array[] {
  return keys.filter(
    (k) => compareBytes(k, d.start) >= 0 && (d.end === null || compareBytes(k, d.end) < 0),
  );
}

/**
 * The key that best halves `written` (keys, repeats counted): the split key K such that the
 * keys below K and the keys at or above it are nearest in number, K one of the keys. Null when
 * there are fewer than `minWrittenKeysForLoadSplit`, or when even the best K leaves less than a
 * quarter of them on one side (the writes go to one key, or nearly).
 */
export function loadSplitKey(written: readonly Uint8Array[]): Uint8Array | null {
  const n = written.length;
  if (n < minWrittenKeysForLoadSplit) return null;
  const sorted = [...written].sort(compareBytes);
  let best = -1;
  // Candidates: each place where the key changes; `i` keys lie below sorted[i].
  for (let i = 1; i < n; i++) {
    if (compareBytes(sorted[i - 1] as Uint8Array, sorted[i] as Uint8Array) === 0) continue;
    if (best === -1 || Math.abs(2 * i - n) < Math.abs(2 * best - n)) best = i;
  }
  if (best === -1 || Math.min(best, n - best) * 4 < n) return null;
  return sorted[best] as Uint8Array;
}

/** Why `key` cannot split range `d` (it must lie strictly inside it), or null when it can. */
export function splitKeyProblem(d: RangeDescriptor, key: Uint8Array): string | null {
  if (compareBytes(key, d.start) <= 0)
    return "the chosen key is at or below the range's start: nothing would lie before it";
  if (d.end !== null && compareBytes(key, d.end) >= 0)
    return "the chosen key is at or past the range's end: it lies outside the range";
  return null;
}

/** How often a node looks at the ranges it leads. */
export const splitCheckEveryMs = 1_000;

export interface NodeSplitterOptions {
  readonly thresholds: SplitThresholds;
  readonly lanes: RangeLanes;
  /** What a split asked for over the API goes through. */
  readonly admin: RangeAdminOptions;
  /** This node's own credential for the meta group's routes on another node (or none). */
  readonly authorization: string | undefined;
  /** A split's deadline: allocation, the split in the range's log, recording in the map. */
  readonly timeoutMs: number;
  readonly log: Logger;
}

/** The automatic splitter of a node: its ranges, the API's split path and its log lines. */
export function nodeRangeSplitter(o: NodeSplitterOptions): RangeSplitter & Disposable {
  const stop = new AbortController();
  const text = (key: Uint8Array | null) => (key === null ? null : keyForLog(key));
  const splitter = new RangeSplitter({
    clock: o.admin.clock,
    checkEveryMs: splitCheckEveryMs,
    thresholds: o.thresholds,
    ranges: () =>
      o.lanes.all().map((l) => ({
        id: l.id,
        leads: () => l.group.runtime.leaderId() === o.admin.selfId,
        descriptor: () => l.group.range.descriptor(),
        keys: () => l.group.range.kv.keyCount(),
        bytes: () => l.group.range.kv.bytes(),
        writesPerSec: () => l.load.writesPerSec(),
        middleKey: () => l.group.range.kv.middleKey(),
        writtenKeys: () => l.load.writtenKeys(),
      })),
    split: async (range, key) => {
      const signal = AbortSignal.any([stop.signal, AbortSignal.timeout(o.timeoutMs)]);
      const r = await split(o.admin, key, {
        replicas: null,
        signal,
        authorization: o.authorization,
      });
      // The left half's load was measured before it lost half its keys.
      o.lanes.lane(range)?.load.forgetWrittenKeys();
      return { right: r.right.id };
    },
    onSplit: (s, outcome) => {
      const at = {
        range: s.range,
        reason: s.reason,
        key: text(s.key),
        keys: s.keys,
        bytes: s.bytes,
      };
      if ('right' in outcome)
        o.log.info(
          { ...at, writesPerSec: s.writesPerSec, right: outcome.right },
          'automatic split: the range split in two',
        );
      else
        o.log.warn(
          { ...at, err: outcome.error.message },
          'automatic split failed; the range is left alone for the cool-down, then looked at again',
        );
    },
    onSkip: (s, why) =>
      o.log.info(
        { range: s.range, reason: s.reason, key: text(s.key), keys: s.keys, why },
        'automatic split: the range is over a threshold but was not split',
      ),
  });
  return Object.assign(splitter, {
    [Symbol.dispose]: () => {
      splitter.stop();
      stop.abort();
    },
  });
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** A key in a log line: its text when it is UTF-8, else `base64:` and its base64. */
function keyForLog(key: Uint8Array): string {
  try {
    return strictUtf8.decode(key);
  } catch {
    return `base64:${Buffer.from(key).toString('base64')}`;
  }
}
