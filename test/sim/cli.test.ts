// The simulator's command line: a passing range exits 0 with a summary, bad options exit 2.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { runSeed, type SimOptions } from '../../src/sim/index.js';
import { repoRoot } from '../support/root.js';

const cli = join(repoRoot(), 'dist', 'src', 'sim', 'cli.js');

function run(args: string[]): { status: number | null; out: string } {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, out: r.stdout + r.stderr };
}

void test('a range of seeds prints a summary line', () => {
  const r = run(['--seeds', '3', '--start', '100', '--nodes', '5']);
  assert.match(r.out, /3 seeds \(100\.\.102\), \d+ failed, \d+ events in/);
  assert.equal(r.status, r.out.includes(', 0 failed,') ? 0 : 1);
});

void test('one seed with --verbose prints its events', () => {
  const r = run(['--seed', '100', '--verbose']);
  assert.match(r.out, /deliver \d->\d /);
  assert.match(r.out, /1 seeds \(100\.\.100\)/);
});

void test('--help prints the options and exits 0', () => {
  const r = run(['--help']);
  assert.match(r.out, /Usage: flotilla-sim/);
  assert.match(r.out, /--wipe-every <ms>/);
  assert.equal(r.status, 0);
});

void test('bad options exit 2 and name the value', () => {
  const r = run(['--nodes', '4']);
  assert.equal(r.status, 2);
  assert.match(r.out, /--nodes must be 3, 5 or 7, got "4"/);
  for (const both of [
    ['--seed', '5', '--seeds', '100'],
    ['--seed', '5', '--start', '0'],
  ]) {
    const r2 = run(both);
    assert.equal(r2.status, 2, both.join(' '));
    assert.match(r2.out, /--seed runs one seed: give it alone/);
  }
  const s = run(['--seeds', 'many']);
  assert.equal(s.status, 2);
  assert.match(s.out, /--seeds must be an integer/);
});

void test('--ranges runs range seeds and counts their splits', () => {
  const r = run(['--seeds', '3', '--start', '100', '--ranges']);
  assert.match(r.out, /3 seeds \(100\.\.102\), 0 failed/);
  assert.match(r.out, /splits [1-9]\d* \(re-routed on WRONG_RANGE \d+\)/);
  assert.equal(r.status, 0);
});

void test('--ranges --moves runs move seeds and counts their moves; --moves alone is refused', () => {
  const r = run(['--seeds', '3', '--start', '100', '--ranges', '--moves']);
  assert.match(r.out, /3 seeds \(100\.\.102\), 0 failed/);
  assert.match(r.out, /moves [1-9]\d* \(\d+ steps, \d+ abandoned, 0 begun beside another\)/);
  assert.equal(r.status, 0);
  const alone = run(['--seeds', '1', '--moves']);
  assert.equal(alone.status, 2);
  assert.match(alone.out, /--moves needs --ranges/);
  const concurrent = run(['--seeds', '1', '--ranges', '--concurrent-moves', '2']);
  assert.equal(concurrent.status, 2);
  assert.match(concurrent.out, /--concurrent-moves needs --moves/);
  const three = run(['--seeds', '1', '--ranges', '--moves', '--nodes', '3']);
  assert.equal(three.status, 2);
  assert.match(three.out, /--moves needs 5 or 7 nodes/);
});

void test('options the simulator cannot combine exit 2 with the reason, not a stack trace', () => {
  for (const [args, reason] of [
    [['--ranges', '--moves', '--wipe-every', '800'], /moves with disk wipes need the meta group/],
    [['--ranges', '--membership-every', '800', '--nodes', '5'], /ranges and membership churn/],
  ] as const) {
    const r = run(['--seed', '5', ...args]);
    assert.equal(r.status, 2, r.out);
    assert.match(r.out, reason);
    assert.doesNotMatch(r.out, /\bat \S+ \(file:/, r.out);
  }
  const wiped = run(['--seed', '5', '--ranges', '--moves', '--meta', '--wipe-every', '800']);
  assert.match(wiped.out, /1 seeds \(5\.\.5\), 0 failed/, wiped.out);
  assert.match(wiped.out, /wipes [1-9]/, wiped.out);
  assert.equal(wiped.status, 0, wiped.out);
});

void test('the replay command a seed names reruns it event for event, --wipe-every, --impatient and --concurrent-moves included', async () => {
  for (const options of [
    { seed: 100, profile: { wipeEveryMs: 300 } },
    { seed: 101, profile: { attemptTimeoutElections: 1 } },
    { seed: 100, nodes: 5 },
    { seed: 7, ranges: true, moves: true, meta: true, concurrentMoves: 3 },
  ] satisfies SimOptions[]) {
    const lines: string[] = [];
    const r = await runSeed({ ...options, log: (l) => lines.push(l) });
    const prefix = 'npm run sim -- ';
    assert.ok(r.replay.startsWith(prefix), r.replay);
    const replayed = run(r.replay.slice(prefix.length).split(' '));
    assert.equal(replayed.status, r.ok ? 0 : 1, replayed.out);
    const out = replayed.out.split('\n');
    assert.ok(lines.length > 500, `seed ${options.seed} logged only ${lines.length} events`);
    const differs = lines.findIndex((l, i) => out[i] !== l);
    assert.equal(
      differs,
      -1,
      `${r.replay} differs at event ${differs}: ran ${lines[differs]}, replayed ${out[differs]}`,
    );
  }
});
