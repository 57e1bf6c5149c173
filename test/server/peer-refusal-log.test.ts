// A peer whose handshake is refused (another cluster's member, one this node does not know)
// dials again several times a second for as long as it is misconfigured: node-setup.ts says
// "peer handshake refused" once a minute per address and check that refused (not per reason,
// whose text holds what the dialler sent), as it says a TLS refusal, where it wrote a line for
// every refusal.

import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { createLogger } from '../../src/server/logging.js';
import { splitHostPort } from '../../src/base/host-port.js';
import { TcpTransport } from '../../src/transport/tcp.js';
import type { TransportEvent } from '../../src/transport/types.js';
import { until } from '../support/until.js';
import { TestNodes } from './nodes.js';

let nodes: TestNodes;
/** Node 1's log records. */
const records: Record<string, unknown>[] = [];

before(async () => {
  nodes = await TestNodes.start({
    nodes: 1,
    logger: () =>
      createLogger(1, {
        level: 'warn',
        format: 'json',
        out: { write: (line) => records.push(JSON.parse(line) as Record<string, unknown>) },
      }),
  });
});

after(async () => {
  await nodes.close();
});

void describe('a refused peer handshake', () => {
  void it('is logged once a minute per address and check, whatever cluster id is sent', async () => {
    // Three diallers from one address, each sending another cluster id: one reason each.
    const rogues = await Promise.all(
      [2, 3, 4].map((id) =>
        TcpTransport.listen({
          nodeId: id,
          clusterId: `another-cluster-${id}`,
          listen: { host: '127.0.0.1', port: 0 },
          peers: new Map([[1, splitHostPort(nodes.node(1).config.listenPeer)]]),
        }),
      ),
    );
    const refusals = new Map<number, TransportEvent[]>();
    rogues.forEach((rogue, i) => {
      const seen: TransportEvent[] = [];
      refusals.set(i, seen);
      rogue.onEvent((e) => {
        if (e.kind === 'handshake-refused') seen.push(e);
      });
    });
    const lines = () => records.filter((r) => r['msg'] === 'peer handshake refused');
    try {
      // Each send dials again once the last connection was refused.
      await until(
        () =>
          `three refusals of each rogue (saw ${[...refusals.values()].map((r) => r.length).join(', ')})`,
        () => {
          rogues.forEach((rogue, i) =>
            rogue.send({ from: i + 2, to: 1, term: 1, type: 'heartbeat', commit: 0, seq: 1 }),
          );
          return [...refusals.values()].every((r) => r.length >= 3);
        },
      );
      await until(
        () => `node 1's line (saw ${JSON.stringify(records)})`,
        () => lines().length >= 1,
      );
      const said = lines();
      assert.equal(said.length, 1, JSON.stringify(said));
      assert.equal(said[0]?.['direction'], 'inbound');
      assert.equal(said[0]?.['category'], 'cluster-id');
      // The line still says the whole reason, with the value sent.
      assert.match(
        String(said[0]?.['reason']),
        /^cluster id mismatch: .* sent "another-cluster-\d"$/,
      );
    } finally {
      await Promise.all(rogues.map((r) => r.close()));
    }
  });

  void it('a dialler sending other junk each time is said once', async () => {
    const badMagic = () =>
      records.filter(
        (r) => r['msg'] === 'peer handshake refused' && String(r['reason']).startsWith('bad magic'),
      );
    const { host, port } = splitHostPort(nodes.node(1).config.listenPeer);
    // Four connections, each beginning with other bytes than the preface: four reasons.
    for (const junk of ['JUNK', 'junk', 'XXXX', 'zzzz']) {
      await new Promise<void>((resolve, reject) => {
        const socket = connect({ host, port }, () => socket.write(junk));
        socket.on('error', reject);
        socket.resume();
        // The node refuses (and logs) before it ends the connection.
        socket.on('close', () => resolve());
      });
    }
    const said = await until(
      () => `the bad magic line (saw ${JSON.stringify(records)})`,
      () => badMagic().length >= 1 && badMagic(),
    );
    assert.equal(said.length, 1, JSON.stringify(said));
    assert.equal(said[0]?.['category'], 'bad-magic');
    assert.match(String(said[0]?.['reason']), /saw 4a554e4b/);
  });

  void it('another check refusing from the same address is said on its own line', async () => {
    const lines = () =>
      records.filter((r) => r['msg'] === 'peer handshake refused').map((r) => String(r['reason']));
    const before = lines().length;
    // The right cluster, but no member of it (and no address to be let in by).
    const stranger = await TcpTransport.listen({
      nodeId: 9,
      clusterId: nodes.node(1).config.clusterId,
      listen: { host: '127.0.0.1', port: 0 },
      peers: new Map([[1, splitHostPort(nodes.node(1).config.listenPeer)]]),
    });
    try {
      stranger.send({ from: 9, to: 1, term: 1, type: 'heartbeat', commit: 0, seq: 1 });
      const said = await until(
        () => `a line for the stranger (saw ${JSON.stringify(lines())})`,
        () => lines().length > before && lines().slice(before),
      );
      assert.equal(said.length, 1, JSON.stringify(said));
      assert.match(said[0] ?? '', /^unknown node id 9/);
    } finally {
      await stranger.close();
    }
  });
});
