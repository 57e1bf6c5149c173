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
  type Operation,
  type SetReport,
} from '../../src/check/index.js';
import { createRng } from '../../src/raft/index.js';
import { ChaosCluster, type UnsafeMode } from './cluster.js';
import { Nemesis, defaultTiming, type FaultRecord, type NemesisKind } from './nemesis.js';
import {
  RegisterWorkload,
  SetWorkload,
  defaultClientTiming,
  type WorkloadKind,
} from './workload.js';

export interface ChaosOptions {
  readonly seed: number;
  readonly timeSec: number;
  readonly nodes: number;
  readonly nemeses: readonly NemesisKind[];
  readonly workloads: readonly WorkloadKind[];
  readonly registerClients: number;
  readonly registerKeys: number;
  readonly setClients: number;
  readonly unsafeMode: UnsafeMode;
  readonly storage: 'wal' | 'sqlite';
  readonly snapshotEveryEntries: number;
  /** Where the history and report go; null: nowhere. */
  readonly outDir: string | null;
  readonly checkBudgetMs: number;
  readonly log: (line: string) => void;
}

export const defaultChaosOptions: Omit<ChaosOptions, 'seed' | 'log'> = {
  timeSec: 60,
  nodes: 3,
  nemeses: ['kill', 'pause', 'partition'],
  workloads: ['register', 'set'],
  registerClients: 12,
  registerKeys: 5,
  setClients: 3,
  unsafeMode: 'none',
  storage: 'wal',
  snapshotEveryEntries: 2_000,
  outDir: null,
  checkBudgetMs: 60_000,
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
  readonly set: { readonly report: SetReport } | null;
  readonly faults: readonly FaultRecord[];
  /** Nodes that exited without being killed: always an anomaly. */
  readonly unexpectedExits: readonly string[];
  readonly elapsedSec: number;
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

export async function runChaos(o: ChaosOptions): Promise<ChaosReport> {
  const started = performance.now();
  const now = (): number => performance.now() - started;
  const rng = createRng(o.seed);
  const cluster = await ChaosCluster.create({
    nodes: o.nodes,
    unsafeMode: o.unsafeMode,
    snapshotEveryEntries: o.snapshotEveryEntries,
    storage: o.storage,
    keepData: false,
  });
  try {
    await cluster.start();
    o.log(`cluster of ${o.nodes} up in ${(now() / 1000).toFixed(1)} s; running ${o.timeSec} s`);
    const until = now() + o.timeSec * 1000;
    const register = o.workloads.includes('register')
      ? new RegisterWorkload(
          cluster.endpoints(),
          createRng(rng.int(2 ** 31)),
          { clients: o.registerClients, keys: o.registerKeys, firstClient: 0 },
          defaultClientTiming,
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
    const nemesis = new Nemesis(
      cluster,
      createRng(rng.int(2 ** 31)),
      o.nemeses,
      defaultTiming,
      now,
      o.log,
    );
    // The nemesis stops a little before the clients so the last operations see a healed cluster.
    const progress = setInterval(() => {
      const ops = (register?.history.length ?? 0) + (set?.adds.length ?? 0);
      o.log(`t=${(now() / 1000).toFixed(0)} s: ${ops} operations, ${nemesis.faults.length} faults`);
    }, 10_000);
    try {
      await Promise.all([
        nemesis.run(until - 1_000),
        register?.runUntil(until),
        set?.runUntil(until),
      ]);
    } finally {
      clearInterval(progress);
      await nemesis.healAll();
    }
    await cluster.waitForLeader(CONVERGE_MS);
    await cluster.waitForConvergence(CONVERGE_MS);
    const finalReads = set
      ? await Promise.all(
          cluster.ids.map((id) => SetWorkload.finalRead(cluster.endpoint(id), `node ${id}`)),
        )
      : [];
    return await judge(o, {
      register: register?.history ?? null,
      set: set === null ? null : { adds: set.adds, finalReads },
      faults: nemesis.faults,
      unexpectedExits: cluster.unexpectedExits,
      elapsedSec: now() / 1000,
    });
  } finally {
    await cluster.stop();
  }
}

interface Recorded {
  readonly register: Operation[] | null;
  readonly set: Parameters<typeof checkSet>[0] | null;
  readonly faults: readonly FaultRecord[];
  readonly unexpectedExits: readonly string[];
  readonly elapsedSec: number;
}

async function judge(o: ChaosOptions, r: Recorded): Promise<ChaosReport> {
  const register =
    r.register === null
      ? null
      : {
          counts: count(r.register),
          result: checkHistory(r.register, { timeBudgetMs: o.checkBudgetMs }),
        };
  const set = r.set === null ? null : { report: checkSet(r.set) };
  const anomaly =
    register?.result.verdict === 'violation' ||
    set?.report.valid === false ||
    r.unexpectedExits.length > 0;
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
    faults: r.faults,
    unexpectedExits: r.unexpectedExits,
    elapsedSec: r.elapsedSec,
  };
  if (o.outDir !== null) {
    const dir = join(o.outDir, `seed-${o.seed}`);
    await mkdir(dir, { recursive: true });
    if (r.register !== null) await writeHistory(join(dir, 'register.jsonl'), r.register);
    if (r.set !== null) await writeFile(join(dir, 'set.json'), JSON.stringify(r.set));
    await writeFile(join(dir, 'summary.txt'), formatReport(report) + '\n');
  }
  return report;
}

export function formatReport(r: ChaosReport): string {
  const lines = [`seed ${r.seed}: ${r.verdict.toUpperCase()} (${r.elapsedSec.toFixed(1)} s)`];
  const kinds = new Map<string, number>();
  for (const f of r.faults) kinds.set(f.kind, (kinds.get(f.kind) ?? 0) + 1);
  lines.push(
    `  faults: ${r.faults.length}` +
      (kinds.size > 0 ? ` (${[...kinds].map(([k, n]) => `${k} ${n}`).join(', ')})` : ''),
  );
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
  }
  for (const e of r.unexpectedExits) lines.push(`  ${e}`);
  return lines.join('\n');
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((l) => `    ${l}`)
    .join('\n');
}
