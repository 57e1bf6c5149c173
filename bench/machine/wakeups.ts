// What it costs this machine to wake a process, and what an idle cluster burns. On a virtual
// machine a system call, a timer and a context switch can cost ten times what they cost on
// bare metal, and then a replicated write, which wakes three processes several times, costs
// more CPU at one client than at a hundred. This prints the figures behind that explanation
// (docs/BENCHMARKS.md, "What a wake-up costs here"), each measured in a child process of its
// own with process.cpuUsage() (user + system, every thread of it):
//
// - timer: a 10 ms interval that does nothing, CPU per wake-up;
// - ping-pong: one byte back and forth over loopback TCP between two processes, one at a
//   time, CPU per round trip (both processes) and its median wall time;
// - thread pool: one fs.promises.fstat at a time (a trip to libuv's thread pool and back,
//   as each WAL write is), CPU per trip;
// - system call: fs.fstatSync in a loop, wall time per call;
// - with --clusters: a 3-member Flotilla cluster (and etcd's, when `etcd` is installed), both
//   with 10 ms heartbeats' timing as the evaluation runs them, left idle: each member's CPU and
//   context switches per second.
//
//   node dist/bench/machine/wakeups.js [--seconds 5] [--clusters]

import { fork, type ChildProcess } from 'node:child_process';
import { fstatSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { createConnection, createServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchArgs } from '../args.js';
import { EtcdCluster, FlotillaCluster, type BenchCluster } from '../eval/clusters.js';
import { cpuSeconds, threadSwitches } from '../eval/cpu.js';
import { machineFacts } from '../eval/machine.js';
import { ProcessGroup } from '../eval/procs.js';

type Mode = 'timer' | 'pong' | 'pool';

/** What a child measured: CPU µs (user + system) over `ops` operations, and wall time. */
interface ChildFigures {
  readonly cpuUs: number;
  readonly ops: number;
  readonly wallMs: number;
  readonly p50Us?: number;
}

const self = fileURLToPath(import.meta.url);

function cpuUs(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

/** Runs in a child: the measurement `mode` for `ms`, then sends its figures. */
async function child(mode: Mode, ms: number): Promise<void> {
  const send = (f: ChildFigures | { ready: number }): void => {
    process.send?.(f);
  };
  if (mode === 'pong') {
    // The echo side: answers each byte; its CPU is read when the parent says stop.
    const server = createServer((s) => s.on('data', (d) => s.write(d)));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const c0 = cpuUs();
    process.once('message', () => send({ cpuUs: cpuUs() - c0, ops: 0, wallMs: 0 }));
    send({ ready: (server.address() as AddressInfo).port });
    return;
  }
  // Let start-up finish before measuring.
  await new Promise((r) => setTimeout(r, 300));
  const c0 = cpuUs();
  const t0 = performance.now();
  let ops = 0;
  if (mode === 'timer') {
    await new Promise<void>((resolve) => {
      const t = setInterval(() => {
        ops += 1;
        if (performance.now() - t0 >= ms) {
          clearInterval(t);
          resolve();
        }
      }, 10);
    });
  } else if (mode === 'pool') {
    const fh = await open(self, 'r');
    while (performance.now() - t0 < ms) {
      await fh.stat();
      ops += 1;
    }
    await fh.close();
  }
  send({ cpuUs: cpuUs() - c0, ops, wallMs: performance.now() - t0 });
}

function startChild(mode: Mode, ms: number): ChildProcess {
  return fork(self, ['--child', mode, '--ms', String(ms)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
}

function nextMessage<T>(c: ChildProcess): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    c.once('message', (m) => resolve(m as T));
    c.once('exit', (code) => reject(new Error(`measuring child exited (${code}) early`)));
  });
}

async function measure(mode: 'timer' | 'pool', ms: number): Promise<ChildFigures> {
  const c = startChild(mode, ms);
  const f = await nextMessage<ChildFigures>(c);
  c.kill();
  return f;
}

/** One byte at a time to an echo process: CPU of both sides per round trip, median wall. */
async function pingPong(ms: number): Promise<ChildFigures> {
  const echo = startChild('pong', ms);
  const { ready: port } = await nextMessage<{ ready: number }>(echo);
  const sock: Socket = createConnection({ port, host: '127.0.0.1', noDelay: true });
  await new Promise<void>((r) => sock.once('connect', r));
  const one = Buffer.from([1]);
  const rtt: number[] = [];
  const round = (): Promise<void> =>
    new Promise<void>((resolve) => {
      const s = performance.now();
      sock.once('data', () => {
        rtt.push(performance.now() - s);
        resolve();
      });
      sock.write(one);
    });
  for (let i = 0; i < 200; i++) await round(); // warm-up
  rtt.length = 0;
  const c0 = cpuUs();
  const t0 = performance.now();
  while (performance.now() - t0 < ms) await round();
  const mine = cpuUs() - c0;
  const wallMs = performance.now() - t0;
  const figures = nextMessage<ChildFigures>(echo);
  echo.send('stop');
  const theirs = await figures;
  echo.kill();
  sock.destroy();
  rtt.sort((a, b) => a - b);
  return {
    cpuUs: mine + theirs.cpuUs,
    ops: rtt.length,
    wallMs,
    p50Us: (rtt[Math.floor(rtt.length / 2)] ?? 0) * 1000,
  };
}

function syscallUs(): number {
  const fd = openSync(self, 'r');
  const n = 20_000;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) fstatSync(fd);
  return ((performance.now() - t0) * 1000) / n;
}

/** Context switches of every thread of `pid`, a member that must still run. */
function switches(pid: number): number {
  const n = threadSwitches(pid);
  if (n === null) throw new Error(`process ${pid} is gone: its context switches cannot be read`);
  return n;
}

async function idleCluster(
  make: (dir: string, procs: ProcessGroup) => BenchCluster,
  seconds: number,
): Promise<string[]> {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-wakeups-'));
  const procs = new ProcessGroup();
  const cluster = make(dir, procs);
  try {
    await cluster.start();
    await cluster.waitForLeader(30_000);
    await new Promise((r) => setTimeout(r, 2_000));
    const pids = cluster.ids.map((id) => cluster.pid(id) as number);
    const c0 = pids.map((p) => cpuSeconds(p) ?? 0);
    const s0 = pids.map(switches);
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const dt = (performance.now() - t0) / 1000;
    return pids.map((p, i) => {
      const cpu = ((cpuSeconds(p) ?? 0) - (c0[i] as number)) / dt;
      const sw = (switches(p) - (s0[i] as number)) / dt;
      return `member ${i + 1}: ${(cpu * 100).toFixed(1)} % of a core, ${Math.round(sw)} context switches/s`;
    });
  } finally {
    await cluster.stop();
    await procs.stopAll();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const { values } = benchArgs({
    options: {
      seconds: { type: 'string', default: '5' },
      clusters: { type: 'boolean', default: false },
      child: { type: 'string' },
      ms: { type: 'string' },
    },
  });
  if (values.child !== undefined) {
    await child(values.child as Mode, Number(values.ms));
    return;
  }
  const seconds = Number(values.seconds);
  if (!Number.isInteger(seconds) || seconds < 1 || seconds > 600) {
    process.stderr.write('--seconds must be an integer 1..600\n');
    process.exit(2);
  }
  const ms = seconds * 1000;
  const us = (f: ChildFigures): string => (f.cpuUs / Math.max(1, f.ops)).toFixed(1);
  const timer = await measure('timer', ms);
  process.stdout.write(`timer: ${us(timer)} µs of CPU per wake-up (${timer.ops} wake-ups)\n`);
  const pp = await pingPong(ms);
  process.stdout.write(
    `ping-pong: ${us(pp)} µs of CPU per round trip, both processes (${pp.ops} round trips, p50 ${(pp.p50Us ?? 0).toFixed(1)} µs)\n`,
  );
  const pool = await measure('pool', ms);
  process.stdout.write(`thread pool: ${us(pool)} µs of CPU per trip (${pool.ops} trips)\n`);
  process.stdout.write(`system call: ${syscallUs().toFixed(2)} µs per fstat\n`);
  if (!values.clusters) return;
  for (const line of await idleCluster(
    (dir, procs) => new FlotillaCluster({ size: 3, dir, procs }),
    seconds,
  ))
    process.stdout.write(`idle Flotilla ${line}\n`);
  if (machineFacts(tmpdir()).etcd === null) {
    process.stdout.write('idle etcd: not measured, etcd is not installed\n');
    return;
  }
  for (const line of await idleCluster(
    (dir, procs) => new EtcdCluster({ size: 3, dir, procs }),
    seconds,
  ))
    process.stdout.write(`idle etcd ${line}\n`);
}

await main();
