// Write throughput by number of ranges and nodes (docs/BENCHMARKS.md, "Ranges: write throughput
// by number of ranges and nodes"), with what each node spent per write.
//
//   npm run bench:ranges [-- --quick] [--nodes 3,5] [--ranges 1,4,16,64] [--writers 256]
//                        [--seconds 10] [--warmup 3] [--replicas 3] [--out bench-results]
//                        [--leaders spread|elected] [--shared-at 16,64|none]
//
// For every (nodes, ranges) cell: a real cluster as the evaluation starts it (bench/eval:
// processes on 127.0.0.1, WAL storage with fsync on, data in a temp directory), the key space
// split into `ranges` ranges at "r001" … (descending, so the range split each time is range 0,
// which stays on every node; each new range gets `--replicas` nodes, round-robin, when that is
// fewer than the nodes). With `--leaders spread` (the default) the leaders are then spread
// evenly over the nodes (spreadLeaders: each on one of its range's replicas, as even as the
// replicas allow) with POST /v1/ranges/transfer-leadership, and the cell waits (bounded) until
// every range's replicas name the leader asked; with `--leaders elected` they stay where the
// ranges' first elections put them. Either way the report gives the distribution, and the
// placement loop is off (placement: off) so that nothing else moves leaders or replicas
// during the cell. The range counts in `--shared-at` are measured a second time with walSync
// "shared" (one journal sync for all groups' appends on a node). Then
// `--writers` closed-loop writers over the binary client protocol, writer w writing to range
// w mod R (so the ranges get equal load) through the node leading it, 256-byte values, a
// warm-up, then the measured window. Per node over the window: CPU (utime + stime from
// /proc/<pid>/stat), durable writes of all its groups (flotilla_group_persists_total: with the
// default walSync "per-group" one sync each), bytes sent to storage (/proc/<pid>/io), and the
// leaders and replicas it holds. The load generator's own CPU and the load average are given
// too, since everything shares the machine's cores. Every wait is bounded; every process is
// stopped by its PID, on errors and signals too.

import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { FlotillaError } from '../../src/base/errors.js';
import { WireConnection } from '../../src/client/wire.js';
import { FlotillaCluster } from '../eval/clusters.js';
import { ProcessGroup, sleep } from '../eval/procs.js';
import { parsePrometheus, sumBy } from '../eval/prom.js';
import { b64, randomValueB64 } from '../eval/protocol.js';
import {
  cpuMsBetween,
  fitLeaderFollower,
  parseProcIo,
  parseProcStat,
  quantile,
  rangeKey,
  rangePrefix,
  roundRobinReplicas,
  sharedMachineWritesPerSec,
  splitKeys,
  spreadLeaders,
  type NodeShare,
  type ProcCpu,
  type ProcIo,
} from './throughput-model.js';
import { benchArgs } from '../args.js';

const VALUE_BYTES = 256;
const CONNECTIONS_PER_NODE = 4;
/** Clock ticks per second of /proc/<pid>/stat (USER_HZ: 100 on every Linux build in use). */
const TICKS_PER_SEC = 100;
const SETUP_LIMIT_MS = 90_000;
/** How long the leaders may take to be where asked (transfers asked again meanwhile). */
const SPREAD_LIMIT_MS = 120_000;
/** Transfers asked at once while spreading the leaders. */
const TRANSFERS_AT_ONCE = 4;

type LeaderMode = 'spread' | 'elected';
type WalSync = 'per-group' | 'shared';

interface Options {
  readonly nodes: number[];
  readonly ranges: number[];
  readonly writers: number;
  readonly seconds: number;
  readonly warmupSeconds: number;
  readonly replicas: number;
  readonly out: string;
  readonly leaders: LeaderMode;
  /** Range counts measured a second time with walSync "shared". */
  readonly sharedAt: number[];
}

interface RangeInfo {
  readonly index: number;
  readonly id: number;
  readonly replicas: number[];
  leader: number;
}

interface NodeSample {
  readonly cpu: ProcCpu;
  readonly io: ProcIo | null;
  readonly persists: number;
}

interface NodeRow {
  readonly id: number;
  readonly leaders: number;
  readonly replicas: number;
  readonly cpuMsPerWrite: number;
  readonly cpuMsPerSec: number;
  readonly persistsPerWrite: number;
  readonly storageKiBPerWrite: number | null;
}

export interface CellResult {
  readonly nodes: number;
  readonly ranges: number;
  readonly walSync: WalSync;
  readonly leaderMode: LeaderMode;
  /** Leaders per node as the ranges' elections put them, before any transfer. */
  readonly electedLeadersPerNode: number[];
  /** Ranges whose leadership the spreading moved, the requests it took, and how long. */
  readonly spread: {
    readonly moved: number;
    readonly requests: number;
    readonly ms: number;
  } | null;
  readonly writers: number;
  readonly seconds: number;
  readonly writesPerSec: number;
  readonly errors: number;
  readonly errorsByCode: Record<string, number>;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly perNode: NodeRow[];
  readonly leadersChangedDuringRun: number;
  readonly clusterCpuMsPerWrite: number;
  readonly loadgenCpuMsPerWrite: number;
  readonly clusterPersistsPerWrite: number;
  readonly fit: { readonly leaderMs: number; readonly followerMs: number } | null;
  /** What the two shared cores allow at this run's CPU per write (sharedMachineWritesPerSec). */
  readonly sharedCoresPredictedWritesPerSec: number;
  readonly setupMs: number;
  readonly loadAverage: readonly [number, number, number];
}

function parseList(s: string, what: string, lo: number, hi: number): number[] {
  const xs = s.split(',').map((x) => Number(x.trim()));
  if (xs.length === 0 || xs.some((x) => !Number.isInteger(x) || x < lo || x > hi))
    throw new Error(`--${what} takes a comma-separated list of integers ${lo}..${hi}, got ${s}`);
  return xs;
}

function leaderMode(s: string): LeaderMode {
  if (s !== 'spread' && s !== 'elected')
    throw new Error(`--leaders takes spread or elected, got ${s}`);
  return s;
}

function sharedAt(s: string): number[] {
  return s === 'none' ? [] : parseList(s, 'shared-at', 1, 256);
}

function options(): Options {
  const { values } = benchArgs({
    options: {
      quick: { type: 'boolean', default: false },
      nodes: { type: 'string' },
      ranges: { type: 'string' },
      writers: { type: 'string', default: '256' },
      seconds: { type: 'string' },
      warmup: { type: 'string' },
      replicas: { type: 'string', default: '3' },
      out: { type: 'string', default: 'bench-results' },
      leaders: { type: 'string', default: 'spread' },
      'shared-at': { type: 'string' },
    },
  });
  const quick = values.quick;
  const num = (s: string, what: string, lo: number, hi: number): number => {
    const x = Number(s);
    if (!(x >= lo && x <= hi)) throw new Error(`--${what} takes ${lo}..${hi}, got ${s}`);
    return x;
  };
  return {
    nodes: parseList(values.nodes ?? (quick ? '3' : '3,5'), 'nodes', 1, 9),
    ranges: parseList(values.ranges ?? (quick ? '1,16' : '1,4,16,64'), 'ranges', 1, 256),
    writers: num(values.writers, 'writers', 1, 4096),
    seconds: num(values.seconds ?? (quick ? '5' : '10'), 'seconds', 1, 300),
    warmupSeconds: num(values.warmup ?? (quick ? '2' : '3'), 'warmup', 0, 60),
    replicas: num(values.replicas, 'replicas', 1, 9),
    out: values.out,
    leaders: leaderMode(values.leaders),
    sharedAt: sharedAt(values['shared-at'] ?? (quick ? '16' : '16,64')),
  };
}

async function http(
  base: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; json: unknown }> {
  const res = await fetch(`${base}${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    ...(body === undefined
      ? {}
      : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  let json: unknown = text;
  try {
    json = JSON.parse(text);
  } catch {
    // Not JSON: kept as text for the error message.
  }
  return { status: res.status, json };
}

/** Retries `attempt` until it returns non-null, at most `limitMs`; the error names `what`. */
async function until<T>(
  what: string,
  limitMs: number,
  attempt: () => Promise<T | null>,
): Promise<T> {
  const deadline = Date.now() + limitMs;
  let last: unknown = null;
  while (Date.now() < deadline) {
    try {
      const r = await attempt();
      if (r !== null) return r;
    } catch (err) {
      last = err;
    }
    await sleep(50);
  }
  throw new Error(`${what}: not done within ${limitMs} ms (last: ${String(last)})`);
}

interface ViewRange {
  id: number;
  start: string;
  replicas: number[];
  leader: number | null;
}

/** Every range of the split layout with its replicas and a leader its replicas agree on. */
async function rangeLayout(c: FlotillaCluster, ranges: number): Promise<RangeInfo[] | null> {
  const views = await Promise.all(
    c.ids.map(async (id) => {
      const r = await http(c.clientUrl(id), '/v1/ranges');
      if (r.status !== 200) return null;
      return { id, ranges: (r.json as { ranges: ViewRange[] }).ranges };
    }),
  );
  if (views.some((v) => v === null)) return null;
  const out: RangeInfo[] = [];
  for (let i = 0; i < ranges; i++) {
    const start = i === 0 ? '' : rangePrefix(i);
    let info: RangeInfo | null = null;
    for (const v of views) {
      const d = v?.ranges.find((x) => x.start === start);
      if (d === undefined) return null;
      // Only a replica's own view of the leader counts (others report what they learned).
      if (!d.replicas.includes(v?.id ?? 0)) continue;
      if (d.leader === null || d.leader === 0) return null;
      if (info === null) info = { index: i, id: d.id, replicas: d.replicas, leader: d.leader };
      else if (info.leader !== d.leader) return null;
    }
    if (info === null) return null;
    out.push(info);
  }
  return out;
}

/**
 * Hands leaderships over until every range is led by the node spreadLeaders chose for it and its
 * replicas agree, asking again for any range not there yet (an election may undo a transfer,
 * and a transfer asked of a range that moved is answered at once), at most SPREAD_LIMIT_MS.
 */
async function spreadLayout(
  c: FlotillaCluster,
  elected: readonly RangeInfo[],
): Promise<{ layout: RangeInfo[]; moved: number; requests: number; ms: number }> {
  const plan = spreadLeaders(elected, c.ids);
  const t0 = Date.now();
  let requests = 0;
  let lastRefusal = '';
  const layout = await until('leaders where asked', SPREAD_LIMIT_MS, async () => {
    lastRefusal = '';
    const now = await rangeLayout(c, elected.length);
    if (now === null) return null;
    const off = now.filter((r) => r.leader !== plan[r.index]);
    if (off.length === 0) return now;
    for (let i = 0; i < off.length; i += TRANSFERS_AT_ONCE)
      await Promise.all(
        off.slice(i, i + TRANSFERS_AT_ONCE).map(async (r) => {
          const to = plan[r.index] as number;
          requests++;
          const res = await http(c.clientUrl(to), '/v1/ranges/transfer-leadership', {
            range: r.id,
            to,
          });
          if (res.status !== 200)
            lastRefusal = `range ${r.id} to ${to}: ${res.status} ${JSON.stringify(res.json)}`;
        }),
      );
    if (lastRefusal !== '') throw new Error(lastRefusal);
    return null;
  });
  const moved = plan.filter((to, i) => to !== elected[i]?.leader).length;
  return { layout, moved, requests, ms: Date.now() - t0 };
}

async function splitInto(
  c: FlotillaCluster,
  ranges: number,
  replicas: number,
  log: (s: string) => void,
): Promise<void> {
  const keys = splitKeys(ranges).reverse();
  let k = 0;
  for (const key of keys) {
    const body: Record<string, unknown> = { key };
    if (replicas < c.size) body['replicas'] = roundRobinReplicas(k, c.size, replicas);
    k++;
    const via = c.clientUrl(c.ids[k % c.size] as number);
    await until(`split at ${key}`, 30_000, async () => {
      // A retried split may have been made by the attempt that failed to answer.
      const map = await http(via, '/v1/ranges');
      if (
        map.status === 200 &&
        (map.json as { ranges: ViewRange[] }).ranges.some((d) => d.start === key)
      )
        return true;
      const r = await http(via, '/v1/ranges/split', body);
      if (r.status === 200) return true;
      throw new Error(`${r.status} ${JSON.stringify(r.json)}`);
    });
    if (k % 16 === 0) log(`    ${k}/${keys.length} splits`);
  }
}

function readNode(pid: number): { cpu: ProcCpu; io: ProcIo | null } {
  const cpu = parseProcStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  let io: ProcIo | null = null;
  try {
    io = parseProcIo(readFileSync(`/proc/${pid}/io`, 'utf8'));
  } catch {
    // /proc/<pid>/io needs ptrace rights on some systems: the column reads "-".
  }
  return { cpu, io };
}

async function sampleNodes(c: FlotillaCluster): Promise<Map<number, NodeSample>> {
  const out = new Map<number, NodeSample>();
  await Promise.all(
    c.ids.map(async (id) => {
      const pid = c.pid(id);
      if (pid === null) throw new Error(`node ${id} is not running`);
      const { cpu, io } = readNode(pid);
      const m = sumBy(parsePrometheus(await c.metricsText(id)), 'flotilla_group_persists_total');
      out.set(id, { cpu, io, persists: [...m.values()].reduce((a, b) => a + b, 0) });
    }),
  );
  return out;
}

interface LoadOutcome {
  readonly ops: number;
  readonly errors: number;
  readonly errorsByCode: Record<string, number>;
  readonly latenciesMs: number[];
}

/** The closed loop: each writer writes its range's keys through that range's leader. */
async function drive(
  c: FlotillaCluster,
  layout: readonly RangeInfo[],
  o: Options,
  atMeasureStart: () => Promise<void>,
  label: string,
): Promise<LoadOutcome> {
  const conns = new Map<number, WireConnection[]>();
  for (const id of c.ids) {
    const port = c.binaryPort(id);
    if (port === null) throw new Error('no binary port');
    conns.set(
      id,
      await Promise.all(
        Array.from({ length: CONNECTIONS_PER_NODE }, () =>
          WireConnection.connect({ host: '127.0.0.1', port, timeoutMs: 5_000 }),
        ),
      ),
    );
  }
  const values = Array.from({ length: 8 }, (_, i) => randomValueB64(VALUE_BYTES, i + 1));
  const latencies: number[] = [];
  const errorsByCode: Record<string, number> = {};
  let errors = 0;
  let ops = 0;
  const t0 = performance.now();
  const measureFrom = t0 + o.warmupSeconds * 1000;
  const end = measureFrom + o.seconds * 1000;
  const measureStarted = (async () => {
    await sleep(o.warmupSeconds * 1000);
    await atMeasureStart();
  })();
  let shown = 0;
  const ticker = setInterval(() => {
    const e = (performance.now() - t0) / 1000;
    if (e - shown >= 5) {
      shown = e;
      process.stdout.write(`    ${label}: ${e.toFixed(0)} s, ${ops} writes counted\n`);
    }
  }, 500);
  const writer = async (w: number): Promise<void> => {
    const range = layout[w % layout.length] as RangeInfo;
    const conn = (conns.get(range.leader) as WireConnection[])[
      w % CONNECTIONS_PER_NODE
    ] as WireConnection;
    for (let n = 0; performance.now() < end; n++) {
      const start = performance.now();
      let code = 'OK';
      try {
        await conn.request(
          'put',
          {
            key: b64(rangeKey(range.index, w, n % 64)),
            value: values[n % values.length],
            encoding: 'base64',
          },
          { read: false },
        );
      } catch (err) {
        code = err instanceof FlotillaError ? err.code : 'ERROR';
        if (conn.closed) {
          errors++;
          errorsByCode['CONNECTION_LOST'] = (errorsByCode['CONNECTION_LOST'] ?? 0) + 1;
          return;
        }
      }
      const done = performance.now();
      if (start < measureFrom || done > end) {
        if (code !== 'OK') await sleep(5);
        continue;
      }
      if (code === 'OK') {
        ops++;
        latencies.push(done - start);
      } else {
        errors++;
        errorsByCode[code] = (errorsByCode[code] ?? 0) + 1;
        await sleep(5);
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: o.writers }, (_, w) => writer(w)));
    await measureStarted;
  } finally {
    clearInterval(ticker);
    for (const cs of conns.values()) for (const x of cs) x.close();
  }
  return { ops, errors, errorsByCode, latenciesMs: latencies };
}

/**
 * Checks that the nodes run with the journal layout asked: with walSync "shared" each data
 * directory (bench/eval/clusters.ts names them flotilla-<size>-m<id>) holds a node journal
 * file, with "per-group" none does. A setting that did not reach the nodes would otherwise
 * measure the default under the other name.
 */
function checkWalSync(dir: string, c: FlotillaCluster, walSync: WalSync): void {
  for (const id of c.ids) {
    const files = readdirSync(join(dir, `flotilla-${c.size}-m${id}`));
    const journal = files.some((f) => /^journal-[0-9a-f]{16}\.jnl$/.test(f));
    if (journal !== (walSync === 'shared'))
      throw new Error(
        `node ${id} runs walSync ${walSync} but its data directory ${journal ? 'holds' : 'lacks'} a node journal: [${files.join(', ')}]`,
      );
  }
}

function leadersPerNode(c: FlotillaCluster, layout: readonly RangeInfo[]): number[] {
  return c.ids.map((id) => layout.filter((r) => r.leader === id).length);
}

async function runCell(
  cell: { readonly nodes: number; readonly ranges: number; readonly walSync: WalSync },
  o: Options,
  procs: ProcessGroup,
  base: string,
): Promise<CellResult> {
  const { nodes, ranges, walSync } = cell;
  const label = `${nodes} nodes, ${ranges} range${ranges === 1 ? '' : 's'}, ${walSync}`;
  const log = (s: string): void => void process.stdout.write(`${s}\n`);
  log(`  ${label}: starting`);
  const dir = await mkdtemp(join(base, `n${nodes}-r${ranges}-${walSync}-`));
  // Placement off: the benchmark alone decides where leaders are (the loop would move them).
  const env = { FLOTILLA_PLACEMENT: 'off', FLOTILLA_WAL_SYNC: walSync };
  const c = new FlotillaCluster({ size: nodes, dir, procs, env });
  const setup0 = Date.now();
  try {
    await c.start();
    await until('range map', SETUP_LIMIT_MS, async () => {
      const r = await http(c.clientUrl(1), '/v1/ranges');
      return r.status === 200 ? true : null;
    });
    await splitInto(c, ranges, o.replicas, log);
    checkWalSync(dir, c, walSync);
    const elected = await until('every range led', SETUP_LIMIT_MS, () => rangeLayout(c, ranges));
    const electedLeadersPerNode = leadersPerNode(c, elected);
    let layout = elected;
    let spread: CellResult['spread'] = null;
    if (o.leaders === 'spread') {
      const s = await spreadLayout(c, elected);
      layout = s.layout;
      spread = { moved: s.moved, requests: s.requests, ms: s.ms };
      log(
        `  ${label}: leaders ${electedLeadersPerNode.join('/')} as elected, ${leadersPerNode(c, layout).join('/')} after ${s.moved} transfers (${s.requests} asked, ${(s.ms / 1000).toFixed(1)} s)`,
      );
    }
    const setupMs = Date.now() - setup0;
    const shares: NodeShare[] = c.ids.map((id) => ({
      leaders: layout.filter((r) => r.leader === id).length,
      replicas: layout.filter((r) => r.replicas.includes(id)).length,
    }));
    log(
      `  ${label}: ready in ${(setupMs / 1000).toFixed(1)} s; leaders per node ${shares.map((s) => s.leaders).join('/')}, replicas per node ${shares.map((s) => s.replicas).join('/')}`,
    );
    let before: Map<number, NodeSample> | null = null;
    let gen0 = process.cpuUsage();
    let t0 = 0;
    const load = await drive(
      c,
      layout,
      o,
      async () => {
        gen0 = process.cpuUsage();
        t0 = performance.now();
        before = await sampleNodes(c);
      },
      label,
    );
    const gen = process.cpuUsage(gen0);
    const secs = (performance.now() - t0) / 1000;
    const after = await sampleNodes(c);
    const b = before as Map<number, NodeSample> | null;
    if (b === null) throw new Error('the measured window never started');
    const later = await until('ranges after the run', 10_000, () => rangeLayout(c, ranges));
    const moved = later.filter((r, i) => r.leader !== layout[i]?.leader).length;
    const w = Math.max(1, load.ops);
    const perNode: NodeRow[] = c.ids.map((id, i) => {
      const x = b.get(id) as NodeSample;
      const y = after.get(id) as NodeSample;
      const cpuMs = cpuMsBetween(x.cpu, y.cpu, TICKS_PER_SEC);
      return {
        id,
        leaders: shares[i]?.leaders ?? 0,
        replicas: shares[i]?.replicas ?? 0,
        cpuMsPerWrite: cpuMs / w,
        cpuMsPerSec: cpuMs / secs,
        persistsPerWrite: (y.persists - x.persists) / w,
        storageKiBPerWrite:
          x.io === null || y.io === null ? null : (y.io.writeBytes - x.io.writeBytes) / 1024 / w,
      };
    });
    const clusterCpuMsPerWrite = perNode.reduce((a, r) => a + r.cpuMsPerWrite, 0);
    const loadgenCpuMsPerWrite = (gen.user + gen.system) / 1000 / w;
    const sorted = load.latenciesMs.sort((p, q) => p - q);
    const result: CellResult = {
      nodes,
      ranges,
      walSync,
      leaderMode: o.leaders,
      electedLeadersPerNode,
      spread,
      writers: o.writers,
      seconds: o.seconds,
      writesPerSec: load.ops / o.seconds,
      errors: load.errors,
      errorsByCode: load.errorsByCode,
      p50Ms: quantile(sorted, 0.5),
      p99Ms: quantile(sorted, 0.99),
      perNode,
      leadersChangedDuringRun: moved,
      clusterCpuMsPerWrite,
      loadgenCpuMsPerWrite,
      clusterPersistsPerWrite: perNode.reduce((a, r) => a + r.persistsPerWrite, 0),
      fit: fitLeaderFollower(
        perNode.map((r) => r.cpuMsPerWrite),
        shares,
        ranges,
      ),
      sharedCoresPredictedWritesPerSec: sharedMachineWritesPerSec({
        cores: cpus().length,
        clusterCpuMsPerWrite,
        loadgenCpuMsPerWrite,
      }),
      setupMs,
      loadAverage: loadavg().map((x) => Math.round(x * 100) / 100) as [number, number, number],
    };
    printCell(result);
    return result;
  } finally {
    await c.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

const f = (x: number, d = 0): string =>
  x.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d });

function printCell(r: CellResult): void {
  const e = r.errors > 0 ? `, ${r.errors} errors ${JSON.stringify(r.errorsByCode)}` : '';
  const fit =
    r.fit === null
      ? 'L/F not separable'
      : `L ${f(r.fit.leaderMs, 3)} ms, F ${f(r.fit.followerMs, 3)} ms`;
  console.log(
    `  => ${r.nodes} nodes, ${r.ranges} ranges, ${r.walSync}: ${f(r.writesPerSec)} writes/s, p50 ${f(r.p50Ms, 1)} ms, p99 ${f(r.p99Ms, 1)} ms${e}; ` +
      `cluster CPU ${f(r.clusterCpuMsPerWrite, 3)} ms/write + load generator ${f(r.loadgenCpuMsPerWrite, 3)}; ` +
      `${f(r.clusterPersistsPerWrite, 3)} durable writes/write; ${fit}; shared cores allow ${f(r.sharedCoresPredictedWritesPerSec)}/s; ` +
      `leaders moved during the run: ${r.leadersChangedDuringRun}; load ${r.loadAverage.join(' ')}`,
  );
  // With walSync "shared" a group's durable write is not a sync of its own (the journal's is shared).
  console.log(
    `     | node | leaders | replicas | CPU ms/write | CPU ms/s | ${r.walSync === 'shared' ? 'group writes' : 'syncs'}/write | storage KiB/write |`,
  );
  for (const n of r.perNode)
    console.log(
      `     | ${n.id} | ${n.leaders} | ${n.replicas} | ${f(n.cpuMsPerWrite, 3)} | ${f(n.cpuMsPerSec)} | ${f(n.persistsPerWrite, 3)} | ${n.storageKiBPerWrite === null ? '-' : f(n.storageKiBPerWrite, 2)} |`,
    );
}

async function main(): Promise<void> {
  const o = options();
  const procs = new ProcessGroup();
  const onExit = (): void => procs.killAllSync();
  process.once('exit', onExit);
  const onSignal = (signal: NodeJS.Signals): void => {
    procs.killAllSync();
    process.exit(signal === 'SIGINT' ? 130 : 143);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const base = await mkdtemp(join(tmpdir(), 'flotilla-ranges-throughput-'));
  const started = new Date();
  console.log(
    `ranges throughput: nodes ${o.nodes.join(',')} × ranges ${o.ranges.join(',')} (walSync "shared" too at ${o.sharedAt.join(',') || 'none'}), leaders ${o.leaders}, ${o.writers} writers, ` +
      `${o.warmupSeconds} s warm-up + ${o.seconds} s, ${cpus().length} cores, load ${loadavg()
        .map((x) => x.toFixed(2))
        .join(' ')}`,
  );
  const cells: CellResult[] = [];
  try {
    for (const nodes of o.nodes)
      for (const ranges of o.ranges) {
        cells.push(await runCell({ nodes, ranges, walSync: 'per-group' }, o, procs, base));
        if (o.sharedAt.includes(ranges))
          cells.push(await runCell({ nodes, ranges, walSync: 'shared' }, o, procs, base));
      }
  } finally {
    await procs.stopAll();
    await rm(base, { recursive: true, force: true });
  }
  console.log(
    '\n| nodes | ranges | walSync | writes/s | p50 ms | p99 ms | errors | leaders per node (elected) | cluster CPU ms/write | durable group writes/write | load |',
  );
  console.log('| ---: | ---: | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |');
  for (const r of cells)
    console.log(
      `| ${r.nodes} | ${r.ranges} | ${r.walSync} | ${f(r.writesPerSec)} | ${f(r.p50Ms)} | ${f(r.p99Ms)} | ${r.errors} | ${r.perNode.map((n) => n.leaders).join('/')} (${r.electedLeadersPerNode.join('/')}) | ${f(r.clusterCpuMsPerWrite, 2)} | ${f(r.clusterPersistsPerWrite, 2)} | ${r.loadAverage[0]} |`,
    );
  mkdirSync(o.out, { recursive: true });
  const file = join(o.out, `ranges-throughput-${started.toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(
    file,
    JSON.stringify({ started: started.toISOString(), options: o, cells }, null, 2),
  );
  console.log(`\nresults: ${file}`);
}

void main().catch((err: unknown) => {
  process.stderr.write(`ranges throughput: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
