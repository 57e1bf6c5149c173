// Routing a key-value request to the range that holds its keys (docs/DESIGN.md, "Ranges"). In
// this first version every member replicates every range, so a node routes from its own
// ranges' descriptors: each range's machine knows its bounds as its log last applied them. A
// node that has not applied a split yet routes to the left range as before; that range's
// leader (which applied it) refuses with WRONG_RANGE, and the node catches up and routes again.
//
// A request whose keys lie in more than one range is refused with CROSS_RANGE: a transaction
// is atomic only within one Raft group, and a read of one range answers at that range's
// revision only.

import { FlotillaError } from '../base/errors.js';
import { compareBytes, type Op, type Range } from '../kv/kv-store.js';
import type { TxnCommand } from '../kv/machine.js';
import type { RangeDescriptor, RangeId } from '../ranges/types.js';

/** Every key interval a transaction names: its compares' keys and its operations' ranges. */
export function spansOfTxn(txn: TxnCommand): Range[] {
  const spans: Range[] = txn.compare.map((c) => ({ key: c.key, rangeEnd: null }));
  const ofOp = (op: Op): Range => (op.kind === 'put' ? { key: op.key, rangeEnd: null } : op.range);
  for (const op of txn.success) spans.push(ofOp(op));
  for (const op of txn.failure) spans.push(ofOp(op));
  return spans;
}

/** What a write is called in a refusal: a put or delete sent alone, else a transaction. */
export function writeName(txn: TxnCommand): 'put' | 'delete' | 'transaction' {
  const [op] = txn.success;
  if (txn.compare.length > 0 || txn.failure.length > 0 || txn.success.length !== 1)
    return 'transaction';
  return op?.kind === 'put' ? 'put' : op?.kind === 'delete' ? 'delete' : 'transaction';
}

/** Whether key interval `r` (the key-value store's convention) meets range `d`. */
export function spanMeets(r: Range, d: RangeDescriptor): boolean {
  const end = r.rangeEnd;
  // A single key, or an end at or below the key (which names no key): the key decides.
  if (end === null || (!isToEnd(end) && compareBytes(end, r.key) <= 0))
    return compareBytes(r.key, d.start) >= 0 && (d.end === null || compareBytes(r.key, d.end) < 0);
  const startsBeforeEnd = d.end === null || compareBytes(r.key, d.end) < 0;
  const endsAfterStart = isToEnd(end) || compareBytes(end, d.start) > 0;
  return startsBeforeEnd && endsAfterStart;
}

/** Interval `r` cut to range `d`'s bounds (which it meets). */
export function clipSpan(r: Range, d: RangeDescriptor): Range {
  const end = r.rangeEnd;
  if (end === null || (!isToEnd(end) && compareBytes(end, r.key) <= 0)) return r;
  const key = compareBytes(r.key, d.start) >= 0 ? r.key : d.start;
  if (d.end === null) return { key, rangeEnd: end };
  if (isToEnd(end) || compareBytes(end, d.end) > 0) return { key, rangeEnd: d.end };
  return { key, rangeEnd: end };
}

/** `[0]`: every key from the start key on (etcd's convention). */
function isToEnd(end: Uint8Array): boolean {
  return end.length === 1 && end[0] === 0;
}

/**
 * The one range every span lies in, among `ranges` (descriptors that do not overlap). Throws
 * CROSS_RANGE when the spans meet more than one, WRONG_RANGE when they meet none (a split
 * applied here whose right-hand range has not started yet).
 */
export function routeSpans(
  ranges: readonly RangeDescriptor[],
  spans: readonly Range[],
  what: string,
): RangeId {
  const met = ranges.filter((d) => spans.some((s) => spanMeets(s, d)));
  const first = met[0];
  if (met.length > 1)
    throw new FlotillaError(
      'CROSS_RANGE',
      `The ${what}'s keys lie in ${met.length} ranges (${met.map(showRange).join(', ')}): it must stay within one range` +
        (what === 'range read'
          ? ' (or ask "multiRange": true for a read range by range, each at its own revision, not atomic)'
          : ''),
    );
  if (first === undefined)
    throw new FlotillaError(
      'WRONG_RANGE',
      `No range on this node holds the ${what}'s keys yet (it runs ${ranges.map(showRange).join(', ')})`,
    );
  return first.id;
}

/** A range for a message: its id and bounds, keys as text when printable, else hex. */
export function showRange(d: RangeDescriptor): string {
  return `${d.id} [${showKey(d.start)}, ${d.end === null ? 'end' : showKey(d.end)})`;
}

function showKey(key: Uint8Array): string {
  if (key.length === 0) return '""';
  if (key.every((b) => b >= 0x20 && b < 0x7f)) return JSON.stringify(String.fromCharCode(...key));
  let hex = '0x';
  for (const b of key) hex += b.toString(16).padStart(2, '0');
  return hex;
}
