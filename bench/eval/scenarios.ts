// The evaluation's scenarios. Each runs against a cluster the caller started and returns plain
// data for results.json; nothing here starts or stops processes except failover's kill/restart.

import type { BenchCluster, SystemName } from './clusters.js';
import { cpuPerOp, readCpu, type CpuPerOp, type CpuReading } from './cpu.js';
import { runClosedLoop, type LoadResult } from './loadgen.js';
import { runClosedLoopBinary, type BinaryLoadOptions } from './loadgen-binary.js';
import { delta, parsePrometheus, sumBy } from './prom.js';
import {
  b64,
  closedLoopSession,
  getOp,
  putOp,
  randomValueB64,
  type BenchConsistency,
  type HttpOp,
} from './protocol.js';
import { peerBytesSent } from './wire.js';

export interface Timing {
  readonly warmupMs: number;
  readonly durationMs: number;
}

export interface Progress {
  /** Called every ~0.5 s while a load point runs. */
  tick(label: string, elapsedMs: number, totalMs: number, ops: number): void;
  done(label: string, summary: string): void;
}

export interface WirePerWrite {
  /** Raft messages sent by all members per committed write, by type (Flotilla's /metrics). */
  readonly messagesByType: Record<string, number> | null;
  readonly messages: number | null;
  /** Peer-link payload bytes per write (kernel tcp_info, all members). */
  readonly peerBytes: number | null;
  /** etcd's own etcd_network_peer_sent_bytes_total per write, as a cross-check. */
  readonly reportedPeerBytes: number | null;
}

export interface WritePoint extends LoadResult {
  readonly valueBytes: number;
  readonly wire: WirePerWrite;
  /**
   * CPU per committed write, µs, by member and for the load generator; null when it could not
   * be measured (a member stopped, the leader changed). Absent in results from before it was
   * measured.
   */
  readonly cpuPerOpUs?: CpuPerOp | null;
}

const keysPerClient = 1000;

/** Distinct keys per client, reused cyclically so the key space stays bounded. */
export function writer(system: SystemName, valueBytes: number, runTag: string) {
  const values = Array.from({ length: 8 }, (_, i) => randomValueB64(valueBytes, i + 1));
  return (client: number, n: number): HttpOp =>
    putOp(
      system,
      b64(`bench/${client}/${n % keysPerClient}`),
      values[n % values.length] as string,
      system === 'flotilla' ? closedLoopSession(`${runTag}-${client}`, n) : undefined,
    );
}

interface Counters {
  readonly messages: Map<string, number>;
  readonly etcdPeerBytes: Map<string, number>;
  readonly wireBytes: number | null;
}

async function counters(c: BenchCluster): Promise<Counters> {
  const texts = await Promise.all(c.running().map((id) => c.metricsText(id).catch(() => '')));
  const samples = texts.flatMap(parsePrometheus);
  return {
    messages: sumBy(samples, 'flotilla_messages_sent_total', 'type'),
    etcdPeerBytes: sumBy(samples, 'etcd_network_peer_sent_bytes_total'),
    wireBytes: await peerBytesSent(c.peerPorts()),
  };
}

function perWrite(before: Counters, after: Counters, ops: number): WirePerWrite {
  const per = (x: number): number => Math.round((x / Math.max(1, ops)) * 1000) / 1000;
  const msgs = delta(before.messages, after.messages);
  const byType: Record<string, number> = {};
  let total = 0;
  for (const [k, v] of msgs) {
    byType[k] = per(v);
    total += v;
  }
  const etcdBytes = delta(before.etcdPeerBytes, after.etcdPeerBytes).get('');
  const wire =
    before.wireBytes === null || after.wireBytes === null
      ? null
      : per(after.wireBytes - before.wireBytes);
  return {
    messagesByType: msgs.size === 0 ? null : byType,
    messages: msgs.size === 0 ? null : per(total),
    peerBytes: wire,
    reportedPeerBytes: etcdBytes === undefined ? null : per(etcdBytes),
  };
}

/** What a point measures beside its load: peer traffic and CPU, from the end of its warm-up. */
interface PointMeter {
  wire(ops: number): Promise<WirePerWrite>;
  cpu(ops: number): Promise<CpuPerOp | null>;
}

/**
 * Starts measuring a point once its warm-up is over. CPU is read (synchronously, every member
 * and this process) when the warm-up ends and again when the measured window ends, both by
 * timer, so the window matches the ops counted; `cpuPerOp` corrects for a timer firing late.
 * The peer counters are read after the first CPU reading (their /metrics scrape is inside the
 * CPU window: one scrape per member, small beside thousands of writes) and again once the load
 * has stopped; their deltas cover the measured window plus the load's tail, divided by the
 * measured ops: close enough for per-write ratios, and stated as such in the report.
 *
 * `cpu` gives null when the member that led at the start no longer leads at the end: the
 * leader's and the followers' figures would then be mixed.
 */
function measurePoint(
  c: BenchCluster,
  leaderId: number,
  t: Timing,
  o: { readonly wire: boolean } = { wire: true },
): PointMeter {
  const pids = new Map(c.ids.map((id) => [id, c.pid(id)] as const));
  let before: Counters | undefined;
  let cpuFrom: CpuReading | undefined;
  let cpuTo: CpuReading | undefined;
  const snap = setTimeout(() => {
    cpuFrom = readCpu(pids);
    if (o.wire) void counters(c).then((x) => (before = x));
  }, t.warmupMs);
  const snapEnd = setTimeout(() => (cpuTo = readCpu(pids)), t.warmupMs + t.durationMs);
  return {
    async wire(ops) {
      clearTimeout(snap);
      const after = await counters(c);
      return before === undefined
        ? { messagesByType: null, messages: null, peerBytes: null, reportedPeerBytes: null }
        : perWrite(before, after, ops);
    },
    async cpu(ops) {
      clearTimeout(snap);
      clearTimeout(snapEnd);
      const end = cpuTo ?? readCpu(pids);
      if (cpuFrom === undefined) return null;
      const still = await c.view(leaderId);
      if (still?.leads !== true) return null;
      return cpuPerOp(cpuFrom, end, { leaderId, ops, durationMs: t.durationMs });
    },
  };
}

export async function writePoint(
  c: BenchCluster,
  clients: number,
  valueBytes: number,
  t: Timing,
  p: Progress,
  label: string,
): Promise<WritePoint> {
  const leader = await c.waitForLeader();
  const meter = measurePoint(c, leader, t);
  const r = await runClosedLoop({
    urls: [c.clientUrl(leader)],
    clients,
    warmupMs: t.warmupMs,
    durationMs: t.durationMs,
    next: writer(c.system, valueBytes, `w${Date.now().toString(36)}`),
    onTick: (e, total, ops) => p.tick(label, e, total, ops),
  });
  const cpuPerOpUs = await meter.cpu(r.ops);
  const wire = await meter.wire(r.ops);
  p.done(label, summary(r) + cpuNote(cpuPerOpUs));
  return { ...r, valueBytes, wire, cpuPerOpUs };
}

/**
 * A write point over Flotilla's binary client protocol: the same keys, values (base64, as the
 * JSON fronts carry them) and sessions as `writePoint`, pipelined over `connections` shared
 * connections to the leader's binary port.
 */
export async function binaryWritePoint(
  c: BenchCluster,
  clients: number,
  connections: number,
  valueBytes: number,
  t: Timing,
  p: Progress,
  label: string,
): Promise<WritePoint & { connections: number }> {
  const values = Array.from({ length: 8 }, (_, i) => randomValueB64(valueBytes, i + 1));
  const runTag = `b${Date.now().toString(36)}`;
  const { r, meter } = await binaryLoopAtLeader(c, clients, connections, t, p, label, {
    wire: true,
    next: (client, n) => ({
      op: 'put',
      body: {
        key: b64(`bench/${client}/${n % keysPerClient}`),
        value: values[n % values.length],
        encoding: 'base64',
        ...closedLoopSession(`${runTag}-${client}`, n),
      },
    }),
  });
  const cpuPerOpUs = await meter.cpu(r.ops);
  const wire = await meter.wire(r.ops);
  p.done(label, summary(r) + cpuNote(cpuPerOpUs));
  return { ...r, valueBytes, wire, cpuPerOpUs, connections };
}

/** A closed loop over the binary protocol to the leader's binary port, metered from its start. */
async function binaryLoopAtLeader(
  c: BenchCluster,
  clients: number,
  connections: number,
  t: Timing,
  p: Progress,
  label: string,
  o: { readonly wire: boolean; readonly next: BinaryLoadOptions['next'] },
): Promise<{ r: LoadResult; meter: PointMeter }> {
  const leader = await c.waitForLeader();
  const port = c.binaryPort(leader);
  if (port === null) throw new Error(`${c.system} has no binary client protocol`);
  const meter = measurePoint(c, leader, t, { wire: o.wire });
  const r = await runClosedLoopBinary({
    host: '127.0.0.1',
    port,
    connections,
    clients,
    warmupMs: t.warmupMs,
    durationMs: t.durationMs,
    next: o.next,
    onTick: (e, total, ops) => p.tick(label, e, total, ops),
  });
  return { r, meter };
}

/**
 * Warms a freshly started cluster: `clients` closed-loop writers (the points' keys and 256-byte
 * values) to the leader for `durationMs`, nothing recorded. Node compiles Flotilla's write path
 * during its first thousands of writes; without this the first point measures compilation.
 * Done the same way for both systems.
 */
export async function warmCluster(
  c: BenchCluster,
  clients: number,
  durationMs: number,
  p: Progress,
): Promise<void> {
  if (durationMs <= 0) return;
  const leader = await c.waitForLeader();
  const label = `${c.system} cluster warm-up (not measured), ${clients} clients`;
  const r = await runClosedLoop({
    urls: [c.clientUrl(leader)],
    clients,
    warmupMs: 0,
    durationMs,
    next: writer(c.system, 256, `u${Date.now().toString(36)}`),
    onTick: (e, total, ops) => p.tick(label, e, total, ops),
  });
  p.done(label, summary(r));
}

/** Says on the console when a point's CPU could not be measured (the report shows "–"). */
function cpuNote(c: CpuPerOp | null): string {
  return c === null ? '; CPU per op not measured (the leader changed or a member stopped)' : '';
}

export function summary(r: LoadResult): string {
  const e = r.errors > 0 ? `, ${r.errors} errors ${JSON.stringify(r.errorsByStatus)}` : '';
  return `${r.throughputOpsPerSec.toLocaleString('en-US')} ops/s, p50 ${r.latencyMs.p50} ms, p99 ${r.latencyMs.p99} ms${e}`;
}

export interface ReadPoint extends LoadResult {
  readonly consistency: BenchConsistency;
  readonly target: 'leader' | 'follower';
  /** CPU per read, as `WritePoint.cpuPerOpUs`. */
  readonly cpuPerOpUs?: CpuPerOp | null;
}

/**
 * Reads at the leader over Flotilla's binary client protocol: the same closed-loop readers and
 * keys as `readPoint`, pipelined over `connections` connections to the leader's binary port.
 */
export async function binaryReadPoint(
  c: BenchCluster,
  clients: number,
  connections: number,
  consistency: ReadPoint['consistency'],
  t: Timing,
  p: Progress,
  label: string,
): Promise<ReadPoint & { connections: number }> {
  // The HTTP read's fields (getOp), the key aside, sent as the binary protocol's range request.
  const fields = JSON.parse(getOp('flotilla', '', consistency).body) as Record<string, unknown>;
  const { r, meter } = await binaryLoopAtLeader(c, clients, connections, t, p, label, {
    wire: false,
    next: (client, n) => ({ op: 'range', body: { ...fields, key: b64(readKey(client, n)) } }),
  });
  const cpuPerOpUs = await meter.cpu(r.ops);
  p.done(label, summary(r) + cpuNote(cpuPerOpUs));
  return { ...r, consistency, target: 'leader', cpuPerOpUs, connections };
}

/** The key a reader reads: one of the 1,000 keys `preloadKeys` fills, spread over the readers. */
export function readKey(client: number, n: number): string {
  return `read/${(client * 7 + n) % 1000}`;
}

/** Fills the keys the read scenarios read (one per reader slot, 256-byte values). */
export async function preloadKeys(c: BenchCluster, count: number): Promise<void> {
  const leader = await c.waitForLeader();
  const value = randomValueB64(256, 7);
  const clients = Math.min(64, count);
  await runClosedLoop({
    urls: [c.clientUrl(leader)],
    clients,
    warmupMs: 0,
    durationMs: 1_500,
    next: (client, n) => putOp(c.system, b64(`read/${(client + n * clients) % count}`), value),
  });
}

export async function readPoint(
  c: BenchCluster,
  clients: number,
  consistency: ReadPoint['consistency'],
  target: ReadPoint['target'],
  t: Timing,
  p: Progress,
  label: string,
): Promise<ReadPoint> {
  const leader = await c.waitForLeader();
  const followers = c.ids.filter((id) => id !== leader);
  const urls = target === 'leader' ? [c.clientUrl(leader)] : followers.map((id) => c.clientUrl(id));
  // Reads send no entries: their peer traffic is not measured.
  const meter = measurePoint(c, leader, t, { wire: false });
  const r = await runClosedLoop({
    urls,
    clients,
    warmupMs: t.warmupMs,
    durationMs: t.durationMs,
    next: (client, n) => getOp(c.system, b64(readKey(client, n)), consistency),
    onTick: (e, total, ops) => p.tick(label, e, total, ops),
  });
  const cpuPerOpUs = await meter.cpu(r.ops);
  p.done(label, summary(r) + cpuNote(cpuPerOpUs));
  return { ...r, consistency, target, cpuPerOpUs };
}
