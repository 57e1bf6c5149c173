import assert from 'node:assert/strict';
import { test } from 'node:test';
import { joinHostPort, localUrl, parseHostPort, splitHostPort } from '../../src/base/host-port.js';

void test('host:port and [ipv6]:port parse; anything else does not', () => {
  assert.deepEqual(parseHostPort('127.0.0.1:7001'), { host: '127.0.0.1', port: 7001 });
  assert.deepEqual(parseHostPort('node-1.example:0'), { host: 'node-1.example', port: 0 });
  assert.deepEqual(parseHostPort('[::1]:7001'), { host: '::1', port: 7001 });
  assert.deepEqual(parseHostPort('[::]:8001'), { host: '::', port: 8001 });
  assert.deepEqual(parseHostPort('[::ffff:127.0.0.1]:1'), { host: '::ffff:127.0.0.1', port: 1 });
  for (const bad of [
    '::1:7001', // IPv6 without brackets: which colon starts the port?
    '[127.0.0.1]:7001', // brackets around what is not IPv6
    '[::1]', // no port
    '127.0.0.1', // no port
    ':7001', // no host
    '[]:7001',
    'a b:7001',
    '127.0.0.1:65536',
    '127.0.0.1:-1',
    '127.0.0.1:7001 ',
    '127.0.0.1:123456',
  ])
    assert.equal(parseHostPort(bad), null, bad);
  assert.equal(parseHostPort('127.0.0.1:0', 1), null, 'below the least port asked');
  assert.deepEqual(parseHostPort('127.0.0.1:1', 1), { host: '127.0.0.1', port: 1 });
});

void test('an address written from its parts parses back to them', () => {
  for (const [host, port] of [
    ['127.0.0.1', 7001],
    ['::1', 8001],
    ['fd00::2', 65_535],
    ['example.org', 1],
  ] as const) {
    assert.deepEqual(parseHostPort(joinHostPort(host, port)), { host, port });
    assert.deepEqual(splitHostPort(joinHostPort(host, port)), { host, port });
  }
  assert.equal(joinHostPort('::1', 7001), '[::1]:7001');
  assert.throws(() => splitHostPort('::1:7001'), /not a host:port address: "::1:7001"/);
});

void test('a listener is reached on loopback when it binds every interface', () => {
  assert.equal(localUrl('0.0.0.0', 8001, false, '/readyz'), 'http://127.0.0.1:8001/readyz');
  assert.equal(localUrl('', 8001, false, '/'), 'http://127.0.0.1:8001/');
  assert.equal(localUrl('::', 8001, true, '/'), 'https://[::1]:8001/');
  assert.equal(localUrl('::1', 8001, false, '/readyz'), 'http://[::1]:8001/readyz');
  assert.equal(localUrl('10.0.0.5', 8001, true, '/'), 'https://10.0.0.5:8001/');
});
