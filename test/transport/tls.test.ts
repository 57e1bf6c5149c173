// Mutual TLS on the peer port (docs/PROTOCOL.md, "TLS"): peers of one CA talk; a peer whose
// certificate another CA issued is refused both ways, with the reason in an event; a dialler
// that does not speak TLS is refused, and so is a TLS dialler at a plain port; new material
// applies to the connections made after it.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { PREFACE, FrameDecoder, FrameType, encodeSmallFrame } from '../../src/transport/frame.js';
import { decodeRefuse, pack } from '../../src/transport/codec.js';
import type { Message } from '../../src/raft/types.js';
import type { TransportEvent } from '../../src/transport/types.js';
import { closedBy, rawSocket, startNode, waitFor, type Node } from './fixtures.js';
import { makeTestCerts, type TestCerts } from '../support/certs.js';

let certs: TestCerts;
const open: Node[] = [];
before(async () => {
  certs = await makeTestCerts(3);
});
after(async () => {
  await Promise.all(open.map((n) => n.t.close()));
  certs.close();
});

async function node(
  id: number,
  tls: 'cluster' | 'rogue' | 'client' | 'plain' = 'cluster',
): Promise<Node> {
  const material =
    tls === 'rogue' ? certs.roguePem() : tls === 'client' ? certs.clientPem() : certs.pem(id);
  const n = await startNode(id, tls === 'plain' ? {} : { tls: material });
  open.push(n);
  return n;
}

function heartbeat(from: number, to: number, seq = 1): Message {
  return { from, to, term: 1, type: 'heartbeat', commit: 0, seq };
}

function ofKind<K extends TransportEvent['kind']>(
  n: Node,
  kind: K,
): Extract<TransportEvent, { kind: K }>[] {
  return n.events.filter((e): e is Extract<TransportEvent, { kind: K }> => e.kind === kind);
}

void describe('TcpTransport with mutual TLS', () => {
  void it('peers whose certificates the cluster CA issued exchange messages both ways', async () => {
    const a = await node(1);
    const b = await node(2);
    assert.ok(a.t.secure && b.t.secure);
    a.t.setPeer(2, b.t.address);
    b.t.setPeer(1, a.t.address);
    a.t.send(heartbeat(1, 2));
    b.t.send(heartbeat(2, 1));
    await waitFor(() => a.inbox.length === 1 && b.inbox.length === 1, 'a message each way');
    assert.deepEqual(b.inbox[0]?.msg, heartbeat(1, 2));
    assert.deepEqual(ofKind(a, 'tls-refused'), []);
    assert.deepEqual(ofKind(b, 'tls-refused'), []);
  });

  void it('refuses a peer whose certificate another CA issued, saying why on both sides', async () => {
    const a = await node(1);
    // Trusts the cluster CA, so it accepts a's certificate; its own is another CA's.
    const rogue = await node(2, 'rogue');
    rogue.t.setPeer(1, a.t.address);
    a.t.setPeer(2, rogue.t.address);
    rogue.t.send(heartbeat(2, 1));
    a.t.send(heartbeat(1, 2));
    await waitFor(
      () =>
        ofKind(a, 'tls-refused').some((e) => e.direction === 'inbound') &&
        ofKind(a, 'tls-refused').some((e) => e.direction === 'outbound') &&
        ofKind(rogue, 'handshake-refused').length > 0 &&
        ofKind(rogue, 'tls-refused').length > 0,
      'refusals on both sides',
    );
    const inbound = ofKind(a, 'tls-refused').find((e) => e.direction === 'inbound');
    assert.match(inbound?.remote ?? '', /^127\.0\.0\.1:\d+$/);
    assert.match(inbound?.reason ?? '', /not issued by this cluster's CA/);
    assert.match(inbound?.reason ?? '', /subject CN=rogue, issuer CN=Some other CA/);
    // The dialler was told the same reason in a REFUSE frame.
    assert.match(
      ofKind(rogue, 'handshake-refused')[0]?.reason ?? '',
      /not issued by this cluster's CA/,
    );
    // a's own dial to the rogue fails verifying the rogue's certificate.
    const outbound = ofKind(a, 'tls-refused').find((e) => e.direction === 'outbound');
    assert.equal(outbound?.peer, 2);
    assert.match(outbound?.reason ?? '', /not issued by this cluster's CA/);
    // The rogue sees a's dial end in its TLS handshake, and says where from.
    const dropped = ofKind(rogue, 'tls-refused')[0];
    assert.match(dropped?.remote ?? '', /^127\.0\.0\.1:\d+$/);
    assert.match(dropped?.reason ?? '', /closed the connection during the TLS handshake/);
    assert.equal(a.inbox.length, 0, 'nothing from the rogue was delivered');
    assert.equal(rogue.inbox.length, 0, 'nothing was sent to the rogue');
    assert.equal(ofKind(a, 'peer-connected').length, 0);
    assert.ok((a.t.stats().anonymousErrors.TRANSPORT_TLS_REFUSED ?? 0) >= 1);
    assert.ok((a.t.stats().peers.get(2)?.errors.TRANSPORT_TLS_REFUSED ?? 0) >= 1);
  });

  void it("refuses a client certificate of the cluster's CA: it is not a member's", async () => {
    const a = await node(1);
    const impostor = await node(2, 'client');
    a.t.setPeer(2, impostor.t.address);
    impostor.t.setPeer(1, a.t.address);
    impostor.t.send(heartbeat(2, 1));
    await waitFor(
      () => ofKind(a, 'tls-refused').some((e) => e.direction === 'inbound'),
      'the refusal',
    );
    const e = ofKind(a, 'tls-refused').find((x) => x.direction === 'inbound');
    assert.match(e?.reason ?? '', /a client certificate, not a member's: it lacks the serverAuth/);
    assert.equal(a.inbox.length, 0);
  });

  void it('refuses a dialler without a certificate also when it resumes a TLS session', async () => {
    // The acceptor issues TLS 1.3 session tickets, and a connection resumed from one counts
    // as authorized whatever the first presented: a dialler without a certificate was
    // refused once, then taken for a member on its next connection.
    const a = await node(1);
    const { ca } = certs.pem(1);
    const hello = { minVersion: 2, maxVersion: 2, clusterId: 'test-cluster', from: 2, to: 1 };
    const dial = async (session?: Buffer): Promise<{ reused: boolean; session?: Buffer }> => {
      const s = tlsConnect({
        host: '127.0.0.1',
        port: a.t.address.port,
        ca,
        ...(session === undefined ? {} : { session }),
      });
      let got: Buffer | undefined;
      s.on('session', (b: Buffer) => (got = b));
      await once(s, 'secureConnect');
      const reused = s.isSessionReused();
      s.write(Buffer.concat([PREFACE, encodeSmallFrame(FrameType.hello, pack(hello))]));
      await closedBy(s);
      return { reused, ...(got === undefined ? {} : { session: got }) };
    };
    const first = await dial();
    assert.ok(first.session !== undefined, 'the acceptor issued no session ticket');
    const second = await dial(first.session);
    assert.ok(second.reused, 'the second connection did not resume: nothing was tested');
    await waitFor(() => ofKind(a, 'tls-refused').length >= 2, 'both refusals');
    const reasons = ofKind(a, 'tls-refused').map((e) => e.reason);
    assert.match(reasons[0] ?? '', /peer presented no certificate/);
    assert.match(reasons[1] ?? '', /peer presented no certificate \(a resumed TLS session\)/);
    assert.equal(ofKind(a, 'peer-connected').length, 0);
    assert.equal(a.inbox.length, 0);
  });

  void it('refuses a dialler that does not speak TLS, cleanly, and tells it why', async () => {
    const a = await node(1);
    const s = await rawSocket(a.t.address.port);
    const hello = { minVersion: 2, maxVersion: 2, clusterId: 'test-cluster', from: 2, to: 1 };
    s.write(Buffer.concat([PREFACE, encodeSmallFrame(FrameType.hello, pack(hello))]));
    // The preface in plain is answered with a REFUSE frame in plain, which a member without
    // TLS reads and logs (before: the connection closed without a word).
    const got: Buffer[] = [];
    s.on('data', (d: Buffer) => got.push(d));
    await closedBy(s);
    const decoder = new FrameDecoder(1 << 16);
    decoder.push(Buffer.concat(got));
    const frame = decoder.next();
    assert.ok(frame !== null && !(frame instanceof Error), 'a whole frame');
    assert.equal(frame.type, FrameType.refuse);
    assert.match(decodeRefuse(frame.payload).reason, /the dialler does not speak TLS/);
    await waitFor(() => ofKind(a, 'tls-refused').length > 0, 'the refusal event');
    const e = ofKind(a, 'tls-refused')[0];
    assert.equal(e?.direction, 'inbound');
    assert.match(
      e?.reason ?? '',
      /^the dialler does not speak TLS and this peer port does: every member must have TLS on, or none$/,
    );
    assert.match(e?.remote ?? '', /^127\.0\.0\.1:\d+$/);
    assert.equal(ofKind(a, 'peer-connected').length, 0);
    assert.equal(a.t.stats().anonymousErrors.TRANSPORT_TLS_REFUSED, 1);

    // Bytes that are neither a TLS handshake nor a plain preface or HTTP go to TLS, which
    // refuses them as before.
    const junk = await rawSocket(a.t.address.port);
    junk.write(Buffer.from([0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08]));
    await closedBy(junk);
    await waitFor(() => ofKind(a, 'tls-refused').length > 1, 'the second refusal');
    assert.match(ofKind(a, 'tls-refused')[1]?.reason ?? '', /TLS handshake failed \(ERR_SSL_/);
  });

  void it('a plain transport and a TLS one refuse each other, each saying so', async () => {
    const secure = await node(1);
    const plain = await node(2, 'plain');
    secure.t.setPeer(2, plain.t.address);
    plain.t.setPeer(1, secure.t.address);
    secure.t.send(heartbeat(1, 2));
    plain.t.send(heartbeat(2, 1));
    await waitFor(
      () =>
        ofKind(secure, 'tls-refused').some((e) => e.direction === 'inbound') &&
        ofKind(secure, 'tls-refused').some((e) => e.direction === 'outbound') &&
        ofKind(plain, 'handshake-refused').some((e) => e.direction === 'inbound'),
      'refusals on both sides',
    );
    // The plain port saw a TLS ClientHello where the preface belongs, and says what it was.
    const refusal = ofKind(plain, 'handshake-refused').find((e) => e.direction === 'inbound');
    assert.match(refusal?.reason ?? '', /a TLS handshake: the dialler uses TLS/);
    // And the TLS port told the plain dialler, which says so too.
    await waitFor(
      () => ofKind(plain, 'handshake-refused').some((e) => e.direction === 'outbound'),
      "the plain dialler's refusal",
    );
    const told = ofKind(plain, 'handshake-refused').find((e) => e.direction === 'outbound');
    assert.match(told?.reason ?? '', /the dialler does not speak TLS and this peer port does/);
    assert.equal(secure.inbox.length + plain.inbox.length, 0);
  });

  void it('new material applies to the connections made after it', async () => {
    const a = await node(1);
    const rogue = await node(2, 'rogue');
    rogue.t.setPeer(1, a.t.address);
    rogue.t.send(heartbeat(2, 1, 1));
    await waitFor(() => ofKind(a, 'tls-refused').length > 0, 'the rogue refused');
    // The other CA is added to a's trust (a CA rotation's first step); the rogue's next dial
    // gets in without a's restart.
    const otherCa = readFileSync(join(certs.otherDir, 'ca.crt'));
    a.t.setTls({ ...certs.pem(1), ca: Buffer.concat([certs.pem(1).ca, otherCa]) });
    a.t.setPeer(2, rogue.t.address);
    await waitFor(() => a.inbox.length > 0, 'a message from the rogue, now trusted', 10_000);
    assert.equal(a.inbox[0]?.msg.from, 2);
  });

  void it('refuses unusable material and keeps the one in use', async () => {
    const a = await node(1);
    const b = await node(2);
    assert.throws(
      () => a.t.setTls({ ...certs.pem(1), key: certs.pem(2).key }),
      (e: Error & { code?: string }) =>
        e.code === 'TRANSPORT_INVALID_CONFIG' && /unusable/.test(e.message),
    );
    a.t.setPeer(2, b.t.address);
    b.t.setPeer(1, a.t.address);
    b.t.send(heartbeat(2, 1));
    await waitFor(() => a.inbox.length === 1, 'a message over the old material');
    const plain = await node(3, 'plain');
    assert.throws(() => plain.t.setTls(certs.pem(3)), /started without TLS/);
  });
});
