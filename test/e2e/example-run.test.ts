// `npm run example` (examples/board/run.ts, run here as the built file the script runs): a
// board port another program holds is named and nothing starts; otherwise it starts a
// three-member cluster and the board, prints both URLs, passes what is typed to it on to
// `cluster up` (so "start N" brings back a node killed meanwhile), and on Ctrl-C stops every
// process it started (the `cluster up` process, each node, the board) and exits 0.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { repoRoot } from '../support/root.js';
import { until } from '../support/until.js';
import { alive, freePortRun, holdPort, printedPids, release, type CliRun } from '../cli/run.js';

const runJs = join(repoRoot(), 'dist', 'examples', 'board', 'run.js');
const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function start(args: readonly string[], o: { stdin?: boolean } = {}): CliRun {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-example-'));
  dirs.push(dir);
  const argv = [runJs, ...args, '--data-dir', dir];
  const child =
    o.stdin === true
      ? spawn(process.execPath, argv, { stdio: 'pipe' })
      : spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  const out = { stdout: '', stderr: '' };
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out.stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (out.stderr += d));
  const exited = new Promise<number | string>((resolve) =>
    child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown')),
  );
  return { child, out, exited };
}

async function within<T>(p: Promise<T>, ms: number, what: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what()} (after ${ms} ms)`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

void test('npm run example names a board port another program holds, and starts nothing', async () => {
  const base = await freePortRun(7);
  const held = await holdPort(base + 6);
  try {
    const run = start([
      '--peer-port',
      String(base),
      '--client-port',
      String(base + 3),
      '--port',
      String(base + 6),
    ]);
    const code = await within(
      run.exited,
      15_000,
      () => `no exit:\n${run.out.stdout}${run.out.stderr}`,
    );
    assert.equal(code, 2, run.out.stderr);
    assert.match(
      run.out.stderr,
      new RegExp(
        `Port ${base + 6} \\(the board\\) is in use by another process; nothing was started`,
      ),
    );
    assert.doesNotMatch(run.out.stdout, /\[cluster\]/);
  } finally {
    await release(held);
  }
});

void test('npm run example starts the cluster and the board, takes "start N" for a killed node, and Ctrl-C (SIGINT, twice as under npm) stops every process', async () => {
  const base = await freePortRun(7);
  const board = base + 6;
  const run = start(
    ['--peer-port', String(base), '--client-port', String(base + 3), '--port', String(board)],
    { stdin: true },
  );
  const pids: number[] = [];
  try {
    const shown = await within(
      (async () => {
        for (;;) {
          const m = /Processes: +cluster up pid (\d+), board pid (\d+)/.exec(run.out.stdout);
          if (m !== null) return m;
          if (run.child.exitCode !== null) throw new Error('exited');
          await new Promise((r) => setTimeout(r, 50));
        }
      })(),
      60_000,
      () => `not started:\n${run.out.stdout}${run.out.stderr}`,
    );
    pids.push(Number(shown[1]), Number(shown[2]), ...printedPids(run).values());
    assert.equal(pids.length, 5, run.out.stdout);
    assert.ok(run.out.stdout.includes(`Task board:  http://127.0.0.1:${board}/`), run.out.stdout);
    assert.ok(
      run.out.stdout.includes(`Dashboard:   http://127.0.0.1:${base + 3}/`),
      run.out.stdout,
    );
    const res = await fetch(`http://127.0.0.1:${board}/api/board`, {
      signal: AbortSignal.timeout(10_000),
    });
    const json = (await res.json()) as { tasks: unknown[]; member: number };
    assert.equal(res.status, 200, JSON.stringify(json));
    assert.deepEqual(json.tasks, []);
    assert.ok([1, 2, 3].includes(json.member), JSON.stringify(json));

    // A node killed to watch the board fail over comes back with the command the cluster's
    // output names, typed to the example.
    const killed = printedPids(run).get(1) as number;
    process.kill(killed, 'SIGKILL');
    await until(
      () => `the kill of node 1 was not reported:\n${run.out.stdout}`,
      () => run.out.stdout.includes('Type "start 1" to start it again'),
      10_000,
    );
    run.child.stdin?.write('start 1\n');
    const again = await until(
      () => `"start 1" did not reach the cluster:\n${run.out.stdout}`,
      () => {
        const m = /node 1: client \S+\s+peer \S+\s+(?:binary \S+\s+)?pid (\d+): started again/.exec(
          run.out.stdout,
        );
        return m === null ? null : Number(m[1]);
      },
      10_000,
    );
    pids.push(again);
    assert.ok(alive(again), run.out.stdout);

    // Ctrl-C under `npm run` delivers SIGINT twice: to the terminal's process group, and
    // forwarded by npm. The second must not end the example before it has stopped the rest.
    run.child.kill('SIGINT');
    await within(
      (async () => {
        while (!run.out.stdout.includes('stopping the board and the cluster'))
          await new Promise((r) => setTimeout(r, 10));
      })(),
      10_000,
      () => `SIGINT was not acted on:\n${run.out.stdout}`,
    );
    run.child.kill('SIGINT');
    const code = await within(run.exited, 30_000, () => `did not stop:\n${run.out.stdout}`);
    assert.equal(code, 0, run.out.stdout + run.out.stderr);
    assert.deepEqual(
      pids.filter(alive),
      [],
      `still running after the example stopped:\n${run.out.stdout}`,
    );
  } finally {
    // Whatever the test saw go wrong, nothing it started outlives it.
    if (run.child.exitCode === null && run.child.signalCode === null) run.child.kill('SIGKILL');
    for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
  }
});
