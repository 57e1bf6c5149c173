// A node whose certificate the client refuses (not of a CA it trusts, or none given): the
// refusal comes back on every attempt, so the client tries each endpoint once and fails at
// once with its hint, where it tried 8 times over 2 s. Counted in TCP connections the server
// accepted, not in time.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { FlotillaClient, type FlotillaError } from '../../src/client/index.js';
import { makeTestCerts, type Pem, type TestCerts } from '../support/certs.js';
import { runCli, stopAll } from '../cli/run.js';

let certs: TestCerts;
const servers: Server[] = [];

before(async () => {
  certs = await makeTestCerts(1);
});

after(async () => {
  await stopAll();
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  certs.close();
});

/** An HTTPS server with `pem`'s certificate answering `{}`; counts the connections made to it. */
async function serve(pem: Pem): Promise<{ url: string; connections: () => number }> {
  let connections = 0;
  const server = createServer({ cert: pem.cert, key: pem.key }, (_req, res) => {
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

const untrustedHint = /give the cluster's CA, tls\.ca, or --cacert with the CLI\)$/;

void describe('a certificate the client refuses', () => {
  void it('fails the call at the first attempt, with the hint, definite', async () => {
    const node = await serve(certs.pem(1));
    // Trusts another CA: the node's certificate does not verify.
    const c = new FlotillaClient({ endpoints: [node.url], tls: { ca: certs.roguePem().cert } });
    try {
      await assert.rejects(c.put('k', 'v'), (e: FlotillaError) => {
        assert.equal(e.code, 'CONNECTION');
        assert.equal(e.indefinite, false, 'never sent');
        assert.match(e.message, untrustedHint);
        assert.doesNotMatch(e.message, /gave up after retries/);
        return true;
      });
      assert.equal(node.connections(), 1, 'one attempt, not 8');
    } finally {
      await c.close();
    }
  });

  void it('tries each endpoint once, and is served by one whose certificate verifies', async () => {
    const ca = certs.pem(1).ca;
    const rogue1 = await serve(certs.roguePem());
    const rogue2 = await serve(certs.roguePem());
    const good = await serve(certs.pem(1));
    const none = new FlotillaClient({ endpoints: [rogue1.url, rogue2.url], tls: { ca } });
    try {
      await assert.rejects(none.clusterStatus(), (e: FlotillaError) => {
        assert.equal(e.code, 'CONNECTION');
        assert.match(e.message, /each endpoint tried once: https:\S+ \(\w+\), https:/);
        return true;
      });
      assert.deepEqual([rogue1.connections(), rogue2.connections()], [1, 1]);
    } finally {
      await none.close();
    }
    const some = new FlotillaClient({ endpoints: [rogue1.url, good.url], tls: { ca } });
    try {
      assert.deepEqual(await some.clusterStatus(), {});
      assert.equal(rogue1.connections(), 2, 'the refused endpoint tried once by this call');
    } finally {
      await some.close();
    }
  });

  void it('a watch that no endpoint lets open for its certificate ends, with the hint', async () => {
    const rogue1 = await serve(certs.roguePem());
    const rogue2 = await serve(certs.roguePem());
    const c = new FlotillaClient({
      endpoints: [rogue1.url, rogue2.url],
      tls: { ca: certs.pem(1).ca },
    });
    try {
      // Before: it tried again and again, for ever, saying nothing.
      await assert.rejects(
        async () => {
          // Bounded: without the fix the iteration ends here, unrejected, when the signal fires.
          for await (const _ of c.watch('k', { signal: AbortSignal.timeout(10_000) }))
            assert.fail('no batch can come');
        },
        (e: FlotillaError) => {
          assert.equal(e.code, 'CONNECTION');
          assert.match(e.message, untrustedHint);
          return true;
        },
      );
      assert.deepEqual([rogue1.connections(), rogue2.connections()], [1, 1]);
    } finally {
      await c.close();
    }
  });

  void it('ends a lease keep-alive at once, with the refusal', async () => {
    const node = await serve(certs.pem(1));
    const c = new FlotillaClient({ endpoints: [node.url], tls: { ca: certs.roguePem().cert } });
    try {
      // Before: renewed every 100 ms until the lease's time to live ran out (10 minutes here);
      // the signal bounds the test, and resolves the keep-alive, unrejected, without the fix.
      await assert.rejects(
        c.keepLeaseAlive(1, 600, { signal: AbortSignal.timeout(10_000) }),
        (e: FlotillaError) => {
          assert.equal(e.code, 'CONNECTION');
          assert.match(e.message, untrustedHint);
          return true;
        },
      );
      assert.equal(node.connections(), 1, 'one renewal, not one every 100 ms');
    } finally {
      await c.close();
    }
  });

  void it('the command with a wrong --cacert makes one attempt and prints the hint', async () => {
    const node = await serve(certs.pem(1));
    const r = await runCli(
      ['kv', 'get', 'k', '--endpoints', node.url, '--cacert', join(certs.otherDir, 'ca.crt')],
      30_000,
    );
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /CONNECTION: .*give the cluster's CA, tls\.ca, or --cacert/);
    assert.equal(node.connections(), 1, r.stderr);
  });
});
