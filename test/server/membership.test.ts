// Membership over HTTP with real in-process nodes: every refusal of the membership endpoints
// with its code, a node that joins through a follower (learner, caught up, promoted in both
// groups), the member directory surviving a restart, and a removed member that stops and whose
// data directory refuses to start again.

import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, test } from 'node:test';
import { resolveNodeConfig } from '../../src/server/config.js';
import { FlotillaNode } from '../../src/server/node.js';
import { DataDirError, readIdentity, writeIdentity } from '../../src/server/data-dir.js';
import type { MembersResponse } from '../../src/api/types.js';
import type { Socket } from 'node:net';
import { MAX_LEARNED_MEMBERS } from '../../src/server/member-node.js';
import { PROTOCOL_VERSION_MAX, PROTOCOL_VERSION_MIN, pack } from '../../src/transport/codec.js';
import { FrameType, PREFACE, encodeSmallFrame } from '../../src/transport/frame.js';
import { freePorts } from '../e2e/harness.js';
import { rawSocket } from '../transport/fixtures.js';
import { TestNodes, postJson, until } from './nodes.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function cluster(config: Record<string, unknown> = {}) {
  const nodes = await TestNodes.start({ nodes: 3, config });
  cleanups.push(() => nodes.close());
  const leader = await nodes.waitForLeader();
  return { nodes, leader, follower: [1, 2, 3].find((id) => id !== leader) as number };
}

interface ErrorJson {
  error?: { code: string; message: string; indefinite: boolean };
}

async function expectRefusal(url: string, body: unknown, status: number, code: string) {
  const r = await postJson(url, body, { timeoutMs: 15_000 });
  assert.equal(r.status, status, JSON.stringify(r.json));
  assert.equal((r.json as ErrorJson).error?.code, code, JSON.stringify(r.json));
  assert.equal((r.json as ErrorJson).error?.indefinite, false);
}

/** A node started with `join`: its own addresses only, the cluster's from the answer. */
async function joiner(
  nodes: TestNodes,
  id: number,
  via: string,
  extra = {},
  ports?: readonly [number, number],
) {
  const [peer, client] = ports ?? ((await freePorts(2)) as [number, number]);
  const dir = join(nodes.node(1).config.dataDir, '..', `joiner${id}`);
  const config = resolveNodeConfig({
    id,
    dataDir: dir,
    initialCluster: `${id}=127.0.0.1:${peer}@http://127.0.0.1:${client}`,
    join: via,
    logLevel: 'silent',
    ...extra,
  });
  const node = await FlotillaNode.start(config);
  cleanups.push(() => node.close());
  return { node, config, url: `http://127.0.0.1:${client}`, peer: `127.0.0.1:${peer}` };
}

async function members(url: string): Promise<MembersResponse> {
  const r = await postJson(`${url}/v1/cluster/members/list`, {}, { timeoutMs: 10_000 });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  return r.json as unknown as MembersResponse;
}

void test('the membership endpoints refuse what they cannot do, each with its code', async () => {
  const { nodes, follower } = await cluster();
  const url = (path: string) => `${nodes.url(follower)}/v1/cluster/members/${path}`;
  const m1 = nodes.node(1).config.members[0] as { peer: string; client: string };
  // Malformed requests.
  await expectRefusal(url('add'), { id: 4 }, 400, 'BAD_REQUEST');
  await expectRefusal(url('add'), { id: 0, peer: 'a:1', client: 'http://a:2' }, 400, 'BAD_REQUEST');
  await expectRefusal(
    url('add'),
    { id: 4, peer: 'nope', client: 'http://a:2' },
    400,
    'BAD_REQUEST',
  );
  await expectRefusal(url('add'), { id: 4, peer: 'a:1', client: 'ftp://a' }, 400, 'BAD_REQUEST');
  await expectRefusal(
    url('add'),
    { id: 4, peer: 'a:1', client: 'x', more: 1 },
    400,
    'UNKNOWN_FIELD',
  );
  await expectRefusal(url('promote'), {}, 400, 'BAD_REQUEST');
  await expectRefusal(url('list'), { id: 1 }, 400, 'UNKNOWN_FIELD');
  // Refusals of the membership itself.
  await expectRefusal(
    url('add'),
    { id: 2, peer: '127.0.0.1:1', client: 'http://127.0.0.1:2' },
    409,
    'MEMBERSHIP_ALREADY_MEMBER',
  );
  await expectRefusal(
    url('add-learner'),
    { id: 7, peer: m1.peer, client: 'http://127.0.0.1:2' },
    400,
    'MEMBERSHIP_INVALID',
  );
  await expectRefusal(url('promote'), { id: 9 }, 400, 'MEMBERSHIP_UNKNOWN_MEMBER');
  await expectRefusal(url('promote'), { id: 2 }, 409, 'MEMBERSHIP_ALREADY_MEMBER');
  await expectRefusal(url('remove'), { id: 9 }, 400, 'MEMBERSHIP_UNKNOWN_MEMBER');
  // A learner added and removed: its id is never usable again.
  const [p, c] = (await freePorts(2)) as [number, number];
  const learner = { id: 8, peer: `127.0.0.1:${p}`, client: `http://127.0.0.1:${c}` };
  const added = await postJson(url('add-learner'), learner, { timeoutMs: 15_000 });
  assert.equal(added.status, 200, JSON.stringify(added.json));
  const view = added.json as unknown as MembersResponse;
  assert.equal(view.members.find((m) => m.id === 8)?.role, 'learner');
  assert.deepEqual(view.groups[0]?.learners, [8]);
  // The same add again (a retry whose first attempt applied) answers the list; as a voter, or
  // at other addresses, it is refused.
  const again = await postJson(url('add-learner'), learner, { timeoutMs: 15_000 });
  assert.equal(again.status, 200, JSON.stringify(again.json));
  await expectRefusal(url('add'), learner, 409, 'MEMBERSHIP_ALREADY_MEMBER');
  await expectRefusal(
    url('add-learner'),
    { ...learner, client: 'http://127.0.0.1:1' },
    409,
    'MEMBERSHIP_ALREADY_MEMBER',
  );
  // Learner 8 was never started: promoting it would make a voter that cannot vote.
  await expectRefusal(url('promote'), { id: 8 }, 409, 'MEMBERSHIP_LEARNER_BEHIND');
  assert.deepEqual((await members(nodes.url(follower))).groups[0]?.learners, [8]);
  const removed = await postJson(url('remove'), { id: 8 }, { timeoutMs: 15_000 });
  assert.equal(removed.status, 200, JSON.stringify(removed.json));
  assert.deepEqual((removed.json as unknown as MembersResponse).removed, [8]);
  await expectRefusal(url('add'), learner, 409, 'MEMBER_REMOVED');
  await expectRefusal(`${nodes.url(follower)}/v1/cluster/join`, learner, 409, 'MEMBER_REMOVED');
  // The notice of removal is checked against the node's own cluster and id.
  await expectRefusal(
    `${nodes.url(follower)}/v1/cluster/removed`,
    { clusterId: 'another', id: follower },
    400,
    'INVALID_REQUEST',
  );
  // Every node's view (the queue group followed the learner's coming and going).
  const after = await until('the queue group followed', async () => {
    const v = await members(nodes.url(follower));
    return v.queueGroupFollows && v.groups[1]?.learners.length === 0 ? v : null;
  });
  assert.deepEqual(after.groups[0]?.voters, [1, 2, 3]);
  assert.deepEqual(after.groups[1]?.voters, [1, 2, 3]);
});

void test('leader transfer without a target picks a caught-up voter', async () => {
  const { nodes, leader, follower } = await cluster();
  await until('every follower answered the leader', () =>
    [1, 2, 3].every(
      (id) => id === leader || (nodes.node(leader).runtime.status().progress[id]?.match ?? 0) > 0,
    ),
  );
  const r = await postJson(
    `${nodes.url(follower)}/v1/cluster/transfer-leadership`,
    {},
    {
      timeoutMs: 10_000,
    },
  );
  assert.equal(r.status, 200, JSON.stringify(r.json));
  const next = await until('another node leads', () => {
    const l = nodes.node(follower).runtime.leaderId();
    return l !== 0 && l !== leader ? l : null;
  });
  assert.notEqual(next, leader);
});

void test('a node joins through a follower, catches up by snapshot, is promoted in both groups and survives a restart', async () => {
  // Snapshots every 20 entries: the log the joiner needs was compacted away.
  const { nodes, leader, follower } = await cluster({ snapshotEveryEntries: 20 });
  for (let i = 0; i < 120; i++) {
    const r = await postJson(
      `${nodes.url(leader)}/v1/kv/put`,
      { key: `k${i}`, value: `v${i}` },
      {
        timeoutMs: 10_000,
      },
    );
    assert.equal(r.status, 200, JSON.stringify(r.json));
  }
  assert.ok(nodes.node(leader).runtime.status().firstIndex > 1, 'the log was compacted');
  const j = await joiner(nodes, 4, nodes.url(follower), { learnerPromoteLagEntries: 10 });
  const identity = readIdentity(j.config.dataDir);
  assert.equal(identity?.clusterId, nodes.node(1).config.clusterId, 'cluster id from the cluster');
  assert.deepEqual(identity?.members, [1, 2, 3], 'initial members from the cluster');
  assert.equal(identity?.joined, true);
  const view = await until('node 4 votes in both groups', async () => {
    const v = await members(nodes.url(follower));
    const m = v.members.find((x) => x.id === 4);
    return m?.role === 'voter' && m.queueRole === 'voter' ? v : null;
  });
  assert.equal(view.members.find((m) => m.id === 4)?.autoPromote, true);
  // Range 0 runs on every member; the map's record of it (its replicas at bootstrap) does not
  // name node 4, and the status says what node 4 holds all the same.
  await until('node 4 applied the range map', () => j.node.meta.machine.map() !== null);
  assert.ok(!(j.node.meta.machine.map()?.get(0)?.replicas.includes(4) ?? true));
  assert.deepEqual(j.node.nodeStatus().rangesInMap, [0]);
  // The joiner serves what was written before it joined (restored from a snapshot).
  await until('node 4 applied the writes', async () => {
    const r = await postJson(
      `${j.url}/v1/kv/range`,
      { key: 'k119', serializable: true },
      {
        timeoutMs: 5_000,
      },
    );
    return (r.json as { count?: number }).count === 1;
  });
  // Every node's transport and forwarder know node 4: it forwards writes to the leader.
  const w = await postJson(
    `${j.url}/v1/kv/put`,
    { key: 'via4', value: 'x' },
    { timeoutMs: 10_000 },
  );
  assert.equal(w.status, 200, JSON.stringify(w.json));
  const st = nodes.node(leader).nodeStatus();
  assert.ok(st.voters?.includes(4));
  assert.ok(st.replication?.some((r) => r.id === 4 && r.lag >= 0 && r.snapshot === null));
  const metrics = await (await fetch(`${nodes.url(leader)}/metrics`)).text();
  assert.match(metrics, /^flotilla_members\{[^}]*role="voter"[^}]*\} 4$/m);
  assert.match(metrics, /^flotilla_members\{[^}]*role="learner"[^}]*\} 0$/m);
  assert.match(metrics, /^flotilla_snapshot_transfers(\{[^}]*\})? 0$/m);
  // A restart of every original node: node 4's address comes from the replicated directory
  // (their configurations do not name it), and writes still commit with it counted.
  await nodes.restartAll();
  // Node 4 votes, and may be the one elected.
  await until('a leader is known again', () =>
    nodes.nodes.every((n) => n.runtime.leaderId() !== 0),
  );
  await until('the restarted nodes know node 4 again', () =>
    nodes.nodes.every((n) => n.nodeStatus().members.some((m) => m.id === 4 && m.peer === j.peer)),
  );
  const w2 = await postJson(
    `${nodes.url(1)}/v1/kv/put`,
    { key: 'after', value: 'y' },
    {
      timeoutMs: 15_000,
    },
  );
  assert.equal(w2.status, 200, JSON.stringify(w2.json));
});

void test('a removed member stops, and its data directory refuses to start again', async () => {
  const { nodes, follower } = await cluster();
  const j = await joiner(nodes, 5, nodes.url(follower));
  await until('node 5 votes', async () => {
    const v = await members(nodes.url(follower));
    return v.members.find((x) => x.id === 5)?.queueRole === 'voter';
  });
  const r = await postJson(
    `${nodes.url(follower)}/v1/cluster/members/remove`,
    { id: 5 },
    {
      timeoutMs: 15_000,
    },
  );
  assert.equal(r.status, 200, JSON.stringify(r.json));
  await Promise.race([
    j.node.stopped,
    new Promise((_, reject) => setTimeout(() => reject(new Error('node 5 did not stop')), 15_000)),
  ]);
  assert.equal(readIdentity(j.config.dataDir)?.removed, true);
  await assert.rejects(
    FlotillaNode.start(j.config),
    (err: unknown) => err instanceof DataDirError && err.code === 'DATA_DIR_REMOVED',
  );
  const v = await members(nodes.url(follower));
  assert.deepEqual(v.removed, [5]);
  assert.ok(!v.members.some((m) => m.id === 5));
  // A retry whose first attempt took effect (its answer lost) finds the removal done.
  const again = await postJson(
    `${nodes.url(follower)}/v1/cluster/members/remove`,
    { id: 5 },
    { timeoutMs: 15_000 },
  );
  assert.equal(again.status, 200, JSON.stringify(again.json));
});

void test('a member removed while it leads stops, even when it never hears the last group drop it', async () => {
  const { nodes, follower } = await cluster();
  const j = await joiner(nodes, 5, nodes.url(follower));
  await until('node 5 votes in both groups', async () => {
    const v = await members(nodes.url(follower));
    return v.members.find((x) => x.id === 5)?.queueRole === 'voter';
  });
  await until('node 5 has answered the leader', () => {
    const l = nodes.node(follower).runtime.leaderId();
    const leader = l === 5 ? j.node : l > 0 ? nodes.node(l) : null;
    return (leader?.runtime.status().progress[5]?.match ?? 0) > 0 || l === 5;
  });
  const t = await postJson(
    `${j.url}/v1/cluster/transfer-leadership`,
    { to: 5 },
    { timeoutMs: 10_000 },
  );
  assert.equal(t.status, 200, JSON.stringify(t.json));
  await until('node 5 leads the key-value group', () => j.node.runtime.isLeader());
  // Removed through itself, as the leader: its removal takes effect in the key-value group
  // and then the queue group; it stops once out of both, however it learns the last. It may
  // stop before it answers: the request is then sent again through a follower, as the client
  // does, and a removal that took effect is answered as done.
  const remove = async (url: string) =>
    postJson(`${url}/v1/cluster/members/remove`, { id: 5 }, { timeoutMs: 20_000 });
  const r = await remove(j.url).catch(() => remove(nodes.url(follower)));
  assert.equal(r.status, 200, JSON.stringify(r.json));
  await Promise.race([
    j.node.stopped,
    new Promise((_, reject) =>
      setTimeout(() => reject(new Error('node 5, removed as the leader, did not stop')), 20_000),
    ),
  ]);
  assert.equal(readIdentity(j.config.dataDir)?.removed, true);
  const v = await members(nodes.url(follower));
  assert.ok(!v.members.some((m) => m.id === 5), JSON.stringify(v));
});

void test('a member removed while it was down learns it from a peer when it starts, and stops', async () => {
  const { nodes, follower } = await cluster();
  const j = await joiner(nodes, 6, nodes.url(follower));
  await until('node 6 votes in both groups', async () => {
    const v = await members(nodes.url(follower));
    return v.members.find((x) => x.id === 6)?.queueRole === 'voter';
  });
  await j.node.close();
  const r = await postJson(
    `${nodes.url(follower)}/v1/cluster/members/remove`,
    { id: 6 },
    {
      timeoutMs: 15_000,
    },
  );
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.notEqual(readIdentity(j.config.dataDir)?.removed, true, 'it was down: not yet marked');
  // Started again, it never applies its removal (no one replicates to it any more) and the
  // notice went to a closed port; the others refuse its handshakes, and it asks.
  const again = await FlotillaNode.start(j.config);
  cleanups.push(() => again.close());
  await Promise.race([
    again.stopped,
    new Promise((_, reject) => setTimeout(() => reject(new Error('node 6 did not stop')), 15_000)),
  ]);
  assert.equal(readIdentity(j.config.dataDir)?.removed, true);
});

void test('a node added with member add-learner starts with --join and takes the cluster from it', async () => {
  const { nodes, follower } = await cluster();
  const ports = (await freePorts(2)) as [number, number];
  const added = await postJson(
    `${nodes.url(follower)}/v1/cluster/members/add-learner`,
    { id: 7, peer: `127.0.0.1:${ports[0]}`, client: `http://127.0.0.1:${ports[1]}` },
    { timeoutMs: 15_000 },
  );
  assert.equal(added.status, 200, JSON.stringify(added.json));
  // The join finds it added with these addresses and answers as for a join that applied.
  const j = await joiner(nodes, 7, nodes.url(follower), {}, ports);
  assert.deepEqual(readIdentity(j.config.dataDir)?.members, [1, 2, 3]);
  await until('the learner caught up', () => {
    const leader = nodes.nodes.find((n) => n.runtime.isLeader());
    const p = leader?.runtime.status().progress[7];
    return p !== undefined && p.match > 0 && p.state === 'replicate';
  });
  const v = await members(nodes.url(follower));
  assert.equal(
    v.members.find((m) => m.id === 7)?.role,
    'learner',
    'added with add-learner: not promoted by itself',
  );
  // Caught up, it is promoted when asked (one not caught up is refused: the test above).
  const promoted = await postJson(
    `${nodes.url(follower)}/v1/cluster/members/promote`,
    { id: 7 },
    { timeoutMs: 15_000 },
  );
  assert.equal(promoted.status, 200, JSON.stringify(promoted.json));
  const after = promoted.json as unknown as MembersResponse;
  assert.equal(after.members.find((m) => m.id === 7)?.role, 'voter');
});

void test('a joined node restarted before its log brought the member directory learns the members through its join URL', async () => {
  // Chaos seed 704: a joining node was killed after it recorded that it joined and before
  // anything reached it; started again it knew no member but itself, refused every one, and
  // had no one to ask.
  const { nodes, follower } = await cluster();
  const [peer, client] = (await freePorts(2)) as [number, number];
  const self = { id: 7, peer: `127.0.0.1:${peer}`, client: `http://127.0.0.1:${client}` };
  const r = await postJson(`${nodes.url(follower)}/v1/cluster/join`, self, { timeoutMs: 15_000 });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  const first = nodes.node(1).config;
  const dir = join(first.dataDir, '..', 'joiner7');
  mkdirSync(dir, { recursive: true });
  writeIdentity(dir, {
    clusterId: first.clusterId,
    memberId: 7,
    members: [1, 2, 3],
    storage: first.storage,
    recovery: 'none',
    joined: true,
  });
  const config = resolveNodeConfig({
    id: 7,
    dataDir: dir,
    initialCluster: `7=${self.peer}@${self.client}`,
    join: nodes.url(follower),
    logLevel: 'silent',
  });
  const node = await FlotillaNode.start(config);
  cleanups.push(() => node.close());
  await until('node 7 votes in both groups', async () => {
    const v = await members(nodes.url(follower));
    const m = v.members.find((x) => x.id === 7);
    return m?.role === 'voter' && m.queueRole === 'voter';
  });
});

void test('a joined data directory of another cluster is refused when the node names its own cluster', async () => {
  // A joined node takes its cluster id from its directory (it was told it when it joined); a
  // node configured with a cluster id of its own and given that directory ran silently as a
  // member of the other cluster.
  const [peer, client] = (await freePorts(2)) as [number, number];
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-joined-'));
  cleanups.push(() => Promise.resolve(rmSync(dir, { recursive: true, force: true })));
  writeIdentity(dir, {
    clusterId: 'other-cluster',
    memberId: 7,
    members: [1, 2, 3],
    storage: 'wal',
    recovery: 'none',
    joined: true,
  });
  const raw = {
    id: 7,
    dataDir: dir,
    initialCluster: `7=127.0.0.1:${peer}@http://127.0.0.1:${client}`,
    join: 'http://127.0.0.1:1',
    logLevel: 'silent',
  };
  await assert.rejects(
    FlotillaNode.start(resolveNodeConfig({ ...raw, clusterId: 'ops-kv' })),
    (e: unknown) =>
      e instanceof DataDirError &&
      e.code === 'DATA_DIR_MISMATCH' &&
      /cluster id "other-cluster", not "ops-kv"/.test(e.message),
  );
  assert.equal(readIdentity(dir)?.clusterId, 'other-cluster');
});

void test('a node whose join URLs reach another cluster than the one it names is refused, adds nothing there and writes nothing', async () => {
  const { nodes, follower } = await cluster();
  assert.notEqual(nodes.node(1).config.clusterId, 'not-this-cluster');
  const [peer, client] = (await freePorts(2)) as [number, number];
  const dir = join(nodes.node(1).config.dataDir, '..', 'joiner8');
  const config = resolveNodeConfig({
    id: 8,
    clusterId: 'not-this-cluster',
    dataDir: dir,
    initialCluster: `8=127.0.0.1:${peer}@http://127.0.0.1:${client}`,
    join: nodes.url(follower),
    logLevel: 'silent',
  });
  await assert.rejects(
    FlotillaNode.start(config),
    (e: unknown) =>
      e instanceof Error &&
      'code' in e &&
      e.code === 'MEMBERSHIP_WRONG_CLUSTER' &&
      /the joining node's clusterId is "not-this-cluster"/.test(e.message),
  );
  assert.equal(readIdentity(dir), null);
  // The directory this start created is taken back: a later start must not find it.
  assert.equal(existsSync(dir), false);
  // Refused before anything was added: before, the other cluster kept node 8 as a learner.
  const ids = (await members(nodes.url(follower))).members.map((m) => m.id);
  assert.ok(!ids.includes(8), `members: ${ids.join(', ')}`);
});

void test('handshakes in invented names grow the address book only up to the cap, oldest forgotten first', async () => {
  const { nodes, leader } = await cluster();
  const target = nodes.node(leader);
  const port = Number(target.config.listenPeer.split(':').pop());
  const [closed] = (await freePorts(1)) as [number];
  const ids = Array.from({ length: MAX_LEARNED_MEMBERS + 8 }, (_, i) => 1_000 + i);
  const sockets: Socket[] = [];
  try {
    for (const from of ids) {
      const s = await rawSocket(port);
      sockets.push(s);
      s.on('error', () => undefined);
      s.resume();
      const hello = {
        minVersion: PROTOCOL_VERSION_MIN,
        maxVersion: PROTOCOL_VERSION_MAX,
        clusterId: target.config.clusterId,
        from,
        to: leader,
        peer: `127.0.0.1:${closed}`,
        client: `http://127.0.0.1:${closed}`,
      };
      s.write(Buffer.concat([PREFACE, encodeSmallFrame(FrameType.hello, pack(hello))]));
      // One at a time, so "oldest" is well defined.
      await until(`member ${from} learned`, () => target.members.book.some((m) => m.id === from));
    }
    const book = target.members.book.map((m) => m.id);
    const learned = book.filter((id) => id >= 1_000);
    assert.deepEqual(learned, ids.slice(-MAX_LEARNED_MEMBERS), `book: ${book.join(',')}`);
    assert.deepEqual(
      book.filter((id) => id < 1_000),
      [1, 2, 3],
    );
    // The cluster still serves.
    const r = await postJson(
      `${nodes.url(leader)}/v1/kv/put`,
      { key: 'k', value: 'v' },
      { timeoutMs: 10_000 },
    );
    assert.equal(r.status, 200, JSON.stringify(r.json));
  } finally {
    for (const s of sockets) s.destroy();
  }
});
