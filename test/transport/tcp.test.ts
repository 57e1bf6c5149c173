import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { after, describe, it } from 'node:test';
import { decodeAccept, decodeRefuse, encodeMessage, pack } from '../../src/transport/codec.js';
import { FrameDecoder, FrameType, PREFACE, encodeSmallFrame } from '../../src/transport/frame.js';
import type { Message } from '../../src/raft/types.js';
import { ID_CONFLICT_WINDOW_MS } from '../../src/transport/tcp.js';
import type { TransportEvent } from '../../src/transport/types.js';
import { TimerClock } from '../support/timer-clock.js';
import {
  closedBy,
  entries,
  everyMessage,
  handleCounts,
  rawSocket,
  startNode,
  startPair,
  waitFor,
  type Node,
} from './fixtures.js';

const open: Node[] = [];
async function pair(...args: Parameters<typeof startPair>): Promise<[Node, Node]> {
  const p = await startPair(...args);
  open.push(...p);
  return p;
}
after(async () => {
  await Promise.all(open.map((n) => n.t.close()));
});

function hello(over: Record<string, unknown> = {}): Buffer {
  const h = { minVersion: 2, maxVersion: 2, clusterId: 'test-cluster', from: 1, to: 2, ...over };
  return Buffer.concat([PREFACE, encodeSmallFrame(FrameType.hello, pack(h))]);
}

function events(n: Node, kind: TransportEvent['kind']): TransportEvent[] {
  return n.events.filter((e) => e.kind === kind);
}

void describe('TcpTransport', () => {
  void it('round-trips every message type with entries as Uint8Array', async () => {
    const [a, b] = await pair();
    const msgs = everyMessage(1, 2);
    for (const m of msgs) a.t.send(m);
    await waitFor(() => b.inbox.length === msgs.length, 'all messages');
    // The control lane overtakes the bulk lane, so compare as sets keyed by type.
    const byType = new Map(b.inbox.map((r) => [r.msg.type, r]));
    for (const m of msgs) assert.deepStrictEqual(byType.get(m.type)?.msg, m);
    const append = byType.get('append')?.msg;
    assert.ok(append?.type === 'append');
    assert.equal(Object.getPrototypeOf(append.entries[1]?.data), Uint8Array.prototype);
    const sent = a.t.stats().peers.get(2)?.sent;
    assert.equal(sent?.append?.messages, 1);
    assert.equal(b.t.stats().peers.get(1)?.received.heartbeat?.messages, 1);
  });

  void it('both ends of a peer connection probe it with TCP keepalive', async (t) => {
    const [a, b] = await pair();
    a.t.send(everyMessage(1, 2)[0] as Message);
    await waitFor(() => b.inbox.length === 1, 'a message from 1 to 2');
    // The kernel shows a keepalive timer on each socket that has the option (Linux's ss).
    let listing: string;
    try {
      listing = execFileSync('ss', ['-tnoH', 'state', 'established'], { encoding: 'utf8' });
    } catch (err) {
      t.skip(`ss is not available: ${String(err)}`);
      return;
    }
    // Columns (no state column when filtered by state): Recv-Q, Send-Q, local, peer, timer.
    const local = `127.0.0.1:${b.t.address.port}`;
    const accepted = listing.split('\n').filter((l) => l.trim().split(/\s+/)[2] === local);
    assert.ok(accepted.length > 0, `no connection accepted on ${b.t.address.port}: ${listing}`);
    for (const l of accepted) assert.match(l, /timer:\(keepalive/, l);
  });

  void it('flush writes what was queued at once, not at the end of the loop run', async () => {
    const [a, b] = await pair();
    const hb = (seq: number): Message => ({
      from: 1,
      to: 2,
      term: 1,
      type: 'heartbeat',
      commit: 0,
      seq,
    });
    // The link is open once a first message went through; before, sends wait for it.
    a.t.send(hb(1));
    await waitFor(() => b.inbox.length === 1, 'the first heartbeat');
    const written = () => a.t.stats().peers.get(2)?.sent.heartbeat?.messages ?? 0;
    a.t.send(hb(2));
    assert.equal(written(), 1, 'without a flush the write waits for the end of this run');
    a.t.flush();
    assert.equal(written(), 2, 'the flush wrote it now');
    await waitFor(() => b.inbox.length === 2, 'the flushed heartbeat');
    assert.equal(written(), 2, 'the write scheduled before the flush found nothing left');
    assert.deepStrictEqual(b.inbox[1]?.msg, hb(2));
  });

  void it('carries a multi-MiB snapshot attachment in chunks', async () => {
    const [a, b] = await pair({ chunkBytes: 64 * 1024, maxFrameBytes: 256 * 1024 });
    const data = new Uint8Array(5 * 1024 * 1024 + 17);
    for (let i = 0; i < data.length; i++) data[i] = (i * 31) & 0xff;
    const snap = everyMessage(1, 2).find((m) => m.type === 'snapshot') as Message;
    a.t.send(snap, data);
    a.t.send({ from: 1, to: 2, term: 3, type: 'heartbeat', commit: 1, seq: 1 });
    await waitFor(() => b.inbox.some((r) => r.msg.type === 'snapshot'), 'snapshot');
    const got = b.inbox.find((r) => r.msg.type === 'snapshot');
    assert.deepStrictEqual(got?.msg, snap);
    assert.ok(got?.attachment !== null && got?.attachment !== undefined);
    assert.equal(Buffer.compare(Buffer.from(got.attachment), Buffer.from(data)), 0);
  });

  void it('heartbeats sent while a snapshot is in flight arrive without breaking it', async () => {
    // The control lane is written first at every write opportunity, so a heartbeat sent while
    // a transfer waits for 'drain' lands between its chunks (or before its message): the
    // receiver took that for a protocol error and dropped the connection, transfer and all
    // (seen as "heartbeats frame inside snapshot transfer" when a member joined a cluster).
    const [a, b] = await pair({ chunkBytes: 64 * 1024, maxFrameBytes: 256 * 1024 });
    const hb = (seq: number): Message => ({
      from: 1,
      to: 2,
      term: 3,
      type: 'heartbeat',
      commit: 1,
      seq,
    });
    a.t.send(hb(1));
    await waitFor(() => b.inbox.length === 1, 'the link open');
    const data = new Uint8Array(4 * 1024 * 1024).fill(7);
    const snap = everyMessage(1, 2).find((m) => m.type === 'snapshot') as Message;
    a.t.send(snap, data);
    let seq = 2;
    const beat = setInterval(() => a.t.send(hb(seq++)), 1);
    try {
      await waitFor(
        () =>
          b.inbox.some((r) => r.msg.type === 'snapshot') || events(b, 'protocol-error').length > 0,
        'the snapshot or a protocol error',
      );
    } finally {
      clearInterval(beat);
    }
    assert.deepEqual(events(b, 'protocol-error'), []);
    const got = b.inbox.find((r) => r.msg.type === 'snapshot');
    assert.equal(got?.attachment?.byteLength, data.byteLength);
    assert.ok(b.inbox.filter((r) => r.msg.type === 'heartbeat').length > 1);
  });

  void it('refuses an attachment over maxAttachmentBytes on the receiving side', async () => {
    const [a, b] = await pair({ chunkBytes: 1024, maxAttachmentBytes: 4096 });
    // The sender's own limit is higher, so the receiver's check is what is exercised.
    const sender = await startNode(3, { chunkBytes: 1024 });
    open.push(sender);
    b.t.setPeer(3, sender.t.address);
    sender.t.setPeer(2, b.t.address);
    const snap = { ...(everyMessage(3, 2).at(-1) as Message) };
    sender.t.send(snap, new Uint8Array(10_000));
    await waitFor(
      () => (b.t.stats().peers.get(3)?.errors.TRANSPORT_ATTACHMENT_TOO_LARGE ?? 0) === 1,
      'refusal',
    );
    assert.equal(b.inbox.length, 0);
    a.t.send({ from: 1, to: 2, term: 1, type: 'timeout-now' });
    await waitFor(() => b.inbox.length === 1, 'other peer still served');
  });

  void it('reconnects after the peer restarts on the same port', async () => {
    const [a, b] = await pair();
    a.t.send({ from: 1, to: 2, term: 1, type: 'timeout-now' });
    await waitFor(() => b.inbox.length === 1, 'first message');
    const port = b.t.address.port;
    await b.t.close();
    await waitFor(() => events(a, 'peer-disconnected').length >= 1, 'disconnect seen');
    const b2 = await startNode(2, { listen: { host: '127.0.0.1', port } });
    open.push(b2);
    b2.t.setPeer(1, a.t.address);
    // Keep sending: messages sent while the peer was down may be lost; later ones arrive.
    await waitFor(() => {
      a.t.send({ from: 1, to: 2, term: 2, type: 'heartbeat', commit: 0, seq: 2 });
      return b2.inbox.length > 0;
    }, 'message after restart');
    assert.ok((a.t.stats().peers.get(2)?.reconnects ?? 0) >= 1);
    assert.ok(events(a, 'reconnect-scheduled').length >= 1);
  });

  void it('a link waiting out a long backoff redials at once when the peer dials in', async () => {
    // Node 1 waits 5-10 s between redials: without the redial on the peer's HELLO, nothing
    // it queued would reach the restarted node 2 within the 3 s this test waits.
    const a = await startNode(1, { backoff: { baseMs: 10_000, maxMs: 10_000 } });
    const b = await startNode(2);
    open.push(a, b);
    a.t.setPeer(2, b.t.address);
    b.t.setPeer(1, a.t.address);
    a.t.send({ from: 1, to: 2, term: 1, type: 'timeout-now' });
    await waitFor(() => b.inbox.length === 1, 'first message');
    const port = b.t.address.port;
    await b.t.close();
    await waitFor(() => events(a, 'reconnect-scheduled').length >= 1, 'a backoff after the close');
    a.t.send({ from: 1, to: 2, term: 2, type: 'heartbeat', commit: 0, seq: 2 });
    const b2 = await startNode(2, { listen: { host: '127.0.0.1', port } });
    open.push(b2);
    b2.t.setPeer(1, a.t.address);
    b2.t.send({ from: 2, to: 1, term: 2, type: 'heartbeat-resp', seq: 1, catchingUp: false });
    await waitFor(() => b2.inbox.length > 0, 'the message queued during the backoff', 3_000);
    assert.equal(b2.inbox[0]?.msg.type, 'heartbeat');
  });

  void it('redials at once when the peer dialled in before its old connection was seen to close', async () => {
    // A peer that stops cleanly and starts again within milliseconds dials in before this
    // node has seen its old connection close: the link is still open then, so the dial-in
    // found nothing to hurry, and the close that followed set a 5-10 s backoff.
    const a = await startNode(1, { backoff: { baseMs: 10_000, maxMs: 10_000 } });
    open.push(a);
    const dialled: Socket[] = [];
    const peer2 = createServer((s) => {
      dialled.push(s);
      const accept = { version: 2, clusterId: 'test-cluster', nodeId: 2 };
      s.write(encodeSmallFrame(FrameType.accept, pack(accept)));
    });
    peer2.listen(0, '127.0.0.1');
    await once(peer2, 'listening');
    const inbound = await rawSocket(a.t.address.port);
    try {
      a.t.setPeer(2, { host: '127.0.0.1', port: (peer2.address() as AddressInfo).port });
      await waitFor(() => events(a, 'peer-connected').length === 1, 'the link open');
      // The new process dials in, and only then is the old connection seen to close.
      inbound.write(hello({ from: 2, to: 1 }));
      await waitFor(() => events(a, 'peer-connected').length === 2, 'the dial-in accepted');
      (dialled[0] as Socket).destroy();
      await waitFor(() => dialled.length === 2, 'the redial', 3_000);
      assert.deepEqual(
        events(a, 'reconnect-scheduled').map((e) =>
          e.kind === 'reconnect-scheduled' ? e.delayMs : -1,
        ),
        [0],
      );
    } finally {
      inbound.destroy();
      for (const s of dialled) s.destroy();
      await new Promise<void>((r) => peer2.close(() => r()));
    }
  });

  void it('a redial on the peer dialling in is not closed later by its handshake timer', async () => {
    // Node 1's timers run by hand. Its link to node 2 waits out a backoff (nothing listened),
    // node 2 dials in, node 1 redials; the backoff's timer fires while that handshake is under
    // way, then the handshake completes. Before the fix the backoff's timer dropped the
    // handshake timer's handle, which fired 5 s later on the open connection and closed it.
    const clock = new TimerClock();
    const a = await startNode(1, { clock, backoff: { baseMs: 100, maxMs: 100 } });
    open.push(a);
    // A port nothing listens on yet, then a server there that answers HELLOs when told.
    const server = createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as AddressInfo).port;
    await new Promise<void>((r) => server.close(() => r()));
    a.t.setPeer(2, { host: '127.0.0.1', port });
    await waitFor(() => events(a, 'reconnect-scheduled').length === 1, 'the first backoff');
    const dialled: Socket[] = [];
    const peer2 = createServer((s) => dialled.push(s));
    peer2.listen(port, '127.0.0.1');
    await once(peer2, 'listening');
    try {
      // Node 2 dials in: node 1 redials at once.
      const inbound = await rawSocket(a.t.address.port);
      inbound.write(hello({ from: 2, to: 1 }));
      await waitFor(() => dialled.length === 1, 'the redial');
      clock.advance(100); // the backoff's time comes, mid-handshake
      const accept = { version: 2, clusterId: 'test-cluster', nodeId: 2 };
      (dialled[0] as Socket).write(encodeSmallFrame(FrameType.accept, pack(accept)));
      await waitFor(
        () => a.events.some((e) => e.kind === 'peer-connected' && e.direction === 'outbound'),
        'the outbound link open',
      );
      clock.advance(10_000); // well past the handshake timeout
      assert.deepEqual(events(a, 'protocol-error'), []);
      assert.equal(clock.pending(), 0, 'no timer left behind');
      inbound.destroy();
    } finally {
      for (const s of dialled) s.destroy();
      await new Promise<void>((r) => peer2.close(() => r()));
    }
  });

  void it('drops with a counter when the bounded queue is full', async () => {
    // Peer 2 never comes up: everything queues, and the lane bound caps it.
    const a = await startNode(1, { maxQueuedMessages: 8 });
    open.push(a);
    a.t.setPeer(2, { host: '127.0.0.1', port: 1 });
    for (let i = 0; i < 20; i++)
      a.t.send({ from: 1, to: 2, term: 1, type: 'heartbeat', commit: 0, seq: i });
    a.t.send({ from: 1, to: 9, term: 1, type: 'timeout-now' });
    const s = a.t.stats();
    assert.equal(s.peers.get(2)?.drops.queueFull, 12);
    assert.equal(s.peers.get(2)?.queuedMessages, 8);
    assert.equal(s.droppedUnknownPeer, 1);
  });

  void it('lets heartbeats overtake a backlog of large appends', async () => {
    const [a, b] = await pair();
    const order: string[] = [];
    b.t.onMessage((m) => order.push(m.type));
    for (let i = 0; i < 100; i++)
      a.t.send({
        from: 1,
        to: 2,
        term: 1,
        type: 'append',
        prevIndex: i * 8,
        prevTerm: 1,
        entries: entries(8, 32 * 1024, i * 8 + 1),
        commit: 0,
      });
    a.t.send({ from: 1, to: 2, term: 1, type: 'heartbeat', commit: 0, seq: 1 });
    await waitFor(() => order.length === 101, 'all delivered', 15_000);
    const at = order.indexOf('heartbeat');
    assert.ok(at < 25, `heartbeat arrived after ${at} of 100 appends`);
  });
});

void describe('TcpTransport peer port under bad input', () => {
  async function expectRefusal(n: Node, bytes: Buffer, code: string): Promise<void> {
    const s = await rawSocket(n.t.address.port);
    s.write(bytes);
    await closedBy(s);
    const seen = n.events.filter(
      (e) =>
        (e.kind === 'protocol-error' && e.code === code) ||
        (e.kind === 'handshake-refused' && code === 'TRANSPORT_HANDSHAKE_REFUSED'),
    );
    assert.ok(seen.length >= 1, `expected ${code}, events: ${JSON.stringify(n.events)}`);
  }

  void it('closes on garbage, truncated and oversized frames, bad versions, clusters and ids, and keeps serving', async () => {
    const [a, b] = await pair({ handshakeTimeoutMs: 300 });
    const goodAppend = encodeSmallFrame(
      FrameType.message,
      encodeMessage(everyMessage(1, 2)[4] as Message),
    );
    await expectRefusal(b, Buffer.from('GET / HTTP/1.1\r\n\r\n'), 'TRANSPORT_HANDSHAKE_REFUSED');
    await expectRefusal(b, hello({ clusterId: 'other' }), 'TRANSPORT_HANDSHAKE_REFUSED');
    await expectRefusal(b, hello({ minVersion: 7, maxVersion: 9 }), 'TRANSPORT_HANDSHAKE_REFUSED');
    // Version 1 carried no group: such a peer would mix up every group's messages.
    await expectRefusal(b, hello({ minVersion: 1, maxVersion: 1 }), 'TRANSPORT_HANDSHAKE_REFUSED');
    await expectRefusal(b, hello({ from: 42 }), 'TRANSPORT_HANDSHAKE_REFUSED');
    const refusals = events(b, 'handshake-refused').map((e) =>
      e.kind === 'handshake-refused' ? e.reason : '',
    );
    assert.match(refusals.join('\n'), /bad magic.*474554/);
    assert.match(
      refusals.join('\n'),
      /cluster id mismatch: ours "test-cluster", node 1 sent "other"/,
    );
    assert.match(refusals.join('\n'), /no common protocol version/);
    assert.match(refusals.join('\n'), /unknown node id 42/);
    // Over the handshake limit, then over the frame limit after a valid handshake.
    const huge = Buffer.alloc(9);
    huge.writeUInt32BE(0xfffffff0, 0);
    huge.writeUInt8(FrameType.hello, 8);
    await expectRefusal(b, Buffer.concat([PREFACE, huge]), 'TRANSPORT_FRAME_TOO_LARGE');
    const big = Buffer.from(huge);
    big.writeUInt8(FrameType.message, 8);
    await expectRefusal(b, Buffer.concat([hello(), big]), 'TRANSPORT_FRAME_TOO_LARGE');
    // Garbage after the handshake: corrupt CRC, then a valid frame holding a bad message.
    const corrupt = Buffer.from(goodAppend);
    corrupt.writeUInt8((corrupt.at(-1) ?? 0) ^ 0xff, corrupt.length - 1);
    await expectRefusal(b, Buffer.concat([hello(), corrupt]), 'TRANSPORT_CHECKSUM_MISMATCH');
    const badMsg = encodeSmallFrame(
      FrameType.message,
      pack({ type: 'append', from: 1, to: 2, term: -1 }),
    );
    await expectRefusal(b, Buffer.concat([hello(), badMsg]), 'TRANSPORT_BAD_MESSAGE');
    const notMsgpack = encodeSmallFrame(FrameType.message, Buffer.from([0xc1, 0xc1]));
    await expectRefusal(b, Buffer.concat([hello(), notMsgpack]), 'TRANSPORT_BAD_FRAME');
    // Truncated: half a frame, then silence; the handshake timer or the close ends it.
    const s = await rawSocket(b.t.address.port);
    s.end(Buffer.concat([hello(), goodAppend.subarray(0, 20)]));
    await closedBy(s);
    const stalled = await rawSocket(b.t.address.port);
    stalled.write(PREFACE);
    await closedBy(stalled);
    assert.ok(
      b.events.some((e) => e.kind === 'protocol-error' && e.code === 'TRANSPORT_HANDSHAKE_TIMEOUT'),
    );
    // Still serving the real peer, and nothing half-received was delivered.
    assert.ok(b.inbox.every((r) => r.msg.from === 1));
    const before = b.inbox.length;
    a.t.send({ from: 1, to: 2, term: 1, type: 'heartbeat', commit: 0, seq: 99 });
    await waitFor(() => b.inbox.length === before + 1, 'real peer still served');
    assert.equal(b.t.stats().anonymousErrors.TRANSPORT_HANDSHAKE_REFUSED, 2); // bad magic, node 42
    assert.ok((b.t.stats().peers.get(1)?.errors.TRANSPORT_HANDSHAKE_REFUSED ?? 0) >= 2);
  });

  void it('a dialler from another cluster logs why it was refused', async () => {
    const b = await startNode(2);
    const stranger = await startNode(1, { clusterId: 'elsewhere' });
    open.push(b, stranger);
    b.t.setPeer(1, stranger.t.address);
    stranger.t.setPeer(2, b.t.address);
    await waitFor(
      () =>
        events(stranger, 'handshake-refused').some(
          (x) => x.kind === 'handshake-refused' && x.direction === 'outbound',
        ),
      'refusal event',
    );
    const e = events(stranger, 'handshake-refused').find(
      (x) => x.kind === 'handshake-refused' && x.direction === 'outbound',
    );
    assert.ok(e?.kind === 'handshake-refused');
    assert.match(e.reason, /cluster id mismatch/);
    assert.equal(e.direction, 'outbound');
  });

  void it('dialers of one id from two processes in turn are reported and one is refused; a restart is not', async () => {
    const clock = new TimerClock();
    const b = await startNode(2, { incarnation: 'b-process', clock });
    open.push(b);
    b.t.setPeer(1, { host: '127.0.0.1', port: 9 });
    const sockets: Awaited<ReturnType<typeof rawSocket>>[] = [];
    const connect = async (inc: string) => {
      const s = await rawSocket(b.t.address.port);
      sockets.push(s);
      const c = { s, got: [] as Buffer[], closed: false, remote: `127.0.0.1:${s.localPort ?? 0}` };
      s.on('data', (d: Buffer) => c.got.push(d));
      s.on('error', () => undefined);
      s.on('close', () => (c.closed = true));
      s.write(hello({ inc }));
      return c;
    };
    const dial = async (inc: string) => {
      const before = events(b, 'peer-connected').length;
      const c = await connect(inc);
      await waitFor(() => events(b, 'peer-connected').length === before + 1, `accepted ${inc}`);
      return c;
    };
    try {
      // Node 1 restarted: a new process id, said nothing of.
      const first = await dial('p1');
      const second = await dial('p2');
      assert.deepEqual(events(b, 'peer-id-conflict'), []);
      // The accept names this process, so a dialler can tell two of one id apart too.
      const accept = new FrameDecoder(1 << 20);
      accept.push(Buffer.concat(second.got));
      const frame = accept.next();
      assert.ok(frame !== null && !(frame instanceof Error) && frame.type === FrameType.accept);
      assert.equal(decodeAccept(frame.payload).incarnation, 'b-process');
      // And then the first process again: two processes claim id 1.
      const third = await dial('p1');
      assert.notEqual(first.remote, third.remote);
      assert.deepEqual(events(b, 'peer-id-conflict'), [
        { kind: 'peer-id-conflict', peer: 1, remotes: [second.remote, third.remote] },
      ]);
      // The one that was replaced is refused while the other's connection is open, and told why.
      const fourth = await connect('p2');
      await waitFor(() => fourth.closed, 'the refused connection closed');
      const refusal = new FrameDecoder(1 << 20);
      refusal.push(Buffer.concat(fourth.got));
      const refused = refusal.next();
      assert.ok(
        refused !== null && !(refused instanceof Error) && refused.type === FrameType.refuse,
      );
      assert.equal(
        decodeRefuse(refused.payload).reason,
        `node id 1 is in use by another process, connected from ${third.remote}: ` +
          'two processes were started with id 1; stop the one that should not run',
      );
      assert.equal(events(b, 'peer-id-conflict').length, 1);
      // The bar lifts by itself after the window (a holder whose host died never closes its
      // connection here); if both still run, the next alternation bars one again, said once
      // per window however often they alternate.
      clock.advance(ID_CONFLICT_WINDOW_MS);
      await dial('p2');
      await dial('p1');
      assert.equal(events(b, 'peer-id-conflict').length, 2);
      const fifth = await connect('p2');
      await waitFor(() => fifth.closed, 'p2 refused again');
      await dial('p1');
      assert.equal(events(b, 'peer-id-conflict').length, 2, 'said once per window');
      // Once the other process's connection is gone, the refused one is node 1 again.
      const gone = events(b, 'peer-disconnected').length;
      for (const x of sockets) if (x !== fifth.s) x.destroy();
      await waitFor(() => events(b, 'peer-disconnected').length === gone + 1, 'p1 gone');
      await dial('p2');
    } finally {
      for (const x of sockets) x.destroy();
    }
  });

  void it('of two processes with one id, the one that answers this node at the peer address is kept', async () => {
    const b = await startNode(2, { incarnation: 'b-process' });
    open.push(b);
    // Where node 2 dials node 1: a process that answers as node 1, process "p-at-address".
    const served: Socket[] = [];
    const answering = createServer((s) => {
      served.push(s);
      s.on('error', () => undefined);
      s.once('data', () =>
        s.write(
          encodeSmallFrame(
            FrameType.accept,
            pack({ version: 2, clusterId: 'test-cluster', nodeId: 1, inc: 'p-at-address' }),
          ),
        ),
      );
    });
    answering.listen(0, '127.0.0.1');
    await once(answering, 'listening');
    b.t.setPeer(1, { host: '127.0.0.1', port: (answering.address() as AddressInfo).port });
    await waitFor(() => b.t.stats().peers.get(1)?.connected === true, 'node 2 dialled node 1');
    const sockets: Socket[] = [];
    const connect = async (inc: string) => {
      const s = await rawSocket(b.t.address.port);
      sockets.push(s);
      const c = { s, closed: false };
      s.on('error', () => undefined);
      s.on('close', () => (c.closed = true));
      s.resume();
      s.write(hello({ inc }));
      return c;
    };
    try {
      const connected = () =>
        events(b, 'peer-connected').filter((e) => 'direction' in e && e.direction === 'inbound')
          .length;
      await connect('p-elsewhere');
      await waitFor(() => connected() === 1, 'p-elsewhere accepted');
      await connect('p-at-address');
      await waitFor(() => connected() === 2, 'p-at-address accepted');
      // p-elsewhere comes back: the conflict is seen, and p-elsewhere is the one refused,
      // although it is the one that came back (the members send to the other).
      const back = await connect('p-elsewhere');
      await waitFor(() => back.closed, 'p-elsewhere closed');
      assert.equal(events(b, 'peer-id-conflict').length, 1);
      const again = await connect('p-elsewhere');
      await waitFor(() => again.closed, 'p-elsewhere refused');
      const kept = await connect('p-at-address');
      await waitFor(() => connected() >= 3, 'p-at-address taken again');
      assert.equal(kept.closed, false);
    } finally {
      for (const x of [...sockets, ...served]) x.destroy();
      await new Promise<void>((r) => answering.close(() => r()));
    }
  });

  void it('an unknown dialler that says where it is is let in when the admission says so, and answered', async () => {
    const b = await startNode(2);
    const newcomer = await startNode(7, {
      advertise: { peer: '127.0.0.1:1', client: 'http://127.0.0.1:2' },
    });
    open.push(b, newcomer);
    const asked: unknown[] = [];
    // Let in at the address the test knows to be right (the advertised one is only recorded).
    b.t.setAdmission((id, a) => {
      asked.push([id, a.peer, a.client]);
      b.t.setPeer(id, newcomer.t.address);
      return true;
    });
    newcomer.t.setPeer(2, b.t.address);
    newcomer.t.send({ from: 7, to: 2, term: 1, type: 'timeout-now' });
    await waitFor(() => b.inbox.length === 1, 'the message from node 7');
    assert.deepEqual(asked, [[7, '127.0.0.1:1', 'http://127.0.0.1:2']]);
    // b can answer: the admission made node 7 a peer.
    b.t.send({ from: 2, to: 7, term: 1, type: 'timeout-now' });
    await waitFor(() => newcomer.inbox.length === 1, 'the answer from node 2');
  });

  void it('an unknown dialler is refused without an admission, when it refuses, or without an address', async () => {
    const cases: [string, Record<string, unknown>, boolean][] = [
      ['no admission set', { peer: '127.0.0.1:9' }, false],
      ['the admission refuses', { peer: '127.0.0.1:9' }, true],
      ['no address said', {}, true],
      ['not an address', { peer: 'nowhere' }, true],
    ];
    for (const [what, fields, withAdmission] of cases) {
      const b = await startNode(2);
      open.push(b);
      let asked = 0;
      if (withAdmission)
        b.t.setAdmission(() => {
          asked++;
          return false;
        });
      const s = await rawSocket(b.t.address.port);
      s.write(hello({ from: 9, ...fields }));
      await closedBy(s);
      await waitFor(() => events(b, 'handshake-refused').length === 1, `refusal: ${what}`);
      const e = events(b, 'handshake-refused')[0];
      assert.ok(e?.kind === 'handshake-refused');
      assert.match(e.reason, /unknown node id 9/, what);
      assert.equal(asked, what === 'the admission refuses' ? 1 : 0, what);
    }
  });

  void it('a hello whose address is not a string of at most 256 characters closes the connection', async () => {
    const b = await startNode(2);
    open.push(b);
    b.t.setPeer(1, { host: '127.0.0.1', port: 9 });
    for (const peer of [42, 'x'.repeat(257)]) {
      const s = await rawSocket(b.t.address.port);
      s.write(hello({ peer }));
      await closedBy(s);
    }
    await waitFor(() => events(b, 'protocol-error').length === 2, 'two protocol errors');
    for (const e of events(b, 'protocol-error'))
      assert.ok(e.kind === 'protocol-error' && /hello\.peer must be a string/.test(e.message));
  });

  void it('leaves no sockets or timers behind after close', async () => {
    const baseline = handleCounts();
    const [a, b] = await startPair();
    a.t.send({ from: 1, to: 2, term: 1, type: 'timeout-now' });
    b.t.send({ from: 2, to: 1, term: 1, type: 'timeout-now' });
    await waitFor(() => a.inbox.length === 1 && b.inbox.length === 1, 'both ways');
    await Promise.all([a.t.close(), b.t.close()]);
    await waitFor(
      () => JSON.stringify(handleCounts()) === JSON.stringify(baseline),
      'handles released',
      2000,
    );
    // Sends after close are dropped and counted, never thrown.
    a.t.send({ from: 1, to: 2, term: 1, type: 'timeout-now' });
    assert.equal(a.t.stats().peers.get(2)?.drops.closed, 1);
  });
});
