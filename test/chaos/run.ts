// One chaos run: start a real cluster behind link proxies, drive the workloads while the
// nemesis injects faults, heal everything, let the cluster converge, read the set from every
// node, and check both histories. Every phase is bounded in time; the cluster is always torn
// down, whatever happens.

import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  checkHistory,
  checkSet,
  formatResult,
  writeHistory,
  type CheckResult,
  type FinalRead,
  type Operation,
  type SetHistory,
  type SetReport,
  type LockReport,
  type QueueCheckReport,
  type QueueOp,
  type WatchReport,
} from '../../src/check/index.js';
import { FlotillaClient } from '../../src/client/index.js';
import { createRng, type Rng } from '../../src/raft/index.js';
import { ChaosCluster, type UnsafeMode } from './cluster.js';
import { Nemesis, defaultTiming, type FaultRecord, type NemesisKind } from './nemesis.js';
import type { MembershipChange } from './nemesis-membership.js';
import {
  RegisterWorkload,
  SET_PREFIX,
  SetWorkload,
  defaultClientTiming,
  registerKey,
  type WorkloadKind,
} from './workload.js';
import { LockWorkload, WatchWorkload } from './workload-watch.js';
import {
  SplitNemesis,
  Splitter,
  byteOrder,
  defaultSplitTiming,
  formatRanges,
  judgeRanges,
  layOutRanges,
  layoutSplitKeys,
  type RangesReport,
} from './ranges.js';
import {
  DrainNemesis,
  MoveNemesis,
  PLACEMENT_SETTLE_MS,
  defaultMoveTiming,
  formatMoves,
  judgePlacement,
  type DrainRecord,
  type MoveRecord,
  type PlacementReport,
} from './moves.js';
import {
  QueueWorkload,
  defaultQueueWorkload,
  type QueueWorkloadOptions,
} from './workload-queue.js';
import { QuiesceSampler, formatQuiesce } from './quiesce-sampler.js';
import { RunDeadline } from './deadline.js';

export interface ChaosOptions {
  readonly seed: number;
  readonly timeSec: number;
  readonly nodes: number;
  readonly nemeses: readonly NemesisKind[];
  readonly workloads: readonly WorkloadKind[];
  readonly registerClients: number;
  readonly registerKeys: number;
  readonly setClients: number;
  readonly watchers: number;
  readonly lockClients: number;
  readonly queue: QueueWorkloadOptions;
  readonly unsafeMode: UnsafeMode;
  readonly storage: 'wal' | 'sqlite';
  readonly snapshotEveryEntries: number;
  /**
   * Ranges the register keys are spread over before the workloads start (1: range 0 alone).
   * Above 1, or with the `split` nemesis, the run adapts what a split store refuses.
   */
  readonly ranges: number;
  /** At most this many splits by the `split` nemesis. */
  readonly splitsMax: number;
  /** The nodes' `placementEveryMs` (the move and drain nemeses want it short); null: default. */
  readonly placementEveryMs: number | null;
  /** Every node runs with `quiesce: on`, so idle groups quiesce between faults. */
  readonly quiesce: boolean;
  /**
   * The register clients' think time between operations, ms: [min, max). Long, with few
   * clients, leaves most ranges idle most of the time (so, with quiesce, asleep).
   */
  readonly registerThinkMs: readonly [number, number];
  /** Where the history and report go; null: nowhere. */
  readonly outDir: string | null;
  readonly checkBudgetMs: number;
  /**
   * Aborted: the load ends now, as if its time were up (cli.ts, a first Ctrl-C). The run then
   * heals, settles, checks and writes what it recorded as usual. Null: never.
   */
  readonly signal: AbortSignal | null;
  readonly log: (line: string) => void;
}

export const defaultChaosOptions: Omit<ChaosOptions, 'seed' | 'log'> = {
  timeSec: 60,
  nodes: 3,
  nemeses: ['kill', 'pause', 'partition'],
  workloads: ['register', 'set', 'watch', 'lock', 'queue'],
  registerClients: 12,
  registerKeys: 5,
  setClients: 3,
  watchers: 3,
  lockClients: 3,
  queue: defaultQueueWorkload,
  unsafeMode: 'none',
  storage: 'wal',
  snapshotEveryEntries: 2_000,
  ranges: 1,
  splitsMax: 8,
  placementEveryMs: null,
  quiesce: false,
  registerThinkMs: defaultClientTiming.thinkMs,
  outDir: null,
  checkBudgetMs: 60_000,
  signal: null,
};

export type RunVerdict = 'ok' | 'anomaly' | 'unknown';

export interface OpCounts {
  readonly ok: number;
  readonly fail: number;
  readonly unknown: number;
}

export interface ChaosReport {
  readonly seed: number;
  readonly verdict: RunVerdict;
  readonly register: { readonly counts: OpCounts; readonly result: CheckResult } | null;
  readonly set: {
    readonly report: SetReport;
    /** The error each add reported failed but found present was given. */
    readonly failedPresentErrors: readonly string[];
  } | null;
  readonly watch: WatchReport | null;
  readonly lock: (LockReport & { readonly entered: number; readonly refused: number }) | null;
  readonly queue: (QueueCheckReport & { readonly counts: OpCounts }) | null;
  readonly faults: readonly FaultRecord[];
  /** The membership nemesis's changes; null when it was not selected. */
  readonly membership: readonly MembershipChange[] | null;
  /** The layout, the splits and the final map; null in a run whose store never splits. */
  readonly ranges: RangesReport | null;
  /** The move and drain nemeses' records and the final placement; null when neither ran. */
  readonly moves: MovesReport | null;
  /** Workloads not run, each with why (what a split store refuses). */
  readonly skipped: readonly string[];
  /**
   * What went wrong outside the checkers: a node that exited without being killed, a cluster
   * that did not settle after the faults healed, final reads that failed or disagree, a
   * harness error. Any of them makes the run an anomaly.
   */
  readonly problems: readonly string[];
  readonly elapsedSec: number;
  /** When an abort of `signal` ended the load, s into the run; null if its time ran out. */
  readonly interruptedAtSec: number | null;
}

function count(statuses: readonly { status: string }[]): OpCounts {
  let ok = 0;
  let fail = 0;
  let unknown = 0;
  for (const s of statuses) {
    if (s.status === 'ok') ok++;
    else if (s.status === 'fail') fail++;
    else unknown++;
  }
  return { ok, fail, unknown };
}

const CONVERGE_MS = 60_000;
/**
 * After the clients stop: longer than a node's request timeout (5 s), so every proposal still
 * in flight has committed or been given up on before the final reads.
 */
const DRAIN_MS = 6_000;

/** Whether the run's store splits: the workloads then keep to what a split store serves. */
function splits(o: ChaosOptions): boolean {
  return o.ranges > 1 || o.nemeses.includes('split') || moving(o);
}

/** Whether replicas move in the run: then not every node runs every range. */
function moving(o: ChaosOptions): boolean {
  return o.nemeses.includes('move') || o.nemeses.includes('drain');
}

/**
 * Whether every node runs every range: not with moves or drains (a range runs on its replicas
 * alone: judgePlacement checks those), nor on more nodes than the placement loop gives a range
 * (3), nor (judged apart) with members added during the run (DESIGN.md).
 */
function everyNodeRuns(o: ChaosOptions): boolean {
  return !moving(o) && o.nodes <= 3;
}

export interface MovesReport {
  readonly moves: readonly MoveRecord[] | null;
  readonly drains: readonly DrainRecord[] | null;
  readonly placement: PlacementReport | null;
}

/**
 * What a split store refuses, and how the run adapts (DESIGN.md, "What a split store
 * refuses"): leases are refused (MULTIPLE_RANGES), so the lock workload, whose sessions are
 * leases, does not run; a watch across ranges is refused, so the watchers follow the set
 * workload's keys, which stay in one range (every split point is a register key, below them).
 * Compaction and backups are not used by any workload.
 */
function skippedWhenSplit(o: ChaosOptions): string[] {
  if (!splits(o)) return [];
  const out: string[] = [];
  if (o.workloads.includes('lock'))
    out.push('lock: its sessions are leases, which a split store refuses (MULTIPLE_RANGES)');
  if (o.workloads.includes('watch'))
    out.push(
      `watch: follows the keys under ${SET_PREFIX} only (a watch across ranges is refused); ` +
        'still checked, every revision of those keys once and in order',
    );
  return out;
}

export async function runChaos(o: ChaosOptions): Promise<ChaosReport> {
  const started = performance.now();
  const now = (): number => performance.now() - started;
  const rng = createRng(o.seed);
  const keys = byteOrder(Array.from({ length: o.registerKeys }, (_, i) => registerKey(i)));
  const layout = layoutSplitKeys(keys, o.ranges);
  const cluster = await ChaosCluster.create({
    nodes: o.nodes,
    unsafeMode: o.unsafeMode,
    snapshotEveryEntries: o.snapshotEveryEntries,
    storage: o.storage,
    keepData: false,
    ...(o.placementEveryMs === null ? {} : { placementEveryMs: o.placementEveryMs }),
    quiesce: o.quiesce,
    // Whoever can interrupt the run handles the signals, so the nodes must not get them too.
    ownProcessGroup: o.signal !== null,
  });
  const problems: string[] = [];
  try {
    await cluster.start();
    const splitter = new Splitter(cluster, now, o.log, defaultSplitTiming.boundMs);
    const skipped = skippedWhenSplit(o);
    for (const s of skipped) o.log(`adapted to a split store: ${s}`);
    if (layout.length > 0) {
      try {
        await layOutRanges(splitter, cluster, layout, everyNodeRuns(o));
        o.log(`${o.ranges} ranges laid out at ${layout.join(', ')}`);
      } catch (err) {
        problems.push(`the ranges were not laid out: ${(err as Error).message}`);
      }
    }
    o.log(`cluster of ${o.nodes} up in ${(now() / 1000).toFixed(1)} s; running ${o.timeSec} s`);
    const run = makeRun(o, rng, cluster, now, { splitter, keys, layout });
    const { register, set, watch, lock, queue } = run;
    watch?.start();
    const sampler = o.quiesce
      ? new QuiesceSampler(() => cluster.ids.map((id) => [id, cluster.endpoint(id)] as const))
      : null;
    sampler?.start();
    const interruptedAtMs = await drive(o, now, run, problems);
    if (sampler !== null) o.log(formatQuiesce(await sampler.stop()).trim());
    let settled = await settle(o, cluster, problems);
    const disagree = settled ? await run.nemesis.membership?.agree(CONVERGE_MS) : null;
    if (typeof disagree === 'string') {
      problems.push(disagree);
      settled = false;
    }
    let watchReport: WatchReport | null = null;
    let lockReport: ChaosReport['lock'] = null;
    let queueReport: ChaosReport['queue'] = null;
    let finalReads: FinalRead[] = [];
    let ranges: RangesReport | null = null;
    if (settled && splits(o)) {
      ranges = await judgeRanges(cluster, o.ranges, splitter.splits, {
        // A member added during the run runs no range split off range 0 (DESIGN.md).
        everyNodeRuns: everyNodeRuns(o) && !o.nemeses.includes('membership'),
        problems,
      });
    }
    let placement: PlacementReport | null = null;
    if (settled && moving(o))
      placement = await judgePlacement(cluster, { problems, boundMs: PLACEMENT_SETTLE_MS });
    if (settled) {
      if (register !== null) {
        const failed = await register.finalReads(cluster.endpoints(), FINAL_READ_CLIENTS);
        if (failed > 0) problems.push(`${failed} final register reads failed on a settled cluster`);
      }
      if (set !== null) finalReads = await setFinalReads(cluster, problems);
      const first = cluster.endpoints()[0] as string;
      if (watch !== null) watchReport = await watch.judge(first, problems);
      if (lock !== null) {
        const r = await lock.judge(first, problems);
        lockReport = r === null ? null : { ...r, entered: lock.entered, refused: lock.refused };
      }
      if (queue !== null) {
        o.log(`t=${(now() / 1000).toFixed(1)} s: settled; draining the queues`);
        queueReport = await judgeQueue(queue, first, problems);
        o.log(`t=${(now() / 1000).toFixed(1)} s: queues drained and read`);
      }
    }
    await watch?.stopAll();
    await queue?.close();
    problems.push(...cluster.unexpectedExits);
    // A connection no front could attribute passed every cut: the faults were less than logged.
    for (const u of cluster.unattributed())
      problems.push(`connections from no known member at ${u}`);
    return await judge(o, cluster, {
      register: register?.history ?? null,
      set: set === null || !settled ? null : { adds: set.adds, finalReads },
      setErrors: set?.errors ?? new Map(),
      watch: watchReport,
      lock: lockReport,
      queue: queueReport,
      queueOps: queue?.ops ?? null,
      faults: run.nemesis.faults,
      membership: run.nemesis.membership?.changes ?? null,
      ranges: splits(o) ? (ranges ?? { ...unjudged(o), splits: splitter.splits }) : null,
      moves: moving(o)
        ? {
            moves: run.nemesis.moves.move?.moves ?? null,
            drains: run.nemesis.moves.drain?.drains ?? null,
            placement,
          }
        : null,
      skipped,
      problems,
      elapsedSec: now() / 1000,
      interruptedAtSec: interruptedAtMs === null ? null : interruptedAtMs / 1000,
    });
  } finally {
    await cluster.stop();
  }
}

/** Client ids of the final register reads: one per node, after every workload client. */
const FINAL_READ_CLIENTS = 100_000;

/** The ranges part of a report when the cluster never settled enough to judge the map. */
function unjudged(o: ChaosOptions): Omit<RangesReport, 'splits'> {
  return { layout: o.ranges, finalVersion: null, finalRanges: null, nodesAgreeing: 0 };
}

function makeRun(
  o: ChaosOptions,
  rng: Rng,
  cluster: ChaosCluster,
  now: () => number,
  r: { readonly splitter: Splitter; readonly keys: readonly string[]; readonly layout: string[] },
) {
  const register = o.workloads.includes('register')
    ? new RegisterWorkload(
        cluster.endpoints(),
        createRng(rng.int(2 ** 31)),
        { clients: o.registerClients, keys: o.registerKeys, firstClient: 0 },
        { ...defaultClientTiming, thinkMs: o.registerThinkMs },
        now,
      )
    : null;
  const set = o.workloads.includes('set')
    ? new SetWorkload(
        cluster.endpoints(),
        createRng(rng.int(2 ** 31)),
        { clients: o.setClients, firstClient: o.registerClients },
        defaultClientTiming,
        now,
      )
    : null;
  const nemesisRng = createRng(rng.int(2 ** 31));
  const endpoints = cluster.endpoints();
  const setKeys = { key: SET_PREFIX, rangeEnd: prefixEnd(SET_PREFIX) };
  const watch = o.workloads.includes('watch')
    ? new WatchWorkload(endpoints, o.watchers, ...(splits(o) ? [setKeys] : []))
    : null;
  const lock =
    o.workloads.includes('lock') && !splits(o) ? new LockWorkload(endpoints, o.lockClients) : null;
  const queue = o.workloads.includes('queue')
    ? new QueueWorkload(endpoints, createRng(rng.int(2 ** 31)), o.queue, now)
    : null;
  // Drawn last, so that the draws before it (and every run without membership) stay as they were.
  const membershipRng = createRng(rng.int(2 ** 31));
  // After it, for the same reason.
  const splitRng = createRng(rng.int(2 ** 31));
  const split = o.nemeses.includes('split')
    ? new SplitNemesis(r.splitter, splitRng, r.keys, r.layout, o.splitsMax, defaultSplitTiming)
    : null;
  // After it, for the same reason.
  const moveRng = createRng(rng.int(2 ** 31));
  const drainRng = createRng(rng.int(2 ** 31));
  const moves = {
    move: o.nemeses.includes('move')
      ? new MoveNemesis(cluster, moveRng, defaultMoveTiming, now, o.log)
      : null,
    drain: o.nemeses.includes('drain')
      ? new DrainNemesis(cluster, drainRng, defaultMoveTiming, now, o.log)
      : null,
  };
  const nemesis = new Nemesis(
    cluster,
    nemesisRng,
    o.nemeses,
    defaultTiming,
    now,
    o.log,
    membershipRng,
    split,
    moves,
  );
  return { register, set, nemesis, watch, lock, queue };
}

/** The end of the keys starting with `prefix` (its last byte plus one). */
function prefixEnd(prefix: string): string {
  return prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
}

/** How long the queue workers may take to drain the queues once the faults healed. */
const QUEUE_DRAIN_MS = 30_000;

/**
 * Load and faults for `timeSec`, or until `o.signal` aborts; the nemesis stops a second early
 * and heals everything. Returns when an abort ended the load (on `now`'s clock), else null.
 */
async function drive(
  o: ChaosOptions,
  now: () => number,
  r: ReturnType<typeof makeRun>,
  problems: string[],
): Promise<number | null> {
  const until = new RunDeadline(now, now() + o.timeSec * 1000);
  const cut = (): void => {
    until.cut();
    o.log(
      `t=${(now() / 1000).toFixed(1)} s: interrupted; no new operations, waiting for those in flight`,
    );
  };
  if (o.signal?.aborted === true) cut();
  o.signal?.addEventListener('abort', cut, { once: true });
  const progress = setInterval(() => {
    const ops =
      (r.register?.history.length ?? 0) + (r.set?.adds.length ?? 0) + (r.queue?.ops.length ?? 0);
    o.log(`t=${(now() / 1000).toFixed(0)} s: ${ops} operations, ${r.nemesis.faults.length} faults`);
  }, 10_000);
  try {
    const outcomes = await Promise.allSettled([
      r.nemesis.run(until.earlier(1_000)),
      r.register?.runUntil(until),
      r.set?.runUntil(until),
      r.lock?.runUntil(until),
      r.queue?.runUntil(until),
    ]);
    for (const out of outcomes) {
      if (out.status === 'rejected') problems.push(`harness error: ${String(out.reason)}`);
    }
  } finally {
    o.signal?.removeEventListener('abort', cut);
    clearInterval(progress);
    await r.nemesis.healAll();
  }
  if (until.cutAtMs !== null)
    o.log(`t=${(now() / 1000).toFixed(1)} s: load ended early; healed, now settling and checking`);
  return until.cutAtMs;
}

/**
 * The barrier before the final reads: every node up and agreeing on a leader, in-flight
 * proposals drained, then one write through the leader, whose commit commits everything
 * before it in the leader's log. A cluster that cannot get there is a finding.
 */
async function settle(
  o: ChaosOptions,
  cluster: ChaosCluster,
  problems: string[],
): Promise<boolean> {
  try {
    await new Promise((r) => setTimeout(r, DRAIN_MS));
    await cluster.waitForLeader(CONVERGE_MS);
    const client = new FlotillaClient({
      endpoints: cluster.endpoints(),
      deadlineMs: CONVERGE_MS,
      rangeRouting: false,
    });
    try {
      await client.put('chaos/barrier', String(o.seed));
    } finally {
      await client.close();
    }
    await cluster.waitForConvergence(CONVERGE_MS);
    return true;
  } catch (err) {
    problems.push(`the cluster did not settle after the faults healed: ${(err as Error).message}`);
    return false;
  }
}

/**
 * After the cluster settled: the queue workers drain the queues (pending jobs left then are a
 * liveness failure), then every job is read back and the history judged.
 */
async function judgeQueue(
  queue: QueueWorkload,
  endpoint: string,
  problems: string[],
): Promise<ChaosReport['queue']> {
  try {
    const pending = await queue.drain(endpoint, QUEUE_DRAIN_MS);
    if (pending > 0)
      problems.push(
        `${pending} queue jobs still pending ${QUEUE_DRAIN_MS / 1000} s after the faults healed`,
      );
    const report = queue.judge(await queue.finalState(endpoint));
    return { ...report, counts: count(queue.ops) };
  } catch (err) {
    problems.push(`queue check failed: ${(err as Error).message}`);
    return null;
  }
}

async function setFinalReads(cluster: ChaosCluster, problems: string[]): Promise<FinalRead[]> {
  const reads: FinalRead[] = [];
  for (const id of cluster.ids) {
    try {
      reads.push(await SetWorkload.finalRead(cluster.endpoint(id), `node ${id}`));
    } catch (err) {
      problems.push(`final set read on node ${id} failed: ${(err as Error).message}`);
    }
  }
  return reads;
}

interface Recorded {
  readonly register: Operation[] | null;
  readonly set: SetHistory | null;
  readonly setErrors: ReadonlyMap<string, string>;
  readonly watch: WatchReport | null;
  readonly lock: ChaosReport['lock'];
  readonly queue: ChaosReport['queue'];
  readonly queueOps: readonly QueueOp[] | null;
  readonly faults: readonly FaultRecord[];
  readonly membership: readonly MembershipChange[] | null;
  readonly ranges: RangesReport | null;
  readonly moves: MovesReport | null;
  readonly skipped: readonly string[];
  readonly problems: string[];
  readonly elapsedSec: number;
  readonly interruptedAtSec: number | null;
}

async function judge(o: ChaosOptions, cluster: ChaosCluster, r: Recorded): Promise<ChaosReport> {
  const register =
    r.register === null
      ? null
      : {
          counts: count(r.register),
          result: checkHistory(r.register, { timeBudgetMs: o.checkBudgetMs }),
        };
  // No final read answered (each failure is a problem already): there is nothing to judge.
  const setReport = r.set === null || r.set.finalReads.length === 0 ? null : checkSet(r.set);
  const set =
    setReport === null
      ? null
      : {
          report: setReport,
          failedPresentErrors: setReport.failedPresent.map(
            (f) => `${f.element}: ${r.setErrors.get(f.element) ?? '?'}`,
          ),
        };
  // After the barrier every node must hold exactly the same set.
  if (set !== null && !set.report.readsAgree) r.problems.push("the nodes' final set reads differ");
  const anomaly =
    register?.result.verdict === 'violation' ||
    set?.report.valid === false ||
    r.watch?.valid === false ||
    r.lock?.valid === false ||
    r.queue?.valid === false ||
    r.problems.length > 0;
  const verdict: RunVerdict = anomaly
    ? 'anomaly'
    : register?.result.verdict === 'unknown'
      ? 'unknown'
      : 'ok';
  const report: ChaosReport = {
    seed: o.seed,
    verdict,
    register,
    set,
    watch: r.watch,
    lock: r.lock,
    queue: r.queue,
    faults: r.faults,
    membership: r.membership,
    ranges: r.ranges,
    moves: r.moves,
    skipped: r.skipped,
    problems: r.problems,
    elapsedSec: r.elapsedSec,
    interruptedAtSec: r.interruptedAtSec,
  };
  if (o.outDir !== null) {
    const dir = join(o.outDir, `seed-${o.seed}`);
    await mkdir(dir, { recursive: true });
    if (r.register !== null) await writeHistory(join(dir, 'register.jsonl'), r.register);
    if (r.set !== null) await writeFile(join(dir, 'set.json'), JSON.stringify(r.set));
    if (r.queueOps !== null)
      await writeFile(
        join(dir, 'queue.jsonl'),
        r.queueOps.map((op) => JSON.stringify(op) + '\n').join(''),
      );
    await writeFile(join(dir, 'summary.txt'), formatReport(report) + '\n');
    if (verdict !== 'ok') await writeFile(join(dir, 'nodes.log'), cluster.dumpLogs());
  }
  return report;
}

export function formatReport(r: ChaosReport): string {
  const lines = [`seed ${r.seed}: ${r.verdict.toUpperCase()} (${r.elapsedSec.toFixed(1)} s)`];
  if (r.interruptedAtSec !== null)
    lines.push(
      `  interrupted: the load ended early, at ${r.interruptedAtSec.toFixed(1)} s; ` +
        'the history and verdict cover the run up to then',
    );
  const kinds = new Map<string, number>();
  for (const f of r.faults) kinds.set(f.kind, (kinds.get(f.kind) ?? 0) + 1);
  lines.push(
    `  faults: ${r.faults.length}` +
      (kinds.size > 0 ? ` (${[...kinds].map(([k, n]) => `${k} ${n}`).join(', ')})` : ''),
  );
  if (r.membership !== null) lines.push(...formatMembership(r.membership));
  if (r.ranges !== null) lines.push(...formatRanges(r.ranges));
  if (r.moves !== null)
    lines.push(...formatMoves(r.moves.moves, r.moves.drains, r.moves.placement));
  for (const s of r.skipped) lines.push(`  adapted: ${s}`);
  if (r.register !== null) {
    const c = r.register.counts;
    lines.push(
      `  register: ${c.ok} ok, ${c.fail} failed, ${c.unknown} unknown; linearizability: ${r.register.result.verdict}`,
    );
    if (r.register.result.verdict !== 'ok') lines.push(indent(formatResult(r.register.result)));
  }
  if (r.set !== null) {
    const s = r.set.report;
    lines.push(
      `  set: ${s.acknowledged} acknowledged, ${s.failed} failed, ${s.unknown} unknown ` +
        `(${s.unknownPresent} present); lost ${s.lost.length}, duplicated ${s.duplicated.length}, ` +
        `unexpected ${s.unexpected.length}, failed-but-present ${s.failedPresent.length}: ` +
        (s.valid ? 'valid' : 'INVALID'),
    );
    for (const l of s.lost.slice(0, 5))
      lines.push(`    lost ${l.element} from ${l.missingFrom.join(', ')}`);
    for (const d of s.duplicated.slice(0, 5))
      lines.push(`    duplicated ${d.element} ×${d.count} on ${d.node}`);
    for (const f of r.set.failedPresentErrors.slice(0, 5))
      lines.push(`    failed but present ${f}`);
  }
  if (r.watch !== null) {
    const w = r.watch;
    lines.push(
      `  watch: ${w.watchers} watchers, ${w.delivered} revisions delivered of ${w.historyRevisions} in the history: ` +
        (w.valid ? 'every one once, in order' : 'INVALID'),
    );
    for (const a of w.anomalies.slice(0, 5)) lines.push(`    ${a}`);
  }
  if (r.lock !== null) {
    const l = r.lock;
    lines.push(
      `  lock: ${l.entered} critical sections, ${l.writes} guarded writes by ${l.holders} holders, ${l.refused} refused (lock lost): ` +
        (l.valid ? 'never interleaved' : 'INVALID'),
    );
    for (const a of l.anomalies.slice(0, 5)) lines.push(`    ${a}`);
  }
  if (r.queue !== null) {
    const q = r.queue;
    lines.push(
      `  queue: ${q.counts.ok} ok, ${q.counts.fail} failed, ${q.counts.unknown} unknown operations; ` +
        `${q.acknowledged} adds acknowledged, ${q.completed} completed, ${q.dead} dead, ${q.pending} pending; ` +
        `${q.staleProbes} stale reports, ${q.staleRefused} refused: ` +
        (q.valid ? 'valid' : 'INVALID'),
    );
    for (const a of q.anomalies.slice(0, 10)) lines.push(`    ${a}`);
  }
  for (const e of r.problems) lines.push(`  problem: ${e}`);
  return lines.join('\n');
}

/** How many of each change completed, how long they took, and each change on its own line. */
function formatMembership(changes: readonly MembershipChange[]): string[] {
  const secs = (c: MembershipChange): number => (c.endMs - c.startMs) / 1000;
  const parts = (['add', 'remove', 'replace'] as const).map((kind) => {
    const done = changes.filter((c) => c.kind === kind && c.ok).map(secs);
    const failed = changes.filter((c) => c.kind === kind && !c.ok).length;
    const took =
      done.length === 0
        ? ''
        : ` (${(done.reduce((a, b) => a + b, 0) / done.length).toFixed(1)} s mean, ${Math.max(...done).toFixed(1)} s max)`;
    return `${done.length} ${kind}${done.length === 1 ? '' : 's'}${took}${failed > 0 ? `, ${failed} FAILED` : ''}`;
  });
  const lines = [`  membership: ${parts.join('; ')}`];
  for (const c of changes) {
    const refused = c.refusals.length > 0 ? `; refused ${c.refusals.join(', ')}` : '';
    lines.push(
      `    ${c.detail}: ${c.ok ? 'done' : `failed (${c.failure ?? '?'})`} in ${secs(c).toFixed(1)} s${refused}`,
    );
  }
  return lines;
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((l) => `    ${l}`)
    .join('\n');
}
