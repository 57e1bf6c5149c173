// Ranges in a chaos run (docs/TESTING.md, "Ranges in the chaos suite"):
//
//   layout     before the workloads start, range 0 is split so that the register keys fall into
//              N ranges, at register keys evenly spaced in key order, and the run waits until
//              every node shows that map;
//   split      a nemesis beside the faults (as membership is): every few seconds it splits the
//              range holding a register key at that key, a bounded number of times, while nodes
//              are killed, paused, cut off and wiped;
//   judge      after the faults heal: every live node shows the same map, the map covers the key
//              space once (checkRangeMap), every acknowledged split is in it, no node runs a
//              range the map lacks, and every range has a leader and holds the same number of
//              keys on every node that runs it.
//
// Split points are register keys other than the smallest, so every range boundary falls
// between two register keys and every other key of the workloads (`chaos/...` below `r`, `set/`
// above it) stays in the first or the last range. A split is served by the leader of the range
// holding the key; one refused with a code that may pass (no leader, a timeout, a lost
// connection, the map not yet taking it) is retried within its bound, and one still not done
// then is recorded, never fatal: only what the checkers find, or a map the nodes disagree on,
// makes the run an anomaly.

import { FlotillaClient, FlotillaError } from '../../src/client/index.js';
import type { RangesResponse } from '../../src/api/types.js';
import type { Rng } from '../../src/raft/index.js';
import { RangeMap, checkRangeMap } from '../../src/ranges/range-map.js';
import type { RangeDescriptor } from '../../src/ranges/types.js';
import type { ChaosCluster } from './cluster.js';
import type { Deadline } from './deadline.js';

export interface SplitRecord {
  /** Where the range was split: the new range starts at this key. */
  readonly key: string;
  /** `layout` before the workloads, `nemesis` during the run. */
  readonly phase: 'layout' | 'nemesis';
  readonly startMs: number;
  endMs: number;
  /**
   * `split`: acknowledged, with the new range's id (a retry after an attempt whose answer was
   * lost is answered the split that attempt made); `unknown`: the last attempt's outcome is not
   * known; `failed`: refused for good, or never got through.
   */
  outcome: 'split' | 'unknown' | 'failed';
  rightId: number | null;
  /** The last refusal, for a split that did not end acknowledged. */
  failure: string | null;
  /** Refusals met and retried, e.g. "NO_LEADER ×2". */
  readonly refusals: string[];
  /** Whether the final map starts a range at the key (null: the map was not judged). */
  inMap: boolean | null;
}

export interface RangesReport {
  /** Ranges asked for before the workloads (1: none split off). */
  readonly layout: number;
  readonly splits: readonly SplitRecord[];
  /** The final map as every live node showed it, or null if they never agreed. */
  readonly finalVersion: number | null;
  readonly finalRanges: number | null;
  readonly nodesAgreeing: number;
}

export interface SplitTiming {
  /** Quiet time between two splits of the nemesis, ms: [min, max). */
  readonly quietMs: readonly [number, number];
  /** How long one split is retried before it is recorded as not done, ms. */
  readonly boundMs: number;
}

export const defaultSplitTiming: SplitTiming = { quietMs: [1_000, 4_000], boundMs: 15_000 };

/** How long the nodes may take to show the same map, after the layout and after healing. */
const AGREE_MS = 30_000;

/** Refusals after which the same split may succeed later. */
const RETRYABLE = new Set([
  'NOT_LEADER',
  'NO_LEADER',
  'TIMEOUT',
  'REQUEST_TIMEOUT',
  'CONNECTION',
  'FORWARD_FAILED',
  'LEADERSHIP_LOST',
  'PROPOSAL_DROPPED',
  'TRANSFER_IN_PROGRESS',
  'UNCOMMITTED_LIMIT',
  'SHUTTING_DOWN',
  'OVERLOADED',
  'RANGE_MAP_REFUSED',
  'WRONG_RANGE',
  // A change of the range's replicas (a move, or the placement loop trimming a range split off
  // range 0 on more than 3 nodes) holds the range's change lock for a moment.
  'RANGE_CHANGE_IN_PROGRESS',
]);

/** Keys in byte order (the order the ranges follow); register keys are ASCII. */
export function byteOrder(keys: readonly string[]): string[] {
  return [...keys].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * The N-1 keys at which to split so that `keys` fall into `ranges` ranges of nearly equal
 * numbers of keys: the keys at positions K*i/N in byte order, i = 1..N-1.
 */
export function layoutSplitKeys(keys: readonly string[], ranges: number): string[] {
  if (!Number.isInteger(ranges) || ranges < 1)
    throw new RangeError(`ranges must be a positive integer, got ${ranges}`);
  if (ranges > keys.length)
    throw new RangeError(`Cannot spread ${keys.length} register keys over ${ranges} ranges`);
  const sorted = byteOrder(keys);
  return Array.from(
    { length: ranges - 1 },
    (_, i) => sorted[Math.floor(((i + 1) * sorted.length) / ranges)] as string,
  );
}

/** Splits ranges through the cluster's API, recording every attempt's outcome. */
export class Splitter {
  readonly splits: SplitRecord[] = [];
  private attempt = 0;

  constructor(
    private readonly cluster: ChaosCluster,
    private readonly now: () => number,
    private readonly log: (line: string) => void,
    private readonly boundMs: number,
  ) {}

  /** Splits at `key`, retrying refusals that may pass until the bound; never throws. */
  async split(key: string, phase: SplitRecord['phase']): Promise<SplitRecord> {
    const s: SplitRecord = {
      key,
      phase,
      startMs: this.now(),
      endMs: 0,
      outcome: 'failed',
      rightId: null,
      failure: null,
      refusals: [],
      inMap: null,
    };
    this.splits.push(s);
    const deadline = this.now() + this.boundMs;
    let maybeApplied = false;
    for (let tries = 0; tries < 200 && this.now() < deadline; tries++) {
      // A different first node each attempt: one that is down or cut off is not asked again.
      const endpoints = this.cluster.endpoints();
      const k = this.attempt++ % endpoints.length;
      const client = new FlotillaClient({
        endpoints: [...endpoints.slice(k), ...endpoints.slice(0, k)],
        timeoutMs: 5_000,
        maxAttempts: 1,
      });
      try {
        const r = await client.splitRange(key);
        s.outcome = 'split';
        s.rightId = r.right.id;
        break;
      } catch (err) {
        const code = err instanceof FlotillaError ? err.code : 'ERROR';
        const message = err instanceof Error ? err.message : String(err);
        if (!(err instanceof FlotillaError) || err.indefinite) maybeApplied = true;
        s.failure = `${code}: ${message}`;
        if (err instanceof FlotillaError && !RETRYABLE.has(code)) break;
        this.refused(s, code);
        s.outcome = maybeApplied ? 'unknown' : 'failed';
      } finally {
        await client.close();
      }
      await new Promise((r) => setTimeout(r, 300));
    }
    s.endMs = this.now();
    const took = ((s.endMs - s.startMs) / 1000).toFixed(1);
    const refused = s.refusals.length > 0 ? `; refused ${s.refusals.join(', ')}` : '';
    this.log(
      `split at ${key}: ${s.outcome}${s.rightId === null ? '' : ` (range ${s.rightId})`} in ${took} s${refused}` +
        (s.outcome === 'split' ? '' : ` (${s.failure ?? '?'})`),
    );
    return s;
  }

  private refused(s: SplitRecord, code: string): void {
    const prefix = `${code} ×`;
    const i = s.refusals.findIndex((r) => r.startsWith(prefix));
    if (i < 0) s.refusals.push(`${prefix}1`);
    else s.refusals[i] = `${prefix}${Number(s.refusals[i]?.slice(prefix.length)) + 1}`;
  }
}

/**
 * Before the workloads: splits range 0 at every layout key, one after the other, then waits
 * until every node shows a map holding them (and, with `everyNodeRuns`, runs every range: not
 * so on more than `replicasPerRange` nodes, where the placement loop trims them). Throws what went wrong: a run whose layout did
 * not take is not the run asked for.
 */
export async function layOutRanges(
  splitter: Splitter,
  cluster: ChaosCluster,
  keys: readonly string[],
  everyNodeRuns = true,
): Promise<void> {
  for (const key of keys) {
    const s = await splitter.split(key, 'layout');
    if (s.outcome !== 'split')
      throw new Error(`the layout split at ${key} did not take: ${s.outcome} (${s.failure ?? ''})`);
  }
  const seen = await agreedMap(cluster, { wantStarts: keys, timeoutMs: AGREE_MS, everyNodeRuns });
  if (typeof seen === 'string') throw new Error(`after the layout splits: ${seen}`);
}

/**
 * The split nemesis: until its deadline passes, waits a quiet time drawn from the seed, then splits at a
 * register key that starts no range yet, drawn from the seed, at most `max` times.
 */
export class SplitNemesis {
  /** Keys that start a range, or may (a split whose outcome is unknown). */
  private readonly taken: Set<string>;

  constructor(
    private readonly splitter: Splitter,
    private readonly rng: Rng,
    /** Register keys in byte order; the first is never a split point. */
    private readonly keys: readonly string[],
    layout: readonly string[],
    private readonly max: number,
    private readonly timing: SplitTiming,
  ) {
    this.taken = new Set(layout);
  }

  async run(until: Deadline): Promise<void> {
    let done = 0;
    while (done < this.max && !until.passed()) {
      const [lo, hi] = this.timing.quietMs;
      const quiet = lo + this.rng.float() * (hi - lo);
      const pick = this.rng.float();
      await until.sleep(quiet);
      if (until.passed()) break;
      const free = this.keys.slice(1).filter((k) => !this.taken.has(k));
      const key = free[Math.floor(pick * free.length)];
      if (key === undefined) break;
      const s = await this.splitter.split(key, 'nemesis');
      if (s.outcome !== 'failed') this.taken.add(key);
      done++;
    }
  }
}

export interface NodeMap {
  readonly id: number;
  readonly map: RangesResponse;
  /** How many ranges the node runs, by its status (`ranges`). */
  readonly running: number;
}

/** Every running node's map, or a list of the nodes that did not answer. */
export async function mapsOfNodes(cluster: ChaosCluster): Promise<NodeMap[] | string> {
  const ids = cluster.ids.filter((id) => cluster.state(id) === 'running');
  const out: NodeMap[] = [];
  const silent: number[] = [];
  await Promise.all(
    ids.map(async (id) => {
      const c = new FlotillaClient({
        endpoints: [cluster.endpoint(id)],
        timeoutMs: 2_000,
        maxAttempts: 1,
      });
      try {
        const map = await c.ranges();
        out.push({ id, map, running: (await c.status()).ranges ?? 1 });
      } catch {
        silent.push(id);
      } finally {
        await c.close();
      }
    }),
  );
  if (silent.length > 0) return `nodes ${silent.sort((a, b) => a - b).join(',')} did not answer`;
  return out.sort((a, b) => a.id - b.id);
}

/** One node's map as descriptors, keys as bytes. */
function descriptors(m: RangesResponse): RangeDescriptor[] {
  const bytes = (s: string) => new TextEncoder().encode(s);
  return m.ranges.map((r) => ({
    id: r.id,
    start: bytes(r.start),
    end: r.end === null ? null : bytes(r.end),
    generation: r.generation,
    replicas: r.replicas,
  }));
}

function render(m: RangesResponse): string {
  return m.ranges.map((r) => `${r.id}:${r.start}..${r.end ?? ''}@${r.generation}`).join(' ');
}

/**
 * Why the nodes' maps do not (yet) say the same, or null when they do: the same version and
 * ranges on every running node, covering the key space once, starting at every `wantStarts`
 * key, each range run by every node (`everyNodeRuns`) with the same number of keys on every
 * node that runs it.
 */
export function disagreement(
  maps: readonly NodeMap[],
  o: { readonly wantStarts: readonly string[]; readonly everyNodeRuns: boolean },
): string | null {
  const first = maps[0];
  if (first === undefined) return 'no node is running';
  const versions = maps.map((m) => `${m.id}: v${m.map.version}`).join(', ');
  if (maps.some((m) => m.map.version !== first.map.version || render(m.map) !== render(first.map)))
    return `the nodes show different maps (${versions})`;
  let problems: string[];
  try {
    problems = checkRangeMap(RangeMap.fromDescriptors(first.map.version, descriptors(first.map)));
  } catch (err) {
    problems = [(err as Error).message];
  }
  if (problems.length > 0) return `the map is not a tiling: ${problems.slice(0, 3).join('; ')}`;
  const starts = new Set(first.map.ranges.map((r) => r.start));
  const missing = o.wantStarts.filter((k) => !starts.has(k));
  if (missing.length > 0)
    return `the map (${render(first.map)}) lacks the acknowledged splits at ${missing.join(', ')}`;
  // A range that split in its own log and whose halves the meta group never recorded runs on
  // the nodes and is missing from the map (range-admin.ts: the map may lag the ranges).
  const unlisted = maps.filter((m) => m.running > first.map.ranges.length);
  if (o.everyNodeRuns && unlisted.length > 0)
    return `the map lists ${first.map.ranges.length} ranges, nodes run more (${unlisted
      .map((m) => `${m.id}: ${m.running}`)
      .join(', ')})`;
  for (const [i, r] of first.map.ranges.entries()) {
    const views = maps.map((m) => ({ id: m.id, v: m.map.ranges[i] }));
    // A node that runs the range gives its applied index; one that does not may still name the
    // leader it was told of (range-admin.ts, rangeViews), so the leader does not tell them apart.
    const running = views.filter((x) => x.v?.applied !== null && x.v?.applied !== undefined);
    if (o.everyNodeRuns && running.length < views.length)
      return `range ${r.id} is not running on nodes ${views
        .filter((x) => !running.includes(x))
        .map((x) => x.id)
        .join(',')}`;
    if (running.some((x) => x.v?.leader === 0)) return `range ${r.id} has no leader yet`;
    const keys = new Set(running.map((x) => x.v?.keys));
    if (keys.size > 1)
      return `range ${r.id} holds different numbers of keys (${running.map((x) => `${x.id}: ${x.v?.keys}`).join(', ')})`;
  }
  return null;
}

/** Polls the nodes' maps until they agree (the last disagreement seen is returned on timeout). */
async function agreedMap(
  cluster: ChaosCluster,
  o: {
    readonly wantStarts: readonly string[];
    readonly timeoutMs: number;
    readonly everyNodeRuns?: boolean;
  },
): Promise<NodeMap[] | string> {
  const deadline = performance.now() + o.timeoutMs;
  let seen = 'not asked';
  for (let polls = 0; polls < 10_000 && performance.now() < deadline; polls++) {
    const maps = await mapsOfNodes(cluster);
    if (typeof maps !== 'string') {
      const why = disagreement(maps, {
        wantStarts: o.wantStarts,
        everyNodeRuns: o.everyNodeRuns ?? true,
      });
      if (why === null) return maps;
      seen = why;
    } else {
      seen = maps;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  return `not within ${o.timeoutMs} ms: ${seen}`;
}

/**
 * After the faults healed and the cluster settled: the map every live node shows must agree
 * (within AGREE_MS), tile the key space, hold every acknowledged split and, without membership
 * changes (a member added later runs no range split off range 0: DESIGN.md), be run whole by
 * every node with the same keys. Pushes what does not hold onto `problems`.
 */
export async function judgeRanges(
  cluster: ChaosCluster,
  layout: number,
  splits: readonly SplitRecord[],
  o: { readonly everyNodeRuns: boolean; readonly problems: string[] },
): Promise<RangesReport> {
  const acknowledged = splits.filter((s) => s.outcome === 'split').map((s) => s.key);
  const maps = await agreedMap(cluster, {
    wantStarts: acknowledged,
    timeoutMs: AGREE_MS,
    everyNodeRuns: o.everyNodeRuns,
  });
  if (typeof maps === 'string') {
    o.problems.push(`the range maps did not settle after healing: ${maps}`);
    return { layout, splits, finalVersion: null, finalRanges: null, nodesAgreeing: 0 };
  }
  const first = maps[0] as NodeMap;
  const starts = new Set(first.map.ranges.map((r) => r.start));
  for (const s of splits) s.inMap = starts.has(s.key);
  return {
    layout,
    splits,
    finalVersion: first.map.version,
    finalRanges: first.map.ranges.length,
    nodesAgreeing: maps.length,
  };
}

/** The summary's lines: the layout, the nemesis's splits by outcome, the final map. */
export function formatRanges(r: RangesReport): string[] {
  const of = (phase: SplitRecord['phase'], outcome: SplitRecord['outcome']) =>
    r.splits.filter((s) => s.phase === phase && s.outcome === outcome).length;
  const nemesis = r.splits.filter((s) => s.phase === 'nemesis');
  const lines = [
    `  ranges: ${r.layout} at the start; split nemesis: ${nemesis.length} splits ` +
      `(${of('nemesis', 'split')} acknowledged, ` +
      `${of('nemesis', 'unknown')} unknown, ${of('nemesis', 'failed')} not done); final map: ` +
      (r.finalRanges === null
        ? 'NOT AGREED'
        : `${r.finalRanges} ranges, version ${r.finalVersion}, the same on ${r.nodesAgreeing} nodes`),
  ];
  for (const s of nemesis) {
    const refused = s.refusals.length > 0 ? `; refused ${s.refusals.join(', ')}` : '';
    const took = ((s.endMs - s.startMs) / 1000).toFixed(1);
    lines.push(
      `    split at ${s.key}: ${s.outcome}${s.rightId === null ? '' : ` (range ${s.rightId})`} in ${took} s${refused}` +
        (s.outcome === 'failed' || s.outcome === 'unknown' ? ` (${s.failure ?? '?'})` : '') +
        (s.inMap === null || s.outcome === 'split'
          ? ''
          : s.inMap
            ? '; in the map'
            : '; not in the map'),
    );
  }
  return lines;
}
