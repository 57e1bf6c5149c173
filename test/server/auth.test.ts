// Client authentication on a real 3-node cluster in this process (API.md, "Authentication"):
// a client without a token, or with a read token writing, is refused; a write token writes
// and reads; membership, compaction, backups and transfers need admin; a follower forwards
// with the caller's token, which the leader checks again; the members' own calls to each
// other carry the node token; the binary protocol does the same as HTTP; and no token reaches
// the log.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { FlotillaError } from '../../src/base/errors.js';
import { FlotillaClient } from '../../src/client/index.js';
import { WireConnection } from '../../src/client/wire.js';
import { resolveNodeConfig } from '../../src/server/config.js';
import { createLogger } from '../../src/server/logging.js';
import { FlotillaNode } from '../../src/server/node.js';
import { freePorts } from '../e2e/harness.js';
import { TestNodes } from './nodes.js';
import { until } from '../support/until.js';

const tokens = {
  read: 'reader-token-0123456789abcdef',
  write: 'writer-token-0123456789abcdef',
  admin: 'operator-token-0123456789abcdef',
  node: 'members-token-0123456789abcdef',
};
/** A write token only node `id`'s tokens file holds: the leader does not know it. */
const onlyOn = (id: number): string => `only-on-node-${id}-0123456789abcdef`;

let dir: string;
let cluster: TestNodes;
let leader: number;
let follower: number;

function tokensFile(extra: { name: string; role: string; token: string }[]): string {
  const path = join(dir, `tokens-${extra.map((e) => e.name).join('-') || 'base'}.json`);
  writeFileSync(
    path,
    JSON.stringify({
      tokens: [
        { name: 'reader', role: 'read', token: tokens.read },
        { name: 'writer', role: 'write', token: tokens.write },
        { name: 'operator', role: 'admin', token: tokens.admin },
        { name: 'members', role: 'admin', token: tokens.node },
        ...extra,
      ],
    }),
  );
  return path;
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'flotilla-auth-'));
  const nodeToken = join(dir, 'node-token');
  writeFileSync(nodeToken, tokens.node);
  cluster = await TestNodes.start({
    nodes: 3,
    clientProtocol: true,
    config: { authNodeTokenFile: nodeToken },
    configOf: (id) => ({
      authTokensFile: tokensFile([{ name: `local-${id}`, role: 'write', token: onlyOn(id) }]),
    }),
  });
  leader = await cluster.waitForLeader();
  follower = [1, 2, 3].find((id) => id !== leader) as number;
});

after(async () => {
  await cluster.close();
  rmSync(dir, { recursive: true, force: true });
});

async function call(
  id: number,
  path: string,
  o: { token?: string; authorization?: string; body?: unknown; method?: 'GET' | 'POST' } = {},
): Promise<{ status: number; json: Record<string, unknown>; headers: Record<string, unknown> }> {
  const method = o.method ?? (o.body === undefined ? 'GET' : 'POST');
  const res = await request(`${cluster.url(id)}${path}`, {
    method,
    headers: {
      ...(o.body === undefined ? {} : { 'content-type': 'application/json' }),
      ...(o.token === undefined ? {} : { authorization: `Bearer ${o.token}` }),
      ...(o.authorization === undefined ? {} : { authorization: o.authorization }),
    },
    ...(o.body === undefined ? {} : { body: JSON.stringify(o.body) }),
    headersTimeout: 10_000,
    bodyTimeout: 10_000,
  });
  const text = await res.body.text();
  const json = (res.headers['content-type'] ?? '').toString().includes('json')
    ? (JSON.parse(text) as Record<string, unknown>)
    : { text };
  return { status: res.statusCode, json, headers: res.headers };
}

function errorOf(json: Record<string, unknown>): { code: string; indefinite: boolean } {
  return json['error'] as { code: string; indefinite: boolean };
}

function client(token: string, protocol: 'http' | 'auto' = 'http'): FlotillaClient {
  return new FlotillaClient({ endpoints: cluster.urls, token, protocol, deadlineMs: 10_000 });
}

async function rejects(p: Promise<unknown>, code: string): Promise<FlotillaError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof FlotillaError, String(err));
    assert.equal(err.code, code, err.message);
    return err;
  }
  assert.fail(`expected ${code}`);
}

async function valueOf(key: string): Promise<string | null> {
  const r = await call(leader, '/v1/kv/range', { token: tokens.admin, body: { key } });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  return (r.json['kvs'] as { value: string }[])[0]?.value ?? null;
}

void describe('HTTP with authentication on', () => {
  void it('refuses a request without a token, or with an unknown one, 401 and definite', async () => {
    for (const token of [undefined, 'not-a-known-token-0123456789'])
      for (const id of [leader, follower]) {
        const r = await call(id, '/v1/kv/put', {
          ...(token === undefined ? {} : { token }),
          body: { key: 'anon', value: 'x' },
        });
        assert.equal(r.status, 401, JSON.stringify(r.json));
        assert.equal(errorOf(r.json).code, 'UNAUTHENTICATED');
        assert.equal(errorOf(r.json).indefinite, false);
        assert.match(String(r.headers['www-authenticate']), /^Bearer/);
      }
    assert.equal((await call(leader, '/v1/status')).status, 401);
    const basic = await call(leader, '/v1/status', { authorization: 'Basic dXNlcjpwYXNz' });
    assert.equal(basic.status, 401);
    assert.match((basic.json['error'] as { message: string }).message, /must be "Bearer <token>"/);
    assert.equal(await valueOf('anon'), null, 'nothing was written');
  });

  void it('leaves the health probes and metrics open', async () => {
    for (const path of ['/healthz', '/metrics'])
      assert.equal((await call(leader, path)).status, 200, path);
    // Ready once every group a member serves is (the queue's and the map's follow the key-value
    // group's membership a few checks later), and never refused for want of a token meanwhile.
    let seen = 0;
    await until(
      () => `/readyz 200 (last: ${seen})`,
      async () => {
        seen = (await call(leader, '/readyz')).status;
        assert.notEqual(seen, 401, '/readyz asked for a token');
        return seen === 200;
      },
    );
  });

  void it("serves the dashboard's files to anyone, its data only to a token; its members' views carry the node token", async () => {
    for (const path of ['/', '/dashboard/style.css'])
      assert.equal((await call(follower, path)).status, 200, path);
    for (const path of ['/v1/dashboard/events', '/v1/dashboard/member?timelineVersion=0'])
      assert.equal((await call(follower, path)).status, 401, path);
    assert.equal(
      (await call(leader, '/v1/dashboard/member?timelineVersion=0', { token: tokens.read })).status,
      200,
    );
    // The stream of a follower, with a read token: every member's view arrives, which the
    // follower asks the others for with its node token.
    const res = await fetch(`${cluster.url(follower)}/v1/dashboard/events`, {
      headers: { authorization: `Bearer ${tokens.read}` },
      signal: AbortSignal.timeout(15_000),
    });
    assert.equal(res.status, 200);
    const reader = (res.body as ReadableStream<Uint8Array>)
      .pipeThrough(new TextDecoderStream())
      .getReader();
    let buf = '';
    let last = '';
    try {
      for (;;) {
        const cut = buf.indexOf('\n\n');
        if (cut < 0) {
          const { value, done } = await reader.read();
          if (done) assert.fail(`the stream ended; last cluster event: ${last}`);
          buf += value;
          continue;
        }
        const block = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        if (!block.startsWith('event: cluster')) continue;
        last = /^data: (.*)$/m.exec(block)?.[1] ?? '';
        const rows = (JSON.parse(last) as { members: { error: unknown; view: unknown }[] }).members;
        if (rows.length === 3 && rows.every((r) => r.error === null && r.view !== null)) break;
      }
    } finally {
      await reader.cancel();
    }
  });

  void it('lets a read token read and refuses it a write, 403, on the leader and a follower', async () => {
    for (const id of [leader, follower]) {
      const w = await call(id, '/v1/kv/put', {
        token: tokens.read,
        body: { key: 'r', value: 'x' },
      });
      assert.equal(w.status, 403, JSON.stringify(w.json));
      assert.equal(errorOf(w.json).code, 'PERMISSION_DENIED');
      assert.equal(errorOf(w.json).indefinite, false);
      const r = await call(id, '/v1/kv/range', { token: tokens.read, body: { key: 'r' } });
      assert.equal(r.status, 200, JSON.stringify(r.json));
    }
    const reader = client(tokens.read);
    await rejects(reader.put('r', 'x'), 'PERMISSION_DENIED');
    await reader.close();
    assert.equal(await valueOf('r'), null);
  });

  void it('lets a write token write and read, through any node', async () => {
    const c = client(tokens.write);
    try {
      await c.put('w', 'written');
      assert.equal((await c.get('w'))?.value, 'written');
      const viaFollower = await call(follower, '/v1/kv/put', {
        token: tokens.write,
        body: { key: 'wf', value: 'forwarded' },
      });
      assert.equal(viaFollower.status, 200, JSON.stringify(viaFollower.json));
      assert.equal(await valueOf('wf'), 'forwarded');
    } finally {
      await c.close();
    }
  });

  void it('keeps membership, compaction, backups and transfers for admin', async () => {
    const writer = client(tokens.write);
    const admin = client(tokens.admin);
    try {
      await rejects(writer.members(), 'PERMISSION_DENIED');
      await rejects(writer.compact(1), 'PERMISSION_DENIED');
      await rejects(writer.transferLeadership({ to: leader }), 'PERMISSION_DENIED');
      await rejects(
        writer.addMember({ id: 9, peer: '127.0.0.1:1', client: 'http://127.0.0.1:2' }),
        'PERMISSION_DENIED',
      );
      const backup = await call(follower, '/v1/snapshot', { token: tokens.write });
      assert.equal(backup.status, 403);
      const members = await admin.members();
      assert.equal(members.members.length, 3);
      await admin.put('c', '1');
      const compacted = await admin.compact(1);
      assert.ok(compacted.compacted >= 1);
    } finally {
      await writer.close();
      await admin.close();
    }
  });

  void it("forwards with the caller's token, which the leader checks again", async () => {
    // The follower knows its own extra token; the leader does not. Were the follower to
    // forward with its own (admin) credential, this write would go through.
    const r = await call(follower, '/v1/kv/put', {
      token: onlyOn(follower),
      body: { key: 'escalated', value: 'x' },
    });
    assert.equal(r.status, 401, JSON.stringify(r.json));
    assert.equal(errorOf(r.json).code, 'UNAUTHENTICATED');
    assert.equal(await valueOf('escalated'), null);
    // The same token where it is listed: the leader serves it.
    const own = await call(leader, '/v1/kv/put', {
      token: onlyOn(leader),
      body: { key: 'local', value: 'x' },
    });
    assert.equal(own.status, 200, JSON.stringify(own.json));
    // A forwarded admin request goes through too (membership list via a follower).
    const list = await call(follower, '/v1/cluster/members/list', {
      token: tokens.admin,
      body: {},
    });
    assert.equal(list.status, 200, JSON.stringify(list.json));
  });

  void it("carries the node token on the members' own calls (the status of every member)", async () => {
    const r = await call(follower, '/v1/cluster/status', { token: tokens.read });
    assert.equal(r.status, 200, JSON.stringify(r.json));
    const nodes = r.json['nodes'] as { id: number; status?: unknown; error?: string }[];
    assert.equal(nodes.length, 3);
    for (const n of nodes) assert.ok(n.status !== undefined, `node ${n.id}: ${n.error ?? ''}`);
  });
});

void describe('binary client protocol with authentication on', () => {
  const open = (id: number, token?: string) =>
    WireConnection.connect({
      host: '127.0.0.1',
      port: cluster.binaryPort(id),
      timeoutMs: 5_000,
      ...(token === undefined ? {} : { token }),
    });

  void it('refuses a handshake without a token, or with an unknown one', async () => {
    await rejects(open(leader), 'UNAUTHENTICATED');
    await rejects(open(leader, 'not-a-known-token-0123456789'), 'UNAUTHENTICATED');
  });

  void it('refuses a read token its write alone, and keeps the connection', async () => {
    // On the leader the node itself must refuse; a follower's refusal could come from the
    // leader it forwards to.
    for (const id of [leader, follower]) {
      const c = await open(id, tokens.read);
      try {
        await rejects(
          c.request('put', { key: 'wr', value: 'x' }, { read: false }),
          'PERMISSION_DENIED',
        );
        const r = (await c.request('range', { key: 'wr' }, { read: true })) as { count: number };
        assert.equal(r.count, 0);
      } finally {
        c.close();
      }
    }
  });

  void it("writes with a write token through a follower, forwarding the caller's token", async () => {
    const c = await open(follower, tokens.write);
    try {
      await c.request('put', { key: 'ww', value: 'wire' }, { read: false });
      assert.equal(await valueOf('ww'), 'wire');
    } finally {
      c.close();
    }
    const local = await open(follower, onlyOn(follower));
    try {
      await rejects(
        local.request('put', { key: 'escalated-wire', value: 'x' }, { read: false }),
        'UNAUTHENTICATED',
      );
    } finally {
      local.close();
    }
    assert.equal(await valueOf('escalated-wire'), null);
  });

  void it('serves the client, which presents its token in the handshake (auto protocol)', async () => {
    const c = client(tokens.write, 'auto');
    const reader = client(tokens.read, 'auto');
    try {
      await c.put('auto', '1');
      await c.put('auto', '2');
      assert.equal((await c.get('auto'))?.value, '2');
      await rejects(reader.put('auto', '3'), 'PERMISSION_DENIED');
    } finally {
      await c.close();
      await reader.close();
    }
  });
  void it('refuses a token taken out of the tokens file on a connection already open', async () => {
    const c = await open(follower, onlyOn(follower));
    try {
      // A read served by the follower itself: its own file lists the token.
      await c.request('range', { key: 'x', serializable: true }, { read: true });
      tokensFile([
        { name: `local-${follower}`, role: 'write', token: 'replacement-0123456789abcdef' },
      ]);
      // Rewritten under the same name: the node polls it and swaps the book in (bounded wait).
      const deadline = Date.now() + 5_000;
      let last: unknown = null;
      while (Date.now() < deadline) {
        last = await c
          .request('range', { key: 'x', serializable: true }, { read: true })
          .catch((err: unknown) => err);
        if (last instanceof FlotillaError) break;
        await new Promise((r) => setTimeout(r, 25));
      }
      assert.ok(last instanceof FlotillaError, `still served: ${JSON.stringify(last)}`);
      assert.equal(last.code, 'UNAUTHENTICATED');
    } finally {
      c.close();
    }
  });
});

void describe('joining with authentication on', () => {
  async function joiner(id: number, nodeTokenValue: string, extra: string[] = []) {
    const [peer, http] = (await freePorts(2)) as [number, number];
    const nodeToken = join(dir, `node-token-${id}`);
    writeFileSync(nodeToken, nodeTokenValue);
    return resolveNodeConfig({
      id,
      dataDir: join(dir, `joiner${id}`),
      initialCluster: `${id}=127.0.0.1:${peer}@http://127.0.0.1:${http}`,
      join: cluster.url(follower),
      logLevel: 'silent',
      authNodeTokenFile: nodeToken,
      authTokensFile: tokensFile(
        extra.map((token, i) => ({ name: `joiner-${id}-${i}`, role: 'admin', token })),
      ),
    });
  }

  void it('refuses a node whose own token the cluster does not list', async () => {
    const stranger = 'stranger-admin-0123456789abcdef';
    await rejects(FlotillaNode.start(await joiner(5, stranger, [stranger])), 'UNAUTHENTICATED');
  });

  void it('lets a node in that presents an admin token of the cluster', async () => {
    const node = await FlotillaNode.start(await joiner(4, tokens.node));
    try {
      const admin = client(tokens.admin);
      try {
        const m = await admin.members();
        assert.ok(
          m.members.some((x) => x.id === 4),
          JSON.stringify(m.members.map((x) => x.id)),
        );
      } finally {
        await admin.close();
      }
    } finally {
      await node.close();
    }
  });
});

void it('never writes a token to the log, for refused and accepted requests alike', async () => {
  const own = mkdtempSync(join(tmpdir(), 'flotilla-auth-log-'));
  const [peer, http, binary] = (await freePorts(3)) as [number, number, number];
  const nodeToken = join(own, 'node-token');
  writeFileSync(nodeToken, tokens.node);
  const lines: string[] = [];
  const node = await FlotillaNode.start(
    resolveNodeConfig({
      id: 1,
      dataDir: join(own, 'data'),
      initialCluster: `1=127.0.0.1:${peer}@http://127.0.0.1:${http}`,
      clientProtocolPort: binary,
      authTokensFile: tokensFile([]),
      authNodeTokenFile: nodeToken,
    }),
    {
      logger: createLogger(1, {
        level: 'trace',
        format: 'json',
        out: { isTTY: false, write: (s: string) => void lines.push(s) },
      }),
    },
  );
  const url = `http://127.0.0.1:${http}`;
  const wrong = 'wrong-token-0123456789abcdef';
  try {
    for (const token of [tokens.read, tokens.write, wrong]) {
      const res = await request(`${url}/v1/kv/put`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        body: JSON.stringify({ key: 'k', value: 'v' }),
      });
      await res.body.text();
      const c = await WireConnection.connect({
        host: '127.0.0.1',
        port: binary,
        timeoutMs: 5_000,
        token,
      }).catch(() => null);
      await c?.request('put', { key: 'k', value: 'v' }, { read: false }).catch(() => undefined);
      c?.close();
    }
    // An accepted write by the client, over HTTP and then the binary protocol.
    const c = new FlotillaClient({ endpoints: [url], token: tokens.write, deadlineMs: 5_000 });
    await c.put('k', 'v');
    await c.close();
  } finally {
    await node.close();
    rmSync(own, { recursive: true, force: true });
  }
  const log = lines.join('');
  assert.ok(lines.length > 5, `the node logged something: ${log}`);
  for (const t of [...Object.values(tokens), wrong])
    assert.ok(!log.includes(t), `the log holds a token: ${log}`);
});
