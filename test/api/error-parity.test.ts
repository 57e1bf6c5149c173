// The same bad request gets the same error over HTTP and over the binary client protocol: the
// code and the message word for word. Both protocols check a body with the same request
// schemas (src/api), so a check added to one path only, or a message built by one of them,
// shows here as a difference.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { encodeFrame } from '../../src/api/wire-codec.js';
import { TestNodes } from '../server/nodes.js';
import { RawConnection } from './raw-wire.js';

let cluster: TestNodes;
before(async () => {
  cluster = await TestNodes.start({ nodes: 1, clientProtocol: true });
  await cluster.waitForLeader();
});
after(async () => {
  await cluster.close();
});

/** Request type over the binary protocol, its HTTP route, and a body it refuses. */
const cases: [string, string, unknown][] = [
  ['put', '/v1/kv/put', [1, 2]],
  ['put', '/v1/kv/put', 'text'],
  ['put', '/v1/kv/put', null],
  ['put', '/v1/kv/put', { key: 'bad/missing' }],
  ['put', '/v1/kv/put', { key: 5, value: 'x' }],
  ['put', '/v1/kv/put', { key: '', value: 'x' }],
  ['put', '/v1/kv/put', { key: 'k', value: 'x', lease: 'a' }],
  ['put', '/v1/kv/put', { key: 'k', value: 'x', prevKv: 1 }],
  ['put', '/v1/kv/put', { key: 'k', value: 'x', ttl: 5 }],
  ['put', '/v1/kv/put', { key: 'k', value: 'x', clientId: 'c'.repeat(129), seq: 1 }],
  ['put', '/v1/kv/put', { key: 'k', value: 'x', clientId: 'c', seq: -1 }],
  ['put', '/v1/kv/put', { key: 'k', value: 'x', encoding: 'base64' }],
  ['range', '/v1/kv/range', { key: 'bad/', prefix: true, limit: 100_001 }],
  ['range', '/v1/kv/range', { key: 'bad/', consistency: 'eventual' }],
  ['delete', '/v1/kv/delete', { key: 'k', rangeEnd: 5 }],
  ['txn', '/v1/kv/txn', { success: [{ put: { key: 'bad/txn', value: 'x' } }], failure: 5 }],
  ['txn', '/v1/kv/txn', { compare: [{ key: 'k', target: 'size', op: '=', value: 1 }] }],
  [
    'txn',
    '/v1/kv/txn',
    { success: Array.from({ length: 129 }, (_, i) => ({ put: { key: `t${i}`, value: 'x' } })) },
  ],
  ['queue.add', '/v1/queue/add', { queue: '', name: 'n' }],
  ['queue.add', '/v1/queue/add', { queue: 'q', name: 'n', delayMs: 'x' }],
  ['queue.add', '/v1/queue/add', { queue: 'q', name: ' ', data: {} }],
  ['queue.claim', '/v1/queue/claim', { queue: 'q', worker: 'w', leaseMs: 0 }],
  ['queue.complete', '/v1/queue/complete', { queue: 'q', jobId: 'x', token: -1 }],
];

void describe('a refused request', () => {
  void it('gets the same code and message over HTTP and the binary protocol', async () => {
    const c = await RawConnection.open(cluster.binaryPort(1));
    try {
      let id = 0;
      for (const [type, path, body] of cases) {
        const r = await fetch(cluster.url(1) + path, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(body),
        });
        const http = ((await r.json()) as { error?: { code: string; message: string } }).error;
        const my = ++id;
        c.socket.write(encodeFrame([my, type, body]));
        await c.until(`the answer to ${type}`, () => c.answers().some((f) => f[0] === my));
        const frame = c.answers().find((f) => f[0] === my) as [number, number, unknown];
        const wire = frame[2] as { code: string; message: string };
        const what = `${type} ${JSON.stringify(body).slice(0, 80)}`;
        assert.ok(http !== undefined, `${what}: HTTP ${r.status} served it`);
        assert.equal(frame[1], 1, `${what}: the binary protocol served it`);
        assert.deepEqual(
          { code: wire.code, message: wire.message },
          { code: http.code, message: http.message },
          what,
        );
      }
    } finally {
      c.socket.destroy();
    }
  });
});
