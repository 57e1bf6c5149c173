// Keeping a lease alive past a node that stopped answering: each renewal is given a third of
// the time to live and then tried at another node, so a short lease outlives a frozen leader.
// Before, a renewal waited out the client's whole timeout (5 s) on the frozen node, and a
// session of 3 s was lost though a new leader was elected within a second (a user's find).
// Also the arguments a keep-alive, a session and an add refuse.

import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { FlotillaError } from '../../src/base/errors.js';
import { FlotillaClient, Session } from '../../src/client/index.js';
import { until } from '../support/until.js';

function listen(server: Server): Promise<string> {
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => {
      resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    }),
  );
}

void test('a keep-alive that a frozen node does not answer is tried at another node in time', async () => {
  // Takes every request and answers none, as a stopped process's socket does.
  const frozen = createServer(() => undefined);
  let renewals = 0;
  const answering = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      if (req.url === '/v1/lease/keepalive') renewals++;
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ header: { revision: 1, memberId: 2, raftTerm: 1 }, id: 7, ttl: 2 }));
    });
  });
  const urls = [await listen(frozen), await listen(answering)];
  const client = new FlotillaClient({ endpoints: urls, protocol: 'http', maxAttempts: 1 });
  const stop = new AbortController();
  try {
    const done = client.keepLeaseAlive(7, 1.5, { signal: stop.signal });
    let failed: unknown = null;
    done.catch((err: unknown) => {
      failed = err;
    });
    // Three renewals answered take at least two thirds of a lease past the first, which the
    // frozen node held up for a third.
    await until(
      () => `three renewals answered (${renewals}; failed: ${String(failed)})`,
      () => failed === null && renewals >= 3,
      10_000,
    );
    stop.abort();
    await done;
  } finally {
    stop.abort();
    await client.close();
    frozen.closeAllConnections();
    answering.closeAllConnections();
    frozen.close();
    answering.close();
  }
});

void test('a keep-alive of no time to live, an unknown session option and an add without a name are refused', async () => {
  const client = new FlotillaClient({ endpoints: ['http://127.0.0.1:1'] });
  try {
    for (const ttl of [0, -5, Number.NaN, '3'])
      await assert.rejects(
        client.keepLeaseAlive(1, ttl as number),
        (e: unknown) =>
          e instanceof FlotillaError && e.code === 'BAD_REQUEST' && /ttl/.test(e.message),
        String(ttl),
      );
    await assert.rejects(
      Session.create(client, { ttlMs: 1000 } as { ttl?: number }),
      (e: unknown) =>
        e instanceof FlotillaError && e.code === 'BAD_REQUEST' && /"ttlMs"/.test(e.message),
    );
    await assert.rejects(
      client.queue('q').add(undefined as unknown as string, 1),
      (e: unknown) =>
        e instanceof FlotillaError &&
        e.code === 'BAD_REQUEST' &&
        e.message === '"name" must be a string, got nothing',
    );
  } finally {
    await client.close();
  }
});
