// An interrupted chaos run: the shared deadline that ends the load early, the exit status,
// and the command itself stopped mid-seed by a signal to its whole process group (what a
// Ctrl-C at a terminal sends). A first signal must leave the seed in progress checked and
// written, start no other seed, exit 4 and leave no process behind; a second must stop at once.

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, test, type TestContext } from 'node:test';
import { checkHistory, readHistory } from '../../src/check/index.js';
import { createRng } from '../../src/raft/index.js';
import { pidsMentioning } from '../support/procs.js';
import { repoRoot } from '../support/root.js';
import { RunDeadline } from './deadline.js';
import { EXIT, exitStatus } from './exit.js';
import { RegisterWorkload } from './workload.js';
import { until as waitUntil } from '../support/until.js';

/** `p`, or a failure naming `what` after `ms`. */
async function within<T>(p: Promise<T>, ms: number, what: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`not within ${ms} ms: ${what()}`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

void describe('RunDeadline', () => {
  void it('moves earlier when cut, never later, and says when', () => {
    let t = 1_000;
    const d = new RunDeadline(() => t, 5_000);
    assert.equal(d.passed(), false);
    assert.equal(d.cutAtMs, null);
    t = 2_000;
    d.cut();
    assert.equal(d.atMs(), 2_000);
    assert.equal(d.cutAtMs, 2_000);
    assert.equal(d.passed(), true);
    t = 3_000;
    d.cut(); // a second cut does not move it later
    assert.equal(d.atMs(), 2_000);
    assert.equal(d.cutAtMs, 2_000);
  });

  void it('records no cut once its time was up anyway', () => {
    let t = 0;
    const d = new RunDeadline(() => t, 100);
    t = 150;
    d.cut();
    assert.equal(d.atMs(), 100);
    assert.equal(d.cutAtMs, null);
  });

  void it('an earlier view passes leadMs before it, and moves with it', () => {
    let t = 0;
    const d = new RunDeadline(() => t, 10_000);
    const nemesis = d.earlier(1_000);
    t = 9_000;
    assert.equal(nemesis.passed(), true);
    assert.equal(d.passed(), false);
    t = 4_000;
    d.cut();
    assert.equal(nemesis.atMs(), 3_000);
    assert.equal(nemesis.passed(), true);
  });

  void it('a cut wakes every sleeper at once', async () => {
    const d = new RunDeadline(() => performance.now(), performance.now() + 60_000);
    const started = performance.now();
    const sleeping = Promise.all([d.sleep(30_000), d.earlier(1_000).sleep(30_000)]);
    d.cut();
    await within(sleeping, 2_000, () => 'the sleepers were not woken by the cut');
    assert.ok(performance.now() - started < 2_000);
    // After the cut a sleep returns at once.
    await within(d.sleep(30_000), 100, () => 'a sleep after the cut waited');
  });
});

void describe('exitStatus', () => {
  const plain = { expectAnomaly: false, interrupted: false };
  const cut = { expectAnomaly: false, interrupted: true };
  void it('0 ok, 1 anomaly, 2 unknown, as before', () => {
    assert.equal(exitStatus(['ok', 'ok'], plain), EXIT.ok);
    assert.equal(exitStatus(['ok', 'anomaly', 'unknown'], plain), EXIT.anomaly);
    assert.equal(exitStatus(['ok', 'unknown'], plain), EXIT.unknown);
    assert.equal(exitStatus(['anomaly'], { ...plain, expectAnomaly: true }), EXIT.ok);
    assert.equal(exitStatus(['anomaly', 'ok'], { ...plain, expectAnomaly: true }), EXIT.anomaly);
  });
  void it('4 when interrupted, unless a run found an anomaly', () => {
    assert.equal(EXIT.interrupted, 4);
    assert.equal(exitStatus(['ok'], cut), EXIT.interrupted);
    assert.equal(exitStatus(['unknown'], cut), EXIT.interrupted);
    assert.equal(exitStatus([], cut), EXIT.interrupted);
    assert.equal(exitStatus(['ok', 'anomaly'], cut), EXIT.anomaly);
    // A planted-bug campaign cut short has not shown every run catches the bug.
    assert.equal(exitStatus(['anomaly'], { ...cut, expectAnomaly: true }), EXIT.interrupted);
  });
});

void test('a workload thinking for seconds stops as soon as its deadline is cut', async (t) => {
  // A server that accepts and never answers: every operation runs into its client's timeout.
  const silent: Server = createServer(() => undefined);
  const sockets = new Set<Socket>();
  silent.on('connection', (s) => sockets.add(s));
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  t.after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => silent.close(r));
  });
  const address = silent.address();
  assert.ok(address !== null && typeof address === 'object');
  const now = (): number => performance.now();
  const w = new RegisterWorkload(
    [`http://127.0.0.1:${address.port}`],
    createRng(5),
    { clients: 2, keys: 2, firstClient: 0 },
    { timeoutMs: 200, deadlineMs: 400, thinkMs: [20_000, 20_001] },
    now,
  );
  const until = new RunDeadline(now, now() + 120_000);
  const running = w.runUntil(until);
  // Both clients have finished an operation and are thinking for 20 s.
  await waitUntil(
    () => `${w.history.length} operations`,
    () => w.history.length >= 2,
    10_000,
  );
  until.cut();
  await within(running, 3_000, () => `the clients still ran after the cut`);
  const cutAt = until.cutAtMs ?? NaN;
  // Nothing started after the cut; what was in flight ended with its own outcome.
  for (const op of w.history) assert.ok(op.invokeMs < cutAt, JSON.stringify(op));
  assert.equal(w.history.length, 2);
  for (const op of w.history) assert.ok(op.status === 'fail' || op.status === 'unknown');
});

/** The chaos command, in a process group of its own, with TMPDIR under the test's directory. */
function startChaos(t: TestContext, tmp: string, args: string[]) {
  const child: ChildProcess = spawn(
    process.execPath,
    [join(repoRoot(), 'dist', 'test', 'chaos', 'cli.js'), ...args],
    { env: { ...process.env, TMPDIR: tmp }, stdio: ['ignore', 'pipe', 'pipe'], detached: true },
  );
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const io = { out: '', err: '' };
  child.stdout?.on('data', (b: Buffer) => (io.out += b.toString('utf8')));
  child.stderr?.on('data', (b: Buffer) => (io.err += b.toString('utf8')));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  /** SIGINT to the whole group, as a terminal's Ctrl-C: the nodes must not get it. */
  const ctrlC = (): void => {
    assert.ok(child.pid !== undefined);
    process.kill(-child.pid, 'SIGINT');
  };
  return { child, io, exited, ctrlC, all: () => `${io.err}\n--- stdout ---\n${io.out}` };
}

function scratch(t: TestContext): string {
  const tmp = mkdtempSync(join(tmpdir(), 'chaos-sigint-'));
  t.after(() => rmSync(tmp, { recursive: true, force: true }));
  return tmp;
}

const ARGS = ['--time', '300', '--workload', 'register,set', '--clients', '4'];
const ARGS_NEMESES = ['--nemesis', 'partition,pause'];

void test(
  'a first Ctrl-C ends the seed early, checks and writes it, starts no other, exits 4',
  { timeout: 180_000 },
  async (t) => {
    const tmp = scratch(t);
    // Apart from TMPDIR, so that no process but the nodes mentions it.
    const out = join(scratch(t), 'out');
    const run = startChaos(t, tmp, [
      ...ARGS,
      ...ARGS_NEMESES,
      ...['--seed', '7', '--seeds', '2', '--out', out],
    ]);
    // The load is on: the first progress line counts operations recorded.
    await waitUntil(
      () => `no operations reported:\n${run.all()}`,
      () => /\[seed 7\] t=\d+ s: [1-9]\d* operations/.test(run.io.err),
      90_000,
    );
    assert.equal(pidsMentioning(tmp).length, 3, run.all());
    run.ctrlC();
    const code = await within(run.exited, 120_000, () => `no exit after SIGINT:\n${run.all()}`);
    assert.match(
      run.io.err,
      /interrupted: finishing seed 7 .*Ctrl-C again to stop now/,
      'what is happening is said',
    );
    assert.match(run.io.err, /\[seed 7\] t=[\d.]+ s: load ended early; healed, now settling/);
    assert.equal(code, EXIT.interrupted, run.all());
    assert.deepEqual(pidsMentioning(tmp), [], `node processes left running:\n${run.all()}`);
    // The cluster's data directory is gone.
    assert.deepEqual(readdirSync(tmp), [], run.all());
    assert.deepEqual(readdirSync(out), ['seed-7'], 'seed 8 never started');
    assert.match(run.io.out, /1 runs \(interrupted, 1 of 2 seeds not run\)/);

    const seed = join(out, 'seed-7');
    const summary = readFileSync(join(seed, 'summary.txt'), 'utf8');
    assert.match(summary, /^seed 7: OK /, summary);
    const at = /interrupted: the load ended early, at (\d+\.\d) s/.exec(summary);
    assert.ok(at !== null, summary);
    const cutMs = Number(at[1]) * 1000;
    assert.ok(cutMs < 300_000, summary);
    assert.ok(existsSync(join(seed, 'set.json')), 'the set history is written');
    // The history written is whole and checks out again from the file.
    const history = await readHistory(join(seed, 'register.jsonl'));
    const load = history.filter((op) => op.client < 100_000);
    assert.ok(load.length > 20, `${load.length} operations in the written history`);
    // No operation started after the interrupt (the summary's time is rounded to 0.1 s).
    for (const op of load) assert.ok(op.invokeMs <= cutMs + 100, JSON.stringify(op));
    assert.ok(
      history.some((op) => op.client >= 100_000 && op.status === 'ok'),
      'the final reads ran after the heal',
    );
    assert.equal(checkHistory(history, { timeBudgetMs: 30_000 }).verdict, 'ok');
  },
);

void test('a second Ctrl-C stops at once, leaving no process', { timeout: 120_000 }, async (t) => {
  const tmp = scratch(t);
  const out = join(scratch(t), 'out');
  const run = startChaos(t, tmp, [...ARGS, '--nemesis', 'none', '--seed', '9', '--out', out]);
  await waitUntil(
    () => `no cluster up:\n${run.all()}`,
    () => /\[seed 9\] cluster of 3 up/.test(run.io.err) && pidsMentioning(tmp).length === 3,
    90_000,
  );
  run.ctrlC();
  await waitUntil(
    () => `first signal not acknowledged:\n${run.all()}`,
    () => run.io.err.includes('interrupted: finishing seed 9'),
    10_000,
  );
  const second = performance.now();
  run.ctrlC();
  const code = await within(
    run.exited,
    10_000,
    () => `no exit after a second SIGINT:\n${run.all()}`,
  );
  assert.equal(code, EXIT.stopped, run.all());
  assert.ok(performance.now() - second < 10_000);
  assert.match(run.io.err, /SIGINT again, stopping the cluster now/);
  assert.deepEqual(pidsMentioning(tmp), [], `node processes left running:\n${run.all()}`);
  // Stopped before the seed was judged: nothing written for it, and the cluster's data gone.
  assert.equal(existsSync(out), false, run.all());
  assert.deepEqual(readdirSync(tmp), [], run.all());
});
