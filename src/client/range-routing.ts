// The client's cache of the range map (docs/CLIENT.md, "Range routing"): which range holds a
// request's keys, which node leads that range, and where each node listens. With it, a
// key-value request goes straight to its range's leader instead of to any node, which would
// forward it there (two hops, and a second copy of the body on the network).
//
// The cache is a hint, never the authority: a node routes every request again by its own
// view, so a stale cache costs a hop, not a wrong answer. It is refreshed lazily (on the first
// keyed request), when it is older than `maxAgeMs`, and when an answer shows it stale: an
// answer from another node than the one asked (the request was forwarded), NOT_LEADER naming
// another node, WRONG_RANGE, or a node that could not be reached. Refreshes are single-flight
// (every request that finds the cache stale shares one) and bounded: at most one every
// `minRefreshIntervalMs`, and after a failed one none for a back-off that doubles to
// `maxBackoffMs`. While there is no usable map, requests go to the client's endpoints as
// without routing.
//
// Which range a request's keys lie in mirrors the nodes' rule (src/server/range-router.ts,
// `routeSpans` and `spanMeets`): a single key, or an interval whose end is at or below its key,
// lies where its key does; an interval lies in every range it meets. A request meeting more
// than one range is not routed: any node refuses it (CROSS_RANGE) or serves it range by range.

import { Buffer } from 'node:buffer';
import { prefixEnd } from '../api/requests.js';
import type { RangesResponse } from '../api/types.js';
import { FlotillaError } from '../base/errors.js';
import { RangeMap } from '../ranges/range-map.js';
import type { RangeDescriptor, RangeId } from '../ranges/types.js';
import { sleep } from './util.js';

/** A key interval in the key-value store's convention: rangeEnd null for one key, [0] to the end. */
export interface KeySpan {
  readonly key: Uint8Array;
  readonly rangeEnd: Uint8Array | null;
}

/** The node a request goes to, and what it was chosen from (to learn from its answer). */
export interface RouteTarget {
  readonly range: RangeId;
  readonly node: number;
  readonly url: string;
  /** Whether `node` was the range's leader as the cache knew it (else a replica). */
  readonly leader: boolean;
  /** The cache's fetch count when chosen: a refresh asked for by an older choice is moot. */
  readonly fetch: number;
}

/** What one refresh brings: the map, with the answering node's leaders, and the members. */
export interface RangeMapSnapshot {
  readonly ranges: RangesResponse;
  readonly members: readonly { readonly id: number; readonly client: string }[];
}

export interface RangeRoutingOptions {
  /** Fetches the map (keys in base64) and the members' client URLs; throws when it cannot. */
  readonly fetch: () => Promise<RangeMapSnapshot>;
  readonly now: () => number;
  /** A map older than this is refreshed (in the background: the request does not wait). */
  readonly maxAgeMs: number;
  /** Refreshes are at least this far apart. */
  readonly minRefreshIntervalMs: number;
  /** The longest wait before trying again after failed refreshes (it doubles up to this). */
  readonly maxBackoffMs: number;
  /** A node whose connection failed is not chosen again for this long. */
  readonly downMs: number;
  /** Nodes the client may route to (one connection pool each). */
  readonly maxNodes: number;
}

interface CachedMap {
  readonly map: RangeMap;
  readonly fetchedAt: number;
  /** Counts fetches: a choice made from fetch n is stale once n + 1 arrived. */
  readonly fetch: number;
}

export class RangeRouting {
  private cached: CachedMap | null = null;
  private fetches = 0;
  /** The refresh under way, shared by every request that asks for one. */
  private refreshing: Promise<void> | null = null;
  /** No refresh starts before this (the minimum interval, or the back-off after a failure). */
  private nextRefreshAt = 0;
  private failures = 0;
  /** The leader of each range, from the map and from answers since. */
  private readonly leaders = new Map<RangeId, number>();
  /** Each node's client URL, as the members list it (at most `maxNodes`). */
  private urls = new Map<number, string>();
  /** URL -> until when it is not chosen (its connection failed). */
  private readonly down = new Map<string, number>();
  /** Why the last refresh failed, for tests and tools; null after a success. */
  lastError: FlotillaError | null = null;

  constructor(private readonly o: RangeRoutingOptions) {}

  /** The map's version, or 0 before one was fetched. */
  get version(): number {
    return this.cached?.map.version ?? 0;
  }

  /** How many times a map was fetched. */
  get fetched(): number {
    return this.fetches;
  }

  /** The leader the cache knows for range `id` (0: none). */
  leaderOf(id: RangeId): number {
    return this.leaders.get(id) ?? 0;
  }

  /**
   * Where a request with these key spans goes: its range's leader if known and reachable, else
   * one of its replicas (chosen by `attempt`, so that retries try others), or null (no map yet
   * and none to be had now, the keys meet several ranges, no replica's URL is known). The first
   * call waits for the first map; a map past its age is refreshed without waiting.
   */
  async target(spans: readonly KeySpan[], attempt: number): Promise<RouteTarget | null> {
    if (this.cached === null) await this.refresh();
    else if (this.o.now() - this.cached.fetchedAt > this.o.maxAgeMs) void this.refresh();
    const c = this.cached;
    if (c === null) return null;
    const d = rangeOfSpans(c.map, spans);
    if (d === null) return null;
    const now = this.o.now();
    const usable = (node: number): string | null => {
      const url = this.urls.get(node);
      if (url === undefined) return null;
      const until = this.down.get(url);
      if (until === undefined) return url;
      if (until > now) return null;
      this.down.delete(url);
      return url;
    };
    const leader = this.leaders.get(d.id) ?? 0;
    const leaderUrl = leader > 0 ? usable(leader) : null;
    if (leaderUrl !== null)
      return { range: d.id, node: leader, url: leaderUrl, leader: true, fetch: c.fetch };
    // The leader is unknown or unreachable: a replica (it forwards to the leader), a retry
    // trying the next one.
    const n = d.replicas.length;
    const start = Math.max(0, d.replicas.indexOf(leader)) + attempt;
    for (let i = 0; i < n; i++) {
      const node = d.replicas[(start + i) % n] as number;
      const url = usable(node);
      if (url !== null) return { range: d.id, node, url, leader: node === leader, fetch: c.fetch };
    }
    return null;
  }

  /**
   * A routed request was answered by node `servedBy` (a write's header names its leader; a
   * read's, the replica that served it).
   */
  answered(t: RouteTarget, servedBy: number, o: { readonly write?: boolean } = {}): void {
    if (servedBy <= 0) return;
    if (servedBy === t.node) {
      // A write applied by the replica asked while the leader was unknown (after a timeout,
      // say): it leads. Without this the next write would start again at the first replica,
      // which may be the one that hangs.
      if (o.write === true && !t.leader) this.leaders.set(t.range, servedBy);
      return;
    }
    // Forwarded: the node asked did not lead. The range's leader moved, or the map is stale
    // (a split moved the key to another range, whose leader answered).
    this.leaders.set(t.range, servedBy);
    void this.stale(t);
  }

  /**
   * A routed attempt failed with `e`. Learns what the error says and answers a refresh to wait
   * for before the next attempt (WRONG_RANGE: routing again by the same map would be wrong
   * again), or null.
   */
  failed(t: RouteTarget, e: FlotillaError): Promise<void> | null {
    switch (e.code) {
      case 'WRONG_RANGE':
        this.leaders.delete(t.range);
        return this.staleNow(t);
      case 'NOT_LEADER':
        if (e.leader > 0 && e.leader !== t.node) this.leaders.set(t.range, e.leader);
        else this.leaders.delete(t.range);
        void this.stale(t);
        return null;
      case 'CONNECTION':
        this.down.set(t.url, this.o.now() + this.o.downMs);
        if (this.leaders.get(t.range) === t.node) this.leaders.delete(t.range);
        void this.stale(t);
        return null;
      case 'NO_LEADER':
      case 'TIMEOUT':
      case 'SHUTTING_DOWN':
      case 'LEADERSHIP_LOST':
        // This node may not lead any more: the next attempt asks another replica.
        if (this.leaders.get(t.range) === t.node) this.leaders.delete(t.range);
        void this.stale(t);
        return null;
      default:
        return null;
    }
  }

  /** Refreshes the map unless one arrived since `t` was chosen; resolves when done. */
  private stale(t: RouteTarget): Promise<void> {
    if (this.cached !== null && this.cached.fetch > t.fetch) return Promise.resolve();
    return this.refresh();
  }

  /**
   * As `stale`, but a refresh held back by the minimum interval is waited for rather than
   * skipped (at most that interval): the caller cannot go on with the map it has.
   */
  private async staleNow(t: RouteTarget): Promise<void> {
    if (this.cached !== null && this.cached.fetch > t.fetch) return;
    if (this.refreshing === null) {
      const waitMs = Math.min(this.nextRefreshAt - this.o.now(), this.o.minRefreshIntervalMs);
      if (waitMs > 0) await sleep(waitMs);
      if (this.cached !== null && this.cached.fetch > t.fetch) return;
    }
    await this.refresh();
  }

  /**
   * Fetches the map, once at a time: a caller arriving while a refresh is under way shares it,
   * one arriving before the next refresh is allowed gets the map as it is. Never rejects.
   */
  refresh(): Promise<void> {
    if (this.refreshing !== null) return this.refreshing;
    if (this.o.now() < this.nextRefreshAt) return Promise.resolve();
    const p = this.fetchOnce().finally(() => {
      this.refreshing = null;
    });
    this.refreshing = p;
    return p;
  }

  private async fetchOnce(): Promise<void> {
    try {
      const snap = await this.o.fetch();
      this.install(snap, this.o.now());
      this.failures = 0;
      this.lastError = null;
      this.nextRefreshAt = this.o.now() + this.o.minRefreshIntervalMs;
    } catch (err) {
      this.failures++;
      this.lastError =
        err instanceof FlotillaError
          ? err
          : new FlotillaError('BAD_RESPONSE', `The range map: ${(err as Error).message}`);
      const backoffMs = Math.min(
        this.o.maxBackoffMs,
        this.o.minRefreshIntervalMs * 2 ** Math.min(this.failures, 20),
      );
      this.nextRefreshAt = this.o.now() + backoffMs;
    }
  }

  /** Takes a fetched map; throws BAD_RESPONSE (the cache unchanged) if it is not a valid one. */
  private install(snap: RangeMapSnapshot, now: number): void {
    const map = parseRangeMap(snap.ranges);
    const urls = new Map<number, string>();
    for (const m of snap.members) {
      if (urls.size >= this.o.maxNodes) break;
      const url = clientUrl(m.client);
      if (Number.isSafeInteger(m.id) && m.id > 0 && url !== null) urls.set(m.id, url);
    }
    // An older map (another node's, lagging) must not replace a newer one; its leaders and
    // members are still this moment's news.
    if (this.cached === null || map.version >= this.cached.map.version)
      this.cached = { map, fetchedAt: now, fetch: ++this.fetches };
    else this.cached = { ...this.cached, fetchedAt: now, fetch: ++this.fetches };
    this.urls = urls;
    for (const r of snap.ranges.ranges) {
      if (typeof r.leader === 'number' && r.leader > 0) this.leaders.set(r.id, r.leader);
    }
    // Forget leaders of ranges the map no longer has (merged away, or never were).
    for (const id of [...this.leaders.keys()])
      if (this.cached.map.get(id) === undefined) this.leaders.delete(id);
  }
}

/** The map of a GET /v1/ranges?encoding=base64 answer, checked; BAD_RESPONSE if it is not one. */
export function parseRangeMap(r: RangesResponse): RangeMap {
  const bad = (why: string): FlotillaError =>
    new FlotillaError('BAD_RESPONSE', `The range map is not valid: ${why}`, false);
  if (typeof r !== 'object' || r === null || !Array.isArray(r.ranges))
    throw bad('no list of ranges');
  const list: RangesResponse['ranges'] = r.ranges;
  const descriptors: RangeDescriptor[] = list.map((x, i) => {
    if (typeof x.start !== 'string' || (x.end !== null && typeof x.end !== 'string'))
      throw bad(`range ${i} has no start or end`);
    return {
      id: x.id,
      start: fromBase64(x.start),
      end: x.end === null ? null : fromBase64(x.end),
      generation: x.generation,
      replicas: x.replicas,
    };
  });
  try {
    return RangeMap.fromDescriptors(r.version, descriptors);
  } catch (err) {
    throw bad((err as Error).message);
  }
}

/** A member's client URL without a trailing slash, or null when it is not an http(s) URL. */
function clientUrl(s: unknown): string | null {
  if (typeof s !== 'string') return null;
  try {
    const u = new URL(s);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') return null;
  } catch {
    return null;
  }
  return s.replace(/\/$/, '');
}

function fromBase64(s: string): Uint8Array {
  const b = Buffer.from(s, 'base64');
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/** The one range every span lies in, or null: they meet several (or none, in a broken map). */
export function rangeOfSpans(map: RangeMap, spans: readonly KeySpan[]): RangeDescriptor | null {
  let found: RangeDescriptor | null = null;
  for (const s of spans) {
    const met = rangesOfSpan(map, s);
    for (const d of met) {
      if (found === null) found = d;
      else if (found.id !== d.id) return null;
    }
    if (met.length === 0) return null;
  }
  return found;
}

function rangesOfSpan(map: RangeMap, s: KeySpan): readonly RangeDescriptor[] {
  const end = s.rangeEnd;
  // A single key, or an end at or below the key (which names no key): the key decides.
  if (end === null || (!isToEnd(end) && compareBytes(end, s.key) <= 0)) {
    const d = map.lookup(s.key);
    return d === undefined ? [] : [d];
  }
  return map.spanning(s.key, isToEnd(end) ? null : end);
}

/** `[0]`: every key from the start key on (etcd's convention). */
function isToEnd(end: Uint8Array): boolean {
  return end.length === 1 && end[0] === 0;
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  return Buffer.compare(a, b);
}

/**
 * The key spans of a key-value request body as the client sends it (put, delete, range, txn),
 * or null when it has none the client can tell (a malformed one: the node will say what is
 * wrong with it).
 */
export function spansOfBody(path: string, body: unknown): KeySpan[] | null {
  if (typeof body !== 'object' || body === null) return null;
  const o = body as Record<string, unknown>;
  const enc = o['encoding'] ?? 'utf8';
  if (enc !== 'utf8' && enc !== 'base64') return null;
  switch (path) {
    case '/v1/kv/put': {
      const key = bytesOf(o['key'], enc);
      return key === null ? null : [{ key, rangeEnd: null }];
    }
    case '/v1/kv/delete':
    case '/v1/kv/range': {
      const s = spanOf(o, enc);
      return s === null ? null : [s];
    }
    case '/v1/kv/txn':
      return spansOfTxn(o, enc);
    default:
      return null;
  }
}

function spansOfTxn(o: Record<string, unknown>, enc: 'utf8' | 'base64'): KeySpan[] | null {
  const spans: KeySpan[] = [];
  const compare = o['compare'] ?? [];
  if (!Array.isArray(compare)) return null;
  for (const c of compare as unknown[]) {
    const key = bytesOf((c as Record<string, unknown> | null)?.['key'], enc);
    if (key === null) return null;
    spans.push({ key, rangeEnd: null });
  }
  for (const branch of [o['success'] ?? [], o['failure'] ?? []]) {
    if (!Array.isArray(branch)) return null;
    for (const op of branch as unknown[]) {
      if (typeof op !== 'object' || op === null) return null;
      const r = op as Record<string, unknown>;
      const put = r['put'] as Record<string, unknown> | undefined;
      const inner = (r['delete'] ?? r['range']) as Record<string, unknown> | undefined;
      const s =
        put !== undefined
          ? ((k) => (k === null ? null : { key: k, rangeEnd: null }))(bytesOf(put['key'], enc))
          : typeof inner === 'object' && inner !== null
            ? spanOf(inner, enc)
            : null;
      if (s === null) return null;
      spans.push(s);
    }
  }
  return spans.length === 0 ? null : spans;
}

/** A key interval as the API takes it: `key` with `rangeEnd`, or with `prefix`. */
function spanOf(o: Record<string, unknown>, enc: 'utf8' | 'base64'): KeySpan | null {
  const key = bytesOf(o['key'], enc);
  if (key === null) return null;
  if (o['rangeEnd'] !== undefined) {
    const end = bytesOf(o['rangeEnd'], enc);
    return end === null ? null : { key, rangeEnd: end };
  }
  return { key, rangeEnd: o['prefix'] === true ? prefixEnd(key) : null };
}

function bytesOf(v: unknown, enc: 'utf8' | 'base64'): Uint8Array | null {
  if (typeof v !== 'string') return null;
  const b = Buffer.from(v, enc);
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}
