// An https:// endpoint whose port does not speak TLS (a node serving plain HTTP, a plain
// binary protocol port): OpenSSL reads the answer to its handshake as a record of no TLS
// version ("wrong version number") on every attempt, so the client tries each such endpoint
// once and fails at once with the hint to use http://, where it tried 8 times over 2 s.
// Counted in TCP connections the server accepted, not in time.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type Server } from 'node:http';
import {
  createServer as createNetServer,
  type AddressInfo,
  type Server as NetServer,
} from 'node:net';
import { after, describe, it } from 'node:test';
import { FlotillaClient, FlotillaError } from '../../src/client/index.js';
import { refusedEndpoint } from '../../src/client/util.js';
import { WireConnection } from '../../src/client/wire.js';
import { runCli, stopAll } from '../cli/run.js';

const servers: (Server | NetServer)[] = [];

after(async () => {
  await stopAll();
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
});

/** A plain HTTP server answering `{}`, named https://; counts the connections made to it. */
async function plainHttp(): Promise<{ url: string; connections: () => number }> {
  let connections = 0;
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{}');
  });
  server.on('connection', () => connections++);
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
    connections: () => connections,
  };
}

const notTlsHint =
  /the port answered without TLS: if the node serves plain HTTP, its endpoint is http:\/\/\)/;

void describe('an https:// endpoint that does not speak TLS', () => {
  void it('fails the call at the first attempt, with the hint, definite', async () => {
    const node = await plainHttp();
    const c = new FlotillaClient({ endpoints: [node.url] });
    try {
      await assert.rejects(c.put('k', 'v'), (e: FlotillaError) => {
        assert.equal(e.code, 'CONNECTION');
        assert.equal(e.indefinite, false, 'never sent');
        assert.match(e.message, notTlsHint);
        assert.match(e.message, /answered without TLS \(ERR_SSL_WRONG_VERSION_NUMBER\)/);
        // OpenSSL's error queue, with its source file and a newline, said nothing to a user.
        assert.doesNotMatch(e.message, /ssl3_get_record|\n/);
        assert.doesNotMatch(e.message, /gave up after retries/);
        return true;
      });
      assert.equal(node.connections(), 1, 'one attempt, not 8');
    } finally {
      await c.close();
    }
  });

  void it('tries each endpoint once', async () => {
    const a = await plainHttp();
    const b = await plainHttp();
    const c = new FlotillaClient({ endpoints: [a.url, b.url] });
    try {
      await assert.rejects(c.clusterStatus(), (e: FlotillaError) => {
        assert.equal(e.code, 'CONNECTION');
        assert.match(
          e.message,
          /each endpoint tried once: https:\S+ \(ERR_SSL_WRONG_VERSION_NUMBER\), https:/,
        );
        return true;
      });
      assert.deepEqual([a.connections(), b.connections()], [1, 1]);
    } finally {
      await c.close();
    }
  });

  void it('a watch that no endpoint lets open ends, with the hint', async () => {
    const a = await plainHttp();
    const b = await plainHttp();
    const c = new FlotillaClient({ endpoints: [a.url, b.url] });
    try {
      await assert.rejects(
        async () => {
          // Bounded: without the fix the iteration ends here, unrejected, when the signal fires.
          for await (const _ of c.watch('k', { signal: AbortSignal.timeout(10_000) }))
            assert.fail('no batch can come');
        },
        (e: FlotillaError) => {
          assert.equal(e.code, 'CONNECTION');
          assert.match(e.message, notTlsHint);
          return true;
        },
      );
      assert.deepEqual([a.connections(), b.connections()], [1, 1]);
    } finally {
      await c.close();
    }
  });

  void it('a binary protocol connection over TLS to a plain port says so, marked refused', async () => {
    // A plain binary port answers a handshake it cannot read with an error frame.
    const server = createNetServer((s) => {
      s.on('error', () => undefined);
      s.once('data', () => s.end(Buffer.from([0, 0, 0, 2, 0x91, 0x01])));
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    await assert.rejects(
      WireConnection.connect({ host: '127.0.0.1', port, timeoutMs: 5_000, tls: {} }),
      (e: unknown) => {
        assert.ok(e instanceof FlotillaError);
        assert.equal(e.code, 'CONNECTION');
        assert.match(e.message, notTlsHint);
        assert.equal(refusedEndpoint(e), 'ERR_SSL_WRONG_VERSION_NUMBER');
        return true;
      },
    );
  });

  void it('the command makes one attempt and prints the hint', async () => {
    const node = await plainHttp();
    const r = await runCli(['kv', 'get', 'k', '--endpoints', node.url], 30_000);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /^flotilla: CONNECTION: .*its endpoint is http:\/\/\)\n$/);
    assert.equal(node.connections(), 1, r.stderr);
  });

  void it('snapshot save says the port answered without TLS', async () => {
    const node = await plainHttp();
    const dir = mkdtempSync(join(tmpdir(), 'flotilla-not-tls-'));
    try {
      const r = await runCli(
        ['snapshot', 'save', join(dir, 'backup'), '--endpoints', node.url],
        30_000,
      );
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /^flotilla: CONNECTION: No endpoint served a backup: https:/);
      assert.match(r.stderr, notTlsHint);
      assert.doesNotMatch(r.stderr, /ssl3_get_record/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
