// The HTTP server bounds every connection in time and number: half a request is answered 408
// and closed after the header timeout, a body that stops arriving after the request timeout, an
// idle keep-alive connection after the idle timeout, and connections past the limit are closed
// on arrival while those already open keep working. Short timeouts come from the options; the
// tests wait for events with generous bounds and never sleep to synchronise.

import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { after, describe, it } from 'node:test';
import { JsonHttpServer, type HttpServerOptions } from '../../src/api/http.js';

const servers: JsonHttpServer[] = [];
const sockets: Socket[] = [];

after(async () => {
  for (const s of sockets) s.destroy();
  await Promise.all(servers.map((s) => s.close()));
});

async function serve(
  o: Partial<HttpServerOptions>,
): Promise<{ port: number; http: JsonHttpServer }> {
  const http = new JsonHttpServer({
    maxBodyBytes: 1024,
    headersTimeoutMs: 60_000,
    requestTimeoutMs: 60_000,
    idleTimeoutMs: 60_000,
    maxConnections: 1_000,
    ...o,
  });
  http.route('GET', '/ping', () => ({ json: { pong: true } }));
  http.route('POST', '/echo', ({ body }) => ({ json: body }));
  servers.push(http);
  const addr = await http.listen('127.0.0.1:0');
  return { port: addr.port, http };
}

/** A raw connection that records what it receives and when it closes. */
interface Conn {
  readonly socket: Socket;
  received(): string;
  /** Resolves with the milliseconds from opening to close; rejects past `boundMs`. */
  closed(boundMs: number): Promise<number>;
  /** Resolves once `pattern` appears in what was received; rejects past `boundMs`. */
  receive(pattern: RegExp, boundMs: number): Promise<string>;
}

async function open(port: number): Promise<Conn> {
  const socket = connect(port, '127.0.0.1');
  sockets.push(socket);
  const openedAt = performance.now();
  let data = '';
  let closedAt: number | null = null;
  const waiters = new Set<() => void>();
  const wake = () => waiters.forEach((w) => w());
  socket.on('data', (d) => {
    data += d.toString('latin1');
    wake();
  });
  socket.on('error', () => undefined); // a reset shows as a close, which the tests check
  socket.on('close', () => {
    closedAt = performance.now();
    wake();
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const until = <T>(ready: () => T | null, boundMs: number, what: string): Promise<T> =>
    new Promise((resolve, reject) => {
      const check = () => {
        const v = ready();
        if (v === null) return;
        waiters.delete(check);
        clearTimeout(timer);
        resolve(v);
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`${what} within ${boundMs} ms; received ${JSON.stringify(data)}`));
      }, boundMs);
      waiters.add(check);
      check();
    });
  return {
    socket,
    received: () => data,
    closed: (boundMs) =>
      until(() => (closedAt === null ? null : closedAt - openedAt), boundMs, 'no close'),
    receive: (pattern, boundMs) =>
      until(() => (pattern.test(data) ? data : null), boundMs, `no ${String(pattern)}`),
  };
}

const get = 'GET /ping HTTP/1.1\r\nHost: x\r\n\r\n';

// Time bounds: the lower ones hold on any machine (the server must not close early); the upper
// ones are the timeout plus seconds of slack for a loaded 2-core machine.
void describe('HTTP connection limits', () => {
  void it('closes a connection that sends half a request after the header timeout, with a 408', async () => {
    const { port } = await serve({ headersTimeoutMs: 300, requestTimeoutMs: 300 });
    const half = await open(port);
    half.socket.write('POST /echo HTTP/1.1\r\nHost: x\r\nContent-Le');
    const silent = await open(port);
    const [halfMs, silentMs] = await Promise.all([half.closed(5_000), silent.closed(5_000)]);
    for (const ms of [halfMs, silentMs]) assert.ok(ms >= 270, `closed after ${ms} ms`);
    assert.match(half.received(), /^HTTP\/1\.1 408 Request Timeout\r\n/);
    assert.match(half.received(), /"code":"REQUEST_TIMEOUT"/);
    assert.match(silent.received(), /^HTTP\/1\.1 408 /, 'sending nothing is no better');
  });

  void it('closes a connection whose body stops arriving after the request timeout', async () => {
    const { port } = await serve({ headersTimeoutMs: 200, requestTimeoutMs: 400 });
    const c = await open(port);
    c.socket.write(
      'POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 20\r\n\r\n{"a":',
    );
    const ms = await c.closed(5_000);
    assert.ok(ms >= 360, `closed after ${ms} ms`);
  });

  void it('closes an idle keep-alive connection after the idle timeout', async () => {
    const { port } = await serve({ idleTimeoutMs: 300 });
    const c = await open(port);
    for (let i = 1; i <= 2; i++) {
      c.socket.write(get);
      await c.receive(new RegExp(`(\\{"pong":true\\}[^]*){${i}}`), 5_000);
    }
    assert.match(
      c.received(),
      /Connection: keep-alive/i,
      'the connection stays open after answers',
    );
    const before = performance.now();
    await c.closed(5_000);
    const idleMs = performance.now() - before;
    assert.ok(idleMs >= 150, `closed ${idleMs} ms after the last answer`);
  });

  void it('closes connections past the limit on arrival; those already open keep working', async () => {
    const { port, http } = await serve({ maxConnections: 3 });
    const held = [await open(port), await open(port), await open(port)];
    for (const c of held) {
      c.socket.write(get);
      await c.receive(/\{"pong":true\}/, 5_000);
    }
    assert.equal(http.connections(), 3);
    const extra = await open(port);
    extra.socket.write(get);
    await extra.closed(5_000);
    assert.equal(extra.received(), '', 'the connection past the limit got no answer');
    for (const c of held) {
      c.socket.write(get);
      await c.receive(/(\{"pong":true\}[^]*){2}/, 5_000);
    }
    held[0]?.socket.destroy();
    await held[0]?.closed(5_000);
    // The server sees the close asynchronously: wait (bounded) until it counts 2 again.
    const deadline = performance.now() + 5_000;
    while (http.connections() > 2) {
      if (performance.now() > deadline) assert.fail(`server still counts ${http.connections()}`);
      await new Promise((r) => setImmediate(r));
    }
    const again = await open(port);
    again.socket.write(get);
    await again.receive(/\{"pong":true\}/, 5_000);
  });

  // Found by the HTTP fuzzer (test/fuzz): node:http answered these itself, with an empty 400.
  void it('refuses an HTTP/1.1 request without a Host header with a coded JSON error', async () => {
    const { port } = await serve({});
    const c = await open(port);
    c.socket.write('GET /ping HTTP/1.1\r\n\r\n');
    const got = await c.receive(/\}$/, 5_000);
    assert.match(got, /^HTTP\/1\.1 400 /);
    assert.match(got, /"code":"BAD_REQUEST","message":"An HTTP\/1\.1 request needs a Host header"/);
    c.socket.write('GET /ping HTTP/1.0\r\n\r\n');
    await c.receive(/\{"pong":true\}/, 5_000);
  });

  // Found by the HTTP fuzzer (test/fuzz): the cut body was logged as an internal error.
  void it('takes a body the client cut short as a bad request, not an internal error', async () => {
    const errors: unknown[] = [];
    const statuses: number[] = [];
    const { port } = await serve({
      onError: (err) => errors.push(err),
      onRequest: (_route, status) => statuses.push(status),
    });
    const c = await open(port);
    c.socket.end(
      'POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 20\r\n\r\n{"a":',
    );
    await c.closed(5_000);
    assert.match(c.received(), /^HTTP\/1\.1 400 /);
    const deadline = performance.now() + 5_000;
    while (statuses.length === 0) {
      if (performance.now() > deadline) assert.fail('the request never finished');
      await new Promise((r) => setImmediate(r));
    }
    assert.deepEqual(statuses, [400]);
    assert.deepEqual(errors, []);
  });

  void it('refuses a chunked body that grows past the limit with 413 BODY_TOO_LARGE as it arrives', async () => {
    const { port } = await serve({});
    const c = await open(port);
    c.socket.write(
      'POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n',
    );
    // 3,000 bytes in 600-byte chunks against a 1,024-byte limit, and no end: the answer must
    // come from the limit, not from the body ending.
    const chunk = 'x'.repeat(600);
    for (let i = 0; i < 5; i++) c.socket.write(`${chunk.length.toString(16)}\r\n${chunk}\r\n`);
    const got = await c.receive(/\}$/, 5_000);
    assert.match(got, /^HTTP\/1\.1 413 /);
    assert.match(got, /Connection: close/i);
    assert.match(got, /"code":"BODY_TOO_LARGE","message":"Body exceeds the limit of 1024 bytes"/);
    await c.closed(5_000);
  });

  void it('serves the query of an origin-form target and routes an absolute-form one', async () => {
    const { port, http } = await serve({});
    http.route('GET', '/q', ({ query }) => ({ json: { a: query.get('a'), b: query.getAll('b') } }));
    const c = await open(port);
    c.socket.write('GET /q?a=1&b=x&b=y%20z HTTP/1.1\r\nHost: x\r\n\r\n');
    await c.receive(/\{"a":"1","b":\["x","y z"\]\}/, 5_000);
    c.socket.write('GET http://x/q?a=2 HTTP/1.1\r\nHost: x\r\n\r\n');
    await c.receive(/\{"a":"2","b":\[\]\}/, 5_000);
    c.socket.write('GET /ping?a=1 HTTP/1.1\r\nHost: x\r\n\r\n');
    await c.receive(/\{"pong":true\}/, 5_000);
  });
});
