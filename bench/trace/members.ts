// A 3-member cluster for the trace tools (write-trace.ts, queue-trace.ts): real WAL storage
// with its syncs, TCP between the members, HTTP and the binary protocol for clients, all on
// 127.0.0.1, each member with a trace hook (src/host/trace.ts) on one Raft group. The members run
// in this process or each in a child process of its own (member-child.ts), whose points are
// collected over IPC; times are wall-clock milliseconds with microsecond resolution, comparable
// across processes.

import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NodeStatus } from '../../src/api/types.js';
import type { TraceEvent } from '../../src/host/trace.js';
import { resolveNodeConfig } from '../../src/server/config.js';
import type { QUEUE_GROUP } from '../../src/server/node.js';
import { FlotillaNode, KV_GROUP } from '../../src/server/node.js';
import { freePorts } from '../eval/procs.js';

export const NODES = 3;
const LEADER_WAIT_MS = 10_000;

export type TracedGroup = typeof KV_GROUP | typeof QUEUE_GROUP;

/** Wall-clock milliseconds with microsecond resolution: comparable across processes. */
export function now(): number {
  return performance.timeOrigin + performance.now();
}

export interface Point {
  readonly node: number;
  readonly event: TraceEvent;
  readonly index: number;
  readonly peer: number;
  readonly t: number;
}

/** True for the points a client request's server makes: they carry no log index. */
export function isClientPoint(e: TraceEvent): boolean {
  return e.startsWith('http-') || e.startsWith('wire-');
}

/** The trace points of a run: every point in arrival order, and by node, event, index, peer. */
export class Recorder {
  recording = false;
  /** Every point, in the order recorded. */
  readonly all: Point[] = [];
  /** HTTP points, in order (they carry no index). */
  readonly http: Point[] = [];
  private readonly byKey = new Map<string, number>();

  hook(node: number): (event: TraceEvent, index: number, peer: number) => void {
    return (event, index, peer) => {
      if (this.recording) this.add({ node, event, index, peer, t: now() });
    };
  }

  add(p: Point): void {
    this.all.push(p);
    if (p.event.startsWith('http-')) {
      this.http.push(p);
      return;
    }
    if (isClientPoint(p.event)) return;
    const key = `${p.node}:${p.event}:${p.index}:${p.peer}`;
    if (!this.byKey.has(key)) this.byKey.set(key, p.t);
  }

  /** The first time `node` recorded `event` for exactly `index` (and `peer`). */
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

/** A member of the cluster, in this process or in a child process of its own. */
export interface Member {
  readonly id: number;
  /** Its process id (this process's for a member started in it). */
  readonly pid: number;
  status(): Promise<NodeStatus>;
  /** Starts or stops recording trace points (into the shared recorder, or the child's). */
  record(on: boolean): Promise<void>;
  /** The points recorded since the last call (a child's; in-process ones are already shared). */
  points(): Promise<Point[]>;
  /** CPU used by the member's process since it started, in microseconds (0: this process). */
  cpuUs(): Promise<number>;
  close(): Promise<void>;
}

/** What a member needs to start: its id, data directory, the cluster and its own addresses. */
export interface MemberSpec {
  readonly id: number;
  readonly dir: string;
  readonly spec: string;
  readonly listenClient: string;
  readonly clientProtocolPort: number;
  readonly traceGroup: TracedGroup;
}

/** Free loopback ports for every member's peer, HTTP and binary listeners. */
async function memberSpecs(dir: string, traceGroup: TracedGroup): Promise<MemberSpec[]> {
  const ports = await freePorts(NODES * 3);
  const port = (i: number) => ports[i] as number;
  const client = (id: number) => `127.0.0.1:${port(NODES + id - 1)}`;
  const spec = Array.from({ length: NODES }, (_, i) => i + 1)
    .map((id) => `${id}=127.0.0.1:${port(id - 1)}@http://${client(id)}`)
    .join(',');
  return Array.from({ length: NODES }, (_, i) => ({
    id: i + 1,
    dir,
    spec,
    listenClient: client(i + 1),
    clientProtocolPort: port(2 * NODES + i),
    traceGroup,
  }));
}

export function startNode(
  s: MemberSpec,
  trace: (event: TraceEvent, index: number, peer: number) => void,
): Promise<FlotillaNode> {
  return FlotillaNode.start(
    resolveNodeConfig({
      id: s.id,
      dataDir: join(s.dir, `node${s.id}`),
      initialCluster: s.spec,
      listenClient: s.listenClient,
      clientProtocolPort: s.clientProtocolPort,
      logLevel: 'silent',
    }),
    { trace, traceGroup: s.traceGroup },
  );
}

async function startInProcess(
  dir: string,
  rec: Recorder,
  traceGroup: TracedGroup,
): Promise<Member[]> {
  const specs = await memberSpecs(dir, traceGroup);
  const nodes = await Promise.all(specs.map((s) => startNode(s, rec.hook(s.id))));
  return nodes.map((n, i) => ({
    id: i + 1,
    pid: process.pid,
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

/** What the parent asks a member in a child process (member-child.ts). */
export type MemberRequest = {
  readonly op: 'status' | 'record' | 'stop' | 'points' | 'cpu' | 'close';
};

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
  const ask = <T>(op: MemberRequest['op']): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      waiting.push({ resolve: (m) => resolve(m as T), reject });
      child.send({ op });
    });
  return {
    id,
    pid: child.pid ?? 0,
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

async function startProcesses(dir: string, traceGroup: TracedGroup): Promise<Member[]> {
  const specs = await memberSpecs(dir, traceGroup);
  const script = fileURLToPath(new URL('./member-child.js', import.meta.url));
  return Promise.all(
    specs.map(async (s) => {
      const child = fork(script, [JSON.stringify(s)]);
      await new Promise<void>((resolve, reject) => {
        child.once('message', () => resolve());
        child.once('exit', (code) => reject(new Error(`member ${s.id} exited (${code})`)));
      });
      return childMember(s.id, child);
    }),
  );
}

/** Starts the cluster: each member in a process of its own, or all in this one. */
export function startMembers(
  dir: string,
  rec: Recorder,
  o: { readonly processes: boolean; readonly traceGroup: TracedGroup },
): Promise<Member[]> {
  return o.processes ? startProcesses(dir, o.traceGroup) : startInProcess(dir, rec, o.traceGroup);
}

/** The traced group's leader, once its term's no-op is applied (the first write pays nothing). */
export async function waitForLeader(
  members: Member[],
  group: TracedGroup = KV_GROUP,
): Promise<NodeStatus> {
  const deadline = performance.now() + LEADER_WAIT_MS;
  for (;;) {
    const all = await Promise.all(members.map((m) => m.status()));
    const leader = all.find((s) =>
      group === KV_GROUP
        ? s.role === 'leader' && s.commit > 0 && s.applied >= s.commit
        : s.queueGroup?.role === 'leader' &&
          s.queueGroup.commit > 0 &&
          s.queueGroup.applied >= s.queueGroup.commit,
    );
    if (leader !== undefined) return leader;
    if (performance.now() > deadline)
      throw new Error(
        `No leader of group ${group} within ${LEADER_WAIT_MS} ms: ` +
          JSON.stringify(all.map((s) => (group === KV_GROUP ? s.role : s.queueGroup?.role))),
      );
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

export function quantile(xs: readonly number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN;
}

/** A table of steps: the p50 and p90 of each, in ms, and how many were measured. */
export function printSteps(table: ReadonlyMap<string, readonly number[]>): void {
  const fmt = (ms: number) => ms.toFixed(3).padStart(8);
  const width = Math.max(...[...table.keys()].map((s) => s.length));
  console.log(`| ${'step'.padEnd(width)} | p50 ms   | p90 ms   | n     |`);
  console.log(`| ${'-'.repeat(width)} | -------- | -------- | ----- |`);
  for (const [step, xs] of table)
    console.log(
      `| ${step.padEnd(width)} | ${fmt(quantile(xs, 0.5))} | ${fmt(quantile(xs, 0.9))} | ${String(xs.length).padStart(5)} |`,
    );
}
