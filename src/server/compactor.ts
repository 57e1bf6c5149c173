// Automatic compaction of the key-value store's history. The store keeps every version a write
// replaced so a read or a watch can look into the past (src/kv/history.ts); without compaction
// that history grows with every write. As etcd's auto-compactor does, the leader decides, from
// its own clock, which revision may go, and proposes a compaction entry: every replica then
// compacts at the same point of the log, so they never disagree about what a past read sees.
// A node configured differently can only make a different proposal, never a different state.

import type { Clock } from '../host/contracts.js';
import { Periodic } from './periodic.js';

export interface CompactorOptions {
  readonly clock: Clock;
  /** Keep at least this many revisions behind the current one; 0: no such rule. */
  readonly keepRevisions: number;
  /** Keep at least every revision made in this many milliseconds; 0: no such rule. */
  readonly keepMs: number;
  /**
   * Keep at most this many bytes of history, even if the rules above would keep more; 0 (or
   * absent): no such bound. The history is in memory: this bounds it by what it holds, where
   * the rules above bound it by revisions and time, whatever each version weighs.
   */
  readonly keepBytes?: number;
  /** The lowest revision a compaction to which leaves at most `bytes` of history (or null). */
  readonly revisionToFit?: (bytes: number) => number | null;
  /** How often the leader looks; also the granularity of `keepMs`. */
  readonly checkEveryMs: number;
  readonly isLeader: () => boolean;
  readonly revision: () => number;
  readonly compacted: () => number;
  /** Proposes a compaction to `revision` and resolves once it is applied. */
  readonly compact: (revision: number) => Promise<void>;
  readonly onError: (err: unknown) => void;
}

interface Sample {
  readonly timeMs: number;
  readonly revision: number;
}

export class AutoCompactor {
  private readonly periodic: Periodic;
  private inFlight = false;
  /** Revisions seen at each check while leading, oldest first; only what keepMs may need. */
  private samples: Sample[] = [];

  constructor(private readonly o: CompactorOptions) {
    this.periodic = new Periodic(o.clock, o.checkEveryMs, () => this.check());
  }

  get enabled(): boolean {
    return this.o.keepRevisions > 0 || this.o.keepMs > 0 || this.bytesBound() > 0;
  }

  private bytesBound(): number {
    return this.o.revisionToFit === undefined ? 0 : (this.o.keepBytes ?? 0);
  }

  start(): void {
    if (this.enabled) this.periodic.start();
  }

  stop(): void {
    this.periodic.stop();
  }

  /** The revision the rules allow compacting to now, or null for none. */
  target(): number | null {
    const revision = this.o.revision();
    let t = this.keepTarget(revision) ?? 0;
    // The byte bound overrides the keep rules: it may compact past what they would keep.
    const bound = this.bytesBound();
    if (bound > 0) t = Math.max(t, this.o.revisionToFit?.(bound) ?? 0);
    t = Math.min(t, revision);
    return t > this.o.compacted() && t >= 1 ? t : null;
  }

  /** What the keep rules allow (each keeps everything after its revision), or null for nothing. */
  private keepTarget(revision: number): number | null {
    if (this.o.keepRevisions <= 0 && this.o.keepMs <= 0) return null;
    const now = this.o.clock.nowMs();
    const targets: number[] = [];
    if (this.o.keepRevisions > 0) targets.push(revision - this.o.keepRevisions);
    if (this.o.keepMs > 0) {
      // The revision that was current keepMs ago: everything after it is kept.
      let found: number | null = null;
      for (const s of this.samples) if (s.timeMs <= now - this.o.keepMs) found = s.revision;
      if (found === null) return null;
      targets.push(found);
    }
    return Math.min(...targets);
  }

  /** One look: samples the revision and proposes a compaction when the rules allow one. */
  check(): void {
    if (!this.o.isLeader()) {
      // A new leader samples afresh: what it saw when it last led says nothing of the gap.
      this.samples = [];
      return;
    }
    const now = this.o.clock.nowMs();
    this.samples.push({ timeMs: now, revision: this.o.revision() });
    // Keep the newest sample at least keepMs old and everything after it.
    let firstNeeded = 0;
    for (let i = 0; i < this.samples.length; i++)
      if ((this.samples[i] as Sample).timeMs <= now - this.o.keepMs) firstNeeded = i;
    if (firstNeeded > 0) this.samples = this.samples.slice(firstNeeded);
    const target = this.target();
    if (target === null || this.inFlight) return;
    this.inFlight = true;
    this.o.compact(target).then(
      () => {
        this.inFlight = false;
      },
      (err: unknown) => {
        this.inFlight = false;
        this.o.onError(err);
      },
    );
  }
}
