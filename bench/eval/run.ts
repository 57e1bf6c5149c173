// Runs the evaluation: starts each system's clusters in turn (never both at once, so neither
// steals CPU from the other), runs the planned scenarios against them, and stops every process
// it started, by PID, even when a scenario throws.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  EtcdCluster,
  FlotillaCluster,
  makeCluster,
  type BenchCluster,
  type SystemName,
} from './clusters.js';
import { calibrate, type Calibration } from './calibrate.js';
import { runFailover, summarize, type FailoverResult } from './failover.js';
import { machineFacts, type MachineFacts } from './machine.js';
import { roundOrder, type Plan, type ScenarioName } from './plan.js';
import { overloadPoint, withBurners, type OverloadPoint } from './overload.js';
import { ProcessGroup } from './procs.js';
import { scalePoint, type ScaleResult } from './scale.js';
import { leasePoint, watchPoint, type LeasePoint, type WatchPoint } from './watch-lease.js';
import { profileFlotillaLeader, type ProfileSummary } from './profile.js';
import type { QueueSystem } from './queue-load.js';
import { runQueueScenario, type QueueResults } from './queue-run.js';
import {
  binaryReadPoint,
  binaryWritePoint,
  preloadKeys,
  readPoint,
  warmCluster,
  writePoint,
  type Progress,
  type ReadPoint,
  type WritePoint,
} from './scenarios.js';

export interface EvalOptions {
  readonly plan: Plan;
  readonly quick: boolean;
  readonly systems: readonly SystemName[];
  /** The systems of the queue scenario (Flotilla and BullMQ on Redis, two ways). */
  readonly queueSystems: readonly QueueSystem[];
  /** Profile the Flotilla members during the queue scenario (--queue-profile). */
  readonly queueProfile?: boolean;
  readonly scenarios: readonly ScenarioName[];
  readonly progress: Progress & { line(s: string): void };
  readonly keepData: boolean;
}

export interface SystemResults {
  /** The machine's speed just before this system's clusters started and after they stopped. */
  calibration?: { before: Calibration; after: Calibration; startedAt: string };
  writes: WritePoint[];
  /** Flotilla over its binary client protocol (absent for etcd). */
  writesBinary?: (WritePoint & { connections: number })[];
  payload: WritePoint[];
  reads: ReadPoint[];
  /** Flotilla's linearizable reads at the leader over its binary client protocol. */
  readsBinary?: (ReadPoint & { connections: number })[];
  sizes: (WritePoint & { nodes: number })[];
  overload?: OverloadPoint[];
  watch?: WatchPoint;
  /** Flotilla's watches over its binary client protocol (absent for etcd). */
  watchBinary?: WatchPoint;
  leases?: LeasePoint;
  scale?: ScaleResult;
  failover:
    | (FailoverResult & {
        nodes: number;
        summary: Record<string, number>;
        electedSummary: Record<string, number>;
      })
    | null;
}

export interface EvalResults {
  readonly machine: MachineFacts;
  readonly startedAt: string;
  finishedAt: string;
  readonly quick: boolean;
  readonly plan: Plan;
  readonly settings: Record<string, string>;
  readonly systems: Partial<Record<SystemName, SystemResults>>;
  profile: ProfileSummary | null;
  /** The queue scenario, when it ran. */
  queue?: QueueResults;
  /**
   * Every round of the key-value scenarios when there were several (Plan.kvRounds); the first
   * is `systems` itself. Absent after one round.
   */
  rounds?: Partial<Record<SystemName, SystemResults>>[];
  /** Scenario groups that failed, with why; the others' figures stand. */
  readonly failures: string[];
}

const settings: Record<string, string> = {
  flotilla:
    'wal storage (fsync every batch), --tick-ms 10 --election-ticks 15 --heartbeat-ticks 5 (election 150–300 ms, heartbeat 50 ms); the writers of the writes, writes-binary and overload scenarios use exactly-once sessions (own clientId, seq 1, 2, ..., each write acknowledging the answers before it with ackedBelow, as the client library does)',
  etcd: 'etcd 3.4 defaults (fsync on) plus --heartbeat-interval 10 --election-timeout 150 (election 150–300 ms) --quota-backend-bytes 8 GiB; JSON gateway',
  binary:
    "Flotilla's binary client protocol: the same closed-loop writers, keys, base64 values and sessions, pipelined over 4 connections to the leader's binary port (msgpack frames); with the reads, the same readers and keys as over HTTP, linearizable, at the leader",
  queue:
    'Flotilla: the project client and Worker over HTTP to the queue group leader (3 members, wal storage, fsync every batch); BullMQ: its Queue and Worker on one redis-server, appendfsync always, then redis defaults (no AOF, RDB snapshots by the default save rules). Same layout for both: one producer thread (adders = workers, at most 4 × workers jobs added but not completed) and one consumer thread (one worker, concurrency = workers, a handler that returns at once) in one load-generator process; 64-byte filler in every job; the last 1,000 completed jobs kept. Latency: add start → completion acknowledged.',
  client:
    'one Node.js load generator, undici Pool, HTTP/1.1 keep-alive, one connection per client, closed loop, JSON with base64 keys and values; writes and reads go to the leader unless stated',
};

export async function runEvaluation(o: EvalOptions): Promise<EvalResults> {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-eval-'));
  const procs = new ProcessGroup();
  const onExit = (): void => procs.killAllSync();
  process.once('exit', onExit);
  // A signal ends the process without 'exit': the clusters, burners and etcd it started would
  // be left running (seen when a run was stopped with SIGTERM).
  // The data directory goes too, once the members that write into it have exited (a Ctrl-C
  // left the members' WALs under the temp directory, one set per interrupted run).
  const onSignal = (signal: NodeJS.Signals): void => {
    process.stderr.write(`bench: ${signal}, stopping every process this run started\n`);
    procs.killAllSync();
    const leave = (): void => {
      if (!o.keepData) rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
      else process.stderr.write(`bench: data kept under ${dir}\n`);
      process.exit(signal === 'SIGINT' ? 130 : 143);
    };
    setTimeout(leave, 5_000).unref();
    void procs.stopAll(1_000).finally(leave);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const results: EvalResults = {
    machine: machineFacts(dir),
    startedAt: new Date().toISOString(),
    finishedAt: '',
    quick: o.quick,
    plan: o.plan,
    settings,
    systems: {},
    profile: null,
    failures: [],
  };
  const guard = async (what: string, fn: () => Promise<void>): Promise<void> => {
    try {
      await fn();
    } catch (err) {
      const msg = `${what}: ${(err as Error).message}`;
      results.failures.push(msg);
      o.progress.line(`FAILED ${msg}`);
    }
  };
  o.progress.line(`data under ${dir}`);
  try {
    const kv = o.scenarios.some((s) => s !== 'queue');
    const rounds = kv ? Math.max(1, o.plan.kvRounds ?? 1) : 0;
    for (let i = 0; i < rounds; i++) {
      const round: Partial<Record<SystemName, SystemResults>> = i === 0 ? results.systems : {};
      const order = roundOrder(o.systems, i);
      if (rounds > 1) o.progress.line(`round ${i + 1} of ${rounds}: ${order.join(', ')}`);
      // Each round on fresh clusters, in data directories of their own.
      const roundDir = i === 0 ? dir : join(dir, `round${i + 1}`);
      for (const system of order) {
        const r: SystemResults = { writes: [], payload: [], reads: [], sizes: [], failover: null };
        round[system] = r;
        const what = rounds > 1 ? `${system} round ${i + 1}` : system;
        const startedAt = new Date().toISOString();
        const before = calibrate();
        await guard(what, () => runSystem(system, r, o, roundDir, procs));
        r.calibration = { before, after: calibrate(), startedAt };
        o.progress.line(
          `${what}: machine calibration ${before.cpuMs} ms of CPU before, ${r.calibration.after.cpuMs} ms after`,
        );
      }
      if (rounds > 1) (results.rounds ??= []).push(round);
    }
    // Both systems in turn under the same burners, so that they face the same machine.
    if (o.scenarios.includes('overload'))
      await withBurners(procs, o.plan.overloadBurners, join(dir, 'burners.log'), async () => {
        for (const system of o.systems) {
          const r = results.systems[system];
          if (r !== undefined)
            await guard(`${system} overload`, () => runOverload(system, r, o, dir, procs));
        }
      });
    if (o.scenarios.includes('queue') && o.queueSystems.length > 0)
      await guard('queue', async () => {
        results.queue = await runQueueScenario({
          plan: o.plan,
          systems: o.queueSystems,
          dir,
          procs,
          progress: o.progress,
          profile: o.queueProfile === true,
        });
      });
    if (o.scenarios.includes('profile') && o.systems.includes('flotilla'))
      await guard('profile', async () => {
        results.profile = await profileFlotillaLeader(o.plan, dir, procs, o.progress);
      });
  } finally {
    await procs.stopAll();
    process.removeListener('exit', onExit);
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    if (!o.keepData) rmSync(dir, { recursive: true, force: true });
  }
  results.finishedAt = new Date().toISOString();
  return results;
}

async function withCluster<T>(
  c: BenchCluster,
  o: EvalOptions,
  fn: (c: BenchCluster) => Promise<T>,
): Promise<T> {
  o.progress.line(`starting ${c.system} with ${c.size} members`);
  try {
    await c.start();
    return await fn(c);
  } finally {
    await c.stop();
  }
}

async function runSystem(
  system: SystemName,
  r: SystemResults,
  o: EvalOptions,
  dir: string,
  procs: ProcessGroup,
): Promise<void> {
  const p = o.plan;
  const t = { warmupMs: p.warmupMs, durationMs: p.durationMs };
  const has = (s: ScenarioName): boolean => o.scenarios.includes(s);
  const sub = (name: string): string => join(dir, name);
  const binary = has('writes-binary') && system === 'flotilla';
  // Only the clusters of the throughput/latency points are warmed: failover and overload
  // measure from a cold start on purpose, watch, leases and scale load their own state first.
  const warm = (c: BenchCluster): Promise<void> =>
    warmCluster(c, p.clusterWarmupClients ?? 64, p.clusterWarmupMs ?? 0, o.progress);
  if (has('writes') || has('reads') || has('payload') || binary) {
    await withCluster(makeCluster(system, { size: 3, dir: sub('main'), procs }), o, async (c) => {
      await warm(c);
      if (has('writes'))
        for (const n of p.writeClients)
          r.writes.push(
            await writePoint(c, n, 256, t, o.progress, `${system} writes ${n} clients`),
          );
      if (binary) {
        // Not measured: the binary front compiles on its own (Plan.binaryWarmupMs).
        if ((p.binaryWarmupMs ?? 0) > 0)
          await binaryWritePoint(
            c,
            256,
            p.binaryConnections,
            256,
            { warmupMs: 0, durationMs: p.binaryWarmupMs ?? 0 },
            o.progress,
            `${system} binary protocol warm-up (not measured), 256 clients`,
          );
        r.writesBinary = [];
        for (const n of p.binaryClients)
          r.writesBinary.push(
            await binaryWritePoint(
              c,
              n,
              p.binaryConnections,
              256,
              t,
              o.progress,
              `${system} binary protocol writes ${n} clients, ${Math.min(n, p.binaryConnections)} connections`,
            ),
          );
      }
      if (has('reads')) {
        await preloadKeys(c, 1000);
        // Not measured: the read path compiles on its own (Plan.readWarmupMs), both systems.
        if ((p.readWarmupMs ?? 0) > 0)
          await readPoint(
            c,
            p.readClients,
            'linearizable',
            'leader',
            { warmupMs: 0, durationMs: p.readWarmupMs ?? 0 },
            o.progress,
            `${system} read warm-up (not measured), ${p.readClients} clients`,
          );
        // Lease reads are a per-request choice in Flotilla only; etcd's is a server option.
        const levels =
          system === 'flotilla'
            ? (['linearizable', 'lease', 'serializable'] as const)
            : (['linearizable', 'serializable'] as const);
        for (const consistency of levels)
          for (const target of ['leader', 'follower'] as const)
            r.reads.push(
              await readPoint(
                c,
                p.readClients,
                consistency,
                target,
                t,
                o.progress,
                `${system} ${consistency} reads, ${target}, ${p.readClients} clients`,
              ),
            );
        // The reads a Flotilla client makes by default: its binary protocol (CLIENT.md).
        if (system === 'flotilla')
          r.readsBinary = [
            await binaryReadPoint(
              c,
              p.readClients,
              p.binaryConnections,
              'linearizable',
              t,
              o.progress,
              `${system} linearizable reads, leader, binary protocol, ${p.readClients} clients, ${Math.min(p.readClients, p.binaryConnections)} connections`,
            ),
          ];
      }
      if (has('payload'))
        for (const bytes of p.payloadBytes)
          r.payload.push(
            await writePoint(
              c,
              p.payloadClients,
              bytes,
              t,
              o.progress,
              `${system} writes ${bytes} B, ${p.payloadClients} clients`,
            ),
          );
    });
  }
  if (has('sizes')) {
    const n = p.sizeNodes;
    await withCluster(
      makeCluster(system, { size: n, dir: sub(`size${n}`), procs }),
      o,
      async (c) => {
        await warm(c);
        for (const clients of p.sizeClients)
          r.sizes.push({
            ...(await writePoint(
              c,
              clients,
              256,
              t,
              o.progress,
              `${system} ${n} members, writes ${clients} clients`,
            )),
            nodes: n,
          });
      },
    );
  }
  if (has('watch') || has('leases'))
    await withCluster(makeCluster(system, { size: 3, dir: sub('watch'), procs }), o, async (c) => {
      await c.waitForLeader();
      if (has('watch'))
        r.watch = await watchPoint(
          c,
          p.watchers,
          p.watchWriters,
          t,
          o.progress,
          `${system} watch, ${p.watchers} watchers, ${p.watchWriters} writers`,
        );
      if (has('watch') && c.binaryPort(c.running()[0] as number) !== null)
        r.watchBinary = await watchPoint(
          c,
          p.watchers,
          p.watchWriters,
          t,
          o.progress,
          `${system} watch over the binary protocol, ${p.watchers} watchers, ${p.watchWriters} writers`,
          'binary',
        );
      if (has('leases'))
        r.leases = await leasePoint(
          c,
          p.leases,
          p.leaseClients,
          t,
          o.progress,
          `${system} leases, ${p.leases} kept alive by ${p.leaseClients} clients`,
        );
    });
  if (has('scale'))
    await withCluster(makeCluster(system, { size: 3, dir: sub('scale'), procs }), o, async (c) => {
      r.scale = await scalePoint(c, p.scaleKeys, p.scaleClients, t, o.progress);
    });
  if (has('failover')) await runFailoverFor(system, r, o, sub('failover'), procs);
}

async function runOverload(
  system: SystemName,
  r: SystemResults,
  o: EvalOptions,
  dir: string,
  procs: ProcessGroup,
): Promise<void> {
  const p = o.plan;
  const t = { warmupMs: p.warmupMs, durationMs: p.overloadMs };
  r.overload = [];
  for (const nodes of p.overloadNodes)
    for (const clients of p.overloadClients) {
      const sub = join(dir, `overload-${nodes}-${clients}`);
      await withCluster(makeCluster(system, { size: nodes, dir: sub, procs }), o, async (c) => {
        r.overload?.push(
          await overloadPoint(
            c,
            clients,
            t,
            o.progress,
            `${system} overload, ${nodes} members, ${clients} clients`,
          ),
        );
      });
    }
}

async function runFailoverFor(
  system: SystemName,
  r: SystemResults,
  o: EvalOptions,
  dir: string,
  procs: ProcessGroup,
): Promise<void> {
  const nodes = o.plan.failoverNodes;
  const c =
    system === 'flotilla'
      ? new FlotillaCluster({ size: nodes, dir, procs, logLevel: 'info' })
      : new EtcdCluster({ size: nodes, dir, procs });
  // Heartbeat interval: Flotilla 5 ticks × 10 ms; etcd 10 ms.
  const heartbeatMs = system === 'flotilla' ? 50 : 10;
  await withCluster(c, o, async () => {
    const times: number[] = [];
    const f = await runFailover(c, {
      trials: o.plan.failoverTrials,
      heartbeatMs,
      onTrial: (i, ms) => {
        if (ms !== null) times.push(ms);
        const s = summarize(times);
        o.progress.tick(
          `${system} failover (${nodes} members): trial ${i + 1}/${o.plan.failoverTrials}, last ${ms === null ? 'FAILED' : ms.toFixed(0) + ' ms'}, median ${s['p50']} ms`,
          i + 1,
          o.plan.failoverTrials,
          0,
        );
      },
    });
    r.failover = {
      ...f,
      nodes,
      summary: summarize(f.timesMs),
      electedSummary: summarize(f.electedMs),
    };
    o.progress.done(
      `${system} failover`,
      `write ${JSON.stringify(r.failover.summary)}; leader seen ${JSON.stringify(r.failover.electedSummary)}`,
    );
  });
}
