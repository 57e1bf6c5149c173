// The client's retry loop against scripted HTTP servers: what it tells the caller about an
// operation that may or may not have taken effect is what every history checker relies on.

import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, describe, it } from 'node:test';
import { FlotillaClient, FlotillaError } from '../../src/client/index.js';

type Handler = (body: string, res: ServerResponse, attempt: number) => void;

const servers: Server[] = [];

async function serve(handler: Handler): Promise<string> {
  let attempt = 0;
  const server = createServer((req: IncomingMessage, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => handler(body, res, attempt++));
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function reply(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

function error(code: string, indefinite: boolean, leader?: number) {
  return {
    error: { code, message: `scripted ${code}`, indefinite, ...(leader ? { leader } : {}) },
  };
}

/** Runs one put that must fail, and checks the error the client reports. */
async function putFails(
  options: ConstructorParameters<typeof FlotillaClient>[0],
  expected: { code?: string; indefinite: boolean; why?: string },
): Promise<void> {
  const client = new FlotillaClient(options);
  try {
    await assert.rejects(client.put('k', 'v'), (e: unknown) => {
      assert.ok(e instanceof FlotillaError);
      if (expected.code !== undefined) assert.equal(e.code, expected.code);
      assert.equal(e.indefinite, expected.indefinite, expected.why);
      return true;
    });
  } finally {
    await client.close();
  }
}

after(async () => {
  await Promise.all(
    servers.map((s) => {
      s.closeAllConnections();
      return new Promise((r) => s.close(r));
    }),
  );
});

void describe('FlotillaClient retries', () => {
  void it('a definite refusal after an attempt that timed out is reported indefinite', async () => {
    // Attempt 1 never answers (it may have been applied); attempt 2 is refused outright.
    const url = await serve((_body, res, attempt) => {
      if (attempt === 0) return; // hang until the client's per-attempt timeout
      reply(res, 409, error('SESSION_STALE_SEQUENCE', false));
    });
    await putFails(
      { endpoints: [url], timeoutMs: 200, maxAttempts: 3 },
      {
        code: 'SESSION_STALE_SEQUENCE',
        indefinite: true,
        why: 'the first attempt may have taken effect',
      },
    );
  });

  void it('a read that failed is definite: it cannot have taken effect', async () => {
    // Before, a read that timed out, or reached something that is not a node (a peer port,
    // another server), was reported as an operation that "may have taken effect".
    const hangs = await serve(() => undefined);
    const notANode = await serve((_body, res) => {
      res.writeHead(501, { 'content-type': 'text/html' });
      res.end('<html>not a node</html>');
    });
    for (const url of [hangs, notANode]) {
      const client = new FlotillaClient({ endpoints: [url], timeoutMs: 200, maxAttempts: 2 });
      try {
        // The queue's reads too (they were reported indefinite).
        const q = client.queue('q');
        for (const read of [
          () => client.get('k'),
          () => client.members(),
          () => q.stats(),
          () => q.get('job-1'),
          () => q.list('waiting'),
        ]) {
          await assert.rejects(read(), (e: unknown) => {
            assert.ok(e instanceof FlotillaError, String(e));
            assert.equal(e.indefinite, false, `${e.code}: ${e.message}`);
            return true;
          });
        }
        // The same failures on a write stay indefinite: it may have applied.
        await assert.rejects(client.put('k', 'v'), (e: unknown) => {
          assert.ok(e instanceof FlotillaError && e.indefinite, String(e));
          return true;
        });
      } finally {
        await client.close();
      }
    }
  });

  void it('a connection closed before the node had the request (REQUEST_TIMEOUT) is tried again', async () => {
    // A handshake or headers that arrived late on a loaded machine failed the call at once.
    const url = await serve((_body, res, attempt) => {
      if (attempt === 0) reply(res, 408, error('REQUEST_TIMEOUT', false));
      else reply(res, 200, { header: { revision: 7, memberId: 1, raftTerm: 1 } });
    });
    const client = new FlotillaClient({ endpoints: [url], timeoutMs: 1_000, maxAttempts: 3 });
    try {
      const r = await client.put('k', 'v');
      assert.equal(r.header.revision, 7);
    } finally {
      await client.close();
    }
  });

  void it('an https:// endpoint that serves plain HTTP is named as such', async () => {
    const url = (await serve((_b, res) => reply(res, 200, {}))).replace(/^http:/, 'https:');
    const client = new FlotillaClient({ endpoints: [url], maxAttempts: 1 });
    try {
      await assert.rejects(client.put('k', 'v'), (e: unknown) => {
        assert.ok(e instanceof FlotillaError);
        assert.equal(e.code, 'CONNECTION');
        assert.match(
          e.message,
          /answered without TLS: if the node serves plain HTTP, its endpoint is http:\/\//,
        );
        return true;
      });
    } finally {
      await client.close();
    }
  });

  void it('a node that answered before and then drops a request is not taken for a TLS port', async () => {
    let calls = 0;
    const url = await serve((_b, res) => {
      if (calls++ === 0) reply(res, 200, { header: { revision: 7, memberId: 1, raftTerm: 1 } });
      else res.socket?.destroy(); // as a node that dies mid-request, on the same connection
    });
    const client = new FlotillaClient({ endpoints: [url], maxAttempts: 1 });
    try {
      await client.put('k', 'v');
      await assert.rejects(client.put('k', 'w'), (e: unknown) => {
        assert.ok(e instanceof FlotillaError);
        assert.equal(e.code, 'CONNECTION');
        assert.doesNotMatch(e.message, /https:/);
        return true;
      });
    } finally {
      await client.close();
    }
  });

  void it('a definite refusal on the first attempt stays definite', async () => {
    const url = await serve((_body, res) => reply(res, 400, error('BAD_REQUEST', false)));
    await putFails({ endpoints: [url], timeoutMs: 1_000 }, { indefinite: false });
  });

  void it('follows NOT_LEADER to another endpoint with the same session sequence', async () => {
    const seen: unknown[] = [];
    const note = (body: string): void => {
      const b = JSON.parse(body) as { clientId: string; seq: number };
      seen.push([b.clientId, b.seq]);
    };
    const follower = await serve((body, res) => {
      note(body);
      reply(res, 503, error('NOT_LEADER', false));
    });
    const leader = await serve((body, res) => {
      note(body);
      reply(res, 200, { header: { revision: 2, memberId: 2, raftTerm: 1 } });
    });
    // Without range routing: these servers answer writes only, and the hint is followed
    // through the endpoints (routing's own following of hints: range-routing-client.test.ts).
    const client = new FlotillaClient({
      endpoints: [follower, leader],
      timeoutMs: 1_000,
      rangeRouting: false,
    });
    try {
      const r = await client.put('k', 'v');
      assert.equal(r.header.revision, 2);
    } finally {
      await client.close();
    }
    assert.deepEqual(seen, [
      [client.clientId, 1],
      [client.clientId, 1],
    ]);
  });
});

void describe('FlotillaClient membership changes', () => {
  void it('asks again while another membership change is being applied', async () => {
    let attempts = 0;
    const url = await serve((_body, res, attempt) => {
      attempts = attempt + 1;
      if (attempt < 2) reply(res, 503, error('MEMBERSHIP_CHANGE_PENDING', false));
      else reply(res, 200, { members: [] });
    });
    const client = new FlotillaClient({ endpoints: [url], timeoutMs: 1_000, maxAttempts: 4 });
    try {
      assert.deepEqual(await client.removeMember(4), { members: [] });
    } finally {
      await client.close();
    }
    assert.equal(attempts, 3);
  });

  void it('gives up with the refusal, definite, once its attempts are spent', async () => {
    const url = await serve((_body, res) =>
      reply(res, 503, error('MEMBERSHIP_CHANGE_PENDING', false)),
    );
    const client = new FlotillaClient({ endpoints: [url], timeoutMs: 1_000, maxAttempts: 2 });
    try {
      await assert.rejects(client.removeMember(4), (e: unknown) => {
        assert.ok(e instanceof FlotillaError);
        assert.equal(e.code, 'MEMBERSHIP_CHANGE_PENDING');
        assert.equal(e.indefinite, false);
        assert.match(e.message, /gave up after retries/);
        return true;
      });
    } finally {
      await client.close();
    }
  });
});

void describe('FlotillaClient connection failures', () => {
  void it('a refused connection is a definite failure: nothing was sent', async () => {
    const url = await serve(() => undefined);
    const server = servers.pop() as Server;
    await new Promise((r) => server.close(r)); // the port is now closed
    await putFails(
      { endpoints: [url], timeoutMs: 500, maxAttempts: 2 },
      { code: 'CONNECTION', indefinite: false },
    );
  });

  void it('giving up names every endpoint tried and how each failed', async () => {
    const closed: string[] = [];
    for (let i = 0; i < 2; i++) {
      closed.push(await serve(() => undefined));
      const server = servers.pop() as Server;
      await new Promise((r) => server.close(r));
    }
    const client = new FlotillaClient({ endpoints: closed, timeoutMs: 2_000, maxAttempts: 4 });
    try {
      await assert.rejects(client.put('k', 'v'), (e: unknown) => {
        assert.ok(e instanceof FlotillaError);
        assert.equal(e.code, 'CONNECTION');
        const [a, b] = closed as [string, string];
        assert.ok(
          e.message.endsWith(
            `(gave up after retries: 4 attempts at ${a} (CONNECTION), ${b} (CONNECTION))`,
          ),
          e.message,
        );
        return true;
      });
    } finally {
      await client.close();
    }
  });

  void it('giving up reports what a node answered rather than the next node being down', async () => {
    // One node up without a leader, the other down: the last attempt meets the closed port,
    // but NO_LEADER is what the caller needs to hear.
    const up = await serve((_body, res) => reply(res, 503, error('NO_LEADER', false)));
    const down = await serve(() => undefined);
    const server = servers.pop() as Server;
    await new Promise((r) => server.close(r));
    const client = new FlotillaClient({ endpoints: [up, down], timeoutMs: 2_000, maxAttempts: 4 });
    try {
      await assert.rejects(client.put('k', 'v'), (e: unknown) => {
        assert.ok(e instanceof FlotillaError);
        assert.equal(e.code, 'NO_LEADER', e.message);
        assert.match(e.message, /^scripted NO_LEADER \(gave up after retries: 4 attempts at /);
        assert.match(e.message, /\(CONNECTION\)/, 'the down node is still named');
        return true;
      });
    } finally {
      await client.close();
    }
  });

  void it('a request that times out after being sent is indefinite', async () => {
    const url = await serve(() => undefined); // never answers
    await putFails(
      { endpoints: [url], timeoutMs: 200, maxAttempts: 1 },
      { code: 'TIMEOUT', indefinite: true },
    );
  });
});

void describe('FlotillaClient write window', () => {
  void it('keeps every write in flight within the window of the oldest one', async () => {
    // The cluster refuses a sequence number that fell out of its per-client window (256): a
    // client with more writes in flight than that had them refused SESSION_STALE_SEQUENCE.
    const inFlight = new Set<number>();
    let widest = 0;
    const url = await serve((body, res) => {
      const { seq } = JSON.parse(body) as { seq: number };
      inFlight.add(seq);
      widest = Math.max(widest, seq - Math.min(...inFlight) + 1);
      // Answer in a shuffled order, so the oldest write is not always the first done.
      setTimeout(
        () => {
          inFlight.delete(seq);
          reply(res, 200, { header: { revision: seq, memberId: 1, raftTerm: 1 } });
        },
        1 + (seq % 7),
      );
    });
    const client = new FlotillaClient({ endpoints: [url], writeWindow: 16, connections: 64 });
    try {
      const all = await Promise.all(
        Array.from({ length: 300 }, (_, i) => client.put(`k${i}`, 'v')),
      );
      assert.equal(all.length, 300);
    } finally {
      await client.close();
    }
    assert.ok(widest <= 16, `sequence numbers in flight spanned ${widest}`);
  });

  void it('a write that waits for the window past its deadline is never sent: definite', async () => {
    let requests = 0;
    const url = await serve(() => {
      requests++; // never answers
    });
    const client = new FlotillaClient({
      endpoints: [url],
      writeWindow: 1,
      timeoutMs: 500,
      deadlineMs: 200,
      maxAttempts: 1,
    });
    const first = client.put('a', 'v');
    try {
      await assert.rejects(client.put('b', 'v'), (e: unknown) => {
        assert.ok(e instanceof FlotillaError);
        assert.equal(e.code, 'TIMEOUT');
        assert.equal(e.indefinite, false, 'it was never sent');
        return true;
      });
      assert.equal(requests, 1);
    } finally {
      await client.close();
    }
    await assert.rejects(first, (e: unknown) => e instanceof FlotillaError && e.indefinite);
  });
});

void describe('FlotillaClient endpoints', () => {
  void it('refuses an endpoint that is not a base http(s) URL, naming it', () => {
    // Before, the client took them and the first request failed with the HTTP stack's
    // "Invalid URL" (ERR_INVALID_URL, UND_ERR_INVALID_ARG), not saying which endpoint.
    const refused: [string, RegExp][] = [
      ['127.0.0.1:8001', /is not a URL/],
      ['localhost:8001', /has scheme "localhost:"/],
      ['ftp://127.0.0.1:8001', /has scheme "ftp:"/],
      ['http://127.0.0.1:8001/v1', /has a path/],
      ['http://127.0.0.1:8001/?x=1', /has a path, query/],
    ];
    for (const [endpoint, why] of refused) {
      assert.throws(
        () => new FlotillaClient({ endpoints: ['http://127.0.0.1:8002', endpoint] }),
        (e: unknown) =>
          e instanceof FlotillaError &&
          e.code === 'BAD_REQUEST' &&
          e.message.includes(JSON.stringify(endpoint)) &&
          why.test(e.message),
        endpoint,
      );
    }
  });

  void it('takes a base URL with or without its trailing slash', async () => {
    const url = await serve((_body, res) =>
      reply(res, 200, { header: { revision: 1, memberId: 1, raftTerm: 1 } }),
    );
    for (const endpoint of [url, `${url}/`]) {
      const client = new FlotillaClient({ endpoints: [endpoint] });
      try {
        assert.equal((await client.put('k', 'v')).header.revision, 1);
      } finally {
        await client.close();
      }
    }
  });
});

void describe('FlotillaClient options and close', () => {
  void it('refuses options it cannot use with BAD_REQUEST, naming the option and the value', () => {
    // Plain JavaScript callers pass what the types would refuse. Before, a missing `endpoints`
    // threw a TypeError without a code, and `maxAttempts: 0` or `timeoutMs: 'x'` was taken and
    // every call then failed TIMEOUT ("No attempt was made before the deadline").
    const url = 'http://127.0.0.1:8001';
    const refused: [unknown, RegExp][] = [
      [undefined, /needs options/],
      [{}, /endpoints must be a non-empty array of base URLs, got nothing/],
      [{ endpoints: url }, /endpoints must be a non-empty array.*got "http/],
      [{ endpoints: [] }, /endpoints must be a non-empty array/],
      [{ endpoints: [8001] }, /Endpoint 8001 is not a string/],
      [{ endpoints: [url], timeoutMs: 'x' }, /timeoutMs must be a positive integer, got "x"/],
      [{ endpoints: [url], deadlineMs: -1 }, /deadlineMs must be a positive integer, got -1/],
      [{ endpoints: [url], maxAttempts: 0 }, /maxAttempts must be a positive integer, got 0/],
      [{ endpoints: [url], connections: 1.5 }, /connections must be a positive integer, got 1.5/],
      [{ endpoints: [url], protocol: 'grpc' }, /protocol must be "auto" or "http", got "grpc"/],
      [{ endpoints: [url], clientId: '' }, /clientId must be a string of 1 to 128 characters/],
      // The node refuses every write of a longer id; 64 emoji are 128 UTF-16 units and pass.
      [{ endpoints: [url], clientId: 'c'.repeat(129) }, /1 to 128 characters, got 129/],
      [{ endpoints: [url], clientId: '\u{1F600}'.repeat(65) }, /got 130 characters/],
      // A misspelt option was ignored: the client ran with the default in its place.
      [{ endpoints: [url], timeout: 5 }, /has no option "timeout" \(did you mean "timeoutMs"\?\)/],
      [{ endpoints: [url], tls: { cafile: 'x' } }, /FlotillaClient tls has no option "cafile"/],
    ];
    for (const [options, why] of refused) {
      assert.throws(
        () => new FlotillaClient(options as ConstructorParameters<typeof FlotillaClient>[0]),
        (e: unknown) =>
          e instanceof FlotillaError &&
          e.code === 'BAD_REQUEST' &&
          !e.indefinite &&
          why.test(e.message),
        JSON.stringify(options),
      );
    }
    for (const clientId of ['c'.repeat(128), '\u{1F600}'.repeat(64)])
      assert.equal(new FlotillaClient({ endpoints: [url], clientId }).clientId, clientId);
  });

  void it('refuses a call option it does not take, before sending anything', async () => {
    // Before, get('pa/', { prefix: true }) read the prefix and answered its first key, and
    // range('pa/', { prefx: true }) read the one key "pa/": both as if asked right.
    let requests = 0;
    const url = await serve((_body, res) => {
      requests++;
      reply(res, 200, { header: { revision: 1, memberId: 1, raftTerm: 1 }, kvs: [], count: 0 });
    });
    const client = new FlotillaClient({ endpoints: [url] });
    const o = (x: object) => x as Record<string, never>;
    const refused: [() => Promise<unknown>, RegExp][] = [
      [() => client.get('pa/', o({ prefix: true })), /^get has no option "prefix"; it takes/],
      [() => client.get('pa/', o({ rangeEnd: 'pb' })), /^get has no option "rangeEnd"/],
      [() => client.range('pa/', o({ prefx: true })), /"prefx" \(did you mean "prefix"\?\)/],
      [() => client.delete('pa/', o({ prefx: true })), /^delete has no option "prefx"/],
      [() => client.put('k', 'v', o({ lease_id: 1 })), /^put has no option "lease_id"/],
      [
        () => client.txn([], [], [], o({ prevKv: true })),
        /^txn has no option "prevKv"; it takes encoding and signal/,
      ],
      [() => client.leaseGrant(10, o({ ttl: 5 })), /^leaseGrant has no option "ttl"/],
    ];
    try {
      for (const [call, why] of refused)
        await assert.rejects(
          call(),
          (e: unknown) =>
            e instanceof FlotillaError &&
            e.code === 'BAD_REQUEST' &&
            !e.indefinite &&
            why.test(e.message),
          why.source,
        );
      assert.throws(
        () => client.watch('k', o({ startRevison: 3 })),
        (e: unknown) =>
          e instanceof FlotillaError &&
          /"startRevison" \(did you mean "startRevision"\?\)/.test(e.message),
      );
      assert.equal(requests, 0);
      // A field left undefined asks for nothing, and is not refused.
      await client.get('k', o({ prefix: undefined, consistency: 'serializable' }));
      assert.equal(requests, 1);
      await client.get('k', { consistency: 'serializable', signal: AbortSignal.timeout(5_000) });
      assert.equal(requests, 2);
    } finally {
      await client.close();
    }
  });

  void it('closes once, and refuses calls made after close at once: CLIENT_CLOSED, definite', async () => {
    let requests = 0;
    const url = await serve((_body, res) => {
      requests++;
      reply(res, 200, { header: { revision: 1, memberId: 1, raftTerm: 1 }, kvs: [], count: 0 });
    });
    const client = new FlotillaClient({ endpoints: [url], deadlineMs: 10_000 });
    await client.put('k', 'v');
    assert.equal(requests, 1);
    await client.close();
    // Before, a second close rejected with the HTTP pool's "The client is destroyed", so
    // `await using` after an explicit close threw at the end of its block.
    await client.close();
    await client[Symbol.asyncDispose]();
    // Before, a write on a closed client was retried until its attempts ran out and reported
    // CONNECTION, indefinite, although nothing could have been sent.
    const started = Date.now();
    for (const call of [() => client.put('k', 'v'), () => client.get('k')]) {
      await assert.rejects(
        call(),
        (e: unknown) =>
          e instanceof FlotillaError &&
          e.code === 'CLIENT_CLOSED' &&
          !e.indefinite &&
          /the client is closed/.test(e.message),
      );
    }
    assert.ok(Date.now() - started < 1_000, `refused after ${Date.now() - started} ms`);
    const watch = client.watch('k');
    await assert.rejects(
      watch.next(),
      (e: unknown) => e instanceof FlotillaError && e.code === 'CLIENT_CLOSED',
    );
    assert.equal(requests, 1);
  });
});

void describe('queue names', () => {
  void it('a name no queue can have is refused before anything is sent', async () => {
    // A worker on such a name ran no job and said so only to onError, every second, for ever.
    const c = new FlotillaClient({ endpoints: ['http://127.0.0.1:1'] });
    try {
      for (const name of ['bad name', '', 'q'.repeat(129), 'ü']) {
        assert.throws(() => c.queue(name), {
          code: 'BAD_REQUEST',
          message: /A queue name must be 1 to 128 letters, digits or \._:-/,
        });
      }
      assert.equal(c.queue('q'.repeat(128)).name, 'q'.repeat(128));
      assert.equal(c.queue('a.b_c:d-1').name, 'a.b_c:d-1');
    } finally {
      await c.close();
    }
  });
});
