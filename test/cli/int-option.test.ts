// The integer options of every command (src/cli/int-option.ts): an unbounded side is said in
// words ("at least 1"), never as "1..Infinity"; through the built command too.

import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { InvalidArgumentError } from 'commander';
import { int } from '../../src/cli/int-option.js';
import { runCli, stopAll } from './run.js';

after(() => stopAll());

function refusal(parse: (v: string) => number, v: string): string {
  try {
    parse(v);
  } catch (err) {
    assert.ok(err instanceof InvalidArgumentError, String(err));
    return err.message;
  }
  return assert.fail(`"${v}" was taken`);
}

void test('the message names the real bound: a range, at least or at most', () => {
  assert.equal(refusal(int('--nodes', 1, 9), '0'), '--nodes must be in 1..9, got 0');
  assert.equal(refusal(int('--ttl', 1), '0'), '--ttl must be at least 1, got 0');
  assert.equal(refusal(int('--delay', 0), '-5'), '--delay must be at least 0, got -5');
  assert.equal(refusal(int('--x', -Infinity, 5), '6'), '--x must be at most 5, got 6');
  for (const parse of [int('--ttl', 1), int('--nodes', 1, 9), int('--any')])
    for (const v of ['', ' ', '1.5', 'x', '1e400', '1e3', '0x10', '0b11', '0o7', '1_000'])
      assert.match(refusal(parse, v), /must be an integer, got "/, JSON.stringify(v));
  // Digits past 2^53 are an integer out of range, not "not an integer".
  assert.equal(
    refusal(int('--delay', 0, 31_622_400_000), '99999999999999999'),
    '--delay must be in 0..31622400000, got 99999999999999999',
  );
  assert.equal(
    refusal(int('--ttl', 1), '9007199254740993'),
    '--ttl must be in 1..9007199254740991, got 9007199254740993',
  );
  assert.equal(
    refusal(int('--any'), '-9007199254740993'),
    '--any must be in -9007199254740991..9007199254740991, got -9007199254740993',
  );
  assert.equal(int('--ttl', 1)('7'), 7);
  assert.equal(int('--ttl', 1)(' 7 '), 7);
  assert.equal(int('--ttl', 1)('007'), 7);
  assert.equal(int('--any')('-9007199254740991'), -9007199254740991);
});

void test('a command refuses an integer below its bound saying "at least", before connecting', async () => {
  // No cluster behind the endpoint: the option is refused before any request.
  // (A lease id has no upper bound of its own; a TTL now has the server's.)
  const r = await runCli(['lease', '--endpoints', 'http://127.0.0.1:9', 'keep-alive', '0'], 10_000);
  assert.equal(r.code, 2, `exit code\n${r.stderr}`);
  assert.match(r.stderr, /<id> must be at least 1, got 0/);
  assert.doesNotMatch(r.stderr, /Infinity/);
});

void test('queue and kv options are refused past the bound the server applies, before connecting', async () => {
  // Before, each of these went to the cluster and came back refused by it (exit 1, after a
  // round trip); the bounds are the server's own constants (src/base/limits.ts).
  const at = 'http://127.0.0.1:9';
  const refusedWith = [
    [
      ['queue', '--endpoints', at, 'list', 'q', 'waiting', '--limit', '5000'],
      /--limit must be in 1\.\.1000, got 5000/,
    ],
    [
      ['queue', '--endpoints', at, 'repeat', 'list', 'q', '--limit', '1001'],
      /--limit must be in 1\.\.1000, got 1001/,
    ],
    [
      ['queue', '--endpoints', at, 'repeat', 'add', 'q', 'r', '--every', '31622400001'],
      /--every must be in 1\.\.31622400000, got 31622400001/,
    ],
    [
      ['queue', '--endpoints', at, 'config', 'q', '--concurrency', '0'],
      /--concurrency must be in 1\.\.5000000, got 0/,
    ],
    [
      ['queue', '--endpoints', at, 'config', 'q', '--concurrency', '5000001'],
      /--concurrency must be in 1\.\.5000000, got 5000001/,
    ],
    [['kv', '--endpoints', at, 'ls', '--limit', '100001'], /--limit must be in 0\.\.100000/],
    [['kv', '--endpoints', at, 'ls', '--limit', '-1'], /--limit must be in 0\.\.100000, got -1/],
    [
      ['queue', '--endpoints', at, 'config', 'q', '--rate', '0/1000'],
      /--rate MAX must be in 1\.\.1000000000, got 0/,
    ],
    [
      ['queue', '--endpoints', at, 'config', 'q', '--rate', '5/31622400001'],
      /--rate MS must be in 1\.\.31622400000, got 31622400001/,
    ],
    [
      ['queue', '--endpoints', at, 'config', 'q', '--keep-completed', '5000001'],
      /--keep-completed COUNT must be in 0\.\.5000000, got 5000001/,
    ],
    [
      ['queue', '--endpoints', at, 'config', 'q', '--keep-dead', '10:31622400001'],
      /--keep-dead MS must be in 0\.\.31622400000, got 31622400001/,
    ],
    [
      ['lease', '--endpoints', at, 'grant', '1000000001'],
      /<ttl> must be in 1\.\.1000000000, got 1000000001/,
    ],
    [
      ['lock', '--endpoints', at, '--ttl', '1000000001', 'l', 'true'],
      /--ttl must be in 1\.\.1000000000/,
    ],
    [['elect', '--endpoints', at, '--ttl', '1000000001', 'e'], /--ttl must be in 1\.\.1000000000/],
  ] as const;
  for (const [args, message] of refusedWith) {
    const r = await runCli([...args], 20_000);
    assert.equal(r.code, 2, `${args.join(' ')}: exit ${r.code}\n${r.stderr}`);
    assert.match(r.stderr, message, args.join(' '));
  }
});
