// A cluster on IPv6 loopback: every listener (peer, HTTP, binary protocol) bound to `[::1]`, the
// members named `[::1]:port` as etcd names them. The configuration took such addresses, but the
// HTTP listener was handed the host with its brackets (getaddrinfo ENOTFOUND after the node
// had set up its data directory), and a member's peer address in brackets was refused. Skipped
// where the machine has no IPv6 loopback.

import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { FlotillaClient } from '../../src/client/index.js';
import { WireConnection } from '../../src/client/wire.js';
import { TestNodes } from './nodes.js';
import { until } from '../support/until.js';

/** Whether a listener can bind ::1 here. */
async function hasIpv6Loopback(): Promise<boolean> {
  const probe = createServer();
  try {
    await new Promise<void>((ok, fail) => {
      probe.once('error', fail);
      probe.listen(0, '::1', () => ok());
    });
  } catch {
    return false;
  }
  await new Promise<void>((ok) => probe.close(() => ok()));
  return true;
}

const ipv6 = await hasIpv6Loopback();

void describe('a cluster on [::1]', { skip: ipv6 ? false : 'no IPv6 loopback here' }, () => {
  let nodes: TestNodes;
  let client: FlotillaClient;

  before(async () => {
    nodes = await TestNodes.start({ nodes: 3, host: '::1', clientProtocol: true });
    client = new FlotillaClient({ endpoints: nodes.urls });
  });

  after(async () => {
    await client.close();
    await nodes.close();
  });

  void it('elects, replicates and forwards over [::1]', async () => {
    assert.match(nodes.urls[0] ?? '', /^http:\/\/\[::1\]:\d+$/);
    // Each node through its own endpoint: two of the three forward to the leader.
    for (const [i, url] of nodes.urls.entries()) {
      const one = new FlotillaClient({ endpoints: [url], protocol: 'http' });
      try {
        await one.put(`k${i}`, `v${i}`);
      } finally {
        await one.close();
      }
    }
    for (let i = 0; i < 3; i++) assert.equal((await client.get(`k${i}`))?.value, `v${i}`);
    const members = await client.members();
    assert.deepEqual(
      members.members.map((m) => m.peer).sort(),
      nodes.nodes.map((n) => n.config.listenPeer).sort(),
    );
    for (const m of members.members) assert.match(m.peer, /^\[::1\]:\d+$/);
  });

  void it('serves the binary protocol on [::1]', async () => {
    const wire = await WireConnection.connect({
      host: '::1',
      port: nodes.binaryPort(2),
      timeoutMs: 3_000,
    });
    try {
      assert.equal(wire.hello.nodeId, 2);
    } finally {
      wire.close();
    }
  });

  void it('every member applies what was written', async () => {
    await client.put('everywhere', 'yes');
    for (const url of nodes.urls) {
      const one = new FlotillaClient({ endpoints: [url], protocol: 'http' });
      try {
        await until(
          `"everywhere" applied at ${url}`,
          async () =>
            (await one.get('everywhere', { consistency: 'serializable' }))?.value === 'yes',
          10_000,
        );
      } finally {
        await one.close();
      }
    }
  });
});
