// The front proxy is what makes a partition real, so it gets its own proof. With real
// transports dialling one member's front: the handshake and messages go through; cutting one
// sender drops that sender only, tears its live connection down, and a healed link carries
// its traffic again on a fresh connection. With raw sockets: what names no member (a bad
// preface, a broken HELLO, no header, an opening that never completes) is forwarded as from an
// unknown sender, as proxy.ts documents, a silent one is closed, and an HTTP request is
// attributed by its header.

import assert from 'node:assert/strict';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { Message } from '../../src/raft/types.js';
import { pack } from '../../src/transport/codec.js';
import { FrameType, PREFACE, encodeSmallFrame } from '../../src/transport/frame.js';
import { startNode, waitFor, type Node } from '../transport/fixtures.js';
import { FrontProxy } from './proxy.js';
import { sniffMemberHeader, sniffPeerHello } from './sniff.js';

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

/** Sends `bytes` and resolves with as many bytes coming back within `ms`, or null. */
function roundTrip(s: Socket, bytes: Buffer | string, ms: number): Promise<string | null> {
  const want = Buffer.from(bytes);
  return new Promise((resolve) => {
    let got = Buffer.alloc(0);
    const onData = (d: Buffer): void => {
      got = Buffer.concat([got, d]);
      if (got.length >= want.length) finish(got.toString('latin1'));
    };
    const timer = setTimeout(() => finish(null), ms);
    const finish = (v: string | null): void => {
      clearTimeout(timer);
      s.off('data', onData);
      resolve(v);
    };
    s.on('data', onData);
    s.write(want);
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

/** The opening a member sends when it dials member `to` as `from`. */
function helloFrom(from: number, to = 3): Buffer {
  const h = { minVersion: 2, maxVersion: 2, clusterId: 'test-cluster', from, to };
  return Buffer.concat([PREFACE, encodeSmallFrame(FrameType.hello, pack(h))]);
}

function httpFrom(member: string | null): string {
  const header = member === null ? '' : `x-flotilla-member: ${member}\r\n`;
  return `POST /v1/kv/put HTTP/1.1\r\nhost: n3\r\n${header}content-length: 2\r\n\r\n{}`;
}

void describe('sniffers', () => {
  void it('read a HELLO that arrives a byte at a time, and name its sender', () => {
    const bytes = helloFrom(7);
    for (let n = 0; n < bytes.length; n++)
      assert.deepEqual(sniffPeerHello(bytes.subarray(0, n)), { kind: 'more' }, `${n} bytes`);
    assert.deepEqual(sniffPeerHello(bytes), { kind: 'member', id: 7 });
  });

  void it('name an HTTP sender by its header only once the header block is complete', () => {
    const req = Buffer.from(httpFrom('12'));
    const headEnd = req.indexOf('\r\n\r\n') + 4;
    assert.deepEqual(sniffMemberHeader(req.subarray(0, headEnd - 1)), { kind: 'more' });
    assert.deepEqual(sniffMemberHeader(req), { kind: 'member', id: 12 });
    assert.equal(sniffMemberHeader(Buffer.from(httpFrom(null))).kind, 'unknown');
    assert.equal(sniffMemberHeader(Buffer.from(httpFrom('0'))).kind, 'unknown');
  });
});

void describe('FrontProxy in front of a real transport', () => {
  // Nodes 1 and 2 reach node 3 only through its front; node 3 knows them directly.
  let n1: Node;
  let n2: Node;
  let n3: Node;
  let front: FrontProxy;
  let seq = 0;

  before(async () => {
    n1 = await startNode(1);
    n2 = await startNode(2);
    n3 = await startNode(3);
    front = new FrontProxy(n3.t.address, 'peer front of 3', sniffPeerHello);
    await front.listen();
    for (const n of [n1, n2]) n.t.setPeer(3, { host: '127.0.0.1', port: front.port });
    n3.t.setPeer(1, n1.t.address);
    n3.t.setPeer(2, n2.t.address);
  });

  after(async () => {
    await front.close();
    await Promise.all([n1, n2, n3].map((n) => n.t.close()));
  });

  function heartbeat(from: Node, fromId: number): number {
    const msg: Message = { from: fromId, to: 3, term: 1, type: 'heartbeat', commit: 0, seq: ++seq };
    from.t.send(msg);
    return seq;
  }

  const arrived = (s: number): boolean =>
    n3.inbox.some((r) => r.msg.type === 'heartbeat' && r.msg.seq === s);
  const outboundDrops = (n: Node): number =>
    n.events.filter((e) => e.kind === 'peer-disconnected' && e.direction === 'outbound').length;

  /**
   * While `cut` is cut off: sends from both, until 20 of `open`'s heartbeats went through
   * (proof the link was open the whole time), and says which of `cut`'s arrived meanwhile.
   */
  async function sendThrough(cut: [Node, number], open: [Node, number]): Promise<number[]> {
    const cutSent: number[] = [];
    for (let i = 0; i < 20; i++) {
      cutSent.push(heartbeat(...cut));
      const s = heartbeat(...open);
      await waitFor(() => arrived(s), `heartbeat ${s} of node ${open[1]} while ${cut[1]} is cut`);
    }
    return cutSent.filter(arrived);
  }

  void it('forwards the handshake and the messages of every sender', async () => {
    const a = heartbeat(n1, 1);
    const b = heartbeat(n2, 2);
    await waitFor(() => arrived(a) && arrived(b), 'a heartbeat of each sender through the front');
    const inbound = n3.events.filter(
      (e) => e.kind === 'peer-connected' && e.direction === 'inbound',
    );
    assert.deepEqual(inbound.map((e) => e.peer).sort(), [1, 2], 'node 3 accepted both');
    assert.equal(front.stats().unknown, 0, 'every connection was attributed');
  });

  for (const [cutId, openId] of [
    [1, 2],
    [2, 1],
  ] as const) {
    void it(`a cut from ${cutId} to 3 tears ${cutId}'s connection down, leaves ${openId}'s alone, and heals`, async () => {
      const cut: [Node, number] = [cutId === 1 ? n1 : n2, cutId];
      const open: [Node, number] = [openId === 1 ? n1 : n2, openId];
      // Both connected first, so there are live connections to tear down.
      const warm = [heartbeat(...cut), heartbeat(...open)];
      await waitFor(() => warm.every(arrived), 'both senders connected');
      const dropsCut = outboundDrops(cut[0]);
      const dropsOpen = outboundDrops(open[0]);

      front.cutFrom(cutId);
      await waitFor(
        () => outboundDrops(cut[0]) > dropsCut,
        `node ${cutId} to see its live connection to 3 torn down`,
      );
      assert.deepEqual(await sendThrough(cut, open), [], `nothing of node ${cutId} got through`);
      assert.equal(outboundDrops(open[0]), dropsOpen, `node ${openId}'s connection was untouched`);
      assert.ok(front.stats().blackholed >= 1, `node ${cutId} redialled into the black hole`);

      front.healAll();
      const after = heartbeat(...cut);
      await waitFor(() => arrived(after), `node ${cutId} to redial after the heal`);
      assert.equal(front.stats().unknown, 0, 'every connection was attributed');
    });
  }
});

void describe('FrontProxy with raw connections', () => {
  let echo: { server: Server; port: number };
  let peer: FrontProxy;
  let http: FrontProxy;

  before(async () => {
    echo = await echoServer();
    const target = { host: '127.0.0.1', port: echo.port };
    peer = new FrontProxy(target, 'peer front', sniffPeerHello, { sniffTimeoutMs: 200 });
    http = new FrontProxy(target, 'client front', sniffMemberHeader);
    await peer.listen();
    await http.listen();
  });

  after(async () => {
    await peer.close();
    await http.close();
    await new Promise((r) => echo.server.close(r));
  });

  void it('black-holes a cut sender until the heal, then carries it on a fresh connection', async () => {
    const live = await connect(peer.port);
    const opening = helloFrom(1);
    assert.equal(await roundTrip(live, opening, 2_000), opening.toString('latin1'));
    peer.cutFrom(1);
    assert.equal(await closed(live, 2_000), true, 'the live connection is torn down by the cut');
    const during = await connect(peer.port); // accepted: a black hole, not a refusal
    assert.equal(await roundTrip(during, helloFrom(1), 300), null);
    const other = await connect(peer.port);
    assert.notEqual(await roundTrip(other, helloFrom(2), 2_000), null, 'sender 2 is not cut');
    peer.healAll();
    assert.equal(await closed(during, 2_000), true, 'held connections close on heal');
    assert.equal(await closed(other, 300), false, "the heal leaves sender 2's connection open");
    const fresh = await connect(peer.port);
    assert.notEqual(await roundTrip(fresh, helloFrom(1), 2_000), null);
    for (const s of [other, fresh]) s.destroy();
  });

  void it('forwards what is not a preface and HELLO as from an unknown sender, never cut', async () => {
    peer.cutFrom(1);
    const before = peer.stats().unknown;
    const badCrc = helloFrom(1);
    badCrc.writeUInt32BE((badCrc.readUInt32BE(8) ^ 1) >>> 0, 8);
    const openings = [
      Buffer.from('GET / HTTP/1.1\r\n\r\n'),
      badCrc,
      Buffer.concat([PREFACE, encodeSmallFrame(FrameType.message, pack({ from: 1 }))]),
      Buffer.concat([PREFACE, encodeSmallFrame(FrameType.hello, pack({ from: 'one' }))]),
    ];
    for (const o of openings) {
      const s = await connect(peer.port);
      assert.equal(await roundTrip(s, o, 2_000), o.toString('latin1'), o.toString('hex'));
      s.destroy();
    }
    assert.equal(peer.stats().unknown - before, openings.length);
    assert.match(peer.unknownReasons().join('\n'), /no FLOT preface/);
    assert.match(peer.unknownReasons().join('\n'), /crc32c/);
    peer.healAll();
  });

  void it('forwards an opening that never completes once the sniff timeout passes', async () => {
    const before = peer.stats().unknown;
    const s = await connect(peer.port);
    assert.equal(await roundTrip(s, 'FL', 2_000), 'FL', 'forwarded after 200 ms');
    assert.equal(peer.stats().unknown, before + 1);
    s.destroy();
  });

  void it('closes a connection that sends nothing within the sniff timeout', async () => {
    const before = peer.stats();
    const s = await connect(peer.port);
    s.on('data', () => assert.fail('a silent connection got an answer'));
    assert.equal(await closed(s, 2_000), true, 'closed after 200 ms');
    assert.equal(peer.stats().silent, before.silent + 1);
    assert.equal(peer.stats().unknown, before.unknown, 'not forwarded as unknown');
  });

  void it('attributes an HTTP connection by x-flotilla-member; one without passes', async () => {
    http.cutFrom(1);
    const cut = await connect(http.port);
    assert.equal(await roundTrip(cut, httpFrom('1'), 300), null, 'member 1 is cut');
    for (const sender of ['2', null, 'abc']) {
      const s = await connect(http.port);
      const req = httpFrom(sender);
      assert.equal(await roundTrip(s, req, 2_000), req, `sender ${sender}`);
      s.destroy();
    }
    assert.equal(http.stats().unknown, 2, 'no header, and a header naming no member');
    http.healAll();
    assert.equal(await closed(cut, 2_000), true);
  });
});
