// Cross-origin requests from a member's dashboard (src/api/cors.ts): the rules alone, then on a
// real HTTP server with a token check. A member's origin is allowed and its preflight answered
// (with the Authorization header it needs when tokens are on, before any token is checked); a
// foreign origin gets no Access-Control-Allow-Origin and its preflight is refused
// ORIGIN_NOT_ALLOWED; paths outside the dashboard's take no cross-origin request at all.

import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { FlotillaError } from '../../src/base/errors.js';
import { CorsPolicy, originOf } from '../../src/api/cors.js';
import { JsonHttpServer } from '../../src/api/http.js';

const member = 'http://127.0.0.1:8001';
const other = 'http://127.0.0.1:8002';
const foreign = 'http://evil.example:8001';

function policy(): CorsPolicy {
  return new CorsPolicy(['/v1/dashboard/events', '/v1/kv/put'], () => [
    `${member}/`,
    other,
    'not a url',
  ]);
}

function refused(fn: () => unknown, code: string, message: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof FlotillaError, String(e));
    assert.equal(e.code, code);
    assert.match(e.message, message);
    return true;
  });
}

void describe('the CORS rules', () => {
  void it('takes the origin of a client address, and nothing from what is not one', () => {
    assert.equal(originOf('http://127.0.0.1:8001/some/path'), member);
    assert.equal(originOf('https://Node-1.example:443'), 'https://node-1.example');
    assert.equal(originOf('ftp://127.0.0.1:21'), null);
    assert.equal(originOf('127.0.0.1:8001'), null);
    assert.deepEqual([...policy().origins()], [member, other]);
  });

  void it("allows a member's origin and names it; a foreign origin gets nothing", () => {
    const p = policy();
    assert.deepEqual(p.answerHeaders('/v1/kv/put', other), {
      'Access-Control-Allow-Origin': other,
      Vary: 'Origin',
    });
    assert.deepEqual(p.answerHeaders('/v1/kv/put', foreign), { Vary: 'Origin' });
    assert.deepEqual(p.answerHeaders('/v1/kv/put', undefined), { Vary: 'Origin' });
    // A path the page does not call takes no cross-origin request, even from a member.
    assert.deepEqual(p.answerHeaders('/v1/status', other), {});
  });

  void it("answers a member's preflight, and refuses a foreign one, a method or a header it does not allow", () => {
    const p = policy();
    const h = p.preflight('/v1/dashboard/events', {
      origin: member,
      'access-control-request-method': 'GET',
      'access-control-request-headers': 'Authorization',
    });
    assert.equal(h['Access-Control-Allow-Origin'], member);
    assert.match(h['Access-Control-Allow-Headers'] ?? '', /authorization/);
    assert.match(h['Access-Control-Allow-Methods'] ?? '', /POST/);
    const ask = { 'access-control-request-method': 'POST' };
    refused(
      () => p.preflight('/v1/kv/put', { ...ask, origin: foreign }),
      'ORIGIN_NOT_ALLOWED',
      /evil\.example.*not a member/,
    );
    refused(
      () => p.preflight('/v1/kv/put', { origin: member, 'access-control-request-method': 'PUT' }),
      'ORIGIN_NOT_ALLOWED',
      /"PUT"/,
    );
    refused(
      () =>
        p.preflight('/v1/kv/put', {
          ...ask,
          origin: member,
          'access-control-request-headers': 'content-type, x-secret',
        }),
      'ORIGIN_NOT_ALLOWED',
      /x-secret/,
    );
    refused(() => p.preflight('/v1/kv/put', { origin: member }), 'BAD_REQUEST', /preflight/);
  });
});

void describe('CORS on an HTTP server with tokens on', () => {
  const servers: JsonHttpServer[] = [];
  after(async () => {
    for (const s of servers) await s.close();
  });

  async function start(): Promise<string> {
    const http = new JsonHttpServer({
      maxBodyBytes: 1024,
      headersTimeoutMs: 60_000,
      requestTimeoutMs: 60_000,
      idleTimeoutMs: 60_000,
      maxConnections: 100,
      cors: policy(),
      authorize: (_path, authorization) => {
        if (authorization !== 'Bearer good')
          throw new FlotillaError('UNAUTHENTICATED', 'no good token');
      },
    });
    http.route('GET', '/v1/dashboard/events', () => ({ json: { events: true } }));
    http.route('POST', '/v1/kv/put', ({ body }) => ({ json: body }));
    http.route('GET', '/v1/status', () => ({ json: { ok: true } }));
    servers.push(http);
    const addr = await http.listen('127.0.0.1:0');
    return `http://127.0.0.1:${addr.port}`;
  }

  void it("answers a member's preflight without a token, then its request with the origin named", async () => {
    const base = await start();
    const pre = await fetch(`${base}/v1/kv/put`, {
      method: 'OPTIONS',
      headers: {
        origin: member,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization, content-type',
      },
    });
    assert.equal(pre.status, 204, await pre.text());
    assert.equal(pre.headers.get('access-control-allow-origin'), member);
    assert.equal(pre.headers.get('access-control-allow-headers'), 'authorization, content-type');
    assert.equal(pre.headers.get('access-control-allow-credentials'), null);
    const put = await fetch(`${base}/v1/kv/put`, {
      method: 'POST',
      headers: { origin: member, authorization: 'Bearer good', 'content-type': 'application/json' },
      body: '{"k":1}',
    });
    assert.equal(put.status, 200);
    assert.deepEqual(await put.json(), { k: 1 });
    assert.equal(put.headers.get('access-control-allow-origin'), member);
    assert.equal(put.headers.get('vary'), 'Origin');
    // Refused for want of a token: the page may still read why.
    const noToken = await fetch(`${base}/v1/dashboard/events`, { headers: { origin: other } });
    assert.equal(noToken.status, 401);
    assert.equal(noToken.headers.get('access-control-allow-origin'), other);
  });

  void it("refuses a foreign origin's preflight and names no origin for its request", async () => {
    const base = await start();
    const pre = await fetch(`${base}/v1/dashboard/events`, {
      method: 'OPTIONS',
      headers: {
        origin: foreign,
        'access-control-request-method': 'GET',
        'access-control-request-headers': 'authorization',
      },
    });
    assert.equal(pre.status, 403);
    const body = (await pre.json()) as { error: { code: string } };
    assert.equal(body.error.code, 'ORIGIN_NOT_ALLOWED');
    assert.equal(pre.headers.get('access-control-allow-origin'), null);
    const get = await fetch(`${base}/v1/dashboard/events`, {
      headers: { origin: foreign, authorization: 'Bearer good' },
    });
    assert.equal(get.headers.get('access-control-allow-origin'), null);
  });

  void it('takes no preflight on a path outside the dashboard', async () => {
    const base = await start();
    const pre = await fetch(`${base}/v1/status`, {
      method: 'OPTIONS',
      headers: { origin: member, 'access-control-request-method': 'GET' },
    });
    assert.equal(pre.status, 405);
    assert.equal(pre.headers.get('access-control-allow-origin'), null);
  });
});
