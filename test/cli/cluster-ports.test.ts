// `cluster up` and ports taken by someone else: its default ports (every `cluster up` started
// without --peer-port and --client-port shares them) are moved to a free block when taken
// before it starts; and a port taken between its check and the node's listen (two started at
// once) stops the cluster with a message naming the port and what to do, rather than a node
// that exits among others that wait for it. The second case is played by giving the node a
// peer address the test holds (FLOTILLA_LISTEN_PEER, which the nodes inherit): cluster up's
// check, which knows only its own ports, passes, and the node's listen fails as in the race.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import type { Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import {
  exitOf,
  freePortRun,
  holdPort,
  release,
  startCli,
  stopAll,
  waitForOutput,
  type CliRun,
} from './run.js';

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

/** Holds 127.0.0.1:port, or null when another process already holds it (taken either way). */
async function holdIfFree(port: number): Promise<Server | null> {
  try {
    return await holdPort(port);
  } catch {
    return null;
  }
}

void describe('cluster up with its default ports taken', () => {
  void it('starts on a free block of ports and says which were taken', async () => {
    const held = await holdIfFree(7001);
    try {
      const run = startCli(['cluster', 'up', '--nodes', '1', '--data-dir', tempDir()]);
      await waitForOutput(run, /Ready: node 1 leads/, 30_000);
      assert.match(run.out.stdout, /cluster up's default ports are not all free/, output(run));
      if (held !== null)
        assert.match(run.out.stdout, /on 127\.0\.0\.1:7001: the address is already in use/);
      const [, peer] = /node 1: client \S+\s+peer 127\.0\.0\.1:(\d+)/.exec(run.out.stdout) ?? [];
      assert.notEqual(peer, undefined, output(run));
      assert.notEqual(peer, '7001', output(run));
      assert.match(run.out.stdout, new RegExp(`Using peer ports ${peer}\\.\\.${peer}`));
      run.child.kill('SIGINT');
      assert.equal(await exitOf(run, 15_000), 0, output(run));
    } finally {
      if (held !== null) await release(held);
    }
  });
});

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
