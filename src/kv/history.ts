// The key-value store's past: every version a write replaced or a delete removed, kept until a
// compaction says no reader may ask for it any more (etcd's MVCC, REFERENCES.md). The store
// holds each key's current version; this module holds the rest, so a store that is never read
// in the past pays only for what it has not compacted yet.
//
// For each key with a past, its older versions in modification order, a deletion recorded as a
// tombstone. Which versions a compaction to revision c may drop: of the versions at or below
// c only the newest is still visible (to a read at c), and not even that one if it is a
// tombstone or if the current version is itself at or below c. Versions become droppable in
// the order their successors were written, so a queue of (successor's revision, key) in
// revision order finds them without scanning every key: compaction pops it up to c.
//
// Keys deleted whose past is still visible ("ghosts") sit in their own sorted index, so a
// range at a past revision walks the live keys and the ghosts together in byte order.

import type { KeyValue, StoredKv } from './key-value.js';
import { SortedKeys } from './sorted-keys.js';

/** A key's deletion at `modRevision`: absent from there on. */
export interface Tombstone {
  readonly modRevision: number;
  readonly deleted: true;
}

/** A version the history holds: the store's own record, or a deletion. */
export type Version = StoredKv | Tombstone;

export function isTombstone(v: StoredKv | KeyValue | Tombstone): v is Tombstone {
  return 'deleted' in v;
}

/** What a version counts for in `History.bytes`: its key and value (a tombstone nothing). */
function versionBytes(v: Version): number {
  return isTombstone(v) ? 0 : v.key.length + v.value.length;
}

export class History {
  /** Older versions per key (index-key string), oldest first; never an empty array. */
  private readonly past = new Map<string, Version[]>();
  /** Revisions at which a key's older version was superseded, ascending (a FIFO). */
  private queueRevs: number[] = [];
  private queueKeys: string[] = [];
  /** Bytes of the version each queue entry makes droppable (versionBytes). */
  private queueBytes: number[] = [];
  private queueHead = 0;
  /** Keys absent now but with a visible past: exactly the keys of `past` not live. */
  ghosts = new SortedKeys();
  /**
   * Every key of `past`, in order: a snapshot reads the pasts in key order, and walking the
   * live keys to find the few with a past (most are compacted away) took one pull of the
   * snapshot 100-200 ms at 256,000 keys.
   */
  withPast = new SortedKeys();
  private compactedRev = 0;
  /** Versions held in `past`, all keys together. */
  private held = 0;
  /** Their bytes (versionBytes), all keys together. */
  private heldBytes = 0;
  /** Told before a compaction changes a key's past (a snapshot being read keeps it). */
  beforeChange: ((key: string) => void) | null = null;

  /** The revision the store was last compacted to (0: never); reads below it are refused. */
  compacted(): number {
    return this.compactedRev;
  }

  /** Versions (older than the current one) kept for `key`, oldest first. */
  versionsOf(key: string): readonly Version[] | undefined {
    return this.past.get(key);
  }

  /** Keys with a past, for snapshots: every key of `past`. */
  keysWithPast(): IterableIterator<string> {
    return this.past.keys();
  }

  /** How many keys have a past. */
  keysWithPastCount(): number {
    return this.past.size;
  }

  /** Records that `prev`, the current version of `key`, is replaced at revision `rev`. */
  superseded(key: string, prev: StoredKv, rev: number): void {
    this.push(key, prev);
    this.enqueue(rev, key, versionBytes(prev));
  }

  /** Records `key`'s deletion at `rev`: its current version `prev` is replaced by a tombstone. */
  deleted(key: string, prev: StoredKv, rev: number): void {
    this.push(key, prev);
    this.push(key, { modRevision: rev, deleted: true });
    this.enqueue(rev, key, versionBytes(prev));
    this.ghosts.insert(key);
  }

  /** A deleted key written again: it is live, no longer a ghost. */
  revived(key: string): void {
    if (this.past.has(key)) this.ghosts.remove(key);
  }

  /**
   * The version of `key` visible at `rev`, given its current version `live` (undefined when
   * the key is absent now); undefined when absent at `rev`.
   */
  at(key: string, live: StoredKv | undefined, rev: number): StoredKv | undefined {
    if (live !== undefined && live.modRevision <= rev) return live;
    const versions = this.past.get(key);
    if (versions === undefined) return undefined;
    for (let i = versions.length - 1; i >= 0; i--) {
      const v = versions[i] as Version;
      if (v.modRevision <= rev) return isTombstone(v) ? undefined : v;
    }
    return undefined;
  }

  /**
   * Forgets every version no read at `rev` or later can see. `current(key)` is the key's
   * current version. The caller checks `rev` against the store's revision.
   */
  compact(rev: number, current: (key: string) => StoredKv | undefined): void {
    if (rev <= this.compactedRev) return;
    this.compactedRev = rev;
    while (this.queueHead < this.queueRevs.length) {
      if ((this.queueRevs[this.queueHead] as number) > rev) break;
      const key = this.queueKeys[this.queueHead] as string;
      this.queueHead++;
      this.trim(key, rev, current(key));
    }
    // Reclaim the popped part of the queue now and then, not on every compaction.
    if (this.queueHead > 4096 && this.queueHead * 2 > this.queueRevs.length) {
      this.queueRevs = this.queueRevs.slice(this.queueHead);
      this.queueKeys = this.queueKeys.slice(this.queueHead);
      this.queueBytes = this.queueBytes.slice(this.queueHead);
      this.queueHead = 0;
    }
  }

  /** Versions held (for metrics and tests): older versions and tombstones of every key. */
  size(): number {
    return this.held;
  }

  /** Bytes of keys and values the versions held take (tombstones count nothing). */
  bytes(): number {
    return this.heldBytes;
  }

  /**
   * The lowest revision a compaction to which leaves at most `maxBytes` of history, or null
   * when the history is that small already. Versions become droppable in the order their
   * successors were written (the queue), so this walks the queue from its head adding up what
   * each entry frees: O(entries to drop). An entry whose key a split moved away counts bytes
   * no longer held here, so the revision found may leave more than `maxBytes`: the next look
   * goes on from there.
   */
  revisionToFit(maxBytes: number): number | null {
    if (this.heldBytes <= maxBytes) return null;
    let freed = 0;
    for (let i = this.queueHead; i < this.queueRevs.length; i++) {
      freed += this.queueBytes[i] as number;
      // A compaction to this entry's revision drops it and every entry before it (and any
      // after it of the same revision, which only frees more).
      if (this.heldBytes - freed <= maxBytes) return this.queueRevs[i] as number;
    }
    return this.queueRevs.length > this.queueHead
      ? (this.queueRevs[this.queueRevs.length - 1] as number)
      : null;
  }

  /**
   * Replaces everything with a snapshot's past: each key's older versions (any key order),
   * the compacted revision, and each key's current version.
   */
  restore(
    pasts: Iterable<[string, Version[]]>,
    compacted: number,
    current: (key: string) => StoredKv | undefined,
  ): void {
    this.past.clear();
    this.held = 0;
    this.heldBytes = 0;
    this.compactedRev = compacted;
    const queue: [number, string, number][] = [];
    const ghosts: string[] = [];
    for (const [key, versions] of pasts) {
      if (versions.length === 0) continue;
      this.past.set(key, versions);
      this.held += versions.length;
      const live = current(key);
      // Each version was superseded by the next, the last by the current version, or, when
      // the key is absent now, the last is the tombstone, superseded by nothing after it.
      for (let i = 0; i < versions.length; i++) {
        const v = versions[i] as Version;
        this.heldBytes += versionBytes(v);
        queue.push([
          versions[i + 1]?.modRevision ?? live?.modRevision ?? v.modRevision,
          key,
          versionBytes(v),
        ]);
      }
      if (live === undefined) ghosts.push(key);
    }
    queue.sort((a, b) => a[0] - b[0]);
    this.queueRevs = queue.map((q) => q[0]);
    this.queueKeys = queue.map((q) => q[1]);
    this.queueBytes = queue.map((q) => q[2]);
    this.queueHead = 0;
    this.ghosts = SortedKeys.fromKeys(ghosts);
    this.withPast = SortedKeys.fromKeys([...this.past.keys()]);
  }

  /**
   * Removes the past of every key from `from` on (a range split: those keys now belong to
   * another range) and returns it, in key order. O(keys moved): the queue keeps their entries,
   * which a compaction then finds without a past and skips.
   */
  splitOff(from: string): [string, Version[]][] {
    const moved: [string, Version[]][] = [];
    for (const key of this.withPast.removeRange(from, null)) {
      const versions = this.past.get(key) as Version[];
      this.beforeChange?.(key);
      this.past.delete(key);
      this.held -= versions.length;
      for (const v of versions) this.heldBytes -= versionBytes(v);
      moved.push([key, versions]);
    }
    this.ghosts.removeRange(from, null);
    return moved;
  }

  private push(key: string, v: Version): void {
    this.held++;
    this.heldBytes += versionBytes(v);
    const versions = this.past.get(key);
    if (versions === undefined) {
      this.past.set(key, [v]);
      this.withPast.insert(key);
    } else versions.push(v);
  }

  private enqueue(rev: number, key: string, bytes: number): void {
    this.queueRevs.push(rev);
    this.queueKeys.push(key);
    this.queueBytes.push(bytes);
  }

  /** Drops `key`'s versions that no read at `rev` or later sees. */
  private trim(key: string, rev: number, live: StoredKv | undefined): void {
    const versions = this.past.get(key);
    if (versions === undefined) return;
    let keepFrom: number;
    if (live !== undefined && live.modRevision <= rev) keepFrom = versions.length;
    else {
      // The newest version at or below rev stays visible, unless it is a tombstone.
      let newest = -1;
      for (let i = 0; i < versions.length && (versions[i] as Version).modRevision <= rev; i++)
        newest = i;
      keepFrom = newest < 0 ? 0 : isTombstone(versions[newest] as Version) ? newest + 1 : newest;
    }
    if (keepFrom === 0) return;
    this.beforeChange?.(key);
    if (keepFrom >= versions.length) {
      this.held -= versions.length;
      for (const v of versions) this.heldBytes -= versionBytes(v);
      this.past.delete(key);
      this.withPast.remove(key);
      if (live === undefined) this.ghosts.remove(key);
      return;
    }
    // What is left was superseded after rev: its own queue entries bring compaction back.
    for (const v of versions.splice(0, keepFrom)) this.heldBytes -= versionBytes(v);
    this.held -= keepFrom;
  }
}
