// The option parsers the chaos and fuzz command lines share.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InvalidArgumentError } from 'commander';
import { int, listOf } from './cli-options.js';

void test('int takes decimal integers in its range and refuses anything else, naming the value', () => {
  const seed = int('--seed', 0, 2 ** 32 - 1);
  assert.equal(seed('0'), 0);
  assert.equal(seed('4294967295'), 4294967295);
  assert.equal(seed('0042'), 42);
  for (const bad of [
    '',
    ' ',
    ' 7',
    '7 ',
    '0x10',
    '1e3',
    '1.5',
    '-1',
    '+3',
    'abc',
    '4294967296',
    '99999999999999999999',
  ]) {
    assert.throws(
      () => seed(bad),
      (err: unknown) =>
        err instanceof InvalidArgumentError &&
        err.message ===
          `--seed must be an integer from 0 to 4294967295, got ${JSON.stringify(bad)}`,
      JSON.stringify(bad),
    );
  }
  assert.throws(() => int('--nodes', 3, 7)('2'), /--nodes must be an integer from 3 to 7, got "2"/);
});

void test('listOf takes known names or none and names an unknown one', () => {
  const nemesis = listOf('--nemesis', ['kill', 'pause'] as const);
  assert.deepEqual(nemesis('kill, pause'), ['kill', 'pause']);
  assert.deepEqual(nemesis('none'), []);
  assert.throws(() => nemesis('kill,crash'), /--nemesis: unknown "crash"; choose from kill, pause/);
});
