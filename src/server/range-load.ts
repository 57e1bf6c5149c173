// The load on one range as this node sees it (docs/DESIGN.md, "Automatic splits"): writes and
// reads per second as rates that decay with time, and the keys of the latest writes this node
// proposed, from which a range split for load takes its split key.
//
// Writes per second is the rate at which the range's revision rises as this replica applies
// it: every replica applies every write, so every replica shows about the same figure. Reads
// per second counts the reads this node served, which is a node's own figure (any replica
// serves reads). The written keys are sampled where writes are proposed, on the range's
// leader, which is also the only node that splits a range by itself.
//
// Nothing here runs on a timer: a rate is brought up to date when it is read or added to.

import type { Clock } from '../host/contracts.js';

/** How quickly a rate forgets: after this long, what came before weighs e^-1 (about 37%). */
export const rateTimeConstantMs = 5_000;
/** Written keys kept per range for a split by load: the keys of the latest writes. */
export const writtenKeysKept = 128;
/**
 * A sampled key keeps at most this many bytes: a prefix of a key sorts at or below it, so it
 * still cuts the sample where the key would, and a range's sample stays small whatever the key
 * limit (128 keys of 64 bytes).
 */
export const writtenKeyBytesKept = 64;

/**
 * Events per second, decaying exponentially with time constant `timeConstantMs`. Events
 * counted since the last update are taken as spread evenly over the time since, so a rate read
 * rarely is as right as one read often: over a gap `dt` with `n` events,
 * `rate = rate·e^(-dt/τ) + (n/dt)·(1 - e^(-dt/τ))`. At a steady rate λ it tends to λ.
 */
export class DecayingRate {
  private rate = 0;
  private pending = 0;
  private lastMs: number;

  constructor(
    private readonly clock: Clock,
    private readonly timeConstantMs = rateTimeConstantMs,
  ) {
    if (!(timeConstantMs > 0))
      throw new RangeError(`A rate's time constant must be positive, got ${timeConstantMs}`);
    this.lastMs = clock.nowMs();
  }

  /** Counts `n` events now. */
  add(n = 1): void {
    this.pending += n;
  }

  /** The rate now, in events per second. */
  perSecond(): number {
    const now = this.clock.nowMs();
    const dt = now - this.lastMs;
    // A clock that went back, or no time passed: events wait for time to pass.
    if (dt <= 0) return this.rate;
    const keep = Math.exp(-dt / this.timeConstantMs);
    this.rate = this.rate * keep + (this.pending / (dt / 1000)) * (1 - keep);
    this.pending = 0;
    this.lastMs = now;
    return this.rate;
  }
}

export interface RangeLoadOptions {
  readonly clock: Clock;
  /** The range's revision as this replica applied it. */
  readonly revision: () => number;
  /**
   * How many snapshots this replica installed (default: none ever): a revision that rose across
   * one was written elsewhere and earlier (a replica moved here, one caught up from behind), not
   * applied here now, and counts as no writes.
   */
  readonly restores?: () => number;
  readonly timeConstantMs?: number;
}

/** One range's load on this node. */
export class RangeLoad {
  private readonly writes: DecayingRate;
  private readonly reads: DecayingRate;
  private lastRevision: number;
  private lastRestores: number;
  /** A ring of the latest written keys (prefixes), `next` the slot written next. */
  private readonly written: Uint8Array[] = [];
  private next = 0;

  constructor(private readonly o: RangeLoadOptions) {
    this.writes = new DecayingRate(o.clock, o.timeConstantMs);
    this.reads = new DecayingRate(o.clock, o.timeConstantMs);
    this.lastRevision = o.revision();
    this.lastRestores = o.restores?.() ?? 0;
  }

  /** A read this node served. */
  read(): void {
    this.reads.add();
  }

  /** A write this node proposed and saw applied, and its first key (sampled). */
  wrote(key: Uint8Array): void {
    const kept = key.slice(0, writtenKeyBytesKept);
    if (this.written.length < writtenKeysKept) this.written.push(kept);
    else this.written[this.next] = kept;
    this.next = (this.next + 1) % writtenKeysKept;
  }

  /** Write transactions applied per second (the rate the revision rises). */
  writesPerSec(): number {
    const revision = this.o.revision();
    const restores = this.o.restores?.() ?? 0;
    // A revision that went back (a snapshot of an older state installed) counts nothing, nor
    // one that a snapshot brought forward: those writes were not applied here now.
    if (restores === this.lastRestores) this.writes.add(Math.max(0, revision - this.lastRevision));
    this.lastRevision = revision;
    this.lastRestores = restores;
    return this.writes.perSecond();
  }

  /** Reads this node served per second. */
  readsPerSec(): number {
    return this.reads.perSecond();
  }

  /** The keys of the latest writes this node proposed (prefixes of them), in no order. */
  writtenKeys(): readonly Uint8Array[] {
    return this.written;
  }

  /** Forgets the written keys: after a split they describe a range that changed. */
  forgetWrittenKeys(): void {
    this.written.length = 0;
    this.next = 0;
  }
}
