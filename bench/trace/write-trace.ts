// Where one write's time goes: a 3-node cluster (real WAL storage with its fsyncs, TCP
// between the nodes, HTTP for the client, all on 127.0.0.1), one client writing sequentially
// to the leader, and every step of each write timed through the nodes' trace hooks
// (src/host/trace.ts). Prints the median and p90 of each step, then the CPU per write (user +
// system of the nodes and the clients) at 1 and at 64 clients.
//
//   node dist/bench/trace/write-trace.js [--processes] [--writes 2000] [--warmup 200]
//                                        [--cpu-writes 4000] [--value-bytes 100] [--dir <path>]
//
// --processes runs each node in a child process of its own, as deployed, and collects its
// trace points over IPC (wall-clock times, microsecond resolution); without it the nodes
// share this process's event loop, so a hop between them also waits for the sender's work.
// The follower a step names is the one whose acknowledgement reached the leader first: the one
// that made the write commit. The leader's write runs alongside the follower's path; a step
// "max(ack, leader persist end) -> committed" joins them.

import { mkdtempSync, rmSync } from 'node:fs';
import { fork, type ChildProcess } from 'node:child_process';
import { Agent, request } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NodeStatus } from '../../src/api/types.js';
import type { TraceEvent } from '../../src/host/trace.js';
import { resolveNodeConfig } from '../../src/server/config.js';
import { FlotillaNode } from '../../src/server/node.js';
import { benchArgs } from '../args.js';

const NODES = 3;
const LEADER_WAIT_MS = 10_000;

/** Wall-clock milliseconds with microsecond resolution: comparable across processes. */
function now(): number {
  return performance.timeOrigin + performance.now();
}

interface Point {
  readonly node: number;
  readonly event: TraceEvent;
  readonly index: number;
  readonly peer: number;
  readonly t: number;
}

/** The trace points of a run, by node, event, index (and peer), first occurrence kept. */
class Recorder {
  recording = false;
  /** HTTP points on the leader, in order (they carry no index). */
  readonly http: Point[] = [];
  private readonly byKey = new Map<string, number>();

  hook(node: number): (event: TraceEvent, index: number, peer: number) => void {
    return (event, index, peer) => {
      if (this.recording) this.add({ node, event, index, peer, t: now() });
    };
  }

  add(p: Point): void {
    if (p.event.startsWith('http-')) {
      this.http.push(p);
      return;
    }
    const key = `${p.node}:${p.event}:${p.index}:${p.peer}`;
    if (!this.byKey.has(key)) this.byKey.set(key, p.t);
  }

  at(node: number, event: TraceEvent, index: number, peer = 0): number | undefined {
    return this.byKey.get(`${node}:${event}:${index}:${peer}`);
  }

  /** The proposal index of each write (the leader proposes them in order). */
  proposals(leader: number): number[] {
    const out: number[] = [];
    for (const key of this.byKey.keys()) {
      const [node, event, index] = key.split(':');
      if (Number(node) === leader && event === 'proposed') out.push(Number(index));
    }
    return out.sort((a, b) => a - b);
  }
}

async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
          const s = createServer();
          s.once('error', reject);
          s.listen(0, '127.0.0.1', () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as { port: number }).port);
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  return ports;
}

/** A member of the cluster, in this process or in a child process of its own. */
interface Member {
  readonly id: number;
  status(): Promise<NodeStatus>;
  /** Starts or stops recording trace points (into the shared recorder, or the child's). */
  record(on: boolean): Promise<void>;
  /** The points recorded since the last call (a child's; in-process ones are already shared). */
  points(): Promise<Point[]>;
  /** CPU used by the member's process since it started, in microseconds (0: this process). */
  cpuUs(): Promise<number>;
  close(): Promise<void>;
}

interface ClusterSpec {
  readonly spec: string;
  readonly client: (id: number) => string;
}

async function clusterSpec(): Promise<ClusterSpec> {
  const ports = await freePorts(NODES * 2);
  const client = (id: number) => `127.0.0.1:${ports[NODES + id - 1] as number}`;
  const spec = Array.from({ length: NODES }, (_, i) => i + 1)
    .map((id) => `${id}=127.0.0.1:${ports[id - 1] as number}@http://${client(id)}`)
    .join(',');
  return { spec, client };
}

function startNode(
  dir: string,
  c: { spec: string; listenClient: string },
  id: number,
  trace: ReturnType<Recorder['hook']>,
): Promise<FlotillaNode> {
  return FlotillaNode.start(
    resolveNodeConfig({
      id,
      dataDir: join(dir, `node${id}`),
      initialCluster: c.spec,
      listenClient: c.listenClient,
      logLevel: 'silent',
    }),
    { trace },
  );
}

async function startInProcess(dir: string, rec: Recorder): Promise<Member[]> {
  const c = await clusterSpec();
  const ids = Array.from({ length: NODES }, (_, i) => i + 1);
  const nodes = await Promise.all(
    ids.map((id) => startNode(dir, { spec: c.spec, listenClient: c.client(id) }, id, rec.hook(id))),
  );
  return nodes.map((n, i) => ({
    id: i + 1,
    status: () => Promise.resolve(n.nodeStatus()),
    record: (on) => {
      rec.recording = on;
      return Promise.resolve();
    },
    points: () => Promise.resolve([]),
    cpuUs: () => Promise.resolve(0),
    close: () => n.close(),
  }));
}

type Request = { readonly op: 'status' | 'record' | 'stop' | 'points' | 'cpu' | 'close' };

/** A member in a child process, driven over IPC: requests are answered in order. */
function childMember(id: number, child: ChildProcess): Member {
  const waiting: { resolve: (m: unknown) => void; reject: (e: Error) => void }[] = [];
  child.on('message', (m) => waiting.shift()?.resolve(m));
  const exited = new Promise<void>((resolve) =>
    child.once('exit', (code) => {
      for (const w of waiting.splice(0)) w.reject(new Error(`member ${id} exited (${code})`));
      resolve();
    }),
  );
  const ask = <T>(op: Request['op']): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      waiting.push({ resolve: (m) => resolve(m as T), reject });
      child.send({ op });
    });
  return {
    id,
    status: () => ask<NodeStatus>('status'),
    record: async (on) => void (await ask(on ? 'record' : 'stop')),
    points: () => ask<Point[]>('points'),
    cpuUs: () => ask<number>('cpu'),
    close: async () => {
      if (child.exitCode === null) child.send({ op: 'close' });
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

async function startProcesses(dir: string): Promise<Member[]> {
  const c = await clusterSpec();
  const ids = Array.from({ length: NODES }, (_, i) => i + 1);
  return Promise.all(
    ids.map(async (id) => {
      const child = fork(fileURLToPath(import.meta.url), [
        '--child',
        JSON.stringify({ id, dir, spec: c.spec, listenClient: c.client(id) }),
      ]);
      await new Promise<void>((resolve, reject) => {
        child.once('message', () => resolve());
        child.once('exit', (code) => reject(new Error(`member ${id} exited (${code})`)));
      });
      return childMember(id, child);
    }),
  );
}

/** The child side: one node, its trace points kept until the parent collects them. */
async function runChild(arg: string): Promise<void> {
  const o = JSON.parse(arg) as { id: number; dir: string; spec: string; listenClient: string };
  const rec = new Recorder();
  const kept: Point[] = [];
  rec.add = (p) => void kept.push(p);
  const node = await startNode(o.dir, o, o.id, rec.hook(o.id));
  const send = (m: unknown) => process.send?.(m);
  process.on('message', (m: Request) => {
    switch (m.op) {
      case 'status':
        return send(node.nodeStatus());
      case 'record':
      case 'stop':
        rec.recording = m.op === 'record';
        return send({});
      case 'points':
        return send(kept.splice(0));
      case 'cpu': {
        const u = process.cpuUsage();
        return send(u.user + u.system);
      }
      case 'close':
        void node.close().then(() => process.exit(0));
    }
  });
  send({ started: o.id });
}

async function waitForLeader(members: Member[]): Promise<NodeStatus> {
  const deadline = performance.now() + LEADER_WAIT_MS;
  for (;;) {
    const all = await Promise.all(members.map((m) => m.status()));
    const leader = all.find((s) => s.role === 'leader');
    // Wait for the term's no-op to apply, so the first write does not pay for it.
    if (leader !== undefined && leader.commit > 0 && leader.applied >= leader.commit) return leader;
    if (performance.now() > deadline)
      throw new Error(
        `No leader within ${LEADER_WAIT_MS} ms: ${JSON.stringify(all.map((s) => s.role))}`,
      );
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** One client: a keep-alive connection writing `count` puts in sequence. */
function makeClient(
  port: number,
  valueBytes: number,
): { put: (key: string) => Promise<number>; close: () => void } {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const value = 'v'.repeat(valueBytes);
  const put = (key: string) =>
    new Promise<number>((resolve, reject) => {
      const body = JSON.stringify({ key, value });
      const started = performance.now();
      const req = request(
        {
          host: '127.0.0.1',
          port,
          path: '/v1/kv/put',
          method: 'POST',
          agent,
          headers: { 'content-type': 'application/json', 'content-length': body.length },
        },
        (res) => {
          res.resume();
          res.on('end', () => {
            if (res.statusCode !== 200) reject(new Error(`put answered ${res.statusCode}`));
            else resolve(performance.now() - started);
          });
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  return { put, close: () => agent.destroy() };
}

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN;
}

const STEPS = [
  'received -> parsed (body, turn)',
  'parsed -> proposed',
  'proposed -> append sent',
  'append sent -> follower received',
  'follower received -> persist start',
  'follower persist (fsync)',
  'follower persist end -> ack sent',
  'ack sent -> leader received',
  'proposed -> leader persist start',
  'leader persist (fsync)',
  'max(ack, leader persist end) -> committed',
  'committed -> applied',
  'applied -> answer written',
  'server total (received -> answered)',
  'client round trip',
] as const;

/** Each write's steps, in ms, from the trace points of a sequential run. */
function steps(rec: Recorder, leader: number, rtts: number[]): Map<string, number[]> {
  const out = new Map<string, number[]>(STEPS.map((s) => [s, []]));
  const add = (step: (typeof STEPS)[number], ms: number | undefined) => {
    if (ms !== undefined && Number.isFinite(ms)) out.get(step)?.push(ms);
  };
  const indexes = rec.proposals(leader);
  const http = rec.http.filter((p) => p.node === leader);
  const followers = [1, 2, 3].filter((id) => id !== leader);
  for (const [w, index] of indexes.entries()) {
    const [received, parsed, answered] = [0, 1, 2].map((k) => http[w * 3 + k]?.t);
    const L = (e: TraceEvent, peer = 0) => rec.at(leader, e, index, peer);
    const proposed = L('proposed');
    // The follower whose acknowledgement arrived first made the write commit.
    const f = followers
      .map((id) => ({ id, t: L('ack-received', id) ?? Infinity }))
      .sort((a, b) => a.t - b.t)[0];
    if (f === undefined || received === undefined || answered === undefined) continue;
    const F = (e: TraceEvent, peer = 0) => rec.at(f.id, e, index, peer);
    const sub = (a: number | undefined, b: number | undefined) =>
      a === undefined || b === undefined ? undefined : a - b;
    add(STEPS[0], sub(parsed, received));
    add(STEPS[1], sub(proposed, parsed));
    add(STEPS[2], sub(L('append-sent', f.id), proposed));
    add(STEPS[3], sub(F('append-received', leader), L('append-sent', f.id)));
    add(STEPS[4], sub(F('persist-start'), F('append-received', leader)));
    add(STEPS[5], sub(F('persist-end'), F('persist-start')));
    add(STEPS[6], sub(F('ack-sent', leader), F('persist-end')));
    add(STEPS[7], sub(f.t, F('ack-sent', leader)));
    add(STEPS[8], sub(L('persist-start'), proposed));
    add(STEPS[9], sub(L('persist-end'), L('persist-start')));
    const ready = Math.max(f.t, L('persist-end') ?? Infinity);
    add(STEPS[10], sub(L('committed'), ready));
    add(STEPS[11], sub(L('applied'), L('committed')));
    add(STEPS[12], sub(answered, L('applied')));
    add(STEPS[13], answered - received);
    add(STEPS[14], rtts[w]);
  }
  return out;
}

function printSteps(table: Map<string, number[]>): void {
  const fmt = (ms: number) => ms.toFixed(3).padStart(8);
  const width = Math.max(...STEPS.map((s) => s.length));
  console.log(`| ${'step'.padEnd(width)} | p50 ms   | p90 ms   | n     |`);
  console.log(`| ${'-'.repeat(width)} | -------- | -------- | ----- |`);
  for (const [step, xs] of table)
    console.log(
      `| ${step.padEnd(width)} | ${fmt(quantile(xs, 0.5))} | ${fmt(quantile(xs, 0.9))} | ${String(xs.length).padStart(5)} |`,
    );
}

/** CPU (user + system, all nodes and the clients) per write with `clients` writing at once. */
async function cpuPerWrite(
  members: Member[],
  port: number,
  clients: number,
  writes: number,
  valueBytes: number,
): Promise<{ cpuUsPerWrite: number; writesPerSec: number }> {
  const cs = Array.from({ length: clients }, () => makeClient(port, valueBytes));
  const perClient = Math.ceil(writes / clients);
  const cpuUs = async () => {
    const u = process.cpuUsage();
    const children = await Promise.all(members.map((m) => m.cpuUs()));
    return u.user + u.system + children.reduce((a, b) => a + b, 0);
  };
  const cpu0 = await cpuUs();
  const t0 = performance.now();
  await Promise.all(
    cs.map(async (c, i) => {
      for (let k = 0; k < perClient; k++) await c.put(`cpu-${i}-${k % 64}`);
    }),
  );
  const elapsedMs = performance.now() - t0;
  const cpu = (await cpuUs()) - cpu0;
  for (const c of cs) c.close();
  const done = perClient * clients;
  return {
    cpuUsPerWrite: cpu / done,
    writesPerSec: (done / elapsedMs) * 1000,
  };
}

async function main(): Promise<void> {
  const { values } = benchArgs({
    options: {
      writes: { type: 'string', default: '2000' },
      warmup: { type: 'string', default: '200' },
      'cpu-writes': { type: 'string', default: '4000' },
      'value-bytes': { type: 'string', default: '100' },
      processes: { type: 'boolean', default: false },
      dir: { type: 'string' },
      child: { type: 'string' },
    },
  });
  if (values.child !== undefined) return runChild(values.child);
  const writes = Number(values.writes);
  const warmup = Number(values.warmup);
  const cpuWrites = Number(values['cpu-writes']);
  const valueBytes = Number(values['value-bytes']);
  for (const [name, v] of Object.entries({ writes, warmup, cpuWrites, valueBytes }))
    if (!Number.isInteger(v) || v < 0) throw new RangeError(`--${name} must be an integer >= 0`);
  const dir = mkdtempSync(join(values.dir ?? tmpdir(), 'flotilla-trace-'));
  const rec = new Recorder();
  const members = values.processes ? await startProcesses(dir) : await startInProcess(dir, rec);
  const where = values.processes ? 'one process per node' : 'all in one process';
  try {
    const leader = await waitForLeader(members);
    const port = Number(new URL(leader.members[leader.id - 1]?.client ?? '').port);
    const c = makeClient(port, valueBytes);
    for (let i = 0; i < warmup; i++) await c.put(`warm-${i % 64}`);
    const rtts: number[] = [];
    await Promise.all(members.map((m) => m.record(true)));
    for (let i = 0; i < writes; i++) rtts.push(await c.put(`k-${i % 64}`));
    await Promise.all(members.map((m) => m.record(false)));
    for (const m of members) for (const p of await m.points()) rec.add(p);
    c.close();
    console.log(
      `${writes} sequential writes of ${valueBytes}-byte values, 1 client, leader ${leader.id}, ${where}`,
    );
    printSteps(steps(rec, leader.id, rtts));
    for (const clients of [1, 64]) {
      const r = await cpuPerWrite(members, port, clients, cpuWrites, valueBytes);
      console.log(
        `CPU per write at ${clients} client(s): ${r.cpuUsPerWrite.toFixed(0)} us ` +
          `(${r.writesPerSec.toFixed(0)} writes/s; the nodes and the clients, ${where})`,
      );
    }
  } finally {
    await Promise.all(members.map((m) => m.close()));
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
