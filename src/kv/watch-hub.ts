// Watches: the key-value store's changes delivered, in revision order, to everyone who asked
// for a key, a range or a prefix. One subscription to the store serves every watcher of a
// node: each revision's changes (made in one apply) are matched once against the watchers,
// single-key watchers by a map lookup, ranges by a byte comparison each. A watch from a past
// revision first replays the store's history (KvStore.changesSince), then follows new
// revisions, in the same synchronous step, so nothing can slip between the two. Changes within
// one revision come in key byte order, replayed or live alike, so a watcher that resumes sees
// exactly what it would have seen.
//
// Delivery is the sink's business (an HTTP stream, a test): the hub never buffers. A sink that
// cannot keep up cancels its watch and tells its client where to resume.

import type { Changes, KeyValue, Range } from './kv-store.js';
import { compareBytes, k as latin1 } from './kv-store.js';
import type { KvStateMachine } from './machine.js';
import { FlotillaError } from '../base/errors.js';

export interface WatchEvent {
  readonly type: 'put' | 'delete';
  /** The key's new version; for a delete, the key and the deleting revision (etcd's shape). */
  readonly kv: KeyValue;
  /** The version the change replaced, when the watch asked for it and there was one. */
  readonly prevKv?: KeyValue;
}

export interface WatchSpec {
  readonly range: Range;
  /** The first revision whose changes to deliver; 0 for the next one made. */
  readonly startRevision: number;
  readonly prevKv: boolean;
}

/** Why the hub ended a watch; the client resumes from `resumeRevision` (not after COMPACTED). */
export type WatchEndCode = 'WATCH_RESET' | 'SHUTTING_DOWN';

export interface WatchSink {
  /** The changes of one revision that match; revisions arrive increasing. */
  events(revision: number, events: readonly WatchEvent[]): void;
  /** The hub ended the watch; nothing more arrives. */
  ended(code: WatchEndCode, message: string, resumeRevision: number): void;
}

export interface Watch {
  readonly id: number;
  /** The first revision this watch delivers (replayed or new). */
  readonly startRevision: number;
  /** Stops delivery; the sink hears nothing more. */
  cancel(): void;
}

interface Watcher {
  readonly id: number;
  readonly spec: WatchSpec;
  readonly sink: WatchSink;
  readonly from: number;
  /** Latin-1 form of a single key, for the by-key map; null for a range. */
  readonly single: string | null;
}

const EMPTY = new Uint8Array(0);

export class WatchHub {
  private nextId = 1;
  private closed = false;
  private readonly byKey = new Map<string, Set<Watcher>>();
  private readonly ranged = new Set<Watcher>();
  /** The last revision published to watchers (every watcher has seen up to here). */
  private seen: number;

  constructor(private readonly kv: KvStateMachine) {
    this.seen = kv.revision();
    kv.onChanges((c) => this.publish(c));
    kv.onRestored(() => this.reset());
    kv.onSplitOff((at) => this.movedFrom(at));
  }

  /** Watchers open now. */
  size(): number {
    let n = this.ranged.size;
    for (const set of this.byKey.values()) n += set.size;
    return n;
  }

  /**
   * Starts a watch: replays the changes since `spec.startRevision` to `sink` at once (throws
   * `COMPACTED` when they are gone), then delivers every new revision's matching changes.
   */
  watch(spec: WatchSpec, sink: WatchSink): Watch {
    // A closed hub delivers nothing more: a watch opened on it would wait for ever.
    if (this.closed) throw new FlotillaError('SHUTTING_DOWN', 'The node is shutting down');
    const current = this.kv.revision();
    const from = spec.startRevision === 0 ? current + 1 : spec.startRevision;
    const replay = from <= current ? this.kv.changesSince(spec.range, from) : [];
    const w: Watcher = {
      id: this.nextId++,
      spec,
      sink,
      from,
      single: spec.range.rangeEnd === null ? latin1(spec.range.key) : null,
    };
    for (const c of replay) {
      const events = this.match(w, c);
      if (events.length > 0) sink.events(c.revision, events);
    }
    this.add(w);
    return { id: w.id, startRevision: from, cancel: () => this.remove(w) };
  }

  /** Ends every watch (the node is closing). */
  close(): void {
    this.closed = true;
    this.endAll('SHUTTING_DOWN', 'The node is shutting down');
  }

  /**
   * Ends every watch with WATCH_RESET and `message`: this node no longer holds the range, and
   * the client resumes each watch where the range is now, from the revision it had reached.
   */
  release(message: string): void {
    this.endAll('WATCH_RESET', message);
  }

  private publish(c: Changes): void {
    this.seen = c.revision;
    // Every write on every member comes here: with nobody watching, it costs nothing more.
    if (this.ranged.size === 0 && this.byKey.size === 0) return;
    const targets = new Set<Watcher>(this.ranged);
    for (const ch of c.changes) {
      const set = this.byKey.get(latin1(ch.kind === 'put' ? ch.kv.key : ch.key));
      if (set !== undefined) for (const w of set) targets.add(w);
    }
    for (const w of targets) {
      if (c.revision < w.from) continue;
      const events = this.match(w, c);
      if (events.length > 0) w.sink.events(c.revision, events);
    }
  }

  /** A snapshot replaced the state: what changed in between is not known change by change. */
  private reset(): void {
    const revision = this.kv.revision();
    this.endAll(
      'WATCH_RESET',
      `This node installed a snapshot at revision ${revision}; resume the watch (from this node or another)`,
    );
    this.seen = revision;
  }

  /**
   * The keys from `at` on moved to a new range (a split): a watch that reaches them would hear
   * nothing of them again here, so it ends, and its client resumes it where those keys are now
   * (the new range continues from the split revision, with the moved keys' history). A watch
   * wholly below `at` goes on.
   */
  private movedFrom(at: Uint8Array): void {
    const message = `The range this watch was served by split at ${JSON.stringify(latin1(at))}: its keys from there on moved to another range; resume the watch`;
    const ended: Watcher[] = [];
    for (const w of this.ranged)
      if (reachesFrom(w.spec.range, at)) {
        this.ranged.delete(w);
        ended.push(w);
      }
    for (const [key, set] of this.byKey)
      for (const w of set)
        if (reachesFrom(w.spec.range, at)) {
          set.delete(w);
          if (set.size === 0) this.byKey.delete(key);
          ended.push(w);
        }
    for (const w of ended) w.sink.ended('WATCH_RESET', message, Math.max(w.from, this.seen + 1));
  }

  private endAll(code: WatchEndCode, message: string): void {
    const all = [...this.ranged];
    for (const set of this.byKey.values()) all.push(...set);
    this.ranged.clear();
    this.byKey.clear();
    for (const w of all) w.sink.ended(code, message, Math.max(w.from, this.seen + 1));
  }

  private match(w: Watcher, c: Changes): WatchEvent[] {
    const out: WatchEvent[] = [];
    for (const ch of c.changes) {
      const key = ch.kind === 'put' ? ch.kv.key : ch.key;
      if (!inRange(key, w.spec.range)) continue;
      const kv: KeyValue =
        ch.kind === 'put'
          ? ch.kv
          : { key, value: EMPTY, createRevision: 0, modRevision: ch.modRevision, version: 0 };
      out.push({
        type: ch.kind,
        kv,
        ...(w.spec.prevKv && ch.prev !== null ? { prevKv: ch.prev } : {}),
      });
    }
    return out;
  }

  private add(w: Watcher): void {
    if (w.single === null) {
      this.ranged.add(w);
      return;
    }
    let set = this.byKey.get(w.single);
    if (set === undefined) this.byKey.set(w.single, (set = new Set()));
    set.add(w);
  }

  private remove(w: Watcher): void {
    if (w.single === null) {
      this.ranged.delete(w);
      return;
    }
    const set = this.byKey.get(w.single);
    set?.delete(w);
    if (set?.size === 0) this.byKey.delete(w.single);
  }
}

function inRange(key: Uint8Array, range: Range): boolean {
  if (range.rangeEnd === null) return compareBytes(key, range.key) === 0;
  if (compareBytes(key, range.key) < 0) return false;
  const end = range.rangeEnd;
  if (end.length === 1 && end[0] === 0) return true;
  return compareBytes(key, end) < 0;
}

/** Whether `r` names any key at or past `at`. */
function reachesFrom(r: Range, at: Uint8Array): boolean {
  const end = r.rangeEnd;
  if (compareBytes(r.key, at) >= 0) return true;
  if (end === null) return false;
  // [0]: every key from r.key on.
  if (end.length === 1 && end[0] === 0) return true;
  return compareBytes(end, at) > 0;
}
