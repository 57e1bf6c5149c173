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
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { freePorts } from '../e2e/harness.js';
import { until } from '../support/until.js';
import { exitOf, startCli, stopAll, waitForOutput, type CliRun } from './run.js';

const probe = spawnSync('unshare', ['--pid', '--fork', '--kill-child', 'true'], {
  stdio: 'ignore',
  timeout: 10_000,
});
const skip =
  probe.status === 0
    ? false
    : 'unshare cannot make a PID namespace here (needs root or CAP_SYS_ADMIN)';

after(stopAll);

/** `flotilla args…` as process 1 of a new PID namespace (unshare forks it and passes its status on). */
function asPid1(args: readonly string[]): CliRun {
  return startCli(args, {}, { under: ['unshare', '--pid', '--fork', '--kill-child'] });
}

/** The command's process as seen from here: the child `unshare` forked. */
async function innerPid(run: CliRun): Promise<number> {
  const pid = run.child.pid as number;
  return until(
    'the process unshare forked',
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
      await until('the read connected', () => sockets.length > 0, 20_000);
      process.kill(pid, 'SIGTERM');
      // 128 + 15, as the default action would have it.
      assert.equal(await exitOf(run, 5_000), 143, run.out.stderr);
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
      ]);
      const pid = await innerPid(run);
      await waitForOutput(run, /node started/, 30_000);
      process.kill(pid, 'SIGTERM');
      process.kill(pid, 'SIGTERM');
      assert.equal(await exitOf(run, 15_000), 0, run.out.stdout);
      assert.match(run.out.stdout, /node stopped/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
);
