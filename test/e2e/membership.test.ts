// Membership changes on real processes while a client writes without pause: a 3-node cluster
// grows to 5 by two `flotilla start --join` (the log compacted, so they catch up by snapshot),
// shrinks back to 3 (the removed processes stop by themselves and their data directories
// refuse to start again), then replaces a node whose disk was wiped by a new member. Every
// write the cluster acknowledged is read back at the end.

import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, test } from 'node:test';
import { FlotillaError, type FlotillaClient } from '../../src/client/index.js';
import type { MembersResponse } from '../../src/api/types.js';
import { TestCluster, sleep } from './harness.js';

let cluster: TestCluster | null = null;
after(async () => {
  await cluster?.stop();
});

/** Writes w/<i> = v<i> one after the other until stopped; keeps what was acknowledged. */
class Writer {
  readonly acked: number[] = [];
  /** Writes whose outcome is unknown (an indefinite failure): they may or may not exist. */
  readonly unknown: number[] = [];
  private stopping = false;
  private readonly done: Promise<void>;

  constructor(private readonly c: FlotillaClient) {
    this.done = this.run();
  }

  private async run(): Promise<void> {
    for (let i = 0; !this.stopping; i++) {
      try {
        await this.c.put(`w/${i}`, `v${i}`);
        this.acked.push(i);
      } catch (err) {
        if (!(err instanceof FlotillaError) || err.indefinite) this.unknown.push(i);
      }
    }
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.done;
  }
}

async function until<T>(
  what: string,
  probe: () => Promise<T | null>,
  timeoutMs: number,
  c: TestCluster,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown = null;
  while (Date.now() < deadline) {
    try {
      const v = await probe();
      if (v !== null) return v;
    } catch (err) {
      last = err;
    }
    await sleep(100);
  }
  throw new Error(
    `${what}: not within ${timeoutMs} ms (last error: ${String(last)})\n${c.dumpLogs()}`,
  );
}

/** The acknowledged writes not read back with their value. */
function lostWrites(
  acked: readonly number[],
  kvs: readonly { key: string; value: string }[],
): number[] {
  const found = new Map(kvs.map((kv) => [kv.key, kv.value]));
  return acked.filter((i) => found.get(`w/${i}`) !== `v${i}`);
}

void test('the lost-write check catches a planted loss and a planted wrong value', () => {
  const kvs = [0, 1, 2].map((i) => ({ key: `w/${i}`, value: `v${i}` }));
  assert.deepEqual(lostWrites([0, 1, 2], kvs), []);
  assert.deepEqual(lostWrites([0, 1, 2, 3], kvs), [3], 'an acknowledged write missing');
  const wrong = kvs.map((kv) => (kv.key === 'w/1' ? { ...kv, value: 'v9' } : kv));
  assert.deepEqual(lostWrites([0, 1, 2], wrong), [1], 'an acknowledged write overwritten');
});

function votesInBoth(v: MembersResponse, id: number): boolean {
  const m = v.members.find((x) => x.id === id);
  return m?.role === 'voter' && m.queueRole === 'voter';
}

void test('grow 3 to 5 and back, replace a wiped node, while writing: nothing acknowledged is lost', async () => {
  const c = await TestCluster.create({ nodes: 3, extraArgs: ['--snapshot-every-entries', '300'] });
  cluster = c;
  await c.start();
  const admin = c.client([1, 2]);
  const writer = new Writer(c.client([1, 2]));
  try {
    await until(
      'a few writes',
      () => Promise.resolve(writer.acked.length > 400 ? true : null),
      20_000,
      c,
    );
    const via = c.endpoints([1, 2, 3]);
    // Grow: two nodes join, each becomes a voter of both groups once caught up.
    await c.join(4, via);
    await c.join(5, via);
    await until(
      'nodes 4 and 5 vote in both groups',
      async () => {
        const v = await admin.members();
        return votesInBoth(v, 4) && votesInBoth(v, 5) ? v : null;
      },
      30_000,
      c,
    );
    const grown = writer.acked.length;
    // Shrink: the removed processes stop by themselves.
    const exits = [c.exited(4), c.exited(5)];
    await admin.removeMember(4);
    await admin.removeMember(5);
    const codes = await Promise.race([
      Promise.all(exits),
      sleep(20_000).then(() => {
        throw new Error(`the removed nodes did not stop\n${c.dumpLogs()}`);
      }),
    ]);
    assert.deepEqual(codes, [0, 0], 'a removed node stops cleanly');
    c.startNode(4);
    const again = await Promise.race([c.exited(4), sleep(15_000).then(() => 'still running')]);
    assert.equal(again, 1, 'a removed member refuses to start');
    assert.match(c.dumpLogs(), /DATA_DIR_REMOVED/);
    // Replace a node whose disk was wiped: remove it for good, and join a new member.
    await c.kill(3);
    rmSync(c.member(3).dataDir, { recursive: true, force: true });
    await admin.removeMember(3);
    await c.join(6, c.endpoints([1, 2]));
    const final = await until(
      'node 6 votes in both groups',
      async () => {
        const v = await admin.members();
        return votesInBoth(v, 6) && v.queueGroupFollows ? v : null;
      },
      30_000,
      c,
    );
    assert.deepEqual(final.groups[0]?.voters, [1, 2, 6]);
    assert.deepEqual(final.groups[1]?.voters, [1, 2, 6]);
    assert.deepEqual(final.removed, [3, 4, 5]);
    await until(
      'writes go on',
      () => Promise.resolve(writer.acked.length > grown + 200 ? true : null),
      20_000,
      c,
    );
  } finally {
    await writer.stop();
  }
  // Every acknowledged write is there, with its value, read through the new member.
  const reader = c.client([6]);
  const r = await reader.range('w/', { prefix: true, limit: 0 });
  const lost = lostWrites(writer.acked, r.kvs);
  assert.deepEqual(lost, [], `acknowledged writes lost (of ${writer.acked.length})`);
  assert.ok(
    writer.acked.length > 600,
    `the writer kept writing: ${writer.acked.length} acknowledged`,
  );
  await reader.close();
  await admin.close();
});
