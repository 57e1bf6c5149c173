// Admission: a node holds at most maxInflightRequests client requests; one more waits for a
// slot, in arrival order, for up to maxInflightWaitMs (bounded in number too), and is then
// refused with 429 OVERLOADED and Retry-After, definite (not applied, and it is not), and the
// client retries it after the time asked; with no wait it is refused at once. The node's slot is held by a request whose body has
// not arrived yet (admission happens before the body is read), so nothing here is timed.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { FlotillaClient, FlotillaError } from '../../src/client/index.js';
import { httpStatus } from '../../src/api/errors.js';
import { Admission, type AdmissionTimers } from '../../src/server/admission.js';
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
  assert.deepEqual(a.state(), { requests: 0, bytes: 0, waiting: 0 });
  const r1 = a.tryAcquire(60);
  assert.ok(r1 !== null);
  assert.equal(a.tryAcquire(41), null, '60 + 41 bytes exceed 100');
  const r2 = a.tryAcquire(40);
  assert.ok(r2 !== null);
  assert.equal(a.tryAcquire(0), null, 'two requests are the limit');
  assert.deepEqual(a.state(), { requests: 2, bytes: 100, waiting: 0 });
  assert.match(
    a.describe(),
    /2 requests \(100 bytes\) in flight, the oldest for 0 ms; the limits are 2 requests/,
  );
  r1.release();
  r2.release();
  assert.deepEqual(a.state(), { requests: 0, bytes: 0, waiting: 0 });
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

/** Timers fired by the test: `fire()` runs those due by `now`. */
function manualTimers(clock: { now: number }): AdmissionTimers & { fire(): void } {
  const pending = new Map<number, { at: number; fn: () => void }>();
  let next = 1;
  return {
    setTimeout: (fn, ms) => {
      pending.set(next, { at: clock.now + ms, fn });
      return next++;
    },
    clearTimeout: (h) => pending.delete(h as number),
    fire() {
      for (const [h, t] of [...pending])
        if (t.at <= clock.now) {
          pending.delete(h);
          t.fn();
        }
    },
  };
}

void test('a request past the limits waits for a slot, in arrival order, bounded in time and number', async () => {
  const clock = { now: 1_000 };
  const timers = manualTimers(clock);
  const outcomes: boolean[] = [];
  const a = new Admission(
    { maxRequests: 1, maxBytes: 1_000, maxAgeMs: 1_000, maxWaitMs: 100, maxWaiting: 3 },
    (ok) => outcomes.push(ok),
    () => clock.now,
    timers,
  );
  const first = a.acquire(10);
  assert.ok(first !== null && !(first instanceof Promise), 'a free slot is given at once');
  const second = a.acquire(10);
  const third = a.acquire(10);
  const gone = new AbortController();
  const fourth = a.acquire(10, gone.signal);
  assert.ok(second instanceof Promise && third instanceof Promise && fourth instanceof Promise);
  assert.equal(a.acquire(10), null, 'three wait already: the fourth waiter is refused at once');
  assert.equal(a.tryAcquire(10), null, 'nobody jumps the line');
  assert.deepEqual(a.state(), { requests: 1, bytes: 10, waiting: 3 });
  assert.match(a.describe(), /3 waiting; .* with 3 waiting up to 100 ms/);
  // The client of the fourth went away: its wait ends, refused.
  gone.abort();
  assert.equal(await fourth, null);
  // A slot freed goes to the oldest waiter.
  first.release();
  const got = await second;
  assert.ok(got !== null, 'the oldest waiter got the slot');
  assert.deepEqual(a.state(), { requests: 1, bytes: 10, waiting: 1 });
  // The next one's wait runs out before a slot frees: refused.
  clock.now += 100;
  timers.fire();
  assert.equal(await third, null);
  got.release();
  assert.deepEqual(a.state(), { requests: 0, bytes: 0, waiting: 0 });
  // admitted, admitted (after waiting); refused: the fifth at once, the tryAcquire, the
  // abandoned one and the one whose wait ran out.
  assert.deepEqual(outcomes.filter(Boolean).length, 2);
  assert.deepEqual(outcomes.filter((o) => !o).length, 4);
  assert.ok(a.retryAfterSeconds() >= 1);
});

void test('with no wait allowed a request past the limits is refused at once', () => {
  const a = new Admission({ maxRequests: 1, maxBytes: 1_000, maxAgeMs: 1_000 });
  assert.ok(a.acquire(1) !== null);
  assert.equal(a.acquire(1), null);
  assert.equal(a.canWait(), false);
  assert.throws(
    () => new Admission({ maxRequests: 1, maxBytes: 1, maxAgeMs: 1, maxWaitMs: -1 }),
    RangeError,
  );
  assert.throws(
    () => new Admission({ maxRequests: 1, maxBytes: 1, maxAgeMs: 1, maxWaiting: 1.5 }),
    RangeError,
  );
});

const dir = mkdtempSync(join(tmpdir(), 'flotilla-admission-'));
const nodes: FlotillaNode[] = [];
const sockets: Socket[] = [];
after(async () => {
  for (const s of sockets) s.destroy();
  for (const n of nodes) await n.close();
  rmSync(dir, { recursive: true, force: true });
});

async function singleNode(
  name: string,
  maxInflightWaitMs = 0,
): Promise<{ node: FlotillaNode; url: string }> {
  const [peer, client, wire] = (await freePorts(3)) as [number, number, number];
  const url = `http://127.0.0.1:${client}`;
  const node = await FlotillaNode.start(
    resolveNodeConfig({
      id: 1,
      dataDir: join(dir, name),
      initialCluster: `1=127.0.0.1:${peer}@${url}`,
      logLevel: 'silent',
      maxInflightRequests: 1,
      maxInflightWaitMs,
      clientProtocolPort: wire,
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

async function waiting(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const m = /^flotilla_admission_waiting(?:\{[^}]*\})? (\d+)/m.exec(text);
  return m === null ? -1 : Number(m[1]);
}

void test('a request past the limit waits for the slot and is served once it frees, over HTTP and the binary protocol', async () => {
  const { node, url } = await singleNode('wait', 30_000);
  const held = heldPut(url, 'held');
  await until('the held put takes the slot', async () => (await metric(url, 'admitted')) === 1);
  // Over HTTP: the put waits (its body unread) rather than being refused.
  const overHttp = put(url, 'waited-http');
  await until('the HTTP put waits', async () => (await waiting(url)) === 1);
  // Over the binary protocol (the client's default once a node names its port): it waits too.
  const client = new FlotillaClient({ endpoints: [url], maxAttempts: 1 });
  try {
    await client.status(); // learns the binary protocol's port from the answer's header
    const overWire = client.put('waited-wire', 'w');
    await until('both puts wait', async () => (await waiting(url)) === 2);
    assert.equal(await metric(url, 'overloaded'), 0, 'nothing was refused');
    assert.match(await held.finish(), /^HTTP\/1\.1 200 /);
    assert.equal((await overHttp).status, 200, 'the HTTP put was served once the slot freed');
    assert.ok((await overWire).header.revision > 0, 'so was the binary one, after it');
  } finally {
    await client.close();
  }
  assert.equal(await waiting(url), 0);
  assert.equal(await metric(url, 'overloaded'), 0);
  for (const key of ['held', 'waited-http', 'waited-wire'])
    assert.equal(
      node.kv.range({ range: { key: bytes(key), rangeEnd: null }, limit: 0, countOnly: false })
        .count,
      1,
      `${key} applied once`,
    );
});

function bytes(s: string): Uint8Array {
  return new TextEncoder().encode(s);
}
