// GOODBYE (protocol version 5, src/transport/goodbye.ts): a transport closed cleanly tells its
// peers, on the connections of both directions, so they can tell a planned stop from a crash;
// one closed without it (a crash) and a peer of protocol version 4 (the release before) leave
// plain disconnects, and the older peer never sees the frame it does not know.

import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import type { TransportEvent } from '../../src/transport/types.js';
import { startNode, waitFor, type Node } from './fixtures.js';

const open: Node[] = [];
after(async () => {
  await Promise.all(open.map((n) => n.t.close({ goodbye: false })));
});

/** Nodes 1..n that all know each other, with `extra(id)` options; waits for every connection. */
async function mesh(n: number, maxOf: (id: number) => number | undefined): Promise<Node[]> {
  const nodes: Node[] = [];
  for (let id = 1; id <= n; id++) {
    const max = maxOf(id);
    nodes.push(await startNode(id, max === undefined ? {} : { protocolVersionMax: max }));
  }
  open.push(...nodes);
  for (const a of nodes)
    for (const [i, b] of nodes.entries()) if (a !== b) a.t.setPeer(i + 1, b.t.address);
  for (const [i, a] of nodes.entries())
    await waitFor(
      () => connected(a).size === 2 * (n - 1),
      `node ${i + 1} connected both ways to every peer`,
    );
  return nodes;
}

/** The (peer, direction) pairs a node saw connect. */
function connected(n: Node): Set<string> {
  const out = new Set<string>();
  for (const e of n.events) if (e.kind === 'peer-connected') out.add(`${e.peer}/${e.direction}`);
  return out;
}

type Gone = Extract<TransportEvent, { kind: 'peer-disconnected' }>;
function gone(n: Node, peer: number): Gone[] {
  return n.events.filter((e): e is Gone => e.kind === 'peer-disconnected' && e.peer === peer);
}

function protocolErrors(n: Node): TransportEvent[] {
  return n.events.filter((e) => e.kind === 'protocol-error');
}

/** What a node saw of `peer` leaving, for messages. */
function seen(n: Node, peer: number): string {
  return JSON.stringify(gone(n, peer));
}

void describe('GOODBYE', () => {
  void it('a clean close is said on both directions; a close without it is a plain disconnect', async () => {
    const [a, b, c] = (await mesh(3, () => undefined)) as [Node, Node, Node];
    await c.t.close();
    for (const [i, n] of [a, b].entries()) {
      await waitFor(() => gone(n, 3).length === 2, `node ${i + 1} saw node 3 leave both ways`);
      assert.deepEqual(
        gone(n, 3)
          .map((e) => [e.direction, e.goodbye, e.reason])
          .sort(),
        [
          ['inbound', true, 'peer shutting down'],
          ['outbound', true, 'peer shutting down'],
        ],
        seen(n, 3),
      );
    }
    // A crash says nothing: node 1 sees node 2 go without a goodbye, both ways.
    await b.t.close({ goodbye: false });
    await waitFor(() => gone(a, 2).length === 2, 'node 1 saw node 2 leave both ways');
    assert.ok(
      gone(a, 2).every((e) => !e.goodbye && e.reason === 'connection closed'),
      seen(a, 2),
    );
    for (const n of [a, b, c]) assert.deepEqual(protocolErrors(n), []);
  });

  void it("two members stopping at once read each other's GOODBYE as no protocol error", async () => {
    // Each writes GOODBYE on its outbound connection and waits for the other end to close;
    // meanwhile the other's GOODBYE arrives there, on a link already closed: it was read as a
    // handshake answer and logged "expected accept or refuse, saw frame type 8" when every
    // member of a local cluster stopped at once (Ctrl-C).
    const [a, b] = (await mesh(2, () => undefined)) as [Node, Node];
    await Promise.all([a.t.close(), b.t.close()]);
    for (const n of [a, b]) assert.deepEqual(protocolErrors(n), [], JSON.stringify(n.events));
  });

  void it('is not sent to, nor by, a peer that speaks protocol version 4', async () => {
    // Node 1 plays the release before version 5: were GOODBYE written on its version-4
    // connections, it would take the frame for a broken stream (a protocol error).
    const [old, a, b] = (await mesh(3, (id) => (id === 1 ? 4 : undefined))) as [Node, Node, Node];
    await b.t.close();
    await waitFor(() => gone(old, 3).length === 2, 'the old node saw node 3 leave both ways');
    await waitFor(() => gone(a, 3).length === 2, 'node 2 saw node 3 leave both ways');
    assert.ok(
      gone(old, 3).every((e) => !e.goodbye),
      seen(old, 3),
    );
    assert.ok(
      gone(a, 3).every((e) => e.goodbye),
      seen(a, 3),
    );
    await old.t.close();
    await waitFor(() => gone(a, 1).length === 2, 'node 2 saw the old node leave both ways');
    assert.ok(
      gone(a, 1).every((e) => !e.goodbye),
      seen(a, 1),
    );
    for (const n of [old, a, b]) assert.deepEqual(protocolErrors(n), [], JSON.stringify(n.events));
  });
});
