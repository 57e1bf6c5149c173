import assert from 'node:assert/strict';
import { test } from 'node:test';
import { samePeerAddress } from '../../src/transport/peer.js';

void test('two spellings of one peer address are the same address', () => {
  assert.ok(samePeerAddress('Node-1.Example.:7001', 'node-1.example:7001'));
  assert.ok(samePeerAddress('[FD00::1]:7001', '[fd00::1]:7001'));
  assert.ok(!samePeerAddress('10.0.0.1:7001', '10.0.0.1:7002'));
  assert.ok(!samePeerAddress('10.0.0.1:7001', '10.0.0.2:7001'));
  // What does not parse is compared as written.
  assert.ok(samePeerAddress('not an address', 'not an address'));
  assert.ok(!samePeerAddress('not an address', 'NOT an address'));
});
