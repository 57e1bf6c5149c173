// Peers named by DNS name: the transport resolves a peer's name again on every dial, so a peer
// that comes back at a new address (a container started again) is found at the next reconnect.
// The resolver is injected (TcpTransportOptions.lookup) so the test decides what the name
// resolves to between two connections; a resolver that keeps answering the old address stands
// for a transport that resolved the name once, and is shown not to find the peer.

import assert from 'node:assert/strict';
import type { LookupAddress } from 'node:dns';
import type { LookupFunction } from 'node:net';
import { after, describe, it } from 'node:test';
import type { Message } from '../../src/raft/types.js';
import { startNode, waitFor, type Node } from './fixtures.js';

const open: Node[] = [];
after(async () => {
  await Promise.all(open.map((n) => n.t.close()));
});

async function node(...args: Parameters<typeof startNode>): Promise<Node> {
  const n = await startNode(...args);
  open.push(n);
  return n;
}

/** A resolver for one name whose answer the test changes; it records every question. */
function fakeDns(name: string, first: string) {
  const state = { address: first, asked: [] as string[] };
  const lookup = ((hostname: string, options: unknown, callback: unknown) => {
    const cb = (typeof options === 'function' ? options : callback) as (
      err: NodeJS.ErrnoException | null,
      address: string | LookupAddress[],
      family?: number,
    ) => void;
    const all = typeof options === 'object' && options !== null && 'all' in options && options.all;
    state.asked.push(hostname);
    if (hostname !== name) {
      const err: NodeJS.ErrnoException = new Error(`getaddrinfo ENOTFOUND ${hostname}`);
      err.code = 'ENOTFOUND';
      return process.nextTick(() => cb(err, ''));
    }
    const address = state.address;
    process.nextTick(() =>
      all === true ? cb(null, [{ address, family: 4 }]) : cb(null, address, 4),
    );
  }) as LookupFunction;
  return { state, lookup };
}

const beat = (seq: number): Message => ({
  from: 1,
  to: 2,
  term: 1,
  type: 'heartbeat',
  commit: 0,
  seq,
});

/** Peer 2 on 127.0.0.1 first, and its replacement on 127.0.0.2 at the same port. */
async function movingPeer(): Promise<{ first: Node; port: number }> {
  const first = await node(2);
  return { first, port: first.t.address.port };
}

void describe('peers named by DNS name', () => {
  void it('a peer that comes back at a new address is found there at the next reconnect', async () => {
    const { first, port } = await movingPeer();
    const dns = fakeDns('node2.flotilla.test', '127.0.0.1');
    const a = await node(1, { lookup: dns.lookup });
    a.t.setPeer(2, { host: 'node2.flotilla.test', port });
    first.t.setPeer(1, a.t.address);
    a.t.send(beat(1));
    await waitFor(() => first.inbox.length === 1, 'the first heartbeat at 127.0.0.1');
    assert.deepEqual(dns.state.asked, ['node2.flotilla.test'], 'the name was resolved to dial');
    // The container is replaced: the old address goes away, the name now points elsewhere.
    await first.t.close();
    const second = await node(2, { listen: { host: '127.0.0.2', port } });
    second.t.setPeer(1, a.t.address);
    dns.state.address = '127.0.0.2';
    let seq = 2;
    await waitFor(
      () => {
        a.t.send(beat(seq++));
        return second.inbox.length > 0;
      },
      'a heartbeat at the new address',
      10_000,
    );
    assert.ok(dns.state.asked.length >= 2, 'the name was resolved again to redial');
    const connected = a.events.filter((e) => e.kind === 'peer-connected');
    assert.ok(connected.length >= 2, 'connected once to each address');
    assert.equal(
      connected.at(-1)?.kind === 'peer-connected' && connected.at(-1)?.remote,
      `node2.flotilla.test:${port}`,
    );
  });

  void it('an answer that never changes (a name resolved once) does not find the moved peer', async () => {
    const { first, port } = await movingPeer();
    const dns = fakeDns('node2.flotilla.test', '127.0.0.1');
    const a = await node(1, { lookup: dns.lookup });
    a.t.setPeer(2, { host: 'node2.flotilla.test', port });
    first.t.setPeer(1, a.t.address);
    a.t.send(beat(1));
    await waitFor(() => first.inbox.length === 1, 'the first heartbeat');
    await first.t.close();
    const second = await node(2, { listen: { host: '127.0.0.2', port } });
    second.t.setPeer(1, a.t.address);
    // The resolver still says 127.0.0.1, where nothing listens any more: every redial fails.
    await waitFor(
      () => {
        a.t.send(beat(2));
        return dns.state.asked.length >= 4;
      },
      'three redials after the move',
      10_000,
    );
    assert.equal(second.inbox.length, 0, 'nothing reached the moved peer');
  });

  void it('with the system resolver, a peer named localhost is reached', async () => {
    const b = await node(2);
    const a = await node(1);
    a.t.setPeer(2, { host: 'localhost', port: b.t.address.port });
    b.t.setPeer(1, a.t.address);
    let seq = 1;
    await waitFor(() => {
      a.t.send(beat(seq++));
      return b.inbox.length > 0;
    }, 'a heartbeat to localhost');
  });
});
