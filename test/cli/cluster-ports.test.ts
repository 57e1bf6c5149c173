// `cluster up` and a port taken between its check and the node's listen (two started at once
// on the default ports, say): the cluster stops with a message naming the port and what to do,
// rather than leave a node that exited among others that wait for it. (A port taken before
// it starts is refused by its check, naming the port: test/cli/cli.test.ts.) The race is
// played by giving the node a peer address the test holds (FLOTILLA_LISTEN_PEER, which the
// nodes inherit): cluster up's check, which knows only its own ports, passes, and the node's
// listen fails as in the race.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { exitOf, freePortRun, holdPort, release, startCli, stopAll, type CliRun } from './run.js';

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'flotilla-ports-'));
  dirs.push(d);
  return d;
}
after(async () => {
  await stopAll();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const output = (run: CliRun) => `stdout:\n${run.out.stdout}\nstderr:\n${run.out.stderr}`;

void describe('cluster up with a port taken after its check', () => {
  async function raced(args: readonly string[]): Promise<{ run: CliRun; port: number }> {
    const port = await freePortRun(1);
    const held = await holdPort(port);
    try {
      const run = startCli(['cluster', 'up', '--nodes', '1', '--data-dir', tempDir(), ...args], {
        FLOTILLA_LISTEN_PEER: `127.0.0.1:${port}`,
      });
      assert.equal(await exitOf(run, 30_000), 1, output(run));
      assert.match(
        run.out.stdout,
        new RegExp(`node 1 cannot listen for peers \\(listenPeer\\) on 127\\.0\\.0\\.1:${port}\\.`),
        output(run),
      );
      assert.match(
        run.out.stdout,
        new RegExp(`Port 127\\.0\\.0\\.1:${port} is in use: another process took it`),
        output(run),
      );
      assert.match(run.out.stdout, /Stopping the cluster\. Stop what holds/, output(run));
      assert.match(run.out.stdout, /choose other ports with --peer-port and --client-port/);
      assert.doesNotMatch(run.out.stdout, /Ready/, output(run));
      return { run, port };
    } finally {
      await release(held);
    }
  }

  void it('stops the cluster naming the port, and the default ports, when it chose them', async () => {
    const { run } = await raced([]);
    assert.match(run.out.stdout, /these are cluster up's default ports/, output(run));
  });

  void it('stops the cluster naming the port when the user gave the ports', async () => {
    const base = await freePortRun(2);
    const { run } = await raced(['--peer-port', String(base), '--client-port', String(base + 1)]);
    assert.doesNotMatch(run.out.stdout, /default ports/, output(run));
  });
});
