// `flotilla ranges` as a table: each range's figures in columns (keys, size, writes and reads
// per second), empty for a range the answering node does not run, and the line naming whose
// figures they are.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { renderRanges, showBytes } from '../../src/cli/ranges.js';

void test('the ranges table shows each range’s size and load, and whose figures they are', () => {
  const out = renderRanges({
    version: 4,
    node: 2,
    ranges: [
      {
        id: 0,
        start: '',
        end: 'm',
        generation: 1,
        replicas: [1, 2, 3],
        leader: 2,
        keys: 120,
        bytes: 14_230,
        writesPerSec: 31.46,
        readsPerSec: 4.2,
        applied: 418,
      },
      {
        id: 3,
        start: 'm',
        end: null,
        generation: 1,
        replicas: [1, 2, 3],
        leader: null,
        keys: null,
        bytes: null,
        writesPerSec: null,
        readsPerSec: null,
        applied: null,
      },
    ],
  });
  const lines = out.trimEnd().split('\n');
  assert.match(lines[0] ?? '', /^map version 4; figures from node 2 /);
  assert.deepEqual(lines[1]?.split(/\s+/), [
    'RANGE',
    'START',
    'END',
    'GEN',
    'REPLICAS',
    'LEADER',
    'KEYS',
    'SIZE',
    'WRITES/S',
    'READS/S',
    'APPLIED',
  ]);
  assert.deepEqual(lines[2]?.split(/\s+/), [
    '0',
    '-inf',
    '"m"',
    '1',
    '1,2,3',
    '2',
    '120',
    '13.9KiB',
    '31.5',
    '4.2',
    '418',
  ]);
  // A range the node does not run: its figures are left empty.
  assert.deepEqual(lines[3]?.split(/\s+/), ['3', '"m"', '+inf', '1', '1,2,3']);
  assert.equal(lines.length, 4);
});

void test('sizes in the table', () => {
  assert.equal(showBytes(0), '0B');
  assert.equal(showBytes(1023), '1023B');
  assert.equal(showBytes(1024), '1.0KiB');
  assert.equal(showBytes(5 * 1024 * 1024), '5.0MiB');
  assert.equal(showBytes(3 * 1024 ** 3), '3.0GiB');
  assert.equal(showBytes(2 * 1024 ** 5), '2048.0TiB');
});
