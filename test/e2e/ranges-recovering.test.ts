// A range split off onto a node that recovered from lost data (DESIGN.md, "Ranges split off
// after a node recovered"), on real processes: the node catches up and is a full member again,
// and a range split off afterwards onto it alone elects it and takes writes. It used to start
// such a range recovering as well, so the range never elected a leader (writes refused
// NO_LEADER); a range on a node that lost nothing is the control.

import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, test } from 'node:test';
import { TestCluster } from './harness.js';
import { until } from './range-writers.js';

const clusters: TestCluster[] = [];
after(async () => {
  for (const c of clusters) await c.stop();
});

void test(
  'a range split off onto a node that recovered from lost data elects a leader',
  {
    timeout: 120_000,
  },
  async () => {
    const cluster = await TestCluster.create({
      nodes: 3,
      env: { FLOTILLA_PLACEMENT: 'off' },
    });
    clusters.push(cluster);
    await cluster.start();
    const admin = cluster.client([1, 2]);
    try {
      await admin.put('a', '1');
      await cluster.kill(3);
      rmSync(cluster.member(3).dataDir, { recursive: true, force: true });
      cluster.startNode(3);
      await until(
        'node 3 recovered',
        async () => {
          const st = await cluster.status(3);
          return st !== null && !st.recovering ? true : null;
        },
        60_000,
      );
      await until('the range map bootstrapped', async () => {
        const r = await admin.ranges();
        return r.ranges.length === 1 ? r : null;
      });
      await admin.splitRange('q', { replicas: [3] });
      // The same on node 2, which never lost anything: its range elects at once.
      await admin.splitRange('h', { replicas: [2] });
      await until('a write to the range on node 2 alone', () => admin.put('h/x', '1'));
      const via3 = cluster.client([3]);
      try {
        const put = await until('a write to the range on node 3 alone', () => via3.put('q/x', '1'));
        assert.ok(put.header.revision > 0);
      } catch (err) {
        const st = await cluster.status(3);
        throw new Error(`${(err as Error).message}; node 3 status ${JSON.stringify(st)}`);
      } finally {
        await via3.close();
      }
    } finally {
      await admin.close();
    }
  },
);
