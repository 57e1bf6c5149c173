// The queue survives a restart of every node, with either storage kind the node can use for its
// groups (`storage: 'wal' | 'sqlite'`): waiting jobs with their data and priority, a claim with
// its token, a queue's settings and a repeatable job. The snapshot interval is short, so the
// restart rebuilds the queue from a snapshot and the log entries after it, not the log alone.

import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { QUEUE_GROUP } from '../../src/server/node.js';
import { TestNodes, postJson } from './nodes.js';

type Json = Record<string, unknown>;

function queueLeader(nodes: TestNodes, timeoutMs = 10_000): Promise<number> {
  return nodes.waitForQueueLeader(timeoutMs);
}

for (const [storage, walSync] of [
  ['wal', 'per-group'],
  ['sqlite', 'per-group'],
  ['wal', 'shared'],
] as const)
  void test(`queue jobs, claims, settings and repeatables survive a full restart (${storage}${walSync === 'shared' ? ', shared sync' : ''})`, async () => {
    const nodes = await TestNodes.start({
      nodes: 3,
      config: { storage, walSync, snapshotEveryEntries: 10 },
    });
    try {
      const ok = async (id: number, path: string, body: Json): Promise<Json> => {
        const r = await postJson(`${nodes.url(id)}/v1/queue/${path}`, body, { timeoutMs: 15_000 });
        assert.equal(r.status, 200, `${path} ${JSON.stringify(body)}: ${JSON.stringify(r.json)}`);
        return r.json;
      };
      const leader = await queueLeader(nodes);
      const f = leader === 1 ? 2 : 1;
      const q = 'durable';
      const { id } = (await ok(f, 'add', {
        queue: q,
        name: 'keep',
        data: { n: 42 },
        priority: 5,
      })) as {
        id: string;
      };
      const c0 = (await ok(f, 'add', { queue: q, name: 'claimed' })) as { id: string };
      const held = (
        (await ok(f, 'claim', { queue: q, leaseMs: 600_000 }))['jobs'] as {
          job: Json;
          token: number;
        }[]
      )[0];
      assert.equal(held?.job['id'], c0.id, 'priority 0 runs before priority 5');
      // Enough entries past the snapshot interval that each node has taken a snapshot.
      for (let i = 0; i < 25; i++) await ok(f, 'add', { queue: 'filler', name: `f${i}` });
      await ok(f, 'configure', { queue: q, concurrency: 4, keepDead: { count: 9 } });
      await ok(f, 'repeat/upsert', { queue: q, repeatId: 'nightly', cron: '0 3 * * *', name: 'n' });
      const before = (await ok(f, 'stats', { queue: q }))['stats'] as Json;
      // Every member has applied it all, and has a snapshot of the queue group to restart from.
      const applied = nodes.node(leader).queueService.runtime.appliedIndex();
      for (const n of nodes.nodes) {
        const deadline = Date.now() + 10_000;
        while (n.queueService.runtime.appliedIndex() < applied && Date.now() < deadline)
          await new Promise((r) => setTimeout(r, 20));
        assert.ok(
          n.queueService.runtime.storage.initialState().snapshot !== null,
          `node ${n.config.id} took a snapshot of the queue group`,
        );
      }
      const groupDir = join(nodes.dataDir(1), `group-${QUEUE_GROUP}`);
      const files = readdirSync(groupDir);
      assert.equal(
        files.some((x) => x.endsWith('.sqlite')),
        storage === 'sqlite',
        `the queue group's storage is ${storage}: ${files.join(', ')}`,
      );
      await nodes.restartAll();
      await queueLeader(nodes);
      for (const n of nodes.nodes) {
        const at = n.config.id;
        const job = (await ok(at, 'get', { queue: q, id }))['job'] as Json;
        assert.equal(job['state'], 'waiting', `node ${at}`);
        assert.deepEqual(job['data'], { n: 42 });
        assert.equal(job['priority'], 5);
        const stillHeld = (await ok(at, 'get', { queue: q, id: c0.id }))['job'] as Json;
        assert.equal(stillHeld['state'], 'active', 'a claim survives too, with its token');
        assert.equal(stillHeld['token'], held?.token);
        const after = (await ok(at, 'stats', { queue: q }))['stats'] as Json;
        assert.deepEqual(after, before, `node ${at}: settings, counts and totals`);
        const reps = (await ok(at, 'repeat/list', { queue: q }))['repeatables'] as Json[];
        assert.deepEqual(
          reps.map((r) => r['repeatId']),
          ['nightly'],
        );
        const filler = (await ok(at, 'stats', { queue: 'filler' }))['stats'] as Json;
        assert.equal((filler['counts'] as Json)['waiting'], 25);
      }
      const f2 = (await queueLeader(nodes)) === 1 ? 2 : 1;
      await ok(f2, 'complete', { queue: q, id: c0.id, token: held?.token });
      const next = (await ok(f2, 'claim', { queue: q }))['jobs'] as { job: Json }[];
      assert.equal(next[0]?.job['id'], id);
    } finally {
      await nodes.close();
    }
  });
