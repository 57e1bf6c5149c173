// Runs the built `flotilla` command as a child process with bounded waits. Every process a
// test starts is recorded, and `stopAll()` (called from `after`) ends each one by PID — the
// CLI itself first, then any node PID it printed, so a failed test leaves nothing behind.

import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type Server, type Socket } from 'node:net';
import { cliEntry } from '../../src/cli/cluster.js';

export interface CliRun {
  readonly child: ChildProcess;
  /** Everything written so far, stdout and stderr apart. */
  readonly out: { stdout: string; stderr: string };
  /** Resolves with the exit code (or the signal's name) once the process has exited. */
  readonly exited: Promise<number | string>;
}

const running = new Set<CliRun>();

export function startCli(
  args: readonly string[],
  env: NodeJS.ProcessEnv = {},
  o: {
    /** Give the process a standard input the test writes to (child.stdin). */
    stdin?: boolean;
    /** A command to run it under (`unshare --pid --fork …`): `child` is then that command's. */
    under?: readonly string[];
  } = {},
): CliRun {
  const command = [...(o.under ?? []), process.execPath, cliEntry(), ...args];
  const child = spawn(command[0] as string, command.slice(1), {
    stdio: [o.stdin === true ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    // A member started alone on an empty data directory waits 6 s by default for members
    // holding a log to dial it (emptyStartWaitMs, test/server/empty-start.test.ts tests it);
    // the fresh one-member clusters started here have none, so they skip it unless told.
    env: { ...process.env, FLOTILLA_EMPTY_START_WAIT_MS: '0', ...env },
  });
  const out = { stdout: '', stderr: '' };
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (out.stdout += d));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (out.stderr += d));
  const exited = new Promise<number | string>((resolve) =>
    child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown')),
  );
  const run = { child, out, exited };
  running.add(run);
  void exited.then(() => running.delete(run));
  return run;
}

/** Waits (bounded) for the process to exit; fails with what it printed if it does not. */
export async function exitOf(run: CliRun, timeoutMs: number): Promise<number | string> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new Error(
            `flotilla did not exit within ${timeoutMs} ms\nstdout:\n${run.out.stdout}\nstderr:\n${run.out.stderr}`,
          ),
        ),
      timeoutMs,
    );
  });
  try {
    return await Promise.race([run.exited, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Runs the command to completion within `timeoutMs`. */
export async function runCli(
  args: readonly string[],
  timeoutMs: number,
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number | string; stdout: string; stderr: string }> {
  const run = startCli(args, env);
  const code = await exitOf(run, timeoutMs);
  return { code, ...run.out };
}

/** Waits (bounded) until the output matches `pattern`; returns the match. */
export async function waitForOutput(
  run: CliRun,
  pattern: RegExp,
  timeoutMs: number,
): Promise<RegExpMatchArray> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const m = pattern.exec(run.out.stdout + run.out.stderr);
    if (m !== null) return m;
    if (Date.now() > deadline || run.child.exitCode !== null || run.child.signalCode !== null)
      throw new Error(
        `No output matching ${pattern} within ${timeoutMs} ms (exit ${run.child.exitCode ?? run.child.signalCode ?? 'none'})\nstdout:\n${run.out.stdout}\nstderr:\n${run.out.stderr}`,
      );
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The node PIDs a `cluster up` printed ("node 1: client ... pid 1234"). */
export function printedPids(run: CliRun): Map<number, number> {
  const pids = new Map<number, number>();
  for (const m of run.out.stdout.matchAll(
    /node (\d+): client \S+\s+peer \S+\s+(?:binary \S+\s+)?pid (\d+)/g,
  ))
    pids.set(Number(m[1]), Number(m[2]));
  return pids;
}

/** Whether a process by that PID still runs. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Ends every process started here that still runs: SIGINT, then SIGKILL after a bound. */
export async function stopAll(): Promise<void> {
  for (const run of [...running]) {
    const nodes = printedPids(run);
    run.child.kill('SIGINT');
    try {
      await exitOf(run, 15_000);
    } catch {
      run.child.kill('SIGKILL');
      await run.exited;
    }
    for (const pid of nodes.values()) if (alive(pid)) process.kill(pid, 'SIGKILL');
  }
}

const accepted = new WeakMap<Server, Set<Socket>>();

/** A listener holding 127.0.0.1:port, as another program would; it accepts and says nothing. */
export async function holdPort(port: number): Promise<Server> {
  const sockets = new Set<Socket>();
  const srv = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined); // a client giving up resets its connection
    socket.on('close', () => sockets.delete(socket));
  });
  accepted.set(srv, sockets);
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(port, '127.0.0.1', () => resolve());
  });
  return srv;
}

/** Closes the listener and every connection it accepted (close alone would wait for them). */
export function release(srv: Server): Promise<void> {
  const closed = new Promise<void>((r) => srv.close(() => r()));
  for (const s of accepted.get(srv) ?? []) s.destroy();
  return closed;
}

/**
 * `count` consecutive ports on 127.0.0.1 that are free right now (`cluster up` numbers its
 * ports from a base). Bounded: a few random bases, each checked port by port.
 */
export async function freePortRun(count: number): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 40_000);
    const held: Server[] = [];
    try {
      for (let p = base; p < base + count; p++) held.push(await holdPort(p));
      return base;
    } catch {
      // one of them is taken: try another base
    } finally {
      await Promise.all(held.map(release));
    }
  }
  throw new Error(`No run of ${count} free ports found in 50 attempts`);
}
