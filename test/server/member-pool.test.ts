// Requests between members name their sender (API.md, "Between members"): the pool every
// member-to-member call goes through adds `x-flotilla-member` whatever form the call site's
// headers take, keeping those headers; a joining node names itself on its join.

import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import type { Dispatcher } from 'undici';
import { joinCluster } from '../../src/server/join.js';
import { MemberPool, memberHeader } from '../../src/server/member-pool.js';
import { systemClock } from '../../src/host/contracts.js';

void describe('member-to-member requests', () => {
  let server: Server;
  let url = '';
  const seen: IncomingHttpHeaders[] = [];

  before(async () => {
    server = createServer((req, res) => {
      seen.push(req.headers);
      req.resume();
      req.on('end', () => {
        res.setHeader('content-type', 'application/json');
        // Answers a join as a leader would, so joinCluster returns.
        res.end(JSON.stringify({ clusterId: 'c', initialMembers: [1], book: [] }));
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const addr = server.address();
    if (addr === null || typeof addr === 'string') throw new Error('no address');
    url = `http://127.0.0.1:${addr.port}`;
  });

  after(async () => {
    await new Promise((r) => server.close(r));
  });

  async function headersOf(send: () => Promise<unknown>): Promise<IncomingHttpHeaders> {
    const before = seen.length;
    await send();
    assert.equal(seen.length, before + 1, 'the server saw exactly one request');
    return seen[before] as IncomingHttpHeaders;
  }

  void it('names the sender on every request a member pool sends, keeping its headers', async () => {
    const pool = new MemberPool(url, 7, { connections: 2 });
    try {
      const forms: Dispatcher.DispatchOptions['headers'][] = [
        undefined,
        { 'x-call': 'object' },
        ['x-call', 'array'],
        new Map([['x-call', 'iterable']]),
      ];
      for (const headers of forms) {
        const h = await headersOf(async () => {
          const res = await pool.request({
            method: 'POST',
            path: '/',
            body: '{}',
            ...(headers === undefined ? {} : { headers }),
          });
          await res.body.text();
        });
        assert.equal(h[memberHeader], '7', `headers given as ${JSON.stringify(headers)}`);
        if (headers !== undefined) assert.equal(typeof h['x-call'], 'string');
      }
    } finally {
      await pool.close();
    }
  });

  void it('a joining node names itself on its join', async () => {
    const h = await headersOf(() =>
      joinCluster({ id: 9, peer: '127.0.0.1:1', client: 'http://127.0.0.1:2' }, [url], {
        clock: systemClock,
        timeoutMs: 5_000,
        log: pino({ level: 'silent' }),
      }),
    );
    assert.equal(h[memberHeader], '9');
  });
});
