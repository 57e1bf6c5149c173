// Cuts are exact for members that joined during the run, and for bootstrap members after a
// join changed the member directory (cluster.ts). Real processes: a member joins, is made
// leader and is cut off from everyone, and the others must elect a leader among themselves;
// then the same for a bootstrap member. Through per-pair proxies neither happened: a joined
// member was not behind any proxy, and after the join every node reached the others at the
// addresses the leader of the join knew, so the "isolated" leader kept its followers.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { FlotillaClient } from '../../src/client/index.js';
import type { NodeStatus } from '../../src/api/types.js';
import { ChaosCluster } from './cluster.js';

/** Polls `probe` every 200 ms until it returns non-null; fails after `ms` with the last seen. */
async function waitFor<T>(
  what: string,
  ms: number,
  probe: () => Promise<{ done: T | null; seen: string }>,
): Promise<T> {
  const deadline = performance.now() + ms;
  let seen = 'nothing';
  while (performance.now() < deadline) {
    const r = await probe();
    if (r.done !== null) return r.done;
    seen = r.seen;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`${what}: not within ${ms} ms; last seen ${seen}`);
}

void describe('ChaosCluster cuts', { timeout: 180_000 }, () => {
  let cluster: ChaosCluster;
  let admin: FlotillaClient;

  before(async () => {
    cluster = await ChaosCluster.create({
      nodes: 3,
      unsafeMode: 'none',
      snapshotEveryEntries: 10_000,
      storage: 'wal',
      keepData: false,
    });
    await cluster.start();
    admin = new FlotillaClient({ endpoints: cluster.endpoints(), timeoutMs: 2_000 });
  });

  after(async () => {
    await admin.close();
    await cluster.stop();
  });

  const statuses = async (ids: readonly number[]): Promise<(NodeStatus | null)[]> =>
    Promise.all(ids.map((id) => cluster.status(id)));

  /** Makes `id` the leader of the key-value group. */
  async function lead(id: number): Promise<void> {
    await waitFor(`node ${id} to lead`, 30_000, async () => {
      const leader = await cluster.leader();
      if (leader === id) return { done: true, seen: '' };
      await admin.transferLeadership({ to: id }).catch(() => undefined);
      return { done: null, seen: `leader ${leader}` };
    });
  }

  /** Cuts `id` off both ways; the others must elect one of themselves. */
  async function isolateAndReelect(id: number): Promise<number> {
    const others = cluster.ids.filter((x) => x !== id);
    for (const o of others) {
      cluster.cut(id, o);
      cluster.cut(o, id);
    }
    const elected = await waitFor(`the others of ${id} to elect a leader`, 15_000, async () => {
      const sts = await statuses(others);
      const leader = sts.find((s) => s?.role === 'leader')?.id ?? 0;
      const agree = sts.every((s) => s !== null && s.leader === leader);
      const seen = sts.map((s) => `${s?.id}:${s?.role}/${s?.leader}@${s?.term}`).join(' ');
      return { done: leader !== 0 && agree ? leader : null, seen };
    });
    cluster.healLinks();
    await cluster.waitForLeader(30_000);
    return elected;
  }

  void it('isolates a member that joined during the run, and a bootstrap member after it', async () => {
    const joined = await cluster.addMember();
    await waitFor(`member ${joined} to vote in both groups`, 30_000, async () => {
      const v = await admin.members().catch(() => null);
      const m = v?.members.find((x) => x.id === joined);
      const done = m?.role === 'voter' && m.queueRole === 'voter' ? true : null;
      return { done, seen: JSON.stringify(m ?? null) };
    });
    await lead(joined);
    assert.notEqual(await isolateAndReelect(joined), joined);

    await lead(1);
    assert.notEqual(await isolateAndReelect(1), 1);
    assert.deepEqual(cluster.unattributed(), [], 'every connection named its member');
  });
});
