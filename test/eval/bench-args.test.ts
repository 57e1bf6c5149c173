// The smaller bench scripts' options: --help lists them, a bad one is one line and exit 2.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { benchUsage, tryBenchArgs } from '../../bench/args.js';
import { repoRoot } from '../support/root.js';

const config = {
  options: {
    keys: { type: 'string', default: '10,20' },
    reps: { type: 'string' },
    past: { type: 'boolean', default: false },
  },
} as const;

void test('values parse as parseArgs parses them', () => {
  const r = tryBenchArgs('b.js', config, ['--keys', '5', '--past']);
  assert.equal(r.kind, 'values');
  if (r.kind !== 'values') return;
  assert.equal(r.parsed.values.keys, '5');
  assert.equal(r.parsed.values.past, true);
  assert.equal(r.parsed.values.reps, undefined);
});

void test('--help and -h give the usage with every option and its default, exit 0', () => {
  for (const flag of ['--help', '-h']) {
    const r = tryBenchArgs('b.js', config, ['--keys', '5', flag]);
    assert.deepEqual(r, { kind: 'exit', code: 0, text: benchUsage('b.js', config) });
  }
  assert.equal(
    benchUsage('b.js', config),
    [
      'usage: node b.js [options]',
      'options:',
      '  --keys <value> (default: 10,20)',
      '  --reps <value>',
      '  --past',
      '  -h, --help',
    ].join('\n'),
  );
});

void test('an unknown option or a missing value is one line naming it, exit 2', () => {
  assert.deepEqual(tryBenchArgs('b.js', config, ['--bogus']), {
    kind: 'exit',
    code: 2,
    text: "b.js: Unknown option '--bogus' (--help lists the options)",
  });
  const missing = tryBenchArgs('b.js', config, ['--reps']);
  assert.equal(missing.kind, 'exit');
  assert.match(
    missing.kind === 'exit' ? missing.text : '',
    /^b\.js: Option '--reps <value>' argument missing/,
  );
});

void test('a bench script answers --help and refuses a typo without a stack trace', () => {
  const root = repoRoot();
  const script = join(root, 'dist', 'bench', 'kv', 'snapshot-bench.js');
  const run = (args: string[]) =>
    spawnSync(process.execPath, [script, ...args], { encoding: 'utf8', timeout: 30_000 });
  const help = run(['--help']);
  assert.equal(help.status, 0, help.stderr);
  assert.match(help.stdout, /--keys <value> \(default: 10000,30000,100000\)/);
  assert.match(help.stdout, /--past/);
  const typo = run(['--kyes', '10']);
  assert.equal(typo.status, 2);
  assert.match(typo.stderr, /Unknown option '--kyes'/);
  assert.doesNotMatch(typo.stderr, /\n\s+at /, typo.stderr);
});

void test('scripts with positional counts answer --help and refuse a word where a count belongs', () => {
  const root = repoRoot();
  const run = (script: string, args: string[]) =>
    spawnSync(process.execPath, [join(root, 'dist', 'bench', script), ...args], {
      encoding: 'utf8',
      timeout: 30_000,
    });
  for (const script of ['kv/history-bench.js', 'raft/throughput-bench.js']) {
    const help = run(script, ['--help']);
    assert.equal(help.status, 0, help.stderr);
    assert.match(help.stdout, /^usage: node .*\[/);
  }
  const history = run('kv/history-bench.js', ['--writes', '1000']);
  assert.equal(history.status, 2, history.stdout);
  assert.match(history.stderr, /not a count from 1 to 999999999: "--writes"/);
  assert.doesNotMatch(history.stdout, /NaN/);
  const raft = run('raft/throughput-bench.js', ['abc']);
  assert.equal(raft.status, 2);
  assert.match(raft.stderr, /secondsPerPayload must be in \(0, 60\], got "abc"/);
  assert.doesNotMatch(raft.stderr, /\n\s+at /, raft.stderr);
});

void test('the snapshot transfer bench lists its options and refuses a typo before starting a cluster', () => {
  const root = repoRoot();
  const script = join(root, 'dist', 'bench', 'snapshot', 'snapshot-transfer-bench.js');
  const run = (args: string[]) =>
    spawnSync(process.execPath, [script, ...args], { encoding: 'utf8', timeout: 30_000 });
  const help = run(['--help']);
  assert.equal(help.status, 0, help.stderr);
  assert.match(help.stdout, /--kill-at <value> \(default: 0\.4\)/);
  const typo = run(['--mbb', '20']);
  assert.equal(typo.status, 2, typo.stdout);
  assert.match(typo.stderr, /Unknown option '--mbb'/);
  const zero = run(['--every', '0']);
  assert.equal(zero.status, 2, zero.stdout);
  assert.match(zero.stderr, /--every must be a positive number, got "0"/);
});

void test('the scripts without options answer --help and refuse any option instead of running', () => {
  const root = repoRoot();
  for (const script of ['check/checker-bench.js', 'transport/transport-bench.js']) {
    const run = (args: string[]) =>
      spawnSync(process.execPath, [join(root, 'dist', 'bench', script), ...args], {
        encoding: 'utf8',
        timeout: 30_000,
      });
    // Before, each ignored its arguments and ran the whole benchmark.
    const help = run(['--help']);
    assert.equal(help.status, 0, `${script}: ${help.stderr}`);
    assert.match(help.stdout, /^usage: node .*\[options\]/, script);
    const typo = run(['--seconds', '5']);
    assert.equal(typo.status, 2, `${script}: ${typo.stdout}`);
    assert.match(typo.stderr, /Unknown option '--seconds'/, script);
    assert.doesNotMatch(typo.stderr, /\n\s+at /, typo.stderr);
  }
});

void test('the store-size bench runs small and prints both stores and their ratio', () => {
  const script = join(repoRoot(), 'dist', 'bench', 'kv', 'store-scale.js');
  const run = (args: string[]) =>
    spawnSync(process.execPath, [script, ...args], { encoding: 'utf8', timeout: 60_000 });
  const out = run(['--keys', '3000', '--small', '200', '--ops', '2000']);
  assert.equal(out.status, 0, out.stderr);
  assert.match(out.stdout, /^200 .*\n3,000 /m);
  assert.match(out.stdout, /large over small: puts \d+\.\d\d, gets \d+\.\d\d/);
  const bad = run(['--keys', '0']);
  assert.equal(bad.status, 2, bad.stdout);
  assert.match(bad.stderr, /bad --keys 0/);
});

void test('the build comparison refuses a missing or unbuilt build in one line, and runs one short round', () => {
  const root = repoRoot();
  const script = join(root, 'dist', 'bench', 'eval', 'compare-builds.js');
  const run = (args: string[]) =>
    spawnSync(process.execPath, [script, ...args], { encoding: 'utf8', timeout: 120_000 });
  const missing = run(['--after', root]);
  assert.equal(missing.status, 2, missing.stdout);
  assert.match(missing.stderr, /^--before is required/);
  const dir = mkdtempSync(join(tmpdir(), 'compare-builds-'));
  try {
    const unbuilt = run(['--before', dir, '--after', root]);
    assert.equal(unbuilt.status, 2, unbuilt.stdout);
    assert.match(unbuilt.stderr, /has no .*scenarios\.js: build it first/);
    const zero = run(['--before', root, '--after', root, '--rounds', '0']);
    assert.equal(zero.status, 2, zero.stdout);
    // One round of both builds (this checkout twice), a second per point.
    const out = join(dir, 'compare.json');
    const smoke = run(
      [
        '--before',
        root,
        '--after',
        root,
        '--rounds',
        '1',
        '--duration',
        '1',
        '--warmup',
        '1',
      ].concat(['--out', out]),
    );
    assert.equal(smoke.status, 0, smoke.stderr);
    const r = JSON.parse(readFileSync(out, 'utf8')) as {
      results: { build: string; binary: { ops: number }; http: { ops: number } }[];
    };
    assert.deepEqual(
      r.results.map((x) => x.build),
      ['before', 'after'],
    );
    for (const x of r.results) assert.ok(x.binary.ops > 0 && x.http.ops > 0, JSON.stringify(x));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
