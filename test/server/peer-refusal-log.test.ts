// A peer whose handshake is refused (another cluster's member, one this node does not know)
// dials again several times a second for as long as it is misconfigured: node-setup.ts says
// "peer handshake refused" once a minute per address and reason, as it says a TLS refusal,
// where it wrote a line for every refusal.

import assert from 'node:assert/strict';
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
  void it('is logged once a minute per address and reason, not once per refusal', async () => {
    const rogue = await TcpTransport.listen({
      nodeId: 2,
      clusterId: 'another-cluster',
      listen: { host: '127.0.0.1', port: 0 },
      peers: new Map([[1, splitHostPort(nodes.node(1).config.listenPeer)]]),
    });
    const refusals: TransportEvent[] = [];
    rogue.onEvent((e) => {
      if (e.kind === 'handshake-refused') refusals.push(e);
    });
    const lines = () => records.filter((r) => r['msg'] === 'peer handshake refused');
    try {
      // Each send dials again once the last connection was refused.
      await until(
        () => `five refusals of the rogue (saw ${refusals.length})`,
        () => {
          rogue.send({ from: 2, to: 1, term: 1, type: 'heartbeat', commit: 0, seq: 1 });
          return refusals.length >= 5;
        },
      );
      await until(
        () => `node 1's line (saw ${JSON.stringify(records)})`,
        () => lines().length >= 1,
      );
      const said = lines();
      assert.equal(said.length, 1, JSON.stringify(said));
      assert.equal(said[0]?.['direction'], 'inbound');
      assert.match(String(said[0]?.['reason']), /^cluster id mismatch/);
    } finally {
      await rogue.close();
    }
  });

  void it('another reason from the same address is said on its own line', async () => {
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
      assert.doesNotMatch(said[0] ?? '', /^cluster id mismatch/);
    } finally {
      await stranger.close();
    }
  });
});
