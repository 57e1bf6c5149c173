// A multi-range read (asked for with "multiRange"; docs/DESIGN.md, "Ranges in a node"): each
// range the interval meets is read in key order, clipped to its bounds, at its own revision,
// through ReadIndex on that range (on a replica of it when it does not run here); not atomic
// across ranges. `limit` counts over all of them, `count` sums theirs. How one range's part is
// read is the caller's (range-kv-path.ts): this file only splits the interval and joins the
// answers.

import type { KvBackend, KvRecord } from '../api/routes.js';
import type { Header, ReadResult } from '../api/requests.js';
import { FlotillaError } from '../base/errors.js';
import type { RangeTarget, RemoteRanges } from './range-remote.js';
import { clipSpan } from './range-router.js';
import { covers, rangesMet } from './range-table.js';

type ReadOp = Parameters<KvBackend['read']>[0];

export interface AcrossReader {
  /** The route to every range, and what this node knows of them. */
  readonly remote: RemoteRanges;
  /** The header of an answer that read no range (range 0's). */
  readonly header: () => Header;
  /** Reads one range's part: here when it runs here, else on a replica of it. */
  readonly readOne: (target: RangeTarget, op: ReadOp) => Promise<ReadResult>;
}

/**
 * Reads `op` range by range. A route found stale (a gap in what this node knows, a part refused
 * WRONG_RANGE or CROSS_RANGE) is refreshed and the read made once more.
 */
export async function readAcross(
  r: AcrossReader,
  op: ReadOp,
  signal: AbortSignal,
): Promise<ReadResult> {
  try {
    return await readAcrossOnce(r, op);
  } catch (err) {
    const code = err instanceof FlotillaError ? err.code : null;
    if (code !== 'WRONG_RANGE' && code !== 'CROSS_RANGE') throw err;
    await r.remote.refresh(null, signal);
    return readAcrossOnce(r, op);
  }
}

async function readAcrossOnce(r: AcrossReader, op: ReadOp): Promise<ReadResult> {
  const met = rangesMet(r.remote.knowledge(), [op.range]);
  if (!covers(met, op.range))
    throw new FlotillaError(
      'WRONG_RANGE',
      'No range this node knows of holds part of the interval yet (a split it has not learned of)',
    );
  const kvs: KvRecord[] = [];
  let count = 0;
  let more = false;
  const ranges: { id: number; revision: number }[] = [];
  let header = r.header();
  for (const d of met) {
    const left = op.limit === 0 ? 0 : op.limit - kvs.length;
    const target = r.remote.targetOf(d);
    const part = await r.readOne(target, {
      ...op,
      // A part read elsewhere is read there range by range too: a split this node has not
      // learned of yet is read where its keys are now.
      multiRange: !target.local,
      range: clipSpan(op.range, d),
      // Past the limit, or past a part that stopped short (at maxRangeBytes), a range is only
      // counted: the keys answered stay a prefix of the interval, read on from the last one.
      countOnly: op.countOnly || (op.limit !== 0 && left === 0) || more,
      limit: left,
    });
    if (ranges.length === 0) header = part.header;
    ranges.push(...(part.ranges ?? [{ id: d.id, revision: part.header.revision }]));
    kvs.push(...part.result.kvs);
    count += part.result.count;
    more ||= part.result.more || (op.limit !== 0 && left === 0 && part.result.count > 0);
  }
  return { header, result: { kind: 'range', kvs, count, more }, ranges };
}
