// Admission: a node holds at most maxInflightRequests client requests; one more is refused at
// once with 429 OVERLOADED and Retry-After, definite (not applied, and it is not), and the
// client retries it after the time asked. The node's slot is held by a request whose body has
// not arrived yet (admission happens before the body is read), so nothing here is timed.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { FlotillaClient, FlotillaError } from '../../src/client/index.js';
import { httpStatus } from '../../src/api/errors.js';
import { Admission } from '../../src/server/admission.js';
import { resolveNodeConfig } from '../../src/server/config.js';
import { FlotillaNode } from '../../src/server/node.js';
import { freePorts } from '../e2e/harness.js';

void test('admission counts requests and bytes, and always admits one request', () => {
  const outcomes: boolean[] = [];
  const a = new Admission({ maxRequests: 2, maxBytes: 100, maxAgeMs: 1_000 }, (ok) =>
    outcomes.push(ok),
  );
  const big = a.tryAcquire(500);
  assert.ok(big !== null, 'a request over the byte limit is admitted when nothing else is');
  assert.equal(a.tryAcquire(1), null, 'nothing more fits beside it');
  big.release();
  big.release(); // a second release changes nothing
  assert.deepEqual(a.state(), { requests: 0, bytes: 0 });
  const r1 = a.tryAcquire(60);
  assert.ok(r1 !== null);
  assert.equal(a.tryAcquire(41), null, '60 + 41 bytes exceed 100');
  const r2 = a.tryAcquire(40);
  assert.ok(r2 !== null);
  assert.equal(a.tryAcquire(0), null, 'two requests are the limit');
  assert.deepEqual(a.state(), { requests: 2, bytes: 100 });
  assert.match(
    a.describe(),
    /2 requests \(100 bytes\) in flight, the oldest for 0 ms; the limits are 2 requests/,
  );
  r1.release();
  r2.release();
  assert.deepEqual(a.state(), { requests: 0, bytes: 0 });
  assert.deepEqual(outcomes, [true, false, true, false, true, false]);
  assert.throws(() => new Admission({ maxRequests: 0, maxBytes: 1, maxAgeMs: 1 }), RangeError);
});

void test('while the oldest request in progress is older than maxAgeMs, new ones are refused', () => {
  let now = 0;
  const a = new Admission(
    { maxRequests: 10, maxBytes: 1_000, maxAgeMs: 100 },
    undefined,
    () => now,
  );
  const slow = a.tryAcquire(10);
  const sending = a.tryAcquire(10);
  assert.ok(slow !== null && sending !== null);
  slow.begin(); // its body arrived at 0; `sending` is still receiving its body
  now = 100;
  const fresh = a.tryAcquire(10);
  assert.ok(fresh !== null, 'at 100 ms the oldest is not older than the bound');
  fresh.begin();
  now = 101;
  assert.equal(a.tryAcquire(10), null, 'at 101 ms it is: refused');
  assert.match(a.describe(), /the oldest for 101 ms/);
  slow.release();
  assert.equal(a.oldestAgeMs(), 1, 'the next oldest began at 100 ms');
  const next = a.tryAcquire(10);
  assert.ok(next !== null, 'admitted again once the old request left');
  // A request whose body never arrives does not age: a slow sender cannot close the node.
  fresh.release();
  next.release();
  now = 10_000;
  assert.equal(a.oldestAgeMs(), 0);
  assert.ok(a.tryAcquire(10) !== null);
  sending.release();
});

void test('Retry-After spreads refused clients over the seconds the node needs to serve them', () => {
  let now = 5_000;
  const a = new Admission(
    { maxRequests: 1, maxBytes: 1_000, maxAgeMs: 10_000 },
    undefined,
    () => now,
  );
  assert.equal(a.retryAfterSeconds(), 1, 'nothing refused yet: 1 s');
  // One second in which 2 requests were answered and 9 refused.
  for (let i = 0; i < 2; i++) {
    const t = a.tryAcquire(1);
    assert.ok(t !== null);
    for (let j = 0; j < 4; j++) assert.equal(a.tryAcquire(1), null);
    t.release();
  }
  const passedOn = a.tryAcquire(1);
  assert.ok(passedOn !== null);
  passedOn.release(true); // a 429 passed on from the leader counts as refused
  assert.equal(a.retryAfterSeconds(), 5, '9 refused over 2 answered: come back in 5 s');
  now += 1_500; // the next second: the last one's counts still stand
  assert.equal(a.retryAfterSeconds(), 5);
  now += 3_000; // two quiet seconds later nothing is remembered
  assert.equal(a.retryAfterSeconds(), 1);
  for (let i = 0; i < 100; i++) a.tryAcquire(1);
  assert.equal(a.retryAfterSeconds(), 10, 'never more than 10 s');
});

void test('a burst at a node that has answered nothing yet is asked back when the limits promise', () => {
  // 1,000 clients writing once each to an idle node: 256 admitted, 744 refused before any of
  // the 256 is answered. The node answers at least 256 per 1,000 ms while it takes requests,
  // so the refused can come back in 3 s; counting the answers seen (none) asked for 10 s.
  let now = 5_000;
  const a = new Admission(
    { maxRequests: 256, maxBytes: 1 << 26, maxAgeMs: 1_000 },
    undefined,
    () => now,
  );
  const admitted = Array.from({ length: 256 }, () => a.tryAcquire(100));
  assert.ok(admitted.every((t) => t !== null));
  for (let i = 0; i < 744; i++) assert.equal(a.tryAcquire(100), null);
  assert.equal(a.retryAfterSeconds(), 3, '744 refused over the 256 a second promised');
  now += 400;
  for (const t of admitted) t?.release();
  // Answers seen above the promise count as they are: 744 over 256 still, then quiet.
  assert.equal(a.retryAfterSeconds(), 3);
  now += 3_000;
  assert.equal(a.retryAfterSeconds(), 1);
});

const dir = mkdtempSync(join(tmpdir(), 'flotilla-admission-'));
const nodes: FlotillaNode[] = [];
const sockets: Socket[] = [];
after(async () => {
  for (const s of sockets) s.destroy();
  for (const n of nodes) await n.close();
  rmSync(dir, { recursive: true, force: true });
});

async function singleNode(name: string): Promise<{ node: FlotillaNode; url: string }> {
  const [peer, client] = (await freePorts(2)) as [number, number];
  const url = `http://127.0.0.1:${client}`;
  const node = await FlotillaNode.start(
    resolveNodeConfig({
      id: 1,
      dataDir: join(dir, name),
      initialCluster: `1=127.0.0.1:${peer}@${url}`,
      logLevel: 'silent',
      maxInflightRequests: 1,
    }),
  );
  nodes.push(node);
  await until('the node elects itself', () => node.runtime.isLeader());
  return { node, url };
}

async function until(what: string, cond: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}

/**
 * A put whose headers arrive but whose body is held back: it takes the node's only admission
 * slot until `finish` sends the rest. Resolves with the raw HTTP answer.
 */
function heldPut(url: string, key: string): { finish(): Promise<string> } {
  const body = JSON.stringify({ key, value: 'held' });
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  sockets.push(socket);
  let answer = '';
  socket.on('data', (d) => (answer += d.toString('utf8')));
  socket.write(
    `POST /v1/kv/put HTTP/1.1\r\nHost: ${hostname}\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${body.length}\r\nConnection: close\r\n\r\n${body.slice(0, 5)}`,
  );
  return {
    async finish() {
      socket.write(body.slice(5));
      await new Promise<void>((resolve) => socket.once('close', () => resolve()));
      return answer;
    },
  };
}

async function put(
  url: string,
  key: string,
): Promise<{ status: number; headers: Headers; json: unknown }> {
  const res = await fetch(`${url}/v1/kv/put`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ key, value: 'v' }),
  });
  return { status: res.status, headers: res.headers, json: await res.json() };
}

async function metric(url: string, outcome: 'admitted' | 'overloaded'): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const m = new RegExp(`^flotilla_admission_total\\{outcome="${outcome}"[^}]*\\} (\\d+)`, 'm').exec(
    text,
  );
  return m === null ? 0 : Number(m[1]);
}

void test('a node at its admission limit refuses at once with 429 OVERLOADED, and applies nothing', async () => {
  const { node, url } = await singleNode('refuse');
  const held = heldPut(url, 'held');
  await until('the held put takes the slot', async () => (await metric(url, 'admitted')) === 1);

  const refused = await put(url, 'refused');
  assert.equal(refused.status, 429);
  assert.equal(refused.headers.get('retry-after'), '1');
  const e = (refused.json as { error: { code: string; indefinite: boolean; message: string } })
    .error;
  assert.equal(e.code, 'OVERLOADED');
  assert.equal(e.indefinite, false, 'refused before anything was done: definite');
  assert.match(
    e.message,
    /1 requests \(\d+ bytes\) in flight, the oldest for 0 ms; the limits are 1 requests/,
  );
  assert.equal(await metric(url, 'overloaded'), 1);
  // Status and metrics are not client work: they stay answerable at the limit.
  assert.equal((await fetch(`${url}/v1/status`)).status, 200);

  assert.match(await held.finish(), /^HTTP\/1\.1 200 /, 'the held put completes');
  assert.equal(
    node.kv.range({ range: { key: bytes('refused'), rangeEnd: null }, limit: 0, countOnly: false })
      .count,
    0,
    'the refused put was not applied',
  );
  assert.equal(
    node.kv.range({ range: { key: bytes('held'), rangeEnd: null }, limit: 0, countOnly: false })
      .count,
    1,
  );
  assert.equal((await put(url, 'after')).status, 200, 'the slot is free again');
});

void test('the client retries OVERLOADED after the Retry-After the node asked for', async () => {
  const { url } = await singleNode('retry');
  const held = heldPut(url, 'held');
  await until('the held put takes the slot', async () => (await metric(url, 'admitted')) === 1);
  const client = new FlotillaClient({ endpoints: [url], maxAttempts: 3, deadlineMs: 20_000 });
  try {
    const started = Date.now();
    const write = client.put('retried', 'yes');
    await until('the client was refused once', async () => (await metric(url, 'overloaded')) >= 1);
    await held.finish();
    await write;
    assert.ok(
      Date.now() - started >= 1_000,
      'the retry came no sooner than the Retry-After of 1 s',
    );
    assert.equal((await client.get('retried'))?.value, 'yes');
    assert.equal(await metric(url, 'overloaded'), 1, 'one refusal, then the retry got in');
  } finally {
    await client.close();
  }

  // With no attempts left, the refusal is the answer, and it is definite.
  const again = heldPut(url, 'held-again');
  await until('the slot is taken again', async () => (await metric(url, 'admitted')) >= 4);
  const once = new FlotillaClient({ endpoints: [url], maxAttempts: 1 });
  try {
    await assert.rejects(
      once.put('never', 'x'),
      (err: unknown) =>
        err instanceof FlotillaError &&
        err.code === 'OVERLOADED' &&
        httpStatus(err) === 429 &&
        err.retryAfterMs >= 1_000 &&
        !err.indefinite,
    );
  } finally {
    await once.close();
    await again.finish();
  }
});

function bytes(s: string): Uint8Array {
  return new TextEncoder().encode(s);
}
