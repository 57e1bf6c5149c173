// Bad input on every endpoint of a real (single-node, in-process) Flotilla node: each gets a
// JSON error with a stable code and a fitting status, the node keeps serving, and nothing
// written before is lost.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { resolveNodeConfig } from '../../src/server/config.js';
import { FlotillaNode } from '../../src/server/node.js';

let node: FlotillaNode;
let base: string;
let dir: string;

const port = 21000 + (process.pid % 500) * 4;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'flotilla-api-'));
  const config = resolveNodeConfig({
    id: 1,
    dataDir: dir,
    initialCluster: `1=127.0.0.1:${port}@http://127.0.0.1:${port + 1}`,
    logLevel: 'silent',
    maxValueBytes: 4096,
    maxBodyBytes: 16384,
  });
  node = await FlotillaNode.start(config);
  base = `http://127.0.0.1:${port + 1}`;
  const deadline = Date.now() + 5000;
  while (!node.runtime.isLeader() && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 10));
  assert.ok(node.runtime.isLeader(), 'the single node elected itself within 5 s');
});

after(async () => {
  await node.close();
  rmSync(dir, { recursive: true, force: true });
});

async function post(
  path: string,
  body: string,
  headers: Record<string, string> = { 'content-type': 'application/json' },
) {
  const res = await fetch(base + path, { method: 'POST', headers, body });
  const json = (await res.json()) as { error?: { code: string; message: string } } & Record<
    string,
    unknown
  >;
  return { status: res.status, json };
}

async function expectError(
  path: string,
  body: string,
  status: number,
  code: string,
  headers?: Record<string, string>,
) {
  const r = await post(path, body, headers);
  assert.equal(r.status, status, `${path} ${body.slice(0, 60)}: status`);
  assert.equal(
    r.json.error?.code,
    code,
    `${path} ${body.slice(0, 60)}: code (message: ${r.json.error?.message})`,
  );
  assert.ok((r.json.error?.message.length ?? 0) > 10, 'the message says what was wrong');
}

void test('a write before the abuse', async () => {
  const r = await post('/v1/kv/put', JSON.stringify({ key: 'keep', value: 'me' }));
  assert.equal(r.status, 200);
});

void test('malformed bodies on every kv endpoint', async () => {
  for (const path of ['/v1/kv/put', '/v1/kv/range', '/v1/kv/delete', '/v1/kv/txn']) {
    await expectError(path, '{"key":', 400, 'BAD_JSON');
    await expectError(path, '[1,2]', 400, 'BAD_REQUEST');
    await expectError(path, '"str"', 400, 'BAD_REQUEST');
    await expectError(path, '{"key":"a","bogus":1}', 400, 'UNKNOWN_FIELD');
    await expectError(path, '{"key":"a"}', 415, 'UNSUPPORTED_MEDIA_TYPE', {
      'content-type': 'text/plain',
    });
    // Before, a plain body labelled gzip was taken as if unlabelled (and a gzip one refused
    // INVALID_UTF8): no encoding but identity is read.
    await expectError(path, '{"key":"a"}', 415, 'UNSUPPORTED_MEDIA_TYPE', {
      'content-type': 'application/json',
      'content-encoding': 'gzip',
    });
  }
  const identity = await post('/v1/kv/range', '{"key":"keep"}', {
    'content-type': 'application/json',
    'content-encoding': 'identity',
  });
  assert.equal(identity.status, 200);
});

void test('a read consistency that is unknown or contradicts the serializable flag', async () => {
  const range = '/v1/kv/range';
  await expectError(
    range,
    JSON.stringify({ key: 'a', consistency: 'eventual' }),
    400,
    'BAD_REQUEST',
  );
  await expectError(
    range,
    JSON.stringify({ key: 'a', consistency: 'lease', serializable: true }),
    400,
    'CONFLICTING_FIELDS',
  );
  const ok = await post(range, JSON.stringify({ key: 'keep', consistency: 'lease' }));
  assert.equal(ok.status, 200);
});

void test('wrong types and limits', async () => {
  await expectError('/v1/kv/put', JSON.stringify({ key: 5, value: 'x' }), 400, 'BAD_REQUEST');
  await expectError('/v1/kv/put', JSON.stringify({ key: 'a', value: null }), 400, 'BAD_REQUEST');
  await expectError('/v1/kv/put', JSON.stringify({ key: '', value: 'x' }), 400, 'KEY_EMPTY');
  // The empty prefix is refused too, saying how to read every key.
  const all = await post('/v1/kv/range', JSON.stringify({ key: '', prefix: true }));
  assert.equal(all.json.error?.code, 'KEY_EMPTY');
  assert.match(all.json.error?.message ?? '', /"key": "\\u0000" and "rangeEnd": "\\u0000"/);
  const every = await post('/v1/kv/range', JSON.stringify({ key: '\u0000', rangeEnd: '\u0000' }));
  assert.equal(every.status, 200);
  assert.ok(((every.json['count'] as number) ?? 0) >= 1, JSON.stringify(every.json));
  await expectError(
    '/v1/kv/put',
    JSON.stringify({ key: 'k'.repeat(1025), value: 'x' }),
    400,
    'KEY_TOO_LARGE',
  );
  await expectError(
    '/v1/kv/put',
    JSON.stringify({ key: 'a', value: 'v'.repeat(4097) }),
    413,
    'VALUE_TOO_LARGE',
  );
  await expectError(
    '/v1/kv/put',
    JSON.stringify({ key: 'a', value: 'v'.repeat(20000) }),
    413,
    'BODY_TOO_LARGE',
  );
  await expectError(
    '/v1/kv/put',
    JSON.stringify({ key: 'a', value: 'x', encoding: 'base64' }),
    400,
    'BAD_REQUEST',
  );
  await expectError(
    '/v1/kv/put',
    JSON.stringify({ key: 'a', value: 'x', seq: 1 }),
    400,
    'BAD_REQUEST',
  );
  await expectError(
    '/v1/kv/put',
    JSON.stringify({ key: 'a', value: 'x', clientId: 'c', seq: -1 }),
    400,
    'BAD_REQUEST',
  );
  // The acknowledgement mark: at most the write's seq, and only with a session.
  for (const body of [
    { key: 'a', value: 'x', clientId: 'c', seq: 3, ackedBelow: 4 },
    { key: 'a', value: 'x', clientId: 'c', seq: 3, ackedBelow: 0 },
    { key: 'a', value: 'x', ackedBelow: 1 },
  ])
    await expectError('/v1/kv/put', JSON.stringify(body), 400, 'BAD_REQUEST');
  await expectError('/v1/kv/range', JSON.stringify({ key: 'a', limit: 'ten' }), 400, 'BAD_REQUEST');
  await expectError(
    '/v1/kv/range',
    JSON.stringify({ key: 'a', prefix: true, rangeEnd: 'b' }),
    400,
    'CONFLICTING_FIELDS',
  );
  await expectError(
    '/v1/kv/range',
    JSON.stringify({ key: 'a', serializable: 'yes' }),
    400,
    'BAD_REQUEST',
  );
  await expectError(
    '/v1/kv/txn',
    JSON.stringify({ compare: [{ key: 'a', target: 'colour', op: '=', value: 1 }] }),
    400,
    'BAD_REQUEST',
  );
  await expectError(
    '/v1/kv/txn',
    JSON.stringify({ compare: [{ key: 'a', target: 'version', op: '~', value: 1 }] }),
    400,
    'BAD_REQUEST',
  );
  await expectError(
    '/v1/kv/txn',
    JSON.stringify({ success: [{ put: { key: 'a', value: 'b' }, delete: { key: 'a' } }] }),
    400,
    'BAD_REQUEST',
  );
  // A transaction naming no key has no range to run it: refused, not retried as WRONG_RANGE.
  for (const body of ['{}', '{"compare":[],"success":[],"failure":[]}']) {
    await expectError('/v1/kv/txn', body, 400, 'BAD_REQUEST');
    const r = await post('/v1/kv/txn', body);
    assert.match(r.json.error?.message ?? '', /at least one compare or operation/);
  }
  await expectError(
    '/v1/kv/txn',
    JSON.stringify({ success: [{ launch: { key: 'a' } }] }),
    400,
    'BAD_REQUEST',
  );
  await expectError(
    '/v1/kv/txn',
    JSON.stringify({
      success: Array.from({ length: 200 }, () => ({ put: { key: 'a', value: 'b' } })),
    }),
    400,
    'BAD_REQUEST',
  );
  await expectError(
    '/v1/cluster/transfer-leadership',
    JSON.stringify({ to: 'two' }),
    400,
    'BAD_REQUEST',
  );
});

void test('unknown routes and methods; a 405 names the allowed methods', async () => {
  const r = await fetch(base + '/v1/nope');
  assert.equal(r.status, 404);
  assert.equal(((await r.json()) as { error: { code: string } }).error.code, 'NOT_FOUND');
  for (const [method, path, allow] of [
    ['GET', '/v1/kv/put', 'POST'],
    ['DELETE', '/v1/kv/range', 'POST'],
    ['POST', '/v1/status', 'GET'],
    ['PUT', '/healthz', 'GET'],
  ] as const) {
    const m = await fetch(base + path, { method });
    assert.equal(m.status, 405, `${method} ${path}`);
    assert.equal(m.headers.get('allow'), allow, `${method} ${path}: Allow`);
    const code = ((await m.json()) as { error: { code: string } }).error.code;
    assert.equal(code, 'METHOD_NOT_ALLOWED');
  }
});

/** A request with exactly these body bytes and headers (fetch would add a content type). */
function rawPost(
  path: string,
  body: Buffer,
  headers: Record<string, string>,
): Promise<{ status: number; json: { error?: { code: string; message: string } } }> {
  return new Promise((resolve, reject) => {
    const req = request(
      base + path,
      { method: 'POST', headers: { ...headers, 'content-length': String(body.length) } },
      (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString('utf8')));
        res.on('end', () => {
          try {
            resolve({ status: res.statusCode ?? 0, json: JSON.parse(text) as never });
          } catch (err) {
            reject(new Error(`Non-JSON answer ${res.statusCode}: ${text}`, { cause: err }));
          }
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const json = { 'content-type': 'application/json' };

void test('a body that is not valid UTF-8 is refused, not repaired into another key', async () => {
  for (const bytes of [
    [0xff],
    [0xc0, 0xaf], // an overlong '/'
    [0xed, 0xa0, 0x80], // a surrogate encoded as UTF-8
    [0xe2, 0x82], // a truncated sequence
  ]) {
    const body = Buffer.concat([
      Buffer.from('{"key":"k'),
      Buffer.from(bytes),
      Buffer.from('","value":"x"}'),
    ]);
    for (const path of ['/v1/kv/put', '/v1/kv/range', '/v1/kv/delete']) {
      const r = await rawPost(path, body, json);
      assert.equal(r.status, 400, `${path} ${bytes.join(',')}`);
      assert.equal(r.json.error?.code, 'INVALID_UTF8', r.json.error?.message);
      assert.match(r.json.error?.message ?? '', /offset 9/, 'the message says where');
    }
  }
  const kv = await post('/v1/kv/range', JSON.stringify({ key: 'k\ufffd' }));
  assert.equal(kv.json['count'], 0, 'no key with U+FFFD was written in their place');
});

void test('a string holding a lone surrogate is refused in every field that takes one', async () => {
  const bodies: [string, string][] = [
    ['/v1/kv/put', '{"key":"a\\ud800","value":"x"}'],
    ['/v1/kv/put', '{"key":"\\udc00b","value":"x"}'],
    ['/v1/kv/put', '{"key":"a","value":"\\ud83d"}'],
    ['/v1/kv/put', '{"key":"a","value":"x","clientId":"c\\udfff","seq":1}'],
    ['/v1/kv/range', '{"key":"a\\ud800"}'],
    ['/v1/kv/range', '{"key":"a","rangeEnd":"b\\udbff"}'],
    ['/v1/kv/delete', '{"key":"a","rangeEnd":"\\ud800"}'],
    ['/v1/kv/txn', '{"compare":[{"key":"\\ud800","target":"value","op":"=","value":"x"}]}'],
    ['/v1/kv/txn', '{"success":[{"put":{"key":"k","value":"\\udc00"}}]}'],
  ];
  for (const [path, body] of bodies) {
    const r = await post(path, body);
    assert.equal(r.status, 400, `${path} ${body}`);
    assert.equal(r.json.error?.code, 'INVALID_UTF8', `${body}: ${r.json.error?.message}`);
    assert.match(r.json.error?.message ?? '', /lone surrogate \\u[dD][89a-fA-F]/);
  }
  const pair = await post('/v1/kv/put', '{"key":"emoji\\ud83d\\ude00","value":"ok"}');
  assert.equal(pair.status, 200, 'a surrogate pair is one valid character');
  const back = await post('/v1/kv/range', JSON.stringify({ key: 'emoji😀', encoding: 'utf8' }));
  assert.equal(back.json['count'], 1);
});

void test("a job's data or result is checked as every field is: no lone surrogate, no Infinity", async () => {
  // Stored as JSON text, these went through: the surrogate kept as an escape, 1e400 as null.
  const bodies: [string, string, string, RegExp][] = [
    [
      '/v1/queue/add',
      '{"queue":"q","name":"n","data":{"k":"\\udc00x"}}',
      'INVALID_UTF8',
      /A string in "data"/,
    ],
    [
      '/v1/queue/add',
      '{"queue":"q","name":"n","data":[1,{"\\ud800":1}]}',
      'INVALID_UTF8',
      /A name in "data"/,
    ],
    [
      '/v1/queue/add',
      '{"queue":"q","name":"n","data":{"n":1e400}}',
      'BAD_REQUEST',
      /number JSON cannot carry \(Infinity\)/,
    ],
    ['/v1/queue/add', '{"queue":"q","name":"n","data":-1e400}', 'BAD_REQUEST', /-Infinity/],
    // A number field says what it got: it said null.
    ['/v1/kv/range', '{"key":"a","limit":1e400}', 'BAD_REQUEST', /got Infinity/],
    [
      '/v1/queue/complete',
      '{"queue":"q","id":"j","token":1,"result":["\\udfff"]}',
      'INVALID_UTF8',
      /A string in "result"/,
    ],
  ];
  for (const [path, body, code, message] of bodies) {
    const r = await post(path, body);
    assert.equal(r.status, 400, `${path} ${body}`);
    assert.equal(r.json.error?.code, code, `${body}: ${r.json.error?.message}`);
    assert.match(r.json.error?.message ?? '', message, body);
  }
});

void test('an object naming a field twice is refused, at any depth and however escaped', async () => {
  const bodies: [string, string][] = [
    ['/v1/kv/put', '{"key":"a","value":"x","key":"b"}'],
    ['/v1/kv/put', '{"key":"a","value":"x","k\\u0065y":"b"}'],
    ['/v1/kv/range', '{"key":"a","limit":1,"limit":2}'],
    ['/v1/kv/txn', '{"success":[{"put":{"key":"a","value":"1","value":"2"}}]}'],
    ['/v1/kv/txn', '{"success":[],"success":[]}'],
    ['/v1/cluster/transfer-leadership', '{"to":1,"to":2}'],
  ];
  for (const [path, body] of bodies) {
    const r = await post(path, body);
    assert.equal(r.status, 400, `${path} ${body}`);
    assert.equal(r.json.error?.code, 'DUPLICATE_FIELD', `${body}: ${r.json.error?.message}`);
  }
  // The same name in different objects, or as a string value, is not a duplicate.
  const ok = await post(
    '/v1/kv/txn',
    '{"compare":[{"key":"key","target":"version","op":">","value":0}],' +
      '"success":[{"put":{"key":"key","value":"{\\"key\\":1,\\"key\\":2}"}}],' +
      '"failure":[{"put":{"key":"key","value":"value"}}]}',
  );
  assert.equal(ok.status, 200, JSON.stringify(ok.json.error));
});

void test('a transaction writing one key twice in a branch is refused, as etcd does', async () => {
  const put = (key: string) => ({ put: { key, value: 'v' } });
  const del = (key: string, more: Record<string, unknown> = {}) => ({ delete: { key, ...more } });
  const refused: unknown[] = [
    { success: [put('a'), put('a')] },
    { success: [put('a'), put('b'), del('a')] },
    { success: [del('a', { prefix: true }), put('ab')] },
    { success: [del('a', { rangeEnd: 'c' }), put('b')] },
    { failure: [put('z'), put('z')] },
    { success: [put('/'), del('.', { rangeEnd: '\u0000' })] },
  ];
  for (const txn of refused) {
    const r = await post('/v1/kv/txn', JSON.stringify(txn));
    assert.equal(r.status, 400, JSON.stringify(txn));
    assert.equal(r.json.error?.code, 'DUPLICATE_KEY', r.json.error?.message);
    assert.match(r.json.error?.message ?? '', /(success|failure)\[\d\] .* key/);
  }
  const allowed: unknown[] = [
    { success: [put('a'), put('b')] },
    { success: [put('a')], failure: [put('a')] },
    { success: [{ range: { key: 'a' } }, put('a'), { range: { key: 'a' } }] },
    { success: [del('a'), del('a', { prefix: true })] },
    { success: [del('a', { rangeEnd: 'c' }), put('c')] },
  ];
  for (const txn of allowed) {
    const r = await post('/v1/kv/txn', JSON.stringify(txn));
    assert.equal(r.status, 200, `${JSON.stringify(txn)}: ${JSON.stringify(r.json.error)}`);
  }
});

void test('a body must be declared application/json; curl -d (form-urlencoded) is refused', async () => {
  const body = Buffer.from(JSON.stringify({ key: 'ct', value: 'v' }));
  for (const type of [
    'application/x-www-form-urlencoded',
    'text/plain;charset=UTF-8',
    'multipart/form-data; boundary=x',
    'application/jsonx',
    'application/json; charset=latin1',
  ]) {
    const r = await rawPost('/v1/kv/put', body, { 'content-type': type });
    assert.equal(r.status, 415, type);
    assert.equal(r.json.error?.code, 'UNSUPPORTED_MEDIA_TYPE');
    assert.match(r.json.error?.message ?? '', /-H "content-type: application\/json"/);
  }
  const none = await rawPost('/v1/kv/put', body, {});
  assert.equal(none.status, 415, 'a body without a content type');
  for (const type of [
    'application/json',
    'Application/JSON; charset=UTF-8',
    'application/json;charset=utf8',
  ]) {
    const r = await rawPost('/v1/kv/put', body, { 'content-type': type });
    assert.equal(r.status, 200, `${type}: ${JSON.stringify(r.json.error)}`);
  }
  // An empty body is read as {}: a transfer to the voter most caught up, of which this
  // single-node cluster has none. Refused for that, not for its content type.
  const empty = await rawPost('/v1/cluster/transfer-leadership', Buffer.alloc(0), {});
  assert.equal(empty.status, 400, 'an empty body needs no content type');
  assert.equal(empty.json.error?.code, 'INVALID_REQUEST');
  assert.match(empty.json.error?.message ?? '', /knows no other voter/);
});

void test('sequence numbers: a window of 256 per client, out of order inside it', async () => {
  const put = (seq: number, value: string) =>
    post('/v1/kv/put', JSON.stringify({ key: 'session', value, clientId: 'w', seq }));
  const five = await put(5, 'five');
  assert.equal(five.status, 200);
  const four = await put(4, 'four');
  assert.equal(four.status, 200, 'seq 4 after 5 is a write still in flight: it applies');
  const rev = (r: { json: Record<string, unknown> }) =>
    (r.json['header'] as { revision: number }).revision;
  assert.ok(rev(four) > rev(five));
  const retry = await put(4, 'four again');
  assert.equal(rev(retry), rev(four), 'a retry of seq 4 answers its first result');
  const high = await put(300, 'three hundred');
  assert.equal(high.status, 200);
  const stale = await put(44, 'forty-four');
  assert.equal(stale.status, 409, 'seq 44 is below the window 45..300');
  assert.equal(stale.json.error?.code, 'SESSION_STALE_SEQUENCE');
  assert.equal(
    (stale.json.error as { indefinite?: boolean } | undefined)?.indefinite,
    true,
    'whether a write with seq 44 applied before can no longer be told',
  );
  const inside = await put(45, 'forty-five');
  assert.equal(inside.status, 200, 'seq 45 is inside the window and never applied');
  const value = await post('/v1/kv/range', JSON.stringify({ key: 'session' }));
  assert.equal((value.json['kvs'] as { value: string }[])[0]?.value, 'forty-five');
});

void test('garbage bytes on the client port get a 400 and the node keeps serving', async () => {
  const reply = await new Promise<string>((resolve, reject) => {
    const s = connect(port + 1, '127.0.0.1', () =>
      s.write(Buffer.from([0, 1, 2, 255, 254, 10, 13, 10, 13, 10])),
    );
    let data = '';
    s.on('data', (d) => (data += d.toString('latin1')));
    s.on('close', () => resolve(data));
    s.on('error', reject);
    s.setTimeout(3000, () => s.destroy());
  });
  assert.match(reply, /^HTTP\/1\.1 400/);
});

void test('after all that, the node serves and the earlier write is intact', async () => {
  const r = await post('/v1/kv/range', JSON.stringify({ key: 'keep' }));
  assert.equal(r.status, 200);
  const kvs = r.json['kvs'] as { value: string }[];
  assert.equal(kvs[0]?.value, 'me');
  const health = await fetch(base + '/healthz');
  assert.equal(health.status, 200);
  const metrics = await (await fetch(base + '/metrics')).text();
  assert.match(metrics, /flotilla_http_requests_total\{[^}]*status="400"/);
  assert.match(metrics, /flotilla_is_leader\{[^}]*\} 1/);
  assert.match(metrics, /# TYPE flotilla_peer_bytes gauge/);
  assert.match(metrics, /flotilla_commit_index\{[^}]*\} [1-9]/);
});
