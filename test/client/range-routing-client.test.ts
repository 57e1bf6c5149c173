// The client's range routing against scripted nodes: HTTP servers that answer the range map,
// the members and writes as the test says. A client whose map is stale (planted: the first
// map has one range) is refused WRONG_RANGE, fetches the map again and retries the write at
// the new range's leader under the same session number; a member that refuses connections is
// passed over; routing is off with one endpoint unless asked for, and without a map to be had
// requests go to the endpoints as before; a node is reached at the endpoint the client was
// given for it rather than at an address it advertises that the client cannot reach.

import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, describe, it } from 'node:test';
import { FlotillaClient } from '../../src/client/index.js';
import type { RangesResponse } from '../../src/client/index.js';

interface Seen {
  readonly node: number;
  readonly method: string;
  readonly path: string;
  readonly body: Record<string, unknown>;
}

type Answer = { status: number; json: unknown };

const servers: Server[] = [];
after(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

/** Scripted nodes 1..n on free ports; `answer` decides each one's answers. */
async function scriptedNodes(
  n: number,
  answer: (node: number, path: string, body: Record<string, unknown>) => Answer,
): Promise<{ urls: string[]; seen: Seen[] }> {
  const seen: Seen[] = [];
  const urls: string[] = [];
  for (let node = 1; node <= n; node++) {
    const server = createServer((req, res) => {
      let text = '';
      req.on('data', (c: Buffer) => (text += c.toString()));
      req.on('end', () => {
        const body = text === '' ? {} : (JSON.parse(text) as Record<string, unknown>);
        const path = req.url ?? '';
        seen.push({ node, method: req.method ?? '', path, body });
        const a = answer(node, path, body);
        res.writeHead(a.status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(a.json));
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    servers.push(server);
    urls.push(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  }
  return { urls, seen };
}

const b64 = (s: string): string => Buffer.from(s).toString('base64');

function rangesAnswer(
  version: number,
  ranges: { id: number; start: string; end: string | null; leader: number }[],
): Answer {
  const json: RangesResponse = {
    version,
    ranges: ranges.map((r) => ({
      id: r.id,
      start: b64(r.start),
      end: r.end === null ? null : b64(r.end),
      generation: version - 1,
      replicas: [1, 2, 3],
      leader: r.leader,
      keys: 0,
      bytes: 0,
      writesPerSec: 0,
      readsPerSec: 0,
      applied: 0,
    })),
    node: 1,
  };
  return { status: 200, json };
}

function status(node: number, urls: readonly string[]): Answer {
  return {
    status: 200,
    json: { id: node, members: urls.map((client, i) => ({ id: i + 1, peer: '', client })) },
  };
}

const putAnswer = (memberId: number): Answer => ({
  status: 200,
  json: { header: { revision: 2, memberId, raftTerm: 1 } },
});

void describe('range routing in the client', () => {
  void it('refetches a stale map on WRONG_RANGE and retries the write at the new leader, same session number', async () => {
    let split = false;
    const nodes = await scriptedNodes(3, (node, path) => {
      if (path.startsWith('/v1/ranges'))
        return split
          ? rangesAnswer(2, [
              { id: 0, start: '', end: 'm', leader: 2 },
              { id: 3, start: 'm', end: null, leader: 3 },
            ])
          : rangesAnswer(1, [{ id: 0, start: '', end: null, leader: 2 }]);
      if (path === '/v1/status') return status(node, nodes.urls);
      // Node 2 leads range 0, which no longer holds "z" once it split.
      if (node === 2 && split)
        return {
          status: 421,
          json: { error: { code: 'WRONG_RANGE', message: 'split', indefinite: false } },
        };
      return putAnswer(node);
    });
    const client = new FlotillaClient({ endpoints: nodes.urls, protocol: 'http' });
    try {
      await client.put('a', '1');
      const first = nodes.seen.filter((s) => s.path === '/v1/kv/put');
      assert.deepEqual(
        first.map((s) => s.node),
        [2],
        'the first write goes to range 0 leader',
      );
      assert.equal(client.rangeRoutingState().version, 1);

      split = true;
      await client.put('z', '2');
      const puts = nodes.seen.filter((s) => s.path === '/v1/kv/put').slice(1);
      assert.deepEqual(
        puts.map((s) => s.node),
        [2, 3],
        'refused by the old range, then sent to the new range leader',
      );
      assert.equal(
        puts[0]?.body['seq'],
        puts[1]?.body['seq'],
        'the retry reuses the sequence number',
      );
      assert.equal(client.rangeRoutingState().version, 2);
      assert.equal(client.rangeRoutingState().leaderOf(3), 3);
    } finally {
      await client.close();
    }
  });

  void it('learns a leader from the node that answered a forwarded write', async () => {
    // The map says node 1 leads; node 3 does now (node 1 forwards, and the header names 3).
    const nodes = await scriptedNodes(3, (node, path) => {
      if (path.startsWith('/v1/ranges'))
        return rangesAnswer(1, [{ id: 0, start: '', end: null, leader: 1 }]);
      if (path === '/v1/status') return status(node, nodes.urls);
      return putAnswer(3);
    });
    const client = new FlotillaClient({ endpoints: nodes.urls, protocol: 'http' });
    try {
      await client.put('a', '1');
      await client.put('b', '2');
      assert.deepEqual(
        nodes.seen.filter((s) => s.path === '/v1/kv/put').map((s) => s.node),
        [1, 3],
      );
    } finally {
      await client.close();
    }
  });

  void it('passes over a member that refuses connections', async () => {
    // Member 2 (the leader by the map) listens nowhere; the client's endpoints reach 1 and 3.
    const dead = await scriptedNodes(1, () => ({ status: 500, json: {} }));
    const deadUrl = dead.urls[0] as string;
    const s = servers.pop() as Server;
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
    const idOf = (node: number): number => (node === 1 ? 1 : 3);
    const nodes = await scriptedNodes(2, (node, path) => {
      if (path.startsWith('/v1/ranges'))
        return rangesAnswer(1, [{ id: 0, start: '', end: null, leader: 2 }]);
      if (path === '/v1/status')
        return status(idOf(node), [nodes.urls[0] as string, deadUrl, nodes.urls[1] as string]);
      return putAnswer(idOf(node));
    });
    const client = new FlotillaClient({ endpoints: nodes.urls, protocol: 'http' });
    try {
      const r = await client.put('a', '1');
      assert.equal(r.header.memberId, 3, 'served by the next replica after the leader refused');
    } finally {
      await client.close();
    }
  });

  void it('reaches a node at the endpoint it was given when the address it advertises is not reachable', async () => {
    const nodes = await scriptedNodes(3, (node, path) => {
      if (path.startsWith('/v1/ranges'))
        return rangesAnswer(1, [{ id: 0, start: '', end: null, leader: 3 }]);
      if (path === '/v1/status')
        return status(node, [
          'http://node1.invalid',
          'http://node2.invalid',
          'http://node3.invalid',
        ]);
      return putAnswer(node);
    });
    const client = new FlotillaClient({ endpoints: nodes.urls, protocol: 'http' });
    try {
      await client.put('a', '1');
      assert.deepEqual(
        nodes.seen.filter((x) => x.path === '/v1/kv/put').map((x) => x.node),
        [3],
        "sent once, to the leader's endpoint",
      );
    } finally {
      await client.close();
    }
  });

  void it('asks no endpoint who it is when the members advertise the endpoints it was given', async () => {
    let urls: string[] = [];
    const nodes = await scriptedNodes(3, (node, path) => {
      if (path.startsWith('/v1/ranges'))
        return rangesAnswer(1, [{ id: 0, start: '', end: null, leader: 3 }]);
      if (path === '/v1/status') return status(node, urls);
      return putAnswer(node);
    });
    urls = nodes.urls;
    const client = new FlotillaClient({ endpoints: nodes.urls, protocol: 'http' });
    try {
      await client.put('a', '1');
      // The map and one status, then the put to the leader: not a status from every endpoint.
      assert.deepEqual(nodes.seen.map((x) => `${x.node} ${x.path}`).sort(), [
        '1 /v1/ranges?encoding=base64',
        '1 /v1/status',
        '3 /v1/kv/put',
      ]);
    } finally {
      await client.close();
    }
  });

  void it('is off with one endpoint unless asked for, and falls back to the endpoints without a map', async () => {
    const nodes = await scriptedNodes(2, (node, path) => {
      if (path.startsWith('/v1/ranges'))
        return {
          status: 403,
          json: { error: { code: 'PERMISSION_DENIED', message: 'no', indefinite: false } },
        };
      return putAnswer(node);
    });
    const one = new FlotillaClient({ endpoints: [nodes.urls[1] as string], protocol: 'http' });
    const asked = new FlotillaClient({ endpoints: nodes.urls, protocol: 'http' });
    try {
      assert.equal(one.rangeRoutingState().on, false);
      await one.put('a', '1');
      assert.equal(asked.rangeRoutingState().on, true);
      const r = await asked.put('a', '2');
      assert.equal(r.header.memberId, 1, 'sent to the first endpoint');
      await asked.put('b', '3');
      assert.equal(asked.rangeRoutingState().lastError?.code, 'PERMISSION_DENIED');
      assert.equal(
        nodes.seen.filter((s) => s.path.startsWith('/v1/ranges')).length,
        1,
        'one request for the map, not one per endpoint or per write',
      );
    } finally {
      await one.close();
      await asked.close();
    }
  });
});
