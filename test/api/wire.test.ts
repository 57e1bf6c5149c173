// The binary client protocol against a real 3-node cluster in this process: pipelining, a cut
// connection, malformed frames, sessions, the handshake, the in-flight bound and forwarding.
// Raw frames are written where the point is what a broken or hostile client sends; the
// client's own connection (src/client/wire.ts) elsewhere.

import assert from 'node:assert/strict';
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { FlotillaError } from '../../src/base/errors.js';
import { encodeFrame, maxBodyDepth } from '../../src/api/wire-codec.js';
import { FlotillaClient } from '../../src/client/index.js';
import { WireConnection } from '../../src/client/wire.js';
import { TestNodes } from '../server/nodes.js';
import { RawConnection } from './raw-wire.js';

const maxInflight = 24;
let cluster: TestNodes;
let leader: number;
let follower: number;

before(async () => {
  cluster = await TestNodes.start({
    nodes: 3,
    clientProtocol: true,
    config: { clientProtocolMaxInflight: maxInflight },
  });
  leader = await cluster.waitForLeader();
  follower = [1, 2, 3].find((id) => id !== leader) as number;
});

after(async () => {
  await cluster.close();
});

function open(id: number, o: { clientId?: string; version?: number } = {}) {
  return WireConnection.connect({
    host: '127.0.0.1',
    port: cluster.binaryPort(id),
    timeoutMs: 5_000,
    ...o,
  });
}

async function serializableGet(key: string): Promise<string | null> {
  const c = await open(leader);
  try {
    const r = (await c.request('range', { key }, { read: true })) as {
      kvs: { value: string }[];
    };
    return r.kvs[0]?.value ?? null;
  } finally {
    c.close();
  }
}

void describe('binary client protocol', () => {
  void it('answers pipelined requests out of order, each under its own id', async () => {
    const c = await RawConnection.open(cluster.binaryPort(leader));
    try {
      const setup = await open(leader);
      for (let j = 0; j < 10; j++)
        await setup.request('put', { key: `r/${j}`, value: `v-${j}` }, { read: false });
      setup.close();
      // Ten writes then ten serializable reads, in one write: the reads need no round with
      // the followers, so their answers overtake the writes'.
      const frames: Buffer[] = [];
      for (let i = 1; i <= 10; i++)
        frames.push(encodeFrame([i, 'put', { key: `p/${i}`, value: `w-${i}`, prevKv: true }]));
      for (let j = 0; j < 10; j++)
        frames.push(encodeFrame([11 + j, 'range', { key: `r/${j}`, serializable: true }]));
      c.socket.write(Buffer.concat(frames));
      await c.until('20 answers', () => c.answers().length >= 20);
      const answers = c.answers();
      const order = answers.map(([id]) => id);
      assert.deepEqual(
        [...order].sort((a, b) => a - b),
        Array.from({ length: 20 }, (_, i) => i + 1),
      );
      assert.notDeepEqual(
        order,
        [...order].sort((a, b) => a - b),
        `answers in sending order: ${order.join(',')}`,
      );
      assert.ok(
        (order[0] as number) > 10,
        `a read should be answered first, got order ${order.join(',')}`,
      );
      const revisions = new Set<number>();
      for (const [id, status, payload] of answers) {
        assert.equal(status, 0, JSON.stringify(payload));
        if (id > 10) {
          const kvs = payload['kvs'] as { key: string; value: string }[];
          assert.deepEqual(
            kvs.map((kv) => [kv.key, kv.value]),
            [[`r/${id - 11}`, `v-${id - 11}`]],
          );
        } else {
          revisions.add((payload['header'] as { revision: number }).revision);
        }
      }
      assert.equal(revisions.size, 10, 'each write has its own revision');
      for (let i = 1; i <= 10; i++) assert.equal(await serializableGet(`p/${i}`), `w-${i}`);
    } finally {
      c.socket.destroy();
    }
  });

  void it('a cut connection fails exactly the requests in flight, writes as indefinite', async () => {
    const proxy = await CuttableProxy.start(cluster.binaryPort(leader));
    try {
      const c = await WireConnection.connect({
        host: '127.0.0.1',
        port: proxy.port,
        timeoutMs: 5_000,
        clientId: 'cut',
      });
      const answered = await Promise.all(
        [1, 2, 3].map((i) =>
          c.request('put', { key: `cut/a${i}`, value: 'x', seq: i }, { read: false }),
        ),
      );
      assert.equal(answered.length, 3);
      // From now on nothing comes back: the next batch is in flight when the link is cut.
      proxy.holdAnswers();
      const sentBefore = proxy.bytesToNode;
      const writes = [4, 5, 6, 7].map((i) =>
        c.request('put', { key: `cut/b${i}`, value: 'x', seq: i }, { read: false }),
      );
      const reads = [1, 2].map(() => c.request('range', { key: 'cut/a1' }, { read: true }));
      const outcomes = Promise.allSettled([...writes, ...reads]);
      await waitFor('the batch to reach the node', () => proxy.bytesToNode > sentBefore);
      proxy.cut();
      const settled = await outcomes;
      settled.forEach((s, i) => {
        assert.equal(s.status, 'rejected', `request ${i} should fail`);
        const e = s.reason as FlotillaError;
        assert.ok(e instanceof FlotillaError);
        assert.equal(e.code, 'CONNECTION');
        assert.equal(e.indefinite, i < writes.length, `${e.message} (write: ${i < writes.length})`);
      });
      assert.equal(c.closed, true);
      assert.equal(c.inFlight, 0);
      // The node gave up the requests' admission slots when their connection went.
      await waitForAsync(
        'the admission slots to be freed',
        async () => (await admitted(leader)) === 0,
      );
    } finally {
      await proxy.close();
    }
  });

  void it('a retried write with the same session sequence number applies once', async () => {
    const first = await open(leader, { clientId: 'retry-client' });
    const r1 = (await first.request(
      'put',
      { key: 'once', value: 'v1', seq: 7 },
      { read: false },
    )) as { header: { revision: number } };
    first.close();
    // The retry, on another connection (as after a cut), with the id in the body this time.
    const second = await open(follower);
    try {
      const r2 = (await second.request(
        'put',
        { key: 'once', value: 'v1', seq: 7, clientId: 'retry-client' },
        { read: false },
      )) as { header: { revision: number } };
      assert.equal(r2.header.revision, r1.header.revision, 'the retry returns the first result');
      const got = (await second.request('range', { key: 'once' }, { read: true })) as {
        kvs: { version: number }[];
      };
      assert.equal(got.kvs[0]?.version, 1, 'applied once');
    } finally {
      second.close();
    }
  });

  void it('refuses a handshake asking for an unknown version', async () => {
    await assert.rejects(open(leader, { version: 99 }), (e: unknown) => {
      assert.ok(e instanceof FlotillaError);
      assert.equal(e.code, 'UNSUPPORTED_VERSION');
      assert.match(e.message, /version 99 .*speaks 1 to 1/);
      return true;
    });
    const raw = await RawConnection.open(cluster.binaryPort(leader), false);
    raw.socket.write(encodeFrame({ magic: 'etcd', version: 1 }));
    await raw.until('the refusal and close', () => raw.closed);
    assert.deepEqual(raw.answers()[0]?.slice(0, 2), [0, 1]);
    assert.equal(raw.answers()[0]?.[2]['code'], 'BAD_FRAME');
  });

  void it('refuses a handshake whose clientId no write could carry', async () => {
    // 128 characters is the session limit: taken, and a write with `seq` alone uses it.
    const ok = await open(leader, { clientId: 'h'.repeat(128) });
    try {
      await ok.request('put', { key: 'hs/ok', value: 'v', seq: 1 }, { read: false });
    } finally {
      ok.close();
    }
    for (const clientId of ['', 'h'.repeat(129)]) {
      const raw = await RawConnection.open(cluster.binaryPort(leader), false);
      raw.socket.write(encodeFrame({ magic: 'flotilla', version: 1, clientId }));
      await raw.until('the refusal and close', () => raw.closed);
      const refusal = raw.answers()[0];
      assert.deepEqual(refusal?.slice(0, 2), [0, 1], JSON.stringify(raw.frames));
      assert.equal(refusal?.[2]['code'], 'BAD_FRAME');
      assert.match(
        String(refusal?.[2]['message']),
        new RegExp(`1 to 128 characters, got ${clientId.length}`),
      );
    }
  });

  void it('answers OVERLOADED past the in-flight bound of a connection', async () => {
    const c = await RawConnection.open(cluster.binaryPort(leader));
    try {
      const n = maxInflight + 5;
      const frames = Array.from({ length: n }, (_, i) =>
        encodeFrame([i + 1, 'put', { key: `bound/${i}`, value: 'x' }]),
      );
      c.socket.write(Buffer.concat(frames));
      await c.until(`${n} answers`, () => c.answers().length >= n);
      const byId = new Map(c.answers().map(([id, status, p]) => [id, { status, p }]));
      for (let id = 1; id <= n; id++) {
        const a = byId.get(id);
        if (id <= maxInflight) assert.equal(a?.status, 0, `request ${id}: ${JSON.stringify(a)}`);
        else {
          assert.equal(a?.status, 1, `request ${id}: ${JSON.stringify(a)}`);
          assert.equal(a?.p['code'], 'OVERLOADED');
          assert.equal(a?.p['indefinite'], false);
        }
      }
      for (let i = maxInflight; i < n; i++) assert.equal(await serializableGet(`bound/${i}`), null);
      assert.equal(c.closed, false, 'a refusal keeps the connection');
    } finally {
      c.socket.destroy();
    }
  });

  void it("a follower's binary port forwards a write to the leader", async () => {
    const c = await open(follower, { clientId: 'via-follower' });
    try {
      assert.equal(c.hello.nodeId, follower, 'the handshake names the node');
      assert.equal(c.hello.version, 1);
      const status = (await c.request('status', {}, { read: true })) as {
        id: number;
        leader: number;
      };
      assert.deepEqual([status.id, status.leader], [follower, leader]);
      const r = (await c.request(
        'put',
        { key: 'fwd', value: 'from-follower', seq: 1 },
        { read: false },
      )) as { header: { memberId: number } };
      assert.equal(r.header.memberId, leader, 'the leader answered');
      const got = (await c.request('range', { key: 'fwd' }, { read: true })) as {
        kvs: { value: string }[];
      };
      assert.equal(
        got.kvs[0]?.value,
        'from-follower',
        'a linearizable read on the follower sees it',
      );
    } finally {
      c.close();
    }
  });

  void it('the client uses the binary port a node advertises, and keeps HTTP when told to', async () => {
    const client = new FlotillaClient({ endpoints: [cluster.url(leader)] });
    const httpOnly = new FlotillaClient({ endpoints: [cluster.url(leader)], protocol: 'http' });
    try {
      await client.put('client/a', '1');
      assert.equal(client.usesBinary(cluster.url(leader)), true);
      const before = binaryRequests(leader);
      await client.put('client/b', '2');
      assert.deepEqual(await client.get('client/b').then((kv) => kv?.value), '2');
      const txn = await client.txn(
        [{ key: 'client/a', target: 'value', op: '=', value: '1' }],
        [{ put: { key: 'client/a', value: '3' } }],
      );
      assert.equal(txn.succeeded, true);
      const del = await client.delete('client/b');
      assert.equal(del.deleted, 1);
      assert.equal(binaryRequests(leader) - before, 4, 'the four calls went over the binary port');
      await httpOnly.put('client/c', '4');
      assert.equal(httpOnly.usesBinary(cluster.url(leader)), false);
      // Bad input is refused with the same code over either front.
      for (const c of [client, httpOnly])
        await assert.rejects(
          c.put('', 'x'),
          (e: unknown) => e instanceof FlotillaError && e.code === 'KEY_EMPTY',
        );
    } finally {
      await client.close();
      await httpOnly.close();
    }
  });
});

void describe('binary client protocol: malformed frames', () => {
  const cases: { name: string; frame: () => Buffer; code: string }[] = [
    {
      name: 'a length over the frame limit',
      frame: () => Buffer.from([0x7f, 0xff, 0xff, 0xff, 1, 2, 3]),
      code: 'BODY_TOO_LARGE',
    },
    {
      name: 'bad msgpack',
      frame: () => Buffer.from([0, 0, 0, 3, 0x93, 0xc1, 0xc1]),
      code: 'BAD_FRAME',
    },
    {
      name: 'truncated msgpack',
      frame: () => Buffer.from([0, 0, 0, 2, 0x93, 0x01]),
      code: 'BAD_FRAME',
    },
    {
      name: 'an unknown type',
      frame: () => encodeFrame([1, 'subscribe', { key: 'x' }]),
      code: 'BAD_FRAME',
    },
    {
      name: 'a request that is not [id, op, body]',
      frame: () => encodeFrame({ id: 1 }),
      code: 'BAD_FRAME',
    },
  ];
  for (const k of cases) {
    void it(`${k.name}: error frame ${k.code}, connection closed, another one unharmed`, async () => {
      const other = await open(leader);
      const bad = await RawConnection.open(cluster.binaryPort(leader));
      try {
        bad.socket.write(k.frame());
        await bad.until('the connection to close', () => bad.closed);
        const last = bad.answers().at(-1);
        assert.deepEqual(last?.slice(0, 2), [0, 1], JSON.stringify(bad.frames));
        assert.equal(last?.[2]['code'], k.code, JSON.stringify(last));
        assert.equal(typeof last?.[2]['message'], 'string');
        assert.equal(other.closed, false);
        const r = (await other.request(
          'put',
          { key: `after/${k.code}`, value: 'ok' },
          { read: false },
        )) as { header: { revision: number } };
        assert.ok(r.header.revision > 0);
        assert.equal(await serializableGet('mal/bin'), null, 'mal/bin must not be applied');
        assert.equal(await admitted(leader), 0, 'no admission slot is kept');
      } finally {
        other.close();
        bad.socket.destroy();
      }
    });
  }
});

// A body the request type does not take is the request's fault, not the frame's: the framing
// is intact, so what follows can be trusted, and closing the connection would fail every other
// caller's requests in flight on it (a client shares its connections). HTTP answers the same
// bodies 400 and keeps the connection.
void describe('binary client protocol: a bad body is refused alone', () => {
  const cases: { name: string; type: string; body: Record<string, unknown>; code: string }[] = [
    {
      name: 'a field of the wrong type',
      type: 'txn',
      body: { success: [{ put: { key: 'bad/txn', value: 'x' } }], failure: 5 },
      code: 'BAD_REQUEST',
    },
    { name: 'a missing field', type: 'put', body: { key: 'bad/missing' }, code: 'BAD_REQUEST' },
    {
      name: 'an unknown field',
      type: 'put',
      body: { key: 'bad/f', value: 'x', ttl: 5 },
      code: 'UNKNOWN_FIELD',
    },
    {
      name: 'a range limit one over maxRangeLimit',
      type: 'range',
      body: { key: 'bad/', prefix: true, limit: 100_001 },
      code: 'BAD_REQUEST',
    },
    {
      name: 'a transaction branch of 129 operations',
      type: 'txn',
      body: {
        success: Array.from({ length: 129 }, (_, i) => ({ put: { key: `bad/t${i}`, value: 'x' } })),
      },
      code: 'BAD_REQUEST',
    },
    {
      name: 'a clientId of 129 characters',
      type: 'put',
      body: { key: 'bad/c', value: 'x', clientId: 'c'.repeat(129), seq: 1 },
      code: 'BAD_REQUEST',
    },
    {
      name: 'a watch with an unknown field',
      type: 'watch',
      body: { key: 'bad/w', since: 4 },
      code: 'UNKNOWN_FIELD',
    },
    {
      // msgpack carries it as bytes that are not UTF-8, which decoded as U+FFFD: keys
      // 'a\ud800' and 'a\udfff' were one key over this protocol and refused over HTTP.
      name: 'a key holding a lone surrogate',
      type: 'put',
      body: { key: 'bad/s\ud800', value: 'x' },
      code: 'INVALID_UTF8',
    },
    {
      // Refused alone since a job's result nested deeper than the limit closed the Worker's
      // shared connection, failing every other call on it (a queue user's find).
      name: 'a key given as binary',
      type: 'put',
      body: { key: Buffer.from('bad/bin'), value: 'x' },
      code: 'BAD_REQUEST',
    },
    {
      name: "a job's data nested one level past the limit (the body is a level)",
      type: 'queue.add',
      body: { queue: 'badq', name: 'n', data: nested(maxBodyDepth) },
      code: 'BAD_REQUEST',
    },
    {
      name: "a lone surrogate deep in a job's data",
      type: 'queue.add',
      body: { queue: 'badq', data: { list: ['ok', { k: 'x\udc00' }] } },
      code: 'INVALID_UTF8',
    },
  ];
  void it('a body nested exactly to the limit is taken', async () => {
    const c = await RawConnection.open(cluster.binaryPort(leader));
    try {
      c.socket.write(
        encodeFrame([
          1,
          'queue.add',
          { queue: 'deepq', name: 'n', data: nested(maxBodyDepth - 1) },
        ]),
      );
      await c.until('the answer', () => c.answers().length >= 1);
      assert.equal(c.answers()[0]?.[1], 0, JSON.stringify(c.frames));
    } finally {
      c.socket.destroy();
    }
  });
  for (const k of cases) {
    void it(`${k.name}: ${k.code} for it alone; the requests beside it are served`, async () => {
      const c = await RawConnection.open(cluster.binaryPort(leader));
      try {
        // The bad request between two good ones, in one read from the socket (one batch).
        c.socket.write(
          Buffer.concat([
            encodeFrame([1, 'put', { key: `good/${k.name}/1`, value: 'a' }]),
            encodeFrame([2, k.type, k.body]),
            encodeFrame([3, 'put', { key: `good/${k.name}/3`, value: 'b' }]),
          ]),
        );
        await c.until('three answers', () => c.answers().length >= 3);
        const byId = new Map(c.answers().map((f) => [f[0], f]));
        assert.equal(byId.get(2)?.[1], 1, JSON.stringify(c.frames));
        assert.equal(byId.get(2)?.[2]['code'], k.code, JSON.stringify(byId.get(2)));
        assert.equal(byId.get(2)?.[2]['indefinite'], false);
        assert.equal(byId.get(1)?.[1], 0, JSON.stringify(byId.get(1)));
        assert.equal(byId.get(3)?.[1], 0, JSON.stringify(byId.get(3)));
        assert.equal(byId.has(0), false, 'no connection error');
        // The connection stays open and serves, and its id 2 is free again.
        const again = encodeFrame([2, 'range', { key: `good/${k.name}/1`, serializable: true }]);
        c.socket.write(again);
        await c.until('the read on the same connection', () => c.answers().length >= 4);
        const read = c.answers().at(-1);
        assert.equal(read?.[0], 2, JSON.stringify(read));
        assert.equal(read?.[1], 0, JSON.stringify(read));
        assert.equal(c.closed, false);
        for (const key of [
          'bad/txn',
          'bad/missing',
          'bad/f',
          'bad/t0',
          'bad/c',
          'bad/s\ufffd\ufffd\ufffd',
          'bad/bin',
        ])
          assert.equal(await serializableGet(key), null, `${key} must not be applied`);
        assert.equal(await admitted(leader), 0, 'no admission slot is kept');
      } finally {
        c.socket.destroy();
      }
    });
  }

  void it("the client's call with an out-of-range limit fails BAD_REQUEST; others on its connection go on", async () => {
    const client = new FlotillaClient({
      endpoints: [cluster.url(leader)],
      binaryConnections: 1,
    });
    try {
      await client.put('bad/probe', 'x'); // learns the binary port
      assert.equal(client.usesBinary(cluster.url(leader)), true);
      const before = connectionErrors(leader);
      const writes = Array.from({ length: 20 }, (_, i) => client.put(`bad/w${i}`, 'v'));
      const bad = client.range('bad/', { prefix: true, limit: 100_001 }).then(
        () => assert.fail('a limit over 100,000 must be refused'),
        (err: unknown) => err,
      );
      const err = await bad;
      assert.ok(err instanceof FlotillaError, String(err));
      assert.equal(err.code, 'BAD_REQUEST', err.message);
      await Promise.all(writes);
      assert.equal(connectionErrors(leader), before, 'no connection was closed as malformed');
    } finally {
      await client.close();
    }
  });
});

function binaryRequests(id: number): number {
  let n = 0;
  // The node counts binary requests beside HTTP ones, by route "binary:<type>".
  const metric = cluster.node(id).metrics.httpRequests as unknown as {
    hashMap: Record<string, { labels: { route: string }; value: number }>;
  };
  for (const v of Object.values(metric.hashMap))
    if (v.labels.route.startsWith('binary:')) n += v.value;
  return n;
}

/** An array nested `levels` deep around a number: `nested(2)` is `[[1]]`. */
function nested(levels: number): unknown {
  let v: unknown = 1;
  for (let i = 0; i < levels; i++) v = [v];
  return v;
}

/** Connections the node closed with an error frame (counted as route "binary:connection"). */
function connectionErrors(id: number): number {
  const metric = cluster.node(id).metrics.httpRequests as unknown as {
    hashMap: Record<string, { labels: { route: string }; value: number }>;
  };
  let n = 0;
  for (const v of Object.values(metric.hashMap))
    if (v.labels.route === 'binary:connection') n += v.value;
  return n;
}

/** Requests the node holds admitted now (its admission gauge). */
async function admitted(id: number): Promise<number> {
  const text = await cluster
    .node(id)
    .metrics.registry.getSingleMetricAsString('flotilla_admission_in_flight');
  const m = /flotilla_admission_in_flight\{unit="requests"[^}]*\} (\d+)/.exec(text);
  assert.ok(m !== null, text);
  return Number(m[1]);
}

async function waitForAsync(
  what: string,
  done: () => Promise<boolean>,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await done())) {
    if (Date.now() > deadline) assert.fail(`${what} did not happen within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function waitFor(what: string, done: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) assert.fail(`${what} did not happen within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** A TCP relay to a node that can hold back the node's answers and cut both sides. */
class CuttableProxy {
  bytesToNode = 0;
  private holding = false;
  private readonly sockets = new Set<Socket>();

  private constructor(private readonly server: Server) {}

  static async start(target: number): Promise<CuttableProxy> {
    const server = createServer();
    const p = new CuttableProxy(server);
    server.on('connection', (client) => {
      const node = connect({ host: '127.0.0.1', port: target });
      p.sockets.add(client).add(node);
      client.on('data', (d: Buffer) => {
        p.bytesToNode += d.length;
        node.write(d);
      });
      node.on('data', (d: Buffer) => {
        if (!p.holding) client.write(d);
      });
      for (const s of [client, node]) s.on('error', () => undefined);
      client.on('close', () => node.destroy());
      node.on('close', () => client.destroy());
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return p;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  holdAnswers(): void {
    this.holding = true;
  }

  cut(): void {
    for (const s of this.sockets) s.destroy();
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise((r) => this.server.close(r));
  }
}

void describe('binary client protocol: node admission', () => {
  let single: TestNodes;
  before(async () => {
    // Admission counts HTTP and binary requests alike; here 3 at once, however many connections,
    // and no wait for a slot (admission.test.ts has requests wait).
    single = await TestNodes.start({
      nodes: 1,
      clientProtocol: true,
      config: { maxInflightRequests: 3, maxInflightWaitMs: 0 },
    });
    await single.waitForLeader();
  });
  after(async () => {
    await single.close();
  });

  void it('answers OVERLOADED past the admission limit, with when to come back', async () => {
    const c = await RawConnection.open(single.binaryPort(1));
    try {
      const frames = Array.from({ length: 8 }, (_, i) =>
        encodeFrame([i + 1, 'put', { key: `adm/${i}`, value: 'x' }]),
      );
      c.socket.write(Buffer.concat(frames));
      await c.until('8 answers', () => c.answers().length >= 8);
      const byId = new Map(c.answers().map(([id, status, p]) => [id, { status, p }]));
      for (let id = 1; id <= 8; id++) {
        const a = byId.get(id);
        if (id <= 3) assert.equal(a?.status, 0, `request ${id}: ${JSON.stringify(a)}`);
        else {
          assert.equal(a?.p['code'], 'OVERLOADED', `request ${id}: ${JSON.stringify(a)}`);
          assert.match(String(a?.p['message']), /Node is overloaded: 3 requests/);
          assert.ok(Number(a?.p['retryAfterMs']) >= 1_000, JSON.stringify(a));
        }
      }
    } finally {
      c.socket.destroy();
    }
  });
});
