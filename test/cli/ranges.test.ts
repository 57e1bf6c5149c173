// `flotilla range split`, `flotilla ranges` and `flotilla kv ls` against a running cluster split
// into ranges (in-process nodes), as a user following the README meets them: a split, the table
// that shows it, and a listing of every key across the ranges.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { TestNodes, postJson, until } from '../server/nodes.js';
import { runCli, stopAll } from './run.js';

const bound = 20_000;
let nodes: TestNodes;
let endpoints: string;
const keys = ['a1', 'a2', 'k1', 'm1', 'm2', 'z1'];

before(async () => {
  nodes = await TestNodes.start({ nodes: 3 });
  await nodes.waitForLeader();
  endpoints = [1, 2, 3].map((id) => nodes.url(id)).join(',');
  await until('the range map served', async () => {
    const res = await fetch(`${nodes.url(1)}/v1/ranges`, { signal: AbortSignal.timeout(5_000) });
    return res.status === 200 ? true : null;
  });
  for (const key of keys) {
    const r = await postJson(
      `${nodes.url(1)}/v1/kv/put`,
      { key, value: `v-${key}` },
      { timeoutMs: 15_000 },
    );
    assert.equal(r.status, 200, JSON.stringify(r.json));
  }
});

after(async () => {
  await stopAll();
  await nodes.close();
});

const cli = (...args: string[]) => runCli([...args, '--endpoints', endpoints], bound);

void test('kv ls lists every key of a store split into ranges, and --limit counts over them', async () => {
  const split = await cli('range', 'split', 'm');
  assert.equal(split.code, 0, split.stderr);
  assert.match(split.stdout, /"m"\s+\+inf/);
  const table = await cli('ranges');
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout, /^0\s+-inf\s+"m"/m);

  // Before, `kv ls` sent a plain range read, which a split store refuses CROSS_RANGE: the
  // command that lists keys stopped working after the first split.
  const all = await cli('kv', 'ls');
  assert.equal(all.code, 0, all.stderr);
  assert.deepEqual(
    all.stdout.trim().split('\n'),
    keys.map((k) => `${k}\tv-${k}`),
  );
  const empty = await cli('kv', 'ls', '');
  assert.equal(empty.code, 0, empty.stderr);
  assert.equal(empty.stdout, all.stdout, 'an empty prefix lists every key');
  const some = await cli('kv', 'ls', '--limit', '4');
  assert.equal(some.code, 0, some.stderr);
  assert.deepEqual(some.stdout.trim().split('\n'), [
    ...keys.slice(0, 4).map((k) => `${k}\tv-${k}`),
    '... 2 more',
  ]);
  // A prefix that lies in one range is read from it alone, as before.
  const m = await cli('kv', 'ls', 'm');
  assert.equal(m.code, 0, m.stderr);
  assert.deepEqual(m.stdout.trim().split('\n'), ['m1\tv-m1', 'm2\tv-m2']);
});

void test('kv ls --keys-only and --json print one key per line, whatever the key holds', async () => {
  // The listing's key<TAB>value lines broke a key or value holding a newline or a tab over
  // lines or columns, and said what was left out on the same output: no program could read it.
  const odd = 'n\nl\tt';
  const put = await postJson(
    `${nodes.url(1)}/v1/kv/put`,
    { key: odd, value: 'two\nlines' },
    { timeoutMs: 15_000 },
  );
  assert.equal(put.status, 200, JSON.stringify(put.json));
  const json = await cli('kv', 'ls', 'n', '--json');
  assert.equal(json.code, 0, json.stderr);
  const lines = json.stdout.trimEnd().split('\n');
  assert.equal(lines.length, 1, json.stdout);
  const kv = JSON.parse(lines[0] as string) as { key: string; value: string };
  assert.deepEqual([kv.key, kv.value], [odd, 'two\nlines']);
  const only = await cli('kv', 'ls', '--keys-only', '--limit', '2');
  assert.equal(only.code, 0, only.stderr);
  assert.deepEqual(only.stdout.trimEnd().split('\n'), keys.slice(0, 2));
  assert.match(only.stderr, /^\.\.\. \d+ more\n$/, 'what was left out is said apart');
  const both = await cli('kv', 'ls', '--keys-only', '--json');
  assert.equal(both.code, 2, both.stderr);
  assert.match(both.stderr, /--keys-only and --json/);
  const del = await postJson(`${nodes.url(1)}/v1/kv/delete`, { key: odd }, { timeoutMs: 15_000 });
  assert.equal(del.status, 200, JSON.stringify(del.json));
});

void test('range move, transfer and split refuse impossible node ids, and a move to itself, as usage errors', async () => {
  // `--from 0` went to the server, which refused it BAD_REQUEST (exit code 1) naming the body's
  // field "from"; `--replicas 1,1` likewise, "replicas" names a node twice; a move from a
  // node to itself INVALID_REQUEST.
  for (const [args, says] of [
    [
      ['range', 'move', '3', '--from', '0', '--to', '2'],
      /--from must be in 1\.\.2147483648, got 0/,
    ],
    [['range', 'move', '3', '--from', '1', '--to', '0'], /--to must be in 1\.\.2147483648, got 0/],
    [['range', 'transfer', '3', '--to', '0'], /--to must be in 1\.\.2147483648, got 0/],
    [['range', 'split', 'q', '--replicas', '1,1'], /--replicas names node 1 twice/],
    [['range', 'move', '3', '--from', '2', '--to', '2'], /from a node to itself changes nothing/],
  ] as const) {
    const r = await cli(...args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, says);
  }
});
