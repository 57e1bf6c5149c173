// A client pointed at a node's peer port or its binary protocol port, rather than its client
// port, is told so: before, it said only "Response does not match the HTTP/1.1 protocol".

import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { FlotillaClient, FlotillaError } from '../../src/client/index.js';
import { TestNodes } from './nodes.js';

const all: TestNodes[] = [];
after(async () => {
  for (const n of all) await n.stop();
});

void test("a client given a node's peer or binary protocol port is told to use its client port", async () => {
  const nodes = await TestNodes.start({ nodes: 1, clientProtocol: true });
  all.push(nodes);
  const peer = nodes.node(1).config.listenPeer;
  const binary = `127.0.0.1:${nodes.binaryPorts[0] as number}`;
  for (const address of [peer, binary]) {
    const c = new FlotillaClient({
      endpoints: [`http://${address}`],
      maxAttempts: 1,
      deadlineMs: 3_000,
      protocol: 'http',
    });
    try {
      await assert.rejects(c.get('k'), (e: unknown) => {
        assert.ok(e instanceof FlotillaError, String(e));
        assert.equal(e.code, 'CONNECTION', e.message);
        assert.match(e.message, /not in HTTP: an endpoint is a node's client port/, address);
        return true;
      });
    } finally {
      await c.close();
    }
  }
  // The client port itself answers.
  const good = new FlotillaClient({ endpoints: [nodes.url(1)] });
  try {
    assert.equal(await good.get('k'), null);
  } finally {
    await good.close();
  }
});
