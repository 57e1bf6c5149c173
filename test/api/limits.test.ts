// The documented limits of a real (single-node, in-process) node with its default settings:
// a value of exactly the value limit is stored, whatever else the request carries, and anything
// larger, alone or in a transaction, is refused with 413 before the Raft core could refuse it
// (which answered 500). The node's HTTP timeouts come from its config.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { configDefaults, resolveNodeConfig } from '../../src/server/config.js';
import { FlotillaNode } from '../../src/server/node.js';
import { freePorts } from '../e2e/harness.js';

let node: FlotillaNode;
let base: string;
let clientPort: number;
let dir: string;
const headersTimeoutMs = 500;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'flotilla-limits-'));
  const [peerPort, port] = (await freePorts(2)) as [number, number];
  clientPort = port;
  node = await FlotillaNode.start(
    resolveNodeConfig({
      id: 1,
      dataDir: dir,
      initialCluster: `1=127.0.0.1:${peerPort}@http://127.0.0.1:${clientPort}`,
      logLevel: 'silent',
      httpHeadersTimeoutMs: headersTimeoutMs,
    }),
  );
  base = `http://127.0.0.1:${clientPort}`;
  const deadline = Date.now() + 5000;
  while (!node.runtime.isLeader() && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 10));
  assert.ok(node.runtime.isLeader(), 'the single node elected itself within 5 s');
});

after(async () => {
  await node?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function post(path: string, body: unknown) {
  const res = await fetch(base + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const json = (await res.json()) as { error?: { code: string; message: string } } & Record<
    string,
    unknown
  >;
  return { status: res.status, json };
}

const maxValue = configDefaults.maxValueBytes;
const maxKey = configDefaults.maxKeyBytes;
// The session fields at their worst for the envelope: 128 characters of 3 bytes each in UTF-8.
const longClientId = '\uffff'.repeat(128);

void test('the documented limits are 1 MiB values and 1 KiB keys', () => {
  assert.equal(maxValue, 1024 * 1024);
  assert.equal(maxKey, 1024);
});

void test('a value of exactly the limit is stored, with the longest key and session fields', async () => {
  let seq = Number.MAX_SAFE_INTEGER - 10;
  for (const [size, key] of [
    [maxValue, 'k'.repeat(maxKey)],
    [maxValue - 1, 'j'.repeat(maxKey)],
  ] as const) {
    const r = await post('/v1/kv/put', {
      key,
      value: 'v'.repeat(size),
      prevKv: true,
      clientId: longClientId,
      seq: seq++,
    });
    assert.equal(r.status, 200, `${size} bytes: ${JSON.stringify(r.json.error)}`);
    const got = await post('/v1/kv/range', { key });
    const kvs = got.json['kvs'] as { value: string }[];
    assert.equal(kvs[0]?.value.length, size, 'the whole value reads back');
  }
  const b64 = await post('/v1/kv/put', {
    key: Buffer.alloc(maxKey, 0xff).toString('base64'),
    value: Buffer.alloc(maxValue, 0xfe).toString('base64'),
    encoding: 'base64',
  });
  assert.equal(b64.status, 200, `base64: ${JSON.stringify(b64.json.error)}`);
});

void test('a value one byte over the limit is refused with 413 VALUE_TOO_LARGE', async () => {
  const r = await post('/v1/kv/put', { key: 'over', value: 'v'.repeat(maxValue + 1) });
  assert.equal(r.status, 413);
  assert.equal(r.json.error?.code, 'VALUE_TOO_LARGE');
  assert.match(r.json.error?.message ?? '', /1048577 bytes; the limit is 1048576/);
});

void test('a transaction larger than one log entry is refused with 413 TXN_TOO_LARGE', async () => {
  const half = 'h'.repeat(600 * 1024);
  const r = await post('/v1/kv/txn', {
    success: [{ put: { key: 'a', value: half } }, { put: { key: 'b', value: half } }],
  });
  assert.equal(r.status, 413, JSON.stringify(r.json.error));
  assert.equal(r.json.error?.code, 'TXN_TOO_LARGE');
  assert.match(r.json.error?.message ?? '', /takes \d+ bytes in the log; one write holds at most/);
  const after = await post('/v1/kv/range', { key: 'a' });
  assert.equal(after.json['count'], 0, 'nothing of it applied');
});

void test('the operation limit is 128 per branch: compare, success and failure each', async () => {
  const puts = (n: number, p: string) =>
    Array.from({ length: n }, (_, i) => ({ put: { key: `${p}${i}`, value: 'v' } }));
  const compare = Array.from({ length: 128 }, (_, i) => ({
    key: `ops/s${i}`,
    target: 'version',
    op: '=',
    value: 0,
  }));
  // 384 operations in all, 128 in each branch: taken.
  const full = await post('/v1/kv/txn', {
    compare,
    success: puts(128, 'ops/s'),
    failure: puts(128, 'ops/f'),
  });
  assert.equal(full.status, 200, JSON.stringify(full.json.error));
  assert.equal(full.json['succeeded'], true);
  const written = await post('/v1/kv/range', { key: 'ops/s', prefix: true, countOnly: true });
  assert.equal(written.json['count'], 128);
  for (const branch of ['compare', 'success', 'failure']) {
    const over =
      branch === 'compare'
        ? { compare: [...compare, { key: 'ops/x', target: 'version', op: '=', value: 0 }] }
        : { [branch]: puts(129, `ops/${branch}/`) };
    const r = await post('/v1/kv/txn', over);
    assert.equal(r.status, 400, `${branch}: ${JSON.stringify(r.json)}`);
    assert.equal(r.json.error?.code, 'BAD_REQUEST');
    assert.match(r.json.error?.message ?? '', new RegExp(`"${branch}" has 129 items; at most 128`));
  }
});

void test('a connection that sends half a request is closed after httpHeadersTimeoutMs', async () => {
  // A time bound: the node checks every quarter of the 500 ms header timeout, so it closes
  // the connection after 500-625 ms; 5 s leaves room for a loaded machine.
  const started = performance.now();
  const reply = await new Promise<string>((resolve, reject) => {
    const s = connect(clientPort, '127.0.0.1', () =>
      s.write('POST /v1/kv/put HTTP/1.1\r\nHost: x\r\n'),
    );
    let data = '';
    s.on('data', (d) => (data += d.toString('latin1')));
    s.on('close', () => resolve(data));
    s.on('error', reject);
    s.setTimeout(5000, () => {
      s.destroy();
      reject(new Error(`still open after 5 s; received ${JSON.stringify(data)}`));
    });
  });
  const elapsed = performance.now() - started;
  assert.ok(elapsed >= headersTimeoutMs * 0.9, `closed after ${elapsed} ms, before the timeout`);
  assert.match(reply, /^HTTP\/1\.1 408 /);
  assert.match(reply, /"code":"REQUEST_TIMEOUT"/);
});
