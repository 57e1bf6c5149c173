// Child processes the evaluation starts (Flotilla nodes, etcd members). Every process is
// tracked by PID and ended by PID: `stopAll()` runs at the end of a run and from the signal
// handlers main.ts installs, so nothing is left behind even when a scenario throws.

import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { createServer } from 'node:net';
import { EvalError } from './errors.js';

export interface SpawnSpec {
  readonly name: string;
  readonly command: string;
  readonly args: readonly string[];
  readonly logPath: string;
  readonly env?: NodeJS.ProcessEnv;
}

interface Tracked {
  readonly child: ChildProcess;
  readonly log: WriteStream;
  readonly exited: Promise<void>;
}

export class ProcessGroup {
  private readonly live = new Map<number, Tracked>();

  spawn(spec: SpawnSpec): number {
    const log = createWriteStream(spec.logPath, { flags: 'a' });
    const child = spawn(spec.command, [...spec.args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: spec.env ?? process.env,
    });
    const pid = child.pid;
    if (pid === undefined) {
      log.end();
      throw new EvalError('EVAL_PROCESS', `Could not start ${spec.name} (${spec.command})`);
    }
    child.stdout?.pipe(log, { end: false });
    child.stderr?.pipe(log, { end: false });
    const exited = new Promise<void>((resolve) => {
      child.once('exit', () => {
        this.live.delete(pid);
        log.end();
        resolve();
      });
    });
    this.live.set(pid, { child, log, exited });
    return pid;
  }

  /** Sends `signal` to one process we started and waits (bounded) until it has exited. */
  async kill(pid: number, signal: NodeJS.Signals = 'SIGKILL', waitMs = 10_000): Promise<void> {
    const t = this.live.get(pid);
    if (t === undefined) return;
    t.child.kill(signal);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        t.child.kill('SIGKILL');
        resolve();
      }, waitMs);
    });
    await Promise.race([t.exited, late]);
    clearTimeout(timer);
    await t.exited;
  }

  isRunning(pid: number): boolean {
    return this.live.has(pid);
  }

  /** Ends every process still running (SIGTERM, then SIGKILL after `graceMs`). */
  async stopAll(graceMs = 5_000): Promise<void> {
    await Promise.all([...this.live.keys()].map((pid) => this.kill(pid, 'SIGTERM', graceMs)));
  }

  /** Synchronous last resort for process 'exit': SIGKILL every child by PID. */
  killAllSync(): void {
    for (const t of this.live.values()) t.child.kill('SIGKILL');
  }
}

/** Ports the kernel reports free right now (bound to 127.0.0.1 then released). */
export async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
          const s = createServer();
          s.once('error', reject);
          s.listen(0, '127.0.0.1', () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => {
    const a = s.address();
    if (a === null || typeof a === 'string') throw new EvalError('EVAL_PROCESS', 'no port');
    return a.port;
  });
  await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  return ports;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
