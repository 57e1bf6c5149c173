// A TLS port that reads each connection's first bytes before TLS does (answerPlainText): plain
// text is answered and closed, a TLS handshake goes on as before; the wait for the first bytes
// is bounded, and the server's connection limit still holds.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect as tlsConnect, createServer, type Server } from 'node:tls';
import type { AddressInfo, Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import {
  answerPlainText,
  looksLikeHttp,
  plainHttpRefusal,
  requestedUrl,
} from '../../src/transport/plain-text.js';
import { makeTestCerts, type TestCerts } from '../support/certs.js';
import { until } from '../support/until.js';
import { closedBy, rawSocket } from './fixtures.js';

let certs: TestCerts;
const servers: Server[] = [];

before(async () => {
  certs = await makeTestCerts(1);
});

after(async () => {
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  certs.close();
});

/** A TLS echo server that answers plain HTTP with a 400; the TLS handshake timeout is long. */
async function serve(
  o: { timeoutMs?: number; maxConnections?: number } = {},
): Promise<{ port: number; open: Set<Socket> }> {
  const pem = certs.pem(1);
  const server = createServer({ cert: pem.cert, key: pem.key, handshakeTimeout: 60_000 }, (s) =>
    s.pipe(s),
  );
  answerPlainText(server, {
    timeoutMs: o.timeoutMs ?? 60_000,
    answer: (first) => (looksLikeHttp(first) ? plainHttpRefusal('use https://') : null),
  });
  if (o.maxConnections !== undefined) server.maxConnections = o.maxConnections;
  const open = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    open.add(s);
    s.on('close', () => open.delete(s));
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as AddressInfo).port, open };
}

/** Waits (bounded) until the other side closed `s`. */
async function closedWithin(s: Socket, ms: number): Promise<void> {
  let closed = s.destroyed;
  s.on('error', () => undefined);
  s.on('close', () => (closed = true));
  s.resume();
  await until('the connection closed by the server', () => closed, ms);
}

async function answerTo(port: number, bytes: Buffer): Promise<string> {
  const s = await rawSocket(port);
  const got: Buffer[] = [];
  s.on('data', (d: Buffer) => got.push(d));
  s.write(bytes);
  await closedBy(s);
  return Buffer.concat(got).toString('latin1');
}

void describe('answerPlainText', () => {
  void it('answers plain HTTP, even with a large body sent, and closes', async () => {
    const { port } = await serve();
    const body = Buffer.alloc(256 * 1024, 'a');
    const answer = await answerTo(
      port,
      Buffer.concat([
        Buffer.from(
          `POST /v1/kv/put HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\ncontent-length: ${body.length}\r\n\r\n`,
        ),
        body,
      ]),
    );
    assert.match(answer, /^HTTP\/1\.1 400 Bad Request\r\n/);
    assert.match(answer, /\r\nconnection: close\r\n/);
    assert.match(answer, /\r\n\r\nuse https:\/\/\n$/);
  });

  void it('hands a TLS handshake, and what follows it in the same read, to TLS', async () => {
    const { port } = await serve();
    const s = tlsConnect({ host: '127.0.0.1', port, ca: certs.pem(1).ca });
    s.write('ping');
    const [echo] = (await once(s, 'data')) as [Buffer];
    assert.equal(echo.toString(), 'ping');
    s.destroy();
  });

  void it('closes a connection that sends nothing within the timeout', async () => {
    const { port, open } = await serve({ timeoutMs: 100 });
    const s = await rawSocket(port);
    // The TLS handshake timeout is a minute: only the wait for the first bytes closes it.
    await closedWithin(s, 10_000);
    await until('the server let go of it', () => open.size === 0, 10_000);
  });

  void it('the connection limit counts connections still being read', async () => {
    const { port, open } = await serve({ maxConnections: 1 });
    const first = await rawSocket(port);
    await until('the first connection accepted', () => open.size === 1, 10_000);
    const second = await rawSocket(port);
    // Dropped by the limit, although the first has sent nothing yet.
    await closedWithin(second, 10_000);
    assert.equal(open.size, 1);
    first.destroy();
  });

  void it('reads the URL a plain request asked for, or nothing from odd bytes', () => {
    assert.deepEqual(
      requestedUrl(Buffer.from('GET /v1/status?a=1 HTTP/1.1\r\nHost: node1.example:8001\r\n\r\n')),
      { host: 'node1.example:8001', path: '/v1/status?a=1' },
    );
    assert.equal(requestedUrl(Buffer.from('GET / HTTP/1.1\r\nHost: <script>\r\n\r\n')), null);
    assert.equal(requestedUrl(Buffer.from('GET / HTTP/1.1\r\n\r\n')), null);
    assert.equal(looksLikeHttp(Buffer.from([0x16, 0x03, 0x01])), false);
    assert.equal(looksLikeHttp(Buffer.from('GET /')), true);
  });
});
