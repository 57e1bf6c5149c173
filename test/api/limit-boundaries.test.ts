// A request the core would refuse gets a 4xx with a stable code, never a 500: puts with a
// value one byte under, at and over the value limit, and transactions whose log entry is one
// byte under, at and over the proposal limit, against a real single-node cluster in process.
// Before the limits were checked together, a put of 1 MiB minus 10 bytes passed the API and
// was refused by the core, answered 500 INTERNAL.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Session } from '../../src/api/routes.js';
import type { TxnCommand } from '../../src/kv/machine.js';
import { encodeWrite } from '../../src/server/kv-service.js';
import { TestNodes, postJson } from '../server/nodes.js';

let nodes: TestNodes;
let url: string;

before(async () => {
  nodes = await TestNodes.start({ nodes: 1 });
  await nodes.waitForLeader();
  url = nodes.url(1);
});

after(async () => {
  await nodes?.close();
});

async function post(path: string, body: Record<string, unknown>) {
  const r = await postJson(url + path, body, { timeoutMs: 20_000 });
  const error = r.json['error'] as { code: string; message: string } | undefined;
  assert.ok(r.status < 500, `${path} answered ${r.status}: ${JSON.stringify(error)}`);
  return { status: r.status, code: error?.code ?? 'ok', message: error?.message ?? '' };
}

void test('a put with a value at the limit - 1, the limit and the limit + 1', async () => {
  const { maxValueBytes } = nodes.node(1).config.limits;
  const seen = [];
  for (const size of [maxValueBytes - 1, maxValueBytes, maxValueBytes + 1]) {
    const r = await post('/v1/kv/put', { key: `v${size}`, value: 'v'.repeat(size) });
    seen.push(`${size - maxValueBytes}: ${r.status} ${r.code}`);
  }
  assert.deepEqual(seen, ['-1: 200 ok', '0: 200 ok', '1: 413 VALUE_TOO_LARGE']);
});

void test('a key at the limit + 1 and an empty key are refused with 400', async () => {
  const { maxKeyBytes } = nodes.node(1).config.limits;
  const over = await post('/v1/kv/put', { key: 'k'.repeat(maxKeyBytes + 1), value: '' });
  assert.deepEqual([over.status, over.code], [400, 'KEY_TOO_LARGE']);
  const empty = await post('/v1/kv/put', { key: '', value: 'x' });
  assert.deepEqual([empty.status, empty.code], [400, 'KEY_EMPTY']);
});

void test('a transaction one byte under, at and over the proposal limit', async () => {
  const node = nodes.node(1);
  const limit = node.config.limits.maxProposalBytes;
  assert.equal(node.service.maxProposalBytes, limit, 'the service and the core share the limit');
  // Measures a transaction's log entry as the node encodes it, without the limit.
  const unbounded = {
    encode: (t: TxnCommand, s: Session, timeMs: number) => encodeWrite(t, s, timeMs, Infinity),
  };
  const session = { clientId: 'boundary', seq: 1000 };
  const txn = (bytes: number) => ({
    compare: [],
    success: [
      {
        kind: 'put' as const,
        key: Buffer.from('a'),
        value: Buffer.alloc(600 * 1024, 0x61),
        prevKv: false,
      },
      {
        kind: 'put' as const,
        key: Buffer.from('b'),
        value: Buffer.alloc(bytes, 0x62),
        prevKv: false,
      },
    ],
    failure: [],
  });
  // Both values are past 64 KiB (msgpack bin32), so one more value byte is one more entry byte;
  // the leader's time is a 9-byte number both now and when the node encodes.
  const probe = 300 * 1024;
  const probeBytes = unbounded.encode(txn(probe), session, Date.now()).length;
  const atLimit = probe + (limit - probeBytes);
  assert.equal(unbounded.encode(txn(atLimit), session, Date.now()).length, limit);
  const seen = [];
  let seq = session.seq;
  for (const delta of [-1, 0, 1]) {
    const r = await post('/v1/kv/txn', {
      success: [
        { put: { key: 'a', value: 'a'.repeat(600 * 1024) } },
        { put: { key: 'b', value: 'b'.repeat(atLimit + delta) } },
      ],
      clientId: session.clientId,
      seq: seq++, // 1000..1002: the same msgpack width as the measured 1000
    });
    seen.push(`${delta}: ${r.status} ${r.code}`);
    if (r.code === 'TXN_TOO_LARGE')
      assert.match(
        r.message,
        new RegExp(`takes ${limit + 1} bytes in the log; one write holds at most ${limit}`),
      );
  }
  assert.deepEqual(seen, ['-1: 200 ok', '0: 200 ok', '1: 413 TXN_TOO_LARGE']);
});
