// The command as process 1 of a PID namespace, as in a container whose entry point it is: the
// kernel drops a signal that process has no handler for, so a stop signal must find one from
// the moment the entry module runs (main.ts), also while a command waits with no handler of
// its own, and while `start` is still loading. Needs `unshare` and the right to make a PID
// namespace (root here); skipped, saying so, where it is missing.
//
// Node's own start-up (before any module of ours runs, some tens of milliseconds) takes
// SIGTERM only to pass it on with the default action, which process 1 drops too: that window
// cannot be closed from the program, and is not tested. Without main.ts's handler the window
// lasted until `start` installed its own, after loading every module (0.3 s here, more in a
// container on a slow disk).

import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { cliEntry } from '../../src/cli/cluster.js';
import { freePorts } from '../e2e/harness.js';
import { until } from '../support/until.js';

const probe = spawnSync('unshare', ['--pid', '--fork', '--kill-child', 'true'], {
  stdio: 'ignore',
  timeout: 10_000,
});
const skip =
  probe.status === 0
    ? false
    : 'unshare cannot make a PID namespace here (needs root or CAP_SYS_ADMIN)';

const started: ChildProcess[] = [];
after(() => {
  for (const c of started) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

interface Pid1Run {
  readonly outer: ChildProcess;
  readonly out: { text: string };
  readonly exited: Promise<number | string>;
}

/** `flotilla args…` as process 1 of a new PID namespace (unshare forks it and passes its status on). */
function asPid1(args: readonly string[]): Pid1Run {
  const outer = spawn(
    'unshare',
    ['--pid', '--fork', '--kill-child', process.execPath, cliEntry(), ...args],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  started.push(outer);
  const out = { text: '' };
  outer.stdout?.setEncoding('utf8').on('data', (d: string) => (out.text += d));
  outer.stderr?.setEncoding('utf8').on('data', (d: string) => (out.text += d));
  const exited = new Promise<number | string>((resolve) =>
    outer.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown')),
  );
  return { outer, out, exited };
}

/** The command's process as seen from here: the child `unshare` forked. */
async function innerPid(run: Pid1Run): Promise<number> {
  const pid = run.outer.pid as number;
  return until(
    () => `the process unshare forked (output so far: ${run.out.text})`,
    () => {
      try {
        const first = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
          .trim()
          .split(' ')[0];
        return first === undefined || first === '' ? null : Number(first);
      } catch {
        return null;
      }
    },
    10_000,
  );
}

async function exitWithin(run: Pid1Run, ms: number): Promise<number | string> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      run.exited,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`still running ${ms} ms after SIGTERM; output:\n${run.out.text}`)),
          ms,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

void test(
  'a command waiting with no handler of its own stops on SIGTERM as process 1',
  { skip },
  async () => {
    // A node that accepts and never answers: the read waits on it, with no signal handler of
    // its own (a watch, a lock or `start` take the signal themselves).
    const sockets: Socket[] = [];
    const silent: Server = createServer((s) => {
      sockets.push(s);
      s.on('error', () => undefined);
    });
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    try {
      const port = (silent.address() as AddressInfo).port;
      const run = asPid1(['kv', '--endpoints', `http://127.0.0.1:${port}`, 'get', 'k']);
      const pid = await innerPid(run);
      await until(`the read connected (output: ${run.out.text})`, () => sockets.length > 0, 20_000);
      process.kill(pid, 'SIGTERM');
      // 128 + 15, as the default action would have it.
      assert.equal(await exitWithin(run, 5_000), 143, run.out.text);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((r) => silent.close(r));
    }
  },
);

void test(
  '`start` as process 1 finishes its shutdown when a second SIGTERM follows the first',
  { skip },
  async () => {
    // Once `start` takes the signal, the entry's handler is gone for good: a second signal is
    // `start`'s business (as process 1, dropped), not an exit in the middle of the shutdown.
    const [peer, client] = await freePorts(2);
    const dir = mkdtempSync(join(tmpdir(), 'flotilla-pid1-'));
    try {
      const run = asPid1([
        'start',
        '--id',
        '1',
        '--data-dir',
        join(dir, 'data'),
        '--initial-cluster',
        `1=127.0.0.1:${peer}@http://127.0.0.1:${client}`,
        '--bootstrap-wait-ms',
        '0',
      ]);
      const pid = await innerPid(run);
      await until(
        `the node started (output: ${run.out.text})`,
        () => /node started/.test(run.out.text),
        30_000,
      );
      process.kill(pid, 'SIGTERM');
      process.kill(pid, 'SIGTERM');
      assert.equal(await exitWithin(run, 15_000), 0, run.out.text);
      assert.match(run.out.text, /node stopped/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
);
