// Replica moves and drains in a chaos run (docs/TESTING.md, "Moves and drains in the chaos
// suite"):
//
//   move    a nemesis beside the faults (as split is): every few seconds it reads the map, draws
//           a range split off range 0, one of its replicas and a member not holding it, and
//           moves the replica there (`POST /v1/ranges/move`). A refusal (a change of the range
//           already running, no leader, the new replica unreachable) is recorded, never fatal;
//   drain   a nemesis beside them too: it drains a member, holds the drain while the placement
//           loop moves the member's replicas away, then undrains it. A drain still held when the
//           run's time is up is left in force, so that the judge sees the loop finish it;
//   judge   after the faults heal: every live node shows the same map and, for every range split
//           off range 0, exactly the replicas the map names run it (a node moved off that still
//           runs the range, or a replica the map does not name, is a problem), the range has
//           its replica count (`replicasPerRange`, or every member when there are fewer, a
//           forced drain's node not counted) and a drained member holds none; with fewer members
//           not draining than that (the drain blocked: it never takes a replica away), every
//           such member holds the range and a drained one may keep its replica. The placement loop gets a bound to get
//           there; what it still lacks then is a problem.

import { FlotillaClient, FlotillaError } from '../../src/client/index.js';
import type { Rng } from '../../src/raft/index.js';
import type { ChaosCluster } from './cluster.js';
import { mapsOfNodes, type NodeMap } from './ranges.js';
import type { Deadline } from './deadline.js';

/** Ranges 0, 1 and 2 run on every member and are never moved. */
const FIRST_MOVABLE = 3;

export interface MoveRecord {
  readonly range: number;
  readonly from: number;
  readonly to: number;
  readonly startMs: number;
  endMs: number;
  /** `moved`: acknowledged; `refused`: a definite refusal; `unknown`: no answer known. */
  outcome: 'moved' | 'refused' | 'unknown';
  /** The refusal or error, for a move not acknowledged. */
  failure: string | null;
}

export interface DrainRecord {
  readonly node: number;
  readonly startMs: number;
  /** When the undrain was acknowledged; null while (or if) the drain stays in force. */
  undrainedMs: number | null;
  /** Whether the drain was acknowledged; if not, why not. */
  failure: string | null;
}

export interface MoveTiming {
  /** Quiet time between two moves, ms: [min, max). */
  readonly moveQuietMs: readonly [number, number];
  /** How long one move may take before it is abandoned as unknown, ms. */
  readonly moveBoundMs: number;
  /** Quiet time between two drains, ms: [min, max). */
  readonly drainQuietMs: readonly [number, number];
  /** How long a drain is held, ms: [min, max). */
  readonly drainHoldMs: readonly [number, number];
}

export const defaultMoveTiming: MoveTiming = {
  moveQuietMs: [1_000, 4_000],
  moveBoundMs: 30_000,
  drainQuietMs: [2_000, 6_000],
  drainHoldMs: [4_000, 12_000],
};

/** How long the placement loop may take to bring the map and the replicas in line after healing. */
export const PLACEMENT_SETTLE_MS = 60_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

function describe(err: unknown): string {
  const code = err instanceof FlotillaError ? err.code : 'ERROR';
  return `${code}: ${err instanceof Error ? err.message : String(err)}`;
}

/** A client that asks the members in turn, starting at the `k`-th. */
function clientFrom(cluster: ChaosCluster, k: number, timeoutMs: number): FlotillaClient {
  const endpoints = cluster.endpoints();
  const i = k % Math.max(1, endpoints.length);
  return new FlotillaClient({
    endpoints: [...endpoints.slice(i), ...endpoints.slice(0, i)],
    timeoutMs,
    maxAttempts: 2,
  });
}

/** The move nemesis: until its deadline passes, one replica move at a time, each drawn from the seed. */
export class MoveNemesis {
  readonly moves: MoveRecord[] = [];
  private asked = 0;

  constructor(
    private readonly cluster: ChaosCluster,
    private readonly rng: Rng,
    private readonly timing: MoveTiming,
    private readonly now: () => number,
    private readonly log: (line: string) => void,
  ) {}

  async run(until: Deadline): Promise<void> {
    for (let n = 0; n < 10_000 && !until.passed(); n++) {
      const [lo, hi] = this.timing.moveQuietMs;
      const quiet = lo + this.rng.float() * (hi - lo);
      // Drawn whatever the cluster answers, so a seed fixes the draws.
      const pick = [this.rng.float(), this.rng.float(), this.rng.float()] as const;
      await until.sleep(quiet);
      if (until.passed()) break;
      await this.moveOne(pick);
    }
  }

  private async moveOne(pick: readonly [number, number, number]): Promise<void> {
    const client = clientFrom(this.cluster, this.asked++, 5_000);
    try {
      let map;
      try {
        map = await client.ranges();
      } catch (err) {
        this.log(`move: no node answered the map (${describe(err)}); skipped`);
        return;
      }
      const movable = map.ranges.filter((r) => r.id >= FIRST_MOVABLE);
      const range = movable[Math.floor(pick[0] * movable.length)];
      if (range === undefined) {
        this.log('move: no range split off range 0 yet; skipped');
        return;
      }
      const from = range.replicas[Math.floor(pick[1] * range.replicas.length)];
      const free = this.cluster.ids.filter((id) => !range.replicas.includes(id));
      const to = free[Math.floor(pick[2] * free.length)];
      if (from === undefined || to === undefined) {
        this.log(
          `move: range ${range.id} is on every member (${range.replicas.join(',')}); skipped`,
        );
        return;
      }
      const m: MoveRecord = {
        range: range.id,
        from,
        to,
        startMs: this.now(),
        endMs: 0,
        outcome: 'unknown',
        failure: null,
      };
      this.moves.push(m);
      try {
        await client.moveRange(range.id, from, to, {
          signal: AbortSignal.timeout(this.timing.moveBoundMs),
        });
        m.outcome = 'moved';
      } catch (err) {
        m.failure = describe(err);
        const definite = err instanceof FlotillaError && !err.indefinite;
        m.outcome = definite ? 'refused' : 'unknown';
      }
      m.endMs = this.now();
      this.log(
        `move range ${m.range} ${from}->${to}: ${m.outcome}${m.failure ? ` (${m.failure})` : ''}`,
      );
    } finally {
      await client.close();
    }
  }
}

/** The drain nemesis: until its deadline passes, drains one member at a time, holds, undrains it. */
export class DrainNemesis {
  readonly drains: DrainRecord[] = [];
  private asked = 0;

  constructor(
    private readonly cluster: ChaosCluster,
    private readonly rng: Rng,
    private readonly timing: MoveTiming,
    private readonly now: () => number,
    private readonly log: (line: string) => void,
  ) {}

  async run(until: Deadline): Promise<void> {
    for (let n = 0; n < 10_000 && !until.passed(); n++) {
      const [qlo, qhi] = this.timing.drainQuietMs;
      const [hlo, hhi] = this.timing.drainHoldMs;
      const quiet = qlo + this.rng.float() * (qhi - qlo);
      const hold = hlo + this.rng.float() * (hhi - hlo);
      const pick = this.rng.float();
      await until.sleep(quiet);
      if (until.passed()) break;
      const ids = this.cluster.ids;
      const node = ids[Math.floor(pick * ids.length)];
      if (node === undefined) break;
      const d: DrainRecord = { node, startMs: this.now(), undrainedMs: null, failure: null };
      this.drains.push(d);
      d.failure = await this.mark('drain', node);
      this.log(`drain ${node}: ${d.failure ?? 'marked'}`);
      if (d.failure !== null) continue;
      await until.sleep(hold);
      // Time is up while the drain holds: it stays, and the judge checks the loop finished it.
      if (until.passed()) break;
      const undrain = await this.mark('undrain', node);
      if (undrain === null) d.undrainedMs = this.now();
      this.log(`undrain ${node}: ${undrain ?? 'cleared'}`);
    }
  }

  /** Marks or clears `node`, retrying for a while; null when acknowledged, else the failure. */
  private async mark(op: 'drain' | 'undrain', node: number): Promise<string | null> {
    let failure = 'not asked';
    const deadline = this.now() + 15_000;
    for (let tries = 0; tries < 20 && this.now() < deadline; tries++) {
      const client = clientFrom(this.cluster, this.asked++, 5_000);
      try {
        if (op === 'drain') await client.drainNode(node);
        else await client.undrainNode(node);
        return null;
      } catch (err) {
        failure = describe(err);
      } finally {
        await client.close();
      }
      await sleep(500);
    }
    return failure;
  }
}

/**
 * What does not hold of the placement in `maps` (every running node's view, all showing the same
 * map): for every range split off range 0, the nodes that run it are the replicas the map names,
 * it has `min(replicasPerRange, members)` of them (a forced drain's node not counted), none of
 * them draining unless too few members are left (the drain is blocked: every member not
 * draining then holds it), and a leader. Pure, so that its planted-bug tests need no cluster.
 */
export function placementProblems(
  maps: readonly NodeMap[],
  o: {
    readonly members: readonly number[];
    readonly draining: readonly number[];
    /** The drains forced (absent: none). */
    readonly forced?: readonly number[];
    readonly replicasPerRange: number;
  },
): string[] {
  const first = maps[0];
  if (first === undefined) return ['no node is running'];
  const problems: string[] = [];
  const live = new Set(maps.map((m) => m.id));
  const forced = new Set((o.forced ?? []).filter((id) => o.draining.includes(id)));
  const want = Math.min(o.replicasPerRange, o.members.filter((id) => !forced.has(id)).length);
  const notDraining = o.members.filter((id) => !o.draining.includes(id));
  const blocked = notDraining.length < want;
  for (const r of first.map.ranges) {
    if (r.id < FIRST_MOVABLE) continue;
    const replicas = [...r.replicas].sort((a, b) => a - b);
    const runs = maps
      .filter((m) => {
        const v = m.map.ranges.find((x) => x.id === r.id);
        // Not the leader: a node that does not run the range may name the leader it was told
        // of (range-admin.ts, rangeViews); only one that runs it gives its applied index.
        return v !== undefined && v.applied !== null;
      })
      .map((m) => m.id);
    // Only the nodes that answered can be seen running it.
    const named = replicas.filter((id) => live.has(id));
    if (runs.join(',') !== named.join(','))
      problems.push(
        `range ${r.id}: the map names replicas ${replicas.join(',')}, nodes ${runs.join(',') || 'none'} run it`,
      );
    if (replicas.length !== want)
      problems.push(
        `range ${r.id}: ${replicas.length} replicas (${replicas.join(',')}), want ${want}`,
      );
    const drained = replicas.filter((id) => o.draining.includes(id));
    const lacking = notDraining.filter((id) => !replicas.includes(id));
    if (blocked && lacking.length > 0)
      problems.push(`range ${r.id}: members ${lacking.join(',')} lack it while a drain is blocked`);
    if (!blocked && drained.length > 0)
      problems.push(`range ${r.id}: draining nodes ${drained.join(',')} still hold it`);
    const leaders = new Set(
      maps
        .map((m) => m.map.ranges.find((x) => x.id === r.id))
        .filter((v) => v !== undefined && v.applied !== null)
        .map((v) => v?.leader),
    );
    if (leaders.size === 0 || leaders.has(0)) problems.push(`range ${r.id}: no leader yet`);
  }
  return problems;
}

export interface PlacementReport {
  /** The drains in force when judged (as the placement loop reports them). */
  readonly draining: readonly number[] | null;
  /** Ranges split off range 0 in the final map. */
  readonly movable: number | null;
  /** How long the placement took to come in line after healing, ms; null if it never did. */
  readonly settledMs: number | null;
}

/**
 * After healing: waits (within `boundMs`) until every live node shows the same map and
 * placementProblems finds nothing; pushes what it found last onto `problems` otherwise.
 */
export async function judgePlacement(
  cluster: ChaosCluster,
  o: { readonly problems: string[]; readonly boundMs: number },
): Promise<PlacementReport> {
  const started = performance.now();
  let seen = ['not asked'];
  let draining: readonly number[] | null = null;
  for (let polls = 0; polls < 10_000 && performance.now() - started < o.boundMs; polls++) {
    const client = clientFrom(cluster, polls, 3_000);
    try {
      const p = await client.placement();
      draining = p.draining;
      const maps = await mapsOfNodes(cluster);
      if (typeof maps === 'string') seen = [maps];
      else if (maps.some((m) => m.map.version !== maps[0]?.map.version))
        seen = [
          `the nodes show different maps (${maps.map((m) => `${m.id}: v${m.map.version}`).join(', ')})`,
        ];
      else {
        seen = placementProblems(maps, {
          members: cluster.ids,
          draining: p.draining,
          forced: p.forced,
          replicasPerRange: p.replicasPerRange,
        });
        if (seen.length === 0)
          return {
            draining,
            movable: maps[0]?.map.ranges.filter((r) => r.id >= FIRST_MOVABLE).length ?? 0,
            settledMs: performance.now() - started,
          };
      }
    } catch (err) {
      seen = [`placement: ${describe(err)}`];
    } finally {
      await client.close();
    }
    await sleep(500);
  }
  o.problems.push(
    `the placement did not come in line within ${o.boundMs} ms: ${seen.slice(0, 4).join('; ')}`,
  );
  return { draining, movable: null, settledMs: null };
}

/** The summary's lines: moves by outcome, drains, the final placement. */
export function formatMoves(
  moves: readonly MoveRecord[] | null,
  drains: readonly DrainRecord[] | null,
  p: PlacementReport | null,
): string[] {
  const parts: string[] = [];
  if (moves !== null) {
    const of = (o: MoveRecord['outcome']) => moves.filter((m) => m.outcome === o).length;
    const refusals = [
      ...new Set(moves.filter((m) => m.failure !== null).map((m) => m.failure?.split(':')[0])),
    ];
    parts.push(
      `moves ${moves.length} (${of('moved')} done, ${of('refused')} refused, ${of('unknown')} unknown` +
        (refusals.length > 0 ? `; ${refusals.join(', ')}` : '') +
        ')',
    );
  }
  if (drains !== null) {
    const failed = drains.filter((d) => d.failure !== null).length;
    parts.push(`drains ${drains.length} (${failed} not acknowledged)`);
  }
  parts.push(
    p === null || p.settledMs === null
      ? 'placement NOT in line'
      : `placement in line after ${(p.settledMs / 1000).toFixed(1)} s: ${p.movable} ranges split off range 0, draining [${(p.draining ?? []).join(',')}]`,
  );
  return [`  moves: ${parts.join('; ')}`];
}
