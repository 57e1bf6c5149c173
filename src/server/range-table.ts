// Which ranges a request's keys lie in, from everything a node knows of the ranges (docs/
// DESIGN.md, "Ranges in a node"): the descriptors of the ranges it runs, as their logs applied
// them; the ranges those split off, as the same logs recorded them (run here or not); and the
// meta group's map, as this node's meta replica applied it (it may lag). A node that does not
// run a range knows it from the map alone.
//
// Sources disagree only by lagging: a range's newest descriptor is the one with the highest
// generation, and two descriptors that overlap are a range before a split and a range the split
// made (ranges never merge), the later one with the higher generation. So for each range the
// newest descriptor is taken, and of two that overlap the newer; what is left does not overlap.
// It may leave a gap (the map has not recorded a split this node has not applied either): the
// caller refreshes what it knows and routes again.

import { FlotillaError } from '../base/errors.js';
import { compareBytes, type Range } from '../kv/kv-store.js';
import type { RangeMap } from '../ranges/range-map.js';
import type { RangeDescriptor, RangeId } from '../ranges/types.js';
import { showRange, spanMeets } from './range-router.js';

export interface RangeKnowledge {
  /** The ranges running here, as their logs applied them. */
  readonly running: readonly RangeDescriptor[];
  /** The ranges the running ones split off, as their logs recorded them. */
  readonly children: readonly RangeDescriptor[];
  /** The meta group's map as this node applied it; null before it is bootstrapped. */
  readonly map: RangeMap | null;
}

/**
 * The newest descriptors of the ranges the spans meet, none overlapping another, in key order.
 * Range 0's own descriptor names no replicas (it never recorded them): the map's are taken.
 */
export function rangesMet(k: RangeKnowledge, spans: readonly Range[]): RangeDescriptor[] {
  // What the node's own logs say, newest per range (a running range over a child record of it).
  const local = new Map<RangeId, RangeDescriptor>();
  for (const d of [...k.running, ...k.children]) {
    const held = local.get(d.id);
    if (held === undefined || d.generation > held.generation) local.set(d.id, d);
  }
  for (const [id, d] of local) {
    const m = k.map?.get(id);
    if (m === undefined) continue;
    if (m.generation > d.generation) local.set(id, m);
    else if (d.replicas.length === 0) local.set(id, { ...d, replicas: m.replicas });
  }
  // Local candidates first, newest first: an older one overlapping a newer one is stale.
  const accepted: RangeDescriptor[] = [];
  const candidates = [...local.values()]
    .filter((d) => meetsAny(spans, d))
    .sort((a, b) => b.generation - a.generation);
  for (const d of candidates) if (!accepted.some((a) => overlaps(a, d))) accepted.push(d);
  // The map's do not overlap one another; each is weighed against the local ones it overlaps.
  if (k.map !== null)
    for (const m of mapMet(k.map, spans)) {
      if (local.has(m.id)) continue; // the newest of that range is decided above
      const clashing = accepted.filter((a) => overlaps(a, m));
      if (clashing.some((a) => a.generation >= m.generation)) continue;
      for (const stale of clashing) accepted.splice(accepted.indexOf(stale), 1);
      accepted.push(m);
    }
  return accepted.sort((a, b) => compareBytes(a.start, b.start));
}

/**
 * The one range every span lies in, among `met` (rangesMet's answer). CROSS_RANGE when they
 * meet more than one; WRONG_RANGE when none is known to hold them (the caller refreshes).
 */
export function oneRange(
  met: readonly RangeDescriptor[],
  spans: readonly Range[],
  what: string,
): RangeDescriptor {
  const first = met[0];
  if (met.length > 1)
    throw new FlotillaError(
      'CROSS_RANGE',
      `The ${what}'s keys lie in ${met.length} ranges (${met.map(showRange).join(', ')}): it must stay within one range` +
        (what === 'range read'
          ? ' (or ask "multiRange": true for a read range by range, each at its own revision, not atomic)'
          : ''),
    );
  if (first === undefined || !spans.every((s) => covers(met, s)))
    throw new FlotillaError(
      'WRONG_RANGE',
      `No range this node knows of holds all the ${what}'s keys yet (a split it has not learned of)`,
    );
  return first;
}

/**
 * Whether `met` (in key order, not overlapping) holds every key of `span`, so a read range by
 * range misses none.
 */
export function covers(met: readonly RangeDescriptor[], span: Range): boolean {
  const single = isSingle(span);
  const parts = met.filter((d) => spanMeets(span, d));
  const first = parts[0];
  if (first === undefined) return false;
  if (single) return true; // it meets a range: that range holds the key
  if (compareBytes(first.start, span.key) > 0) return false;
  for (let i = 1; i < parts.length; i++) {
    const end = (parts[i - 1] as RangeDescriptor).end;
    if (end === null || compareBytes(end, (parts[i] as RangeDescriptor).start) !== 0) return false;
  }
  const last = (parts[parts.length - 1] as RangeDescriptor).end;
  const spanEnd = span.rangeEnd as Uint8Array;
  if (last === null) return true;
  return !isToEnd(spanEnd) && compareBytes(last, spanEnd) >= 0;
}

/** The map's ranges a span list meets (a range met by two spans once). */
function mapMet(map: RangeMap, spans: readonly Range[]): RangeDescriptor[] {
  const out = new Map<RangeId, RangeDescriptor>();
  for (const s of spans) {
    if (isSingle(s)) {
      const d = map.lookup(s.key);
      if (d !== undefined) out.set(d.id, d);
      continue;
    }
    const end = s.rangeEnd as Uint8Array;
    for (const d of map.spanning(s.key, isToEnd(end) ? null : end)) out.set(d.id, d);
  }
  return [...out.values()];
}

function meetsAny(spans: readonly Range[], d: RangeDescriptor): boolean {
  return spans.some((s) => spanMeets(s, d));
}

function overlaps(a: RangeDescriptor, b: RangeDescriptor): boolean {
  const aBeforeB = a.end !== null && compareBytes(a.end, b.start) <= 0;
  const bBeforeA = b.end !== null && compareBytes(b.end, a.start) <= 0;
  return !aBeforeB && !bBeforeA;
}

/** A single key: no end, or an end at or below the key (which names no key but it). */
function isSingle(r: Range): boolean {
  const end = r.rangeEnd;
  return end === null || (!isToEnd(end) && compareBytes(end, r.key) <= 0);
}

/** `[0]`: every key from the start key on (etcd's convention). */
function isToEnd(end: Uint8Array): boolean {
  return end.length === 1 && end[0] === 0;
}
