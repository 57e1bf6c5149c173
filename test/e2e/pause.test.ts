// A paused leader (SIGSTOP on a real `flotilla start` process, SIGCONT after 5 s) with clients
// on the followers: no request waits longer than it must, and service through the followers
// resumes soon after a new leader is elected. The exact figures come from
// `node dist/test/e2e/pause-cli.js` (docs/BENCHMARKS.md); the bounds here hold on a loaded
// 2-core machine.

import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { TestCluster } from './harness.js';
import { pauseTrial } from './pause.js';

const clusters: TestCluster[] = [];
after(async () => {
  for (const c of clusters) await c.stop();
});

// The target is 1 s (the election timeout is 150-300 ms), and the script measures 0.2-0.3 s.
// Elections and timers run late on a shared, loaded 2-core machine (a failover took up to
// 673 ms in BENCHMARKS.md), so the test allows 3 s. Before the fix nothing completed for the
// whole 5 s pause (reads waited 5 s for a read index, forwarded writes 6 s or for ever), so
// 3 s still tells the two apart.
const RESUME_BOUND_MS = 3_000;

void test(
  'a paused leader: requests on the followers answer promptly and service resumes',
  {
    timeout: 120_000,
  },
  async () => {
    const cluster = await TestCluster.create({ nodes: 3 });
    clusters.push(cluster);
    await cluster.start();
    const r = await pauseTrial(cluster);
    const seen = JSON.stringify(r, null, 1);
    assert.ok(r.electedMs !== null, `no new leader during the pause: ${seen}`);
    for (const p of r.probes) {
      assert.ok(
        p.answeredAfterMs !== null && p.answeredAfterMs <= RESUME_BOUND_MS,
        `a ${p.kind} sent to node ${p.node} ${Math.round(p.sentMs)} ms into the pause waited ` +
          `${p.answeredAfterMs === null ? 'for ever' : `${Math.round(p.answeredAfterMs)} ms`}: ${seen}`,
      );
      // Reads are asked again of the new leader; a write without a session fails fast, marked
      // as possibly applied, since the frozen leader may have it.
      if (p.kind === 'read') assert.equal(p.code, 'OK', seen);
      else assert.ok(p.code === 'OK' || p.code === 'FORWARD_FAILED', seen);
    }
    assert.ok(r.firstWriteMs !== null && r.firstWriteMs <= RESUME_BOUND_MS, `writes: ${seen}`);
    assert.ok(r.firstReadMs !== null && r.firstReadMs <= RESUME_BOUND_MS, `reads: ${seen}`);
    assert.equal(r.opsFailed, 0, `clients retry through the new leader: ${seen}`);
  },
);
