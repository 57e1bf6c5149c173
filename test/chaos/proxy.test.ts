// The link proxy is what makes a partition real, so it gets its own proof: bytes flow when the
// link is up, nothing flows (in either direction of the connection) while it is cut, and a
// healed link carries traffic again on fresh connections.

import assert from 'node:assert/strict';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { LinkProxy } from './proxy.js';

function echoServer(): Promise<{ server: Server; port: number }> {
  return new Promise((resolve) => {
    const server = createServer((s) => {
      s.on('error', () => undefined);
      s.pipe(s);
    });
    server.listen(0, '127.0.0.1', () => {
      const addr = server.address();
      resolve({ server, port: typeof addr === 'object' && addr !== null ? addr.port : 0 });
    });
  });
}

function connect(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = createConnection({ host: '127.0.0.1', port }, () => resolve(s));
    s.once('error', reject);
  });
}

/** Sends `text` and resolves with what comes back within `ms`, or null if nothing does. */
function roundTrip(s: Socket, text: string, ms: number): Promise<string | null> {
  return new Promise((resolve) => {
    let got = '';
    const onData = (d: Buffer): void => {
      got += d.toString();
      if (got.length >= text.length) finish(got);
    };
    const timer = setTimeout(() => finish(null), ms);
    const finish = (v: string | null): void => {
      clearTimeout(timer);
      s.off('data', onData);
      resolve(v);
    };
    s.on('data', onData);
    s.write(text);
  });
}

function closed(s: Socket, ms: number): Promise<boolean> {
  if (s.destroyed) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    s.once('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

void describe('LinkProxy', () => {
  let echo: { server: Server; port: number };
  let proxy: LinkProxy;

  before(async () => {
    echo = await echoServer();
    proxy = new LinkProxy({ host: '127.0.0.1', port: echo.port }, 'test link');
    await proxy.listen();
  });

  after(async () => {
    await proxy.close();
    await new Promise((r) => echo.server.close(r));
  });

  void it('forwards both ways while the link is up', async () => {
    const s = await connect(proxy.port);
    assert.equal(await roundTrip(s, 'hello', 2_000), 'hello');
    s.destroy();
  });

  void it('tears down live connections when cut and carries nothing on new ones', async () => {
    const live = await connect(proxy.port);
    assert.equal(await roundTrip(live, 'before', 2_000), 'before');
    proxy.cutLink();
    assert.equal(await closed(live, 2_000), true, 'a live connection is torn down by the cut');
    const during = await connect(proxy.port); // accepted: a black hole, not a refusal
    assert.equal(await roundTrip(during, 'lost', 300), null);
    assert.equal(proxy.stats().blackholed >= 1, true);
    proxy.heal();
    assert.equal(
      await closed(during, 2_000),
      true,
      'held connections close on heal so they redial',
    );
    const fresh = await connect(proxy.port);
    assert.equal(await roundTrip(fresh, 'after', 2_000), 'after');
    fresh.destroy();
  });
});
