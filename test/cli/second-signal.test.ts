// A second stop signal during `start`'s shutdown: said, then the process ends at once with
// 128 + the signal's number (130, 143), rather than being killed by the signal's default action
// without a word. The first signal's line says how. Process 1's behaviour (a second SIGTERM
// changes nothing) is signals.test.ts's.
//
// The shutdown must still be under way when the second signal comes: the leader of a
// two-member cluster whose follower is frozen (SIGSTOP) hands its leadership to it first and
// waits for it to take over, which it cannot, for the hand-off's bound (2 s). The second
// signal is sent once the first one's line is out and SIGNAL_ECHO_MS past it (a signal sooner
// is the first one arriving twice, as npm forwards it), well within the bound; and the test
// checks the shutdown did not finish ("node stopped" never said), so a shutdown that ended
// before the signal fails it rather than passing by chance.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import type { NodeStatus } from '../../src/api/types.js';
import { SIGNAL_ECHO_MS } from '../../src/server/run-node.js';
import { freePorts } from '../e2e/harness.js';
import { until } from '../support/until.js';
import { exitOf, startCli, stopAll, waitForOutput, type CliRun } from './run.js';

after(stopAll);

/** The leader both members name, or null while they name none or differ. */
async function leaderOf(clients: readonly string[]): Promise<number | null> {
  const ids = await Promise.all(
    clients.map(async (c) => {
      try {
        const res = await fetch(`${c}/v1/status`, { signal: AbortSignal.timeout(1_000) });
        return res.ok ? ((await res.json()) as NodeStatus).leader : 0;
      } catch {
        return 0;
      }
    }),
  );
  return ids.every((id) => id !== 0 && id === ids[0]) ? (ids[0] as number) : null;
}

/** When the node said it is shutting down (its JSON line's time). */
function shutdownLineTime(run: CliRun): number {
  const line = run.out.stdout.split('\n').find((l) => l.includes('"msg":"shutting down'));
  return (JSON.parse(line ?? '{}') as { time: number }).time;
}

/**
 * Starts two members, freezes the follower, sends the leader `signal`, and once its shutdown
 * line is out sends it again: `late`, SIGNAL_ECHO_MS past the first (a second Ctrl-C);
 * otherwise at once (the first one arriving twice). Gives the leader's run, exited.
 */
async function twoSignals(signal: 'SIGINT' | 'SIGTERM', late: boolean): Promise<CliRun> {
  const ports = await freePorts(4);
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-signal-'));
  const clients = [1, 2].map((id) => `http://127.0.0.1:${ports[1 + id] as number}`);
  const spec = [1, 2]
    .map((id) => `${id}=127.0.0.1:${ports[id - 1] as number}@${clients[id - 1] as string}`)
    .join(',');
  const runs: CliRun[] = [1, 2].map((id) =>
    startCli([
      'start',
      '--id',
      String(id),
      '--data-dir',
      join(dir, `node${id}`),
      '--initial-cluster',
      spec,
    ]),
  );
  let frozen: CliRun | null = null;
  try {
    for (const run of runs) await waitForOutput(run, /node started/, 30_000);
    const leader = await until('a leader both members agree on', () => leaderOf(clients), 30_000);
    const leading = runs[leader - 1] as CliRun;
    frozen = runs[2 - leader] as CliRun;
    frozen.child.kill('SIGSTOP');
    leading.child.kill(signal);
    const hint = signal === 'SIGINT' ? 'press Ctrl-C again' : 'a second SIGTERM';
    await waitForOutput(leading, new RegExp(`shutting down; ${hint}`), 10_000);
    const at = shutdownLineTime(leading);
    if (late)
      await until('SIGNAL_ECHO_MS since the first signal', () => Date.now() > at + SIGNAL_ECHO_MS);
    // A distinct delivery: the first was taken (its line is out), so the kernel cannot merge them.
    else assert.ok(Date.now() < at + SIGNAL_ECHO_MS, 'too slow to send the echo within its window');
    leading.child.kill(signal);
    await exitOf(leading, 15_000);
    return leading;
  } finally {
    frozen?.child.kill('SIGCONT');
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
  }
}

const output = (run: CliRun) => `stdout:\n${run.out.stdout}\nstderr:\n${run.out.stderr}`;

for (const [signal, code] of [
  ['SIGINT', 130],
  ['SIGTERM', 143],
] as const)
  void test(`a second ${signal} during the shutdown says so and exits ${code} at once`, async () => {
    const run = await twoSignals(signal, true);
    assert.equal(run.child.exitCode, code, output(run));
    assert.match(
      run.out.stdout,
      new RegExp(`${signal} again: stopping at once without finishing the shutdown`),
      output(run),
    );
    // Cut short: the shutdown (held by the hand-off to the frozen follower) never finished.
    assert.doesNotMatch(run.out.stdout, /node stopped/, output(run));
  });

void test('one Ctrl-C arriving twice (npm forwards it) is one clean stop', async () => {
  const run = await twoSignals('SIGINT', false);
  assert.equal(run.child.exitCode, 0, output(run));
  assert.match(run.out.stdout, /node stopped/, output(run));
  assert.doesNotMatch(run.out.stdout, /again: stopping at once/, output(run));
});
