// A range move whose connection to the new replica drops (src/server/range-replicas.ts): the
// leader's request to prepare the new node goes to a server that closes every connection as
// soon as it is opened, so the HTTP client fails with "other side closed". The move must answer
// UNAVAILABLE (retryable, indefinite: a retry resumes it), never INTERNAL; one that never answers,
// NODE_NOT_RESPONDING (definite, not retried). The range's leader is
// a stand-in that holds the state a move reads; the request is a real one over loopback.

import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import test from 'node:test';
import pino from 'pino';
import { Pool } from 'undici';
import { FlotillaError } from '../../src/base/errors.js';
import { systemClock } from '../../src/host/contracts.js';
import { simpleConf } from '../../src/raft/index.js';
import type { RangeDescriptor } from '../../src/ranges/types.js';
import type { ForwardAnswer } from '../../src/server/forward.js';
import type { MetaService } from '../../src/server/meta-service.js';
import type { RangeLane, RangeLanes } from '../../src/server/range-lanes.js';
import { RangeReplicas, unreachable } from '../../src/server/range-replicas.js';

/** A TCP server that closes each connection it accepts at once. */
async function slammer(): Promise<{ server: Server; url: string }> {
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    sockets.add(s);
    s.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return { server, url: `http://127.0.0.1:${port}` };
}

/** A TCP server that accepts each connection and never answers: a node stopped with SIGSTOP. */
async function sink(): Promise<{ server: Server; url: string; sockets: Set<Socket> }> {
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return { server, url: `http://127.0.0.1:${port}`, sockets };
}

const range: RangeDescriptor = {
  id: 5,
  start: new Uint8Array([0x6d]),
  end: null,
  generation: 2,
  replicas: [1, 2, 3],
};

/** Node 1 leading range 5 with voters 1-3, as far as a move reads it. */
function fakeLanes(): RangeLanes {
  const runtime = {
    group: 5,
    leaderId: () => 1,
    status: () => ({ conf: simpleConf([1, 2, 3]), progress: {}, lastIndex: 10 }),
  };
  const lane = {
    id: 5,
    group: { runtime, range: { descriptor: () => range } },
    service: { readBarrier: () => Promise.resolve() },
  };
  return { lane: (id: number) => (id === 5 ? lane : undefined) } as unknown as RangeLanes;
}

function replicasWith(
  send: (url: string, path: string, body: string, signal: AbortSignal) => Promise<ForwardAnswer>,
) {
  const lanes = fakeLanes();
  return new RangeReplicas({
    selfId: 1,
    lanes,
    groups: {
      prepare: () => Promise.reject(new Error('the leader prepares no replica on itself')),
      group: () => undefined,
    },
    // The only part of the meta service a change reads: which nodes are being drained.
    meta: { machine: { draining: () => [] } } as unknown as MetaService,
    metaForwarder: { forward: () => Promise.resolve(null) },
    // Node 1 leads the range: the change runs here, never forwarded.
    route: {
      run: async <T>(
        range: number,
        _request: unknown,
        _w: unknown,
        local: (lane: RangeLane) => Promise<T | null>,
      ): Promise<T> => {
        const lane = lanes.lane(range);
        assert.ok(lane !== undefined, `range ${range} does not run here`);
        const done = await local(lane);
        assert.ok(done !== null, 'the fake leader lost its leadership');
        return done;
      },
    },
    members: () => [1, 2, 3, 4],
    nodeAuthorization: undefined,
    sendToMember: (_id, path, body, signal) => send('', path, JSON.stringify(body), signal),
    busy: new Set(),
    clock: systemClock,
    moveTimeoutMs: 10_000,
    learnerLagEntries: 10,
    maxKeyBytes: 1024,
    log: pino({ level: 'silent' }),
  });
}

void test('a move whose connection to the new replica drops answers UNAVAILABLE, retryable', async (t) => {
  const { server, url } = await slammer();
  const pool = new Pool(url);
  t.after(async () => {
    await pool.close();
    await new Promise((resolve) => server.close(resolve));
  });
  const replicas = replicasWith(async (_u, path, body) => {
    const res = await pool.request({ method: 'POST', path, body, headers: {} });
    return { status: res.statusCode, json: JSON.parse(await res.body.text()) as unknown };
  });
  const signal = AbortSignal.timeout(10_000);
  const err = await replicas.change(5, { add: 4, remove: 3 }, { signal }).then(
    (d) => assert.fail(`the move answered ${JSON.stringify(d)} through a dropped connection`),
    (e: unknown) => e,
  );
  assert.ok(err instanceof FlotillaError, `not a FlotillaError: ${String(err)}`);
  assert.equal(err.code, 'UNAVAILABLE', err.message);
  assert.equal(err.indefinite, true);
  assert.match(err.message, /node 4/);
  // The range's change lock was let go: a retry runs again (and meets the dropped connection
  // again) rather than being refused RANGE_CHANGE_IN_PROGRESS.
  const again = await replicas
    .change(5, { add: 4, remove: 3 }, { signal })
    .catch((e: unknown) => e);
  assert.equal((again as FlotillaError).code, 'UNAVAILABLE');
});

void test('a move whose new replica never answers fails NODE_NOT_RESPONDING within the prepare bound', async (t) => {
  // It waited for the caller: `flotilla range move` to a member stopped with SIGSTOP hung for
  // two minutes (two attempts of the client) and ended FORWARD_FAILED, though a move is
  // documented to give up within its own bound.
  const { server, url, sockets } = await sink();
  const pool = new Pool(url);
  t.after(async () => {
    for (const s of sockets) s.destroy();
    await pool.close();
    await new Promise((resolve) => server.close(resolve));
  });
  const replicas = replicasWith(async (_u, path, body, signal) => {
    const res = await pool.request({ method: 'POST', path, body, headers: {}, signal });
    return { status: res.statusCode, json: JSON.parse(await res.body.text()) as unknown };
  });
  const started = Date.now();
  const err = await replicas
    .change(5, { add: 4, remove: 3 }, { signal: AbortSignal.timeout(8_000) })
    .then(
      (d) => assert.fail(`the move answered ${JSON.stringify(d)} from a node that never answers`),
      (e: unknown) => e,
    );
  assert.ok(err instanceof FlotillaError, `not a FlotillaError: ${String(err)}`);
  // Not UNAVAILABLE, which the client retries eight times: the operator waited about 42 s for
  // an error. A definite code of its own, which names the node, and the client does not retry.
  assert.equal(err.code, 'NODE_NOT_RESPONDING', err.message);
  assert.equal(err.indefinite, false);
  // moveTimeoutMs is 10 s here: the prepare request gets a tenth of it.
  assert.match(err.message, /^Node 4 did not answer .* range 5 within 1000 ms/);
  assert.ok(Date.now() - started < 5_000, `took ${Date.now() - started} ms`);
});

void test('a FlotillaError from a step passes through unchanged; anything else becomes UNAVAILABLE', () => {
  const refused = new FlotillaError('NODE_NOT_MEMBER', 'no');
  assert.equal(unreachable(4, 'prepare it', refused), refused);
  const dropped = unreachable(4, 'prepare it', new Error('other side closed'));
  assert.equal(dropped.code, 'UNAVAILABLE');
  assert.match(dropped.message, /other side closed/);
});
