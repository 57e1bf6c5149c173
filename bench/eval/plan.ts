// What a run measures: the points of every scenario and their durations, for the quick and the
// full run. Kept apart from the code that runs them so the report can print the plan.

import { EvalError } from './errors.js';

export const scenarioNames = [
  'writes',
  'writes-binary',
  'failover',
  'reads',
  'payload',
  'sizes',
  'profile',
  'overload',
  'watch',
  'leases',
  'scale',
  'queue',
] as const;
export type ScenarioName = (typeof scenarioNames)[number];

export interface Plan {
  /**
   * An unmeasured closed loop of writes run on each write/read cluster, once it has a leader
   * and before its first point, so that no point measures the JIT compiling the write path
   * (same for both systems). Absent in results from before it was run.
   */
  readonly clusterWarmupMs?: number;
  readonly clusterWarmupClients?: number;
  /**
   * An unmeasured closed loop of linearizable reads at the leader before the read points
   * (same for both systems): the read path compiles on its own. Absent in older results.
   */
  readonly readWarmupMs?: number;
  /**
   * An unmeasured closed loop of binary-protocol writes before the binary points (Flotilla
   * only: etcd has none): the protocol's front compiles on its own. Absent in older results.
   */
  readonly binaryWarmupMs?: number;
  /**
   * Times every key-value scenario is run for each system, the systems taking turns in an
   * order that alternates (A B, then B A, ...), each round on fresh clusters: on a shared
   * machine one run's ratio moved by up to 2× between runs, so a goal counts as met when it was
   * met in more than half of the rounds.
   * Absent: one round.
   */
  readonly kvRounds?: number;
  /** Unmeasured start of every point. */
  readonly warmupMs: number;
  readonly durationMs: number;
  readonly writeClients: readonly number[];
  /** Closed-loop writers per point of the binary client protocol scenario (Flotilla only). */
  readonly binaryClients: readonly number[];
  /** Binary protocol connections those writers share. */
  readonly binaryConnections: number;
  readonly payloadBytes: readonly number[];
  readonly payloadClients: number;
  readonly readClients: number;
  readonly sizeNodes: number;
  readonly sizeClients: readonly number[];
  readonly failoverTrials: number;
  readonly failoverNodes: number;
  readonly profileMs: number;
  readonly profileClients: number;
  /** Closed-loop writers per overload point, over every member. */
  readonly overloadClients: readonly number[];
  readonly overloadNodes: readonly number[];
  /** Measured time per overload point (after warmupMs). */
  readonly overloadMs: number;
  /** CPU-bound processes running beside the clusters for the whole overload scenario. */
  readonly overloadBurners: number;
  /** Streaming watches of one prefix, and the closed-loop writers feeding them. */
  readonly watchers: number;
  readonly watchWriters: number;
  /** Leases granted, then kept alive by `leaseClients` closed-loop clients. */
  readonly leases: number;
  readonly leaseClients: number;
  /** Keys preloaded by the scale scenario, and its closed-loop clients. */
  readonly scaleKeys: number;
  readonly scaleClients: number;
  /** Worker concurrency per point of the queue scenario (jobs run at once). */
  readonly queueWorkers: readonly number[];
  /** Measured time per queue point (after warmupMs). */
  readonly queueMs: number;
  /** Bytes of filler in every job's data, the same for every system. */
  readonly queuePayloadBytes: number;
  /** Times every queue point is measured, the systems taking turns. */
  readonly queueRounds: number;
  /**
   * An unmeasured queue point per system (at the largest worker count) before the first
   * round: Flotilla's queue path compiles on its own, and BullMQ's client is JavaScript too.
   * Absent in older results.
   */
  readonly queueWarmupMs?: number;
  /** Jobs added but not yet completed, per worker, at most (the producer waits beyond). */
  readonly queueWindowPerWorker: number;
}

// A fresh Flotilla cluster under 64 writers ramps from about a third of its throughput to all of
// it over its first ~16 s while V8 compiles (BENCHMARKS.md, "Warm-up: what a fresh process
// costs"); etcd settles within 8 s. 20 s of warm-up puts every point past that.
export const fullPlan: Plan = {
  clusterWarmupMs: 20_000,
  clusterWarmupClients: 64,
  readWarmupMs: 5_000,
  binaryWarmupMs: 5_000,
  queueWarmupMs: 20_000,
  warmupMs: 2_000,
  durationMs: 8_000,
  writeClients: [1, 16, 64, 256, 1024],
  binaryClients: [1, 64, 256, 1024],
  binaryConnections: 4,
  payloadBytes: [16, 256, 4096, 65536],
  payloadClients: 64,
  readClients: 64,
  sizeNodes: 5,
  sizeClients: [1, 64, 256],
  failoverTrials: 100,
  failoverNodes: 5,
  profileMs: 10_000,
  profileClients: 256,
  overloadClients: [256, 1024, 3000],
  overloadNodes: [3, 5],
  overloadMs: 60_000,
  overloadBurners: 2,
  watchers: 1_000,
  watchWriters: 16,
  leases: 10_000,
  leaseClients: 64,
  scaleKeys: 1_000_000,
  scaleClients: 64,
  queueWorkers: [1, 8, 32],
  queueMs: 25_000,
  queuePayloadBytes: 64,
  queueRounds: 2,
  queueWindowPerWorker: 4,
};

export const quickPlan: Plan = {
  clusterWarmupMs: 20_000,
  clusterWarmupClients: 64,
  readWarmupMs: 5_000,
  binaryWarmupMs: 5_000,
  queueWarmupMs: 20_000,
  warmupMs: 500,
  durationMs: 2_500,
  writeClients: [1, 64, 256],
  binaryClients: [1, 64, 256],
  binaryConnections: 4,
  payloadBytes: [16, 4096, 65536],
  payloadClients: 64,
  readClients: 64,
  sizeNodes: 5,
  sizeClients: [64],
  failoverTrials: 10,
  failoverNodes: 5,
  profileMs: 4_000,
  profileClients: 256,
  overloadClients: [256, 1024, 3000],
  overloadNodes: [3],
  overloadMs: 10_000,
  overloadBurners: 2,
  watchers: 1_000,
  watchWriters: 16,
  leases: 10_000,
  leaseClients: 64,
  scaleKeys: 100_000,
  scaleClients: 64,
  queueWorkers: [1, 8, 32],
  queueMs: 5_000,
  queuePayloadBytes: 64,
  queueRounds: 1,
  queueWindowPerWorker: 4,
};

export function parseScenarios(spec: string): ScenarioName[] {
  const out: ScenarioName[] = [];
  for (const s of spec
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean)) {
    if (!(scenarioNames as readonly string[]).includes(s))
      throw new EvalError(
        'EVAL_BAD_OPTION',
        `unknown scenario "${s}"; expected some of ${scenarioNames.join(',')}`,
      );
    out.push(s as ScenarioName);
  }
  return out;
}

/**
 * The order the systems run in, round by round: as given, then reversed, and so on, so that
 * neither always runs first (nor always just after the other's clusters stopped).
 */
export function roundOrder<T>(systems: readonly T[], round: number): readonly T[] {
  return round % 2 === 0 ? systems : [...systems].reverse();
}
