// A cluster deployed from one template, as the container files do it: member 1 bootstraps a
// one-node cluster, the others join it (learners, then voters), and every node is given the
// same join URLs. A member whose data directory is lost starts again with the same settings:
// it must find the cluster, be told its id is a voter that held a log and recover as a node that lost
// its data (neither voting nor counting toward a quorum until caught up), not be refused, not
// be added twice, and never bootstrap a cluster of its own. In-process nodes on 127.0.0.1.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, test } from 'node:test';
import { pino, type Logger } from 'pino';
import type { MembersResponse } from '../../src/api/types.js';
import { systemClock } from '../../src/host/contracts.js';
import { resolveNodeConfig, type NodeConfig } from '../../src/server/config.js';
import { readIdentity } from '../../src/server/data-dir.js';
import { joinCluster } from '../../src/server/join.js';
import { restoreBackup } from '../../src/server/restore.js';
import { saveBackup } from '../../src/cli/snapshot.js';
import { FlotillaNode } from '../../src/server/node.js';
import { freePorts } from '../e2e/harness.js';
import { postJson } from './nodes.js';

const cleanups: (() => Promise<void>)[] = [];
const running = new Map<number, FlotillaNode>();
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  running.clear();
});

async function until<T>(
  what: string,
  probe: () => T | null | false | Promise<T | null | false>,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown = null;
  for (;;) {
    try {
      const seen = await probe();
      if (seen !== false && seen !== null) return seen;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(`${what}: not within ${timeoutMs} ms (last error: ${String(last)})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A logger whose records the test reads back. */
function recordingLogger(): { logger: Logger; messages: () => string[] } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(chunk.toString('utf8'));
      done();
    },
  });
  return {
    logger: pino({ level: 'info' }, sink),
    messages: () => lines.map((l) => String((JSON.parse(l) as { msg?: unknown }).msg)),
  };
}

/** Three members, each with its own addresses, member 1 the bootstrap member, one join list. */
async function template() {
  const ports = await freePorts(6);
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-rejoin-'));
  cleanups.push(() => Promise.resolve(rmSync(dir, { recursive: true, force: true })));
  const urls = [1, 2, 3].map((id) => `http://127.0.0.1:${ports[2 + id] as number}`);
  const config = (id: number): NodeConfig =>
    resolveNodeConfig({
      id,
      dataDir: join(dir, `node${id}`),
      advertisePeer: `127.0.0.1:${ports[id - 1] as number}`,
      advertiseClient: urls[id - 1],
      join: urls.join(','),
      bootstrapMember: 1,
      bootstrapWaitMs: 1_000,
      electionTicks: 10,
      logLevel: 'silent',
    });
  return { config, urls, dir };
}

async function start(config: NodeConfig, logger?: Logger): Promise<FlotillaNode> {
  const node = await FlotillaNode.start(config, logger === undefined ? {} : { logger });
  running.set(config.id, node);
  cleanups.push(() => node.close());
  return node;
}

async function members(url: string): Promise<MembersResponse> {
  const r = await postJson(`${url}/v1/cluster/members/list`, {}, { timeoutMs: 10_000 });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  return r.json as unknown as MembersResponse;
}

/** Every member listed is a voter of both groups, and they are exactly `ids`. */
async function votersAre(url: string, ids: number[]): Promise<boolean> {
  const v = await members(url);
  return (
    JSON.stringify(v.members.map((m) => m.id)) === JSON.stringify(ids) &&
    v.members.every((m) => m.role === 'voter' && m.queueRole === 'voter')
  );
}

async function put(url: string, key: string, value: string): Promise<void> {
  const r = await postJson(`${url}/v1/kv/put`, { key, value }, { timeoutMs: 15_000 });
  assert.equal(r.status, 200, JSON.stringify(r.json));
}

void test('member 1 bootstraps, the others join with the same settings; a member started again on an empty directory recovers and catches up', async () => {
  const t = await template();
  // Started together, as a StatefulSet with parallel pod management or a compose file does.
  await Promise.all([1, 2, 3].map((id) => start(t.config(id))));
  await until('three voters in both groups', () => votersAre(t.urls[1] as string, [1, 2, 3]));
  for (let i = 0; i < 20; i++) await put(t.urls[i % 3] as string, `k${i}`, `v${i}`);

  for (const lost of [1, 3]) {
    const old = running.get(lost) as FlotillaNode;
    await old.close();
    rmSync(t.config(lost).dataDir, { recursive: true, force: true });
    const revision = Math.max(
      ...[...running.values()].filter((n) => n !== old).map((n) => n.kv.revision()),
    );
    const log = recordingLogger();
    const again = await start(t.config(lost), log.logger);
    // Recovering from the start: it neither votes nor campaigns until caught up. Without the
    // cluster's word that it was a member, member 1 would start a voter of [1] alone.
    assert.ok(
      log.messages().some((m) => m.includes('this id is a voter that held a log')),
      `member ${lost} should know it was a member: ${log.messages().join(' | ')}`,
    );
    assert.ok(
      log.messages().some((m) => m.includes('lost its data')),
      `member ${lost} should recover: ${log.messages().join(' | ')}`,
    );
    await until(`member ${lost} caught up`, () => again.kv.revision() >= revision);
    await until(`member ${lost} finished recovering`, () => {
      const id = readIdentity(t.config(lost).dataDir);
      return id?.recovery === 'none' && again.runtime.status().recovery === 'none';
    });
    const identity = readIdentity(t.config(lost).dataDir);
    assert.equal(identity?.joined, true);
    assert.deepEqual(identity?.members, [1], "the cluster's initial configuration, member 1's");
    // Neither refused nor added twice, and no cluster of its own: the same three voters.
    await until('the same three voters', () => votersAre(t.urls[1] as string, [1, 2, 3]));
    assert.deepEqual(again.runtime.status().voters, [1, 2, 3]);
    assert.notEqual(again.runtime.leaderId(), 0);
    await put(t.urls[lost - 1] as string, `after-${lost}`, 'x');
    const r = await postJson(
      `${t.urls[lost - 1] as string}/v1/kv/range`,
      { key: 'k0' },
      { timeoutMs: 10_000 },
    );
    assert.equal(
      ((r.json['kvs'] as { value: string }[] | undefined) ?? [])[0]?.value,
      'v0',
      JSON.stringify(r.json),
    );
  }
});

void test('a backup restored into member 1 alone starts a new cluster from the same template; the others join it', async () => {
  const old = await template();
  await Promise.all([1, 2, 3].map((id) => start(old.config(id))));
  await until('three voters', () => votersAre(old.urls[0] as string, [1, 2, 3]));
  for (let i = 0; i < 20; i++) await put(old.urls[i % 3] as string, `k${i}`, `v${i}`);
  const file = join(old.dir, 'backup.flbk');
  await saveBackup(old.urls, file);
  for (const n of running.values()) await n.close();
  running.clear();

  const fresh = await template();
  const first = fresh.config(1);
  await restoreBackup({
    file,
    dataDir: first.dataDir,
    id: 1,
    members: [1],
    clusterId: first.clusterId,
    storage: first.storage,
  });
  // Member 1's directory is not empty: it starts from the backup and does not join; the
  // others, empty, join it.
  await Promise.all([1, 2, 3].map((id) => start(fresh.config(id))));
  await until('three voters in the new cluster', () =>
    votersAre(fresh.urls[2] as string, [1, 2, 3]),
  );
  for (let i = 0; i < 20; i++) {
    const r = await postJson(
      `${fresh.urls[2] as string}/v1/kv/range`,
      { key: `k${i}` },
      { timeoutMs: 10_000 },
    );
    assert.equal(
      ((r.json['kvs'] as { value: string }[] | undefined) ?? [])[0]?.value,
      `v${i}`,
      JSON.stringify(r.json),
    );
  }
});

/** An HTTP server that answers every request 503 NO_LEADER: a cluster that exists. */
async function refusingMember(): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.statusCode = 503;
      res.setHeader('content-type', 'application/json');
      res.end(
        JSON.stringify({ error: { code: 'NO_LEADER', message: 'no leader', indefinite: false } }),
      );
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(() => new Promise((r) => server.close(() => r())));
  const a = server.address();
  if (a === null || typeof a === 'string') throw new Error('no address');
  return { url: `http://127.0.0.1:${a.port}`, server };
}

void test('the bootstrap member starts a cluster only when no member answered at all', async () => {
  const [closed] = (await freePorts(1)) as [number];
  const nobody = `http://127.0.0.1:${closed}`;
  const self = { id: 1, peer: '127.0.0.1:1', client: 'http://127.0.0.1:2' };
  const log = pino({ level: 'silent' });
  // No one listens: the bootstrap member gives up after its wait; another member does not.
  const started = Date.now();
  assert.equal(
    await joinCluster(self, [nobody, self.client], {
      clock: systemClock,
      timeoutMs: 10_000,
      log,
      bootstrapAfterMs: 300,
    }),
    'bootstrap',
  );
  assert.ok(Date.now() - started >= 300, 'it waited before starting a cluster');
  await assert.rejects(
    joinCluster(self, [nobody], { clock: systemClock, timeoutMs: 800, log }),
    (e: unknown) => e instanceof Error && 'code' in e && e.code === 'TIMEOUT',
  );
  // A member that answers, even with a refusal, shows the cluster exists: never bootstrap.
  const refusing = await refusingMember();
  await assert.rejects(
    joinCluster(self, [nobody, refusing.url], {
      clock: systemClock,
      timeoutMs: 1_500,
      log,
      bootstrapAfterMs: 100,
    }),
    (e: unknown) => e instanceof Error && 'code' in e && e.code === 'TIMEOUT',
  );
  // Its own URL is not asked: with nothing else to ask it bootstraps at once, or, if it is
  // not the bootstrap member, says it has no one to ask.
  assert.equal(
    await joinCluster(self, [self.client], {
      clock: systemClock,
      timeoutMs: 5_000,
      log,
      bootstrapAfterMs: 60_000,
    }),
    'bootstrap',
  );
  await assert.rejects(
    joinCluster(self, [self.client], { clock: systemClock, timeoutMs: 5_000, log }),
    /no member to ask but this node itself/,
  );
});
